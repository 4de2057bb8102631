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
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
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
	CmdGet           uint64 // cmd_get
	CmdSet           uint64 // cmd_set
	CmdTouch         uint64 // cmd_touch
	CmdFlush         uint64 // cmd_flush
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

func (c *Cache) crawler() {
	defer close(c.crawlDone)
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for tick := 1; ; tick++ {
		select {
		case <-c.stop:
			c.coarseNow.Store(0)
			return
		case now := <-t.C:
			if c.now == nil {
				c.coarseNow.Store(now.Unix())
			}
		}
		if tick%crawlTicks != 0 {
			continue
		}
		now := c.clock()
		for _, s := range c.shards {
			s.mu.Lock()
			if !s.closed() {
				s.crawl(min(len(s.slots), max(crawlMinSlots, len(s.slots)/crawlPass)), now)
			}
			s.mu.Unlock()
		}
	}
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

func checkKey(key []byte) error {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return ErrKeyInvalid
	}
	return nil
}

func (c *Cache) shardFor(h uint64) *shard { return c.shards[h&c.shardMask] }

// acquire validates key and returns its shard locked, with the key's hash
// and the current time; the caller unlocks.
func (c *Cache) acquire(key []byte) (s *shard, h uint64, now uint32, err error) {
	if err := checkKey(key); err != nil {
		return nil, 0, 0, err
	}
	h = xxhash.Sum64(key)
	s = c.shardFor(h)
	now = c.clock()
	s.mu.Lock()
	if s.closed() {
		s.mu.Unlock()
		return nil, 0, 0, ErrClosed
	}
	return s, h, now, nil
}

func (c *Cache) casOut(cas uint64) uint64 {
	if c.noCAS {
		return 0
	}
	return cas
}

// view is the zero-copy read path of the protocol: on a hit it calls fn with
// the value under the shard lock (fn must neither retain value nor call the
// cache) and returns true. With touch it first sets the expiry, as gat does.
func (c *Cache) view(key []byte, touch bool, exptime int64, fn func(value []byte, flags uint32, cas uint64)) bool {
	s, h, now, err := c.acquire(key)
	if err != nil {
		return false
	}
	off, ok := s.get(key, h, now, touch, exptime)
	if ok {
		value, flags, _, cas := s.decode(off)
		fn(value, flags, c.casOut(cas))
	}
	s.mu.Unlock()
	return ok
}

