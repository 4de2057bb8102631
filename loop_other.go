//go:build !linux && !darwin && !freebsd && !netbsd && !openbsd && !dragonfly

package emcache

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
)

// The portable fallback for systems without epoll or kqueue (Windows,
// Plan 9, Solaris, AIX, js, wasip1...): one goroutine per connection on
// the net package, with the same handle, stats and stop semantics. It is
// slower than the reactor (a goroutine and a 16 KiB buffer per
// connection, the runtime's poller in between), which these systems are
// not deployed for. Workers exist only as counters here, so the spread
// still shows in Stats; ReqsPerEvent only bounds one handle call, and
// backpressure is the blocking write itself.

// start accepts on every listener and reads every UDP socket, one
// goroutine each.
func (s *Server) start() error {
	for i, l := range s.listeners {
		l.fd = i // stats conns ids: there is no fd to show
	}
	s.acceptWG.Add(len(s.listeners))
	for _, l := range s.listeners {
		go s.acceptNet(l)
	}
	for i, u := range s.udp {
		c := &conn{plat: connPlat{nc: u.pc}, fd: s.plat.alloc(len(s.listeners)), udp: &udpConn{sock: u}}
		c.setActivity(s.clock(), stateRead)
		w := s.workers[i%len(s.workers)]
		w.mu.Lock()
		for c.fd >= len(w.byFd) {
			w.byFd = append(w.byFd, nil)
		}
		w.byFd[c.fd] = c
		w.mu.Unlock()
		w.st.curr.Add(1)
		w.st.total.Add(1)
		s.workerWG.Add(1)
		go w.serveUDPNet(c)
	}
	return nil
}

// serveUDPNet is a UDP socket's goroutine: it answers one datagram after
// the other, the replies' datagrams written as they are cut.
func (w *worker) serveUDPNet(c *conn) {
	s := w.s
	uc := c.plat.nc.(*net.UDPConn)
	defer s.workerWG.Done()
	defer w.closeNet(c)
	buf := make([]byte, udpReadBufSize)
	dgram := make([]byte, 0, udpMaxPayload)
	var out []byte
	tally := new(tally)
	for s.phase.Load() == phaseRun {
		n, peer, err := uc.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		if err != nil {
			continue // reported once for an earlier datagram (Windows' ICMP resets)
		}
		w.st.bytesRead.Add(uint64(n))
		c.lastActive = s.clock()
		c.setActivity(c.lastActive, stateRead)
		id, p, ok := udpRequest(buf[:n])
		if !ok {
			continue
		}
		pc := protoConn{fd: c.fd, tally: tally, datagram: true}
		in := s.udpRequests(p)
		for done := len(in) == 0; !done; {
			in, out, done = s.udpStep(&pc, in, out[:0])
			tally.file(&w.latency, time.Duration(s.clock()-c.lastActive))
			total := udpTotal(len(out))
			for seq, sent := uint16(0), 0; sent < len(out); seq++ {
				end := min(sent+udpDataSize, len(out))
				dgram = binary.BigEndian.AppendUint16(dgram[:0], id)
				dgram = binary.BigEndian.AppendUint16(dgram, seq)
				dgram = binary.BigEndian.AppendUint16(dgram, total)
				dgram = append(dgram, 0, 0)
				dgram = append(dgram, out[sent:end]...)
				if _, err := uc.WriteToUDPAddrPort(dgram, peer); err != nil {
					break // given up, as memcached gives up the reply
				}
				w.st.bytesWritten.Add(uint64(len(dgram)))
				sent = end
			}
		}
	}
}

// connPlat is the connection itself.
type connPlat struct{ nc net.Conn }

// serverPlat hands out stats conns ids, lowest free first like fds.
type serverPlat struct {
	mu   sync.Mutex
	used []bool
}

func (p *serverPlat) alloc(first int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.used) < first {
		p.used = append(p.used, true)
	}
	for i := first; i < len(p.used); i++ {
		if !p.used[i] {
			p.used[i] = true
			return i
		}
	}
	p.used = append(p.used, true)
	return len(p.used) - 1
}

