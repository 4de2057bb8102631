package emcache

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Command latency as the server sees it: for each request, the time from
// the wake-up that found its bytes readable to the write that sent its
// reply, per command, in a histogram per worker that the metrics endpoint
// sums. A request waits from that wake-up for the connections served
// before its own in the same batch, which is part of what a client sees.
//
// The protocol counts each request's command in its worker's tally, an
// increment; the reactor, once it has sent a connection's replies, reads
// the clock once and files the tallied commands under that duration. A
// request that arrives in pieces is timed from the wake-up that completed
// it.

// cmdKind is a command as latency is reported for it: memcached's command
// names, the binary protocol's opcodes mapped onto them.
type cmdKind uint8

const (
	cmdGet cmdKind = iota
	cmdGets
	cmdGat
	cmdGats
	cmdSet
	cmdAdd
	cmdReplace
	cmdAppend
	cmdPrepend
	cmdCAS
	cmdDelete
	cmdIncr
	cmdDecr
	cmdTouch
	cmdMetaGet
	cmdMetaSet
	cmdMetaDelete
	cmdMetaArith
	cmdMetaNoop
	cmdMetaDebug
	cmdFlushAll
	cmdStats
	cmdOther // the rest: version, verbosity, quit, admin commands, errors
	numCmdKinds
)

// cmdKindNames are the command labels of the latency histogram.
var cmdKindNames = [numCmdKinds]string{
	cmdGet: "get", cmdGets: "gets", cmdGat: "gat", cmdGats: "gats",
	cmdSet: "set", cmdAdd: "add", cmdReplace: "replace", cmdAppend: "append",
	cmdPrepend: "prepend", cmdCAS: "cas", cmdDelete: "delete", cmdIncr: "incr",
	cmdDecr: "decr", cmdTouch: "touch", cmdMetaGet: "mg", cmdMetaSet: "ms",
	cmdMetaDelete: "md", cmdMetaArith: "ma", cmdMetaNoop: "mn", cmdMetaDebug: "me",
	cmdFlushAll: "flush_all", cmdStats: "stats", cmdOther: "other",
}

// textCmdKind is the kind of a text or meta command line's first word.
func textCmdKind(name []byte) cmdKind {
	switch string(name) {
	case "get", "bget":
		return cmdGet
	case "gets":
		return cmdGets
	case "gat":
		return cmdGat
	case "gats":
		return cmdGats
	case "set":
		return cmdSet
	case "add":
		return cmdAdd
	case "replace":
		return cmdReplace
	case "append":
		return cmdAppend
	case "prepend":
		return cmdPrepend
	case "cas":
		return cmdCAS
	case "delete":
		return cmdDelete
	case "incr":
		return cmdIncr
	case "decr":
		return cmdDecr
	case "touch":
		return cmdTouch
	case "mg":
		return cmdMetaGet
	case "ms":
		return cmdMetaSet
	case "md":
		return cmdMetaDelete
	case "ma":
		return cmdMetaArith
	case "mn":
		return cmdMetaNoop
	case "me":
		return cmdMetaDebug
	case "flush_all":
		return cmdFlushAll
	case "stats":
		return cmdStats
	}
	return cmdOther
}

// binCmdKind is the kind of a binary request's base opcode.
func binCmdKind(base uint8) cmdKind {
	switch base {
	case binOpGet, binOpGetK:
		return cmdGet
	case binOpGAT, binOpGATK:
		return cmdGat
	case binOpSet:
		return cmdSet
	case binOpAdd:
		return cmdAdd
	case binOpReplace:
		return cmdReplace
	case binOpAppend:
		return cmdAppend
	case binOpPrepend:
		return cmdPrepend
	case binOpDelete:
		return cmdDelete
	case binOpIncrement:
		return cmdIncr
	case binOpDecrement:
		return cmdDecr
	case binOpTouch:
		return cmdTouch
	case binOpFlush:
		return cmdFlushAll
	case binOpStat:
		return cmdStats
	}
	return cmdOther
}

// tally counts the commands of requests whose replies are not sent yet.
// The protocol adds to it through protoConn.tally; the worker owning it
// files it (worker.fileLatency).
type tally struct {
	n     [numCmdKinds]uint32
	kinds uint32 // bit k set when n[k] > 0
}

// count tallies one request of kind k, when the connection keeps a tally.
func (pc *protoConn) count(k cmdKind) {
	if t := pc.tally; t != nil {
		t.n[k]++
		t.kinds |= 1 << k
	}
}

// latencyBounds are the histogram's bucket bounds (Prometheus' le), from
// the tens of microseconds a loopback request takes to the second past
// which nothing is left to tell apart.
var latencyBounds = [...]time.Duration{
	10 * time.Microsecond, 25 * time.Microsecond, 50 * time.Microsecond,
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second,
}

// latencyHist is one command's histogram: counts per bucket (the last one
// past every bound) and the sum of the durations. Atomic, as the fallback
// reactor's connection goroutines share their worker's.
type latencyHist struct {
	buckets [len(latencyBounds) + 1]atomic.Uint64
	sumNs   atomic.Uint64
}

// add files n requests that took d.
func (h *latencyHist) add(d time.Duration, n uint64) {
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.buckets[i].Add(n)
	h.sumNs.Add(n * uint64(max(d, 0)))
}

// file adds the tallied commands, all taking d, to the histograms hs and
// empties t.
func (t *tally) file(hs *[numCmdKinds]latencyHist, d time.Duration) {
	for k := t.kinds; k != 0; k &= k - 1 {
		i := bits.TrailingZeros32(k)
		hs[i].add(d, uint64(t.n[i]))
		t.n[i] = 0
	}
	t.kinds = 0
}

// requests counts the requests the worker has filed.
func (w *worker) requests() uint64 {
	var n uint64
	for k := range w.latency {
		for i := range w.latency[k].buckets {
			n += w.latency[k].buckets[i].Load()
		}
	}
	return n
}

// CommandLatency is one command's latency histogram, summed over workers.
type CommandLatency struct {
	// Command is memcached's name for it (get, set, mg, ...; binary
	// requests count under the text command they correspond to), or
	// "other".
	Command string
	// Bounds are the buckets' upper bounds; Counts[i] is how many requests
	// took at most Bounds[i] and more than the bound before, and the last
	// of Counts, one longer than Bounds, those that took longer than all.
	Bounds []time.Duration
	Counts []uint64
	// Count and Sum are the requests and the time they took in all.
	Count uint64
	Sum   time.Duration
}

// CommandLatencies returns the server's latency histogram of each command
// that ran at least once, in a fixed order.
func (s *Server) CommandLatencies() []CommandLatency {
	var out []CommandLatency
	for k := range numCmdKinds {
		cl := CommandLatency{Command: cmdKindNames[k], Bounds: latencyBounds[:], Counts: make([]uint64, len(latencyBounds)+1)}
		for _, w := range s.workers {
			h := &w.latency[k]
			for i := range h.buckets {
				n := h.buckets[i].Load()
				cl.Counts[i] += n
				cl.Count += n
			}
			cl.Sum += time.Duration(h.sumNs.Load())
		}
		if cl.Count > 0 {
			out = append(out, cl)
		}
	}
	return out
}
