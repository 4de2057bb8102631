package emcache

import (
	"bytes"
	"strconv"
)

// The cache operations of the meta protocol (meta.go). Each runs under its
// shard's lock, as memcached runs a meta command under the item lock, so
// that what a command reads (hit before, last access, win token) and what it
// changes (TTL, stale mark, CAS) form one atomic step.

// maxArithLen is the longest value ma treats as a number: memcached copies
// values shorter than INCR_MAX_STORAGE_LEN (24, with the CRLF) into a buffer
// to parse them and calls longer ones non-numeric.
const maxArithLen = 24 - 2 - 1

// metaStatus is the outcome of a meta cache operation; the protocol turns it
// into a return code.
type metaStatus uint8

const (
	metaOK          metaStatus = iota // HD (or VA)
	metaNotStored                     // NS
	metaExists                        // EX
	metaNotFound                      // NF
	metaNonNumeric                    // ma on a value that is no number
	metaNoMemory                      // no room could be made
	metaNoMemoryNew                   // no room for the item ma N creates
)

// metaItem is a live item as the callback of a meta operation sees it. It is
// valid only during the callback, which runs under the shard's lock and must
// not call the cache.
type metaItem struct {
	c   *Cache
	s   *shard
	off uint64
	now uint32
}

func (m metaItem) key() []byte         { return m.s.key(m.off) }
func (m metaItem) value() []byte       { return m.s.value(m.off) }
func (m metaItem) clientFlags() uint32 { return m.s.flags(m.off) }
func (m metaItem) cas() uint64         { return m.c.casOut(m.s.cas(m.off)) }
func (m metaItem) has(bit byte) bool   { return m.s.bits(m.off)&bit != 0 }
func (m metaItem) mark(bit byte)       { m.s.buf[m.off+offBits] |= bit }
func (m metaItem) expiry() uint32      { return m.s.expiry(m.off) }

// setExptime sets the expiry from a memcached exptime; the operation has
// widened the record if it may (metaGetArgs.touch, metaArith).
func (m metaItem) setExptime(exptime int64) { m.s.setExpiry(m.off, expiry(exptime, m.now)) }

// ttl is the remaining time to live as memcached's t flag prints it: -1 for
// never, else the expiry minus now in 32-bit unsigned arithmetic.
func (m metaItem) ttl() int64 {
	exp := m.expiry()
	if exp == 0 {
		return -1
	}
	return int64(exp - m.now)
}

// idle is the seconds since the item was last accessed (the l flag).
func (m metaItem) idle() uint32 { return m.s.idle(m.off, m.now) }

// metaGetArgs are the mg flags that act on the cache rather than on the
// reply.
type metaGetArgs struct {
	noBump   bool   // u: neither mark the item fetched nor note the access
	touch    bool   // T: a hit counts as a touch, not as a get
	vivify   bool   // N: create an empty item on a miss
	hasCASIn bool   // E: casIn is the CAS of a vivified item
	casIn    uint64 //
	binary   bool   // b: a vivified item's key came base64-encoded
}

// metaGet looks key up for mg. On a hit, or when a.vivify created the item,
// it calls fn with the item and whether it was just created, then marks the
// item fetched (unless a.noBump), and returns true. fn sees the item as it
// was before this command read it, so that mg's h and l flags report the
// previous access, and may change its TTL and win bit. It counts the
// command as memcached counts mg: a get, or with T a touch when it hits.
func (c *Cache) metaGet(key []byte, a *metaGetArgs, fn func(it metaItem, created bool)) bool {
	s, h, now, err := c.acquire(key)
	if err != nil {
		return false
	}
	defer s.mu.Unlock()
	_, off, ok, wasExpired := s.lookupExpired(key, h, now)
	if wasExpired {
		s.st.getExpired++
	}
	if ok && a.touch {
		off, ok = s.widen(key, h, off, now)
	}
	created := false
	if !ok && a.vivify {
		off, ok = s.metaCreate(key, h, nil, a.hasCASIn, a.casIn, a.binary, now)
		created = ok
	}
	if !ok {
		s.st.cmdGet++
		s.st.getMisses++
		return false
	}
	fn(metaItem{c, s, off, now}, created)
	if a.touch {
		s.st.cmdTouch++
		s.st.touchHits++
	} else {
		s.st.cmdGet++
		s.st.getHits++
	}
	if !a.noBump {
		s.touchRead(off, now)
	}
	return true
}

