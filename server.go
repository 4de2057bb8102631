package emcache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// This file is the platform-independent part of the server: configuration,
// the listener, and the reactor that runs memcached's threading model (see
// memcached's thread.c): one listener hands accepted fds round-robin to N
// workers, each owning its connections and one poller for their whole
// life. The poller and fd primitives come from a pair of files with the
// same small API, loop_linux.go (epoll) and loop_bsd.go (kqueue);
// loop_other.go serves the remaining systems with a goroutine per
// connection on the net package instead.

// ServerConfig configures [Cache.Serve]. Zero values pick memcached's
// defaults; the flag each field corresponds to is in parentheses.
type ServerConfig struct {
	// Addrs are TCP listen addresses, "host:port"; port 0 lets the kernel
	// choose (see [Server.Addr]). An empty host listens on every interface.
	Addrs []string
	// UnixSocket is a Unix domain socket path to listen on (-s). A stale
	// socket file left by a previous run is removed first.
	UnixSocket string
	// UnixSocketMode is the socket file's permission bits (-a); default 0700.
	UnixSocketMode os.FileMode
	// Workers is the number of worker threads (-t); default 4.
	Workers int
	// MaxConns bounds simultaneous client connections (-c); default 1024.
	// Past it a new connection gets "ERROR Too many open connections" and
	// is closed, as with memcached's default maxconns_fast.
	MaxConns int
	// ReservedFDs makes MaxConns count as memcached's -c does, which bounds
	// file descriptors: the listeners and these reserved descriptors
	// (memcached sets aside 5 per worker thread, and emcached passes that)
	// count against it too, and one more, so that clients get MaxConns -
	// listeners - ReservedFDs - 1 connections. Shown as reserved_fds; 0,
	// the default, counts clients only.
	ReservedFDs int
	// ReqsPerEvent caps the requests served per connection per wake-up
	// (-R), so one pipelining client cannot starve the others on its
	// worker; default 20.
	ReqsPerEvent int
	// Backlog is the listen queue length (-b); default 1024.
	Backlog int
	// IdleTimeout closes connections that have been silent longer than
	// this (-o idle_timeout); 0 disables it.
	IdleTimeout time.Duration
	// MaxItemSize is the largest value accepted (-I); default and upper
	// bound: the cache's.
	MaxItemSize int
	// MaxOutput bounds a connection's unsent replies: past it the server
	// stops reading that client's requests until it consumes its replies
	// (backpressure). One request's reply may exceed it; default 1 MiB.
	MaxOutput int
	// AllowShutdown enables the shutdown command (-A).
	AllowShutdown bool
	// DisableFlush disables flush_all (-F).
	DisableFlush bool
	// DisableDump disables stats cachedump and lru_crawler metadump (-X).
	DisableDump bool
	// DisableWatch disables the watch command (-W).
	DisableWatch bool
	// WatcherBufSize bounds the log bytes a watch connection may have
	// waiting; lines past it are skipped and counted (memcached's
	// watcher_logbuf_size); default 256 KiB.
	WatcherBufSize int
	// NoLRUCrawler starts the server with lru_crawler disabled, as
	// memcached's -o no_lru_crawler does: its crawl and metadump commands
	// are refused until `lru_crawler enable`. Expired items are reclaimed
	// in the background regardless.
	NoLRUCrawler bool
	// PrefixDelimiter ends the key prefix `stats detail` counts by (-D);
	// default ':'.
	PrefixDelimiter byte
	// Verbosity is the -v count; at 2 and above connection opens and
	// closes are logged.
	Verbosity int
	// Logger receives errors and verbose output; nil discards them.
	Logger *slog.Logger
	// Protocol is what connections speak (-B): "auto" (the default when
	// empty) picks the text or binary protocol per connection from its
	// first byte, as memcached does; "ascii" and "binary" force one. SASL
	// implies "binary" and ASCIIAuth "ascii"; naming another is an error,
	// as in memcached.
	Protocol string
	// SASL makes binary clients authenticate with SASL PLAIN as one of
	// Credentials before any command but VERSION (-S). Like memcached it
	// serves the binary protocol only: text connections are closed.
	SASL bool
	// ASCIIAuth makes text clients authenticate first (-Y): their first
	// command must be a set whose data is "user password", one of
	// Credentials; until then every command gets CLIENT_ERROR
	// unauthenticated.
	ASCIIAuth bool
	// Credentials are the users SASL and ASCIIAuth accept; see
	// [ParseCredentials] for memcached's file format.
	Credentials []Credential
}

const (
	defaultWorkers        = 4
	defaultMaxConns       = 1024
	defaultReqsPerEvent   = 20
	defaultBacklog        = 1024
	defaultUnixSocketMode = 0o700
	defaultMaxOutput      = 1 << 20

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
	// pollBatch is how many events one wait returns at most.
	pollBatch = 128
	// acceptBackoff is how long accepting pauses after EMFILE and the
	// like: memcached's maxconns_handler retries every 10 ms too.
	acceptBackoff = 10 * time.Millisecond
	// shutdownCommandGrace bounds the graceful stop the shutdown command
	// starts; slower clients are then disconnected.
	shutdownCommandGrace = 5 * time.Second
	// maxIdleScan is the coarsest idle-timeout check interval (memcached
	// checks once a second).
	maxIdleScan = time.Second
	// minIdleScan keeps tiny idle timeouts from turning into busy scans.
	minIdleScan = 5 * time.Millisecond
)

// tooManyConns is memcached's reply to a connection over -c.
const tooManyConns = "ERROR Too many open connections\r\n"

