package emcache

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Regression: 64 keys appended 200 times in a 32 MiB cache evicted 94 live
// items while live bytes were 4.4% of MaxBytes; the log must reclaim the
// dead copies the appends leave before it evicts.
func TestAppendGrowthEvictsNothing(t *testing.T) {
	for _, chunk := range []int{115, 1024} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			c, err := New(Config{MaxBytes: 32 << 20})
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
			value := make([]byte, chunk)
			for round := range 200 {
				for k := range 64 {
					key := fmt.Appendf(nil, "append:%d", k)
					if round == 0 {
						require.NoError(t, c.Set(key, value, 0))
					} else if err := c.Append(key, value); !errors.Is(err, ErrNotStored) {
						require.NoError(t, err)
					}
				}
			}
			s := c.Stats()
			assert.Zero(t, s.Evictions)
			assert.EqualValues(t, 64, s.CurrItems)
		})
	}
}

// fillWorkload is a write pattern run against a cache until it first
// evicts: step performs store i, given the live share of MaxBytes. Hash
// partitioning spreads a few dozen large values unevenly over the shards,
// and the fullest evicts first: perShard workloads are judged by the live
// share of the shard that evicts, not of the whole cache.
type fillWorkload struct {
	name     string
	maxBytes int64
	stores   int
	perShard bool
	step     func(c *Cache, rng *rand.Rand, i int, live float64) error
}

// fillWorkloads are write patterns that leave dead records in the log
// (overwrites, growing appends, hot keys rewritten behind a cold fill,
// values of many sizes), each growing its live items past MaxBytes.
func fillWorkloads() []fillWorkload {
	v100 := make([]byte, 100)
	chunk := make([]byte, 4096)
	big := make([]byte, 900<<10)
	const overwriteKeys = 300_000 // of 100 B values: 1.1 times 32 MiB
	var cold, hot int
	return []fillWorkload{
		{"overwrite 100 B values", 32 << 20, 4 * overwriteKeys, false, func(c *Cache, rng *rand.Rand, _ int, _ float64) error {
			return c.Set(fmt.Appendf(nil, "key:%07d", rng.IntN(overwriteKeys)), v100, 0)
		}},
		{"append 4 KiB chunks", 32 << 20, 100 << 10, false, func(c *Cache, _ *rand.Rand, i int, _ float64) error {
			key := fmt.Appendf(nil, "append:%d", i%1024)
			if i < 1024 {
				return c.Set(key, chunk, 0)
			}
			if err := c.Append(key, chunk); !errors.Is(err, ErrNotStored) {
				return err // making room may evict the item itself
			}
			return nil
		}},
		{"cold fill then hot 5% overwrites", 32 << 20, 2_000_000, false, func(c *Cache, rng *rand.Rand, _ int, live float64) error {
			if hot == 0 && live >= 0.8 {
				hot = cold / 20
			}
			if hot == 0 || rng.IntN(10) == 0 {
				cold++
				return c.Set(fmt.Appendf(nil, "key:%07d", cold), v100, 0)
			}
			return c.Set(fmt.Appendf(nil, "key:%07d", 1+rng.IntN(hot)), v100[:50+rng.IntN(51)], 0)
		}},
		{"mixed 100-900 KB values", 64 << 20, 4000, true, func(c *Cache, rng *rand.Rand, _ int, _ float64) error {
			return c.Set(fmt.Appendf(nil, "big:%d", rng.IntN(192)), big[:100<<10+rng.IntN(800<<10)], 0)
		}},
	}
}

// liveShares is each shard's live bytes as a share of its arena.
func liveShares(c *Cache) []float64 {
	shares := make([]float64, len(c.shards))
	for i, s := range c.shards {
		s.mu.Lock()
		shares[i] = float64(s.bytes) / float64(len(s.buf))
		s.mu.Unlock()
	}
	return shares
}

// No live item is evicted while the live items (Stats.Bytes, the arena
// bytes of live records, before the store that evicts) fill less than 90%
// of MaxBytes, or of the evicting shard's arena: below it, the log
// reclaims its dead records first.
func TestFillEvictsOnlyWhenFull(t *testing.T) {
	for _, w := range fillWorkloads() {
		t.Run(w.name, func(t *testing.T) {
			c, err := New(Config{MaxBytes: w.maxBytes})
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
			rng := rand.New(rand.NewPCG(1, 2))
			var before Stats
			var shares []float64
			for i := range w.stores {
				before, shares = c.Stats(), liveShares(c)
				require.NoError(t, w.step(c, rng, i, float64(before.Bytes)/float64(w.maxBytes)))
				if c.Stats().Evictions != 0 {
					break
				}
			}
			require.NotZero(t, c.Stats().Evictions, "the workload outgrew the cache")
			live := float64(before.Bytes) / float64(w.maxBytes)
			evicting := slices.IndexFunc(c.shards, func(s *shard) bool { return s.st.evictions != 0 })
			t.Logf("first eviction with live items at %.1f%% of MaxBytes, %.1f%% of the evicting shard (%d shards)",
				100*live, 100*shares[evicting], len(c.shards))
			if w.perShard {
				live = shares[evicting]
			}
			assert.GreaterOrEqual(t, live, 0.9)
			for _, s := range c.shards {
				s.mu.Lock()
				assert.Equal(t, s.liveIn(&s.small), s.smallBytes, "small-ring bytes counted")
				s.mu.Unlock()
			}
		})
	}
}

// liveIn sums the sizes of r's live records (what smallBytes must count).
func (s *shard) liveIn(r *ring) uint64 {
	var n uint64
	for pos := r.tail; pos < r.head; {
		off, size, isHole := s.skipAt(r, pos%r.size)
		pos += size
		if !isHole {
			if _, ok := s.findOff(xxhash.Sum64(s.key(off)), off); ok {
				n += size
			}
		}
	}
	return n
}
