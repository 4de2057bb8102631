// The rings and eviction: a shard's arena (shard.go) is split into
// S3-FIFO's small and main rings, circular logs of records (record.go).
// Allocation frees room at a ring's tail, where records are skipped if
// dead, reclaimed if expired, moved on if recently read and else evicted,
// which removes them from the index (index.go). Records that must grow in
// place are relocated through the same allocation.

package emcache

import (
	"iter"

	"github.com/cespare/xxhash/v2"
)

// moveBudget bounds how many recently read items one allocation may move
// (reinsert or promote) before it evicts regardless of access bits, so the
// latency of a store stays bounded even when every item was recently read.
// Moves that compact (spare, demote, compactAhead) are paid from a shard's
// move credit instead: each store earns moveBudget and may spend up to
// maxMoveCredit, so a run of live records at the tail (a region the log
// compacted on its last pass) does not force an eviction. The two are
// apart because the policy reads an eviction of a read item as the main
// ring being crowded (ringFor): credit saved over many stores would delay
// that signal.
const (
	moveBudget    = 32
	maxMoveCredit = 256
)

// liveReserveDen: a ring compacts (moves its unread live items past the
// dead records behind them) rather than evicting them while its live items
// and the allocation leave 1/liveReserveDen of it over. Closer to full,
// compaction moves more than liveReserveDen-1 records per record it frees.
const liveReserveDen = 16

// moveSlack is the free space a ring keeps outside an allocation: a moved
// record may grow by its CAS field, and this lets every move one store's
// credit allows find the room, so a live item is never evicted for want of
// those few bytes.
const moveSlack = maxMoveCredit * 8

// noEvictMoveBudget is moveBudget for caches that never evict.
const noEvictMoveBudget = 1024

// smallRingPercent is S3-FIFO's small-queue share: new items enter a small
// FIFO and only those read again while in it are promoted to the main ring,
// which keeps one-hit wonders (scans) from flushing the working set.
const smallRingPercent = 10

// ring is a circular log inside a shard's arena. Positions are logical
// (monotonic); the physical offset is base + pos%size, kept for head and
// tail as they move (a division per operation shows in a profile).
type ring struct {
	base, size uint64
	head, tail uint64
	hp, tp     uint64 // head%size, tail%size
	// touched is the arena offset up to which the ring's pages have
	// been written, page-aligned: the head's first pass maps the pages
	// ahead of it (prefault).
	touched uint64
	// active is the span from the ring's start at which a store's head
	// wraps (growActive): pages past it are never touched. pad is the
	// hole from the head's last wrap to the ring's end while the tail has
	// not passed it (0 after).
	active, pad uint64
}

// newRing lays out a ring whose head and tail stand at logical position pos,
// over memory touched up to touched, wrapping at active.
func newRing(base, size, pos, touched, active uint64) ring {
	return ring{base: base, size: size, head: pos, tail: pos, hp: pos % size, tp: pos % size,
		touched: max(touched, base), active: min(max(active, touched-min(touched, base)), size)}
}

// initialActive is the active span a ring starts with.
const initialActive = 1 << 20

// A ring's head wraps at its active span while the ring's live items and
// the allocation fill less than activeFullNum/activeFullDen of the span,
// and the span doubles otherwise. A log that only ever wrapped at the
// end of its memory would write every page of MaxBytes before reusing one,
// though its items fill a fraction of it: each new page costs the kernel
// a fault or populate and a cleared page (8 µs a page on a VM, half the
// time of a 2.5 KB store at the first pass), and the process's memory
// grows to MaxBytes. Wrapping early trades that for compaction of the
// span, about one record moved per record freed at three quarters live.
const (
	activeFullNum = 3
	activeFullDen = 4
)

// growActive reports whether an allocation ending at physical offset end
// of r may go past r's active span, doubling the span as often as needed:
// it may when the ring's live items would fill most of the span, or the
// allocation is large for it. False means the head wraps early.
func (s *shard) growActive(r *ring, end, n uint64) bool {
	if (s.liveBytes(r)+n)*activeFullDen < r.active*activeFullNum && n*bigRecordShare < r.active {
		return false
	}
	for r.active < end {
		r.active = min(2*r.active, r.size)
	}
	return true
}

