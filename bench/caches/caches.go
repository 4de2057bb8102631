// Package caches puts emcache and the caches it is compared with behind one
// small interface, each configured for the same byte budget.
//
// The budget rule: a cache whose constructor takes a size in bytes gets the
// budget as that size (emcache's MaxBytes, freecache's and fastcache's size,
// bigcache's HardMaxCacheSize); those sizes cover key, value and the
// per-entry header, not the hash index. The cost-based caches count the same
// things: otter weighs each entry as key + value + its node, and ristretto
// charges key + value and adds its own per-item cost.
package caches

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/VictoriaMetrics/fastcache"
	"github.com/allegro/bigcache/v3"
	"github.com/coocood/freecache"
	"github.com/dgraph-io/ristretto/v2"
	"github.com/emcache/emcache"
	"github.com/maypok86/otter/v2"
)

// Key is one key in both forms the libraries take, so that a benchmark with
// precomputed keys pays no conversion a real program would not pay. S may be
// empty; adapters then derive it from B.
type Key struct {
	B []byte
	S string
}

// Cache is the part of a cache's API the benchmarks exercise.
type Cache interface {
	// Get looks k up and returns its value and whether it was found. Caches
	// that copy on read append the value to dst (callers pass a reused
	// buffer so that a hit does not allocate); caches that store the
	// caller's slice return it as is.
	Get(dst []byte, k Key) ([]byte, bool)
	// Set stores v under k with no expiry.
	Set(k Key, v []byte)
	// Sync waits until every earlier Set has been applied (ristretto
	// applies sets asynchronously) and the cache has done the housekeeping
	// they left pending (otter drains its write buffer lazily), so that a
	// measurement that follows does not pay for what came before it.
	Sync()
	// Close releases the cache's goroutines and memory.
	Close()
}

// Lib describes one library.
type Lib struct {
	Name string
	// Retains reports that Set keeps the caller's value slice (and a key
	// string) instead of copying them into the cache's own storage, so a
	// memory measurement must give every entry its own value.
	Retains bool
	// New returns an empty cache configured for budget bytes.
	New func(budget int64) (Cache, error)
}

// All lists emcache first, then its competitors.
var All = []Lib{
	{Name: "emcache", New: newEmcache},
	{Name: "otter", Retains: true, New: newOtter},
	{Name: "ristretto", Retains: true, New: newRistretto},
	{Name: "freecache", New: newFreecache},
	{Name: "fastcache", New: newFastcache},
	{Name: "bigcache", New: newBigcache},
}

// ByName returns the library called name.
func ByName(name string) (Lib, error) {
	for _, l := range All {
		if l.Name == name {
			return l, nil
		}
	}
	return Lib{}, fmt.Errorf("caches: unknown cache %q", name)
}

// lookupString views k as a string for a lookup that does not retain it.
func lookupString(k Key) string {
	if k.S != "" || len(k.B) == 0 {
		return k.S
	}
	return unsafe.String(&k.B[0], len(k.B))
}

// ownedString returns k as a string the cache may keep.
func ownedString(k Key) string {
	if k.S != "" {
		return k.S
	}
	return string(k.B)
}

type emcacheCache struct{ c *emcache.Cache }

func newEmcache(budget int64) (Cache, error) {
	c, err := emcache.New(emcache.Config{MaxBytes: budget})
	if err != nil {
		return nil, err
	}
	return emcacheCache{c}, nil
}

func (e emcacheCache) Get(dst []byte, k Key) ([]byte, bool) {
	dst, _, err := e.c.GetAppend(dst, k.B)
	return dst, err == nil
}

func (e emcacheCache) Set(k Key, v []byte) { _ = e.c.Set(k.B, v, 0) }
func (e emcacheCache) Sync()               {}
func (e emcacheCache) Close()              { _ = e.c.Close() }

// otterNodeBytes is what otter allocates per entry besides the key and value
// bytes: its node for a string key and a []byte value (32-byte header,
// 16-byte string header, 24-byte slice header: 72 bytes, an 80-byte size
// class). Counting it puts otter's weight on the same footing as the byte
// caches, whose budgets include their entry headers.
const otterNodeBytes = 80

type otterCache struct{ c *otter.Cache[string, []byte] }

func newOtter(budget int64) (Cache, error) {
	c, err := otter.New(&otter.Options[string, []byte]{
		MaximumWeight: uint64(budget),
		Weigher: func(k string, v []byte) uint32 {
			return uint32(len(k) + len(v) + otterNodeBytes)
		},
	})
	if err != nil {
		return nil, err
	}
	return otterCache{c}, nil
}