// metaCreate stores a new item under key, which holds none: value, client
// flags 0, no expiry, CAS casIn or its own. The record is wide, since the
// command goes on to set its TTL. It reports false when no room can be made.
func (s *shard) metaCreate(key []byte, h uint64, value []byte, hasCASIn bool, casIn uint64, binary bool, now uint32) (uint64, bool) {
	var cas uint64
	if hasCASIn {
		cas = casIn
	}
	dst, _, cas, ok := s.place(len(key), len(value), 0, 0, cas, true, h, false, now)
	if !ok {
		return 0, false
	}
	var bits byte
	if binary {
		bits = bitKeyBinary
	}
	copy(s.write(dst, key, len(value), 0, 0, now, cas, bits, true), value)
	s.link(key, h, 0, false, dst)
	s.st.totalItems++
	return dst, true
}

// metaStoreArgs are the ms flags that decide how the value is stored.
type metaStoreArgs struct {
	mode        byte   // M: S set, E add, A append, P prepend, R replace
	clientFlags uint32 // F
	exptime     int64  // T, memcached exptime
	vivify      bool   // N: append and prepend create the item on a miss
	vivExptime  int64  // N's exptime for that item
	hasCAS      bool   // C: store only if the item's CAS is cas
	cas         uint64 //
	hasCASIn    bool   // E: casIn is the stored item's CAS
	casIn       uint64 //
	invalidate  bool   // I: with C, a lower CAS stores the value as stale
	binary      bool   // b: the key came base64-encoded
}

// casResult is how a request's CAS compares with an item's (do_store_item).
type casResult uint8

const (
	casNone casResult = iota // no CAS given (or CAS disabled)
	casMatch
	casStale // lower than the item's, and ms I allows that
	casBadval
)

// metaStore stores value under key as ms does (memcached's do_store_item
// with the meta extensions: CAS in every mode, E, I, N). It returns the
// status, the new CAS when stored, and the stored value's length (the
// appended total for append and prepend).
func (c *Cache) metaStore(key, value []byte, a *metaStoreArgs) (metaStatus, uint64, int) {
	s, h, now, err := c.acquire(key)
	if err != nil {
		return metaNoMemory, 0, 0
	}
	defer s.mu.Unlock()
	s.st.cmdSet++
	mode := a.mode
	if a.hasCAS && (mode == 'S' || mode == 'R') {
		mode = 'C' // a set or replace with C is memcached's cas
	}
	appending := mode == 'A' || mode == 'P'
	var reqCAS uint64 // with CAS disabled memcached cannot set it: never a match
	if a.hasCAS && !c.noCAS {
		reqCAS = a.cas
	}
	exp := expiry(a.exptime, now)
	flags := a.clientFlags
	var bits byte
	if a.binary {
		bits = bitKeyBinary
	}
	valLen := len(value)
	_, off, found := s.lookup(key, h, now)
	if found {
		res := casNone
		oldCAS := c.casOut(s.cas(off))
		switch {
		case reqCAS == 0:
		case reqCAS == oldCAS:
			res = casMatch
		case a.invalidate && mode == 'C' && reqCAS < oldCAS:
			res = casStale
		default:
			res = casBadval
		}
		switch mode {
		case 'E':
			s.noteAccess(off, now)
			return metaNotStored, 0, len(value)
		case 'C':
			switch res {
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
				return metaExists, 0, len(value)
			}
		case 'A', 'P':
			if res != casNone && res != casMatch {
				return metaExists, 0, len(value)
			}
			flags, exp = s.flags(off), s.expiry(off)
			valLen += len(s.value(off))
		}
	} else {
		switch mode {
		case 'C':
			s.st.casMisses++
			return metaNotFound, 0, len(value)
		case 'R':
			return metaNotStored, 0, len(value)
		case 'A', 'P':
			if !a.vivify {
				return metaNotStored, 0, len(value)
			}
			exp = expiry(a.vivExptime, now)
		}
	}
	if c.itemSize(len(key), valLen, flags) > c.maxItemSize {
		// Only a concatenation gets here: the protocol refuses other
		// values that are too large before reading them. memcached's
		// allocation of the joined item fails and the store is refused.
		return metaNotStored, 0, len(value)
	}
	var cas uint64
	if a.hasCASIn {
		cas = a.casIn
	}
	dst, size, cas, ok := s.place(len(key), valLen, flags, exp, cas, false, h, found && off >= s.main.base, now)
	if !ok {
		s.st.storeNoMemory++
		if slot, f := s.find(key, h); f {
			s.unlink(slot) // no stale value survives a failed store
		}
		return metaNoMemory, 0, len(value)
	}
	// Making room may have moved or evicted the old item: look again.
	slot, off, stillFound := s.lookup(key, h, now)
	if found && !stillFound && appending {
		s.hole(dst, size)
		return metaNotStored, 0, len(value)
	}
	if stillFound {
		bits |= s.bits(off) & freqMask
	}
	v := s.write(dst, key, valLen, flags, exp, now, cas, bits, false)
	switch {
	case found && mode == 'A':
		copy(v[copy(v, s.value(off)):], value)
	case found && mode == 'P':
		copy(v[copy(v, value):], s.value(off))
	default:
		copy(v, value)
	}
	s.link(key, h, slot, stillFound, dst)
	s.st.totalItems++
	return metaOK, c.casOut(s.cas(dst)), valLen
}

