// Package throughput measures operations per second of each cache under
// concurrent Zipf-distributed reads and writes, as otter's throughput
// benchmarks do: a precomputed key set and key stream, so the loop measures
// the cache and not the key generator.
package throughput

import (
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emcache/emcache/bench/caches"
	"github.com/emcache/emcache/bench/trace"
)

// Parameters shared by the Go benchmarks and the report.
const (
	// Keys is the size of the key set; every key is stored before a run.
	Keys = 1 << 20
	// ValueSize is the size of every value.
	ValueSize = 100
	// ZipfS is the skew of the key stream, YCSB's default.
	ZipfS = 0.99
	// Budget holds all Keys in every cache (about 120 payload bytes per
	// entry plus each cache's header), so runs measure hits, not eviction.
	Budget = 256 << 20
	// streamLen is long enough that goroutines starting at spread-out
	// offsets do not walk the same keys in step; a power of two for masking.
	streamLen = 1 << 22
	seed      = 42
)

// Workload is one mix of operations.
type Workload struct {
	Name string
	// WritePercent of operations are Sets of an existing key; the rest are Gets.
	WritePercent int
}

// Workloads are the mixes measured: read-only, read-mostly, write-heavy and
// write-only.
var Workloads = []Workload{
	{Name: "get100", WritePercent: 0},
	{Name: "get90", WritePercent: 10},
	{Name: "set50", WritePercent: 50},
	{Name: "set100", WritePercent: 100},
}

// Parallelisms are the goroutines per GOMAXPROCS that RunParallel starts.
var Parallelisms = []int{1, 2}

// Keyset is the precomputed input of every run.
type Keyset struct {
	Keys   []caches.Key
	Stream []uint32 // indexes into Keys, Zipf-distributed
	Value  []byte
}

// NewKeyset builds the key set and stream; it is deterministic.
func NewKeyset() *Keyset {
	// One backing array for all keys keeps the key set to a few heap
	// objects, so it does not add GC work to what is measured.
	var sb strings.Builder
	sb.Grow(Keys * trace.KeyLen)
	buf := make([]byte, 0, trace.KeyLen)
	for id := range uint64(Keys) {
		sb.Write(trace.AppendKey(buf[:0], id))
	}
	all := sb.String()
	allBytes := []byte(all)
	ks := &Keyset{Keys: make([]caches.Key, Keys), Stream: make([]uint32, streamLen)}
	for i := range ks.Keys {
		lo, hi := i*trace.KeyLen, (i+1)*trace.KeyLen
		ks.Keys[i] = caches.Key{B: allBytes[lo:hi:hi], S: all[lo:hi]}
	}
	for i, id := range trace.ZipfTrace(seed, ZipfS, Keys, streamLen) {
		ks.Stream[i] = uint32(id)
	}
	ks.Value = make([]byte, ValueSize)
	for i := range ks.Value {
		ks.Value[i] = byte('a' + i%26)
	}
	return ks
}

// Prefill stores every key of ks in c.
func Prefill(c caches.Cache, ks *Keyset) {
	for i := range ks.Keys {
		c.Set(ks.Keys[i], ks.Value)
		if i%4096 == 0 {
			c.Sync() // ristretto drops sets when its buffer is full
		}
	}
	c.Sync()
}

// Bench runs workload w against c with par goroutines per GOMAXPROCS and
// reports ns/op, allocs/op and, for mixes with reads, the hit ratio (which
// should be 1: a lower one means the cache dropped keys).
func Bench(b *testing.B, c caches.Cache, ks *Keyset, w Workload, par int) {
	b.ReportAllocs()
	b.SetParallelism(par)
	var start atomic.Uint64
	var reads, hits atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// A golden-ratio stride spreads the goroutines' starting points
		// over the stream.
		i := start.Add(1) * 0x9e3779b97f4a7c15
		buf := make([]byte, 0, 2*ValueSize)
		var r, h int64
		for pb.Next() {
			i++
			k := &ks.Keys[ks.Stream[i&(streamLen-1)]]
			if int(i%100) < w.WritePercent {
				c.Set(*k, ks.Value)
				continue
			}
			r++
			if _, ok := c.Get(buf[:0], *k); ok {
				h++
			}
		}
		reads.Add(r)
		hits.Add(h)
	})
	b.StopTimer()
	if n := reads.Load(); n > 0 {
		b.ReportMetric(float64(hits.Load())/float64(n), "hit/read")
	}
}

// The insert workload: distinct keys into an empty cache, which measures
// what the mixes above never see, a cache (and its index) growing.
const (
	// InsertKeys is how many distinct keys the insert workload stores.
	InsertKeys = 10_000_000
	// InsertBudgetPerKey sizes the cache so that every inserted key fits in
	// every library (as the GC-cost measurement sizes it): the workload
	// measures inserting, not evicting.
	InsertBudgetPerKey = 256
)

// InsertResult is one run of the insert workload.
type InsertResult struct {
	NsPerOp     float64 // wall time per insert
	AllocsPerOp float64 // heap allocations per insert
}

// Insert stores n distinct keys, each with a ValueSize value, into a new
// cache of lib from GOMAXPROCS goroutines, each storing its own share of the
// keys in increasing order.
func Insert(lib caches.Lib, n int) (InsertResult, error) {
	c, err := lib.New(int64(n) * InsertBudgetPerKey)
	if err != nil {
		return InsertResult{}, err
	}
	defer c.Close()
	value := make([]byte, ValueSize)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	workers := runtime.GOMAXPROCS(0)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			key := make([]byte, 0, trace.KeyLen)
			for id := uint64(w); id < uint64(n); id += uint64(workers) {
				key = trace.AppendKey(key[:0], id)
				c.Set(caches.Key{B: key}, value)
				if id%4096 < uint64(workers) {
					c.Sync() // ristretto drops sets when its buffer is full
				}
			}
		})
	}
	wg.Wait()
	c.Sync()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	return InsertResult{
		NsPerOp:     float64(elapsed.Nanoseconds()) / float64(n),
		AllocsPerOp: float64(after.Mallocs-before.Mallocs) / float64(n),
	}, nil
}
