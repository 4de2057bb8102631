package emcache

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the platform-independent part of the server: its
// configuration and its lifecycle (listening, stopping, stats). The
// reactor that serves the connections is in reactor.go.

// ServerConfig configures [Cache.Serve]. Zero values pick memcached's
// defaults; the flag each field corresponds to is in parentheses.
type ServerConfig struct {
	// Addrs are TCP listen addresses, "host:port"; port 0 lets the kernel
	// choose (see [Server.Addr]). An empty host listens on every interface.
	Addrs []string
	// UDPAddrs are UDP addresses to serve, "host:port" (-U), none by
	// default, as memcached since 1.5.6: a small datagram with a spoofed
	// source can make a large reply to its victim. Port 0 lets the kernel
	// choose (see [Server.UDPAddrs]). Every datagram starts with memcached's
	// 8-byte frame header; a request must fit in one datagram and each
	// request's reply comes back as one message of datagrams of at most
	// 1400 bytes. The workers serve the sockets (one each, as memcached's
	// threads do; a single worker per socket when there are several), and
	// each such descriptor counts as a connection in the stats, as in
	// memcached. SASL and ASCIIAuth exclude UDP, which has no session to
	// authenticate.
	UDPAddrs []string
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
	// file descriptors: the listeners, the workers' UDP descriptors and
	// these reserved descriptors (memcached sets aside 5 per worker
	// thread, and emcached passes that) count against it too, and one
	// more, so that clients get MaxConns - listeners - UDP descriptors -
	// ReservedFDs - 1 connections. Shown as reserved_fds; 0,
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
	// DisableFlush disables flush_all and flush_prefix (-F).
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
	// MetricsAddr, "host:port", is where to serve [Server.MetricsHandler]
	// at /metrics over HTTP (-o metrics_addr), on goroutines of its own;
	// port 0 lets the kernel choose (see [Server.MetricsAddr]). Empty, the
	// default, serves none.
	MetricsAddr string
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
	// HotKeysSample samples one keyed request in HotKeysSample for
	// [Server.HotKeys] and `stats hotkeys` (-o hotkeys_sample); default
	// 100, 1%. A negative value turns hot keys and big keys off, and each
	// request then pays one branch for them.
	HotKeysSample int
	// HotKeysK is how many keys [Server.HotKeys] and [Server.BigKeys]
	// report (-o hotkeys_k); default 10, at most 1000.
	HotKeysK int
	// HotKeysWindow is the time hot keys are counted over before their
	// rates are reported (-o hotkeys_window); default 10 s.
	HotKeysWindow time.Duration

	// TLS, when set, serves every address of Addrs over TLS with this
	// configuration (-Z): certificates, client authentication (mTLS with
	// ClientAuth and ClientCAs), versions, suites and session tickets are
	// its. Serve uses a clone, so later changes to it have no effect. The
	// Unix socket and PlainAddrs stay plaintext.
	TLS *tls.Config
	// TLSCertFile and TLSKeyFile are PEM files of the server's certificate
	// chain and key (-o ssl_chain_cert, ssl_key; the key may also be DER,
	// or be in the chain's file when TLSKeyFile is empty), and TLSCAFile
	// one of the CAs client certificates are checked against
	// (-o ssl_ca_cert). Serve loads them into TLS's Certificates and
	// ClientCAs (with a default TLS when it is nil), and the
	// refresh_certs command loads them again: connections made after it
	// get the new certificate, those before it keep theirs.
	TLSCertFile, TLSKeyFile, TLSCAFile string
	// TLSCiphers, an OpenSSL cipher list of suite names such as
	// "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
	// (-o ssl_ciphers), sets TLS's CipherSuites, for configurations
	// written for memcached; names crypto/tls cannot map (OpenSSL's
	// keywords, suites it lacks) are an error.
	TLSCiphers string
	// TLSWriteBuffer is how much of a TLS connection's replies is
	// encrypted at once, at most (-o ssl_wbuf_size); default 16 KiB, one
	// full TLS record.
	TLSWriteBuffer int
	// PlainAddrs are TCP listen addresses served without TLS beside the
	// TLS ones (-l notls:host:port); only with TLS.
	PlainAddrs []string
}

