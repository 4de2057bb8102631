package emcache

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// An item is stored in a shard's arena as one record whose header carries
// only what the item needs, so that a small item costs little more than its
// key and value:
//
//	[0]      key length (0 marks a hole: padding, an abandoned allocation or
//	         a record no longer in the index)
//	[1]      bits: frequency (2 bits), fetched, stale, win-token-given,
//	         key-binary, has-flags, has-expiry
//	[2:5]    last access, Unix seconds mod 2^23 (see access); the top bit:
//	         has-CAS
//	[5:]     key (at a fixed offset, so a lookup compares it unparsed)
//	         value length, varint (1 byte below 128)
//	         client flags, 4 bytes, if has-flags
//	         expiry, Unix seconds, 4 bytes, if has-expiry
//	         CAS, 8 bytes, if has-CAS
//	         value
//
// An item without a CAS field has the CAS of its position: each ring's log
// position only grows, so a new record always gets a new CAS (see
// derivedCAS); a record that moves (CLOCK reinsertion, promotion, resizing)
// takes its CAS along in the field. CAS values rise, as memcached's do
// (meta's I flag compares them): a record whose position would give a CAS
// below one already handed out (the small ring's positions trail the main
// ring's) takes the next counter value in a field instead (shard.place). Operations that change an expiry or a
// CAS in place first widen the record to carry both (widen).
//
// A hole is [0] = 0 and [1:5] its length. The last bytes of a ring too short
// for a hole are skipped implicitly; every record is longer than that.
const (
	offBits    = 1
	offAccess  = 2
	offKey     = 5
	holeMin    = 5
	maxHeader  = offKey + 5 + 4 + 4 + 8 // a 5-byte varint and every field
	accessMask = 1<<23 - 1
	accessCAS  = 1 << 23
	// maxIdle is where idle times saturate: the crawler, which visits every
	// item within seconds, moves older access times up to it, so that
	// 23 bits of seconds never wrap.
	maxIdle = 1 << 22 // 48.5 days
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
	hasFlags     = 0x40 // the record has a client-flags field
	hasExpiry    = 0x80 // the record has an expiry field
	layoutBits   = hasFlags | hasExpiry
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

// moveSlack is the free space the main ring keeps outside an allocation: a
// moved record may grow by its CAS field, and this lets every move one
// allocation's budget allows find the room, so a recently read item is
// never evicted for want of those few bytes.
const moveSlack = moveBudget * 8

// noEvictMoveBudget is moveBudget for caches that never evict.
const noEvictMoveBudget = 1024

// smallRingPercent is S3-FIFO's small-queue share: new items enter a small
// FIFO and only those read again while in it are promoted to the main ring,
// which keeps one-hit wonders (scans) from flushing the working set.
const smallRingPercent = 10

// ghostRatio sizes the direct-mapped ghost table at a quarter of the index:
// S3-FIFO's ghost should remember about as many keys as the main ring holds,
// and a collision merely forgets one; at two bytes an entry this costs about
// half a byte per item.
const ghostRatio = 4

// The index is open addressing with Robin Hood insertion over 4-byte slots:
// the arena offset (in units, plus one; 0 is empty) in the low offBits,
// then the entry's distance from its home slot in dispBits, then as many
// bits of the key's hash as are left, which spare most key comparisons.
// Knowing each entry's distance lets deletion shift entries back without
// rehashing keys, and lets a lookup stop as soon as it passes where the key
// would be. The table grows by a quarter when it is maxLoadNum/maxLoadDen
// full or a distance would overflow, rehashing the keys from the arena, so
// it stays between about 72% and 90% full; each size fills its pages.
const (
	dispBits     = 5
	maxDisp      = 1<<dispBits - 1
	maxOffBits   = 32 - dispBits - 2 // leave at least two tag bits
	maxLoadNum   = 9
	maxLoadDen   = 10
	growNum      = 5
	growDen      = 4
	minSlots     = 64
	pageSize     = 4096
	initialSlots = 256
)

var le = binary.LittleEndian

// ring is a circular log inside a shard's arena. Positions are logical
// (monotonic); the physical offset is base + pos%size, kept for head and
// tail as they move (a division per operation shows in a profile).
type ring struct {
	base, size uint64
	head, tail uint64
	hp, tp     uint64 // head%size, tail%size
}

// newRing lays out a ring whose head and tail stand at logical position pos.
func newRing(base, size, pos uint64) ring {
	return ring{base: base, size: size, head: pos, tail: pos, hp: pos % size, tp: pos % size}
}

func (r *ring) free() uint64 { return r.size - (r.head - r.tail) }

// push moves the head n bytes on (n <= size).
func (r *ring) push(n uint64) {
	r.head += n
	if r.hp += n; r.hp >= r.size {
		r.hp -= r.size
	}
}

// pop moves the tail n bytes on (n <= size).
func (r *ring) pop(n uint64) {
	r.tail += n
	if r.tp += n; r.tp >= r.size {
		r.tp -= r.size
	}
}

// shard owns one part of the key space: an arena split into S3-FIFO's small
// and main rings, and an open-addressing index of pointer-free slots.
type shard struct {
	mu sync.Mutex
	// evicted, the cache's, is told of each eviction (a server's watchers).
	evicted *atomic.Pointer[evictFunc]

	mem         *shardMem
	buf         []byte // mem.buf; nil once closed
	small, main ring

	slots   []uint32
	nslots  uint64
	count   uint64 // live items
	bytes   uint64 // arena bytes held by live items
	offBits uint   // slot bits holding an arena offset
	unit    uint   // arena offsets are multiples of 1<<unit

	// ghost remembers hashes of items evicted from the small ring without a
	// second access; a store of such a key goes straight to the main ring.
	ghost []uint16

	id       uint64 // shard index, the low bits of every CAS it hands out
	casShift uint
	casHigh  uint64 // the highest CAS handed out, before the shift

	// wide: every record carries flags, expiry and CAS, so nothing ever
	// needs room to change in place (caches that cannot evict to make it).
	wide    bool
	noEvict bool
	// relocating: an item is set aside while room is made for it, and
	// the moves that room takes evict rather than set aside another.
	relocating bool
	st         counters
	cursor     uint64 // crawler position in slots

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

func newShard(id uint64, casShift uint, capacity uint64, noEvict bool) *shard {
	s := &shard{id: id, casShift: casShift, noEvict: noEvict, wide: noEvict, mem: new(shardMem)}
	s.setArena(s.mem.arena(int(capacity)))
	s.setSlots(s.mem.index(initialSlots), initialSlots)
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

func ghostLen(nslots int) int { return max(nslots/ghostRatio, 1) }

func indexBytes(nslots int) int { return nslots*4 + ghostLen(nslots)*2 }

// pageFill returns the largest slot count at least n whose index and ghost
// table take no more pages than n slots do: the rest of the last page would
// be mapped anyway.
func pageFill(n int) int {
	limit := (indexBytes(n) + pageSize - 1) &^ (pageSize - 1)
	for indexBytes(n+1) <= limit {
		n++
	}
	return n
}

// index maps n index slots and the ghost table that goes with them.
func (m *shardMem) index(n int) []byte {
	freeBytes(m.slots)
	m.slots = allocBytes(indexBytes(n))
	return m.slots
}

func (m *shardMem) free() {
	freeBytes(m.buf)
	freeBytes(m.slots)
	m.buf, m.slots = nil, nil
}

// setSlots points the index (n slots) and ghost table into mem, as index
// laid them out.
func (s *shard) setSlots(mem []byte, n int) {
	s.slots = unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(mem))), n)
	s.ghost = unsafe.Slice((*uint16)(unsafe.Pointer(&mem[n*4])), ghostLen(n))
	s.nslots = uint64(n)
}

