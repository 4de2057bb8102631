// The removal listener: Config.OnRemove hears of every item that leaves the
// cache and why. Removals happen under a shard's lock; they are queued there
// and delivered by the goroutine that made them once it has let go of the
// lock, so that the callback may use the cache.

package emcache

import "sync"

// RemoveCause tells Config.OnRemove why an item left the cache.
type RemoveCause uint8

// The causes of removal.
const (
	// RemoveEvicted: the item made room for others (counted in
	// Stats.Evictions).
	RemoveEvicted RemoveCause = iota + 1
	// RemoveExpired: the item's time ran out; it is reported when the
	// cache notices, which a read, a store, the background reclaimer or
	// the allocator does, not at the second it expired.
	RemoveExpired
	// RemoveDeleted: a delete removed it (Delete, or delete over the wire,
	// including meta's md with x, which leaves an empty item).
	RemoveDeleted
	// RemoveReplaced: a store put a new value under its key (set, replace,
	// cas, append, prepend, and a set that failed for size or memory,
	// which drops the old value). Arithmetic, which changes an item rather
	// than storing one, and touches are not removals.
	RemoveReplaced
	// RemoveFlushed: flush_all (FlushAll) or a prefix deletion
	// (DeletePrefix) removed it.
	RemoveFlushed
)

var removeCauseNames = [...]string{
	RemoveEvicted:  "evicted",
	RemoveExpired:  "expired",
	RemoveDeleted:  "deleted",
	RemoveReplaced: "replaced",
	RemoveFlushed:  "flushed",
}

// String returns the cause's name in lower case ("evicted").
func (c RemoveCause) String() string {
	if int(c) < len(removeCauseNames) && removeCauseNames[c] != "" {
		return removeCauseNames[c]
	}
	return "unknown"
}

// removeBatch holds the removals a shard queued during one hold of its
// lock: the keys back to back, each ending at ends[i].
type removeBatch struct {
	keys   []byte
	ends   []int
	causes []RemoveCause
}

var removeBatches = sync.Pool{New: func() any { return new(removeBatch) }}

// noteRemoval queues the removal of the record at off, before it leaves
// the index, if the cache has a listener.
func (s *shard) noteRemoval(off uint64, cause RemoveCause) {
	if s.onRemove != nil {
		s.queueRemoval(s.key(off), cause)
	}
}

func (s *shard) queueRemoval(key []byte, cause RemoveCause) {
	b := s.pending
	if b == nil {
		b = removeBatches.Get().(*removeBatch)
		s.pending = b
	}
	b.keys = append(b.keys, key...)
	b.ends = append(b.ends, len(b.keys))
	b.causes = append(b.causes, cause)
}

// unlock releases s.mu and then delivers the removals queued under it.
func (s *shard) unlock() {
	b := s.pending
	if b == nil {
		s.mu.Unlock()
		return
	}
	s.pending = nil
	s.mu.Unlock()
	b.deliver(s.onRemove)
}

// unlockInto releases s.mu and adds the removals queued under it to list,
// for a caller that holds another lock to deliver once it let go of that.
func (s *shard) unlockInto(list []*removeBatch) []*removeBatch {
	if b := s.pending; b != nil {
		s.pending = nil
		list = append(list, b)
	}
	s.mu.Unlock()
	return list
}

// deliver calls f for each removal in b and recycles b.
func (b *removeBatch) deliver(f func(key []byte, cause RemoveCause)) {
	start := 0
	for i, end := range b.ends {
		f(b.keys[start:end:end], b.causes[i])
		start = end
	}
	b.keys, b.ends, b.causes = b.keys[:0], b.ends[:0], b.causes[:0]
	removeBatches.Put(b)
}

// noteFlush queues the removal of every item in the index, which flush_all
// is about to drop: the expired ones as such, the rest as flushed.
func (s *shard) noteFlush(now uint32) {
	for _, e := range s.slots {
		if e == 0 {
			continue
		}
		off := s.slotOff(e)
		cause := RemoveFlushed
		if expired(s.expiry(off), now) {
			cause = RemoveExpired
		}
		s.queueRemoval(s.key(off), cause)
	}
}
