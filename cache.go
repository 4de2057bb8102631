// Package emcache is an in-process cache with memcached's semantics that can
// also serve the memcached protocols over TCP.
//
// Items live in large byte arenas indexed by pointer-free hash tables, so the
// garbage collector does no work per item, and memory is bounded by bytes as
// with memcached's -m. Eviction follows S3-FIFO: new items enter a small FIFO
// ring, items read again there are promoted to a main ring managed as CLOCK,
// and keys evicted from the small ring unread are remembered in a ghost table
// so that their next store goes straight to the main ring.
//
// The Go API takes TTLs as time.Duration; memcached's exptime rules (relative
// seconds up to 30 days, absolute Unix times beyond) apply on the wire only.
// [Typed] gives string keys, values of a Go type through a [Codec] and a miss
// that is no error; [Cache.GetOrLoad] loads a missing key once however many
// callers miss it, holding it with the same lease as the meta protocol's
// `mg <key> N`, so that network clients and Go callers never load it twice.
package emcache

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Error is the type of the constant errors returned by the cache.
type Error string

func (e Error) Error() string { return string(e) }

// Errors returned by [Cache] methods; compare with errors.Is.
const (
	// ErrNotFound: no live item has the key.
	ErrNotFound = Error("emcache: key not found")
	// ErrExists: CompareAndSwap's CAS did not match the item's (it changed).
	ErrExists = Error("emcache: item modified since it was read (CAS mismatch)")
	// ErrNotStored: Add found the key, or Replace, Append or Prepend did not.
	ErrNotStored = Error("emcache: item not stored")
	// ErrTooLarge: the item exceeds Config.MaxItemSize.
	ErrTooLarge = Error("emcache: item larger than the maximum item size")
	// ErrKeyInvalid: the key is empty or longer than MaxKeyLen.
	ErrKeyInvalid = Error("emcache: key must be 1 to 250 bytes")
	// ErrNotNumeric: Incr or Decr on a value that is not a decimal uint64.
	ErrNotNumeric = Error("emcache: value is not a decimal 64-bit unsigned integer")
	// ErrNoMemory: no room could be made (Config.NoEvict).
	ErrNoMemory = Error("emcache: out of memory storing item")
	// ErrClosed: the cache was closed.
	ErrClosed = Error("emcache: cache is closed")
	// ErrNotInitialized: the Cache was not made by New (a zero Cache).
	ErrNotInitialized = Error("emcache: Cache not made by New")
	// ErrMaxBytes: SetMaxBytes was given a limit that cannot hold the
	// largest item in every shard.
	ErrMaxBytes = Error("emcache: memory limit too small for the maximum item size")
	// ErrMaxConnsTooLow: ServerConfig.MaxConns leaves no connection for
	// clients once ReservedFDs and the listeners are counted.
	ErrMaxConnsTooLow = Error("emcache: MaxConns too low")
)

// MaxKeyLen is the longest key memcached accepts.
//
// A key is 1 to MaxKeyLen bytes of any value, in-process as in memcached's
// binary protocol. The text and meta protocols split commands at spaces and
// end them at newlines, so a key holding a space or a control character
// cannot be named there as it is: meta clients reach it with the b flag
// (the key base64-encoded), and mg's k flag returns it encoded, since the
// cache marks such keys as binary when the Go API stores them.
const MaxKeyLen = 250

// wireKey reports whether a text-protocol client can send key as it is:
// no space, control character or DEL, the bytes memcached's protocol.txt
// keeps out of keys.
func wireKey(key []byte) bool {
	// Eight bytes at a time: a Go store scans every key it stores.
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; len(key) >= 8; key = key[8:] {
		x := le.Uint64(key)
		y := x ^ 0x7f*ones
		// The high bit of a byte survives in the first term where the byte
		// is below 0x21, in the second where it is 0x7f (exact for any
		// byte: a byte of 0x80 or above clears it through the &^).
		if ((x-0x21*ones)&^x|(y-ones)&^y)&highs != 0 {
			return false
		}
	}
	for _, b := range key {
		if b <= ' ' || b == 0x7f {
			return false
		}
	}
	return true
}

