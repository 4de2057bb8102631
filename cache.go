// Package emcache is an in-process cache with memcached's semantics that can
// also serve the memcached protocols over TCP.
//
// Items live in large byte arenas indexed by pointer-free hash tables, so the
// garbage collector does no work per item, and memory is bounded by bytes as
// with memcached's -m. Eviction follows S3-FIFO: new items enter a small FIFO
// ring, items read again there are promoted to a main ring managed as CLOCK,
// and keys evicted from the small ring unread are remembered in a ghost table
// so that their next store goes straight to the main ring.
package emcache

import (
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
	// ErrMaxBytes: SetMaxBytes was given a limit that cannot hold the
	// largest item in every shard.
	ErrMaxBytes = Error("emcache: memory limit too small for the maximum item size")
	// ErrMaxConnsTooLow: ServerConfig.MaxConns leaves no connection for
	// clients once ReservedFDs and the listeners are counted.
	ErrMaxConnsTooLow = Error("emcache: MaxConns too low")
)

// MaxKeyLen is the longest key memcached accepts.
const MaxKeyLen = 250

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
	// minShardSize keeps every shard able to hold several largest items, so
	// S3-FIFO's rings work and one huge item never evicts a whole shard.
	minShardItems = 4
	// maxShardSize keeps arena offsets within the index slot's 32 bits.
	maxShardSize = math.MaxUint32 - 1
)

// relativeExptimeMax is memcached's REALTIME_MAXDELTA: larger exptimes are
// absolute Unix times.
const relativeExptimeMax = 60 * 60 * 24 * 30