// errWouldBlock is what the fd primitives return for EAGAIN.
var errWouldBlock = errors.New("emcache: operation would block")

func (cfg *ServerConfig) fill(c *Cache) error {
	if len(cfg.Addrs) == 0 && cfg.UnixSocket == "" {
		return errors.New("emcache: ServerConfig needs Addrs or UnixSocket")
	}
	for i, a := range cfg.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("emcache: ServerConfig.Addrs[%d] %q is not host:port: %w", i, a, err)
		}
	}
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"Workers", &cfg.Workers, defaultWorkers},
		{"MaxConns", &cfg.MaxConns, defaultMaxConns},
		{"ReservedFDs", &cfg.ReservedFDs, 0},
		{"WatcherBufSize", &cfg.WatcherBufSize, defaultWatcherBuf},
		{"ReqsPerEvent", &cfg.ReqsPerEvent, defaultReqsPerEvent},
		{"Backlog", &cfg.Backlog, defaultBacklog},
		{"MaxOutput", &cfg.MaxOutput, defaultMaxOutput},
		{"MaxItemSize", &cfg.MaxItemSize, c.MaxItemSize()},
	}
	for _, f := range ints {
		if *f.v < 0 {
			return fmt.Errorf("emcache: ServerConfig.%s must not be negative, got %d", f.name, *f.v)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if limit := c.MaxItemSize(); cfg.MaxItemSize > limit {
		return fmt.Errorf("emcache: ServerConfig.MaxItemSize %d exceeds the cache's maximum item size %d", cfg.MaxItemSize, limit)
	}
	if cfg.IdleTimeout < 0 {
		return fmt.Errorf("emcache: ServerConfig.IdleTimeout must not be negative, got %v", cfg.IdleTimeout)
	}
	if cfg.Verbosity < 0 {
		return fmt.Errorf("emcache: ServerConfig.Verbosity must not be negative, got %d", cfg.Verbosity)
	}
	if cfg.UnixSocketMode&^os.ModePerm != 0 {
		return fmt.Errorf("emcache: ServerConfig.UnixSocketMode %#o has bits beyond 0777", uint32(cfg.UnixSocketMode))
	}
	if cfg.UnixSocketMode == 0 {
		cfg.UnixSocketMode = defaultUnixSocketMode
	}
	if cfg.PrefixDelimiter == 0 {
		cfg.PrefixDelimiter = ':'
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg.fillAuth()
}

// fillAuth checks Protocol against the authentication settings, as
// memcached's start-up does, and settles it.
func (cfg *ServerConfig) fillAuth() error {
	switch cfg.Protocol {
	case "", "auto", "ascii", "binary":
	default:
		return fmt.Errorf("emcache: ServerConfig.Protocol %q is not auto, ascii or binary", cfg.Protocol)
	}
	switch {
	case cfg.SASL && cfg.ASCIIAuth:
		return errors.New("emcache: ServerConfig.SASL and ASCIIAuth exclude each other: SASL is binary-only, ASCIIAuth text-only")
	case cfg.SASL && cfg.Protocol != "" && cfg.Protocol != "binary":
		return fmt.Errorf("emcache: ServerConfig.SASL serves the binary protocol only, not Protocol %q", cfg.Protocol)
	case cfg.ASCIIAuth && cfg.Protocol != "" && cfg.Protocol != "ascii":
		return fmt.Errorf("emcache: ServerConfig.ASCIIAuth serves the text protocol only, not Protocol %q", cfg.Protocol)
	case (cfg.SASL || cfg.ASCIIAuth) && len(cfg.Credentials) == 0:
		return errors.New("emcache: ServerConfig.SASL and ASCIIAuth need Credentials")
	}
	for i, c := range cfg.Credentials {
		if c.User == "" {
			return fmt.Errorf("emcache: ServerConfig.Credentials[%d] has no User", i)
		}
	}
	cfg.Credentials = slices.Clone(cfg.Credentials)
	switch {
	case cfg.SASL:
		cfg.Protocol = "binary"
	case cfg.ASCIIAuth:
		cfg.Protocol = "ascii"
	case cfg.Protocol == "":
		cfg.Protocol = "auto"
	}
	return nil
}

// Server serves a [Cache] over the memcached protocols. Create it with
// [Cache.Serve]; stop it with [Server.Close] or [Server.Shutdown].
type Server struct {
	cache     *Cache
	cfg       ServerConfig // defaults filled
	started   time.Time
	verbosity atomic.Int32  // -v, changed at run time by the verbosity command
	metaCmds  atomic.Uint64 // cmd_meta: memcached 1.6.18 counts me commands
	crawler   crawlerState  // lru_crawler (admin.go)
	prefixes  prefixStats   // stats detail (admin.go)
	watch     watchHub      // watch connections (watch.go)
	watchDone chan struct{} // closed once the hub's writer has stopped
	automove  atomic.Int32  // slab_automove as last set; nothing to move
	log       *slog.Logger

	listeners []*listener
	acceptor  *poller // the listeners' poller (memcached's main_base); nil in the fallback
	workers   []*worker
	next      atomic.Uint32 // round-robin cursor (memcached's last_thread)
	open      atomic.Int64  // client connections, for MaxConns
	rejected  atomic.Uint64
	authStats authStats                // auth_cmds, auth_errors (auth.go)
	fault     atomic.Pointer[faultRun] // InjectFault's pending fault, nil when none (fault.go)

	mode       atomic.Int32  // modeRun, modeDrain or modeClose; only grows
	quit       chan struct{} // closed when accepting stops
	acceptOnce sync.Once
	acceptWG   sync.WaitGroup
	workerWG   sync.WaitGroup // workers, or connection goroutines in the fallback
	done       chan struct{}

	pollMu       sync.Mutex // orders wakePollers against closing the pollers
	pollsClosed  bool
	shutdownOnce sync.Once
	plat         serverPlat // state only the platform's loop file uses
}

const (
	modeRun   = iota
	modeDrain // finish pending replies, then close
	modeClose // close everything now
)

// listener is one listening socket.
type listener struct {
	ln   net.Listener
	fd   int    // the socket, polled by the acceptor; also shown by stats conns
	name string // "tcp:127.0.0.1:11211" or "unix:/path", as memcached prints it
	tcp  bool
}

// Serve starts serving c on cfg's addresses and returns once it listens.
// Connections are spread round-robin over cfg.Workers workers, each with
// its own OS thread and poller, as memcached's threads are.
//
// Serve adds Workers to GOMAXPROCS while the server runs (it takes them back
// once stopped): a worker keeps its P for a few milliseconds while it waits
// for more events (see the Linux poller's wait), so the rest of the program
// keeps the Ps it had; and a worker returning from its poller must find a P
// at once (under a CPU affinity mask of one core GOMAXPROCS is 1, and a
// worker would wait for the scheduler to take one from another, adding
// milliseconds to tail latency).
func (c *Cache) Serve(cfg ServerConfig) (*Server, error) {
	if c == nil {
		return nil, errors.New("emcache: Serve called on a nil *Cache")
	}
	cfg.Addrs = slices.Clone(cfg.Addrs)
	if err := cfg.fill(c); err != nil {
		return nil, err
	}
	s := &Server{
		cache:   c,
		cfg:     cfg,
		started: time.Now(),
		log:     cfg.Logger,
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.automove.Store(1) // memcached's default
	s.prefixes.delim = cfg.PrefixDelimiter
	s.crawler.disabled.Store(cfg.NoLRUCrawler)
	s.watch.init(cfg.WatcherBufSize)
	s.verbosity.Store(int32(cfg.Verbosity))
	if err := s.listen(); err != nil {
		s.closeListeners()
		return nil, err
	}
	if s.clientLimit() < 1 {
		s.closeListeners()
		return nil, fmt.Errorf("%w: %d leaves no room for clients beside %d listeners and %d reserved descriptors",
			ErrMaxConnsTooLow, cfg.MaxConns, len(s.listeners), cfg.ReservedFDs)
	}
	addProcs(cfg.Workers)
	s.workers = make([]*worker, cfg.Workers)
	for i := range s.workers {
		s.workers[i] = &worker{s: s, id: i}
	}
	s.watchDone = make(chan struct{})
	go func() {
		defer close(s.watchDone)
		s.watch.run()
	}()
	if err := s.start(); err != nil {
		addProcs(-cfg.Workers)
		s.closeListeners()
		s.watch.close()
		<-s.watchDone
		return nil, err
	}
	c.setEvictHook(s.logEvictionIfWatched)
	return s, nil
}

func (s *Server) listen() error {
	var lc net.ListenConfig
	for _, a := range s.cfg.Addrs {
		ln, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			return fmt.Errorf("emcache: listen on %q: %w", a, err)
		}
		ap := ln.Addr().(*net.TCPAddr).AddrPort()
		s.listeners = append(s.listeners, &listener{ln: ln, name: tcpName(ap), tcp: true})
	}
	if p := s.cfg.UnixSocket; p != "" {
		// memcached unlinks whatever socket is there: a previous instance
		// that died leaves its file behind and bind would fail.
		if fi, err := os.Lstat(p); err == nil {
			if fi.Mode()&os.ModeSocket == 0 {
				return fmt.Errorf("emcache: UnixSocket %q exists and is not a socket", p)
			}
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("emcache: remove stale UnixSocket: %w", err)
			}
		}
		ln, err := lc.Listen(context.Background(), "unix", p)
		if err != nil {
			return fmt.Errorf("emcache: listen on UnixSocket %q: %w", p, err)
		}
		s.listeners = append(s.listeners, &listener{ln: ln, name: "unix:" + p})
		if err := os.Chmod(p, s.cfg.UnixSocketMode); err != nil {
			return fmt.Errorf("emcache: chmod UnixSocket: %w", err)
		}
	}
	return nil
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.ln.Close()
	}
}