// ItemOverhead is what MaxItemSize counts beyond an item's key and value,
// as memcached counts it, so that both accept the same largest item: its
// 48-byte item header, an 8-byte CAS, the key's terminating NUL and the
// value's CRLF. As in memcached, an item with non-zero client flags counts
// 4 bytes more, and a cache without CAS values (NoCAS) 8 fewer. The arena
// holds less than that: a record header is 6 bytes for a value under 128
// bytes, plus 4 for client flags, 4 for an expiry and 8 for a CAS that
// must move with the item, each only when the item has one (Stats.Bytes
// counts what items use).
const ItemOverhead = 59

// itemSize is an item's size as MaxItemSize limits it (ItemOverhead).
func (c *Cache) itemSize(keyLen, valLen int, flags uint32) int {
	n := ItemOverhead + keyLen + valLen
	if flags != 0 {
		n += 4
	}
	if c.noCAS {
		n -= 8
	}
	return n
}

// Defaults and limits of [Config].
const (
	DefaultMaxBytes    = 64 << 20 // memcached -m 64
	DefaultMaxItemSize = 1 << 20  // memcached -I 1m
	MinMaxItemSize     = 1024     // memcached refuses -I below 1 KiB

	// maxShards bounds the shard count; the CAS low bits carry the shard id.
	maxShards = 256
	// minShardItems keeps every shard able to hold several largest items,
	// so S3-FIFO's rings work and one huge item never evicts a whole shard
	// (the least SetMaxBytes may leave).
	minShardItems = 4
	// shardItems is how many largest items New gives each shard room for:
	// values near the limit then fill a shard's rings with little left
	// over, and large ones spread over few shards fill them evenly.
	shardItems = 16
	minShards  = 4
	// maxShardSize keeps arena offsets within the index slot's 32 bits.
	maxShardSize = math.MaxUint32 - 1
)

// relativeExptimeMax is memcached's REALTIME_MAXDELTA: larger exptimes are
// absolute Unix times.
const relativeExptimeMax = 60 * 60 * 24 * 30

// tickInterval paces the coarse clock; every crawlTicks ticks the crawler
// visits a crawlPass-th of each shard's index, reclaiming expired items, so
// a full pass takes crawlPass seconds whatever the cache's size and an idle
// cache costs next to nothing. (A per-shard minimum would re-read every
// record of a cache of many small shards each second: 4% of a busy
// server's CPU at 100k items over 256 shards.) Pending prefix deletions are
// swept at least sweepMinRecords records a shard a step, as a shard's log
// may hold many more records, dead ones among them, than its index slots.
// While a shard is new or flushed, and after a pass that met no item with
// an expiry, its passes take idleCrawlPass seconds (memcached's crawler
// waits up to an hour when it finds nothing to reclaim): a cache of items
// without an expiry would otherwise read each record every crawlPass
// seconds for nothing, a cache miss a record (30% of a core at 10M items,
// and each shard's lock held a millisecond every second). They only keep
// idle times from wrapping (maxIdle). A store with an expiry, or a pass
// that meets one, brings back the full pace.
const (
	tickInterval    = 250 * time.Millisecond
	crawlTicks      = 4
	crawlPass       = 8
	idleCrawlPass   = 30 * 60
	sweepMinRecords = 1024
)

