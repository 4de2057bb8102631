package emcache

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"sync"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// An item is stored in a shard's arena as one record:
//
//	[0]      key length (0 marks a hole: padding or an abandoned allocation)
//	[1]      bits: frequency (2 bits), fetched, stale, win-token-given
//	[2:6]    value length
//	[6:10]   client flags
//	[10:14]  expiry, Unix seconds (0 = never)
//	[14:18]  last access, Unix seconds
//	[18:26]  CAS
//	[26:]    key, then value
//
// A hole's value-length field holds the number of bytes to skip after its
// header. The last bytes of a ring too short for a header are skipped
// implicitly.
const (
	offBits    = 1
	offValLen  = 2
	offFlags   = 6
	offExpiry  = 10
	offAccess  = 14
	offCAS     = 18
	headerSize = 26
)

const (
	freqMask   = 0x03 // S3-FIFO's 2-bit access counter
	bitFetched = 0x04 // read at least once (memcached's ITEM_FETCHED)
	bitStale   = 0x08 // marked stale by meta invalidation
	bitWon     = 0x10 // a recache win token was handed out
	// bitKeyBinary: a meta command sent the key base64-encoded (b flag), so
	// mg's k flag and me echo it encoded, as memcached's ITEM_KEY_BINARY
	// does; a store through the classic API clears it.
	bitKeyBinary = 0x20
)

// moveBudget bounds how many live items one allocation may move (reinsert or
// promote) before it evicts regardless of access bits, so the latency of a
// store stays bounded even when every item was recently read.
const moveBudget = 32

// liveFullNum/liveFullDen is the share of a shard's arena live items must
// fill before it evicts: below it, the log's dead records make room.
const (
	liveFullNum = 7
	liveFullDen = 8
)

// noEvictMoveBudget is moveBudget for caches that never evict.
const noEvictMoveBudget = 1024

// smallRingPercent is S3-FIFO's small-queue share: new items enter a small
// FIFO and only those read again while in it are promoted to the main ring,
// which keeps one-hit wonders (scans) from flushing the working set.
const smallRingPercent = 10

// ghostRatio sizes the direct-mapped ghost table at a quarter of the index:
// S3-FIFO's ghost should remember about as many keys as the main ring holds,
// and a collision merely forgets one; this costs about two bytes per item.
const ghostRatio = 4

// maxLoadNum/maxLoadDen is the index's maximum load factor before doubling;
// linear probing stays short below 3/4.
const (
	maxLoadNum = 3
	maxLoadDen = 4
)

var le = binary.LittleEndian

// ring is a circular log inside a shard's arena. Positions are logical
// (monotonic); the physical offset is base + pos%size.
type ring struct {
	base, size uint64
	head, tail uint64
}

func (r *ring) free() uint64           { return r.size - (r.head - r.tail) }
func (r *ring) phys(pos uint64) uint64 { return r.base + pos%r.size }

// shard owns one part of the key space: an arena split into S3-FIFO's small
// and main rings, and an open-addressing index of pointer-free slots.
type shard struct {
	mu sync.Mutex

	mem         *shardMem
	buf         []byte // mem.buf; nil once closed
	small, main ring

	// slots hold tag<<32 | (arena offset+1); 0 is empty. The tag is the high
	// half of the key's hash and also picks the home slot, so the table can
	// grow without reading keys.
	slots []uint64
	mask  uint64
	count uint64 // live items
	bytes uint64 // arena bytes held by live items

	// ghost remembers tags of items evicted from the small ring without a
	// second access; a store of such a key goes straight to the main ring.
	ghost []uint32

	id       uint64 // shard index, the low bits of every CAS it hands out
	casShift uint
	casSeq   uint64

	noEvict bool
	st      counters
	cursor  uint64 // crawler position in slots

	_ [64]byte // keep neighbouring shards' locks off this cache line
}

// counters are kept per shard, under its lock, and summed by Stats, so the
// hot path touches no shared cache line.
type counters struct {
	totalItems, evictions, expiredUnfetched, evictedUnfetched uint64
	reclaimed, crawlerReclaimed                               uint64
	getHits, getMisses, getExpired, cmdGet, cmdSet, cmdTouch  uint64
	casMisses, casHits, casBadval                             uint64
	incrMisses, incrHits, decrMisses, decrHits                uint64
	deleteMisses, deleteHits, touchHits, touchMisses          uint64
	storeTooLarge, storeNoMemory                              uint64
}

