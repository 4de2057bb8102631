package emcache

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// TLS as memcached's -Z offers it, on the reactor. A connection accepted
// on a TLS listener is handshaken first, by one of a few goroutines (the
// handshake cannot be suspended and resumed from an event loop: crypto/tls
// keeps it on the stack of whoever calls it), then handed to a worker like
// any other. From there its worker drives crypto/tls over tlsWire, a
// net.Conn on the non-blocking socket whose reads report "would block" as
// a temporary error, which crypto/tls does not keep: the next readiness
// resumes where the last read stopped. No goroutine is left per
// connection.

const (
	// tlsHandshakers bounds the handshakes in progress at once. A
	// handshake waiting for its client parks its goroutine in the runtime's
	// poller; one computing keeps a core busy, so more than a few dozen
	// would only take CPU from the workers.
	tlsHandshakers = 32
	// tlsHandshakeTimeout bounds one handshake, so that clients which
	// connect and say nothing cannot hold the handshakers for long.
	tlsHandshakeTimeout = 10 * time.Second
)

// tlsServer is a server's TLS state; its zero value serves no TLS.
type tlsServer struct {
	s *Server
	// base is ServerConfig.TLS as given (cloned), before the files are
	// applied to it; config is what new connections are handshaken with.
	base   *tls.Config
	config atomic.Pointer[tls.Config]
	// keyFormat is memcached's ssl_keyformat of the key loaded: 1 for PEM,
	// 2 for DER.
	keyFormat atomic.Int32
	refreshMu sync.Mutex   // serialises refresh_certs
	refreshed atomic.Int64 // s.clock() when the files last loaded
	// sessions says new sessions are counted (ssl_new_sessions): session
	// tickets are on, memcached's ssl_session_cache.
	sessions                bool
	newSessions, hsFailures atomic.Uint64

	// The handshakers: queue holds accepted connections waiting for one,
	// inflight the duplicate sockets of those in progress, so that stop
	// can end them at once.
	mu       sync.Mutex
	queue    []queuedConn
	running  int
	inflight map[*os.File]struct{}
	stopped  bool
	wg       sync.WaitGroup
}

// init readies t for s; a nil config serves no TLS.
func (t *tlsServer) init(s *Server, base *tls.Config, keyFormat int) {
	t.s = s
	if s.cfg.TLS == nil {
		return
	}
	t.base = base
	t.config.Store(s.cfg.TLS)
	t.keyFormat.Store(int32(keyFormat))
	t.refreshed.Store(s.clock())
	t.sessions = !s.cfg.TLS.SessionTicketsDisabled
	t.inflight = make(map[*os.File]struct{})
}

func (t *tlsServer) enabled() bool { return t.config.Load() != nil }

// refreshCerts is the refresh_certs command: the files load again, for
// the connections that come next; on failure the certificate in use
// stays, and the answer is memcached's error.
func (s *Server) refreshCertsCmd(noreply bool, out []byte) []byte {
	t := &s.tls
	if !t.enabled() {
		return append(out, "Error TLS not enabled\r\n"...)
	}
	cfg := &s.cfg
	if cfg.TLSCertFile == "" {
		return append(out, "Error loading the certificate chain: (null) : the server was given no certificate file\r\n"...)
	}
	t.refreshMu.Lock()
	defer t.refreshMu.Unlock()
	c, format, err := loadTLSFiles(t.base, cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSCAFile)
	if err != nil {
		var fe *tlsFileError
		errors.As(err, &fe)
		out = append(out, fe.msg...)
		return append(out, rCRLF...)
	}
	t.config.Store(c)
	t.keyFormat.Store(int32(format))
	t.refreshed.Store(s.clock())
	return reply(out, noreply, rOK)
}

// submit queues an accepted connection for a handshake, starting a
// handshaker if fewer than tlsHandshakers run.
func (t *tlsServer) submit(q queuedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		t.drop(q)
		return
	}
	t.queue = append(t.queue, q)
	if t.running < tlsHandshakers {
		t.running++
		t.wg.Add(1)
		go t.handshaker()
	}
}