// Config configures a [Cache]. The zero value gives memcached's defaults.
type Config struct {
	// MaxBytes bounds the arena memory for keys, values and item headers
	// (memcached's -m). The index is extra: about 11 bytes per item.
	// Default DefaultMaxBytes.
	MaxBytes int64
	// MaxItemSize bounds one item, header and key included (-I).
	// Default DefaultMaxItemSize; at least MinMaxItemSize, at most MaxBytes/2.
	MaxItemSize int
	// NoEvict makes stores fail with ErrNoMemory instead of evicting (-M).
	NoEvict bool
	// NoCAS disables CAS values: they read as 0 (-C).
	NoCAS bool
	// Now is the clock, for tests; it is called from every operation and
	// from the background reclaimer, so it must be safe for concurrent use.
	// nil means the system clock, read by the background goroutine a few
	// times a second rather than by every operation (memcached also keeps
	// a coarse clock). Expiry has one-second resolution, like memcached's.
	Now func() time.Time
	// LoadLease bounds how long a GetOrLoad's load holds its key: the TTL
	// of the lease item, as a meta client's `mg <key> N<ttl>` gives it.
	// When it ends before the load does, a network client may win the key
	// and the loaded value is only returned. Default DefaultLoadLease.
	LoadLease time.Duration
	// RefreshAhead, when not 0, makes GetOrLoad refresh an item whose
	// remaining TTL is below it, as a meta client's `mg <key> R<ttl>`
	// does: the first reader to see it starts one reload in the background
	// and every reader is served the current value meanwhile.
	RefreshAhead time.Duration
	// MemoryFile, if set, names a file that holds the items' memory
	// (memcached's -e), so that they survive a restart: Close saves the
	// state New needs to resume from it beside it (MemoryFile+MetaSuffix),
	// and the next New with the same file and settings starts with every
	// item that was there, TTLs having run on meanwhile. After a crash or
	// with other settings New starts empty ([Cache.WarmStart] says why).
	// Put it on a memory file system (tmpfs, /dev/shm): every store writes
	// to it. MaxBytes cannot change at run time then (SetMaxBytes).
	MemoryFile string
	// OnRemove, when set, is called for every item that leaves the cache,
	// with its key and the cause. It runs on the goroutine whose operation
	// removed the item (a store that evicted, a read that found it
	// expired, the background goroutine reclaiming, the caller of FlushAll
	// or DeletePrefix), after that operation let go of its locks and
	// before it returns, so the callback may use the cache, and a slow one
	// slows that operation alone. The key is valid only during the call.
	// Calls for removals in different shards may run at once. flush_all
	// reports each item it drops (holding the keys of one shard at a time
	// for the calls), DeletePrefix each item as it is reclaimed (see
	// there). A panic in the callback reaches the
	// operation's caller, and the removals after it in that operation go
	// unreported. The callback must not call Close or SetMaxBytes.
	OnRemove func(key []byte, cause RemoveCause)
}

// Item is what a retrieval returns.
type Item struct {
	// Value is the item's data.
	Value []byte
	// Flags are the opaque client flags stored with the item.
	Flags uint32
	// Expires is when the item expires, on the cache's clock (Config.Now),
	// to the second; the zero Time means never.
	Expires time.Time
	// CAS identifies this version of the item for CompareAndSwap: no other
	// version of any item in the cache ever has it. Values are not
	// consecutive: most derive from where the item is stored (in a NoEvict
	// cache, from a counter per shard, as memcached's from one counter).
	// 0 with Config.NoCAS.
	CAS uint64
}

// Stats are the cache's counters, named after memcached's `stats` fields.
type Stats struct {
	CurrItems        uint64 // curr_items
	TotalItems       uint64 // total_items
	Bytes            uint64 // bytes
	LimitMaxbytes    uint64 // limit_maxbytes
	Evictions        uint64 // evictions
	ExpiredUnfetched uint64 // expired_unfetched
	EvictedUnfetched uint64 // evicted_unfetched
	Reclaimed        uint64 // reclaimed
	CrawlerReclaimed uint64 // crawler_reclaimed
	GetHits          uint64 // get_hits
	GetMisses        uint64 // get_misses
	GetExpired       uint64 // get_expired
	GetFlushed       uint64 // get_flushed: lookups that met an item DeletePrefix removed
	CmdGet           uint64 // cmd_get
	CmdSet           uint64 // cmd_set
	CmdTouch         uint64 // cmd_touch
	CmdFlush         uint64 // cmd_flush
	CmdFlushPrefix   uint64 // cmd_flush_prefix: DeletePrefix calls and flush_prefix commands
	CasMisses        uint64 // cas_misses
	CasHits          uint64 // cas_hits
	CasBadval        uint64 // cas_badval
	IncrMisses       uint64 // incr_misses
	IncrHits         uint64 // incr_hits
	DecrMisses       uint64 // decr_misses
	DecrHits         uint64 // decr_hits
	DeleteMisses     uint64 // delete_misses
	DeleteHits       uint64 // delete_hits
	TouchHits        uint64 // touch_hits
	TouchMisses      uint64 // touch_misses
	StoreTooLarge    uint64 // store_too_large
	StoreNoMemory    uint64 // store_no_memory
}

