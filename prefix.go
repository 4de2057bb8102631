// Prefix deletion: DeletePrefix marks every item stored so far under a
// prefix dead with a watermark per shard, checked wherever a record is
// looked at, and the records are reclaimed later, by a sweep of the rings
// the background goroutine runs, or sooner at a ring's tail or by a read.

package emcache

import (
	"bytes"

	"github.com/cespare/xxhash/v2"
)

// maxDeadPrefixes bounds the prefix deletions a shard tracks at once. Each
// costs a prefix comparison on every lookup while it lasts (about the time
// the background sweep takes to pass every record older than it, seconds),
// so the bound keeps both the reads and the memory small; a DeletePrefix
// that finds it reached finishes the sweep itself first.
const maxDeadPrefixes = 64

// deadPrefix is one prefix deletion as a shard sees it: the records under
// prefix that were written before it, at ring positions below the heads the
// rings had then, are dead. Records only move by being written again at a
// ring's head (reinsertion, promotion, relocation, resizing), and every such
// move checks the watermarks first, so a moved record is never older than
// its position says.
type deadPrefix struct {
	prefix      []byte // shared by every shard's entry, never written
	small, main uint64 // the rings' heads when the prefix was deleted
	seq         uint64 // the deletion's number, in the order made
}

// deadSweep is where the shard's sweep of dead records stands: it passes
// the rings from their tails to the newest heads of the entries whose seq
// is at most seq, and then those entries are done, every record they
// condemn gone. seq is 0 when no sweep runs.
type deadSweep struct {
	small, main uint64
	seq         uint64
}

// DeletePrefix removes every item whose key starts with prefix (all items,
// for an empty prefix). It takes effect at once: no later read or store
// finds an item stored before the call, while an item stored under the
// prefix afterwards is kept. The cost is a watermark per shard, not a walk
// over the items; their memory is reclaimed lazily, within seconds, by the
// background goroutine or by the stores that need it, and until then they
// still count in Stats.CurrItems and Stats.Bytes, as after memcached's
// delayed flush_all. A read that meets such an item counts in
// Stats.GetFlushed, and Config.OnRemove hears of each item with
// RemoveFlushed as it is reclaimed.
//
// While a deletion is pending, every lookup compares the key with its
// prefix; a deletion whose prefix is a prefix of an older one's replaces
// it. At most 64 deletions are pending per shard: a call that finds that
// many first finishes the oldest sweep itself, a pass over the shard's
// records in short holds of its lock, so a burst of deletions pays for
// itself rather than slowing reads. ErrKeyInvalid if prefix is longer
// than MaxKeyLen.
func (c *Cache) DeletePrefix(prefix []byte) error {
	c.cmdFlushPrefix.Add(1)
	return c.deletePrefix(prefix)
}

// deletePrefix is DeletePrefix without counting the command: the text
// protocol counts every flush_prefix it parses, refused ones too, as it
// counts flush_all.
func (c *Cache) deletePrefix(prefix []byte) error {
	if len(c.shards) == 0 {
		return ErrNotInitialized
	}
	if len(prefix) > MaxKeyLen {
		return ErrKeyInvalid
	}
	p := append(make([]byte, 0, len(prefix)), prefix...)
	var removed []*removeBatch
	// Callbacks run once prefixMu is released, so that one may delete a
	// prefix too.
	defer func() {
		for _, b := range removed {
			b.deliver(c.onRemove)
		}
	}()
	c.prefixMu.Lock()
	defer c.prefixMu.Unlock()
	c.prefixSeq++
	for _, s := range c.shards {
		s.mu.Lock()
		if s.closed() {
			s.mu.Unlock()
			return ErrClosed
		}
		s.forgetCovered(p)
		for len(s.dead) >= maxDeadPrefixes {
			s.sweepDead(holdSlots)
			removed = s.unlockInto(removed)
			s.mu.Lock()
			if s.closed() {
				s.mu.Unlock()
				return ErrClosed
			}
		}
		s.dead = append(s.dead, deadPrefix{prefix: p, small: s.small.head, main: s.main.head, seq: c.prefixSeq})
		removed = s.unlockInto(removed)
	}
	return nil
}

// forgetCovered drops the entries a deletion of p makes redundant: those
// whose prefix starts with p, which is newer.
func (s *shard) forgetCovered(p []byte) {
	s.dead = deleteFunc(s.dead, func(d *deadPrefix) bool { return bytes.HasPrefix(d.prefix, p) })
	if len(s.dead) == 0 {
		s.sweep = deadSweep{}
	}
}

// deleteFunc removes the entries del selects, in place, and clears the
// tail so dropped prefixes can be collected.
func deleteFunc(d []deadPrefix, del func(*deadPrefix) bool) []deadPrefix {
	n := 0
	for i := range d {
		if !del(&d[i]) {
			d[n] = d[i]
			n++
		}
	}
	clear(d[n:])
	return d[:n]
}

// prefixDead reports whether the record at off was deleted by a prefix
// deletion. Callers test len(s.dead) first, so a shard without pending
// deletions pays one branch.
func (s *shard) prefixDead(off uint64) bool {
	r, pos := s.position(off)
	small := r == &s.small
	key := s.key(off)
	for i := range s.dead {
		d := &s.dead[i]
		head := d.main
		if small {
			head = d.small
		}
		if pos < head && bytes.HasPrefix(key, d.prefix) {
			return true
		}
	}
	return false
}

// sweepDead reclaims dead records among the next n records of the rings'
// sweep, starting a sweep over every pending entry if none runs, and
// retires the entries the sweep covers once it has passed their heads.
func (s *shard) sweepDead(n int) {
	if len(s.dead) == 0 {
		return
	}
	if s.sweep.seq == 0 {
		s.sweep = deadSweep{small: s.small.tail, main: s.main.tail, seq: s.dead[len(s.dead)-1].seq}
	}
	var small, main uint64 // the heads the sweep must reach
	for i := range s.dead {
		if d := &s.dead[i]; d.seq <= s.sweep.seq {
			small, main = max(small, d.small), max(main, d.main)
		}
	}
	n = s.sweepRing(&s.small, &s.sweep.small, small, n)
	s.sweepRing(&s.main, &s.sweep.main, main, n)
	if s.sweep.small < small || s.sweep.main < main {
		return
	}
	seq := s.sweep.seq
	s.dead = deleteFunc(s.dead, func(d *deadPrefix) bool { return d.seq <= seq })
	s.sweep = deadSweep{}
}

// sweepRing moves *cursor through r toward target, over at most n records,
// unlinking dead ones, and returns what is left of n. Records between a
// ring's tail and head keep their bounds until the tail passes them (a
// removed record becomes a hole of its size), so a cursor at or past the
// tail always stands at a record's start.
func (s *shard) sweepRing(r *ring, cursor *uint64, target uint64, n int) int {
	pos := max(*cursor, r.tail)
	for ; pos < target && n > 0; n-- {
		off, size, isHole := s.skipAt(r, pos%r.size)
		pos += size
		if isHole || !s.prefixDead(off) {
			continue
		}
		if slot, ok := s.findOff(xxhash.Sum64(s.key(off)), off); ok {
			s.st.reclaimed++
			s.st.crawlerReclaimed++
			s.noteRemoval(off, RemoveFlushed)
			s.unlink(slot)
		}
	}
	*cursor = pos
	return n
}
