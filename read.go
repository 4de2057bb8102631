package emcache

// The engine's reads (engine.go has its writes): get, gat and touch for the
// Go API and the text and binary protocols, mg with its meta extensions,
// and the peeks of me and watch lines, which neither count nor bump.

// view is the zero-copy read of get, gat and touch: on a hit it calls fn
// with the item under the shard lock (fn must neither retain value nor call
// the cache; nil for none). With touch it first sets the expiry, and counts a touch
// rather than a get, as memcached counts gat and touch.
func (c *Cache) view(key []byte, touch bool, exptime int64, fn func(value []byte, flags, exp uint32, cas uint64)) result {
	return c.viewItem(key, touch, exptime, false, fn)
}

// viewItem is view; with hideLease, the Go API's, the empty item a load's
// lease holds the key with (isLease) is a miss.
func (c *Cache) viewItem(key []byte, touch bool, exptime int64, hideLease bool, fn func(value []byte, flags, exp uint32, cas uint64)) result {
	s, h, now, res := c.acquire(key)
	if res != resultOK {
		return res
	}
	off, ok := s.read(key, h, now, touch, exptime, hideLease)
	if ok && fn != nil {
		value, flags, exp, cas := s.decode(off)
		fn(value, flags, exp, c.casOut(cas))
	}
	s.unlock()
	if !ok {
		return resultNotFound
	}
	return resultOK
}

// viewShard is view whose fn also gets the item's shard, locked, so that a
// reply can pin the value there rather than copy it (pin.go).
func (c *Cache) viewShard(key []byte, touch bool, exptime int64, fn func(s *shard, value []byte, flags uint32, cas uint64)) result {
	s, h, now, res := c.acquire(key)
	if res != resultOK {
		return res
	}
	off, ok := s.read(key, h, now, touch, exptime, false)
	if ok {
		value, flags, _, cas := s.decode(off)
		fn(s, value, flags, c.casOut(cas))
	}
	s.unlock()
	if !ok {
		return resultNotFound
	}
	return resultOK
}

// read looks up key for a get or touch and counts it; with touch it also
// sets the expiry. With hideLease a lease's item counts as a miss.
func (s *shard) read(key []byte, h uint64, now uint32, touch bool, exptime int64, hideLease bool) (uint64, bool) {
	if touch {
		s.st.cmdTouch++
	} else {
		s.st.cmdGet++
	}
	_, off, ok, wasExpired := s.lookupExpired(key, h, now)
	if wasExpired {
		s.st.getExpired++ // memcached's do_item_get counts it for touches too
	}
	if ok && hideLease && s.isLease(off) {
		ok = false
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

// lockedItem is a live item as the callback of a meta operation sees it.
// It is valid only during the callback, which runs under the shard's lock
// and must not call the cache.
type lockedItem struct {
	c   *Cache
	s   *shard
	off uint64
	now uint32
}

func (m lockedItem) key() []byte { return m.s.key(m.off) }

func (m lockedItem) value() []byte { return m.s.value(m.off) }

func (m lockedItem) clientFlags() uint32 { return m.s.flags(m.off) }

func (m lockedItem) cas() uint64 { return m.c.casOut(m.s.cas(m.off)) }

func (m lockedItem) has(bit byte) bool { return m.s.bits(m.off)&bit != 0 }

func (m lockedItem) mark(bit byte) { m.s.buf[m.off+offBits] |= bit }

func (m lockedItem) expiry() uint32 { return m.s.expiry(m.off) }

// setExptime sets the expiry from a memcached exptime; the operation has
// widened the record if it may (metaGetReq.touch, arith).
func (m lockedItem) setExptime(exptime int64) { m.s.setExpiry(m.off, expiry(exptime, m.now)) }

// ttl is the remaining time to live as memcached's t flag prints it: -1 for
// never, else the expiry minus now in 32-bit unsigned arithmetic.
func (m lockedItem) ttl() int64 {
	exp := m.expiry()
	if exp == 0 {
		return -1
	}
	return int64(exp - m.now)
}

// idle is the seconds since the item was last accessed (the l flag).
func (m lockedItem) idle() uint32 { return m.s.idle(m.off, m.now) }

// metaGetReq are the mg flags that act on the cache rather than on the
// reply.
type metaGetReq struct {
	noBump    bool   // u: neither mark the item fetched nor note the access
	touch     bool   // T: a hit counts as a touch, not as a get
	vivify    bool   // N: create an empty item on a miss
	casIn     uint64 // E: the CAS of a vivified item (0: its own)
	binaryKey bool   // b: a vivified item's key came base64-encoded
}

// metaGet looks key up for mg. On a hit, or when r.vivify created the item,
// it calls fn with the item and whether it was just created, then marks the
// item fetched (unless r.noBump), and returns true. fn sees the item as it
// was before this command read it, so that mg's h and l flags report the
// previous access, and may change its TTL and win bit. It counts the
// command as memcached counts mg: a get, or with T a touch when it hits.
func (c *Cache) metaGet(key []byte, r *metaGetReq, fn func(it lockedItem, created bool)) bool {
	s, h, now, res := c.acquire(key)
	if res != resultOK {
		return false
	}
	defer s.unlock()
	_, off, ok, wasExpired := s.lookupExpired(key, h, now)
	if wasExpired {
		s.st.getExpired++
	}
	if ok && r.touch {
		off, ok = s.widen(key, h, off, now)
	}
	created := false
	if !ok && r.vivify {
		off, ok = s.create(key, h, nil, 0, r.casIn, r.binaryKey, now)
		created = ok
	}
	if !ok {
		s.st.cmdGet++
		s.st.getMisses++
		return false
	}
	fn(lockedItem{c, s, off, now}, created)
	if r.touch {
		s.st.cmdTouch++
		s.st.touchHits++
	} else {
		s.st.cmdGet++
		s.st.getHits++
	}
	if !r.noBump {
		s.touchRead(off, now)
	}
	return true
}

// debugInfo is what me reports of an item.
type debugInfo struct {
	exp     int32  // memcached's exp=: -1 for never, else now minus the expiry
	idle    uint32 // la=: seconds since the last access
	cas     uint64
	fetched bool
	size    int // size=: the item's bytes, header included
	binary  bool
}

// debug returns what me shows of the item under key, without touching it
// or counting a read.
func (c *Cache) debug(key []byte) (debugInfo, bool) {
	s, h, now, res := c.acquire(key)
	if res != resultOK {
		return debugInfo{}, false
	}
	defer s.unlock()
	_, off, ok := s.lookup(key, h, now)
	if !ok {
		return debugInfo{}, false
	}
	info := debugInfo{
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

// peekSize returns the value length of the live item under key, without
// touching it or counting a read.
func (c *Cache) peekSize(key []byte) (int, bool) {
	s, h, now, res := c.acquire(key)
	if res != resultOK {
		return 0, false
	}
	defer s.unlock()
	slot, ok := s.find(key, h)
	if !ok {
		return 0, false
	}
	off := s.offAt(slot)
	if expired(s.expiry(off), now) || len(s.dead) != 0 && s.prefixDead(off) {
		return 0, false
	}
	vl, _ := s.layout(off)
	return int(vl), true
}