// Cache is a memory-bounded key-value cache with memcached's semantics. It is
// safe for concurrent use.
type Cache struct {
	shards      []*shard
	shardMask   uint64
	maxBytes    atomic.Int64
	maxItemSize int
	noCAS       bool
	now         func() time.Time

	// coarseNow is the system clock's Unix second, kept by the background
	// goroutine when Config.Now is nil; 0 once it stopped.
	coarseNow atomic.Int64
	// flushAt is a pending delayed flush_all, in Unix seconds (0 = none).
	flushAt  atomic.Int64
	cmdFlush atomic.Uint64
	// prefixMu serialises DeletePrefix; prefixSeq numbers its calls.
	prefixMu       sync.Mutex
	prefixSeq      uint64
	cmdFlushPrefix atomic.Uint64
	// onRemove is Config.OnRemove.
	onRemove func(key []byte, cause RemoveCause)
	// resizeMu serialises SetMaxBytes.
	resizeMu sync.Mutex
	// evicted is told of every eviction, under the shard's lock; nil for
	// none. A server sets it for its watchers.
	evicted atomic.Pointer[evictFunc]
	// mf is the memory file (Config.MemoryFile); nil for none.
	mf *memFile

	// leases are the loads and waits of GetOrLoad (load.go); loadLease is
	// Config.LoadLease as an exptime, refreshAhead Config.RefreshAhead in
	// seconds.
	leases       leaseTable
	loadLease    int64
	refreshAhead uint32

	stop      chan struct{}
	stopOnce  sync.Once
	crawlDone chan struct{}
}

// New returns a cache configured by cfg, with its background reclaimer
// running until Close.
func New(cfg Config) (*Cache, error) {
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxItemSize == 0 {
		cfg.MaxItemSize = DefaultMaxItemSize
		if int64(cfg.MaxItemSize) > cfg.MaxBytes/2 {
			cfg.MaxItemSize = int(cfg.MaxBytes / 2)
		}
	}
	switch {
	case cfg.MaxBytes < 2*MinMaxItemSize:
		return nil, fmt.Errorf("emcache: MaxBytes %d is below the minimum of %d", cfg.MaxBytes, 2*MinMaxItemSize)
	case cfg.MaxItemSize < MinMaxItemSize:
		return nil, fmt.Errorf("emcache: MaxItemSize %d is below the minimum of %d", cfg.MaxItemSize, MinMaxItemSize)
	case int64(cfg.MaxItemSize) > cfg.MaxBytes/2:
		return nil, fmt.Errorf("emcache: MaxItemSize %d is above half of MaxBytes (%d)", cfg.MaxItemSize, cfg.MaxBytes)
	case cfg.LoadLease < 0 || cfg.LoadLease > relativeExptimeMax*time.Second:
		return nil, fmt.Errorf("emcache: LoadLease %v is not between 0 and 30 days", cfg.LoadLease)
	case cfg.RefreshAhead < 0 || cfg.RefreshAhead > relativeExptimeMax*time.Second:
		return nil, fmt.Errorf("emcache: RefreshAhead %v is not between 0 and 30 days", cfg.RefreshAhead)
	}
	if cfg.LoadLease == 0 {
		cfg.LoadLease = DefaultLoadLease
	}
	n := shardCount(cfg.MaxBytes, cfg.MaxItemSize)
	if cfg.MaxBytes/int64(n) > maxShardSize {
		return nil, fmt.Errorf("emcache: MaxBytes %d is above the maximum of %d", cfg.MaxBytes, int64(maxShards)*maxShardSize)
	}
	c := &Cache{
		shards:      make([]*shard, n),
		shardMask:   uint64(n - 1),
		maxItemSize: cfg.MaxItemSize,
		noCAS:       cfg.NoCAS,
		now:         cfg.Now,
		onRemove:    cfg.OnRemove,
		stop:        make(chan struct{}),
		crawlDone:   make(chan struct{}),
		leases:      leaseTable{m: make(map[string]*flight)},
	}
	// Both are at most 30 days: exptime gives relative seconds.
	c.loadLease = c.exptime(cfg.LoadLease)
	c.refreshAhead = uint32(c.exptime(cfg.RefreshAhead))
	if c.now == nil {
		c.coarseNow.Store(time.Now().Unix())
	}
	c.maxBytes.Store(cfg.MaxBytes)
	shift := uint(bits.TrailingZeros(uint(n)))
	capacity := uint64(cfg.MaxBytes / int64(n))
	if cfg.MemoryFile != "" {
		mf, shards, state, err := openMemoryFile(&cfg, n, capacity, shift)
		if err != nil {
			return nil, err
		}
		c.mf, c.shards = mf, shards
		c.flushAt.Store(int64(state.flushAt))
		c.cmdFlush.Store(state.cmdFlush)
		c.clock() // runs a delayed flush_all that fell due while stopped
	} else {
		for i := range c.shards {
			c.shards[i] = newShard(uint64(i), shift, capacity, cfg.NoEvict, initialShardSlots(n))
		}
	}
	for _, s := range c.shards {
		s.evicted = &c.evicted
		s.onRemove = cfg.OnRemove
	}
	go c.crawler()
	return c, nil
}

