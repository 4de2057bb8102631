// Package memory measures what a full cache costs the Go runtime: heap
// objects the garbage collector must trace, the time of a forced collection,
// the share of CPU the collector takes while the program reads from the
// cache, and bytes per entry.
//
// Each measurement should run in a fresh process (the report re-executes
// itself per cache and size), so that one cache's heap and resident pages do
// not blur the next one's numbers.
package memory

import (
	"bytes"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emcache/emcache/bench/caches"
	"github.com/emcache/emcache/bench/trace"
)

// ValueSize is the size of every value stored.
const ValueSize = 100

// Config sizes one measurement.
type Config struct {
	// Items is the number of entries stored.
	Items int
	// BudgetPerItem times Items is the cache budget: room for every entry,
	// so that nothing is evicted and Resident should be 1.
	BudgetPerItem int64
	// ForcedGCs is how many forced collections are timed; the median is
	// reported.
	ForcedGCs int
	// ReadMin and ReadMax bound the read phase, which lasts until ReadCycles
	// collections have completed once ReadMin has passed.
	ReadMin, ReadMax time.Duration
	ReadCycles       int
	// GarbagePerRead bytes are allocated per read, standing in for the
	// program's own allocations: they make collections happen, and the
	// cache's heap decides what each one costs.
	GarbagePerRead int
}

// DefaultConfig returns the report's settings for items entries.
func DefaultConfig(items int) Config {
	return Config{
		Items: items, BudgetPerItem: 256, ForcedGCs: 3,
		ReadMin: time.Second, ReadMax: 10 * time.Second, ReadCycles: 2,
		GarbagePerRead: 1024,
	}
}

// Result is one cache's cost at one size.
type Result struct {
	Cache string
	Items int
	// Resident is the fraction of entries found after the fill (sampled).
	Resident float64
	// HeapObjects is the growth of /gc/heap/objects:objects, after a
	// collection, from before the cache was created to after it was filled.
	HeapObjects int64
	// HeapBytes is the growth of /memory/classes/heap/objects:bytes.
	HeapBytes int64
	// RSSBytes is the growth of the resident set (0 where unknown); it
	// includes memory allocated outside the Go heap.
	RSSBytes int64
	// FillTime is how long storing Items entries took.
	FillTime time.Duration
	// ForcedGC is the median wall time of runtime.GC() on the full cache.
	ForcedGC time.Duration
	// GCCPUFraction is /cpu/classes/gc/total:cpu-seconds over
	// /cpu/classes/total:cpu-seconds from the end of the collection before
	// the read phase to the end of the last one inside it; 0 if none ended.
	GCCPUFraction float64
	// GCNanosPerRead is the collector's CPU time over the same span divided
	// by the reads done in it: unlike the fraction, it does not depend on
	// how fast the cache reads.
	GCNanosPerRead float64
	// GCCycles counts the collections completed during the read phase.
	GCCycles uint64
	// ReadsPerSec is the read rate of the read phase, garbage included.
	ReadsPerSec float64
}

// HeapPerEntry is HeapBytes per stored entry.
func (r Result) HeapPerEntry() float64 { return float64(r.HeapBytes) / float64(r.Items) }

// RSSPerEntry is RSSBytes per stored entry.
func (r Result) RSSPerEntry() float64 { return float64(r.RSSBytes) / float64(r.Items) }

var sampleNames = []string{
	"/gc/heap/objects:objects",
	"/memory/classes/heap/objects:bytes",
	"/cpu/classes/gc/total:cpu-seconds",
	"/cpu/classes/total:cpu-seconds",
	"/gc/cycles/total:gc-cycles",
}

type snapshot struct {
	objects, heapBytes uint64
	gcCPU, totalCPU    float64
	cycles             uint64
}

func readMetrics() snapshot {
	s := make([]metrics.Sample, len(sampleNames))
	for i, n := range sampleNames {
		s[i].Name = n
	}
	metrics.Read(s)
	return snapshot{
		objects:   s[0].Value.Uint64(),
		heapBytes: s[1].Value.Uint64(),
		gcCPU:     s[2].Value.Float64(),
		totalCPU:  s[3].Value.Float64(),
		cycles:    s[4].Value.Uint64(),
	}
}

// RSS returns the process's resident set size, or 0 where /proc is missing.
func RSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// settle collects twice (the second pass frees what finalizers and sweeps
// of the first released) and returns memory to the OS.
func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

// garbage holds each reader's latest allocation so that it escapes to the
// heap; one slot per reader, so writes never race.
var garbage [][]byte