// get looks up key for a read and counts it; with touch it also sets the
// expiry.
func (s *shard) get(key []byte, h uint64, now uint32, touch bool, exptime int64) (uint64, bool) {
	// memcached's gat counts only as a touch.
	if touch {
		s.st.cmdTouch++
	} else {
		s.st.cmdGet++
	}
	_, off, ok, wasExpired := s.lookupExpired(key, h, now)
	if wasExpired && !touch {
		s.st.getExpired++
	}
	if ok && touch {
		// Room for the expiry may cost the item itself, when it was the
		// next to go: then it is gone before the touch.
		off, ok = s.retime(key, h, off, expiry(exptime, now), now)
	}
	switch {
	case !ok && touch:
		s.st.touchMisses++
		return 0, false
	case !ok:
		s.st.getMisses++
		return 0, false
	case touch:
		s.st.touchHits++
	default:
		s.st.getHits++
	}
	s.touchRead(off, now)
	return off, true
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
	s, h, now, err := c.acquire(key)
	if err != nil {
		return dst, Item{}, err
	}
	defer s.mu.Unlock()
	off, ok := s.get(key, h, now, touch, exptime)
	if !ok {
		return dst, Item{}, ErrNotFound
	}
	value, flags, exp, cas := s.decode(off)
	if dst == nil {
		dst = make([]byte, 0, len(value))
	}
	n := len(dst)
	dst = append(dst, value...)
	return dst, Item{Value: dst[n:len(dst):len(dst)], Flags: flags, Exptime: int64(exp), CAS: c.casOut(cas)}, nil
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

// storeMode selects the semantics of one of memcached's storage commands.
type storeMode uint8

const (
	modeSet storeMode = iota
	modeAdd
	modeReplace
	modeAppend
	modePrepend
	modeCAS
	// modeCreate is an add that memcached does not count as a set: the
	// initial value a binary increment stores on a miss.
	modeCreate
)

// Set stores value under key unconditionally and returns its new CAS.
// exptime follows memcached: 0 never expires, up to 30 days is relative
// seconds, larger is an absolute Unix time, negative is already expired.
// When the item is too large or cannot be stored, any old item under key is
// removed, as memcached does.
func (c *Cache) Set(key, value []byte, flags uint32, exptime int64) (uint64, error) {
	return c.store(modeSet, key, value, flags, exptime, 0)
}

// Add stores value only if key holds no live item, else ErrNotStored.
func (c *Cache) Add(key, value []byte, flags uint32, exptime int64) (uint64, error) {
	return c.store(modeAdd, key, value, flags, exptime, 0)
}

// Replace stores value only if key holds a live item, else ErrNotStored.
func (c *Cache) Replace(key, value []byte, flags uint32, exptime int64) (uint64, error) {
	return c.store(modeReplace, key, value, flags, exptime, 0)
}

// Append adds value after the existing item's data, keeping its flags and
// expiration; ErrNotStored if key holds no live item.
func (c *Cache) Append(key, value []byte) (uint64, error) {
	return c.store(modeAppend, key, value, 0, 0, 0)
}

// Prepend adds value before the existing item's data, keeping its flags and
// expiration; ErrNotStored if key holds no live item.
func (c *Cache) Prepend(key, value []byte) (uint64, error) {
	return c.store(modePrepend, key, value, 0, 0, 0)
}

// CompareAndSwap stores value only if the item's CAS still equals cas:
// ErrNotFound if there is no item, ErrExists if it changed since read.
func (c *Cache) CompareAndSwap(key, value []byte, flags uint32, exptime int64, cas uint64) (uint64, error) {
	return c.store(modeCAS, key, value, flags, exptime, cas)
}

func (c *Cache) store(mode storeMode, key, value []byte, flags uint32, exptime int64, cas uint64) (uint64, error) {
	s, h, now, err := c.acquire(key)
	if err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	// memcached counts every store whose item it could allocate, refused
	// ones included: the too-large and out-of-memory paths take it back.
	counted := uint64(1)
	if mode == modeCreate {
		counted = 0
	}
	s.st.cmdSet += counted
	slot, off, found := s.lookup(key, h, now)
	switch mode {
	case modeAdd, modeCreate:
		if found {
			s.touchRead(off, now) // memcached bumps an item a failed add hit
			return 0, ErrNotStored
		}
	case modeReplace, modeAppend, modePrepend:
		if !found {
			return 0, ErrNotStored
		}
	case modeCAS:
		if !found {
			s.st.casMisses++
			return 0, ErrNotFound
		}
		if c.casOut(s.cas(off)) != cas {
			s.st.casBadval++
			return 0, ErrExists
		}
		s.st.casHits++
	}
	valLen := len(value)
	exp := expiry(exptime, now)
	if mode == modeAppend || mode == modePrepend {
		valLen += len(s.value(off))
		flags, exp = s.flags(off), s.expiry(off)
	}
	if c.itemSize(len(key), valLen, flags) > c.maxItemSize {
		s.st.cmdSet -= counted
		s.st.storeTooLarge++
		if found && mode == modeSet {
			s.unlink(slot)
		}
		return 0, ErrTooLarge
	}
	var bits byte
	if found {
		bits = s.bits(off) & freqMask
	}
	oldInMain := found && off >= s.main.base
	dst, size, cas, ok := s.place(len(key), valLen, flags, exp, 0, false, h, oldInMain, now)
	if !ok {
		s.st.cmdSet -= counted
		s.st.storeNoMemory++
		if slot, found := s.find(key, h); found && mode == modeSet {
			s.unlink(slot)
		}
		return 0, ErrNoMemory
	}
	// Making room may have evicted or moved the old item: look again.
	slot, off, found = s.lookup(key, h, now)
	if !found && (mode == modeAppend || mode == modePrepend) {
		s.hole(dst, size)
		return 0, ErrNotStored
	}
	v := s.write(dst, key, valLen, flags, exp, now, cas, bits, false)
	switch mode {
	case modeAppend:
		copy(v[copy(v, s.value(off)):], value)
	case modePrepend:
		copy(v[copy(v, value):], s.value(off))
	default:
		copy(v, value)
	}
	s.link(key, h, slot, found, dst)
	s.st.totalItems++
	return c.casOut(s.cas(dst)), nil
}

// countBadBlock counts a store whose data block did not end in CRLF: it
// stores nothing, yet memcached counts it in cmd_set.
func (c *Cache) countBadBlock(key []byte) {
	s, _, _, err := c.acquire(key)
	if err != nil {
		return
	}
	s.st.cmdSet++
	s.mu.Unlock()
}

// refuseTooLarge records a store refused for size before its value was
// read (the protocol swallows such a value without buffering it): the
// counter, and for set the removal of the old item, as memcached does.
func (c *Cache) refuseTooLarge(key []byte, unlinkOld bool) {
	s, h, now, err := c.acquire(key)
	if err != nil {
		return
	}
	defer s.mu.Unlock()
	s.st.storeTooLarge++
	if slot, _, found := s.lookup(key, h, now); found && unlinkOld {
		s.unlink(slot)
	}
}

// Delete removes the item under key, or returns ErrNotFound.
func (c *Cache) Delete(key []byte) error {
	s, h, now, err := c.acquire(key)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	slot, _, ok := s.lookup(key, h, now)
	if !ok {
		s.st.deleteMisses++
		return ErrNotFound
	}
	s.st.deleteHits++
	s.unlink(slot)
	return nil
}

// Touch sets the expiration of the item under key, or returns ErrNotFound.
func (c *Cache) Touch(key []byte, exptime int64) error {
	s, h, now, err := c.acquire(key)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.st.cmdTouch++
	_, off, ok := s.lookup(key, h, now)
	if ok {
		off, ok = s.retime(key, h, off, expiry(exptime, now), now)
	}
	if !ok {
		s.st.touchMisses++
		return ErrNotFound
	}
	s.st.touchHits++
	s.touchRead(off, now)
	return nil
}

// Incr adds delta to the decimal number stored under key, wrapping at 2^64,
// and returns the result. ErrNotFound if absent, ErrNotNumeric if the value
// is not a decimal uint64.
func (c *Cache) Incr(key []byte, delta uint64) (uint64, error) {
	n, _, err := c.addDelta(key, true, delta, 0, false)
	return n, err
}

// Decr subtracts delta from the decimal number stored under key, stopping at
// zero, and returns the result. Like memcached, a result with fewer digits is
// stored space-padded to the old length.
func (c *Cache) Decr(key []byte, delta uint64) (uint64, error) {
	n, _, err := c.addDelta(key, false, delta, 0, false)
	return n, err
}

// addDelta is Incr and Decr, and the binary protocol's INCREMENT and
// DECREMENT: it also returns the new CAS, a non-zero cas makes it
// conditional (ErrExists when the item changed), and with create a miss is
// not counted, since the caller then stores an initial value (memcached's
// complete_incr_bin).
func (c *Cache) addDelta(key []byte, incr bool, delta, cas uint64, create bool) (uint64, uint64, error) {
	s, h, now, err := c.acquire(key)
	if err != nil {
		return 0, 0, err
	}
	defer s.mu.Unlock()
	_, off, ok := s.lookup(key, h, now)
	if !ok {
		switch {
		case create:
		case incr:
			s.st.incrMisses++
		default:
			s.st.decrMisses++
		}
		return 0, 0, ErrNotFound
	}
	if cas != 0 && c.casOut(s.cas(off)) != cas {
		return 0, 0, ErrExists
	}
	n, ok := parseUint(s.value(off))
	if !ok {
		return 0, 0, ErrNotNumeric
	}
	if incr {
		s.st.incrHits++
		n += delta
	} else {
		s.st.decrHits++
		n -= min(n, delta)
	}
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], n, 10)
	if len(d) <= len(s.value(off)) {
		// In place, as memcached does when the number still fits (unless
		// making room for the CAS cost the item: then as below).
		if off, ok = s.widen(key, h, off, now); ok {
			padNumber(s.value(off), d)
			newCAS := s.nextCAS()
			s.setCAS(off, newCAS)
			s.touchRead(off, now)
			return n, c.casOut(newCAS), nil
		}
	}
	// A counter's record is wide, so its next change fits in place.
	dst, _, cas, ok := s.place(len(key), len(d), 0, 0, 0, true, h, off >= s.main.base, now)
	if !ok {
		s.st.storeNoMemory++
		return 0, 0, ErrNoMemory
	}
	// Making room may have evicted the item; memcached would still have
	// stored the result, as a new item, and so do we.
	slot, off, found := s.lookup(key, h, now)
	var flags, exp uint32
	var bits byte
	if found {
		flags, exp, bits = s.flags(off), s.expiry(off), s.bits(off)&freqMask
	}
	copy(s.write(dst, key, len(d), flags, exp, now, cas, bits, true), d)
	s.link(key, h, slot, found, dst)
	s.st.totalItems++
	return n, c.casOut(s.cas(dst)), nil
}

