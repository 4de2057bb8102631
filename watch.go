package emcache

import (
	"bytes"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// memcached's `watch`: a connection that sends it stops making requests
// and receives log lines of the server's events instead (memcached's
// logger.c). Workers format a line only when some watcher wants its kind;
// each watcher buffers at most WatcherBufSize bytes, and lines that do not
// fit are counted and announced as skipped=N, so a watcher that does not
// read costs bounded memory. One goroutine per server writes the buffers
// to the watchers' sockets.

// Log kinds a watcher asks for (memcached's LOG_* flags).
const (
	logFetchers uint32 = 1 << iota
	logMutations
	logEvictions
	logConnEvents
	logRawCmds
	logSysEvents
)

// watchKinds are the names watch takes. sysevents is accepted for the
// scripts that ask for it, but emcache has none of memcached's system
// events to report (no slab mover; crawler passes are not logged).
var watchKinds = map[string]uint32{
	"fetchers": logFetchers, "mutations": logMutations, "evictions": logEvictions,
	"connevents": logConnEvents, "rawcmds": logRawCmds, "sysevents": logSysEvents,
}

const (
	// maxWatchers is memcached's WATCHER_LIMIT.
	maxWatchers = 20
	// defaultWatcherBuf is memcached's watcher_logbuf_size default.
	defaultWatcherBuf = 256 << 10
	// watchFlushEvery bounds how long a line waits in a buffer when no
	// new line wakes the writer.
	watchFlushEvery = 100 * time.Millisecond
)

const (
	rWatchTooMany = "WATCHER_TOO_MANY log watcher limit reached\r\n"
	rWatchPipe    = "ERROR cannot pipeline other commands before watch\r\n"
)

// watcher is one watching connection.
type watcher struct {
	t       transport // the connection's, handed over by its worker
	kinds   uint32
	buf     []byte // lines not yet written
	skipped uint64
	release func() // accounts for the connection's close
}

// watchHub holds a server's watchers.
type watchHub struct {
	kinds atomic.Uint32 // what any watcher wants; 0 when none watches
	gid   atomic.Uint64
	limit int

	mu       sync.Mutex
	watchers []*watcher
	closed   bool

	wake chan struct{}
	done chan struct{}
	line []byte // the line being formatted, under mu

	// memcached's log_* stats: lines formatted, queued to a watcher, and
	// skipped for want of room in one; watchers now.
	written, sent, skipped atomic.Uint64
	count                  atomic.Int64
}

// init readies a hub whose watchers buffer at most limit bytes each. A
// zero hub has no watchers and wants nothing.
func (h *watchHub) init(limit int) {
	h.limit, h.wake, h.done = limit, make(chan struct{}, 1), make(chan struct{})
}

// wants reports whether some watcher asks for kind; the hot paths check it
// before formatting anything.
func (h *watchHub) wants(kind uint32) bool { return h.kinds.Load()&kind != 0 }

// add makes the connection t carries a watcher of kinds, its first bytes
// pending; false if there are too many.
func (h *watchHub) add(t transport, kinds uint32, pending []byte, release func()) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || len(h.watchers) >= maxWatchers {
		return false
	}
	h.watchers = append(h.watchers, &watcher{t: t, kinds: kinds, buf: append([]byte(nil), pending...), release: release})
	h.kinds.Store(h.kinds.Load() | kinds)
	h.count.Store(int64(len(h.watchers)))
	h.signal()
	return true
}

func (h *watchHub) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// emit formats a line of kind with fill (which appends the fields after
// the timestamp and gid) and queues it for every watcher that wants it.
func (h *watchHub) emit(kind uint32, fill func([]byte) []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	l := append(h.line[:0], "ts="...)
	l = strconv.AppendInt(l, now.Unix(), 10)
	l = append(l, '.')
	l = strconv.AppendInt(l, int64(now.Nanosecond()/1000), 10)
	l = append(l, " gid="...)
	l = strconv.AppendUint(l, h.gid.Add(1), 10)
	l = append(l, ' ')
	l = append(fill(l), '\n')
	h.line = l
	h.written.Add(1)
	for _, w := range h.watchers {
		if w.kinds&kind == 0 {
			continue
		}
		// memcached asks for the line plus 128 bytes of room.
		if len(w.buf)+len(l)+128 > h.limit {
			w.skipped++
			h.skipped.Add(1)
			continue
		}
		h.sent.Add(1)
		if w.skipped > 0 {
			w.buf = append(w.buf, "skipped="...)
			w.buf = strconv.AppendUint(w.buf, w.skipped, 10)
			w.buf = append(w.buf, '\n')
			w.skipped = 0
		}
		w.buf = append(w.buf, l...)
	}
	h.signal()
}