// evictFunc receives an evicted item: its key (valid during the call),
// whether it was read, its remaining TTL (-1: none), the seconds since its
// last access and its value's length.
type evictFunc func(key []byte, fetched bool, ttl int64, idle uint32, size int)

// setEvictHook makes f receive every eviction.
func (c *Cache) setEvictHook(f evictFunc) { c.evicted.Store(&f) }

// shardCount picks the largest power of two, up to maxShards, that leaves
// every shard room for shardItems of the largest items; but at least
// minShards where each still has room for minShardItems of them, so that a
// small cache's goroutines do not all wait on one lock.
func shardCount(maxBytes int64, maxItemSize int) int {
	n := 1
	for n < maxShards && (maxBytes/int64(2*n) >= int64(shardItems*maxItemSize) ||
		2*n <= minShards && maxBytes/int64(2*n) >= int64(minShardItems*maxItemSize)) {
		n *= 2
	}
	return n
}

// Close stops the background goroutine and releases the cache's memory at
// once; every later operation fails with ErrClosed (or misses). A cache that
// is dropped without Close has its memory released when it is collected.
// With Config.MemoryFile, Close first saves the state the next New resumes
// from, and returns the error that kept it from saving, if any.
func (c *Cache) Close() error {
	if c.stop == nil {
		return ErrNotInitialized
	}
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.crawlDone
	for _, s := range c.shards {
		s.mu.Lock()
	}
	var err error
	if c.mf != nil && !c.shards[0].closed() {
		err = c.mf.save(c)
		c.mf.f.Close()
	}
	for _, s := range c.shards {
		s.release()
		s.mu.Unlock()
	}
	return err
}

// clock returns the current Unix second, first running a delayed flush_all
// whose time has come.
func (c *Cache) clock() uint32 {
	now := c.unixNow()
	if at := c.flushAt.Load(); at != 0 && now >= at && c.flushAt.CompareAndSwap(at, 0) {
		c.flushNow()
	}
	return uint32(now)
}

func (c *Cache) unixNow() int64 {
	if c.now != nil {
		return c.now().Unix()
	}
	if now := c.coarseNow.Load(); now != 0 {
		return now
	}
	return time.Now().Unix() // closed: no background clock
}

// exptime converts a Go TTL to the memcached exptime the engine takes,
// unambiguously: 0 stays no expiry, a negative TTL is already expired (-1),
// up to 30 days it is relative seconds, rounded up so that a positive TTL
// always expires, and beyond that the absolute Unix second it ends at.
func (c *Cache) exptime(ttl time.Duration) int64 {
	switch {
	case ttl == 0:
		return 0
	case ttl < 0:
		return -1
	}
	secs := int64(ttl / time.Second)
	if ttl%time.Second != 0 {
		secs++
	}
	if secs <= relativeExptimeMax {
		return secs
	}
	return c.unixNow() + secs // expiry caps it at the last Unix second it holds
}

// expiresAt is Item.Expires for a record's expiry.
func expiresAt(exp uint32) time.Time {
	if exp == 0 {
		return time.Time{}
	}
	return time.Unix(int64(exp), 0)
}

// expiry converts a memcached exptime to an absolute Unix second.
func expiry(exptime int64, now uint32) uint32 {
	switch {
	case exptime == 0:
		return 0
	case exptime < 0:
		return 1 // long past
	case exptime <= relativeExptimeMax:
		return now + uint32(exptime)
	case exptime >= math.MaxUint32:
		return math.MaxUint32
	default:
		return uint32(exptime)
	}
}

func (c *Cache) shardFor(h uint64) *shard { return c.shards[h&c.shardMask] }

func (c *Cache) casOut(cas uint64) uint64 {
	if c.noCAS {
		return 0
	}
	return cas
}

// Get returns a copy of the item stored under key, or ErrNotFound.
func (c *Cache) Get(key []byte) (Item, error) {
	_, it, err := c.GetAppend(nil, key)
	return it, err
}

// GetAppend appends the value stored under key to dst and returns the
// extended slice and the item, whose Value aliases the appended bytes. A hit
// allocates nothing when dst has room.
func (c *Cache) GetAppend(dst, key []byte) ([]byte, Item, error) {
	return c.getAppend(dst, key, false, 0)
}

