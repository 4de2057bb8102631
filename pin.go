package emcache

import (
	"sync/atomic"
	"unsafe"
)

// Large values are sent from the arena itself, as memcached writes from
// its items: a text get's reply refers to the value's bytes (outRef)
// instead of copying them into the output buffer, and a pin keeps those
// bytes from being overwritten until the socket has taken them, across
// partial writes and serve calls. A pin never holds up the shard: when an
// allocation, a resize or an in-place change is about to write over pinned
// bytes, it revokes the pin, copying the bytes still referred to aside
// (guard), so a slow reader costs at most the copy the reply would have
// made anyway, and the arena's space is never held hostage.

const (
	// refMinLen is the smallest value a reply sends from the arena: below
	// it copying costs less than pinning (a shard lock taken again once
	// the value is sent, and an iovec per value).
	refMinLen = 16 << 10
	// maxRefs bounds one connection's unsent arena references, so the
	// pins a shard checks on each allocation stay few; the values past it
	// are copied.
	maxRefs = 16
	// maxFreePins bounds a worker's spare pins.
	maxFreePins = 64
	// maxIovecs is the most buffers a connection's output takes: its
	// references and the reply bytes around each.
	maxIovecs = 2*maxRefs + 1
)

// Pin states. Only the worker whose reply holds the pin moves it between
// idle and writing (around the system call that reads the bytes); a
// revoker, holding the shard's lock, moves it from idle to revoking and,
// once the bytes are copied aside, to revoked, after which the pin is out
// of the shard's list and data is the copy.
const (
	pinIdle uint32 = iota
	pinWriting
	pinRevoking
	pinRevoked
)

// arenaPin holds a value's bytes in a shard's arena for a reply.
type arenaPin struct {
	state atomic.Uint32
	s     *shard // whose list holds the pin while not revoked
	// data is the value: in the arena until revoked, then the copy. Its
	// writer owns it while idle or writing, the revoker while revoking.
	data []byte
	// lo and hi are data's arena offsets while in the arena.
	lo, hi uint64
}

// pinLocked registers p for value, which lies in s's arena; s is locked.
func (s *shard) pinLocked(p *arenaPin, value []byte) {
	p.s = s
	p.data = value
	p.lo = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(value))) - uintptr(unsafe.Pointer(unsafe.SliceData(s.buf))))
	p.hi = p.lo + uint64(len(value))
	p.state.Store(pinIdle)
	s.pins = append(s.pins, p)
}

// guard revokes the pins on any byte of [lo, hi), which the caller, holding
// s's lock, is about to write.
func (s *shard) guard(lo, hi uint64) {
	for i := 0; i < len(s.pins); {
		if p := s.pins[i]; p.lo < hi && lo < p.hi {
			s.revokeAt(i)
			continue // revokeAt moved the last pin to i
		}
		i++
	}
}

// revokeAll revokes every pin, before the arena is replaced or freed.
func (s *shard) revokeAll() {
	for len(s.pins) > 0 {
		s.revokeAt(len(s.pins) - 1)
	}
}

// revokeAt copies the bytes of s.pins[i] aside and drops it from the list.
// A pin being written waits for its system call, which does not block.
func (s *shard) revokeAt(i int) {
	p := s.pins[i]
	for !p.state.CompareAndSwap(pinIdle, pinRevoking) {
		yieldCPU()
	}
	p.data = append([]byte(nil), p.data...)
	p.state.Store(pinRevoked)
	s.dropPin(i)
}

func (s *shard) dropPin(i int) {
	last := len(s.pins) - 1
	s.pins[i], s.pins[last] = s.pins[last], nil
	s.pins = s.pins[:last]
}

// begin returns the pinned bytes from offset from on for a system call to
// read, which must end with done.
func (p *arenaPin) begin(from int) []byte {
	for !p.state.CompareAndSwap(pinIdle, pinWriting) {
		if p.state.Load() == pinRevoked {
			return p.data[from:]
		}
		yieldCPU() // a revoker is copying the bytes
	}
	return p.data[from:]
}

