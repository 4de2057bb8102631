package emcache

import (
	"bytes"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"
)

// The engine: the operations that take a shard's lock, one entry per
// operation whatever face asks for it (the reads are in read.go). The Go
// API (cache.go), the text, meta and binary protocols (textcmd.go, meta.go,
// binary.go) fill the same request and turn the same result into their own
// answer, so memcached's semantics live here once: store is memcached's
// do_store_item, deleteItem its delete with meta's extensions, arith its
// do_add_delta. Below them, the background reclaimer and flush_all, which
// take every shard's lock in turn.

// result is the outcome of an engine operation. The Go API turns it into
// an Error (err); each protocol has its own table to wire bytes.
type result uint8

const (
	resultOK         result = iota
	resultNotStored         // the command's condition did not hold (add, replace, append)
	resultExists            // a CAS did not match
	resultNotFound          // no live item (cas, delete, arithmetic, touch)
	resultTooLarge          // the item would exceed MaxItemSize
	resultNoMemory          // no room could be made
	resultNonNumeric        // arithmetic on a value that is not a number
	resultBadKey            // the key is empty or longer than MaxKeyLen
	resultClosed            // the cache was closed
	resultNotInit           // the Cache is a zero value, not made by New
)

var resultErrors = [...]error{
	resultNotStored:  ErrNotStored,
	resultExists:     ErrExists,
	resultNotFound:   ErrNotFound,
	resultTooLarge:   ErrTooLarge,
	resultNoMemory:   ErrNoMemory,
	resultNonNumeric: ErrNotNumeric,
	resultBadKey:     ErrKeyInvalid,
	resultClosed:     ErrClosed,
	resultNotInit:    ErrNotInitialized,
}

// err is the Go API's error for r, nil for resultOK.
func (r result) err() error { return resultErrors[r] }

// storeKind is what a store does with the item it finds, whichever command
// named it: memcached's NREAD_* modes.
type storeKind uint8

const (
	storeSet storeKind = iota
	storeAdd
	storeReplace
	storeAppend
	storePrepend
	storeCAS
)

// storeKindNames are memcached's names for the kinds, as watch lines show
// them.
var storeKindNames = [...]string{storeSet: "set", storeAdd: "add", storeReplace: "replace", storeAppend: "append", storePrepend: "prepend", storeCAS: "cas"}

func (k storeKind) concat() bool { return k == storeAppend || k == storePrepend }

// storeReq is one store as the engine runs it.
type storeReq struct {
	kind       storeKind
	key, value []byte
	flags      uint32 // client flags; append and prepend keep the item's
	exptime    int64  // memcached exptime; append and prepend keep the item's
	// cas, when not 0, must equal the item's CAS, in every kind (memcached
	// tests it up front): for storeCAS it is the condition, for append and
	// prepend a further one; add ignores it.
	cas uint64
	// stale lets a storeCAS whose cas is below the item's store the value
	// anyway, marked stale (meta's I).
	stale bool
	// casIn is the CAS the stored item gets; 0 for its own (meta's E).
	casIn uint64
	// vivify makes append and prepend on a miss store value as a new item
	// expiring at vivExptime (meta's N).
	vivify     bool
	vivExptime int64
	// binaryKey marks a key that came base64-encoded (meta's b).
	binaryKey bool
	// dropOnFail removes the old item when the store fails for size or
	// memory, so no client reads a stale value after a failed store:
	// memcached does it for set, and for every meta store.
	dropOnFail bool
	// uncountedRefusal leaves store_too_large and store_no_memory alone
	// when the store fails for size or memory, as memcached's binary
	// protocol does.
	uncountedRefusal bool
	// lease, when not 0, is the raw CAS of the lease item a load holds the
	// key with (load.go): the store happens only while that item is still
	// there with its win token, so that a set or delete during the load
	// wins over the loaded value.
	lease uint64
	// keepExpiry keeps the expiry of the item found (Update); exptime
	// applies to a new one.
	keepExpiry bool
}

// casResult is how a request's CAS compares with an item's.
type casResult uint8

const (
	casNone casResult = iota // no CAS given (or CAS disabled)
	casMatch
	casStale // lower than the item's, and the request allows that
	casBadval
)

// compareCAS compares a request's CAS, not 0, with an item's.
func compareCAS(req, item uint64, stale bool) casResult {
	switch {
	case req == item:
		return casMatch
	case stale && req < item:
		return casStale
	}
	return casBadval
}

