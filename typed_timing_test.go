package emcache_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/emcache/emcache"
	"github.com/stretchr/testify/require"
)

// The typed layer's cost over the byte API, with a codec that allocates
// nothing, so that what ReportAllocs shows is the layer's own.
func BenchmarkTypedGet(b *testing.B)       { benchmarkTyped(b, "get") }
func BenchmarkTypedSet(b *testing.B)       { benchmarkTyped(b, "set") }
func BenchmarkTypedGetOrLoad(b *testing.B) { benchmarkTyped(b, "getorload") }

func benchmarkTyped(b *testing.B, op string) {
	_, counters := newTyped(b, emcache.Codec[uint64](uint64Codec{}))
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "counter:" + strconv.Itoa(i)
		require.NoError(b, counters.Set(keys[i], uint64(i), 0))
	}
	load := func(context.Context, string) (uint64, time.Duration, error) { return 0, 0, nil }
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := keys[i&1023]
		switch op {
		case "get":
			counters.Get(k)
		case "set":
			counters.Set(k, uint64(i), 0)
		case "getorload":
			counters.GetOrLoad(ctx, k, load)
		}
	}
}