// tcpName formats an address as memcached's stats conns does.
func tcpName(ap netip.AddrPort) string {
	ip := ap.Addr().Unmap()
	port := strconv.Itoa(int(ap.Port()))
	if ip.Is4() {
		return "tcp:" + ip.String() + ":" + port
	}
	return "tcp6:[" + ip.String() + "]:" + port
}

// Addr returns the first listener's address: the first of Addrs, or the
// Unix socket when there are none.
func (s *Server) Addr() net.Addr { return s.listeners[0].ln.Addr() }

// Addrs returns every listener's address, in the order of Addrs, then the
// Unix socket's.
func (s *Server) Addrs() []net.Addr {
	addrs := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		addrs[i] = l.ln.Addr()
	}
	return addrs
}

// Close stops accepting, closes every connection without waiting for
// pending replies, and returns once all the server's goroutines and file
// descriptors are gone. It is safe to call more than once.
func (s *Server) Close() error {
	s.stopAccepting()
	s.setMode(modeClose)
	<-s.done
	return nil
}

// Shutdown stops accepting, lets every connection finish sending the
// replies it has pending, then closes it. If ctx ends first the remaining
// connections are closed as by [Server.Close] and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	s.setMode(modeDrain)
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Done is closed once the server has fully stopped, whether by Close,
// Shutdown or the shutdown command.
func (s *Server) Done() <-chan struct{} { return s.done }

