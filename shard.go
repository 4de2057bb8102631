// The shard as a whole: its type, counters and memory, the layout of its
// arena into rings, and the operations on every item at once (flush,
// crawling, resizing). A record's format is in record.go, the index and
// ghost table in index.go, the rings and eviction in ring.go.

package emcache

import (
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

// shard owns one part of the key space: an arena split into S3-FIFO's small
// and main rings, and an open-addressing index of pointer-free slots.
//
// Every method of shard, here and in the other files, requires the caller
// to hold s.mu, and none takes it itself: the Cache's operations lock a
// key's shard in acquire, or lock the shards they walk themselves. The
// exceptions: shardOver calls setArena and setSlots before the shard is
// shared, and relocate and rebuild read records through a private shard
// that has only an arena (&shard{buf: ...}), whose mu is never used.
type shard struct {
	mu sync.Mutex
	// evicted, the cache's, is told of each eviction (a server's watchers).
	evicted *atomic.Pointer[evictFunc]
	// onRemove is Config.OnRemove; pending, the removals queued for it
	// under the lock (remove.go).
	onRemove func(key []byte, cause RemoveCause)
	pending  *removeBatch
	// dead are the pending prefix deletions, oldest first, and sweep their
	// reclaimer's progress (prefix.go).
	dead  []deadPrefix
	sweep deadSweep

	mem         *shardMem
	buf         []byte // mem.buf; nil once closed
	small, main ring

	slots  []uint32
	nslots uint64
	count  atomic.Uint64 // live items; atomic so that Len locks nothing
	bytes  uint64        // arena bytes held by live items
	// smallBytes are the bytes of bytes held in the small ring: each
	// ring's fullness decides whether it compacts or evicts (fits).
	smallBytes uint64
	offBits    uint // slot bits holding an arena offset
	unit       uint // arena offsets are multiples of 1<<unit

	// ghost remembers hashes of items evicted from the small ring without a
	// second access; a store of such a key goes straight to the main ring
	// unless mainCrowded (ring.go's evictTail and ringFor).
	ghost       []uint16
	mainCrowded bool

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
	// promoting: a small-ring item is promoted while room is made for it
	// in the main ring, which then may not demote into the small ring.
	// demoting: a main-ring item is demoted while the small ring makes
	// room for it, by compaction only.
	promoting, demoting bool
	// allocating: a store's allocation is making room; credit is the
	// move credit stores earn and moves spend (moveBudget).
	allocating bool
	credit     int
	// idleCrawl slows the crawler over this shard while empty and after
	// a pass that met no item with an expiry (passSawExpiry); a store with
	// an expiry clears it.
	idleCrawl, passSawExpiry bool
	st                       counters
	cursor                   uint64 // crawler position in slots
	// pins are the arena bytes replies are sending (pin.go): whatever
	// writes over them revokes them first (guard).
	pins []*arenaPin

	_ [64]byte // keep neighbouring shards' locks off this cache line
}

// counters are kept per shard, under its lock, and summed by Stats, so the
// hot path touches no shared cache line.
type counters struct {
	totalItems, evictions, expiredUnfetched, evictedUnfetched uint64
	reclaimed, crawlerReclaimed                               uint64
	getHits, getMisses, getExpired, cmdGet, cmdSet, cmdTouch  uint64
	getFlushed                                                uint64
	casMisses, casHits, casBadval                             uint64
	incrMisses, incrHits, decrMisses, decrHits                uint64
	deleteMisses, deleteHits, touchHits, touchMisses          uint64
	storeTooLarge, storeNoMemory                              uint64
}

func newShard(id uint64, casShift uint, capacity uint64, noEvict bool, nslots int) *shard {
	mem := new(shardMem)
	mem.arena(int(capacity))
	mem.index(nslots)
	s := shardOver(id, casShift, noEvict, mem, nslots)
	s.idleCrawl = true // empty: no item has an expiry
	return s
}

// shardOver makes a shard of mem: its arena, and its index of nslots slots
// (empty, or as a saved shard left it).
func shardOver(id uint64, casShift uint, noEvict bool, mem *shardMem, nslots int) *shard {
	s := &shard{id: id, casShift: casShift, noEvict: noEvict, wide: noEvict, mem: mem}
	s.setArena(mem.buf)
	s.setSlots(mem.slots, nslots)
	runtime.AddCleanup(s, (*shardMem).free, s.mem)
	return s
}

// initialShardSlots sizes each of n shards' first index so that together
// they have initialSlots, as memcached's table starts at 2^hashpower
// buckets.
func initialShardSlots(n int) int { return max(initialSlots/n, minSlots) }

// shardMem owns a shard's memory, which lives outside the Go heap where the
// OS allows (allocBytes). It is separate from the shard so that a cleanup can
// free it once the shard is unreachable.
type shardMem struct {
	buf   []byte
	slots []byte // the index and ghost table, one mapping
	file  bool   // buf maps part of a memory file
}

func (m *shardMem) arena(n int) []byte {
	freeBytes(m.buf)
	m.buf = allocBytes(n)
	return m.buf
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
	s.revokeAll()
	s.mem.free()
	s.buf, s.slots, s.ghost = nil, nil, nil
	s.count.Store(0)
	s.bytes, s.smallBytes = 0, 0
}

func (s *shard) closed() bool { return s.buf == nil }

// setArena lays the rings out over buf and sizes the slot fields for it.
// Ring positions carry on from where they were, so CAS values derived from
// them never repeat.
func (s *shard) setArena(buf []byte) {
	s.buf = buf
	s.unit = 0
	for bits.Len64(s.maxSlotOff(uint64(len(buf)))) > maxOffBits {
		s.unit++
	}
	s.offBits = uint(bits.Len64(s.maxSlotOff(uint64(len(buf)))))
	unit := uint64(1) << s.unit
	smallSize := uint64(len(buf)) * smallRingPercent / 100 &^ (unit - 1)
	active := uint64(initialActive)
	if s.mem.file {
		// A memory file's checksums read the rings from tail to head,
		// padding included: the padding's pages would all be mapped.
		active = uint64(len(buf))
	}
	s.small = newRing(0, smallSize, s.small.head, 0, active)
	s.main = newRing(smallSize, (uint64(len(buf))-smallSize)&^(unit-1), s.main.head, 0, active)
}

// maxSlotOff is the largest offset field (index.go) a slot can hold in an
// arena of n bytes, at the shard's unit: the last record starts no later
// than the smallest record's span before the end. Counting from there, not
// from n, spares a bit of an arena of a power of two bytes, which goes to
// the slot's tag and halves the key comparisons that fail.
func (s *shard) maxSlotOff(n uint64) uint64 {
	last := n - min(n, s.span(offKey+2)) // a 1-byte key, an empty value
	return last>>s.unit + 1
}

// span rounds a record size up to the arena unit.
func (s *shard) span(n uint64) uint64 {
	m := uint64(1)<<s.unit - 1
	return (n + m) &^ m
}

// clear drops every item (flush_all). The rings empty where their heads
// stand, so later records still get new CAS values.
func (s *shard) clear() {
	clear(s.slots)
	s.count.Store(0)
	s.bytes, s.smallBytes = 0, 0
	s.dead, s.sweep = nil, deadSweep{}
	s.idleCrawl, s.passSawExpiry = true, false
	s.small = newRing(s.small.base, s.small.size, s.small.head, s.small.touched, s.small.active)
	s.main = newRing(s.main.base, s.main.size, s.main.head, s.main.touched, s.main.active)
}

// crawl reclaims expired items among the next n index slots, so memory held
// by items nobody reads again comes back (memcached's LRU crawler).
func (s *shard) crawl(n int, now uint32) {
	for ; n > 0; n-- {
		if s.cursor++; s.cursor >= s.nslots {
			s.cursor = 0
			s.passEnded()
		}
		e := s.slots[s.cursor]
		if e == 0 {
			continue
		}
		off := s.slotOff(e)
		exp := s.expiry(off)
		if exp != 0 {
			s.passSawExpiry = true
		}
		if !expired(exp, now) {
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
		s.noteRemoval(off, RemoveExpired)
		s.unlink(s.cursor)
		// Backward shift may have pulled an unvisited entry into this slot.
		if s.cursor == 0 {
			s.cursor = s.nslots
		}
		s.cursor--
	}
}

// crawlStep is the crawler's visit of one tick: a crawlPass-th of the index,
// or an idleCrawlPass-th while idleCrawl.
func (s *shard) crawlStep(now uint32) {
	period := crawlPass
	if s.idleCrawl {
		period = idleCrawlPass
	}
	s.crawl((len(s.slots)+period-1)/period, now)
}

// passEnded sets the crawler's pace for its next pass over the index.
func (s *shard) passEnded() {
	s.idleCrawl = !s.passSawExpiry
	s.passSawExpiry = false
}

// rebuild moves every live item into a fresh arena of the given capacity,
// oldest first, evicting the oldest when they do not all fit.
func (s *shard) rebuild(capacity uint64, now uint32) {
	// The live records, oldest first, with the CAS each must keep.
	type live struct{ off, cas uint64 }
	var items []live
	for off := range s.records() {
		if _, ok := s.findOff(xxhash.Sum64(s.key(off)), off); !ok {
			continue
		}
		if expired(s.expiry(off), now) {
			s.noteRemoval(off, RemoveExpired)
			continue
		}
		if len(s.dead) != 0 && s.prefixDead(off) {
			s.noteRemoval(off, RemoveFlushed)
			continue
		}
		items = append(items, live{off, s.cas(off)})
	}
	s.revokeAll()
	old := &shard{buf: s.buf} // reads the previous arena's records
	oldMem := *s.mem
	defer oldMem.free()
	*s.mem = shardMem{}
	s.setArena(s.mem.arena(int(capacity)))
	n := int(s.nslots)
	s.setSlots(s.mem.index(n), n)
	s.count.Store(0)
	s.bytes, s.smallBytes = 0, 0
	// Every record now lies past the heads the deletions saw.
	s.dead, s.sweep = nil, deadSweep{}
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