// metaRefuse records an ms refused before its data block was read, for its
// size or for lack of memory, and removes the item under key: memcached
// unlinks it whatever the mode, so that no stale value outlives a failed
// store.
func (c *Cache) metaRefuse(key []byte, tooLarge bool) {
	s, h, now, err := c.acquire(key)
	if err != nil {
		return
	}
	defer s.mu.Unlock()
	if tooLarge {
		s.st.storeTooLarge++
	} else {
		s.st.storeNoMemory++
	}
	if slot, _, found := s.lookup(key, h, now); found {
		s.unlink(slot)
	}
}

// metaDeleteArgs are the md flags.
type metaDeleteArgs struct {
	hasCAS      bool   // C: act only if the item's CAS is cas
	cas         uint64 //
	hasCASIn    bool   // E: casIn is the CAS I or x leaves
	casIn       uint64 //
	invalidate  bool   // I: mark stale instead of removing
	removeValue bool   // x: empty the value instead of removing
	hasTTL      bool   // T: with I or x, the new exptime
	exptime     int64  //
	clientFlags uint32 // F: the client flags x leaves
	binary      bool   // b
}

// metaDelete runs md: it removes the item under key, or with x replaces its
// value by an empty one, and with I marks it stale with a new CAS, so that
// the next mg wins the right to recache it.
func (c *Cache) metaDelete(key []byte, a *metaDeleteArgs) metaStatus {
	s, h, now, err := c.acquire(key)
	if err != nil {
		return metaNotFound
	}
	defer s.mu.Unlock()
	slot, off, ok := s.lookup(key, h, now)
	if !ok {
		s.st.deleteMisses++
		return metaNotFound
	}
	if a.hasCAS && c.casOut(s.cas(off)) != a.cas {
		s.st.deleteMisses++
		return metaExists
	}
	if a.removeValue {
		// A tombstone: an empty item keeps the key (and the CAS, unless
		// E gives one) with the flags and TTL of this command.
		cas := a.casIn
		if !a.hasCASIn {
			cas = s.cas(off)
		}
		dst, _, _, placed := s.place(len(key), 0, 0, 0, cas, true, h, off >= s.main.base, now)
		if !placed {
			return metaNoMemory
		}
		var exp uint32
		if a.hasTTL {
			exp = expiry(a.exptime, now)
		}
		var bits byte
		if a.binary {
			bits = bitKeyBinary
		}
		var found bool
		slot, _, found = s.lookup(key, h, now)
		s.write(dst, key, 0, a.clientFlags, exp, now, cas, bits, true)
		s.link(key, h, slot, found, dst)
		s.st.totalItems++
		off = dst
	}
	if a.invalidate {
		if off, ok = s.widen(key, h, off, now); !ok {
			return metaNoMemory
		}
		if a.hasTTL {
			s.setExpiry(off, expiry(a.exptime, now))
		}
		s.buf[off+offBits] = s.buf[off+offBits]&^bitWon | bitStale
		cas := a.casIn
		if !a.hasCASIn {
			cas = s.nextCAS()
		}
		s.setCAS(off, cas)
		return metaOK
	}
	s.st.deleteHits++
	if !a.removeValue {
		s.unlink(slot)
	}
	return metaOK
}

// metaArithArgs are the ma flags that decide the arithmetic.
type metaArithArgs struct {
	decr     bool   // M D or -
	delta    uint64 // D
	vivify   bool   // N: create the item on a miss, with initial
	initial  uint64 // J
	hasCAS   bool   // C: act only if the item's CAS is cas (0: always)
	cas      uint64 //
	hasCASIn bool   // E: casIn is the CAS of the result
	casIn    uint64 //
	binary   bool   // b
}