func (p *serverPlat) release(id int) {
	p.mu.Lock()
	p.used[id] = false
	p.mu.Unlock()
}

// wakeWorkers applies s.phase to every connection goroutine: a read
// deadline in the past ends a blocked Read (drain: pending replies are
// already written, as writes are synchronous); closing ends everything.
func (s *Server) wakeWorkers() {
	closing := s.phase.Load() == phaseClose
	for _, w := range s.workers {
		w.mu.Lock()
		for _, c := range w.byFd {
			if c == nil {
				continue
			}
			if closing {
				c.plat.nc.Close()
			} else {
				c.plat.nc.SetReadDeadline(time.Now())
			}
		}
		w.mu.Unlock()
	}
}

func (s *Server) acceptNet(l *listener) {
	defer s.acceptWG.Done()
	failing := false
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of fds or buffers: pause briefly, keep serving the others.
			if !failing {
				s.log.Error("emcache: accept failed; retrying", "listener", l.name, "err", err)
			}
			failing = true
			t := time.NewTimer(acceptBackoff)
			select {
			case <-s.quit:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		failing = false
		if !s.admit() {
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			nc.Write([]byte(tooManyConns))
			nc.Close()
			continue
		}
		if l.tls {
			nc = tls.Server(nc, s.tls.config.Load()) // handshaken by serveNet
		}
		c := &conn{plat: connPlat{nc: nc}, l: l, fd: s.plat.alloc(len(s.listeners))}
		c.proto.tally = new(tally)
		if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
			c.peer = a.AddrPort()
		}
		c.lastActive = s.clock()
		c.setActivity(c.lastActive, stateWaiting)
		w := s.workers[(s.next.Add(1)-1)%uint32(len(s.workers))]
		w.mu.Lock()
		for c.fd >= len(w.byFd) {
			w.byFd = append(w.byFd, nil)
		}
		w.byFd[c.fd] = c
		w.mu.Unlock()
		w.st.curr.Add(1)
		w.st.total.Add(1)
		if s.verbosity.Load() >= 2 {
			s.log.Info("new client connection", "id", c.fd, "addr", l.name, "worker", w.id)
		}
		s.workerWG.Add(1)
		go w.serveNet(c)
	}
}

// serveNet is one connection's goroutine.
func (w *worker) serveNet(c *conn) {
	s := w.s
	nc := c.plat.nc
	defer s.workerWG.Done()
	defer w.closeNet(c)
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("emcache: panic serving a connection; closing it", "id", c.fd, "panic", r)
		}
	}()
	if tc, ok := nc.(*tls.Conn); ok && !s.tls.handshakeNet(tc) {
		return
	}
	in := make([]byte, 0, readBufSize)
	var out []byte
	for {
		if s.cfg.IdleTimeout > 0 {
			nc.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		}
		// After setting the deadline: wakeWorkers sets the phase before its
		// own deadline, so one of the two always ends the Read below.
		if s.phase.Load() != phaseRun {
			return
		}
		if len(in) == cap(in) {
			limit := s.cfg.MaxItemSize + lineSlack
			if cap(in) >= limit {
				s.log.Error("emcache: request exceeds the input buffer; closing", "id", c.fd)
				return
			}
			in = append(make([]byte, 0, min(2*cap(in), limit)), in...)
		}
		n, err := nc.Read(in[len(in):cap(in)])
		if n > 0 {
			in = in[:len(in)+n]
			w.st.bytesRead.Add(uint64(n))
			c.lastActive = s.clock()
			c.setActivity(c.lastActive, stateParseCmd)
			for len(in) > 0 || c.proto.producing() {
				k, o, reqs, act := s.handle(&c.proto, in, out[:0], s.cfg.ReqsPerEvent)
				out = o
				in = in[:copy(in, in[k:])]
				c.proto.tally.file(&w.latency, time.Duration(s.clock()-c.lastActive))
				if len(out) > 0 {
					c.setActivity(c.lastActive, stateMwrite) // shows a client that does not read
					if _, err := nc.Write(out); err != nil {
						return
					}
					w.st.bytesWritten.Add(uint64(len(out)))
				}
				if act != actNone {
					if act == actShutdown {
						s.shutdownCommand()
					}
					return
				}
				if reqs < s.cfg.ReqsPerEvent {
					break // in holds at most an incomplete request
				}
				w.st.yields.Add(1)
			}
			c.setActivity(c.lastActive, c.proto.connState(len(in) > 0))
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && s.cfg.IdleTimeout > 0 && s.phase.Load() == phaseRun {
				w.st.idleKicks.Add(1)
			}
			return
		}
	}
}