// initialSlots is a new shard's index size.
const initialSlots = 1024

func newShard(id uint64, casShift uint, capacity uint64, noEvict bool) *shard {
	s := &shard{id: id, casShift: casShift, noEvict: noEvict, mem: new(shardMem)}
	s.setArena(s.mem.arena(int(capacity)))
	s.setSlots(s.mem.index(initialSlots))
	runtime.AddCleanup(s, (*shardMem).free, s.mem)
	return s
}

// shardMem owns a shard's memory, which lives outside the Go heap where the
// OS allows (allocBytes). It is separate from the shard so that a cleanup can
// free it once the shard is unreachable.
type shardMem struct {
	buf   []byte
	slots []byte // the index and ghost table, one mapping
}

func (m *shardMem) arena(n int) []byte {
	freeBytes(m.buf)
	m.buf = allocBytes(n)
	return m.buf
}

// index maps n index slots and the ghost table that goes with them.
func (m *shardMem) index(n int) []byte {
	freeBytes(m.slots)
	m.slots = allocBytes(n*8 + n/ghostRatio*4)
	return m.slots
}

func (m *shardMem) free() {
	freeBytes(m.buf)
	freeBytes(m.slots)
	m.buf, m.slots = nil, nil
}

// setSlots points the index and ghost table into mem, as index laid it out.
func (s *shard) setSlots(mem []byte) {
	n := len(mem) * ghostRatio / (8*ghostRatio + 4)
	s.slots = unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(mem))), n)
	s.ghost = unsafe.Slice((*uint32)(unsafe.Pointer(&mem[n*8])), n/ghostRatio)
	s.mask = uint64(n - 1)
}

// release frees the shard's memory (Close); the shard is closed after.
func (s *shard) release() {
	s.mem.free()
	s.buf, s.slots, s.ghost = nil, nil, nil
	s.count, s.bytes = 0, 0
}

func (s *shard) closed() bool { return s.buf == nil }

func (s *shard) setArena(buf []byte) {
	s.buf = buf
	smallSize := uint64(len(buf)) * smallRingPercent / 100
	s.small = ring{base: 0, size: smallSize}
	s.main = ring{base: smallSize, size: uint64(len(buf)) - smallSize}
}

func (s *shard) nextCAS() uint64 {
	s.casSeq++
	return s.casSeq<<s.casShift | s.id
}

// record accessors; off is a record's arena offset.

func (s *shard) keyLen(off uint64) uint64 { return uint64(s.buf[off]) }
func (s *shard) valLen(off uint64) uint64 { return uint64(le.Uint32(s.buf[off+offValLen:])) }
func (s *shard) size(off uint64) uint64   { return headerSize + s.keyLen(off) + s.valLen(off) }
func (s *shard) key(off uint64) []byte    { return s.buf[off+headerSize : off+headerSize+s.keyLen(off)] }
func (s *shard) value(off uint64) []byte {
	start := off + headerSize + s.keyLen(off)
	return s.buf[start : start+s.valLen(off)]
}
func (s *shard) flags(off uint64) uint32  { return le.Uint32(s.buf[off+offFlags:]) }
func (s *shard) expiry(off uint64) uint32 { return le.Uint32(s.buf[off+offExpiry:]) }
func (s *shard) access(off uint64) uint32 { return le.Uint32(s.buf[off+offAccess:]) }
func (s *shard) cas(off uint64) uint64    { return le.Uint64(s.buf[off+offCAS:]) }
func (s *shard) bits(off uint64) byte     { return s.buf[off+offBits] }

func (s *shard) setExpiry(off uint64, exp uint32) { le.PutUint32(s.buf[off+offExpiry:], exp) }
func (s *shard) setCAS(off uint64, cas uint64)    { le.PutUint64(s.buf[off+offCAS:], cas) }

func expired(exp, now uint32) bool { return exp != 0 && exp <= now }

// noteAccess records an access without counting a read, as memcached's
// do_item_update does for an add that finds the key taken.
func (s *shard) noteAccess(off uint64, now uint32) { le.PutUint32(s.buf[off+offAccess:], now) }

// touchRead records a read: bump the frequency, mark fetched, note the time.
func (s *shard) touchRead(off uint64, now uint32) {
	b := s.buf[off+offBits]
	if b&freqMask < freqMask {
		b++
	}
	s.buf[off+offBits] = b | bitFetched
	le.PutUint32(s.buf[off+offAccess:], now)
}