// shutdownCommand runs the graceful stop the shutdown command asks for.
func (s *Server) shutdownCommand() {
	s.shutdownOnce.Do(func() {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), shutdownCommandGrace)
			defer cancel()
			s.Shutdown(ctx)
		}()
	})
}

func (s *Server) stopAccepting() {
	s.acceptOnce.Do(func() {
		close(s.quit)
		if s.acceptor != nil {
			// The acceptor must be gone before the listeners close: it
			// would accept on whatever socket reuses their fd numbers.
			s.acceptor.wake()
			s.acceptWG.Wait()
			s.acceptor.close()
			s.closeListeners()
		} else {
			s.closeListeners()
			s.acceptWG.Wait()
		}
		// Workers exit once the mode says so, which the caller sets next.
		go s.reap()
	})
}

// setMode moves the server to m unless it is already further along.
func (s *Server) setMode(m int32) {
	for {
		old := s.mode.Load()
		if old >= m {
			return
		}
		if s.mode.CompareAndSwap(old, m) {
			s.wakeWorkers()
			return
		}
	}
}

// procsMu serialises the GOMAXPROCS changes of servers starting and
// stopping at once.
var procsMu sync.Mutex

// addProcs changes GOMAXPROCS by n.
func addProcs(n int) {
	procsMu.Lock()
	defer procsMu.Unlock()
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0)+n, 1))
}

// reap waits for the workers, releases their pollers and watchers, and
// closes done.
func (s *Server) reap() {
	s.workerWG.Wait()
	s.watch.close()
	<-s.watchDone
	s.pollMu.Lock()
	s.pollsClosed = true
	for _, w := range s.workers {
		if w.p != nil {
			w.p.close()
		}
	}
	s.pollMu.Unlock()
	addProcs(-len(s.workers))
	close(s.done)
}

// ServerStats are the server's connection counters (the cache's own are
// in [Cache.Stats]).
type ServerStats struct {
	CurrConnections, TotalConnections, RejectedConnections, ConnYields, IdleKicks uint64
	BytesRead, BytesWritten                                                       uint64
	Threads, MaxConns                                                             int
	Workers                                                                       []WorkerStats // index = worker id
}

// WorkerStats are one worker's share of the connection counters; they show
// how evenly round-robin spreads connections.
type WorkerStats struct {
	CurrConnections, TotalConnections, ConnYields uint64
}

// Stats sums the per-worker counters, which only their worker writes.
func (s *Server) Stats() ServerStats {
	st := ServerStats{
		RejectedConnections: s.rejected.Load(),
		Threads:             len(s.workers),
		MaxConns:            s.cfg.MaxConns,
		Workers:             make([]WorkerStats, len(s.workers)),
	}
	for i, w := range s.workers {
		ws := WorkerStats{
			CurrConnections:  w.st.curr.Load(),
			TotalConnections: w.st.total.Load(),
			ConnYields:       w.st.yields.Load(),
		}
		st.Workers[i] = ws
		st.CurrConnections += ws.CurrConnections
		st.TotalConnections += ws.TotalConnections
		st.ConnYields += ws.ConnYields
		st.IdleKicks += w.st.idleKicks.Load()
		st.BytesRead += w.st.bytesRead.Load()
		st.BytesWritten += w.st.bytesWritten.Load()
	}
	return st
}

// connInfo describes one open connection or listener for stats conns.
type connInfo struct {
	fd         int
	addr       string        // peer ("tcp:1.2.3.4:5678"); the listener's own address for listeners
	listenAddr string        // the listener a connection came in on; empty for listeners
	state      string        // memcached's state name, e.g. conn_waiting
	idle       time.Duration // since the last request (since start for listeners)
}

// connInfos snapshots every listener and connection, ordered by fd. Each
// worker's table is read under its lock and each connection's state and
// activity time with one atomic load, so the snapshot is race-free, if
// not instantaneous across workers.
func (s *Server) connInfos() []connInfo {
	now := s.clock()
	var infos []connInfo
	for _, l := range s.listeners {
		infos = append(infos, connInfo{fd: l.fd, addr: l.name, state: "conn_listening", idle: time.Duration(now)})
	}
	for _, w := range s.workers {
		w.mu.Lock()
		for id, c := range w.byFd {
			if c == nil {
				continue
			}
			meta := c.meta.Load()
			addr := c.l.name
			if c.l.tcp {
				addr = tcpName(c.peer)
			}
			infos = append(infos, connInfo{
				fd:         id,
				addr:       addr,
				listenAddr: c.l.name,
				state:      stateNames[meta&stateMask],
				idle:       time.Duration(max(0, now-int64(meta>>stateBits))),
			})
		}
		w.mu.Unlock()
	}
	slices.SortFunc(infos, func(a, b connInfo) int { return cmp.Compare(a.fd, b.fd) })
	return infos
}

// clock is the server's monotonic time in nanoseconds since start.
func (s *Server) clock() int64 { return int64(time.Since(s.started)) }

// Connection states as stats conns names them (memcached's state_text).
const (
	stateWaiting = iota
	stateParseCmd
	stateRead
	stateMwrite
	stateClosing
	stateNread
	stateSwallow
	stateBits = 4
	stateMask = 1<<stateBits - 1
)