// GetAndTouch returns the item under key after giving it a new TTL
// (memcached's gat): 0 for none.
func (c *Cache) GetAndTouch(key []byte, ttl time.Duration) (Item, error) {
	_, it, err := c.getAppend(nil, key, true, c.exptime(ttl))
	return it, err
}

func (c *Cache) getAppend(dst, key []byte, touch bool, exptime int64) ([]byte, Item, error) {
	var it Item
	res := c.viewItem(key, touch, exptime, true, func(value []byte, flags, exp uint32, cas uint64) {
		if dst == nil {
			dst = make([]byte, 0, len(value))
		}
		n := len(dst)
		dst = append(dst, value...)
		it = Item{Value: dst[n:len(dst):len(dst)], Flags: flags, Expires: expiresAt(exp), CAS: cas}
	})
	return dst, it, res.err()
}

// GetMulti returns the items found among keys, keyed by string(key). A
// miss is no error; any other failure is reported as a [KeyError] for its
// key (joined with errors.Join when there are several), while the items
// found are still returned. A closed or uninitialised cache returns its
// error alone.
func (c *Cache) GetMulti(keys [][]byte) (map[string]Item, error) {
	found := make(map[string]Item, len(keys))
	var errs []error
	for _, k := range keys {
		it, err := c.Get(k)
		switch {
		case err == nil:
			found[string(k)] = it
		case err == ErrClosed || err == ErrNotInitialized:
			return nil, err
		case err != ErrNotFound:
			errs = append(errs, &KeyError{Key: string(k), Err: err})
		}
	}
	return found, errors.Join(errs...)
}

// KeyError is the failure of one key of a [Cache.GetMulti].
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return fmt.Sprintf("emcache: key %q: %v", e.Key, e.Err) }

// Unwrap returns the key's error, so that errors.Is sees it.
func (e *KeyError) Unwrap() error { return e.Err }

// Set stores value under key unconditionally, expiring after ttl (0: never),
// with client flags 0 ([Cache.Store] sets them). When the item is too large or cannot be stored, any old item under key is
// removed, as memcached does, so no reader sees a value older than the one
// that failed.
func (c *Cache) Set(key, value []byte, ttl time.Duration) error {
	_, err := c.Store(key, value, StoreOptions{TTL: ttl})
	return err
}

// Add stores value only if key holds no live item, else ErrNotStored.
func (c *Cache) Add(key, value []byte, ttl time.Duration) error {
	_, err := c.Store(key, value, StoreOptions{Mode: ModeAdd, TTL: ttl})
	return err
}

// Replace stores value only if key holds a live item, else ErrNotStored.
func (c *Cache) Replace(key, value []byte, ttl time.Duration) error {
	_, err := c.Store(key, value, StoreOptions{Mode: ModeReplace, TTL: ttl})
	return err
}

// Append adds value after the existing item's data, keeping its flags and
// expiration; ErrNotStored if key holds no live item.
func (c *Cache) Append(key, value []byte) error {
	_, err := c.Store(key, value, StoreOptions{Mode: ModeAppend})
	return err
}

// Prepend adds value before the existing item's data, keeping its flags and
// expiration; ErrNotStored if key holds no live item.
func (c *Cache) Prepend(key, value []byte) error {
	_, err := c.Store(key, value, StoreOptions{Mode: ModePrepend})
	return err
}

// CompareAndSwap stores value, expiring after ttl and with client flags 0,
// only if the item's CAS still equals cas (an [Item.CAS] read before): ErrNotFound if there is no
// item, ErrExists if it changed since (or the cache has no CAS values:
// Config.NoCAS). [Cache.Store] does the same with client flags and returns
// the new CAS.
func (c *Cache) CompareAndSwap(key, value []byte, cas uint64, ttl time.Duration) error {
	// Not Store: a CAS of 0 is no condition there, and a mismatch here.
	r := storeReq{kind: storeCAS, key: key, value: value, exptime: c.exptime(ttl), cas: cas, binaryKey: !wireKey(key)}
	res, _, _ := c.store(&r)
	return res.err()
}

// StoreMode is the condition under which [Cache.Store] stores: one of
// memcached's storage commands.
type StoreMode uint8