// handshaker handshakes queued connections until none is left: with no
// connection arriving no handshaker runs.
func (t *tlsServer) handshaker() {
	defer t.wg.Done()
	for {
		t.mu.Lock()
		if len(t.queue) == 0 || t.stopped {
			t.running--
			t.mu.Unlock()
			return
		}
		q := t.queue[0]
		t.queue[0] = queuedConn{}
		t.queue = t.queue[1:]
		if len(t.queue) == 0 {
			t.queue = nil // let a burst's backing array go
		}
		t.mu.Unlock()
		t.handshake(q)
	}
}

// handshake runs q's handshake on a duplicate of its socket in the
// runtime's poller, then hands it to a worker with its transport.
func (t *tlsServer) handshake(q queuedConn) {
	s := t.s
	f, err := dupFile(q.fd)
	if err != nil {
		t.fail(q, err)
		return
	}
	t.mu.Lock()
	stopped := t.stopped
	if !stopped {
		t.inflight[f] = struct{}{}
	}
	t.mu.Unlock()
	if stopped {
		f.Close()
		t.drop(q)
		return
	}
	f.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	w := &tlsWire{fd: q.fd, hs: f, local: q.l.ln.Addr(), remote: net.TCPAddrFromAddrPort(q.peer)}
	tc := tls.Server(w, t.config.Load())
	err = tc.Handshake()
	t.mu.Lock()
	delete(t.inflight, f)
	t.mu.Unlock()
	f.Close()
	w.hs = nil
	if err != nil {
		t.fail(q, err)
		return
	}
	if t.sessions && !tc.ConnectionState().DidResume {
		t.newSessions.Add(1)
	}
	q.t = &tlsTransport{tc: tc, w: w, chunk: s.cfg.TLSWriteBuffer, fresh: true}
	s.toWorker(q)
}

// fail counts a failed handshake (ssl_handshake_errors) and closes q.
func (t *tlsServer) fail(q queuedConn, err error) {
	t.hsFailures.Add(1)
	if t.s.verbosity.Load() > 0 {
		t.s.log.Info("TLS handshake failed", "peer", q.peer.String(), "err", err)
	}
	t.drop(q)
}

// drop closes a connection no worker got.
func (t *tlsServer) drop(q queuedConn) {
	closeFd(q.fd)
	t.s.open.Add(-1)
}