const (
	defaultWorkers        = 4
	defaultMaxConns       = 1024
	defaultReqsPerEvent   = 20
	defaultBacklog        = 1024
	defaultUnixSocketMode = 0o700
	defaultMaxOutput      = 1 << 20
	// defaultTLSWriteBuffer is memcached's ssl_wbuf_size: one TLS
	// record's worth of plaintext.
	defaultTLSWriteBuffer = 16 << 10

	// shutdownCommandGrace bounds the graceful stop the shutdown command
	// starts; slower clients are then disconnected.
	shutdownCommandGrace = 5 * time.Second
)

func (cfg *ServerConfig) fill(c *Cache) error {
	if len(cfg.Addrs) == 0 && len(cfg.PlainAddrs) == 0 && cfg.UnixSocket == "" && len(cfg.UDPAddrs) == 0 {
		return errors.New("emcache: ServerConfig needs Addrs, PlainAddrs, UnixSocket or UDPAddrs")
	}
	for i, a := range cfg.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("emcache: ServerConfig.Addrs[%d] %q is not host:port: %w", i, a, err)
		}
	}
	for i, a := range cfg.UDPAddrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("emcache: ServerConfig.UDPAddrs[%d] %q is not host:port: %w", i, a, err)
		}
	}
	for i, a := range cfg.PlainAddrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("emcache: ServerConfig.PlainAddrs[%d] %q is not host:port: %w", i, a, err)
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
		{"TLSWriteBuffer", &cfg.TLSWriteBuffer, defaultTLSWriteBuffer},
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
	case (cfg.SASL || cfg.ASCIIAuth) && len(cfg.UDPAddrs) > 0:
		return errors.New("emcache: ServerConfig.UDPAddrs exclude SASL and ASCIIAuth: a datagram has no session to authenticate")
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
	lru       lruTuning     // lru tune (admin.go)
	prefixes  prefixStats   // stats detail (admin.go)
	hot       hotKeys       // stats hotkeys and bigkeys (hotkeys.go)
	tls       tlsServer     // handshakes, certificates and their stats (tls.go)
	watch     watchHub      // watch connections (watch.go)
	watchDone chan struct{} // closed once the hub's writer has stopped
	automove  atomic.Int32  // slab_automove as last set; nothing to move
	log       *slog.Logger
	metrics   *metricsServer // the MetricsAddr endpoint; nil without one (metrics.go)
	pooled    []pooledBytes  // per worker, by id: bytes its buffer pools hold (bufpool.go)

	listeners []*listener
	udp       []*udpSocket // the UDPAddrs sockets (udp.go)
	acceptor  *poller      // the listeners' poller (memcached's main_base); nil in the fallback
	workers   []*worker
	next      atomic.Uint32 // round-robin cursor (memcached's last_thread)
	open      atomic.Int64  // client connections, for MaxConns
	rejected  atomic.Uint64
	authStats authStats                // auth_cmds, auth_errors (auth.go)
	fault     atomic.Pointer[faultRun] // InjectFault's pending fault, nil when none (fault.go)

	phase      atomic.Int32  // phaseRun, phaseDrain or phaseClose; only grows
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

// The server's phases, in the order setPhase moves through them.
const (
	phaseRun   = iota
	phaseDrain // finish pending replies, then close
	phaseClose // close everything now
)

