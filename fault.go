package emcache

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Fault is a failure that a [Server] injects into the requests it serves, so
// that a client's error handling can be tested against the real server (see
// [Server.InjectFault]). Its effects combine: a Delay followed by a Reply, or
// by Close, or by the request running normally when neither is set.
type Fault struct {
	// Command limits the fault to requests of this command ("set", "get",
	// "incr", "mg", ...); empty matches every request. Clients differ in
	// what they send for the same call: gomemcache's Get sends gets.
	Command string
	// Delay stalls the request this long before it runs or fails. On Linux,
	// BSD and macOS the stall holds the worker thread that serves the
	// connection, so its other connections wait too: a test server, with
	// one worker, pauses as a whole, as an overloaded memcached would.
	// Stopping the server ends the stall early, closing the connection
	// without an answer. At most 10 seconds.
	Delay time.Duration
	// Reply, when not empty, is the line sent instead of running the
	// request, without its line end: "SERVER_ERROR out of memory storing
	// object", "ERROR", ... A storage command's data block is read and
	// discarded, as memcached does when it refuses a store. A classic
	// command sent with noreply gets no reply, as with memcached's own
	// errors.
	Reply string
	// Close closes the connection instead of running the request, after
	// sending the replies to the requests before it.
	Close bool
}

// maxFaultDelay bounds Fault.Delay: longer than any client timeout worth
// testing, short enough that a forgotten fault cannot wedge a worker for long.
const maxFaultDelay = 10 * time.Second

// faultRun is a fault being injected and how many more requests it applies
// to; the server holds one in an atomic pointer, nil when there is none.
type faultRun struct {
	f    Fault
	left atomic.Int64
}

// InjectFault makes the next n requests that f matches fail as f describes,
// whichever connections they come on; n <= 0 cancels a pending fault. A call
// replaces the fault of the previous one. It is meant for testing a client's
// error handling (package emcachetest wraps it), and covers the text
// protocol's classic and meta commands.
//
// While no fault is pending the server pays one atomic load per request.
func (s *Server) InjectFault(n int, f Fault) error {
	switch {
	case f.Delay < 0 || f.Delay > maxFaultDelay:
		return fmt.Errorf("emcache: Fault.Delay %v is outside 0..%v", f.Delay, maxFaultDelay)
	case strings.ContainsAny(f.Reply, "\r\n\x00"):
		return errors.New("emcache: Fault.Reply must be one line, without its line end")
	case f.Reply != "" && f.Close:
		return errors.New("emcache: Fault.Reply and Fault.Close exclude each other")
	}
	if n <= 0 {
		s.fault.Store(nil)
		return nil
	}
	r := &faultRun{f: f}
	r.left.Store(int64(n))
	s.fault.Store(r)
	return nil
}

// injectFault applies the pending fault to the command line line (lineLen
// bytes with its line end) if it matches. ok reports that the fault took the
// request's place: consumed, out and act are then the request's result;
// otherwise the caller runs the request, possibly after a delay.
func (s *Server) injectFault(pc *protoConn, line []byte, lineLen int, out []byte) (consumed int, outNew []byte, act action, ok bool) {
	r := s.fault.Load()
	if r == nil {
		return 0, out, actNone, false
	}
	if z := bytes.IndexByte(line, 0); z >= 0 {
		line = line[:z] // as command reads it
	}
	var t [maxTokens][]byte
	nt := tokenize(line, &t)
	if nt < 2 || (r.f.Command != "" && r.f.Command != string(t[0])) {
		return 0, out, actNone, false
	}
	left := r.left.Add(-1)
	if left < 0 {
		return 0, out, actNone, false // used up by other connections meanwhile
	}
	if left == 0 {
		s.fault.CompareAndSwap(r, nil) // back to the one-load path
	}
	if d := r.f.Delay; d > 0 {
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case <-s.quit:
			// The server is stopping: hang up rather than answer late.
			timer.Stop()
			return lineLen, out, actClose, true
		}
	}
	switch {
	case r.f.Close:
		return lineLen, out, actClose, true
	case r.f.Reply == "":
		return 0, out, actNone, false
	}
	if vlen := faultDataLen(&t, nt); vlen >= 0 {
		pc.swallow = vlen + 2
		pc.state = swallowData
	}
	meta := len(t[0]) == 2 && t[0][0] == 'm' // meta commands have no noreply word
	if meta || string(t[nt-2]) != "noreply" {
		out = append(out, r.f.Reply...)
		out = append(out, rCRLF...)
	}
	return lineLen, out, actNone, true
}

// faultDataLen returns the length of the data block that follows a storage
// command's line, or -1 when the command has none or its length is invalid
// (then the block, if any, is parsed as commands, as memcached would).
func faultDataLen(t *[maxTokens][]byte, nt int) int {
	i := 0
	switch string(t[0]) {
	case "set", "add", "replace", "append", "prepend", "cas":
		i = 4 // <cmd> <key> <flags> <exptime> <bytes>
	case "ms":
		i = 2 // ms <key> <datalen>
	default:
		return -1
	}
	if i >= nt-1 {
		return -1
	}
	n, err := strconv.Atoi(string(t[i]))
	if err != nil || n < 0 || n > math.MaxInt32-2 {
		return -1
	}
	return n
}