// handshakeNet runs a TLS connection's handshake on its own goroutine,
// within tlsHandshakeTimeout, and counts it.
func (t *tlsServer) handshakeNet(tc *tls.Conn) bool {
	tc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		t.hsFailures.Add(1)
		if t.s.verbosity.Load() > 0 {
			t.s.log.Info("TLS handshake failed", "peer", tc.RemoteAddr().String(), "err", err)
		}
		return false
	}
	tc.SetDeadline(time.Time{})
	if t.sessions && !tc.ConnectionState().DidResume {
		t.newSessions.Add(1)
	}
	return true
}

func (w *worker) closeNet(c *conn) {
	c.plat.nc.Close()
	w.mu.Lock()
	w.byFd[c.fd] = nil
	w.mu.Unlock()
	w.s.plat.release(c.fd)
	w.st.curr.Add(^uint64(0))
	if c.udp == nil {
		w.s.open.Add(-1) // a UDP socket took no client slot
	}
	if w.s.verbosity.Load() >= 2 {
		w.s.log.Info("connection closed", "id", c.fd, "worker", w.id)
	}
}

// The reactor's primitives, which reactor.go and accept.go refer to but
// start never reaches on these systems.

var errNoPoller = errors.New("emcache: no epoll or kqueue on this system")

type poller struct{}

func newPoller() (*poller, error)                       { return nil, errNoPoller }
func (p *poller) add(fd int) error                      { return errNoPoller }
func (p *poller) mod(fd int, in interest) error         { return errNoPoller }
func (p *poller) del(fd int) error                      { return errNoPoller }
func (p *poller) wait(timeoutMs int) (int, error)       { return 0, errNoPoller }
func (p *poller) event(i int) (int, pollEvent)          { return -1, 0 }
func (p *poller) wake()                                 {}
func (p *poller) drainWake()                            {}
func (p *poller) close() error                          { return nil }
func readFd(fd int, b []byte) (int, error)              { return 0, errNoPoller }
func writeFd(fd int, b []byte) (int, error)             { return 0, errNoPoller }
func writevFd(fd int, b [][]byte) (int, error)          { return 0, errNoPoller }
func closeFd(fd int) error                              { return errNoPoller }
func acceptFd(lfd int) (int, netip.AddrPort, error)     { return -1, netip.AddrPort{}, errNoPoller }
func dupFd(fd int) (int, error)                         { return -1, errNoPoller }
func setNoDelay(fd int) error                           { return errNoPoller }
func setBacklog(rc syscall.RawConn, n int) (int, error) { return -1, errNoPoller }
func dupFile(fd int) (*os.File, error)                  { return nil, errNoPoller }
func yieldCPU()                                         {}

// udpIO is empty: the UDP goroutines keep the sender themselves.
type udpIO struct{}

func recvFromFd(fd int, b []byte, io *udpIO) (int, error)    { return 0, errNoPoller }
func sendToFd(fd int, hdr, b []byte, io *udpIO) (int, error) { return 0, errNoPoller }

// watchSupported: this reactor has no raw sockets to hand to watchers.
const watchSupported = false