// release frees the shard's memory (Close); the shard is closed after.
func (s *shard) release() {
	s.mem.free()
	s.buf, s.slots, s.ghost = nil, nil, nil
	s.count, s.bytes = 0, 0
}

func (s *shard) closed() bool { return s.buf == nil }

// setArena lays the rings out over buf and sizes the slot fields for it.
// Ring positions carry on from where they were, so CAS values derived from
// them never repeat.
func (s *shard) setArena(buf []byte) {
	s.buf = buf
	s.unit = 0
	for bits.Len64(uint64(len(buf))>>s.unit) > maxOffBits {
		s.unit++
	}
	s.offBits = uint(bits.Len64(uint64(len(buf)) >> s.unit))
	unit := uint64(1) << s.unit
	smallSize := uint64(len(buf)) * smallRingPercent / 100 &^ (unit - 1)
	s.small = newRing(0, smallSize, s.small.head)
	s.main = newRing(smallSize, (uint64(len(buf))-smallSize)&^(unit-1), s.main.head)
}

// span rounds a record size up to the arena unit.
func (s *shard) span(n uint64) uint64 {
	m := uint64(1)<<s.unit - 1
	return (n + m) &^ m
}

// nextCAS hands out a CAS above every one the shard has handed out. Where
// every record has a CAS field (wide), this counter is the only source and
// counts 1, 2, 3 as memcached's does; else its values are odd, apart from
// the even derived ones.
func (s *shard) nextCAS() uint64 {
	x := s.casHigh + 1
	if !s.wide && x&1 == 0 {
		x++
	}
	s.casHigh = x
	return x<<s.casShift | s.id
}

// positionCAS is the CAS, before the shift, of a record at logical position
// pos of ring r: even, and sixteen apart per byte, which leaves room for
// counter values between records written one after another.
func (s *shard) positionCAS(r *ring, pos uint64) uint64 {
	x := pos << 4
	if r == &s.main {
		x |= 2
	}
	return x
}

// derivedCAS is the CAS of a record without a CAS field (positionCAS).
func (s *shard) derivedCAS(off uint64) uint64 {
	r := s.ringOf(off)
	// Live records lie within size bytes behind the head; one at the head's
	// own offset is a full ring's tail.
	dist := r.hp + r.size - (off - r.base)
	if dist > r.size {
		dist -= r.size
	}
	return s.positionCAS(r, r.head-dist)<<s.casShift | s.id
}

// record accessors; off is a record's arena offset.

func (s *shard) keyLen(off uint64) uint64 { return uint64(s.buf[off]) }
func (s *shard) bits(off uint64) byte     { return s.buf[off+offBits] }
func (s *shard) hasCAS(off uint64) bool   { return s.buf[off+offAccess+2]&(accessCAS>>16) != 0 }