var stateNames = [stateMask + 1]string{
	stateWaiting:  "conn_waiting",
	stateParseCmd: "conn_parse_cmd",
	stateRead:     "conn_read",
	stateMwrite:   "conn_mwrite",
	stateClosing:  "conn_closing",
	stateNread:    "conn_nread",
	stateSwallow:  "conn_swallow",
}

// interest is what a connection waits for in its poller.
type interest uint8

const (
	intRead interest = 1 << iota
	intWrite
)

// pollEvent is what a poller reports for one fd.
type pollEvent uint8

const (
	evRead pollEvent = 1 << iota // readable, or hung up / failed (a read will say)
	evWrite
	evWake // the worker's notify fd
)

// queuedConn is an accepted connection on its way to a worker (memcached's
// CQ_ITEM).
type queuedConn struct {
	fd   int
	peer netip.AddrPort
	l    *listener
}

// worker owns a set of connections and the poller they wait in. Only its
// goroutine touches its fields, except those noted.
type worker struct {
	s  *Server
	id int
	p  *poller
	q  connQueue // listener -> worker

	// mu guards byFd for connInfos; the worker, its only writer, reads
	// byFd without it.
	mu     sync.Mutex
	byFd   []*conn
	nconns int

	rbuf     []byte   // shared read buffer
	obuf     []byte   // shared output buffer for connections with nothing pending
	free     [][]byte // spare readBufSize buffers for partial input / pending output
	big      [][]byte // spare larger buffers, maxBigPool bytes at most
	bigBytes int      // total capacity held in big
	yield    []*conn  // connections that hit ReqsPerEvent, served next iteration
	yield2   []*conn  // the other yield list, swapped to avoid allocation
	popped   []queuedConn
	now      int64 // s.clock() after the last wait
	nextScan int64 // next idle-timeout check
	epoch    uint64
	draining bool

	st workerStats
	_  [64]byte // keeps another worker's hot fields off st's cache line
}

// workerStats are written by their worker only; Stats reads them.
type workerStats struct {
	curr, total, yields, idleKicks, bytesRead, bytesWritten atomic.Uint64
}

// conn is one client connection, owned by one worker.
type conn struct {
	plat  connPlat // platform extras; first, as it may be empty
	proto protoConn
	fd    int // -1 once closed
	in    []byte
	out   []byte // unsent replies; nil when everything is sent
	l     *listener
	peer  netip.AddrPort
	// meta packs the last activity time (s.clock) and the stats conns
	// state, so snapshots read both with one atomic load.
	meta       atomic.Uint64
	lastActive int64
	epoch      uint64 // the worker epoch it was last served in
	interest   interest
	closing    bool   // close once out is sent
	closeWhy   string // conn_close's reason for watchers; "" is normal
	needMore   bool   // in holds only an incomplete request
	inYield    bool
}

func (c *conn) setMeta(t int64, state uint64) {
	c.meta.Store(uint64(t)<<stateBits | state)
}

// startReactor creates the pollers, then starts the workers and listeners.
func (s *Server) startReactor() error {
	for i, w := range s.workers {
		p, err := newPoller()
		if err != nil {
			for _, w := range s.workers[:i] {
				w.p.close()
			}
			return fmt.Errorf("emcache: create poller: %w", err)
		}
		w.p = p
		w.rbuf = make([]byte, readBufSize)
		w.obuf = make([]byte, 0, readBufSize)
	}
	fail := func(err error) error {
		for _, w := range s.workers {
			w.p.close()
		}
		if s.acceptor != nil {
			s.acceptor.close()
		}
		return err
	}
	p, err := newPoller()
	if err != nil {
		return fail(fmt.Errorf("emcache: create poller: %w", err))
	}
	s.acceptor = p
	for _, l := range s.listeners {
		rc, err := l.ln.(syscall.Conn).SyscallConn()
		if err == nil {
			l.fd, err = setBacklog(rc, s.cfg.Backlog)
		}
		if err == nil {
			err = p.add(l.fd)
		}
		if err != nil {
			return fail(fmt.Errorf("emcache: set up listener %s: %w", l.name, err))
		}
	}
	s.workerWG.Add(len(s.workers))
	for _, w := range s.workers {
		go w.run()
	}
	s.acceptWG.Add(1)
	go s.acceptLoop()
	return nil
}

// wakePollers wakes every worker, unless they are gone.
func (s *Server) wakePollers() {
	s.pollMu.Lock()
	defer s.pollMu.Unlock()
	if s.pollsClosed {
		return
	}
	for _, w := range s.workers {
		w.p.wake()
	}
}

