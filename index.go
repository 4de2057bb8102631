// The index: a Robin Hood hash table of pointer-free slots, each holding a
// record's arena offset (record.go) and a few bits of its key's hash, and
// the ghost table that remembers keys recently evicted from the small ring
// (ring.go). Both live in one mapping the shard (shard.go) owns.

package emcache

import "github.com/cespare/xxhash/v2"

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
	initialSlots = 1 << 16 // all shards together: memcached's default hashpower, 16
)

// ghostRatio sizes the direct-mapped ghost table at a quarter of the index:
// S3-FIFO's ghost should remember about as many keys as the main ring holds,
// and a collision merely forgets one; at two bytes an entry this costs about
// half a byte per item.
const ghostRatio = 4

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
		s.noteRemoval(off, RemoveExpired)
		s.unlink(slot)
		return 0, 0, false, true
	}
	if len(s.dead) != 0 && s.prefixDead(off) {
		// memcached's do_item_get counts an item flush_all invalidated
		// as get_flushed, whichever command looked.
		s.st.getFlushed++
		s.noteRemoval(off, RemoveFlushed)
		s.unlink(slot)
		return 0, 0, false, false
	}
	return slot, off, true, false
}

// unlink removes the item in slot from the index; its record becomes a hole
// (kill), reused when the ring's tail passes it.
func (s *shard) unlink(slot uint64) {
	off := s.offAt(slot)
	s.dropLive(off, s.kill(off))
	s.count.Add(^uint64(0))
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
		old := s.offAt(slot)
		s.dropLive(old, s.kill(old))
		s.repoint(slot, off)
	} else {
		s.insert(key, h, off)
	}
	s.addLive(off, s.size(off))
}

// insert adds a new index entry; the caller has checked the key is absent.
func (s *shard) insert(key []byte, h uint64, off uint64) {
	if s.count.Add(1)*maxLoadDen > s.nslots*maxLoadNum {
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
	// Rehashing reads every live record's key. In arena order those reads
	// stream; in the old table's order each is a cache miss (most of a
	// growing cache's stores went to growing its index). The arena walk
	// also visits the dead records, so it is taken while they are few.
	byArena := s.bytes*2 >= s.small.used()+s.main.used()
	n := int(s.nslots)
	for {
		n = pageFill(max(n*growNum/growDen, minSlots))
		s.mem.slots = nil // the old mapping is freed once, by the defer
		s.setSlots(s.mem.index(n), n)
		var ok bool
		if byArena {
			ok = s.rehashArena(old, extra)
		} else {
			ok = s.rehash(old, extra)
		}
		if ok {
			return
		}
		freeBytes(s.mem.slots)
	}
}

// rehash inserts the entries of old and the item at extra into the empty
// table, in old's order, reporting false if one did not fit.
func (s *shard) rehash(old []uint32, extra uint64) bool {
	for i := -1; i < len(old); i++ {
		off := extra
		if i >= 0 {
			if old[i] == 0 {
				continue
			}
			off = s.slotOff(old[i])
		}
		if !s.rehashOne(off, xxhash.Sum64(s.key(off))) {
			return false
		}
	}
	return true
}

// rehashArena is rehash walking the rings' records from tail to head,
// each inserted if old points at it (or it is extra). A record the index
// drops becomes a hole at once, so the walk first takes every record for
// live, without looking it up in old (a cache miss a record), and counts
// them: each item is one record, so as many records as items means none
// was dead. Else it starts over, checking each record against old.
func (s *shard) rehashArena(old []uint32, extra uint64) bool {
	var n uint64
	for off := range s.records() {
		if !s.rehashOne(off, xxhash.Sum64(s.key(off))) {
			return false
		}
		n++
	}
	if n == s.count.Load() {
		return true
	}
	clear(s.slots)
	for off := range s.records() {
		h := xxhash.Sum64(s.key(off))
		if off != extra && !s.inTable(old, h, off) {
			continue
		}
		if !s.rehashOne(off, h) {
			return false
		}
	}
	return true
}

// rehashOne places the record at off, whose key hashes to h, in the table.
func (s *shard) rehashOne(off, h uint64) bool {
	_, ok := s.placeSlot(s.makeSlot(off, h), s.home(h))
	return ok
}

// inTable reports whether table (another than the shard's own, of the same
// slot format) has an entry for the record at off, whose key hashes to h.
func (s *shard) inTable(table []uint32, h, off uint64) bool {
	n := uint64(len(table))
	i := uint64(uint32(h>>32)) * n >> 32
	tag := s.tagOf(h)
	for d := uint32(0); ; d++ {
		e := table[i]
		if e == 0 || s.slotDisp(e) < d {
			return false
		}
		if s.slotDisp(e) == d && s.slotTag(e) == tag && s.slotOff(e) == off {
			return true
		}
		if i++; i == n {
			i = 0
		}
	}
}

func (s *shard) ghostIndex(h uint64) uint64 {
	return uint64(uint32(h>>16)) * uint64(len(s.ghost)) >> 32
}
func ghostTag(h uint64) uint16         { return uint16(h>>48) | 1 }
func (s *shard) inGhost(h uint64) bool { return s.ghost[s.ghostIndex(h)] == ghostTag(h) }