const (
	// ModeSet stores unconditionally (set; with a CAS, cas).
	ModeSet StoreMode = iota
	// ModeAdd stores only if the key holds no live item (add).
	ModeAdd
	// ModeReplace stores only if the key holds a live item (replace).
	ModeReplace
	// ModeAppend adds the value after the live item's data, keeping its
	// flags and TTL; StoreOptions.Flags and TTL are not used (append).
	ModeAppend
	// ModePrepend adds the value before the live item's data (prepend).
	ModePrepend
)

// StoreOptions are the fields of a store beyond key and value, for callers
// who share items with network clients: their client flags and CAS.
type StoreOptions struct {
	// Mode is the store's condition; the zero value is ModeSet.
	Mode StoreMode
	// Flags are the opaque client flags stored with the item (memcached's
	// flags, which clients use to tell how a value is encoded).
	Flags uint32
	// TTL is how long the item lives; 0 means no expiry, a negative TTL
	// stores an item that has already expired. It is rounded up to the
	// cache's clock resolution, a second, so a positive TTL never means
	// "no expiry".
	TTL time.Duration
	// CAS, when not 0, stores only if the live item's CAS equals it:
	// ModeSet and ModeReplace become compare-and-swap (ErrNotFound without
	// an item, ErrExists on a mismatch), ModeAppend and ModePrepend test
	// it too, and ModeAdd ignores it, as in memcached.
	CAS uint64
}

// Store stores value under key as o says and returns the item's new CAS
// (0 with Config.NoCAS).
func (c *Cache) Store(key, value []byte, o StoreOptions) (uint64, error) {
	r := storeReq{key: key, value: value, flags: o.Flags, exptime: c.exptime(o.TTL), cas: o.CAS, binaryKey: !wireKey(key)}
	switch o.Mode {
	case ModeSet:
		r.kind, r.dropOnFail = storeSet, o.CAS == 0
	case ModeAdd:
		r.kind = storeAdd
	case ModeReplace:
		r.kind = storeReplace
	case ModeAppend:
		r.kind = storeAppend
	case ModePrepend:
		r.kind = storePrepend
	default:
		return 0, fmt.Errorf("emcache: unknown StoreMode %d", o.Mode)
	}
	if o.CAS != 0 && (r.kind == storeSet || r.kind == storeReplace) {
		r.kind = storeCAS
	}
	res, cas, _ := c.store(&r)
	return cas, res.err()
}

// Delete removes the item under key, or returns ErrNotFound.
func (c *Cache) Delete(key []byte) error {
	return c.deleteItem(&deleteReq{key: key}).err()
}

// Touch gives the item under key a new TTL (0: none), or returns
// ErrNotFound.
func (c *Cache) Touch(key []byte, ttl time.Duration) error {
	return c.viewItem(key, true, c.exptime(ttl), true, nil).err()
}

// Incr adds delta to the decimal number stored under key, wrapping at 2^64,
// and returns the result. ErrNotFound if absent, ErrNotNumeric if the value
// is not a decimal uint64 (memcached's strtoull: leading spaces allowed,
// anything after the digits a space).
func (c *Cache) Incr(key []byte, delta uint64) (uint64, error) {
	res, n, _, _ := c.arith(&arithReq{key: key, delta: delta}, nil)
	return n, res.err()
}

// Decr subtracts delta from the decimal number stored under key, stopping at
// zero, and returns the result. Like memcached, a result with fewer digits is
// stored space-padded to the old length.
func (c *Cache) Decr(key []byte, delta uint64) (uint64, error) {
	res, n, _, _ := c.arith(&arithReq{key: key, decr: true, delta: delta}, nil)
	return n, res.err()
}

// FlushAll invalidates every item stored before now+delay; with delay <= 0
// it drops all items at once and frees their memory.
func (c *Cache) FlushAll(delay time.Duration) error {
	if err := c.usable(); err != nil {
		return err
	}
	c.cmdFlush.Add(1)
	c.flushAll(delay)
	return nil
}

// usable returns the error of a zero or closed cache, for the operations
// that lock no single key's shard.
func (c *Cache) usable() error {
	if len(c.shards) == 0 {
		return ErrNotInitialized
	}
	select {
	case <-c.stop:
		return ErrClosed
	default:
		return nil
	}
}