func slotOff(e uint64) uint64 { return uint64(uint32(e)) - 1 }
func tagOf(h uint64) uint32   { return uint32(h >> 32) }

// find returns the slot holding key, or the empty slot where it would go.
func (s *shard) find(key []byte, h uint64) (uint64, bool) {
	tag := tagOf(h)
	i := uint64(tag) & s.mask
	for {
		e := s.slots[i]
		if e == 0 {
			return i, false
		}
		if uint32(e>>32) == tag && bytes.Equal(s.key(slotOff(e)), key) {
			return i, true
		}
		i = (i + 1) & s.mask
	}
}

// lookup finds a live item, lazily dropping it if expired.
func (s *shard) lookup(key []byte, h uint64, now uint32) (slot, off uint64, ok bool) {
	slot, off, ok, _ = s.lookupExpired(key, h, now)
	return slot, off, ok
}

// lookupExpired is lookup that also tells whether an expired item was found
// and dropped.
func (s *shard) lookupExpired(key []byte, h uint64, now uint32) (slot, off uint64, ok, wasExpired bool) {
	slot, ok = s.find(key, h)
	if !ok {
		return slot, 0, false, false
	}
	off = slotOff(s.slots[slot])
	if expired(s.expiry(off), now) {
		s.st.reclaimed++
		if s.bits(off)&bitFetched == 0 {
			s.st.expiredUnfetched++
		}
		s.unlink(slot)
		slot, _ = s.find(key, h)
		return slot, 0, false, true
	}
	return slot, off, true, false
}

// unlink removes the item in slot from the index; its arena bytes become dead
// and are reused when the ring's tail passes them.
func (s *shard) unlink(slot uint64) {
	s.bytes -= s.size(slotOff(s.slots[slot]))
	s.count--
	s.deleteSlot(slot)
}

// deleteSlot empties slot i with backward-shift deletion, so linear probing
// needs no tombstones.
func (s *shard) deleteSlot(i uint64) {
	j := i
	for {
		j = (j + 1) & s.mask
		e := s.slots[j]
		if e == 0 {
			break
		}
		home := uint64(uint32(e>>32)) & s.mask
		// Move e into the hole unless its home lies cyclically in (i, j].
		if (i < j && (home <= i || home > j)) || (i > j && home <= i && home > j) {
			s.slots[i] = e
			i = j
		}
	}
	s.slots[i] = 0
}

// insert adds a new index entry; the caller has checked the key is absent.
func (s *shard) insert(key []byte, h uint64, off uint64) {
	if (s.count+1)*maxLoadDen > uint64(len(s.slots))*maxLoadNum {
		s.grow()
	}
	slot, _ := s.find(key, h)
	s.slots[slot] = uint64(tagOf(h))<<32 | (off + 1)
	s.count++
}

func (s *shard) grow() {
	old := s.slots
	oldMem := s.mem.slots
	s.mem.slots = nil // keep old mapped until rehashed
	s.setSlots(s.mem.index(2 * len(old)))
	defer freeBytes(oldMem)
	for _, e := range old {
		if e == 0 {
			continue
		}
		i := uint64(uint32(e>>32)) & s.mask
		for s.slots[i] != 0 {
			i = (i + 1) & s.mask
		}
		s.slots[i] = e
	}
}

func (s *shard) ghostIndex(tag uint32) uint64 { return uint64(tag) & uint64(len(s.ghost)-1) }
func (s *shard) inGhost(tag uint32) bool      { return s.ghost[s.ghostIndex(tag)] == tag }

// ringOf tells which ring a record offset lies in.
func (s *shard) ringOf(off uint64) *ring {
	if off < s.main.base {
		return &s.small
	}
	return &s.main
}

// hole writes a skip record of n bytes at off (n >= headerSize).
func (s *shard) hole(off, n uint64) {
	s.buf[off] = 0
	le.PutUint32(s.buf[off+offValLen:], uint32(n-headerSize))
}