// stop ends the handshakes in progress, closes the queued connections and
// waits for the handshakers.
func (t *tlsServer) stop() {
	t.mu.Lock()
	t.stopped = true
	for _, q := range t.queue {
		t.drop(q)
	}
	t.queue = nil
	for f := range t.inflight {
		f.SetDeadline(time.Unix(1, 0))
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// errTLSWouldBlock is what tlsWire's reads return when the socket has
// nothing: a net.Error whose Temporary is true, the only kind crypto/tls
// does not keep as the connection's error.
var errTLSWouldBlock error = tlsWouldBlock{}

type tlsWouldBlock struct{}

func (tlsWouldBlock) Error() string   { return "emcache: TLS input would block" }
func (tlsWouldBlock) Timeout() bool   { return false }
func (tlsWouldBlock) Temporary() bool { return true }

// tlsWire is the net.Conn crypto/tls runs over: during the handshake a
// duplicate of the socket in the runtime's poller (hs), which blocks with
// a deadline; afterwards the non-blocking socket itself, read only when
// the reactor asks, written in full whatever the socket takes.
type tlsWire struct {
	fd int
	hs *os.File
	// drained says a read since the reactor's last readiness found the
	// socket empty, so the next one reports "would block" without asking
	// the kernel.
	drained bool
	// out[off:] is ciphertext the socket has not taken yet.
	out  []byte
	off  int
	werr error // the socket's write failure, once there was one

	local, remote net.Addr
}

func (w *tlsWire) Read(p []byte) (int, error) {
	if w.hs != nil {
		return w.hs.Read(p)
	}
	if w.drained {
		return 0, errTLSWouldBlock
	}
	n, err := readFd(w.fd, p)
	switch {
	case err == errWouldBlock:
		w.drained = true
		return 0, errTLSWouldBlock
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF
	}
	w.drained = n < len(p)
	return n, nil
}

// Write takes all of p: what the socket does not take now waits in out,
// as a short write would tear a record.
func (w *tlsWire) Write(p []byte) (int, error) {
	if w.hs != nil {
		return w.hs.Write(p)
	}
	if w.werr != nil {
		return 0, w.werr
	}
	n := len(p)
	if !w.pending() {
		k, err := writeFd(w.fd, p)
		if err != nil && err != errWouldBlock {
			w.werr = err
			return 0, err
		}
		if p = p[max(k, 0):]; len(p) == 0 {
			return n, nil
		}
	}
	if w.out == nil {
		w.out = make([]byte, 0, max(len(p), defaultTLSWriteBuffer))
	}
	w.out = append(w.out, p...)
	return n, nil
}

func (w *tlsWire) pending() bool { return w.off < len(w.out) }

// flush writes out until the socket is full: errWouldBlock then.
func (w *tlsWire) flush() error {
	for w.pending() {
		n, err := writeFd(w.fd, w.out[w.off:])
		if err != nil {
			if err != errWouldBlock {
				w.werr = err
			}
			return err
		}
		w.off += n
	}
	w.out, w.off = nil, 0
	return nil
}

// Close is crypto/tls's; the transport closes the socket.
func (w *tlsWire) Close() error         { return nil }
func (w *tlsWire) LocalAddr() net.Addr  { return w.local }
func (w *tlsWire) RemoteAddr() net.Addr { return w.remote }

func (w *tlsWire) SetDeadline(t time.Time) error {
	if w.hs != nil {
		return w.hs.SetDeadline(t)
	}
	return nil
}

func (w *tlsWire) SetReadDeadline(t time.Time) error {
	if w.hs != nil {
		return w.hs.SetReadDeadline(t)
	}
	return nil
}

func (w *tlsWire) SetWriteDeadline(t time.Time) error {
	if w.hs != nil {
		return w.hs.SetWriteDeadline(t)
	}
	return nil
}

// tlsTransport is a handshaken TLS connection as the reactor sees it.
type tlsTransport struct {
	tc *tls.Conn
	w  *tlsWire
	// taken is how many bytes at the start of the reactor's pending
	// output are encrypted already, their records not all on the socket:
	// reported written only once they are.
	taken int
	chunk int // plaintext encrypted per step, ssl_wbuf_size
	// err is what ended the input after bytes read before it were
	// returned: io.EOF or a failure, reported by the next read.
	err error
	// fresh is set until the first read: the handshake may have read
	// requests that followed it.
	fresh bool
}

// read decrypts records into b until it is full or the socket and
// crypto/tls hold nothing more: a read returning less than len(b) has
// left nothing decrypted behind, so the reactor may wait for the poller
// (memcached 1.6.18 hung on pipelined requests there, its SSL_read
// leaving records buffered that no event would announce).
func (t *tlsTransport) read(b []byte) (int, error) {
	t.fresh = false
	if t.err != nil {
		return 0, t.endErr()
	}
	t.w.drained = false
	k := 0
	for k < len(b) {
		n, err := t.tc.Read(b[k:])
		k += n
		if err != nil {
			if err != errTLSWouldBlock {
				t.err = err
			}
			break
		}
	}
	// Replies crypto/tls owes the client (a key update, an alert) go out
	// now, as far as the socket takes them; write sends the rest.
	t.w.flush()
	switch {
	case k > 0:
		return k, nil
	case t.err != nil:
		return 0, t.endErr()
	}
	return 0, errWouldBlock
}

// endErr is read's report of t.err: 0 and nil for the end of input.
func (t *tlsTransport) endErr() error {
	if t.err == io.EOF {
		return nil
	}
	return t.err
}

// write encrypts b a chunk at a time, each once the socket has taken the
// last, and reports the bytes whose records are all on the socket.
func (t *tlsTransport) write(b []byte) (int, error) {
	sent := 0
	for {
		if err := t.w.flush(); err != nil {
			if err == errWouldBlock && sent > 0 {
				return sent, nil
			}
			return sent, err
		}
		sent += t.taken
		t.taken = 0
		if sent == len(b) {
			return sent, nil
		}
		chunk := b[sent:min(len(b), sent+t.chunk)]
		if _, err := t.tc.Write(chunk); err != nil {
			return sent, err
		}
		t.taken = len(chunk)
	}
}

// buffered reports input read before the reactor asked: requests that
// came with the handshake, or the end of input after the last bytes.
func (t *tlsTransport) buffered() bool { return t.fresh || t.err != nil }

// close sends close_notify, as far as the socket takes it, and closes it.
func (t *tlsTransport) close() error {
	t.tc.Close()
	t.w.flush()
	return closeFd(t.w.fd)
}