// accessWord is the 3-byte access field: time and has-CAS bit.
func (s *shard) accessWord(off uint64) uint32 {
	b := s.buf[off+offAccess : off+offAccess+3]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
}

func (s *shard) setAccessWord(off uint64, w uint32) {
	b := s.buf[off+offAccess : off+offAccess+3]
	b[0], b[1], b[2] = byte(w), byte(w>>8), byte(w>>16)
}

// access is the last access time, Unix seconds mod 2^23: idle times are
// taken modulo the same (idle), exact up to maxIdle, where they saturate.
func (s *shard) access(off uint64) uint32 { return s.accessWord(off) & accessMask }

// idle is the seconds since the record's last access (mg's l flag, me's
// la=), at most about maxIdle.
func (s *shard) idle(off uint64, now uint32) uint32 { return (now - s.access(off)) & accessMask }

// valLen decodes the value length and returns it with the offset of the
// first field after it.
func (s *shard) valLen(off uint64) (n, next uint64) {
	at := off + offKey + s.keyLen(off)
	if b := s.buf[at]; b < 0x80 {
		return uint64(b), at + 1
	}
	v, k := binary.Uvarint(s.buf[at:])
	return v, at + uint64(k)
}

// layout returns a record's value length and the offset of its value.
func (s *shard) layout(off uint64) (valLen, valAt uint64) {
	valLen, at := s.valLen(off)
	return valLen, at + fieldsLen(s.bits(off), s.hasCAS(off))
}

// fieldsLen is the size of the optional fields a record has.
func fieldsLen(bits byte, withCAS bool) uint64 {
	var n uint64
	if bits&hasFlags != 0 {
		n += 4
	}
	if bits&hasExpiry != 0 {
		n += 4
	}
	if withCAS {
		n += 8
	}
	return n
}

// size is the arena span of the record at off.
func (s *shard) size(off uint64) uint64 {
	vl, at := s.layout(off)
	return s.span(at - off + vl)
}

// hasKey reports whether the record at off is key's.
func (s *shard) hasKey(off uint64, key []byte) bool {
	return s.keyLen(off) == uint64(len(key)) && bytes.Equal(s.buf[off+offKey:off+offKey+uint64(len(key))], key)
}

func (s *shard) key(off uint64) []byte { return s.buf[off+offKey : off+offKey+s.keyLen(off)] }

func (s *shard) value(off uint64) []byte {
	vl, at := s.layout(off)
	return s.buf[at : at+vl]
}

func (s *shard) flags(off uint64) uint32 {
	if s.bits(off)&hasFlags == 0 {
		return 0
	}
	_, at := s.valLen(off)
	return le.Uint32(s.buf[at:])
}

// expiryAt is the offset of the record's expiry field, or 0 if it has none.
func (s *shard) expiryAt(off uint64) uint64 {
	b := s.bits(off)
	if b&hasExpiry == 0 {
		return 0
	}
	_, at := s.valLen(off)
	if b&hasFlags != 0 {
		at += 4
	}
	return at
}

func (s *shard) expiry(off uint64) uint32 {
	if at := s.expiryAt(off); at != 0 {
		return le.Uint32(s.buf[at:])
	}
	return 0
}

// The CAS field, when there is one, is the last before the value.

func (s *shard) cas(off uint64) uint64 {
	if !s.hasCAS(off) {
		return s.derivedCAS(off)
	}
	_, at := s.layout(off)
	return le.Uint64(s.buf[at-8:])
}

// decode returns what a read needs of a record in one pass (in registers:
// a struct result costs a stack round trip that shows in a profile).
func (s *shard) decode(off uint64) (value []byte, flags, exp uint32, cas uint64) {
	bits := s.bits(off)
	vl, at := s.valLen(off)
	if bits&hasFlags != 0 {
		flags = le.Uint32(s.buf[at:])
		at += 4
	}
	if bits&hasExpiry != 0 {
		exp = le.Uint32(s.buf[at:])
		at += 4
	}
	if s.hasCAS(off) {
		cas = le.Uint64(s.buf[at:])
		at += 8
	} else {
		cas = s.derivedCAS(off)
	}
	return s.buf[at : at+vl], flags, exp, cas
}

// wideRecord reports whether the record can take an expiry and a CAS in
// place.
func (s *shard) wideRecord(off uint64) bool {
	return s.bits(off)&hasExpiry != 0 && s.hasCAS(off)
}

// setExpiry sets a widened record's expiry (any record's, to 0 when it has
// no field).
func (s *shard) setExpiry(off uint64, exp uint32) {
	if at := s.expiryAt(off); at != 0 {
		le.PutUint32(s.buf[at:], exp)
	}
}

// setCAS sets a widened record's CAS.
func (s *shard) setCAS(off uint64, cas uint64) {
	_, at := s.layout(off)
	le.PutUint64(s.buf[at-8:], cas)
}

func expired(exp, now uint32) bool { return exp != 0 && exp <= now }

// noteAccess records an access without counting a read, as memcached's
// do_item_update does for an add that finds the key taken.
func (s *shard) noteAccess(off uint64, now uint32) {
	s.setAccessWord(off, s.accessWord(off)&accessCAS|now&accessMask)
}