// acquire validates key and returns its shard locked, with the key's hash
// and the current time; the caller unlocks. On failure nothing is locked.
func (c *Cache) acquire(key []byte) (s *shard, h uint64, now uint32, res result) {
	if len(c.shards) == 0 {
		return nil, 0, 0, resultNotInit
	}
	if len(key) == 0 || len(key) > MaxKeyLen {
		return nil, 0, 0, resultBadKey
	}
	h = xxhash.Sum64(key)
	s = c.shardFor(h)
	now = c.clock()
	s.mu.Lock()
	if s.closed() {
		s.mu.Unlock()
		return nil, 0, 0, resultClosed
	}
	return s, h, now, resultOK
}

// store runs r as memcached's do_store_item does, and counts it as
// memcached counts the command around it: every store is a cmd_set, except
// one refused for its size or for memory, which memcached refuses while
// allocating, before it reads the value. It returns the new CAS when
// stored, and the stored value's length (the joined one for append and
// prepend; the request's when not stored).
func (c *Cache) store(r *storeReq) (res result, cas uint64, valLen int) {
	s, h, now, res := c.acquire(r.key)
	if res != resultOK {
		return res, 0, 0
	}
	defer s.unlock()
	return c.storeLocked(s, h, now, r)
}

// storeLocked is store on the key's shard, locked by the caller.
func (c *Cache) storeLocked(s *shard, h uint64, now uint32, r *storeReq) (res result, cas uint64, valLen int) {
	c.leases.changed(r.key)
	s.st.cmdSet++
	var reqCAS uint64 // with CAS disabled memcached cannot set it: never a match
	if !c.noCAS {
		reqCAS = r.cas
	}
	key := r.key
	exp, flags := expiry(r.exptime, now), r.flags
	var bits byte
	if r.binaryKey {
		bits = bitKeyBinary
	}
	valLen = len(r.value)
	slot, off, found := s.lookup(key, h, now)
	if r.lease != 0 && (!found || s.cas(off) != r.lease || s.bits(off)&bitWon == 0) {
		return resultExists, 0, valLen
	}
	if found && r.keepExpiry {
		exp = s.expiry(off)
	}
	if found {
		cmp := casNone
		if reqCAS != 0 { // a derived CAS costs a look at the ring: only when asked
			cmp = compareCAS(reqCAS, c.casOut(s.cas(off)), r.stale)
		}
		switch r.kind {
		case storeAdd:
			s.bump(off, now) // memcached promotes an item a failed add hit
			return resultNotStored, 0, valLen
		case storeCAS:
			switch cmp {
			case casMatch:
				s.st.casHits++
			case casStale:
				// The value goes in, but stays stale: it keeps the TTL
				// and the win token of the item it replaces.
				s.st.casHits++
				exp = s.expiry(off)
				bits |= bitStale | s.bits(off)&bitWon
			default:
				s.st.casBadval++
				return resultExists, 0, valLen
			}
		case storeAppend, storePrepend:
			if cmp != casNone && cmp != casMatch {
				return resultExists, 0, valLen
			}
			flags, exp = s.flags(off), s.expiry(off)
			valLen += len(s.value(off))
		}
	} else {
		switch r.kind {
		case storeCAS:
			s.st.casMisses++
			return resultNotFound, 0, valLen
		case storeReplace:
			return resultNotStored, 0, valLen
		case storeAppend, storePrepend:
			if !r.vivify {
				return resultNotStored, 0, valLen
			}
			exp = expiry(r.vivExptime, now)
		}
	}
	if c.itemSize(len(key), valLen, flags) > c.maxItemSize {
		if r.kind.concat() && found {
			// memcached's allocation of the joined item fails inside
			// do_store_item: not stored, yet a set it counted.
			return resultTooLarge, 0, len(r.value)
		}
		// Only the Go API gets here: the protocols refuse such values
		// before reading them (refuse).
		s.st.cmdSet--
		if !r.uncountedRefusal {
			s.st.storeTooLarge++
		}
		s.dropIf(key, h, r.dropOnFail)
		return resultTooLarge, 0, len(r.value)
	}
	casIn := r.casIn
	if found && !r.kind.concat() {
		if cas, ok := s.overwrite(off, key, r.value, flags, exp, casIn, bits|s.bits(off)&freqMask, now); ok {
			if s.onRemove != nil {
				s.queueRemoval(key, RemoveReplaced)
			}
			s.st.totalItems++
			return resultOK, c.casOut(cas), valLen
		}
		if casIn == 0 {
			// A key written over once is likely to be again: with a CAS
			// field, its next value of this size goes in place.
			casIn = s.nextCAS()
		}
	}
	smallTail, mainTail := s.small.tail, s.main.tail
	dst, size, cas, ok := s.place(len(key), valLen, flags, exp, casIn, false, h, found && off >= s.main.base, now)
	if !ok {
		s.st.cmdSet--
		if !r.uncountedRefusal {
			s.st.storeNoMemory++
		}
		s.dropIf(key, h, r.dropOnFail)
		return resultNoMemory, 0, len(r.value)
	}
	// Making room may have moved or evicted the old item, and shifted index
	// slots: look again. Only the tails' evictions and moves change the
	// index here, and room made without them leaves both tails in place.
	cur, still := off, found
	if s.small.tail != smallTail || s.main.tail != mainTail {
		slot, cur, still = s.lookup(key, h, now)
	}
	if found && !still && r.kind.concat() {
		s.hole(dst, size)
		return resultNotStored, 0, len(r.value)
	}
	if still {
		bits |= s.bits(cur) & freqMask
	}
	v := s.write(dst, key, valLen, flags, exp, now, cas, bits, false)
	switch {
	case still && r.kind == storeAppend:
		copy(v[copy(v, s.value(cur)):], r.value)
	case still && r.kind == storePrepend:
		copy(v[copy(v, r.value):], s.value(cur))
	default:
		copy(v, r.value)
	}
	if still && s.onRemove != nil {
		s.queueRemoval(key, RemoveReplaced)
	}
	s.link(key, h, slot, still, dst)
	s.st.totalItems++
	return resultOK, c.casOut(s.cas(dst)), valLen
}

