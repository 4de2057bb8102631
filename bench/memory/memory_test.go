package memory

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/emcache/emcache/bench/caches"
)

// TestMeasureSmall runs the whole measurement on a small cache of every
// library and checks the numbers are plausible; the sizes that matter run
// from the report, one process per measurement.
func TestMeasureSmall(t *testing.T) {
	cfg := Config{
		Items: 20_000, BudgetPerItem: 512, ForcedGCs: 3,
		ReadMin: 20 * time.Millisecond, ReadMax: 5 * time.Second, ReadCycles: 2,
		GarbagePerRead: 128,
	}
	for _, lib := range caches.All {
		t.Run(lib.Name, func(t *testing.T) {
			r, err := Measure(lib, cfg)
			require.NoError(t, err)
			assert.Equal(t, lib.Name, r.Cache)
			assert.InDelta(t, 1, r.Resident, 0.05, "entries kept")
			assert.Positive(t, r.ForcedGC)
			assert.Positive(t, r.ReadsPerSec)
			assert.GreaterOrEqual(t, r.GCCycles, uint64(1))
			assert.Greater(t, r.GCCPUFraction, 0.0)
			assert.Positive(t, r.GCNanosPerRead)
			assert.Less(t, r.GCCPUFraction, 1.0)
			if lib.Retains {
				// At least a node and a value per entry live on the Go heap.
				assert.GreaterOrEqual(t, r.HeapObjects, int64(cfg.Items))
			}
			t.Logf("%+v", r)
		})
	}
}

func TestMeasureNoCache(t *testing.T) {
	r, err := Measure(None, Config{Items: 1000, BudgetPerItem: 256, ForcedGCs: 1,
		ReadMin: 20 * time.Millisecond, ReadMax: 5 * time.Second, ReadCycles: 2, GarbagePerRead: 1024})
	require.NoError(t, err)
	assert.Zero(t, r.Resident)
	assert.GreaterOrEqual(t, r.GCCycles, uint64(1))
	assert.Positive(t, r.GCNanosPerRead)
}

func TestRSS(t *testing.T) {
	assert.GreaterOrEqual(t, RSS(), int64(0))
}
