package emcache

import (
	"bytes"
	"time"
	"unsafe"
)

// UpdateOp is what an [UpdateFunc] decides to do with the item.
type UpdateOp uint8

const (
	// UpdateSet stores the returned value, expiring after the returned TTL
	// (0: never).
	UpdateSet UpdateOp = iota
	// UpdateKeepTTL stores the returned value and keeps the item's expiry;
	// the returned TTL applies only when there was no item.
	UpdateKeepTTL
	// UpdateDelete removes the item, if there is one.
	UpdateDelete
	// UpdateAbort leaves the cache as it is.
	UpdateAbort
)

// UpdateFunc computes an item's new value from its current one for
// [Cache.Update]. old is the item's value and found whether there is one
// (a lease item, see GetOrLoad, is none). It runs under the lock of the
// item's shard, which serves other keys too: it must be short, must not
// call the cache (that deadlocks), and must neither modify old nor keep it
// after it returns; it may return old, or part of it, unchanged.
type UpdateFunc func(old []byte, found bool) (value []byte, ttl time.Duration, op UpdateOp)

// Update changes the item under key atomically: fn reads the current value
// and returns the new one, and no other operation on the key runs in
// between, so a counter or a document changes without a CAS retry loop.
// The item keeps its client flags. Update returns the item's new CAS, 0
// when fn deleted or aborted; a value that cannot be stored (too large, no
// memory) leaves the old item and returns the store's error. It counts as
// a get and, when it stores, a set.
func (c *Cache) Update(key []byte, fn UpdateFunc) (uint64, error) {
	s, h, now, res := c.acquire(key)
	if res != resultOK {
		return 0, res.err()
	}
	defer s.unlock()
	s.st.cmdGet++
	slot, off, found := s.lookup(key, h, now)
	var old []byte
	var flags uint32
	if found && !s.isLease(off) {
		s.st.getHits++
		old, flags = s.value(off), s.flags(off)
		s.touchRead(off, now)
	} else {
		s.st.getMisses++
		found = false
	}
	value, ttl, op := fn(old, found)
	switch op {
	case UpdateSet, UpdateKeepTTL:
	case UpdateDelete:
		if found {
			c.leases.changed(key)
			s.st.deleteHits++
			s.unlink(slot)
		}
		return 0, nil
	default:
		return 0, nil
	}
	if overlaps(value, s.buf) {
		// Storing may move or evict the record value points into.
		value = bytes.Clone(value)
	}
	r := storeReq{
		kind: storeSet, key: key, value: value, flags: flags, exptime: c.exptime(ttl),
		keepExpiry: op == UpdateKeepTTL, binaryKey: !wireKey(key),
	}
	res, cas, _ := c.storeLocked(s, h, now, &r)
	return cas, res.err()
}

// overlaps reports whether a and b share memory.
func overlaps(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	pa, pb := uintptr(unsafe.Pointer(unsafe.SliceData(a))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return pa < pb+uintptr(len(b)) && pb < pa+uintptr(len(a))
}