// dropIf removes the live item under key if drop is set.
func (s *shard) dropIf(key []byte, h uint64, drop bool) {
	if !drop {
		return
	}
	if slot, found := s.find(key, h); found {
		s.noteRemoval(s.offAt(slot), RemoveReplaced)
		s.unlink(slot)
	}
}

// refuse records a store of r.key that a protocol refused for its size
// before reading its value, as memcached's item_alloc failure: no cmd_set,
// store_too_large (unless r.uncountedRefusal), and with r.dropOnFail the
// old item removed.
func (c *Cache) refuse(r *storeReq) {
	s, h, _, res := c.acquire(r.key)
	if res != resultOK {
		return
	}
	defer s.unlock()
	if !r.uncountedRefusal {
		s.st.storeTooLarge++
	}
	s.dropIf(r.key, h, r.dropOnFail)
}

// countBadBlock counts a store whose data block did not end in CRLF: it
// stores nothing, yet memcached counts it in cmd_set.
func (c *Cache) countBadBlock(key []byte) {
	s, _, _, res := c.acquire(key)
	if res != resultOK {
		return
	}
	s.st.cmdSet++
	s.mu.Unlock()
}

// create stores a new item under key, which holds none: value, client
// flags 0, expiry exp, CAS cas or its own. The record is wide, since the
// caller may go on to set its TTL or change its number in place. It
// reports false when no room can be made.
func (s *shard) create(key []byte, h uint64, value []byte, exp uint32, cas uint64, binaryKey bool, now uint32) (uint64, bool) {
	dst, _, cas, ok := s.place(len(key), len(value), 0, exp, cas, true, h, false, now)
	if !ok {
		return 0, false
	}
	var bits byte
	if binaryKey {
		bits = bitKeyBinary
	}
	copy(s.write(dst, key, len(value), 0, exp, now, cas, bits, true), value)
	s.link(key, h, 0, false, dst)
	s.st.totalItems++
	return dst, true
}

// overwrite stores value as the new value of the live item at off, under
// key, in the item's own record when the new record is no larger: nothing
// allocated, nothing left for the ring's tail to reclaim, the index
// untouched. The item keeps its ring position, so its new CAS must be in a
// field (a derived one would repeat the old). What the new record leaves
// of the old span becomes a hole, unless too short for one.
func (s *shard) overwrite(off uint64, key, value []byte, flags, exp uint32, cas uint64, bits byte, now uint32) (uint64, bool) {
	old := s.size(off)
	size := s.recordSize(len(key), len(value), flags, exp, 1, false) // 1: any CAS, in a field
	if size > old || (size < old && old-size < holeMin) {
		return 0, false
	}
	if cas == 0 {
		cas = s.nextCAS()
	}
	s.guard(off, off+old)
	copy(s.write(off, key, len(value), flags, exp, now, cas, bits, false), value)
	if size < old {
		s.hole(off+size, old-size)
		s.dropLive(off, old-size)
	}
	return cas, true
}