// acceptLoop is memcached's main thread: it waits on every listening
// socket with its own poller and hands what it accepts to the workers.
// (The net package keeps the sockets in the runtime's poller too, where
// no goroutine ever waits on them.)
func (s *Server) acceptLoop() {
	defer s.acceptWG.Done()
	p := s.acceptor
	// ready holds the listeners to accept on. At start and while accept
	// fails that is all of them, without waiting for readiness: for
	// connections that came before the poller watched the sockets, and
	// because a socket is not always reported readable again for
	// connections that were pending when accept failed (seen on Linux 6.18).
	ready := slices.Clone(s.listeners)
	failing := false // in a streak of accept failures; logged once
	for {
		ok := true
		for _, l := range ready {
			if err := s.acceptAll(l); err != nil {
				// Out of fds (EMFILE/ENFILE) or buffers: stop accepting
				// briefly, as memcached's accept_new_conns(false) does;
				// established connections keep being served meanwhile.
				ok = false
				if !failing {
					failing = true
					s.log.Error("emcache: accept failed; retrying every "+acceptBackoff.String(), "listener", l.name, "err", err)
					s.setListening(false)
				}
				break
			}
		}
		if ok && failing {
			failing = false
			s.log.Info("emcache: accepting again")
			s.setListening(true)
		}
		ready = ready[:0]
		timeout := -1
		if failing {
			timeout = int(acceptBackoff / time.Millisecond)
			ready = append(ready, s.listeners...)
		}
		n, err := p.wait(timeout)
		select {
		case <-s.quit:
			return
		default:
		}
		if err != nil {
			s.log.Error("emcache: listener poller failed; no longer accepting", "err", err)
			return
		}
		for i := range n {
			fd, ev := p.event(i)
			if ev == evWake {
				p.drainWake()
				continue
			}
			for _, l := range s.listeners {
				if l.fd == fd && !failing {
					ready = append(ready, l)
				}
			}
		}
	}
}

// acceptAll accepts until no connection is pending.
func (s *Server) acceptAll(l *listener) error {
	for {
		fd, peer, err := acceptFd(l.fd)
		if err == errWouldBlock {
			return nil
		}
		if err != nil {
			return err
		}
		s.dispatch(l, fd, peer)
	}
}

// setListening adds the listeners to the acceptor or removes them, so a
// pending connection does not wake it while paused; false if that failed.
func (s *Server) setListening(on bool) bool {
	for _, l := range s.listeners {
		var err error
		if on {
			err = s.acceptor.add(l.fd)
		} else {
			err = s.acceptor.del(l.fd)
		}
		if err != nil && on {
			s.log.Error("emcache: listener poller", "listener", l.name, "err", err)
			return false
		}
	}
	return true
}

// clientLimit is how many client connections MaxConns leaves room for.
func (s *Server) clientLimit() int {
	if s.cfg.ReservedFDs == 0 {
		return s.cfg.MaxConns
	}
	return s.cfg.MaxConns - len(s.listeners) - s.cfg.ReservedFDs - 1
}

// dispatch hands an accepted fd to the next worker (dispatch_conn_new).
func (s *Server) dispatch(l *listener, fd int, peer netip.AddrPort) {
	if s.open.Add(1) > int64(s.clientLimit()) {
		s.open.Add(-1)
		s.rejected.Add(1) // counted before the client can see the close
		writeFd(fd, []byte(tooManyConns))
		closeFd(fd)
		return
	}
	if l.tcp {
		setNoDelay(fd)
	}
	w := s.workers[(s.next.Add(1)-1)%uint32(len(s.workers))]
	// One wake per empty-to-non-empty transition: the worker drains its
	// notify fd before popping, so a push after the pop wakes it again.
	if w.q.push(queuedConn{fd: fd, peer: peer, l: l}) {
		w.p.wake()
	}
}

// run is the worker's event loop (memcached's worker_libevent).
func (w *worker) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer w.s.workerWG.Done()
	s := w.s
	for {
		n, err := w.p.wait(w.timeout())
		w.now = s.clock()
		w.epoch++
		if err != nil {
			s.log.Error("emcache: poller failed; closing the server", "worker", w.id, "err", err)
			w.closeAll()
			go s.Close()
			return
		}
		for i := range n {
			fd, ev := w.p.event(i)
			if ev == evWake {
				w.p.drainWake()
				w.adopt()
				continue
			}
			if fd < len(w.byFd) {
				if c := w.byFd[fd]; c != nil {
					w.serve(c)
				}
			}
		}
		w.serveYielded()
		if n > 0 && len(s.workers) > 1 {
			// Hand the core to another runnable worker between batches, as
			// memcached's threads effectively do: without it, workers
			// sharing a core run whole scheduler slices and a request on
			// the waiting one sees a ~4 ms p99 (set50 pinned to one core:
			// 4.2 ms → 0.66 ms, throughput unchanged).
			yieldCPU()
		}
		if m := s.mode.Load(); m != modeRun {
			if m == modeClose {
				w.closeAll()
				return
			}
			if !w.draining {
				w.startDrain()
			}
			if w.nconns == 0 {
				w.closeQueued()
				return
			}
		}
		if s.cfg.IdleTimeout > 0 && w.now >= w.nextScan {
			w.kickIdle()
		}
	}
}

// timeout is the next wait's timeout in milliseconds: none while yielded
// connections wait for their turn, else until the next idle check.
func (w *worker) timeout() int {
	if len(w.yield) > 0 {
		return 0
	}
	if w.s.cfg.IdleTimeout <= 0 {
		return -1
	}
	d := w.nextScan - w.s.clock()
	if d <= 0 {
		return 0
	}
	return int((d + int64(time.Millisecond) - 1) / int64(time.Millisecond))
}