// metaArith runs ma, memcached's do_add_delta with meta's CAS, E and
// auto-creation. On success it calls fn with the resulting item, whether it
// was just created, and the resulting number; fn may change the item's TTL.
func (c *Cache) metaArith(key []byte, a *metaArithArgs, fn func(it metaItem, created bool, n uint64)) metaStatus {
	s, h, now, err := c.acquire(key)
	if err != nil {
		return metaNotFound
	}
	defer s.mu.Unlock()
	var digits [20]byte
	_, off, ok := s.lookup(key, h, now)
	if !ok {
		if !a.vivify {
			if a.decr {
				s.st.decrMisses++
			} else {
				s.st.incrMisses++
			}
			return metaNotFound
		}
		d := strconv.AppendUint(digits[:0], a.initial, 10)
		off, ok = s.metaCreate(key, h, d, a.hasCASIn, a.casIn, a.binary, now)
		if !ok {
			return metaNoMemoryNew
		}
		fn(metaItem{c, s, off, now}, true, a.initial)
		return metaOK
	}
	v := s.value(off)
	if len(v) == 0 {
		return metaNonNumeric
	}
	if a.hasCAS && a.cas != 0 && c.casOut(s.cas(off)) != a.cas {
		return metaExists
	}
	if len(v) > maxArithLen {
		return metaNonNumeric
	}
	num := v
	if z := bytes.IndexByte(num, 0); z >= 0 {
		num = num[:z] // memcached parses the value as a C string
	}
	n, ok := safeStrtoull(num)
	if !ok {
		return metaNonNumeric
	}
	if a.decr {
		s.st.decrHits++
		n -= min(n, a.delta)
	} else {
		s.st.incrHits++
		n += a.delta
	}
	cas := a.casIn
	if !a.hasCASIn {
		cas = s.nextCAS()
	}
	d := strconv.AppendUint(digits[:0], n, 10)
	if len(d) <= len(v) {
		// In place, space-padded, as memcached does when the number fits
		// (unless making room for the CAS cost the item: then as below).
		if off, ok = s.widen(key, h, off, now); ok {
			padNumber(s.value(off), d)
			s.setCAS(off, cas)
			s.noteAccess(off, now)
			fn(metaItem{c, s, off, now}, false, n)
			return metaOK
		}
	}
	// Wide, so that the T flag and the next change fit in place.
	dst, _, _, placed := s.place(len(key), len(d), 0, 0, cas, true, h, off >= s.main.base, now)
	if !placed {
		s.st.storeNoMemory++
		return metaNoMemory
	}
	slot, off, found := s.lookup(key, h, now)
	var flags, exp uint32
	var bits byte
	if found {
		flags, exp, bits = s.flags(off), s.expiry(off), s.bits(off)&(freqMask|bitKeyBinary)
	}
	copy(s.write(dst, key, len(d), flags, exp, now, cas, bits, true), d)
	s.link(key, h, slot, found, dst)
	s.st.totalItems++
	fn(metaItem{c, s, dst, now}, false, n)
	return metaOK
}

// metaDebugInfo is what me reports of an item.
type metaDebugInfo struct {
	exp     int32  // memcached's exp=: -1 for never, else now minus the expiry
	idle    uint32 // la=: seconds since the last access
	cas     uint64
	fetched bool
	size    int // size=: the item's bytes, header included
	binary  bool
}

// metaDebug returns what me shows of the item under key, without touching
// it or counting a read.
func (c *Cache) metaDebug(key []byte) (metaDebugInfo, bool) {
	s, h, now, err := c.acquire(key)
	if err != nil {
		return metaDebugInfo{}, false
	}
	defer s.mu.Unlock()
	_, off, ok := s.lookup(key, h, now)
	if !ok {
		return metaDebugInfo{}, false
	}
	info := metaDebugInfo{
		exp:     -1,
		idle:    s.idle(off, now),
		cas:     c.casOut(s.cas(off)),
		fetched: s.bits(off)&bitFetched != 0,
		size:    int(s.size(off)),
		binary:  s.bits(off)&bitKeyBinary != 0,
	}
	if exp := s.expiry(off); exp != 0 {
		// memcached prints current_time - exptime, negative while the
		// item lives; kept for tools that parse it.
		info.exp = int32(now - exp)
	}
	return info, true
}
