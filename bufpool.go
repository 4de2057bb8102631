package emcache

import (
	"math/bits"
	"sync/atomic"
)

// Each worker keeps the buffers its connections borrow for partial input
// and pending output, so that steady traffic allocates nothing: an idle
// connection holds no buffer at all, and the busy ones reuse the same few.

const (
	// readBufSize is memcached's READ_BUFFER_SIZE. Each worker reads into
	// one buffer of this size; a connection holds its own (from the
	// worker's free list) only while it has a partial request buffered.
	readBufSize = 16 << 10
	// maxFreeBufs bounds each worker's free list of readBufSize buffers.
	maxFreeBufs = 64
	// maxBigPool bounds the bytes of larger buffers (for big values in and
	// out) a worker keeps for reuse: without it every large set or partly
	// written large reply allocates, and the garbage drives GC cycles that
	// show in tail latency.
	maxBigPool = 8 << 20
	// maxKeptOutBuf bounds the worker's shared output buffer kept after a
	// large reply, so one big multiget does not pin memory forever.
	maxKeptOutBuf = 2 << 20
	// lineSlack is the room beyond MaxItemSize a connection's input buffer
	// may grow to: the command line (<= 2048 bytes) and the data's \r\n.
	lineSlack = 4096
)

// takeBuf returns an empty buffer for at least n bytes, from the worker's
// pools when one fits.
func (w *worker) takeBuf(n int) []byte {
	if n > readBufSize {
		for i, b := range w.big {
			if cap(b) >= n {
				last := len(w.big) - 1
				w.big[i], w.big[last] = w.big[last], nil
				w.big = w.big[:last]
				w.bigBytes -= cap(b)
				w.pooledAdd(-cap(b))
				return b
			}
		}
		// A power of two serves later requests of similar sizes.
		return make([]byte, 0, 1<<bits.Len(uint(n-1)))
	}
	if n := len(w.free); n > 0 {
		b := w.free[n-1]
		w.free[n-1] = nil
		w.free = w.free[:n-1]
		w.pooledAdd(-cap(b))
		return b
	}
	return make([]byte, 0, readBufSize)
}

func (w *worker) putBuf(b []byte) {
	switch {
	case cap(b) == readBufSize && len(w.free) < maxFreeBufs:
		w.free = append(w.free, b[:0])
		w.pooledAdd(cap(b))
	case cap(b) > readBufSize && w.bigBytes+cap(b) <= maxBigPool:
		w.big = append(w.big, b[:0])
		w.bigBytes += cap(b)
		w.pooledAdd(cap(b))
	}
}

// pooledBytes counts the bytes one worker's pools hold. Only the worker
// writes it; the metrics endpoint reads it while the worker runs. Padded
// so that workers counting theirs do not share a cache line.
type pooledBytes struct {
	n atomic.Int64
	_ [56]byte
}

// pooledAdd changes the worker's count by n. A load and a store, not an
// atomic add: the worker is the only writer, and a locked instruction per
// buffer taken would be paid by every partly read request.
func (w *worker) pooledAdd(n int) {
	p := &w.s.pooled[w.id].n
	p.Store(p.Load() + int64(n))
}

// pooledBufBytes sums the bytes the workers' pools hold.
func (s *Server) pooledBufBytes() uint64 {
	var n int64
	for i := range s.pooled {
		n += s.pooled[i].n.Load()
	}
	return uint64(max(n, 0))
}
