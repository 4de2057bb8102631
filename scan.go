// Iteration: Scan walks each shard's index in batches, a range of key
// hashes at a time, copying the matching items out under the shard's lock
// and yielding them after letting go of it.

package emcache

import (
	"bytes"
	"iter"
	"math"

	"github.com/cespare/xxhash/v2"
)

// scanBatchItems and scanBatchBytes size the hash range one batch of a
// Scan covers: about that many items, or that many bytes of keys and
// values, whichever is reached first, so one hold of a shard's lock stays
// short (tens of microseconds). A range that turns out to hold more than
// scanMaxBytes is halved and copied again, down to a single hash.
const (
	scanBatchItems = 256
	scanBatchBytes = 64 << 10
	scanMaxBytes   = 4 * scanBatchBytes
)

// hashSpace is the number of values of the 32 hash bits that order an index.
const hashSpace = 1 << 32

// Scan returns an iterator over the live items whose keys start with
// prefix (every item, for an empty prefix), yielding each key and a copy
// of its item. The key and the item's Value are valid only until the
// iteration moves on: copy them to keep them. Expired items and items a
// FlushAll or DeletePrefix removed are never yielded; reading an item
// through Scan is not a get (it counts nothing and does not promote the
// item).
//
// The order is unspecified. A key is yielded at most once per Scan, and an
// item that is in the cache for the whole of it is yielded exactly once,
// with the value it had at some moment of the Scan; an item stored, deleted
// or expiring meanwhile may or may not be. The cache stays usable
// throughout, the loop body included, which may store and delete items: a
// shard's lock is held only while one batch, a range of key hashes holding
// about 256 items or 64 KiB, is copied out, never while the loop body
// runs, so a Scan delays another operation on the same shard by at most
// the time of one such copy. A Scan costs a pass over every item whatever
// the prefix: there is no index by prefix. A closed cache yields nothing.
func (c *Cache) Scan(prefix []byte) iter.Seq2[[]byte, Item] {
	prefix = bytes.Clone(prefix)
	return func(yield func([]byte, Item) bool) {
		var b scanBatch
		for _, s := range c.shards {
			for lo := uint64(0); lo < hashSpace; {
				now := c.clock()
				s.mu.Lock()
				if s.closed() {
					s.mu.Unlock()
					return
				}
				var hi uint64
				for width := s.scanWidth(); ; width /= 2 {
					hi = min(lo+width, hashSpace)
					limit := scanMaxBytes
					if width == 1 {
						limit = math.MaxInt // one hash: cannot split further
					}
					if s.scanRange(&b, lo, hi, prefix, now, c.noCAS, limit) {
						break
					}
				}
				s.mu.Unlock()
				if !b.yieldAll(yield) {
					return
				}
				lo = hi
			}
		}
	}
}

// scanBatch holds the items one batch copied: keys and values back to
// back in buf.
type scanBatch struct {
	buf   []byte
	items []scanEntry
}

// scanEntry is an item in a scanBatch: its key ends at keyEnd, where its
// value starts, and the value at valEnd, where the next key starts.
type scanEntry struct {
	keyEnd, valEnd int
	flags, exp     uint32
	cas            uint64
}

// scanWidth is the width of the hash range a batch of s covers, a power of
// two: s's items and bytes spread over ranges of scanBatchItems items or
// scanBatchBytes bytes.
func (s *shard) scanWidth() uint64 {
	parts := max(s.count.Load()/scanBatchItems, s.bytes/scanBatchBytes, 1)
	width := uint64(hashSpace)
	for width > 1 && parts > 1 {
		width /= 2
		parts = (parts + 1) / 2
	}
	return width
}

// scanRange copies into b the live items of s under prefix whose keys'
// top 32 hash bits lie in [lo, hi), and reports false, b then incomplete,
// if they came to more than limit bytes.
//
// The index keeps entries in the order of their home slots, which rise
// with those hash bits whatever the table's size, so the range's entries
// lie together: from lo's home slot on, up to the first entry whose home
// lies past hi-1's, or the first empty slot past that home. Entries just
// after lo's home may belong to earlier homes (displaced there, or wrapped
// from the table's end) and the boundary homes are shared with the
// neighbouring ranges: the hash tells.
func (s *shard) scanRange(b *scanBatch, lo, hi uint64, prefix []byte, now uint32, noCAS bool, limit int) bool {
	b.buf, b.items = b.buf[:0], b.items[:0]
	n := s.nslots
	first := lo * n >> 32
	last := (hi-1)*n>>32 - first // the range's last home, from first
	for k := uint64(0); k < n; k++ {
		j := first + k
		if j >= n {
			j -= n
		}
		e := s.slots[j]
		if e == 0 {
			if k > last {
				break
			}
			continue
		}
		if d := uint64(s.slotDisp(e)); k >= d && k-d > last {
			break
		}
		off := s.slotOff(e)
		key := s.key(off)
		if !bytes.HasPrefix(key, prefix) {
			continue
		}
		if h := xxhash.Sum64(key) >> 32; h < lo || h >= hi {
			continue
		}
		value, flags, exp, cas := s.decode(off)
		// A lease item (a load in progress) holds no value yet: Get misses it.
		if expired(exp, now) || len(s.dead) != 0 && s.prefixDead(off) || s.isLease(off) {
			continue
		}
		if noCAS {
			cas = 0
		}
		b.buf = append(b.buf, key...)
		keyEnd := len(b.buf)
		b.buf = append(b.buf, value...)
		b.items = append(b.items, scanEntry{keyEnd: keyEnd, valEnd: len(b.buf), flags: flags, exp: exp, cas: cas})
		if len(b.buf) > limit {
			return false
		}
	}
	return true
}

// yieldAll yields b's items and reports whether the loop wants more.
func (b *scanBatch) yieldAll(yield func([]byte, Item) bool) bool {
	start := 0
	for _, it := range b.items {
		key := b.buf[start:it.keyEnd:it.keyEnd]
		value := b.buf[it.keyEnd:it.valEnd:it.valEnd]
		start = it.valEnd
		if !yield(key, Item{Value: value, Flags: it.flags, Expires: expiresAt(it.exp), CAS: it.cas}) {
			return false
		}
	}
	return true
}
