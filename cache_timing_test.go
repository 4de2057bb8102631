package emcache

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// The Zipf benchmarks replay one precomputed trace over a fixed key space,
// as a skewed production workload would hit the cache.
const (
	benchKeys      = 1 << 20 // distinct keys
	benchKeyLen    = len("key:0000000")
	benchTraceLen  = 1 << 22 // trace entries; a power of two for cheap wrapping
	benchZipfS     = 1.01    // skew: the classic web-cache exponent
	benchValueSize = 100
)

// benchKeyList holds every key, sliced from one array so the list itself is
// two heap objects rather than a million.
var benchKeyList = sync.OnceValue(func() [][]byte {
	flat := make([]byte, 0, benchKeys*benchKeyLen)
	keys := make([][]byte, benchKeys)
	for i := range keys {
		n := len(flat)
		flat = fmt.Appendf(flat, "key:%07d", i)
		keys[i] = flat[n:len(flat):len(flat)]
	}
	return keys
})

// benchTrace is the Zipf-distributed sequence of key indexes.
var benchTrace = sync.OnceValue(func() []uint32 {
	z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), benchZipfS, 1, benchKeys-1)
	trace := make([]uint32, benchTraceLen)
	for i := range trace {
		trace[i] = uint32(z.Uint64())
	}
	return trace
})

// benchCache is one default-sized cache shared by the Zipf benchmarks,
// warmed once with the trace so that reads hit as they would in steady
// state; warming it for every b.N would dominate the run time.
var benchCache = sync.OnceValue(func() *Cache {
	c, err := New(Config{})
	if err != nil {
		panic(err)
	}
	keys, trace := benchKeyList(), benchTrace()
	value := make([]byte, benchValueSize)
	for _, i := range trace[:benchKeys] {
		c.Set(keys[i], value, 0)
	}
	return c
})

// readMode selects the read call of a benchmark.
type readMode uint8

const (
	readGet       readMode = iota // Get: copies the value into a new slice
	readGetAppend                 // GetAppend into a reused buffer: no allocation
)

func BenchmarkZipfGet(b *testing.B)       { benchmarkZipf(b, 100, readGet) }
func BenchmarkZipfGetAppend(b *testing.B) { benchmarkZipf(b, 100, readGetAppend) }
func BenchmarkZipfRead90(b *testing.B)    { benchmarkZipf(b, 90, readGetAppend) }
func BenchmarkZipfRead50(b *testing.B)    { benchmarkZipf(b, 50, readGetAppend) }
func BenchmarkZipfSet(b *testing.B)       { benchmarkZipf(b, 0, readGetAppend) }

// benchmarkZipf runs GOMAXPROCS goroutines, each replaying the trace from
// its own offset; readPercent of every 100 operations are reads, the rest
// Sets of a benchValueSize value.
func benchmarkZipf(b *testing.B, readPercent int, mode readMode) {
	c := benchCache()
	keys, trace := benchKeyList(), benchTrace()
	before := c.Stats()
	var goroutine atomic.Uint64
	b.SetBytes(benchValueSize)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		pos := int(goroutine.Add(1)*benchTraceLen/16) % benchTraceLen
		value := make([]byte, benchValueSize)
		buf := make([]byte, 0, benchValueSize)
		for op := 0; pb.Next(); op++ {
			k := keys[trace[pos]]
			pos = (pos + 1) & (benchTraceLen - 1)
			switch {
			case op%100 >= readPercent:
				c.Set(k, value, 0)
			case mode == readGet:
				c.Get(k)
			default:
				buf, _, _ = c.GetAppend(buf[:0], k)
			}
		}
	})
	b.StopTimer()
	after := c.Stats()
	if gets := after.CmdGet - before.CmdGet; gets > 0 {
		b.ReportMetric(float64(after.GetHits-before.GetHits)/float64(gets), "hits/get")
	}
}

func BenchmarkGetAppend(b *testing.B)         { benchmarkGetAppend(b, 100, false) }
func BenchmarkGetAppend4K(b *testing.B)       { benchmarkGetAppend(b, 4096, false) }
func BenchmarkGetAppendParallel(b *testing.B) { benchmarkGetAppend(b, 100, true) }

// benchmarkGetAppend reads one key of a valueSize value into a reused
// buffer: the zero-allocation read path, which must report 0 allocs/op.
func benchmarkGetAppend(b *testing.B, valueSize int, parallel bool) {
	c, err := New(Config{MaxBytes: 16 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	key := []byte("benchmark-key")
	if err := c.Set(key, make([]byte, valueSize), 0); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(valueSize))
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		buf := make([]byte, 0, valueSize)
		for range b.N {
			buf, _, _ = c.GetAppend(buf[:0], key)
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, valueSize)
		for pb.Next() {
			buf, _, _ = c.GetAppend(buf[:0], key)
		}
	})
}

func BenchmarkSet100(b *testing.B) { benchmarkSet(b, 100) }
func BenchmarkSet4K(b *testing.B)  { benchmarkSet(b, 4096) }

// benchmarkSet stores valueSize values under 64Ki rotating keys in a cache
// a quarter of their total size, so that stores also evict.
func benchmarkSet(b *testing.B, valueSize int) {
	const nkeys = 1 << 16
	maxBytes := max(int64(nkeys*(ItemOverhead+16+valueSize)/4), 4<<20)
	c, err := New(Config{MaxBytes: maxBytes, MaxItemSize: MinMaxItemSize * 8})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	keys := benchKeyList()[:nkeys]
	value := make([]byte, valueSize)
	b.SetBytes(int64(valueSize))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c.Set(keys[i&(nkeys-1)], value, 0)
	}
}