// Measure stores cfg.Items entries in a new lib cache and measures it.
func Measure(lib caches.Lib, cfg Config) (Result, error) {
	res := Result{Cache: lib.Name, Items: cfg.Items}
	value := make([]byte, ValueSize)
	for i := range value {
		value[i] = byte('a' + i%26)
	}

	settle()
	before, rssBefore := readMetrics(), RSS()

	c, err := lib.New(int64(cfg.Items) * cfg.BudgetPerItem)
	if err != nil {
		return res, err
	}
	start := time.Now()
	key := make([]byte, 0, trace.KeyLen)
	for id := range uint64(cfg.Items) {
		key = trace.AppendKey(key[:0], id)
		v := value
		if lib.Retains {
			v = bytes.Clone(value)
		}
		c.Set(caches.Key{B: key}, v)
		if id%4096 == 4095 {
			c.Sync()
		}
	}
	c.Sync()
	res.FillTime = time.Since(start)

	settle()
	after := readMetrics()
	res.HeapObjects = int64(after.objects) - int64(before.objects)
	res.HeapBytes = int64(after.heapBytes) - int64(before.heapBytes)
	if rss := RSS(); rss > 0 && rssBefore > 0 {
		res.RSSBytes = rss - rssBefore
	}
	res.Resident = resident(c, cfg.Items)

	gcs := make([]time.Duration, max(cfg.ForcedGCs, 1))
	for i := range gcs {
		t := time.Now()
		runtime.GC()
		gcs[i] = time.Since(t)
	}
	slices.Sort(gcs)
	res.ForcedGC = gcs[len(gcs)/2]

	readPhase(c, cfg, &res)
	runtime.KeepAlive(c)
	c.Close()
	return res, nil
}

// resident samples about 100k entries (all of them for small caches).
func resident(c caches.Cache, items int) float64 {
	stride := max(items/100_000, 1)
	key := make([]byte, 0, trace.KeyLen)
	buf := make([]byte, 0, 2*ValueSize)
	found, probed := 0, 0
	for id := 0; id < items; id += stride {
		key = trace.AppendKey(key[:0], uint64(id))
		if _, ok := c.Get(buf[:0], caches.Key{B: key}); ok {
			found++
		}
		probed++
	}
	return float64(found) / float64(probed)
}

// readPhase reads uniformly random keys from GOMAXPROCS goroutines, each read
// followed by cfg.GarbagePerRead bytes of garbage, and records the
// collector's share of CPU time.
//
// The runtime advances its CPU classes only when a collection finishes
// marking, so the phase measures from the end of a forced collection to the
// end of the last collection it sees complete, and counts the reads done by
// then (to within a poll interval) to give the GC CPU time per read.
func readPhase(c caches.Cache, cfg Config, res *Result) {
	procs := runtime.GOMAXPROCS(0)
	garbage = make([][]byte, procs)
	runtime.GC()
	start := readMetrics()
	last, readsAtLast := start, int64(0)
	t0 := time.Now()
	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	for g := range procs {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			key := make([]byte, 0, trace.KeyLen)
			buf := make([]byte, 0, 2*ValueSize)
			for !stop.Load() {
				for range 256 {
					key = trace.AppendKey(key[:0], rng.Uint64N(uint64(cfg.Items)))
					c.Get(buf[:0], caches.Key{B: key})
					garbage[g] = make([]byte, cfg.GarbagePerRead)
				}
				reads.Add(256)
			}
		})
	}
	for {
		time.Sleep(5 * time.Millisecond)
		if m := readMetrics(); m.cycles != last.cycles {
			last, readsAtLast = m, reads.Load()
		}
		el := time.Since(t0)
		if el >= cfg.ReadMax || (el >= cfg.ReadMin && last.cycles-start.cycles >= uint64(cfg.ReadCycles)) {
			break
		}
	}
	stop.Store(true)
	wg.Wait()
	res.ReadsPerSec = float64(reads.Load()) / time.Since(t0).Seconds()
	res.GCCycles = last.cycles - start.cycles
	if dt := last.totalCPU - start.totalCPU; dt > 0 && readsAtLast > 0 {
		gc := last.gcCPU - start.gcCPU
		res.GCCPUFraction = gc / dt
		res.GCNanosPerRead = gc * 1e9 / float64(readsAtLast)
	}
	garbage = nil
}

// None is a stand-in cache that stores nothing: measured like the others, it
// gives the collector's cost for the read loop and its garbage alone.
var None = caches.Lib{Name: "no cache", New: func(int64) (caches.Cache, error) { return noCache{}, nil }}

type noCache struct{}

func (noCache) Get(dst []byte, _ caches.Key) ([]byte, bool) { return dst, false }
func (noCache) Set(caches.Key, []byte)                      {}
func (noCache) Sync()                                       {}
func (noCache) Close()                                      {}
