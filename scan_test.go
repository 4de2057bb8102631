package emcache

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scanned collects what a Scan yields, failing on a key yielded twice.
func scanned(t *testing.T, c *Cache, prefix string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for key, it := range c.Scan([]byte(prefix)) {
		_, dup := got[string(key)]
		require.False(t, dup, "key %q yielded twice", key)
		got[string(key)] = string(it.Value)
	}
	return got
}

func TestScan(t *testing.T) {
	c, clk := newClockedCache(t, Config{MaxBytes: 32 << 20})
	want := map[string]string{}
	for i := range 20_000 {
		key, value := fmt.Sprintf("a:%d", i), fmt.Sprintf("v%d", i)
		store(t, c, key, value, 0)
		want[key] = value
		store(t, c, fmt.Sprintf("b:%d", i), "b", 0)
	}
	assert.Equal(t, want, scanned(t, c, "a:"))
	assert.Len(t, scanned(t, c, ""), 40_000, "an empty prefix: every item")
	assert.Empty(t, scanned(t, c, "c:"))

	_, err := c.Store([]byte("a:flags"), []byte("v"), StoreOptions{Flags: 42, TTL: 1000 * time.Second})
	require.NoError(t, err)
	for key, it := range c.Scan([]byte("a:flags")) {
		assert.Equal(t, "a:flags", string(key))
		assert.Equal(t, uint32(42), it.Flags)
		assert.Equal(t, clk.Now().Unix()+1000, it.Expires.Unix())
		got, err := c.Get(key)
		require.NoError(t, err)
		assert.Equal(t, got.CAS, it.CAS)
	}

	stats := c.Stats()
	n := 0
	for range c.Scan(nil) {
		if n++; n == 10 {
			break
		}
	}
	assert.Equal(t, 10, n, "the loop stops when the body breaks")
	assert.Equal(t, stats.CmdGet, c.Stats().CmdGet, "a Scan counts no gets")

	store(t, c, "e:1", "v", 10)
	clk.Advance(11 * time.Second)
	require.NoError(t, c.DeletePrefix([]byte("b:")))
	assert.Empty(t, scanned(t, c, "e:"), "expired items")
	assert.Empty(t, scanned(t, c, "b:"), "deleted prefixes")
	c.FlushAll(0)
	assert.Empty(t, scanned(t, c, ""), "flushed items")
}

// A batch whose hash range holds far more bytes than expected is split
// until it fits; large values are all yielded whole.
func TestScanLargeValues(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 64 << 20})
	want := map[string]string{}
	for i := range 200 {
		key := fmt.Sprintf("big:%d", i)
		value := strings.Repeat(string(rune('a'+i%26)), 100_000+i)
		store(t, c, key, value, 0)
		want[key] = value
	}
	assert.Equal(t, want, scanned(t, c, "big:"))
}

// Writers store, replace and delete items while scans run: every item
// present throughout is yielded once, with a value it had, and no key is
// yielded twice, while the index grows under the scan.
func TestScanConcurrentWriters(t *testing.T) {
	const stable = 20_000
	c := newTestCache(t, Config{MaxBytes: 64 << 20})
	for i := range stable {
		store(t, c, fmt.Sprintf("s:%d", i), "s", 0)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Appendf(nil, "w%d:%d", w, i)
				if err := c.Set(key, []byte("w"), 0); err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					_ = c.Delete(key)
				}
				// Replacing stable items moves them in the rings.
				_ = c.Set(fmt.Appendf(nil, "s:%d", i%stable), []byte("s"), 0)
			}
		})
	}
	for range 3 {
		got := scanned(t, c, "s:")
		missing := 0
		for i := range stable {
			if got[fmt.Sprintf("s:%d", i)] != "s" {
				missing++
			}
		}
		assert.Zero(t, missing, "stable items not yielded")
		assert.Len(t, got, stable)
	}
	close(stop)
	wg.Wait()
}

// The loop body may use the cache, stores and deletes included, without
// deadlocking on a shard's lock.
func TestScanBodyUsesCache(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 8 << 20})
	for i := range 1000 {
		store(t, c, fmt.Sprintf("a:%d", i), "v", 0)
	}
	n := 0
	for key := range c.Scan([]byte("a:")) {
		require.NoError(t, c.Delete(key))
		store(t, c, "copy:"+string(key), "v", 0)
		n++
	}
	assert.Equal(t, 1000, n)
	assert.Empty(t, scanned(t, c, "a:"))
	assert.Len(t, scanned(t, c, "copy:"), 1000)
}
