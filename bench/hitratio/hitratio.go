// Package hitratio replays synthetic traces against every cache with the
// same byte budget, cache-aside: a Get that misses is followed by a Set of
// the key.
package hitratio

import (
	"fmt"
	"runtime"
	"slices"

	"github.com/emcache/emcache/bench/caches"
	"github.com/emcache/emcache/bench/trace"
)

// ValueSize is the size of every value stored.
const ValueSize = 100

// Config sizes a hit-ratio run.
type Config struct {
	// Budget is each cache's size in bytes. fastcache allocates in units of
	// 32 MiB, so budgets below that are not comparable.
	Budget int64
	// Keys is the key space of the Zipf traces.
	Keys uint64
	// Requests is the length of every trace.
	Requests int
	// Seed makes every trace reproducible.
	Seed uint64
	// Only, if not empty, names the traces to run; the others are skipped.
	Only []string
}

// Default is what the report runs: the budget holds at most about 27% of
// the Zipf key space, and each trace is long enough for the caches to fill
// many times over.
var Default = Config{Budget: 64 << 20, Keys: 2_000_000, Requests: 5_000_000, Seed: 1}

// Quick is a smoke-test size for CI.
var Quick = Config{Budget: 32 << 20, Keys: 500_000, Requests: 600_000, Seed: 1}

// WorkingSetShare returns cfg with a budget of percent of the Zipf key
// space's payload (key and value bytes), the other budget the report runs:
// 10% is a small cache, where a policy's choices matter most.
func (cfg Config) WorkingSetShare(percent int64) Config {
	cfg.Budget = int64(cfg.Keys) * (trace.KeyLen + ValueSize) * percent / 100
	return cfg
}

// PayloadCapacity is how many entries the budget could hold if entries cost
// only their key and value: an upper bound for every cache.
func (cfg Config) PayloadCapacity() int {
	return int(cfg.Budget / (trace.KeyLen + ValueSize))
}

// Trace is one named, lazily generated trace of key ids.
type Trace struct {
	Name string
	Gen  func() []uint64
}

// Traces returns the traces of cfg:
//   - zipf0.7, zipf0.9, zipf1.1: Zipf over cfg.Keys keys;
//   - zipf0.9+scan: Zipf s=0.9 where every 4 capacity/4 requests come
//     capacity/4 requests of a sequential scan of fresh keys, each seen once;
//   - loop: keys 0..1.1 capacity in order, over and over;
//   - churn: Zipf s=0.9 over a window of cfg.Keys keys, newest first, that
//     slides by one key every churnShiftEvery requests.
//
// capacity is PayloadCapacity, so the loop is larger than every cache.
func (cfg Config) Traces() []Trace {
	capacity := cfg.PayloadCapacity()
	scanLen := capacity / 4
	var ts []Trace
	for _, s := range []float64{0.7, 0.9, 1.1} {
		ts = append(ts, Trace{
			Name: fmt.Sprintf("zipf%.1f", s),
			Gen:  func() []uint64 { return trace.ZipfTrace(cfg.Seed, s, cfg.Keys, cfg.Requests) },
		})
	}
	ts = append(ts,
		Trace{Name: "zipf0.9+scan", Gen: func() []uint64 {
			return trace.ZipfScanTrace(cfg.Seed, 0.9, cfg.Keys, cfg.Requests, 4*scanLen, scanLen)
		}},
		Trace{Name: "loop", Gen: func() []uint64 {
			return trace.LoopTrace(uint64(capacity)*11/10, cfg.Requests)
		}},
		Trace{Name: "churn", Gen: func() []uint64 {
			return trace.ChurnTrace(cfg.Seed, 0.9, cfg.Keys, cfg.Requests, churnShiftEvery)
		}},
	)
	return ts
}

// churnShiftEvery is how many requests the churn trace's window waits
// before it slides by one key: over the default 5 million requests it moves
// by 1.25 million keys, so the popular head turns over many times while a
// cache of either budget fills.
const churnShiftEvery = 4

// Result is the outcome of one trace on one cache.
type Result struct {
	Cache, Trace   string
	Requests, Hits int
	// Held is how many of the Zipf key space's keys the cache held at the
	// end of the trace named by HeldAfter, else 0. Caches count their
	// entries against the budget differently, so this shows what the same
	// budget buys in each.
	Held int
}

// HeldAfter is the trace after which Run counts the entries held.
const HeldAfter = "zipf0.9"

// Ratio is the hit ratio.
func (r Result) Ratio() float64 { return float64(r.Hits) / float64(r.Requests) }

// Replay runs tr against c cache-aside and returns the number of hits.
func Replay(c caches.Cache, tr []uint64, value []byte) int {
	key := make([]byte, 0, trace.KeyLen)
	buf := make([]byte, 0, 2*ValueSize)
	hits := 0
	for _, id := range tr {
		key = trace.AppendKey(key[:0], id)
		if _, ok := c.Get(buf[:0], caches.Key{B: key}); ok {
			hits++
			continue
		}
		c.Set(caches.Key{B: key}, value)
	}
	return hits
}

// held counts the keys 0..keys-1 that c holds.
func held(c caches.Cache, keys uint64) int {
	c.Sync()
	key := make([]byte, 0, trace.KeyLen)
	buf := make([]byte, 0, 2*ValueSize)
	n := 0
	for id := range keys {
		key = trace.AppendKey(key[:0], id)
		if _, ok := c.Get(buf[:0], caches.Key{B: key}); ok {
			n++
		}
	}
	return n
}

// Run replays every trace of cfg against every lib, one fresh cache at a
// time, and calls each (if not nil) as results arrive.
func Run(cfg Config, libs []caches.Lib, each func(Result)) ([]Result, error) {
	value := make([]byte, ValueSize)
	var out []Result
	for _, tr := range cfg.Traces() {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, tr.Name) {
			continue
		}
		ids := tr.Gen()
		for _, lib := range libs {
			c, err := lib.New(cfg.Budget)
			if err != nil {
				return out, fmt.Errorf("%s: %w", lib.Name, err)
			}
			r := Result{Cache: lib.Name, Trace: tr.Name, Requests: len(ids), Hits: Replay(c, ids, value)}
			if tr.Name == HeldAfter {
				r.Held = held(c, cfg.Keys)
			}
			c.Close()
			runtime.GC() // the next cache does not pay for this one's garbage
			out = append(out, r)
			if each != nil {
				each(r)
			}
		}
	}
	return out, nil
}
