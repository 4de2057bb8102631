package trace

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTracesAreDeterministic(t *testing.T) {
	require.Equal(t, ZipfTrace(7, 0.9, 1000, 5000), ZipfTrace(7, 0.9, 1000, 5000))
	require.NotEqual(t, ZipfTrace(7, 0.9, 1000, 5000), ZipfTrace(8, 0.9, 1000, 5000))
	require.Equal(t, ZipfScanTrace(7, 0.9, 1000, 5000, 100, 30), ZipfScanTrace(7, 0.9, 1000, 5000, 100, 30))
	require.Equal(t, LoopTrace(10, 35), LoopTrace(10, 35))
	require.Equal(t, ChurnTrace(7, 0.9, 1000, 5000, 4), ChurnTrace(7, 0.9, 1000, 5000, 4))
	require.NotEqual(t, ChurnTrace(7, 0.9, 1000, 5000, 4), ChurnTrace(8, 0.9, 1000, 5000, 4))
}

// TestZipfSkew checks the sampler against the exact distribution: the ratio
// of rank 1 to rank 10 must be 10^s, and the head ranks must each be within
// five standard deviations of their expected count.
func TestZipfSkew(t *testing.T) {
	const keys, draws = 1000, 1_000_000
	for _, s := range []float64{0.5, 0.7, 0.9, 1.0, 1.1, 1.5} {
		t.Run(fmt.Sprint(s), func(t *testing.T) {
			counts := make([]int, keys)
			for _, id := range ZipfTrace(1, s, keys, draws) {
				require.Less(t, id, uint64(keys))
				counts[id]++
			}
			ratio := float64(counts[0]) / float64(counts[9])
			assert.InEpsilon(t, math.Pow(10, s), ratio, 0.06, "rank 1 / rank 10")
			for k := uint64(0); k < 20; k++ {
				p := ZipfProb(s, keys, k)
				want := p * draws
				sigma := math.Sqrt(draws * p * (1 - p))
				assert.InDelta(t, want, float64(counts[k]), 5*sigma, "rank %d", k+1)
			}
		})
	}
}

func TestZipfSingleKey(t *testing.T) {
	for _, id := range ZipfTrace(3, 0.8, 1, 100) {
		require.Zero(t, id)
	}
}

func TestZipfScanTrace(t *testing.T) {
	const keys = 1000
	tr := ZipfScanTrace(5, 0.9, keys, 1000, 100, 25)
	require.Len(t, tr, 1000)
	next := uint64(keys)
	for i, id := range tr {
		if i%125 < 100 {
			require.Less(t, id, uint64(keys), "request %d is a Zipf draw", i)
			continue
		}
		require.Equal(t, next, id, "request %d is the next fresh scan key", i)
		next++
	}
}

func TestLoopTrace(t *testing.T) {
	require.Equal(t, []uint64{0, 1, 2, 0, 1, 2, 0}, LoopTrace(3, 7))
}

func TestAppendKey(t *testing.T) {
	seen := map[string]bool{}
	for _, id := range []uint64{0, 1, 9, 10, 123456, 999_999_999_999} {
		k := string(AppendKey(nil, id))
		require.Len(t, k, KeyLen, k)
		require.False(t, seen[k])
		seen[k] = true
	}
	require.Equal(t, "key:000000000042", string(AppendKey(nil, 42)))
	require.Equal(t, "xkey:000000000001", string(AppendKey([]byte("x"), 1)))
}

// TestChurnTrace checks the sliding window: every id lies in the window of
// its request (so an id that left it never recurs), and the ranks within the
// window, newest first, follow the Zipf distribution.
func TestChurnTrace(t *testing.T) {
	const keys, n, shiftEvery = 1000, 200_000, 10
	tr := ChurnTrace(3, 0.9, keys, n, shiftEvery)
	require.Len(t, tr, n)
	require.Equal(t, tr, ChurnTrace(3, 0.9, keys, n, shiftEvery))
	ages := make([]int, keys) // requests by rank: age of the id in its window
	for i, id := range tr {
		lo := uint64(i / shiftEvery)
		require.GreaterOrEqual(t, id, lo, "request %d is in its window", i)
		require.Less(t, id, lo+keys, "request %d is in its window", i)
		ages[lo+keys-1-id]++
	}
	for k := uint64(0); k < 20; k++ {
		p := ZipfProb(0.9, keys, k)
		sigma := math.Sqrt(n * p * (1 - p))
		assert.InDelta(t, p*n, float64(ages[k]), 5*sigma, "rank %d", k+1)
	}
}