// prefault maps the pages of r up to arena offset end, which a record is
// about to be written to, where the head has not been before (populate).
func (s *shard) prefault(r *ring, end uint64) {
	if end <= r.touched {
		return
	}
	lo := r.touched &^ (osPageSize - 1)
	hi := min((end+osPageSize-1)&^(osPageSize-1), uint64(len(s.buf)))
	populate(s.buf[lo:hi])
	r.touched = hi
}

func (r *ring) free() uint64 { return r.size - (r.head - r.tail) }

// used is the span of r's records, live and dead, without the padding.
func (r *ring) used() uint64 { return r.head - r.tail - r.pad }

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
		r.pad = 0 // what ends at the ring's end is the last wrap's
	}
}

// ringOf tells which ring a record offset lies in.
func (s *shard) ringOf(off uint64) *ring {
	if off < s.main.base {
		return &s.small
	}
	return &s.main
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

// records yields the offset of every record in the rings, the main ring's
// first, each ring's oldest first, stepping over holes: dead records among
// them are the caller's to tell (findOff).
func (s *shard) records() iter.Seq[uint64] {
	return func(yield func(uint64) bool) {
		for _, r := range []*ring{&s.main, &s.small} {
			for pos := r.tail; pos < r.head; {
				off, n, isHole := s.skipAt(r, pos%r.size)
				pos += n
				if !isHole && !yield(off) {
					return
				}
			}
		}
	}
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
		return s.allocFrom(r, n, now, &budget)
	}
	if s.allocating {
		// Making room for a store moves an item, which needs room too:
		// that allocation earns no credit of its own.
		return s.allocFrom(r, n, now, &budget)
	}
	s.allocating = true
	s.credit = min(s.credit+moveBudget, maxMoveCredit)
	s.compactAhead(now)
	off, ok := s.allocFrom(r, n, now, &budget)
	s.allocating = false
	return off, ok
}

// compactGapDen: while the main ring holds dead records beyond its reserve,
// stores compact it ahead of need until 1/compactGapDen of its active span
// is free. A region the log compacted on its last pass is all live (a cold
// fill, say, behind hot overwrites), and moving it past the tail frees
// nothing: the gap is the room the stores take while a pass crosses it, a
// few moves a store, instead of evicting when one store's credit runs out.
const compactGapDen = 16

// compactAhead spends the half of the move credit a store's own allocation
// does not need on compacting the main ring (compactGapDen), while a
// reserve's worth of its records are dead: an all-live ring only rotates.
func (s *shard) compactAhead(now uint32) {
	r := &s.main
	for s.credit > maxMoveCredit/2 && r.active < r.used()+r.active/compactGapDen && s.fits(r, 0) &&
		r.used() >= s.liveBytes(r)+r.active/liveReserveDen {
		s.evictTail(r, 0, now, &s.credit)
	}
}

// allocFrom is alloc paying for moves from budget.
func (s *shard) allocFrom(r *ring, n uint64, now uint32, budget *int) (uint64, bool) {
	n = s.span(n)
	need := n
	if n*bigRecordShare < r.size {
		need += s.slack(r)
	}
	for {
		hp := r.hp
		// A wrap pads the ring to its physical end with one hole, which
		// the tail steps over at once: at the active span's end, the pages
		// past it stay untouched.
		if rem := r.size - hp; rem < n || hp+n > r.active && !s.growActive(r, hp+n, n) {
			if r.free() >= rem+need-n {
				if rem >= holeMin {
					s.guard(r.base+hp, r.base+hp+holeMin)
					s.hole(r.base+hp, rem)
				}
				r.push(rem)
				r.pad = rem
				continue
			}
		} else if r.free() >= need {
			off := r.base + hp
			s.guard(off, off+n)
			s.prefault(r, off+n)
			r.push(n)
			return off, true
		}
		if !s.evictTail(r, n, now, budget) {
			return 0, false
		}
	}
}