// alloc reserves n contiguous bytes in r, evicting from its tail as needed.
// It may move other items and reshuffle index slots: callers look keys up
// again afterwards. n must not exceed r.size.
func (s *shard) alloc(r *ring, n uint64, now uint32) (uint64, bool) {
	budget := moveBudget
	if s.noEvict {
		// Without eviction, live items are moved aside to reach dead space
		// behind them; the bound keeps a full cache's failed store cheap.
		budget = noEvictMoveBudget
	}
	for {
		hp := r.head % r.size
		if rem := r.size - hp; rem < n {
			if r.free() >= rem {
				if rem >= headerSize {
					s.hole(r.base+hp, rem)
				}
				r.head += rem
				continue
			}
		} else if r.free() >= n {
			off := r.base + hp
			r.head += n
			return off, true
		}
		if !s.evictTail(r, now, &budget) {
			return 0, false
		}
	}
}

// evictTail frees the record at r's tail: dead records and holes are
// skipped, expired items reclaimed, recently read ones moved (reinserted in
// the main ring, promoted from the small one) while the budget lasts, and
// the rest evicted. It reports false when nothing can be freed without
// evicting a live item and eviction is disabled.
func (s *shard) evictTail(r *ring, now uint32, budget *int) bool {
	if r.head == r.tail {
		return false
	}
	tp := r.tail % r.size
	if rem := r.size - tp; rem < headerSize {
		r.tail += rem
		return true
	}
	off := r.base + tp
	if s.keyLen(off) == 0 {
		r.tail += headerSize + s.valLen(off)
		return true
	}
	size := s.size(off)
	key := s.key(off)
	h := xxhash.Sum64(key)
	slot, ok := s.find(key, h)
	if !ok || slotOff(s.slots[slot]) != off {
		r.tail += size // dead: overwritten or deleted
		return true
	}
	bits := s.bits(off)
	if expired(s.expiry(off), now) {
		s.st.reclaimed++
		if bits&bitFetched == 0 {
			s.st.expiredUnfetched++
		}
		s.unlink(slot)
		r.tail += size
		return true
	}
	// S3-FIFO evicts only from a full cache. While the main ring has room,
	// unread small-ring items move on; while live items fill less than
	// liveFullNum/liveFullDen of the arena, the tail is mostly dead records
	// (overwrites, deletes) and live items are moved past it, not evicted.
	keep := bits&freqMask != 0 || s.noEvict || (r == &s.small && s.main.free() >= 2*size) ||
		s.bytes*liveFullDen < uint64(len(s.buf))*liveFullNum
	if keep && *budget > 0 {
		*budget--
		if r == &s.small {
			if s.promote(off, size, h, now) {
				r.tail += size
				return true
			}
		} else if s.reinsert(off, size, slot) {
			return true
		}
	}
	if s.noEvict {
		return false
	}
	if r == &s.small {
		s.ghost[s.ghostIndex(tagOf(h))] = tagOf(h)
	}
	s.st.evictions++
	if bits&bitFetched == 0 {
		s.st.evictedUnfetched++
	}
	s.unlink(slot)
	r.tail += size
	return true
}

// reinsert moves the main ring's tail item to its head with one less access
// credit (CLOCK's second chance), if it fits without wrapping.
func (s *shard) reinsert(off, size, slot uint64) bool {
	r := &s.main
	hp := r.head % r.size
	if rem := r.size - hp; rem < size {
		// Pad to the physical end first; the padding must come out of space
		// that was already free, so it cannot overlap the item being moved.
		if r.free() < rem {
			return false
		}
		if rem >= headerSize {
			s.hole(r.base+hp, rem)
		}
		r.head += rem
		hp = 0
	}
	r.tail += size
	dst := r.base + hp
	copy(s.buf[dst:dst+size], s.buf[off:off+size])
	if s.buf[dst+offBits]&freqMask > 0 {
		s.buf[dst+offBits]--
	}
	r.head += size
	s.slots[slot] = s.slots[slot]&^0xffffffff | (dst + 1)
	return true
}

// promote copies a small-ring item that was read while there into the main
// ring. The main ring's own evictions may shift index slots, so the key is
// looked up again before the slot is repointed.
func (s *shard) promote(off, size, h uint64, now uint32) bool {
	if size > s.main.size {
		return false
	}
	dst, ok := s.alloc(&s.main, size, now)
	if !ok {
		return false
	}
	copy(s.buf[dst:dst+size], s.buf[off:off+size])
	s.buf[dst+offBits] &^= freqMask
	slot, found := s.find(s.key(dst), h)
	if !found {
		// Cannot happen: main-ring eviction never touches small-ring items.
		s.hole(dst, size)
		return false
	}
	s.slots[slot] = s.slots[slot]&^0xffffffff | (dst + 1)
	return true
}