// adopt registers the connections the listener queued (thread_libevent_process).
func (w *worker) adopt() {
	w.popped = w.q.popAll(w.popped[:0])
	for i, q := range w.popped {
		w.popped[i] = queuedConn{}
		if w.s.mode.Load() != modeRun {
			closeFd(q.fd)
			w.s.open.Add(-1)
			continue
		}
		if err := w.p.add(q.fd); err != nil {
			w.s.log.Error("emcache: register connection", "worker", w.id, "err", err)
			closeFd(q.fd)
			w.s.open.Add(-1)
			continue
		}
		c := &conn{fd: q.fd, l: q.l, peer: q.peer, interest: intRead, lastActive: w.now}
		c.proto.fd = q.fd
		c.setMeta(w.now, stateWaiting)
		w.mu.Lock()
		if q.fd >= len(w.byFd) {
			n := max(q.fd+1, 2*len(w.byFd))
			w.byFd = slices.Grow(w.byFd, n-len(w.byFd))[:n]
		}
		w.byFd[q.fd] = c
		w.mu.Unlock()
		w.nconns++
		w.st.curr.Add(1)
		w.st.total.Add(1)
		if w.s.watch.wants(logConnEvents) {
			w.s.logConn(q.fd, q.peer, q.l.tcp, "")
		}
		if w.s.verbosity.Load() >= 2 {
			w.s.log.Info("new client connection", "fd", q.fd, "addr", q.l.name, "worker", w.id)
		}
	}
}

// closeQueued closes connections queued but never adopted.
func (w *worker) closeQueued() {
	w.popped = w.q.popAll(w.popped[:0])
	for i, q := range w.popped {
		w.popped[i] = queuedConn{}
		closeFd(q.fd)
		w.s.open.Add(-1)
	}
}

func (w *worker) closeAll() {
	for _, c := range w.byFd {
		if c != nil {
			c.closeWhy = closeShutdown
			w.closeConn(c)
		}
	}
	w.closeQueued()
}

// startDrain begins a graceful stop: no more requests are read; a
// connection closes once its pending replies are sent.
func (w *worker) startDrain() {
	w.draining = true
	for _, c := range w.byFd {
		if c == nil {
			continue
		}
		c.closing = true
		c.closeWhy = closeShutdown
		if c.out == nil {
			w.closeConn(c)
		} else {
			w.setInterest(c, intWrite)
		}
	}
}

func (w *worker) kickIdle() {
	idle := int64(w.s.cfg.IdleTimeout)
	for _, c := range w.byFd {
		if c != nil && w.now-c.lastActive > idle {
			w.st.idleKicks.Add(1) // first: the client may look as soon as it is closed
			c.closeWhy = closeIdleTimeout
			w.closeConn(c)
		}
	}
	w.nextScan = w.now + int64(min(max(w.s.cfg.IdleTimeout/4, minIdleScan), maxIdleScan))
}

// handToWatchers moves c, whose watch command was answered in out, from
// this worker to the server's watchers: the worker no longer reads it or
// polls it, and the watchers' writer sends out (so that the client sees OK
// only once lines are being logged for it), then its log lines, until it
// goes away or the server stops.
func (w *worker) handToWatchers(c *conn, out []byte) {
	s := w.s
	if err := w.p.del(c.fd); err != nil {
		w.closeConn(c)
		return
	}
	fd := c.fd
	release := func() {
		w.st.curr.Add(^uint64(0))
		s.open.Add(-1)
	}
	if !s.watch.add(fd, c.proto.watchKinds, out, release) {
		// The server is stopping, or other watchers took the last places
		// since the command was answered.
		w.closeConn(c)
		return
	}
	w.mu.Lock()
	w.byFd[fd] = nil
	w.mu.Unlock()
	c.fd = -1
	w.putBuf(c.in)
	w.putBuf(c.out)
	c.in, c.out = nil, nil
	w.nconns--
}

func (w *worker) closeConn(c *conn) {
	if c.fd < 0 {
		return
	}
	fd := c.fd
	w.mu.Lock()
	w.byFd[fd] = nil
	w.mu.Unlock()
	closeFd(fd)
	if w.s.watch.wants(logConnEvents) {
		w.s.logConn(fd, c.peer, c.l.tcp, cmp.Or(c.closeWhy, closeNormal))
	}
	c.fd = -1
	w.putBuf(c.in)
	w.putBuf(c.out)
	c.in, c.out = nil, nil
	w.nconns--
	w.st.curr.Add(^uint64(0))
	w.s.open.Add(-1)
	if w.s.verbosity.Load() >= 2 {
		w.s.log.Info("connection closed", "fd", fd, "worker", w.id)
	}
}

func (w *worker) serveYielded() {
	if len(w.yield) == 0 {
		return
	}
	list := w.yield
	w.yield = w.yield2[:0]
	for _, c := range list {
		switch {
		case c.fd < 0:
			c.inYield = false
		case c.epoch == w.epoch:
			// Served by an event in this iteration already: next one.
			w.yield = append(w.yield, c)
		default:
			c.inYield = false
			w.serve(c)
		}
	}
	clear(list)
	w.yield2 = list[:0]
}