// evictTail frees the record at r's tail for an allocation of n bytes: dead
// records and holes are skipped, expired items reclaimed, recently read
// ones moved (reinserted in the main ring, promoted from the small one)
// while the budget lasts, unread ones spared while the rings have room,
// and the rest evicted. It reports false when nothing can be freed without
// evicting a live item and eviction is disabled (or a demotion is making
// room, which never evicts).
func (s *shard) evictTail(r *ring, n uint64, now uint32, budget *int) bool {
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
	if exp := expired(s.expiry(off), now); exp || len(s.dead) != 0 && s.prefixDead(off) {
		// memcached's tail counts items flush_all invalidated as reclaimed too.
		s.st.reclaimed++
		if bits&bitFetched == 0 {
			s.st.expiredUnfetched++
		}
		cause := RemoveFlushed
		if exp {
			cause = RemoveExpired
		}
		s.noteRemoval(off, cause)
		s.unlink(slot)
		r.pop(size)
		return true
	}
	if s.demoting {
		// The small ring makes room for an item the main ring demotes:
		// it compacts, and never evicts or promotes for it.
		if *budget > 0 && s.fits(r, n) && s.reinsert(r, off, size, slot) {
			*budget--
			return true
		}
		return false
	}
	// S3-FIFO evicts only from a full cache: while the main ring has room,
	// unread small-ring items move on, and while the rings have room for
	// their live items (spare) the unread ones are not evicted either.
	keep := bits&freqMask != 0 || s.noEvict || (r == &s.small && s.mainHasRoom(size))
	if keep && *budget > 0 {
		*budget--
		if r == &s.small {
			if s.promote(off, h, now) {
				r.pop(size)
				return true
			}
		} else if s.reinsert(r, off, size, slot) || s.setAside(off, slot, h, now) {
			return true
		}
	}
	if !s.noEvict {
		// A recently read item the budget cannot move any more is spared
		// like an unread one while the rings have room for it.
		if s.credit > 0 && s.spare(r, off, size, slot, h, n, now) {
			s.credit--
			return true
		}
		// Out of credit, a main-ring item still goes to free room in the
		// small ring rather than out of the cache: one move per record
		// freed, as bounded by the allocation's size as evicting it.
		if s.credit == 0 && r == &s.main && !s.promoting && s.fits(&s.small, size) && s.demote(off, size, h, now) {
			return true
		}
	}
	if s.noEvict {
		return false
	}
	if r == &s.small {
		s.ghost[s.ghostIndex(h)] = ghostTag(h)
	} else {
		// Evicting an item read since the tail last passed it means every
		// item the budget let this allocation look at was in use: the
		// main ring holds a working set it should keep (ringFor).
		s.mainCrowded = bits&freqMask != 0
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
	s.noteRemoval(off, RemoveEvicted)
	s.unlink(slot)
	r.pop(size)
	return true
}

// setAside moves the main ring's tail item at off (in slot) when the room
// at the head is a few bytes short of its moved copy: the item is set aside
// and allocated for like a store (which cannot fail where eviction can make
// room), with its access credit spent (reinsert). It reports false where it may not:
// while another item is set aside, or in a cache that cannot evict.
func (s *shard) setAside(off, slot, h uint64, now uint32) bool {
	if s.relocating || s.noEvict {
		return false
	}
	if dst, ok := s.relocate(off, slot, h, false, now); ok {
		s.buf[dst+offBits] &^= freqMask
	}
	return true
}

// spare keeps the live item at r's tail (off, size bytes, in slot) that
// S3-FIFO would evict to make room for n bytes (unread, or read but past
// the allocation's move budget), while the rings have
// room for it: a small-ring item is promoted if the main ring has free room
// or room to compact for it, else moved on in its ring; a main-ring item is moved on in the main
// ring if that has room, else demoted into the small ring. The tail is
// then mostly dead records (overwrites, deletes, appends), which the moves
// reclaim. It reports false when the item must go.
func (s *shard) spare(r *ring, off, size, slot, h, n uint64, now uint32) bool {
	if r == &s.small {
		main := &s.main
		if (main.free() >= size+s.slack(main) || s.fits(main, size)) && s.promote(off, h, now) {
			r.pop(size)
			return true
		}
		return s.fits(r, n) && s.reinsert(r, off, size, slot)
	}
	if s.fits(r, n) {
		return s.reinsert(r, off, size, slot) || s.setAside(off, slot, h, now)
	}
	// A promotion's room must not move the small ring's tail, where the
	// promoted item still is.
	return !s.promoting && s.fits(&s.small, size) && s.demote(off, size, h, now)
}

// fits reports whether r's live items and n more bytes leave the ring the
// reserve compaction needs (liveReserveDen) beside the slack its
// allocations keep free; records too large for the move slack need no
// reserve, since they replace one another whole. Without the slack counted,
// a ring whose only spare bytes are that slack would pass, and its
// allocations would rotate live items past one another, freeing nothing.
func (s *shard) fits(r *ring, n uint64) bool {
	reserve := r.size / liveReserveDen
	if n*bigRecordShare >= r.size {
		reserve = 0
	}
	return s.liveBytes(r)+n+reserve+s.slack(r) <= r.size
}

// demote moves the main ring's tail item (off, size bytes) into the small
// ring, which makes the room by compacting only (demoting). The item keeps
// its access bits, and leaves the small ring like any other.
func (s *shard) demote(off, size, h uint64, now uint32) bool {
	ns := s.movedSize(off)
	s.demoting = true
	dst, ok := s.alloc(&s.small, ns, now)
	s.demoting = false
	if !ok {
		return false
	}
	s.move(dst, off)
	// The small ring's reclaims may have shifted index slots.
	slot, found := s.findOff(h, off)
	if !found {
		// Cannot happen: the small ring's compaction never touches main-ring items.
		s.hole(dst, ns)
		return false
	}
	s.main.pop(size)
	s.bytes += ns - size
	s.smallBytes += ns
	s.repoint(slot, dst)
	return true
}

// reinsert moves r's tail item to its head, in the main ring with its
// access credit spent (CLOCK's second chance), if the room there allows;
// else it returns false and the item stays. However often it was read, an
// item survives one pass of the main ring's tail for reads since the last:
// counting the reads down over several passes kept keys that were popular
// long ago in place of those popular now (on the benchmarks' churn trace, a
// third of a point more behind an exact LRU), and scan resistance comes
// from the small ring, not from the count.
func (s *shard) reinsert(r *ring, off, size, slot uint64) bool {
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
			s.guard(r.base+hp, r.base+hp+pad)
			s.hole(r.base+hp, pad)
		}
		r.push(pad)
		hp = 0
	}
	dst := r.base + hp
	s.guard(dst, dst+ns)
	s.prefault(r, dst+ns)
	s.move(dst, off)
	r.pop(size)
	r.push(ns)
	if r == &s.small {
		s.smallBytes += ns - size
	} else {
		s.buf[dst+offBits] &^= freqMask
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
	s.promoting = true
	dst, ok := s.alloc(&s.main, ns, now)
	s.promoting = false
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
	s.smallBytes -= size
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

// slack is the free space r keeps outside an allocation (moveSlack), at
// most a reserve's worth of a small ring; a move that finds too little is
// set aside (main ring) or the item evicted (small ring).
func (s *shard) slack(r *ring) uint64 {
	if s.wide {
		return 0
	}
	return min(moveSlack, r.size/liveReserveDen)
}

// liveBytes is the arena bytes of r's live items.
func (s *shard) liveBytes(r *ring) uint64 {
	if r == &s.small {
		return s.smallBytes
	}
	return s.bytes - s.smallBytes
}

// addLive counts n more live bytes in the record at off.
func (s *shard) addLive(off, n uint64) {
	s.bytes += n
	if off < s.main.base {
		s.smallBytes += n
	}
}

// dropLive counts the n live bytes of the record at off as gone.
func (s *shard) dropLive(off, n uint64) {
	s.bytes -= n
	if off < s.main.base {
		s.smallBytes -= n
	}
}

// mainHasRoom reports whether the main ring has room to spare for a record
// of size bytes: the cache is not full yet. Room is what live items leave,
// free or dead: a ring that wrapped at its active span has little free.
func (s *shard) mainHasRoom(size uint64) bool {
	return s.main.size-s.liveBytes(&s.main) >= 2*size+s.slack(&s.main)+s.main.size/compactGapDen
}

// ringFor picks the ring for a new record of size bytes: the main ring for
// keys seen recently (ghost hit or replacing a main-ring item), for items
// too big for the small ring, and while the main ring still has room (the
// cache is not full, so there is nothing to filter yet and the small ring's
// pages need not be touched); else the small ring.
//
// A ghost hit goes to the small ring too while the main ring is crowded
// (its last eviction had to take an item in use): letting it in would evict
// an item as useful as itself. On a loop over more keys than fit, every key
// is a ghost hit and every main-ring item in use: admitting them kept
// turning the main ring over (the benchmarks' loop hit 67% at a tenth of
// the working set), refusing them keeps a stable main ring, which hits
// about its share of the loop (75%). Ghost hits are let in again once the
// main ring evicts an item nobody read: it holds items worth replacing.
func (s *shard) ringFor(size uint64, h uint64, oldInMain bool) *ring {
	if oldInMain || size > s.small.size || s.mainHasRoom(size) || !s.mainCrowded && s.inGhost(h) {
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
