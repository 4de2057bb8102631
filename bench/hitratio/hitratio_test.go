package hitratio

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/emcache/emcache/bench/caches"
	"github.com/emcache/emcache/bench/trace"
)

// TestQuickRun replays every trace in about Quick size on every cache and checks
// that the ratios are sane: Zipf traces must hit sometimes and miss
// sometimes (the key space is larger than the budget); the loop may never
// hit (LRU and FIFO caches cannot) but must miss.
func TestQuickRun(t *testing.T) {
	cfg := Quick
	cfg.Requests = 200_000 // enough to exercise every trace and adapter; -quick runs Quick
	if testing.Short() || raceEnabled {
		cfg.Requests /= 6
	}
	libs := append(slices.Clone(caches.All), LRU)
	results, err := Run(cfg, libs, nil)
	require.NoError(t, err)
	require.Len(t, results, len(libs)*len(cfg.Traces()))
	for _, r := range results {
		require.Equal(t, cfg.Requests, r.Requests)
		if r.Trace == "loop" {
			assert.GreaterOrEqual(t, r.Ratio(), 0.0, "%s %s", r.Cache, r.Trace)
		} else {
			assert.Greater(t, r.Ratio(), 0.0, "%s %s", r.Cache, r.Trace)
		}
		assert.Less(t, r.Ratio(), 1.0, "%s %s", r.Cache, r.Trace)
		if r.Trace == HeldAfter {
			assert.Positive(t, r.Held, "%s holds entries", r.Cache)
			assert.LessOrEqual(t, r.Held, cfg.PayloadCapacity(), "%s fits the budget", r.Cache)
		}
		t.Logf("%-10s %-13s %.4f", r.Cache, r.Trace, r.Ratio())
	}
}

// TestSkewOrdersRatios checks a property any sane cache has: the more skewed
// the Zipf trace, the higher the hit ratio.
func TestSkewOrdersRatios(t *testing.T) {
	cfg := Quick
	cfg.Requests = 300_000
	lib, err := caches.ByName("freecache")
	require.NoError(t, err)
	ratio := map[string]float64{}
	for _, tr := range cfg.Traces()[:3] {
		c, err := lib.New(cfg.Budget)
		require.NoError(t, err)
		ratio[tr.Name] = float64(Replay(c, tr.Gen(), make([]byte, ValueSize))) / float64(cfg.Requests)
		c.Close()
	}
	assert.Less(t, ratio["zipf0.7"], ratio["zipf0.9"])
	assert.Less(t, ratio["zipf0.9"], ratio["zipf1.1"])
}

// TestLRU checks the reference's order and budget: with room for three
// entries, reading a key saves it from the next eviction, which takes the
// least recently used one.
func TestLRU(t *testing.T) {
	c, err := LRU.New(3 * (trace.KeyLen + ValueSize))
	require.NoError(t, err)
	value := make([]byte, ValueSize)
	key := func(id uint64) caches.Key { return caches.Key{B: trace.AppendKey(nil, id)} }
	for id := range uint64(3) {
		c.Set(key(id), value)
	}
	_, ok := c.Get(nil, key(0))
	require.True(t, ok)
	c.Set(key(3), value) // evicts 1, the least recently used
	c.Set(key(2), value) // an overwrite evicts nothing
	for id, want := range []bool{true, false, true, true} {
		_, ok := c.Get(nil, key(uint64(id)))
		assert.Equal(t, want, ok, "key %d", id)
	}
	c.Set(key(4), value) // evicts 0: 2, 3 and 0 were read since
	_, ok = c.Get(nil, key(0))
	assert.False(t, ok)
}