// done ends what begin started.
func (p *arenaPin) done() { p.state.CompareAndSwap(pinWriting, pinIdle) }

// release lets the bytes go once the reply no longer needs them. It takes
// the shard's lock, unless a revoker has already dropped the pin.
func (p *arenaPin) release() {
	if p.state.Load() != pinRevoked {
		s := p.s
		s.mu.Lock()
		// Under the lock the state is settled: revokers hold it.
		if p.state.Load() != pinRevoked {
			for i, q := range s.pins {
				if q == p {
					s.dropPin(i)
					break
				}
			}
		}
		s.mu.Unlock()
	}
	p.s, p.data = nil, nil
}

// outRef is a value a reply sends from its pin, inserted at offset at of
// the reply's bytes.
type outRef struct {
	at   int
	n    int // the value's length
	sent int // of its bytes
	pin  *arenaPin
}

// outRefs are the arena references of one connection's unsent replies,
// in order of at.
type outRefs struct {
	list  []outRef
	bytes int // unsent bytes of the values referred to
	w     *worker
}

// add refers to value at the end of out if it may, pinning it in s, which
// is locked; false means the caller copies it.
func (r *outRefs) add(s *shard, value []byte, at int) bool {
	if r == nil || len(value) < refMinLen || len(r.list) >= maxRefs {
		return false
	}
	p := r.w.takePin()
	s.pinLocked(p, value)
	r.list = append(r.list, outRef{at: at, n: len(value), pin: p})
	r.bytes += len(value)
	return true
}

// size is the unsent bytes referred to; 0 for none.
func (r *outRefs) size() int {
	if r == nil {
		return 0
	}
	return r.bytes
}

// truncate drops the references at or past offset at, whose replies are
// withdrawn.
func (r *outRefs) truncate(at int) {
	if r == nil {
		return
	}
	for len(r.list) > 0 && r.list[len(r.list)-1].at > at {
		last := len(r.list) - 1
		r.bytes -= r.list[last].n - r.list[last].sent
		r.w.putPin(r.list[last].pin)
		r.list[last] = outRef{}
		r.list = r.list[:last]
	}
}

// takePin returns a pin for a reference, from the worker's spares.
func (w *worker) takePin() *arenaPin {
	if n := len(w.pins); n > 0 {
		p := w.pins[n-1]
		w.pins[n-1] = nil
		w.pins = w.pins[:n-1]
		return p
	}
	return new(arenaPin)
}

// putPin releases p and keeps it for reuse.
func (w *worker) putPin(p *arenaPin) {
	p.release()
	if len(w.pins) < maxFreePins {
		w.pins = append(w.pins, p)
	}
}

// The reactor's side: which list a connection's replies refer into, and
// writing replies with the values they refer to.

// bindRefs points c's protocol at the list its next replies refer into:
// c's own while it has output pending, else the worker's, beside obuf;
// none when c's transport cannot write vectors.
func (w *worker) bindRefs(c *conn) {
	switch {
	case !c.vectored:
		c.proto.refs = nil
	case c.out == nil:
		c.proto.refs = &w.refs
	default:
		if c.refs == nil {
			c.refs = w.takeRefs()
		}
		c.proto.refs = c.refs
	}
}

// settleRefs returns c's list of references to the worker once it is
// empty, so that c.refs != nil only while references are pending.
func (w *worker) settleRefs(c *conn) {
	if c.refs != nil && len(c.refs.list) == 0 {
		w.putRefs(c.refs)
		c.refs = nil
	}
}