// flushAll is FlushAll without counting the command: the text protocol
// counts every flush_all it parses, refused ones too, as memcached does.
func (c *Cache) flushAll(delay time.Duration) {
	if delay <= 0 {
		c.flushAt.Store(0)
		c.flushNow()
		return
	}
	secs := int64(delay / time.Second)
	if delay%time.Second != 0 {
		secs++
	}
	c.flushAt.Store(c.unixNow() + secs)
}

// Len returns the number of items in the cache, as curr_items counts them:
// an expired item counts until a read or the background reclaimer finds
// it. It locks nothing.
func (c *Cache) Len() int {
	n := 0
	for _, s := range c.shards {
		n += int(s.count.Load())
	}
	return n
}

// HitRatio is the share of reads that found their item: GetHits over
// GetHits and GetMisses, 0 before any read.
func (st Stats) HitRatio() float64 {
	if st.GetHits+st.GetMisses == 0 {
		return 0
	}
	return float64(st.GetHits) / float64(st.GetHits+st.GetMisses)
}

// Stats returns the cache's counters summed over its shards.
func (c *Cache) Stats() Stats {
	st := Stats{LimitMaxbytes: uint64(c.maxBytes.Load()), CmdFlush: c.cmdFlush.Load(), CmdFlushPrefix: c.cmdFlushPrefix.Load()}
	for _, s := range c.shards {
		s.mu.Lock()
		st.CurrItems += s.count.Load()
		st.Bytes += s.bytes
		x := s.st
		s.mu.Unlock()
		st.TotalItems += x.totalItems
		st.Evictions += x.evictions
		st.ExpiredUnfetched += x.expiredUnfetched
		st.EvictedUnfetched += x.evictedUnfetched
		st.Reclaimed += x.reclaimed
		st.CrawlerReclaimed += x.crawlerReclaimed
		st.GetHits += x.getHits
		st.GetMisses += x.getMisses
		st.GetExpired += x.getExpired
		st.GetFlushed += x.getFlushed
		st.CmdGet += x.cmdGet
		st.CmdSet += x.cmdSet
		st.CmdTouch += x.cmdTouch
		st.CasMisses += x.casMisses
		st.CasHits += x.casHits
		st.CasBadval += x.casBadval
		st.IncrMisses += x.incrMisses
		st.IncrHits += x.incrHits
		st.DecrMisses += x.decrMisses
		st.DecrHits += x.decrHits
		st.DeleteMisses += x.deleteMisses
		st.DeleteHits += x.deleteHits
		st.TouchHits += x.touchHits
		st.TouchMisses += x.touchMisses
		st.StoreTooLarge += x.storeTooLarge
		st.StoreNoMemory += x.storeNoMemory
	}
	return st
}

// ResetStats zeroes the counters that memcached's `stats reset` zeroes; item
// counts and byte totals are kept.
func (c *Cache) ResetStats() {
	c.cmdFlush.Store(0)
	c.cmdFlushPrefix.Store(0)
	for _, s := range c.shards {
		s.mu.Lock()
		s.st = counters{}
		s.mu.Unlock()
	}
}

// MaxBytes returns the arena memory limit.
func (c *Cache) MaxBytes() int64 { return c.maxBytes.Load() }

// MaxItemSize returns the largest item the cache stores, header included.
func (c *Cache) MaxItemSize() int { return c.maxItemSize }

// SetMaxBytes changes the memory limit at run time (memcached's
// cache_memlimit). Items are moved into new arenas; when shrinking, the
// oldest are evicted. The shard count is fixed at New, so the limit must
// leave each shard room for a few largest items. A cache in a memory file
// keeps its limit (ErrMemoryFileFixed).
func (c *Cache) SetMaxBytes(n int64) error {
	if len(c.shards) == 0 {
		return ErrNotInitialized
	}
	per := n / int64(len(c.shards))
	if per < int64(minShardItems*c.maxItemSize) || per > maxShardSize {
		return ErrMaxBytes
	}
	if c.mf != nil {
		return ErrMemoryFileFixed
	}
	var removed []*removeBatch
	defer func() {
		for _, b := range removed {
			b.deliver(c.onRemove)
		}
	}()
	c.resizeMu.Lock()
	defer c.resizeMu.Unlock()
	now := c.clock()
	for _, s := range c.shards {
		s.mu.Lock()
		if s.closed() {
			s.mu.Unlock()
			return ErrClosed
		}
		s.rebuild(uint64(per), now)
		removed = s.unlockInto(removed)
	}
	c.maxBytes.Store(n)
	return nil
}