// place reserves room for a new record of size bytes: in the main ring for
// keys seen recently (ghost hit or replacing a main-ring item), for items
// too big for the small ring, and while the main ring still has room (the
// cache is not full, so there is nothing to filter yet and the small ring's
// pages need not be touched); else in the small ring.
func (s *shard) place(size uint64, h uint64, oldInMain bool, now uint32) (uint64, bool) {
	if oldInMain || size*4 > s.small.size || s.main.free() >= 2*size || s.inGhost(tagOf(h)) {
		return s.alloc(&s.main, size, now)
	}
	return s.alloc(&s.small, size, now)
}

// write fills a record at off.
func (s *shard) write(off uint64, key []byte, valLen int, flags, exp, now uint32, cas uint64, bits byte) []byte {
	b := s.buf[off:]
	b[0] = byte(len(key))
	b[offBits] = bits
	le.PutUint32(b[offValLen:], uint32(valLen))
	le.PutUint32(b[offFlags:], flags)
	le.PutUint32(b[offExpiry:], exp)
	le.PutUint32(b[offAccess:], now)
	le.PutUint64(b[offCAS:], cas)
	copy(b[headerSize:], key)
	start := headerSize + len(key)
	return b[start : start+valLen]
}

// clear drops every item (flush_all).
func (s *shard) clear() {
	clear(s.slots)
	s.count, s.bytes = 0, 0
	s.small.head, s.small.tail = 0, 0
	s.main.head, s.main.tail = 0, 0
}

// crawl reclaims expired items among the next n index slots, so memory held
// by items nobody reads again comes back (memcached's LRU crawler).
func (s *shard) crawl(n int, now uint32) {
	for ; n > 0; n-- {
		s.cursor = (s.cursor + 1) & s.mask
		e := s.slots[s.cursor]
		if e == 0 {
			continue
		}
		off := slotOff(e)
		if !expired(s.expiry(off), now) {
			continue
		}
		s.st.reclaimed++
		s.st.crawlerReclaimed++
		if s.bits(off)&bitFetched == 0 {
			s.st.expiredUnfetched++
		}
		s.unlink(s.cursor)
		// Backward shift may have pulled an unvisited entry into this slot.
		s.cursor = (s.cursor - 1) & s.mask
	}
}

// rebuild moves every live item into a fresh arena of the given capacity,
// oldest first, evicting the oldest when they do not all fit.
func (s *shard) rebuild(capacity uint64, now uint32) {
	oldBuf, oldSlots := s.buf, s.slots
	oldMem := *s.mem
	defer oldMem.free()
	*s.mem = shardMem{}
	rings := []ring{s.main, s.small}
	s.setArena(s.mem.arena(int(capacity)))
	s.setSlots(s.mem.index(len(oldSlots)))
	s.count, s.bytes = 0, 0
	for _, r := range rings {
		for pos := r.tail; pos < r.head; {
			tp := pos % r.size
			if rem := r.size - tp; rem < headerSize {
				pos += rem
				continue
			}
			off := r.base + tp
			kl := uint64(oldBuf[off])
			vl := uint64(le.Uint32(oldBuf[off+offValLen:]))
			if kl == 0 {
				pos += headerSize + vl
				continue
			}
			size := headerSize + kl + vl
			pos += size
			key := oldBuf[off+headerSize : off+headerSize+kl]
			h := xxhash.Sum64(key)
			if !liveIn(oldSlots, oldBuf, key, h, off) || expired(le.Uint32(oldBuf[off+offExpiry:]), now) {
				continue
			}
			dst, ok := s.alloc(&s.main, size, now)
			if !ok {
				continue
			}
			copy(s.buf[dst:dst+size], oldBuf[off:off+size])
			s.insert(key, h, dst)
			s.bytes += size
		}
	}
}

// liveIn reports whether the index slots point at off for key.
func liveIn(slots []uint64, buf, key []byte, h uint64, off uint64) bool {
	mask := uint64(len(slots) - 1)
	tag := tagOf(h)
	for i := uint64(tag) & mask; slots[i] != 0; i = (i + 1) & mask {
		e := slots[i]
		if uint32(e>>32) != tag {
			continue
		}
		o := slotOff(e)
		kl := uint64(buf[o])
		if bytes.Equal(buf[o+headerSize:o+headerSize+kl], key) {
			return o == off
		}
	}
	return false
}