// touchRead records a read: bump the frequency, mark fetched, note the time.
func (s *shard) touchRead(off uint64, now uint32) {
	b := s.buf[off+offBits]
	if b&freqMask < freqMask {
		b++
	}
	s.buf[off+offBits] = b | bitFetched
	s.noteAccess(off, now)
}

// index slots.

func (s *shard) slotOff(e uint32) uint64  { return uint64(e&(1<<s.offBits-1)-1) << s.unit }
func (s *shard) slotDisp(e uint32) uint32 { return e >> s.offBits & maxDisp }
func (s *shard) tagOf(h uint64) uint32 {
	return uint32(h>>8) & (1<<(32-s.offBits-dispBits) - 1)
}
func (s *shard) slotTag(e uint32) uint32 { return e >> (s.offBits + dispBits) }
func (s *shard) makeSlot(off uint64, h uint64) uint32 {
	return s.tagOf(h)<<(s.offBits+dispBits) | uint32(off>>s.unit+1)
}

// home is h's first slot: the high half of the hash scaled to the table,
// which needs no power-of-two size.
func (s *shard) home(h uint64) uint64 { return uint64(uint32(h>>32)) * s.nslots >> 32 }

// offAt is the arena offset slot i points at.
func (s *shard) offAt(i uint64) uint64 { return s.slotOff(s.slots[i]) }

// repoint makes slot i point at off.
func (s *shard) repoint(i, off uint64) {
	s.slots[i] = s.slots[i]&^(1<<s.offBits-1) | uint32(off>>s.unit+1)
}

// probe walks the slots a key with hash h may occupy: with Robin Hood
// order, the entries at distance d from h's home whose own distance is d
// (they share the home) and whose tag is h's; it stops at the first entry
// closer to its home than the key would be to its own.
type probe struct {
	slot uint64 // the candidate next returned
	d    uint32
	tag  uint32
}

func (s *shard) probe(h uint64) probe { return probe{slot: s.home(h), tag: s.tagOf(h)} }

// next returns the next candidate entry, its slot in p.slot, or false when
// there is none.
func (s *shard) next(p *probe) (uint32, bool) {
	for ; ; p.d++ {
		if p.d > 0 {
			if p.slot++; p.slot == s.nslots {
				p.slot = 0
			}
		}
		e := s.slots[p.slot]
		if e == 0 || s.slotDisp(e) < p.d {
			return 0, false
		}
		if s.slotDisp(e) == p.d && s.slotTag(e) == p.tag {
			p.d++
			return e, true
		}
	}
}

// find returns the slot holding key.
func (s *shard) find(key []byte, h uint64) (uint64, bool) {
	p := s.probe(h)
	for e, ok := s.next(&p); ok; e, ok = s.next(&p) {
		if s.hasKey(s.slotOff(e), key) {
			return p.slot, true
		}
	}
	return 0, false
}

// findOff returns the slot pointing at the record at off, whose key hashes
// to h, if it is live. Offsets are unique, so it compares them instead of
// keys and reads no record: a log's tail is mostly records nobody reads.
func (s *shard) findOff(h, off uint64) (uint64, bool) {
	p := s.probe(h)
	for e, ok := s.next(&p); ok; e, ok = s.next(&p) {
		if s.slotOff(e) == off {
			return p.slot, true
		}
	}
	return 0, false
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
		return 0, 0, false, false
	}
	off = s.offAt(slot)
	if expired(s.expiry(off), now) {
		// memcached counts this as get_expired (the caller's to count),
		// not as reclaimed, which counts memory found expired by the
		// allocator or the crawler.
		s.unlink(slot)
		return 0, 0, false, true
	}
	return slot, off, true, false
}

// unlink removes the item in slot from the index; its record becomes a hole
// (kill), reused when the ring's tail passes it.
func (s *shard) unlink(slot uint64) {
	off := s.offAt(slot)
	s.bytes -= s.kill(off)
	s.count--
	s.deleteSlot(slot)
}

// kill turns the record at off, which the index no longer points at, into a
// hole of its own size and returns that size. The ring's tail then steps
// over it without hashing its key and probing the index to learn that it
// is dead, a cache miss per overwritten or deleted item.
func (s *shard) kill(off uint64) uint64 {
	n := s.size(off)
	s.hole(off, n)
	return n
}

// deleteSlot empties slot i, shifting the entries after it one step back
// toward their homes, so the table needs no tombstones.
func (s *shard) deleteSlot(i uint64) {
	for {
		j := i + 1
		if j == s.nslots {
			j = 0
		}
		e := s.slots[j]
		if e == 0 || s.slotDisp(e) == 0 {
			break
		}
		s.slots[i] = e - 1<<s.offBits
		i = j
	}
	s.slots[i] = 0
}

// link points the index at a freshly written record, replacing the old one
// in slot if found.
func (s *shard) link(key []byte, h uint64, slot uint64, found bool, off uint64) {
	if found {
		s.bytes -= s.kill(s.offAt(slot))
		s.repoint(slot, off)
	} else {
		s.insert(key, h, off)
	}
	s.bytes += s.size(off)
}

// insert adds a new index entry; the caller has checked the key is absent.
func (s *shard) insert(key []byte, h uint64, off uint64) {
	s.count++
	if s.count*maxLoadDen > s.nslots*maxLoadNum {
		s.grow(off)
		return
	}
	if carried, ok := s.placeSlot(s.makeSlot(off, h), s.home(h)); !ok {
		s.grow(s.slotOff(carried))
	}
}