// listener is one listening socket.
type listener struct {
	ln   net.Listener
	fd   int    // the socket, polled by the acceptor; also shown by stats conns
	name string // "tcp:127.0.0.1:11211" or "unix:/path", as memcached prints it
	tcp  bool
	tls  bool // its connections are handshaken first (tls.go)
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
	if err := c.usable(); err != nil {
		return nil, err
	}
	cfg.Addrs = slices.Clone(cfg.Addrs)
	cfg.UDPAddrs = slices.Clone(cfg.UDPAddrs)
	cfg.PlainAddrs = slices.Clone(cfg.PlainAddrs)
	if err := cfg.fill(c); err != nil {
		return nil, err
	}
	if err := checkMetricsAddr(cfg.MetricsAddr); err != nil {
		return nil, err
	}
	if err := cfg.fillHotKeys(); err != nil {
		return nil, err
	}
	tlsBase, keyFormat, err := cfg.loadTLS()
	if err != nil {
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
	s.hot.init(&cfg)
	s.crawler.disabled.Store(cfg.NoLRUCrawler)
	s.crawler.sleep.Store(defaultCrawlerSleep)
	s.lru.set(defaultHotLRUPct, defaultWarmLRUPct, defaultHotFactor, defaultWarmFactor)
	s.watch.init(cfg.WatcherBufSize)
	s.verbosity.Store(int32(cfg.Verbosity))
	s.tls.init(s, tlsBase, keyFormat)
	if err := s.listen(); err != nil {
		s.closeListeners()
		return nil, err
	}
	if err := s.listenMetrics(); err != nil {
		s.closeListeners()
		return nil, err
	}
	if s.clientLimit() < 1 {
		s.closeListeners()
		s.closeMetrics()
		return nil, fmt.Errorf("%w: %d leaves no room for clients beside %d listeners, %d UDP descriptors and %d reserved descriptors",
			ErrMaxConnsTooLow, cfg.MaxConns, len(s.listeners), s.udpDescriptors(), cfg.ReservedFDs)
	}
	addProcs(cfg.Workers)
	s.workers = make([]*worker, cfg.Workers)
	s.pooled = make([]pooledBytes, cfg.Workers)
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
		s.closeMetrics()
		s.watch.close()
		<-s.watchDone
		return nil, err
	}
	s.serveMetrics()
	c.setEvictHook(s.logEvictionIfWatched)
	return s, nil
}

func (s *Server) listen() error {
	var lc net.ListenConfig
	for i, a := range slices.Concat(s.cfg.Addrs, s.cfg.PlainAddrs) {
		ln, err := lc.Listen(context.Background(), "tcp"+ipv4Only(a), a)
		if err != nil {
			return fmt.Errorf("emcache: listen on %q: %w", a, err)
		}
		ap := ln.Addr().(*net.TCPAddr).AddrPort()
		tls := s.cfg.TLS != nil && i < len(s.cfg.Addrs)
		s.listeners = append(s.listeners, &listener{ln: ln, name: tcpName(ap), tcp: true, tls: tls})
	}
	if err := s.listenUDP(&lc); err != nil {
		return err
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
	// The workers' descriptors for these sockets keep them open until the
	// workers close them.
	for _, u := range s.udp {
		u.pc.Close()
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
// Unix socket when there are none, or the first UDP socket's when the
// server serves UDP only.
func (s *Server) Addr() net.Addr {
	if len(s.listeners) == 0 {
		return s.udp[0].pc.LocalAddr()
	}
	return s.listeners[0].ln.Addr()
}

// Addrs returns every listener's address, in the order of Addrs, then
// PlainAddrs, then the Unix socket's.
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
	s.setPhase(phaseClose)
	<-s.done
	return nil
}

// Shutdown stops accepting, lets every connection finish sending the
// replies it has pending, then closes it. If ctx ends first the remaining
// connections are closed as by [Server.Close] and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	s.setPhase(phaseDrain)
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
			// Before the workers may stop: a handshake that completes
			// hands its connection to one.
			s.tls.stop()
		} else {
			s.closeListeners()
			s.acceptWG.Wait()
		}
		// Workers exit once the phase says so, which the caller sets next.
		go s.reap()
	})
}

// setPhase moves the server to phase p unless it is already further along.
func (s *Server) setPhase(p int32) {
	for {
		old := s.phase.Load()
		if old >= p {
			return
		}
		if s.phase.CompareAndSwap(old, p) {
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
	s.stopMetrics()
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
// how evenly round-robin spreads connections and their load.
type WorkerStats struct {
	CurrConnections, TotalConnections, ConnYields uint64
	// Requests counts the requests whose replies the worker has sent (or
	// that asked for none), as CommandLatencies times them.
	Requests uint64
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
			Requests:         w.requests(),
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
	udp        bool          // a worker's descriptor for a UDP socket
	addr       string        // peer ("tcp:1.2.3.4:5678"); the listener's own address for listeners and UDP sockets
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
			act := c.activity.Load()
			if c.udp != nil {
				infos = append(infos, c.udp.info(id, act, now))
				continue
			}
			addr := c.l.name
			if c.l.tcp {
				addr = tcpName(c.peer)
			}
			infos = append(infos, connInfo{
				fd:         id,
				addr:       addr,
				listenAddr: c.l.name,
				state:      stateNames[act&stateMask],
				idle:       time.Duration(max(0, now-int64(act>>stateBits))),
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