// bump records a use that is not a read: the access time, and a frequency
// credit so eviction sees the item in use, without marking it fetched (add
// on an existing item, arithmetic; memcached's do_item_update).
func (s *shard) bump(off uint64, now uint32) {
	if b := s.buf[off+offBits]; b&freqMask < freqMask {
		s.buf[off+offBits] = b + 1
	}
	s.noteAccess(off, now)
}

// deleteReq is one delete as the engine runs it.
type deleteReq struct {
	key []byte
	// hasCAS makes the delete conditional on the item's CAS being cas.
	hasCAS bool
	cas    uint64
	// casMissCounts counts a CAS mismatch as a delete miss, as memcached's
	// md does; its binary DELETE counts nothing then.
	casMissCounts bool
	// stale marks the item stale with a new CAS instead of removing it
	// (meta's I), so that the next mg wins the right to recache it.
	stale bool
	// emptyValue replaces the value by an empty one instead of removing
	// the item (meta's x), leaving flags as the item's client flags.
	emptyValue bool
	flags      uint32
	// hasTTL gives stale and emptyValue a new exptime.
	hasTTL  bool
	exptime int64
	// casIn is the CAS stale and emptyValue leave; 0 for a new one (stale)
	// or the item's (emptyValue).
	casIn     uint64
	binaryKey bool
}

// deleteItem runs r: memcached's delete, with the meta protocol's
// conditions and alternatives to removal.
func (c *Cache) deleteItem(r *deleteReq) result {
	s, h, now, res := c.acquire(r.key)
	if res != resultOK {
		return res
	}
	defer s.unlock()
	c.leases.changed(r.key)
	key := r.key
	slot, off, ok := s.lookup(key, h, now)
	if !ok {
		s.st.deleteMisses++
		return resultNotFound
	}
	if r.hasCAS && c.casOut(s.cas(off)) != r.cas {
		if r.casMissCounts {
			s.st.deleteMisses++
		}
		return resultExists
	}
	if r.emptyValue {
		// A tombstone: an empty item keeps the key (and the CAS, unless
		// casIn gives one) with the flags and TTL of this command.
		cas := r.casIn
		if cas == 0 {
			cas = s.cas(off)
		}
		dst, _, _, placed := s.place(len(key), 0, 0, 0, cas, true, h, off >= s.main.base, now)
		if !placed {
			return resultNoMemory
		}
		var exp uint32
		if r.hasTTL {
			exp = expiry(r.exptime, now)
		}
		var bits byte
		if r.binaryKey {
			bits = bitKeyBinary
		}
		var found bool
		slot, _, found = s.lookup(key, h, now)
		s.write(dst, key, 0, r.flags, exp, now, cas, bits, true)
		if found {
			s.noteRemoval(dst, RemoveDeleted)
		}
		s.link(key, h, slot, found, dst)
		s.st.totalItems++
		off = dst
	}
	if r.stale {
		if off, ok = s.widen(key, h, off, now); !ok {
			return resultNoMemory
		}
		if r.hasTTL {
			s.setExpiry(off, expiry(r.exptime, now))
		}
		s.buf[off+offBits] = s.buf[off+offBits]&^bitWon | bitStale
		cas := r.casIn
		if cas == 0 {
			cas = s.nextCAS()
		}
		s.setCAS(off, cas)
		return resultOK
	}
	s.st.deleteHits++
	if !r.emptyValue {
		s.noteRemoval(off, RemoveDeleted)
		s.unlink(slot)
	}
	return resultOK
}

// arithReq is one increment or decrement as the engine runs it.
type arithReq struct {
	key   []byte
	decr  bool   // subtract, stopping at 0; else add, wrapping at 2^64
	delta uint64 //
	// cas, when not 0, must equal the item's CAS.
	cas uint64
	// create stores initial on a miss, expiring at exptime, instead of
	// failing (binary's initial value, meta's N with J); the miss is then
	// not counted.
	create  bool
	initial uint64
	exptime int64
	// casIn is the result's CAS; 0 for a new one (meta's E).
	casIn     uint64
	binaryKey bool
}