// run writes the watchers' buffers to their sockets until close.
func (h *watchHub) run() {
	t := time.NewTicker(watchFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			h.mu.Lock()
			for _, w := range h.watchers {
				w.t.close()
				w.release()
			}
			h.watchers = nil
			h.kinds.Store(0)
			h.count.Store(0)
			h.mu.Unlock()
			return
		case <-h.wake:
		case <-t.C:
		}
		h.flush()
	}
}

// flush writes what each watcher's socket takes and drops watchers whose
// client went away (a watcher's input is read and discarded, as memcached
// ignores it, so that a close is seen).
func (h *watchHub) flush() {
	var scratch [512]byte
	h.mu.Lock()
	defer h.mu.Unlock()
	kept := h.watchers[:0]
	var kinds uint32
	for _, w := range h.watchers {
		alive := true
		if n, err := w.t.read(scratch[:]); err == nil && n == 0 || err != nil && err != errWouldBlock {
			alive = false
		}
		for alive && len(w.buf) > 0 {
			n, err := w.t.write(w.buf)
			if err == errWouldBlock {
				break
			}
			if err != nil {
				alive = false
				break
			}
			w.buf = w.buf[:copy(w.buf, w.buf[n:])]
		}
		if !alive {
			w.t.close()
			w.release()
			continue
		}
		kept = append(kept, w)
		kinds |= w.kinds
	}
	clear(h.watchers[len(kept):])
	h.watchers = kept
	h.kinds.Store(kinds)
	h.count.Store(int64(len(kept)))
}

func (h *watchHub) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	close(h.done)
}

// parseWatch reads the kinds of a watch command: fetchers when none.
func parseWatch(t *[maxTokens][]byte, nt int) (uint32, bool) {
	if nt <= 2 {
		return logFetchers, true
	}
	var kinds uint32
	for _, name := range t[1 : nt-1] {
		k, ok := watchKinds[string(name)]
		if !ok {
			return 0, false
		}
		kinds |= k
	}
	return kinds, true
}

// watchCmd serves `watch [kinds...]`: OK and actWatch, after which the
// reactor hands the connection to the hub.
func (s *Server) watchCmd(pc *protoConn, t *[maxTokens][]byte, nt int, out []byte) ([]byte, action) {
	if s.cfg.DisableWatch || !watchSupported {
		return append(out, rWatchOff...), actNone
	}
	if len(out) > 0 {
		return append(out, rWatchPipe...), actNone
	}
	kinds, ok := parseWatch(t, nt)
	if !ok {
		return append(out, rError...), actNone
	}
	s.watch.mu.Lock()
	full := len(s.watch.watchers) >= maxWatchers
	s.watch.mu.Unlock()
	if full {
		return append(out, rWatchTooMany...), actNone
	}
	pc.watchKinds = kinds
	return append(out, rOK...), actWatch
}

// Line bodies, in memcached's formats.

func appendKeyField(l []byte, key []byte) []byte {
	return appendURIEncoded(append(l, "key="...), key)
}

// logGet logs a retrieval of key (item_get).
func (s *Server) logGet(fd int, key []byte, found bool, size int) {
	s.watch.emit(logFetchers, func(l []byte) []byte {
		l = appendKeyField(append(l, "type=item_get "...), key)
		l = append(l, " status="...)
		if found {
			l = append(l, "found"...)
		} else {
			l = append(l, "not_found"...)
		}
		l = append(l, " clsid=1 cfd="...)
		l = strconv.AppendInt(l, int64(fd), 10)
		l = append(l, " size="...)
		return strconv.AppendInt(l, int64(size), 10)
	})
}