func (o otterCache) Get(_ []byte, k Key) ([]byte, bool) { return o.c.GetIfPresent(lookupString(k)) }
func (o otterCache) Set(k Key, v []byte)                { o.c.Set(ownedString(k), v) }
func (o otterCache) Sync()                              { o.c.CleanUp() }
func (o otterCache) Close()                             { o.c.StopAllGoroutines() }

// ristrettoEntryEstimate is a typical entry's cost (16-byte key, 100-byte
// value, ristretto's internal item), used only to size its admission
// counters at the recommended ten per entry.
const ristrettoEntryEstimate = 170

type ristrettoCache struct {
	c *ristretto.Cache[string, []byte]
}

func newRistretto(budget int64) (Cache, error) {
	c, err := ristretto.NewCache(&ristretto.Config[string, []byte]{
		NumCounters: max(10*budget/ristrettoEntryEstimate, 1000),
		MaxCost:     budget,
		BufferItems: 64,
	})
	if err != nil {
		return nil, err
	}
	return ristrettoCache{c}, nil
}

func (r ristrettoCache) Get(_ []byte, k Key) ([]byte, bool) { return r.c.Get(lookupString(k)) }

// Set hashes the key synchronously and keeps only the hash, so the key
// needs no owned copy.
func (r ristrettoCache) Set(k Key, v []byte) {
	r.c.Set(lookupString(k), v, int64(len(k.B)+len(v)))
}
func (r ristrettoCache) Sync()  { r.c.Wait() }
func (r ristrettoCache) Close() { r.c.Close() }

type freecacheCache struct{ c *freecache.Cache }

func newFreecache(budget int64) (Cache, error) {
	return freecacheCache{freecache.NewCache(int(budget))}, nil
}

func (f freecacheCache) Get(dst []byte, k Key) ([]byte, bool) {
	// GetWithBuf copies into dst's spare capacity without allocating.
	v, err := f.c.GetWithBuf(k.B, dst[len(dst):cap(dst)])
	if err != nil {
		return dst, false
	}
	return append(dst, v...), true
}

func (f freecacheCache) Set(k Key, v []byte) { _ = f.c.Set(k.B, v, 0) }
func (f freecacheCache) Sync()               {}
func (f freecacheCache) Close()              { f.c.Clear() }

type fastcacheCache struct{ c *fastcache.Cache }

// newFastcache rounds the budget up to fastcache's granularity of 512
// buckets of 64 KiB chunks (32 MiB), as fastcache.New itself does.
func newFastcache(budget int64) (Cache, error) {
	return fastcacheCache{fastcache.New(int(budget))}, nil
}

func (f fastcacheCache) Get(dst []byte, k Key) ([]byte, bool) { return f.c.HasGet(dst, k.B) }
func (f fastcacheCache) Set(k Key, v []byte)                  { f.c.Set(k.B, v) }
func (f fastcacheCache) Sync()                                {}
func (f fastcacheCache) Close()                               { f.c.Reset() }

// bigcacheEntryEstimate sizes bigcache's initial queues so that it
// allocates its budget up front, as freecache does, instead of growing by
// copying during a benchmark.
const bigcacheEntryEstimate = 160

type bigcacheCache struct{ c *bigcache.BigCache }

func newBigcache(budget int64) (Cache, error) {
	const mib = 1 << 20
	if budget < mib {
		return nil, fmt.Errorf("caches: bigcache needs a budget of at least 1 MiB, got %d", budget)
	}
	c, err := bigcache.NewBigCache(bigcache.Config{
		Shards: 1024,
		// Entries never age out: eviction happens only when the budget is full,
		// as in every other cache here.
		LifeWindow:         100 * 365 * 24 * time.Hour,
		MaxEntriesInWindow: int(budget / bigcacheEntryEstimate),
		MaxEntrySize:       bigcacheEntryEstimate,
		HardMaxCacheSize:   int(budget / mib),
		// CleanWindow stays 0: no cleaner goroutine, nothing expires.
	})
	if err != nil {
		return nil, err
	}
	return bigcacheCache{c}, nil
}

// Get has no zero-copy form in bigcache v3: every hit allocates a copy.
func (b bigcacheCache) Get(dst []byte, k Key) ([]byte, bool) {
	v, err := b.c.Get(lookupString(k))
	if err != nil {
		return dst, false
	}
	return v, true
}

// Set copies the key into bigcache's queue, so the key needs no owned copy.
func (b bigcacheCache) Set(k Key, v []byte) { _ = b.c.Set(lookupString(k), v) }
func (b bigcacheCache) Sync()               {}
func (b bigcacheCache) Close()              { _ = b.c.Close() }