// padNumber writes the digits d over the value v, which is at least as
// long, and fills the rest with spaces, as memcached rewrites a number in
// place (the old value may carry any number of trailing spaces).
func padNumber(v, d []byte) {
	for i := copy(v, d); i < len(v); i++ {
		v[i] = ' '
	}
}

// parseUint parses a value as memcached's strtoull does for incr/decr:
// leading spaces allowed, then decimal digits, then optional trailing spaces
// (left by an earlier in-place decrement) or CRLF.
func parseUint(b []byte) (uint64, bool) {
	i := 0
	for i < len(b) && b[i] == ' ' {
		i++
	}
	start := i
	var n uint64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := uint64(b[i] - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if i == start {
		return 0, false
	}
	for ; i < len(b); i++ {
		if b[i] != ' ' && b[i] != '\r' && b[i] != '\n' {
			return 0, false
		}
	}
	return n, true
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

func (c *Cache) flushNow() {
	for _, s := range c.shards {
		s.mu.Lock()
		if !s.closed() {
			s.clear()
		}
		s.mu.Unlock()
	}
}

// Stats returns the cache's counters summed over its shards.
func (c *Cache) Stats() Stats {
	st := Stats{LimitMaxbytes: uint64(c.maxBytes.Load()), CmdFlush: c.cmdFlush.Load()}
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

// ErrMaxBytes is returned by SetMaxBytes for a limit that cannot hold the
// configured largest item in every shard.
var ErrMaxBytes = errors.New("emcache: memory limit too small for the maximum item size")

// SetMaxBytes changes the memory limit at run time (memcached's
// cache_memlimit). Items are moved into new arenas; when shrinking, the
// oldest are evicted. The shard count is fixed at New, so the limit must
// leave each shard room for a few largest items.
func (c *Cache) SetMaxBytes(n int64) error {
	per := n / int64(len(c.shards))
	if per < int64(minShardItems*c.maxItemSize) || per > maxShardSize {
		return ErrMaxBytes
	}
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
		s.mu.Unlock()
	}
	c.maxBytes.Store(n)
	return nil
}
