// The record format: how one item is laid out in a shard's arena, the
// accessors that read and write a record's fields at its arena offset, and
// how a record's CAS is found, in a field or derived from its position in
// its ring. The index (index.go) points at records by offset; the rings
// (ring.go) allocate, move and evict them; the shard (shard.go) owns the
// arena they lie in.

package emcache

import (
	"bytes"
	"encoding/binary"
	"math/bits"
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
	// does; a store through the classic commands clears it, one through
	// the Go API sets it for a key the text protocol cannot carry.
	bitKeyBinary = 0x20
	hasFlags     = 0x40 // the record has a client-flags field
	hasExpiry    = 0x80 // the record has an expiry field
	layoutBits   = hasFlags | hasExpiry
)

var le = binary.LittleEndian

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
		s.expiring(exp)
	}
}

// expiring notes that an item now expires at exp: if at all, the crawler
// goes back to its full pace over the shard, and keeps it after the pass
// under way, which may have passed the item's slot.
func (s *shard) expiring(exp uint32) {
	if exp != 0 {
		s.idleCrawl, s.passSawExpiry = false, true
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
// It writes only what changes: a hot item's record is usually read again
// within the second, with its frequency saturated, and a write would pull
// its cache line away from the other cores reading it.
func (s *shard) touchRead(off uint64, now uint32) {
	b := s.buf[off+offBits]
	nb := b | bitFetched
	if b&freqMask < freqMask {
		nb++
	}
	if nb != b {
		s.buf[off+offBits] = nb
	}
	if s.access(off) != now&accessMask {
		s.noteAccess(off, now)
	}
}

// hole writes a skip record of n bytes at off (n >= holeMin).
func (s *shard) hole(off, n uint64) {
	s.buf[off] = 0
	le.PutUint32(s.buf[off+1:], uint32(n))
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
	s.expiring(exp)
	s.writePrefix(off, uint64(len(key)), bits, now, withCAS)
	copy(s.buf[off+offKey:], key)
	at := s.writeFields(off+offKey+uint64(len(key)), uint64(valLen), bits, flags, exp, cas, withCAS)
	return s.buf[at : at+uint64(valLen)]
}

// CAS values: a counter's, or derived from a record's position.

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
	r, pos := s.position(off)
	return s.positionCAS(r, pos)<<s.casShift | s.id
}

// position returns the ring of the record at off and its logical position
// there, which only the record's own write gave it.
func (s *shard) position(off uint64) (*ring, uint64) {
	r := s.ringOf(off)
	// Live records lie within size bytes behind the head; one at the head's
	// own offset is a full ring's tail.
	dist := r.hp + r.size - (off - r.base)
	if dist > r.size {
		dist -= r.size
	}
	return r, r.head - dist
}
