package emcache

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCacheLoopKeepsStableSubset replays, cache-aside, a loop over a few more
// keys than the cache holds. LRU and FIFO never hit on it; S3-FIFO keeps a
// stable subset only if keys the ghost remembers stop displacing main-ring
// items once every main-ring item is in use: else each pass of the loop
// turns the main ring over and the hits fall to about two thirds of what a
// stable main ring gives.
func TestCacheLoopKeepsStableSubset(t *testing.T) {
	const maxBytes = 4 << 20
	c := newTestCache(t, Config{MaxBytes: maxBytes, MaxItemSize: MinMaxItemSize})
	v := []byte(strings.Repeat("v", 100))
	keys := maxBytes * 11 / 10 / storedSize("loop00000", string(v))
	replay := func() int {
		hits := 0
		for i := range keys {
			k := fmt.Appendf(nil, "loop%05d", i)
			if _, err := c.Get(k); err == nil {
				hits++
				continue
			}
			require.NoError(t, c.Set(k, v, 0))
		}
		return hits
	}
	for range 3 { // fill, and let the ghost learn the keys
		replay()
	}
	hits := 0
	for range 4 {
		hits += replay()
	}
	ratio := float64(hits) / float64(4*keys)
	t.Logf("loop of %d keys: hit ratio %.4f", keys, ratio)
	// The main ring is 90% of the arena: a stable main ring hits about
	// 0.9/1.1 of the loop, less what record headers and index growth take.
	assert.GreaterOrEqual(t, ratio, 0.7)
}

// TestCacheMainRingForgetsOldReads checks that a main-ring item's reads buy
// it one more pass of the ring, not one per read: keys read often long ago
// make way for keys promoted since, once the ring has turned over twice,
// as popularity that moves on (new content) needs.
func TestCacheMainRingForgetsOldReads(t *testing.T) {
	const maxBytes = 4 << 20
	c := newTestCache(t, Config{MaxBytes: maxBytes, MaxItemSize: MinMaxItemSize})
	v := []byte(strings.Repeat("v", 100))
	capacity := maxBytes / storedSize("old00000", string(v))
	old := make([][]byte, capacity/3)
	for i := range old {
		old[i] = fmt.Appendf(nil, "old%05d", i)
		require.NoError(t, c.Set(old[i], v, 0))
		for range 3 {
			_, err := c.Get(old[i])
			require.NoError(t, err)
		}
	}
	// Each new key is read once while in the small ring, which promotes
	// it; twice the cache's worth of them turns the main ring over twice.
	const readAfter = 100
	for i := range 2*capacity + readAfter {
		if i < 2*capacity {
			require.NoError(t, c.Set(fmt.Appendf(nil, "new%07d", i), v, 0))
		}
		if j := i - readAfter; j >= 0 {
			_, _ = c.Get(fmt.Appendf(nil, "new%07d", j))
		}
	}
	kept := 0
	for _, k := range old {
		if _, err := c.Get(k); err == nil {
			kept++
		}
	}
	t.Logf("old keys kept: %d of %d", kept, len(old))
	assert.Less(t, kept, len(old)/50)
}