// arith runs r as memcached's do_add_delta does. It returns the resulting
// number and CAS, and whether r.create stored a new item (on failure:
// whether the creation failed). fn, when not nil, sees the resulting item
// under the lock and may change its TTL (meta's T and N).
func (c *Cache) arith(r *arithReq, fn func(it lockedItem, created bool, n uint64)) (res result, n, cas uint64, created bool) {
	s, h, now, res := c.acquire(r.key)
	if res != resultOK {
		return res, 0, 0, false
	}
	defer s.unlock()
	key := r.key
	var digits [20]byte
	_, off, ok := s.lookup(key, h, now)
	if !ok {
		if !r.create {
			if r.decr {
				s.st.decrMisses++
			} else {
				s.st.incrMisses++
			}
			return resultNotFound, 0, 0, false
		}
		d := strconv.AppendUint(digits[:0], r.initial, 10)
		if off, ok = s.create(key, h, d, expiry(r.exptime, now), r.casIn, r.binaryKey, now); !ok {
			return resultNoMemory, 0, 0, true
		}
		if fn != nil {
			fn(lockedItem{c, s, off, now}, true, r.initial)
		}
		return resultOK, r.initial, c.casOut(s.cas(off)), true
	}
	v := s.value(off)
	if len(v) == 0 {
		return resultNonNumeric, 0, 0, false
	}
	if r.cas != 0 && c.casOut(s.cas(off)) != r.cas {
		return resultExists, 0, 0, false
	}
	if n, ok = parseCounter(v); !ok {
		return resultNonNumeric, 0, 0, false
	}
	if r.decr {
		s.st.decrHits++
		n -= min(n, r.delta)
	} else {
		s.st.incrHits++
		n += r.delta
	}
	d := strconv.AppendUint(digits[:0], n, 10)
	if len(d) <= len(v) {
		// In place, space-padded, as memcached does when the number fits
		// (unless making room for the CAS cost the item: then as below).
		if off, ok = s.widen(key, h, off, now); ok {
			vl, at := s.layout(off)
			s.guard(at, at+vl) // a reply may be sending the old number
			padNumber(s.buf[at:at+vl], d)
			cas := r.casIn
			if cas == 0 {
				cas = s.nextCAS()
			}
			s.setCAS(off, cas)
			s.bump(off, now)
			if fn != nil {
				fn(lockedItem{c, s, off, now}, false, n)
			}
			return resultOK, n, c.casOut(cas), false
		}
	}
	// Wide, so that a TTL and the next change fit in place.
	dst, _, _, placed := s.place(len(key), len(d), 0, 0, r.casIn, true, h, off >= s.main.base, now)
	if !placed {
		s.st.storeNoMemory++
		return resultNoMemory, 0, 0, false
	}
	// Making room may have evicted the item; memcached would still have
	// stored the result, as a new item, and so do we.
	slot, off, found := s.lookup(key, h, now)
	var flags, exp uint32
	var bits byte
	if found {
		flags, exp, bits = s.flags(off), s.expiry(off), s.bits(off)&(freqMask|bitKeyBinary)
	}
	copy(s.write(dst, key, len(d), flags, exp, now, r.casIn, bits, true), d)
	s.link(key, h, slot, found, dst)
	s.st.totalItems++
	if fn != nil {
		fn(lockedItem{c, s, dst, now}, false, n)
	}
	return resultOK, n, c.casOut(s.cas(dst)), false
}

// parseCounter reads a value as memcached's arithmetic does: strtoull over
// the value as a C string (up to a NUL), so leading spaces and anything
// after a space that follows the digits are allowed.
func parseCounter(v []byte) (uint64, bool) {
	if z := bytes.IndexByte(v, 0); z >= 0 {
		v = v[:z]
	}
	return safeStrtoull(v)
}

// padNumber writes the digits d over the value v, which is at least as
// long, and fills the rest with spaces, as memcached rewrites a number in
// place (the old value may carry any number of trailing spaces).
func padNumber(v, d []byte) {
	for i := copy(v, d); i < len(v); i++ {
		v[i] = ' '
	}
}

// crawler keeps the coarse clock and, every crawlTicks ticks, reclaims the
// expired items of a crawlPass-th of each shard's index.
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
				s.crawlStep(now)
				s.sweepDead(max((len(s.slots)+crawlPass-1)/crawlPass, sweepMinRecords))
			}
			s.unlock()
		}
	}
}

// flushNow drops every item of every shard (flush_all without a delay).
func (c *Cache) flushNow() {
	now := uint32(c.unixNow())
	for _, s := range c.shards {
		s.mu.Lock()
		if !s.closed() {
			if s.onRemove != nil {
				s.noteFlush(now)
			}
			s.clear()
		}
		s.unlock()
	}
	c.leases.changedAll()
}