// flushRefs is flush for output that refers to values: it writes out with
// the values inserted, releases each value's pin once the socket has all
// of it, and keeps what remains as c's pending output, the references with
// it. refs is the list out's references are in.
func (w *worker) flushRefs(c *conn, out []byte, refs *outRefs) error {
	vw := c.t.(vectorWriter)
	var err error
	var bufs [maxIovecs][]byte
	pos, k, sent := 0, 0, 0 // bytes of out sent, references sent, all bytes sent
	for {
		// maxIovecs holds every reference of a list (maxRefs) and the
		// bytes around each.
		seg, want := bufs[:0], 0
		p := pos
		for i := k; i < len(refs.list); i++ {
			ref := &refs.list[i]
			if ref.at > p {
				seg = append(seg, out[p:ref.at])
			}
			seg = append(seg, ref.pin.begin(ref.sent))
			p = ref.at
		}
		if p < len(out) {
			seg = append(seg, out[p:])
		}
		for _, b := range seg {
			want += len(b)
		}
		if want == 0 {
			break
		}
		n, e := vw.writev(seg)
		for i := k; i < len(refs.list); i++ {
			refs.list[i].pin.done()
		}
		if e != nil {
			if e != errWouldBlock {
				err = e
			}
			break
		}
		sent += n
		for n > 0 {
			if k < len(refs.list) && refs.list[k].at == pos {
				ref := &refs.list[k]
				d := min(n, ref.n-ref.sent)
				ref.sent += d
				refs.bytes -= d
				n -= d
				if ref.sent == ref.n {
					w.putPin(ref.pin)
					ref.pin = nil
					k++
				}
				continue
			}
			end := len(out)
			if k < len(refs.list) {
				end = refs.list[k].at
			}
			d := min(n, end-pos)
			pos += d
			n -= d
		}
		if sent < want {
			break // a short write: the socket is full
		}
	}
	if sent > 0 {
		w.st.bytesWritten.Add(uint64(sent))
		if c.out != nil {
			c.lastActive = w.now // a client draining a backlog is not idle
		}
	}
	rest, left := out[pos:], refs.list[k:]
	for i := range left {
		left[i].at -= pos
	}
	if c.out == nil {
		// out is obuf and refs the worker's: what remains moves to c.
		if len(rest) > 0 || len(left) > 0 {
			c.out = append(w.takeBuf(len(rest)), rest...)
			c.refs = w.takeRefs()
			c.refs.list = append(c.refs.list, left...)
			c.refs.bytes = refs.bytes
		}
		clear(refs.list)
		refs.list, refs.bytes = refs.list[:0], 0
		if cap(out) <= maxKeptOutBuf {
			w.obuf = out[:0]
		} else {
			w.obuf = make([]byte, 0, readBufSize)
		}
		return err
	}
	if cap(out) != cap(c.out) {
		w.putBuf(c.out) // handle outgrew it: out is a new array
	}
	nb := copy(out, rest)
	nr := copy(refs.list, left)
	clear(refs.list[nr:])
	refs.list = refs.list[:nr]
	if nb > 0 || nr > 0 {
		c.out = out[:nb]
	} else {
		w.putBuf(out)
		c.out = nil
	}
	w.settleRefs(c)
	return err
}

// inlineRefs returns out with the values it refers to copied in, their
// pins released: for output that leaves the reactor (a watch command's).
func (w *worker) inlineRefs(c *conn, out []byte) []byte {
	refs := c.proto.refs
	if refs == nil || len(refs.list) == 0 {
		return out
	}
	b := make([]byte, 0, len(out)+refs.bytes)
	p := 0
	for _, ref := range refs.list {
		b = append(b, out[p:ref.at]...)
		b = append(b, ref.pin.begin(ref.sent)...)
		ref.pin.done()
		p = ref.at
	}
	b = append(b, out[p:]...)
	w.dropRefs(c)
	return b
}

// dropRefs releases the pins of c's references, in its own list and, while
// it is being served, in the worker's.
func (w *worker) dropRefs(c *conn) {
	if c.proto.refs == &w.refs {
		w.refs.truncate(-1)
	}
	if c.refs != nil {
		c.refs.truncate(-1)
		w.putRefs(c.refs)
		c.refs = nil
	}
	c.proto.refs = nil
}

func (w *worker) takeRefs() *outRefs {
	if n := len(w.freeRefs); n > 0 {
		r := w.freeRefs[n-1]
		w.freeRefs[n-1] = nil
		w.freeRefs = w.freeRefs[:n-1]
		return r
	}
	return &outRefs{w: w}
}

func (w *worker) putRefs(r *outRefs) {
	if len(w.freeRefs) < maxFreePins {
		w.freeRefs = append(w.freeRefs, r)
	}
}