// storeStatusNames are the statuses of item_store lines.
var storeStatusNames = [...]string{
	resultOK:        "stored",
	resultNotStored: "not_stored",
	resultExists:    "exists",
	resultNotFound:  "not_found",
	resultTooLarge:  "too_large",
	resultNoMemory:  "no_memory",
}

// logStore logs a store of key (item_store) of the given kind and result;
// exptime is the command's, shown as the seconds the item is to live (0: no
// expiry; an exptime already past wraps, as memcached's %u prints it).
func (s *Server) logStore(fd int, key []byte, res result, kind storeKind, exptime int64, size int) {
	status := "not_stored" // what memcached logs for the failures it has no word for
	if int(res) < len(storeStatusNames) {
		status = storeStatusNames[res]
	}
	var ttl uint32
	if exptime != 0 {
		now := s.cache.clock()
		ttl = expiry(exptime, now) - now
	}
	s.watch.emit(logMutations, func(l []byte) []byte {
		l = appendKeyField(append(l, "type=item_store "...), key)
		l = append(l, " status="...)
		l = append(l, status...)
		l = append(l, " cmd="...)
		l = append(l, storeKindNames[kind]...)
		l = append(l, " ttl="...)
		l = strconv.AppendUint(l, uint64(ttl), 10)
		l = append(l, " clsid=1 cfd="...)
		l = strconv.AppendInt(l, int64(fd), 10)
		l = append(l, " size="...)
		return strconv.AppendInt(l, int64(size), 10)
	})
}

// logEviction logs an item evicted to make room (eviction): ttl -1 for
// none, la the seconds since its last access.
func (s *Server) logEviction(key []byte, fetched bool, ttl int64, la uint32, size int) {
	s.watch.emit(logEvictions, func(l []byte) []byte {
		l = appendKeyField(append(l, "type=eviction "...), key)
		l = append(l, " fetch="...)
		l = append(l, yesNo(fetched)...)
		l = append(l, " ttl="...)
		l = strconv.AppendInt(l, ttl, 10)
		l = append(l, " la="...)
		l = strconv.AppendUint(l, uint64(la), 10)
		l = append(l, " clsid=1 size="...)
		return strconv.AppendInt(l, int64(size), 10)
	})
}

// Close reasons of conn_close lines.
const (
	closeError       = "error"
	closeNormal      = "normal"
	closeIdleTimeout = "idle_timeout"
	closeShutdown    = "shutdown"
)

// logConn logs a connection opening (reason "") or closing.
func (s *Server) logConn(fd int, peer netip.AddrPort, tcp bool, reason string) {
	s.watch.emit(logConnEvents, func(l []byte) []byte {
		if reason == "" {
			l = append(l, "type=conn_new rip="...)
		} else {
			l = append(l, "type=conn_close rip="...)
		}
		if tcp {
			l = append(l, peer.Addr().Unmap().String()...)
			l = append(l, " rport="...)
			l = strconv.AppendUint(l, uint64(peer.Port()), 10)
			l = append(l, " transport=tcp"...)
		} else {
			l = append(l, "unix rport=0 transport=local"...)
		}
		if reason != "" {
			l = append(l, " reason="...)
			l = append(l, reason...)
		}
		l = append(l, " cfd="...)
		return strconv.AppendInt(l, int64(fd), 10)
	})
}

// logRawCmd logs a text command line as it came (rawcmds).
func (s *Server) logRawCmd(fd int, line []byte) {
	s.watch.emit(logRawCmds, func(l []byte) []byte {
		l = append(l, '<')
		l = strconv.AppendInt(l, int64(fd), 10)
		l = append(l, ' ')
		return append(l, bytes.TrimRight(line, "\r")...)
	})
}

// logEvictionIfWatched is the cache's eviction hook: a line for watchers
// of evictions.
func (s *Server) logEvictionIfWatched(key []byte, fetched bool, ttl int64, idle uint32, size int) {
	if s.watch.wants(logEvictions) {
		s.logEviction(key, fetched, ttl, idle, size)
	}
}

// logStoreLookup logs the lookup a store makes first, as memcached's
// do_store_item does through do_item_get: an item_get line with the old
// value's size.
func (s *Server) logStoreLookup(fd int, key []byte) {
	size, found := s.cache.peekSize(key)
	s.logGet(fd, key, found, size)
}
