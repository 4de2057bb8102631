package hitratio

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/emcache/emcache/bench/caches"
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
	results, err := Run(cfg, caches.All, nil)
	require.NoError(t, err)
	require.Len(t, results, len(caches.All)*len(cfg.Traces()))
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