// placeSlot puts entry e (distance 0) in the table from slot i on, Robin Hood
// style. If some entry's distance would overflow, it returns that entry,
// which is then in no slot, and false.
func (s *shard) placeSlot(e uint32, i uint64) (uint32, bool) {
	for {
		cur := s.slots[i]
		if cur == 0 {
			s.slots[i] = e
			return 0, true
		}
		if s.slotDisp(cur) < s.slotDisp(e) {
			s.slots[i], e = e, cur
		}
		if s.slotDisp(e) == maxDisp {
			return e, false
		}
		e += 1 << s.offBits
		if i++; i == s.nslots {
			i = 0
		}
	}
}

// grow rebuilds the index a quarter larger (or more, until every entry
// fits), with the item at extra, which is in no slot, added. The old table
// stays mapped while its entries are rehashed from the arena, so growing
// allocates nothing on the Go heap.
func (s *shard) grow(extra uint64) {
	old := s.slots
	oldMem := s.mem.slots
	defer freeBytes(oldMem)
	n := int(s.nslots)
	for {
		n = pageFill(max(n*growNum/growDen, minSlots))
		s.mem.slots = nil // the old mapping is freed once, by the defer
		s.setSlots(s.mem.index(n), n)
		if s.rehash(old, extra) {
			return
		}
	}
}

// rehash inserts the entries of old and the item at extra into the empty
// table, reporting false if one did not fit.
func (s *shard) rehash(old []uint32, extra uint64) bool {
	for i := -1; i < len(old); i++ {
		off := extra
		if i >= 0 {
			if old[i] == 0 {
				continue
			}
			off = s.slotOff(old[i])
		}
		h := xxhash.Sum64(s.key(off))
		if _, ok := s.placeSlot(s.makeSlot(off, h), s.home(h)); !ok {
			freeBytes(s.mem.slots)
			return false
		}
	}
	return true
}

func (s *shard) ghostIndex(h uint64) uint64 {
	return uint64(uint32(h>>16)) * uint64(len(s.ghost)) >> 32
}
func ghostTag(h uint64) uint16         { return uint16(h>>48) | 1 }
func (s *shard) inGhost(h uint64) bool { return s.ghost[s.ghostIndex(h)] == ghostTag(h) }

// ringOf tells which ring a record offset lies in.
func (s *shard) ringOf(off uint64) *ring {
	if off < s.main.base {
		return &s.small
	}
	return &s.main
}

// hole writes a skip record of n bytes at off (n >= holeMin).
func (s *shard) hole(off, n uint64) {
	s.buf[off] = 0
	le.PutUint32(s.buf[off+1:], uint32(n))
}

// skipAt returns the offset and span of the record at physical offset tp
// of r, and whether it is a hole (or a ring end too short for one) to skip.
func (s *shard) skipAt(r *ring, tp uint64) (off, n uint64, isHole bool) {
	if rem := r.size - tp; rem < holeMin {
		return 0, rem, true
	}
	off = r.base + tp
	if s.keyLen(off) == 0 {
		return off, uint64(le.Uint32(s.buf[off+1:])), true
	}
	return off, s.size(off), false
}