// tickInterval paces the coarse clock; every crawlTicks ticks the crawler
// visits a crawlPass-th of each shard's index (at least crawlMinSlots
// slots), reclaiming expired items, so a full pass takes crawlPass seconds
// whatever the cache's size and an idle cache costs next to nothing.
const (
	tickInterval  = 250 * time.Millisecond
	crawlTicks    = 4
	crawlPass     = 8
	crawlMinSlots = 1024
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
	// Exptime is when the item expires, in Unix seconds; 0 means never.
	Exptime int64
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
	}
	if c.now == nil {
		c.coarseNow.Store(time.Now().Unix())
	}
	c.maxBytes.Store(cfg.MaxBytes)
	shift := uint(bits.TrailingZeros(uint(n)))
	for i := range c.shards {
		c.shards[i] = newShard(uint64(i), shift, uint64(cfg.MaxBytes/int64(n)), cfg.NoEvict)
		c.shards[i].evicted = &c.evicted
		c.shards[i].onRemove = cfg.OnRemove
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
// every shard room for minShardItems of the largest items.
func shardCount(maxBytes int64, maxItemSize int) int {
	n := 1
	for n < maxShards && maxBytes/int64(2*n) >= int64(minShardItems*maxItemSize) {
		n *= 2
	}
	return n
}

// Close stops the background goroutine and releases the cache's memory at
// once; every later operation fails with ErrClosed (or misses). A cache that
// is dropped without Close has its memory released when it is collected.
func (c *Cache) Close() error {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.crawlDone
	for _, s := range c.shards {
		s.mu.Lock()
		s.release()
		s.mu.Unlock()
	}
	return nil
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

// GetAndTouch returns the item under key after setting its expiration to
// exptime (memcached's gat).
func (c *Cache) GetAndTouch(key []byte, exptime int64) (Item, error) {
	_, it, err := c.getAppend(nil, key, true, exptime)
	return it, err
}

func (c *Cache) getAppend(dst, key []byte, touch bool, exptime int64) ([]byte, Item, error) {
	var it Item
	res := c.view(key, touch, exptime, func(value []byte, flags, exp uint32, cas uint64) {
		if dst == nil {
			dst = make([]byte, 0, len(value))
		}
		n := len(dst)
		dst = append(dst, value...)
		it = Item{Value: dst[n:len(dst):len(dst)], Flags: flags, Exptime: int64(exp), CAS: cas}
	})
	return dst, it, res.err()
}

// GetMulti returns the items found among keys, keyed by string(key).
func (c *Cache) GetMulti(keys [][]byte) map[string]Item {
	found := make(map[string]Item, len(keys))
	for _, k := range keys {
		if it, err := c.Get(k); err == nil {
			found[string(k)] = it
		}
	}
	return found
}

// Set stores value under key unconditionally and returns its new CAS.
// exptime follows memcached: 0 never expires, up to 30 days is relative
// seconds, larger is an absolute Unix time, negative is already expired.
// When the item is too large or cannot be stored, any old item under key is
// removed, as memcached does.
func (c *Cache) Set(key, value []byte, flags uint32, exptime int64) (uint64, error) {
	return c.storeAPI(&storeReq{kind: storeSet, key: key, value: value, flags: flags, exptime: exptime, dropOnFail: true})
}

// Add stores value only if key holds no live item, else ErrNotStored.
func (c *Cache) Add(key, value []byte, flags uint32, exptime int64) (uint64, error) {
	return c.storeAPI(&storeReq{kind: storeAdd, key: key, value: value, flags: flags, exptime: exptime})
}

// Replace stores value only if key holds a live item, else ErrNotStored.
func (c *Cache) Replace(key, value []byte, flags uint32, exptime int64) (uint64, error) {
	return c.storeAPI(&storeReq{kind: storeReplace, key: key, value: value, flags: flags, exptime: exptime})
}

// Append adds value after the existing item's data, keeping its flags and
// expiration; ErrNotStored if key holds no live item.
func (c *Cache) Append(key, value []byte) (uint64, error) {
	return c.storeAPI(&storeReq{kind: storeAppend, key: key, value: value})
}

// Prepend adds value before the existing item's data, keeping its flags and
// expiration; ErrNotStored if key holds no live item.
func (c *Cache) Prepend(key, value []byte) (uint64, error) {
	return c.storeAPI(&storeReq{kind: storePrepend, key: key, value: value})
}

// CompareAndSwap stores value only if the item's CAS still equals cas:
// ErrNotFound if there is no item, ErrExists if it changed since read (or
// the cache has no CAS values: Config.NoCAS).
func (c *Cache) CompareAndSwap(key, value []byte, flags uint32, exptime int64, cas uint64) (uint64, error) {
	return c.storeAPI(&storeReq{kind: storeCAS, key: key, value: value, flags: flags, exptime: exptime, cas: cas})
}

func (c *Cache) storeAPI(r *storeReq) (uint64, error) {
	res, cas, _ := c.store(r)
	return cas, res.err()
}

// Delete removes the item under key, or returns ErrNotFound.
func (c *Cache) Delete(key []byte) error {
	return c.deleteItem(&deleteReq{key: key}).err()
}

// Touch sets the expiration of the item under key, or returns ErrNotFound.
func (c *Cache) Touch(key []byte, exptime int64) error {
	return c.view(key, true, exptime, nil).err()
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
func (c *Cache) FlushAll(delay time.Duration) {
	c.cmdFlush.Add(1)
	c.flushAll(delay)
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

// Stats returns the cache's counters summed over its shards.
func (c *Cache) Stats() Stats {
	st := Stats{LimitMaxbytes: uint64(c.maxBytes.Load()), CmdFlush: c.cmdFlush.Load(), CmdFlushPrefix: c.cmdFlushPrefix.Load()}
	for _, s := range c.shards {
		s.mu.Lock()
		st.CurrItems += s.count
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
// leave each shard room for a few largest items.
func (c *Cache) SetMaxBytes(n int64) error {
	per := n / int64(len(c.shards))
	if per < int64(minShardItems*c.maxItemSize) || per > maxShardSize {
		return ErrMaxBytes
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