// serve makes all the progress it can on c, whatever woke it: it sends
// pending replies, then reads and executes up to ReqsPerEvent requests,
// then sends their replies with one write.
func (w *worker) serve(c *conn) {
	if c.epoch == w.epoch {
		return // kqueue reports read and write separately
	}
	c.epoch = w.epoch
	defer func() {
		if r := recover(); r != nil {
			w.s.log.Error("emcache: panic serving a connection; closing it",
				"fd", c.fd, "worker", w.id, "panic", r, "stack", string(debug.Stack()))
			w.closeConn(c)
		}
	}()
	s := w.s
	maxOut := s.cfg.MaxOutput
	out := w.outBuf(c)
	budget := s.cfg.ReqsPerEvent
	drained := false  // a short read emptied the socket; a level-triggered poller reports new data
	watching := false // the last request was watch: the connection leaves this worker
	blocked := false  // the socket is full and out is past MaxOutput
	for budget > 0 && !c.closing {
		if len(out) > maxOut {
			if err := w.flush(c, out); err != nil {
				w.closeConn(c)
				return
			}
			out = w.outBuf(c)
			if len(out) > maxOut {
				blocked = true // backpressure: read no more until the client reads
				break
			}
		}
		var data []byte
		shared := false
		if len(c.in) > 0 && !c.needMore || c.proto.producing() {
			data = c.in
		} else {
			if drained {
				break
			}
			var buf []byte
			if len(c.in) > 0 {
				if !w.growIn(c) {
					s.log.Error("emcache: request exceeds the input buffer; closing", "fd", c.fd)
					w.closeConn(c)
					return
				}
				buf = c.in[len(c.in):cap(c.in)]
			} else {
				buf, shared = w.rbuf, true
			}
			n, err := readFd(c.fd, buf)
			if err == errWouldBlock {
				break
			}
			if err != nil {
				c.closeWhy = closeError
				w.closeConn(c)
				return
			}
			if n == 0 {
				// EOF: answer what came before it, then close; a partial
				// request is dropped.
				c.closing = true
				break
			}
			drained = n < len(buf)
			w.st.bytesRead.Add(uint64(n))
			c.lastActive = w.now
			c.setMeta(w.now, stateParseCmd)
			if shared {
				data = buf[:n]
			} else {
				c.in = c.in[:len(c.in)+n]
				data = c.in
			}
		}
		n, newOut, reqs, act := s.handle(&c.proto, data, out, budget)
		out = newOut
		budget -= reqs
		rest := data[n:]
		if shared {
			if len(rest) > 0 {
				c.in = append(w.takeBuf(max(len(rest), c.proto.pending())), rest...)
			}
		} else if k := copy(c.in, rest); k > 0 {
			c.in = c.in[:k]
		} else {
			w.putBuf(c.in)
			c.in = nil
		}
		c.needMore = len(c.in) > 0 && budget > 0
		if act == actWatch {
			watching = true
			break
		}
		if act != actNone {
			c.closing = true
			if act == actClose {
				c.closeWhy = closeError
			}
			if act == actShutdown {
				s.shutdownCommand()
			}
		}
	}
	if watching {
		w.handToWatchers(c, out)
		return
	}
	if !blocked {
		if err := w.flush(c, out); err != nil {
			c.closeWhy = closeError
			w.closeConn(c)
			return
		}
	}
	if c.closing && c.out == nil {
		w.closeConn(c)
		return
	}
	if budget <= 0 && !c.closing {
		w.st.yields.Add(1)
		if !c.inYield {
			c.inYield = true
			w.yield = append(w.yield, c)
		}
	}
	want := interest(0)
	if !c.closing && len(c.out) <= maxOut {
		want |= intRead
	}
	if c.out != nil {
		want |= intWrite
	}
	if !w.setInterest(c, want) {
		return
	}
	state := c.proto.connState(c.in != nil)
	switch {
	case c.closing:
		state = stateClosing
	case c.out != nil:
		state = stateMwrite
	}
	c.setMeta(c.lastActive, state)
}

// setInterest updates c's poller registration if it changed; false means
// it failed and c is closed.
func (w *worker) setInterest(c *conn, want interest) bool {
	if want == c.interest {
		return true
	}
	if err := w.p.mod(c.fd, want); err != nil {
		w.closeConn(c)
		return false
	}
	c.interest = want
	return true
}

// outBuf returns the buffer c's replies are appended to: its pending
// output, or the worker's shared buffer when nothing is pending.
func (w *worker) outBuf(c *conn) []byte {
	if c.out != nil {
		return c.out
	}
	return w.obuf[:0]
}

// flush writes out (from outBuf, replies appended) until the socket is
// full and keeps the rest as c's pending output.
func (w *worker) flush(c *conn, out []byte) error {
	var err error
	sent := 0
	for sent < len(out) {
		n, e := writeFd(c.fd, out[sent:])
		if e != nil {
			if e != errWouldBlock {
				err = e
			}
			break
		}
		sent += n
	}
	if sent > 0 {
		w.st.bytesWritten.Add(uint64(sent))
		if c.out != nil {
			c.lastActive = w.now // a client draining a backlog is not idle
		}
	}
	rest := out[sent:]
	if c.out == nil {
		if len(rest) > 0 {
			c.out = append(w.takeBuf(len(rest)), rest...)
		}
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
	if k := copy(out, rest); k > 0 {
		c.out = out[:k]
	} else {
		w.putBuf(out)
		c.out = nil
	}
	return err
}

// growIn makes room to read more of an incomplete request into c.in,
// up to MaxItemSize+lineSlack; false when it is full at that size.
func (w *worker) growIn(c *conn) bool {
	spare := cap(c.in) - len(c.in)
	need := c.proto.pending()
	if spare >= cap(c.in)/4 || (need > 0 && need <= cap(c.in)) {
		return spare > 0
	}
	limit := w.s.cfg.MaxItemSize + lineSlack
	if cap(c.in) >= limit {
		return spare > 0
	}
	nb := w.takeBuf(min(max(2*cap(c.in), need), limit))[:len(c.in)]
	copy(nb, c.in)
	w.putBuf(c.in)
	c.in = nb
	return true
}

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
		return b
	}
	return make([]byte, 0, readBufSize)
}

func (w *worker) putBuf(b []byte) {
	switch {
	case cap(b) == readBufSize && len(w.free) < maxFreeBufs:
		w.free = append(w.free, b[:0])
	case cap(b) > readBufSize && w.bigBytes+cap(b) <= maxBigPool:
		w.big = append(w.big, b[:0])
		w.bigBytes += cap(b)
	}
}