// alloc reserves n contiguous bytes in r, evicting from its tail as needed.
// It may move other items and reshuffle index slots: callers look keys up
// again afterwards. n must not exceed r.size.
func (s *shard) alloc(r *ring, n uint64, now uint32) (uint64, bool) {
	n = s.span(n)
	need := n
	if n*bigRecordShare < r.size {
		need += s.slack(r)
	}
	budget := moveBudget
	if s.noEvict {
		// Without eviction, live items are moved aside to reach dead space
		// behind them; the bound keeps a full cache's failed store cheap.
		budget = noEvictMoveBudget
	}
	for {
		hp := r.hp
		if rem := r.size - hp; rem < n {
			if r.free() >= rem+need-n {
				if rem >= holeMin {
					s.hole(r.base+hp, rem)
				}
				r.push(rem)
				continue
			}
		} else if r.free() >= need {
			off := r.base + hp
			r.push(n)
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
	off, size, isHole := s.skipAt(r, r.tp)
	if isHole {
		r.pop(size)
		return true
	}
	h := xxhash.Sum64(s.key(off))
	slot, ok := s.findOff(h, off)
	if !ok {
		// Dead records are holes (kill); one the index lost anyway goes too.
		r.pop(size)
		return true
	}
	bits := s.bits(off)
	if expired(s.expiry(off), now) {
		s.st.reclaimed++
		if bits&bitFetched == 0 {
			s.st.expiredUnfetched++
		}
		s.unlink(slot)
		r.pop(size)
		return true
	}
	// S3-FIFO evicts only from a full cache. While the main ring has room,
	// unread small-ring items move on; while live items fill less than
	// liveFullNum/liveFullDen of the arena, the tail is mostly dead records
	// (overwrites, deletes) and live items are moved past it, not evicted.
	keep := bits&freqMask != 0 || s.noEvict || (r == &s.small && s.mainHasRoom(size)) ||
		s.bytes*liveFullDen < uint64(len(s.buf))*liveFullNum
	if keep && *budget > 0 {
		*budget--
		if r == &s.small {
			if s.promote(off, h, now) {
				r.pop(size)
				return true
			}
		} else if s.reinsert(off, size, slot) {
			return true
		} else if !s.relocating && !s.noEvict {
			// The moved copy needs a few bytes more than the ring has
			// free: set the item aside and allocate for it like a store
			// (which cannot fail where eviction can make room).
			if dst, ok := s.relocate(off, slot, h, false, now); ok {
				if s.buf[dst+offBits]&freqMask > 0 {
					s.buf[dst+offBits]--
				}
			}
			return true
		}
	}
	if s.noEvict {
		return false
	}
	if r == &s.small {
		s.ghost[s.ghostIndex(h)] = ghostTag(h)
	}
	s.st.evictions++
	if bits&bitFetched == 0 {
		s.st.evictedUnfetched++
	}
	if s.evicted != nil {
		if f := s.evicted.Load(); f != nil {
			ttl := int64(-1)
			if exp := s.expiry(off); exp != 0 {
				ttl = int64(exp) - int64(now)
			}
			vl, _ := s.layout(off)
			(*f)(s.key(off), bits&bitFetched != 0, ttl, s.idle(off, now), int(vl))
		}
	}
	s.unlink(slot)
	r.pop(size)
	return true
}

// movedSize is the size of the record at off once moved: it takes its CAS
// along.
func (s *shard) movedSize(off uint64) uint64 {
	vl, _ := s.layout(off)
	return s.recordSpan(s.keyLen(off), vl, s.bits(off), true)
}

// recordSpan is the arena span of a record with the given key and value
// lengths, layout bits and CAS field.
func (s *shard) recordSpan(keyLen, valLen uint64, bits byte, withCAS bool) uint64 {
	return s.span(s.headerLen(valLen, bits, withCAS) + keyLen + valLen)
}

// move rewrites the record at src at dst with its CAS in a field. The
// ranges may overlap if dst is before src (put copes).
func (s *shard) move(dst, src uint64) {
	vl, valAt := s.layout(src)
	s.put(dst, s.buf, src, vl, valAt, s.bits(src), s.access(src), s.flags(src), s.expiry(src), s.cas(src))
}

// put writes a record with a CAS field at dst, its key and value copied
// from the record at off in src (this arena or a copy), whose value length
// and offset are vl and valAt. The caller decodes the header first: when src
// is this arena the ranges may overlap, with dst before off and the new
// record ending before the old one does; the key goes first and the value
// next, each to no later than where it was, then the header and fields,
// which lie before the new value, so each copy reads bytes not yet written.
func (s *shard) put(dst uint64, src []byte, off, vl, valAt uint64, bits byte, access, flags, exp uint32, cas uint64) {
	keyLen := uint64(src[off])
	copy(s.buf[dst+offKey:dst+offKey+keyLen], src[off+offKey:off+offKey+keyLen])
	fieldsAt := dst + offKey + keyLen
	newValAt := fieldsAt + uint64(uvarintLen(vl)) + fieldsLen(bits, true)
	copy(s.buf[newValAt:newValAt+vl], src[valAt:valAt+vl])
	s.writePrefix(dst, keyLen, bits, access, true)
	s.writeFields(fieldsAt, vl, bits, flags, exp, cas, true)
}

// headerLen is the header size of a record (all but key and value) with
// the given value length, layout bits and CAS field.
func (s *shard) headerLen(valLen uint64, bits byte, withCAS bool) uint64 {
	return offKey + uint64(uvarintLen(valLen)) + fieldsLen(bits, withCAS)
}

func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// writePrefix writes the fixed part of a record header at off.
func (s *shard) writePrefix(off, keyLen uint64, bits byte, access uint32, withCAS bool) {
	s.buf[off] = byte(keyLen)
	s.buf[off+offBits] = bits
	w := access & accessMask
	if withCAS {
		w |= accessCAS
	}
	s.setAccessWord(off, w)
}

// writeFields writes the value length and the fields the layout bits ask
// for at at, just after the key, and returns where the value goes.
func (s *shard) writeFields(at, valLen uint64, bits byte, flags, exp uint32, cas uint64, withCAS bool) uint64 {
	at += uint64(binary.PutUvarint(s.buf[at:], valLen))
	if bits&hasFlags != 0 {
		le.PutUint32(s.buf[at:], flags)
		at += 4
	}
	if bits&hasExpiry != 0 {
		le.PutUint32(s.buf[at:], exp)
		at += 4
	}
	if withCAS {
		le.PutUint64(s.buf[at:], cas)
		at += 8
	}
	return at
}

// reinsert moves the main ring's tail item to its head with one less access
// credit (CLOCK's second chance), if the room there allows; else it
// returns false and the item stays.
func (s *shard) reinsert(off, size, slot uint64) bool {
	r := &s.main
	ns := s.movedSize(off)
	hp := r.hp
	pad := uint64(0)
	if rem := r.size - hp; rem < ns {
		pad = rem // to the physical end first
	}
	// The padding must come out of space that was already free, so it
	// cannot overlap the item being moved; the item's own bytes become free
	// as the tail passes it, and the moved copy may grow by its CAS field,
	// which must not reach the record after it.
	if r.free() < pad || r.free()-pad+size < ns {
		return false
	}
	if pad > 0 {
		if pad >= holeMin {
			s.hole(r.base+hp, pad)
		}
		r.push(pad)
		hp = 0
	}
	dst := r.base + hp
	s.move(dst, off)
	r.pop(size)
	r.push(ns)
	if s.buf[dst+offBits]&freqMask > 0 {
		s.buf[dst+offBits]--
	}
	s.bytes += ns - size
	s.repoint(slot, dst)
	return true
}

// promote copies a small-ring item that was read while there into the main
// ring. The main ring's own evictions may shift index slots, so the key is
// looked up again before the slot is repointed.
func (s *shard) promote(off, h uint64, now uint32) bool {
	ns := s.movedSize(off)
	if ns > s.main.size {
		return false
	}
	dst, ok := s.alloc(&s.main, ns, now)
	if !ok {
		return false
	}
	size := s.size(off)
	s.move(dst, off)
	s.buf[dst+offBits] &^= freqMask
	slot, found := s.findOff(h, off)
	if !found {
		// Cannot happen: main-ring eviction never touches small-ring items.
		s.hole(dst, ns)
		return false
	}
	s.bytes += ns - size
	s.repoint(slot, dst)
	return true
}

// widen makes the live item at off (found under key) able to take an expiry
// and a CAS in place, relocating it to a record with all fields if it lacks
// them, and returns its offset. False means no room could be made (only a
// cache that cannot evict would fail, and its records are always wide): the
// item is gone then.
func (s *shard) widen(key []byte, h uint64, off uint64, now uint32) (uint64, bool) {
	if s.wideRecord(off) {
		return off, true
	}
	slot, _ := s.find(key, h)
	return s.relocate(off, slot, h, true, now)
}

// relocate moves the live item at off (in slot) to a new record with its
// CAS in a field, and with wide its flags and expiry fields too: into the
// main ring if it is there, else where ringFor puts a store. The item is
// copied aside and leaves the index while room is made, so that making room
// cannot evict it for its own sake (its old record is dead by then). It
// returns the new offset, or false if no room could be made, and then the
// item is gone.
func (s *shard) relocate(off, slot, h uint64, wide bool, now uint32) (uint64, bool) {
	saved := make([]byte, s.size(off))
	copy(saved, s.buf[off:])
	cas := s.cas(off)
	inMain := off >= s.main.base
	s.unlink(slot)

	src := &shard{buf: saved} // reads the saved record
	keyLen := src.keyLen(0)
	vl, valAt := src.layout(0)
	bits := src.bits(0)
	if wide {
		bits |= layoutBits
	}
	ns := s.recordSpan(keyLen, vl, bits, true)
	s.relocating = true
	dst, ok := s.alloc(s.ringFor(ns, h, inMain), ns, now)
	s.relocating = false
	if !ok {
		return 0, false
	}
	s.put(dst, saved, 0, vl, valAt, bits, src.access(0), src.flags(0), src.expiry(0), cas)
	s.link(s.key(dst), h, 0, false, dst)
	return dst, true
}

// retime sets the expiry of the live item at off, widening its record if
// it has no expiry field. It returns the item's offset, or false if making
// room evicted the item itself.
func (s *shard) retime(key []byte, h uint64, off uint64, exp, now uint32) (uint64, bool) {
	if exp != 0 && s.bits(off)&hasExpiry == 0 {
		var ok bool
		if off, ok = s.widen(key, h, off, now); !ok {
			return 0, false
		}
	}
	s.setExpiry(off, exp)
	return off, true
}

// bigRecordShare: a record larger than 1/bigRecordShare of its ring is
// allocated without the move slack. Such records replace one another, so
// the room one frees is exactly the next one's, and keeping the slack
// besides would evict a whole further record each time (a 4 MB shard would
// hold two 1 MB values, not three); a move that then finds no slack sets
// its item aside instead (relocate).
const bigRecordShare = 16

// slack is the free space r keeps outside an allocation (moveSlack).
func (s *shard) slack(r *ring) uint64 {
	if r == &s.main && !s.wide {
		return moveSlack
	}
	return 0
}

// mainHasRoom reports whether the main ring has room to spare for a record
// of size bytes: the cache is not full yet.
func (s *shard) mainHasRoom(size uint64) bool { return s.main.free() >= 2*size+s.slack(&s.main) }

// ringFor picks the ring for a new record of size bytes: the main ring for
// keys seen recently (ghost hit or replacing a main-ring item), for items
// too big for the small ring, and while the main ring still has room (the
// cache is not full, so there is nothing to filter yet and the small ring's
// pages need not be touched); else the small ring.
func (s *shard) ringFor(size uint64, h uint64, oldInMain bool) *ring {
	if oldInMain || size*4 > s.small.size || s.mainHasRoom(size) || s.inGhost(h) {
		return &s.main
	}
	return &s.small
}

// place reserves a new record with the given fields (as recordSize counts
// them) and returns its offset, its size and the CAS to write (cas, or 0
// for the derived one). When the position's CAS would not rise above every
// CAS handed out, the record takes the next counter value in a field.
func (s *shard) place(keyLen, valLen int, flags, exp uint32, cas uint64, wide bool, h uint64, oldInMain bool, now uint32) (dst, size, casOut uint64, ok bool) {
	size = s.recordSize(keyLen, valLen, flags, exp, cas, wide)
	r := s.ringFor(size, h, oldInMain)
	if cas == 0 && !s.wide && s.positionCAS(r, r.head) <= s.casHigh {
		cas = s.nextCAS()
		size = s.recordSize(keyLen, valLen, flags, exp, cas, wide)
	}
	dst, ok = s.alloc(r, size, now)
	return dst, size, cas, ok
}

// layoutOf returns the layout bits of a new record with these fields, and
// whether it carries a CAS field: fields are left out when zero (the CAS:
// when derived), unless the record is wide.
func (s *shard) layoutOf(flags, exp uint32, cas uint64, wide bool) (byte, bool) {
	wide = wide || s.wide
	var b byte
	if flags != 0 || wide {
		b |= hasFlags
	}
	if exp != 0 || wide {
		b |= hasExpiry
	}
	return b, cas != 0 || wide
}

// recordSize is the arena span of a new record.
func (s *shard) recordSize(keyLen, valLen int, flags, exp uint32, cas uint64, wide bool) uint64 {
	b, withCAS := s.layoutOf(flags, exp, cas, wide)
	return s.recordSpan(uint64(keyLen), uint64(valLen), b, withCAS)
}

// write fills a record at off, as place sized it, and returns its value
// bytes. A cas of 0 means the record's own (derived) CAS.
func (s *shard) write(off uint64, key []byte, valLen int, flags, exp, now uint32, cas uint64, bits byte, wide bool) []byte {
	layout, withCAS := s.layoutOf(flags, exp, cas, wide)
	switch {
	case cas != 0:
	case s.wide:
		cas = s.nextCAS()
	default:
		// place checked that this rises above every CAS handed out.
		derived := s.derivedCAS(off)
		s.casHigh = max(s.casHigh, derived>>s.casShift)
		if withCAS {
			cas = derived
		}
	}
	bits = bits&^layoutBits | layout
	s.writePrefix(off, uint64(len(key)), bits, now, withCAS)
	copy(s.buf[off+offKey:], key)
	at := s.writeFields(off+offKey+uint64(len(key)), uint64(valLen), bits, flags, exp, cas, withCAS)
	return s.buf[at : at+uint64(valLen)]
}

// clear drops every item (flush_all). The rings empty where their heads
// stand, so later records still get new CAS values.
func (s *shard) clear() {
	clear(s.slots)
	s.count, s.bytes = 0, 0
	s.small = newRing(s.small.base, s.small.size, s.small.head)
	s.main = newRing(s.main.base, s.main.size, s.main.head)
}

// crawl reclaims expired items among the next n index slots, so memory held
// by items nobody reads again comes back (memcached's LRU crawler).
func (s *shard) crawl(n int, now uint32) {
	for ; n > 0; n-- {
		if s.cursor++; s.cursor >= s.nslots {
			s.cursor = 0
		}
		e := s.slots[s.cursor]
		if e == 0 {
			continue
		}
		off := s.slotOff(e)
		if !expired(s.expiry(off), now) {
			if s.idle(off, now) > maxIdle {
				s.noteAccess(off, now-maxIdle)
			}
			continue
		}
		s.st.reclaimed++
		s.st.crawlerReclaimed++
		if s.bits(off)&bitFetched == 0 {
			s.st.expiredUnfetched++
		}
		s.unlink(s.cursor)
		// Backward shift may have pulled an unvisited entry into this slot.
		if s.cursor == 0 {
			s.cursor = s.nslots
		}
		s.cursor--
	}
}

// rebuild moves every live item into a fresh arena of the given capacity,
// oldest first, evicting the oldest when they do not all fit.
func (s *shard) rebuild(capacity uint64, now uint32) {
	// The live records, oldest first, with the CAS each must keep.
	type live struct{ off, cas uint64 }
	var items []live
	for _, r := range []*ring{&s.main, &s.small} {
		for pos := r.tail; pos < r.head; {
			off, n, isHole := s.skipAt(r, pos%r.size)
			pos += n
			if isHole {
				continue
			}
			if _, ok := s.findOff(xxhash.Sum64(s.key(off)), off); !ok || expired(s.expiry(off), now) {
				continue
			}
			items = append(items, live{off, s.cas(off)})
		}
	}
	old := &shard{buf: s.buf} // reads the previous arena's records
	oldMem := *s.mem
	defer oldMem.free()
	*s.mem = shardMem{}
	s.setArena(s.mem.arena(int(capacity)))
	n := int(s.nslots)
	s.setSlots(s.mem.index(n), n)
	s.count, s.bytes = 0, 0
	for _, it := range items {
		// Each record crosses over with its CAS in a field.
		src := it.off
		keyLen := old.keyLen(src)
		vl, valAt := old.layout(src)
		bits := old.bits(src)
		size := s.recordSpan(keyLen, vl, bits, true)
		if size > s.main.size {
			continue
		}
		dst, ok := s.alloc(&s.main, size, now)
		if !ok {
			continue
		}
		s.put(dst, old.buf, src, vl, valAt, bits, old.access(src), old.flags(src), old.expiry(src), it.cas)
		key := s.key(dst)
		s.insert(key, xxhash.Sum64(key), dst)
		s.bytes += size
	}
}
