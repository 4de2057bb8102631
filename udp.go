package emcache

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"time"
)

// UDP as memcached serves it (memcached.c's try_read_udp and
// transmit_udp; doc/protocol.txt, "UDP protocol"): each datagram starts
// with an 8-byte frame header (request id, sequence number, total
// datagrams, reserved), a request must fit in one datagram, and a reply
// is cut into datagrams of at most udpMaxPayload bytes, header included,
// numbered 0 to total-1.
//
// The workers serve the sockets as memcached's threads do: each worker
// that serves a socket polls a descriptor of its own for it (a dup, like
// memcached's per-thread UDP conn), and whichever is free reads the next
// datagram; no goroutine exists per datagram or per peer. A datagram's
// requests run on a fresh protocol state, one at a time, and each
// request's reply is sent as one message before the next request runs.
// Memory stays bounded: a worker reads a datagram only once the one before
// is answered, a descriptor holds one datagram and one reply at a time,
// and a retrieval's reply is cut into messages at the output bound
// (MaxOutput) like the yields of a TCP connection's.

const (
	// udpHeaderLen is the frame header's length (UDP_HEADER_SIZE).
	udpHeaderLen = 8
	// udpMaxPayload bounds a datagram the server sends, header included
	// (UDP_MAX_PAYLOAD_SIZE): it fits an Ethernet frame with the IP and
	// UDP headers, so no reply datagram is fragmented.
	udpMaxPayload = 1400
	// udpDataSize is the reply bytes one datagram carries (UDP_DATA_SIZE).
	udpDataSize = udpMaxPayload - udpHeaderLen
	// udpReadBufSize holds the largest datagram there is
	// (UDP_READ_BUFFER_SIZE), so that none is read truncated.
	udpReadBufSize = 64 << 10
	// maxSendBuf is the largest send buffer asked for (memcached's
	// MAX_SENDBUF_SIZE): a reply of many datagrams is queued at once
	// rather than waiting for the socket to drain.
	maxSendBuf = 256 << 20
)

// udpSocket is one bound UDP socket of [ServerConfig.UDPAddrs].
type udpSocket struct {
	pc   *net.UDPConn
	name string // "udp:127.0.0.1:11211", as stats conns prints it
}

// listenUDP binds the UDPAddrs sockets.
func (s *Server) listenUDP(lc *net.ListenConfig) error {
	for _, a := range s.cfg.UDPAddrs {
		pc, err := lc.ListenPacket(context.Background(), "udp"+ipv4Only(a), a)
		if err != nil {
			return fmt.Errorf("emcache: listen on UDP %q: %w", a, err)
		}
		uc := pc.(*net.UDPConn)
		maximizeSendBuffer(uc)
		s.udp = append(s.udp, &udpSocket{pc: uc, name: udpName(uc.LocalAddr().(*net.UDPAddr).AddrPort())})
	}
	return nil
}

// ipv4Only is "4" for an IPv4 literal host, which the net package would
// otherwise bind as the dual-stack wildcard when it is 0.0.0.0; memcached
// binds what -l names.
func ipv4Only(hostport string) string {
	host, _, _ := net.SplitHostPort(hostport)
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() {
		return "4"
	}
	return ""
}

// maximizeSendBuffer raises the socket's send buffer as far as the system
// lets it, searching for the limit as memcached's maximize_sndbuf does
// (Linux caps the size silently, the BSDs refuse one too large).
func maximizeSendBuffer(uc *net.UDPConn) {
	lo, hi := 0, maxSendBuf
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if uc.SetWriteBuffer(mid) == nil {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
}

// udpName formats a UDP address as memcached's stats conns does.
func udpName(ap netip.AddrPort) string {
	ip := ap.Addr().Unmap()
	port := strconv.Itoa(int(ap.Port()))
	if ip.Is4() {
		return "udp:" + ip.String() + ":" + port
	}
	return "udp6:[" + ip.String() + "]:" + port
}

// UDPAddrs returns the UDP sockets' addresses, in the order of
// [ServerConfig.UDPAddrs].
func (s *Server) UDPAddrs() []net.Addr {
	addrs := make([]net.Addr, len(s.udp))
	for i, u := range s.udp {
		addrs[i] = u.pc.LocalAddr()
	}
	return addrs
}

// udpPort is the first UDP socket's port, 0 without UDP.
func (s *Server) udpPort() int {
	if len(s.udp) == 0 {
		return 0
	}
	return s.udp[0].pc.LocalAddr().(*net.UDPAddr).Port
}

// udpWorkersPerSocket is how many workers serve each UDP socket
// (memcached's num_threads_per_udp): all of them, or one per socket when
// there are several, which memcached spreads over its threads instead.
func (s *Server) udpWorkersPerSocket() int {
	if len(s.udp) > 1 {
		return 1
	}
	return s.cfg.Workers
}

// udpDescriptors is how many worker descriptors the UDP sockets take:
// memcached counts as many conns against -c.
func (s *Server) udpDescriptors() int { return len(s.udp) * s.udpWorkersPerSocket() }

// udpRequest splits a datagram into its request id and payload. As
// memcached, it drops a datagram no longer than the header and one whose
// header says it is one of several (total not 1): requests must fit in
// one datagram. The sequence number and reserved bytes are not looked at.
func udpRequest(d []byte) (id uint16, payload []byte, ok bool) {
	if len(d) <= udpHeaderLen || d[4] != 0 || d[5] != 1 {
		return 0, nil, false
	}
	return binary.BigEndian.Uint16(d), d[udpHeaderLen:], true
}

// udpRequests returns the part of a datagram's payload that may hold
// complete requests. A text request ends with a line end, so what follows
// the last one is a request the datagram cut short, which memcached never
// answers (it waits for the rest, which no datagram brings); binary frames
// carry their length and handle finds a short one by itself.
func (s *Server) udpRequests(p []byte) []byte {
	if s.binaryFirst(p[0]) {
		return p
	}
	return p[:bytes.LastIndexByte(p, '\n')+1]
}

// udpStep runs the next request of a datagram, appending its reply to
// out, and returns what is left of the datagram, the reply and whether the
// datagram is finished (what is left is then dropped). One request at a
// time, so that each reply is a message of its own, as memcached sends
// each; a retrieval over the output bound stops early, its reply so far a
// message, and the next step goes on with it.
func (s *Server) udpStep(pc *protoConn, in, out []byte) (rest, reply []byte, done bool) {
	k, out, _, act := s.handle(pc, in, out, 1)
	switch act {
	case actNone:
	case actWatch:
		// A socket cannot become a watcher; memcached's logger cannot
		// write to it either, and answers nothing.
		return nil, out[:0], true
	case actShutdown:
		s.shutdownCommand()
		return nil, out, true
	default:
		// An error that closes a TCP connection, or quit: memcached
		// resets its UDP conn, and the rest of the datagram goes
		// unanswered.
		return nil, out, true
	}
	rest = in[k:]
	if k == 0 && len(out) == 0 {
		return nil, out, true // a data block or binary frame cut short
	}
	return rest, out, len(rest) == 0
}

// udpTotal is the datagram count of a reply of n bytes. memcached caps it
// at what the header holds; the sequence numbers of a longer reply wrap.
func udpTotal(n int) uint16 {
	return uint16(min((n+udpDataSize-1)/udpDataSize, math.MaxUint16))
}

// putUDPHeader fills a reply datagram's frame header.
func putUDPHeader(h *[udpHeaderLen]byte, id, seq, total uint16) {
	binary.BigEndian.PutUint16(h[0:], id)
	binary.BigEndian.PutUint16(h[2:], seq)
	binary.BigEndian.PutUint16(h[4:], total)
	h[6], h[7] = 0, 0
}

// udpConn is a worker's descriptor for a UDP socket: the datagram being
// executed and the reply being sent, kept between serve calls while the
// socket's send buffer is full or the worker serves its other connections.
// The conn it belongs to keeps the protocol state of the datagram's
// current request in its proto.
type udpConn struct {
	sock *udpSocket
	io   udpIO // the sender's address and the platform's send state
	buf  []byte
	in   []byte // what is left of the datagram in buf
	id   uint16 // its request id
	// out is the reply being sent; sent how much of it is, seq the next
	// datagram's number and total their count.
	out   []byte
	sent  int
	seq   uint16
	total uint16
	hdr   [udpHeaderLen]byte
}

// startUDP gives the workers their descriptors for the UDP sockets, before
// they run.
func (s *Server) startUDP() error {
	per := s.udpWorkersPerSocket()
	next := 0
	var made []*conn
	for _, u := range s.udp {
		rc, err := u.pc.SyscallConn()
		if err != nil {
			closeUDPConns(made)
			return fmt.Errorf("emcache: set up UDP socket %s: %w", u.name, err)
		}
		for range per {
			w := s.workers[next%len(s.workers)]
			next++
			var fd int
			cerr := rc.Control(func(f uintptr) { fd, err = dupFd(int(f)) })
			if err == nil {
				err = cerr
			}
			if err == nil {
				if err = w.p.add(fd); err != nil {
					closeFd(fd)
				}
			}
			if err != nil {
				closeUDPConns(made)
				return fmt.Errorf("emcache: set up UDP socket %s: %w", u.name, err)
			}
			made = append(made, w.addUDP(u, fd))
		}
	}
	return nil
}

// closeUDPConns undoes startUDP for the descriptors it made.
func closeUDPConns(cs []*conn) {
	for _, c := range cs {
		closeFd(c.fd)
	}
}

// addUDP registers a descriptor for u, already in w's poller, as one of
// w's connections.
func (w *worker) addUDP(u *udpSocket, fd int) *conn {
	c := &conn{fd: fd, interest: wantRead, udp: &udpConn{sock: u, buf: make([]byte, udpReadBufSize)}}
	w.resetUDP(c)
	c.setActivity(w.now, stateRead)
	w.mu.Lock()
	for fd >= len(w.byFd) {
		w.byFd = append(w.byFd, nil)
	}
	w.byFd[fd] = c
	w.mu.Unlock()
	w.nconns++
	w.st.curr.Add(1)
	w.st.total.Add(1)
	return c
}

// resetUDP gives c a fresh protocol state for the next datagram, returning
// what a request cut short had borrowed.
func (w *worker) resetUDP(c *conn) {
	if b := &c.proto.block; b.key != nil {
		keyPool.Put(b.key)
	}
	if b := &c.proto.block; b.ms != nil {
		msPool.Put(b.ms)
	}
	c.proto = protoConn{fd: c.fd, tally: &w.tally, datagram: true}
	c.udp.in = nil
}

// serveUDP serves c, a descriptor for a UDP socket: it finishes sending
// the reply the socket had no room for, then executes requests, reading
// datagrams as it needs them, sending each reply before the next request
// runs, up to ReqsPerEvent requests (a datagram read counts as one too).
// A datagram left with requests when the budget runs out is executed on
// the worker's next iteration, after its other connections; while a reply
// waits for room no datagram is read.
func (w *worker) serveUDP(c *conn) {
	defer w.recoverUDP(c)
	u := c.udp
	blocked := !w.sendUDP(c)
	for budget := w.s.cfg.ReqsPerEvent; budget > 0 && !blocked; budget-- {
		if len(u.in) == 0 {
			if !w.readUDP(c) {
				break
			}
			continue
		}
		var done bool
		u.in, u.out, done = w.s.udpStep(&c.proto, u.in, u.out[:0])
		if done {
			w.resetUDP(c)
		}
		u.sent, u.seq, u.total = 0, 0, udpTotal(len(u.out))
		blocked = !w.sendUDP(c)
	}
	w.fileLatency()
	want, state := wantRead, uint64(stateRead)
	switch {
	case blocked:
		want, state = wantWrite, stateMwrite
	case len(u.in) > 0:
		w.st.yields.Add(1)
		if !c.inYield {
			c.inYield = true
			w.yield = append(w.yield, c)
		}
	}
	if w.setInterest(c, want) {
		c.setActivity(c.lastActive, state)
	}
}

// readUDP reads the next datagram into c, false when none is waiting. A
// datagram memcached drops is dropped here too and leaves c with nothing
// to execute.
func (w *worker) readUDP(c *conn) bool {
	u := c.udp
	n, err := recvFromFd(c.fd, u.buf, &u.io)
	if err != nil {
		// Nothing waiting, or an error the socket reports once for an
		// earlier datagram (an ICMP unreachable): nothing to read now.
		return false
	}
	w.st.bytesRead.Add(uint64(n))
	c.lastActive = w.now
	if id, p, ok := udpRequest(u.buf[:n]); ok {
		u.id, u.in = id, w.s.udpRequests(p)
	}
	return true
}

// sendUDP sends what is left of c's reply, one datagram per system call,
// each with its frame header; false when the socket's send buffer is full
// and the rest waits for room. A reply the network refuses (unreachable
// peer, a datagram the path cannot carry) is given up, as memcached does.
func (w *worker) sendUDP(c *conn) bool {
	u := c.udp
	if u.sent < len(u.out) {
		w.fileLatency()
	}
	for u.sent < len(u.out) {
		end := min(u.sent+udpDataSize, len(u.out))
		putUDPHeader(&u.hdr, u.id, u.seq, u.total)
		n, err := sendToFd(c.fd, u.hdr[:], u.out[u.sent:end], &u.io)
		if err == errWouldBlock {
			return false
		}
		if err != nil {
			break
		}
		w.st.bytesWritten.Add(uint64(n))
		u.sent = end
		u.seq++
	}
	u.sent = len(u.out)
	if cap(u.out) > maxKeptOutBuf {
		u.out = nil // one large reply does not pin its buffer
	}
	return true
}

// recoverUDP drops the datagram whose request panicked; the socket goes on
// serving.
func (w *worker) recoverUDP(c *conn) {
	if r := recover(); r != nil {
		w.s.log.Error("emcache: panic serving a UDP datagram; dropping it",
			"fd", c.fd, "worker", w.id, "panic", r, "stack", string(debug.Stack()))
		w.resetUDP(c)
		c.udp.out, c.udp.sent = nil, 0
		w.setInterest(c, wantRead)
	}
}

// closeUDP closes c, a worker's descriptor for a UDP socket; the socket
// itself closes with the server's listeners.
func (w *worker) closeUDP(c *conn) {
	fd := c.fd
	w.mu.Lock()
	w.byFd[fd] = nil
	w.mu.Unlock()
	closeFd(fd)
	c.fd = -1
	c.udp.buf, c.udp.in, c.udp.out = nil, nil, nil
	w.nconns--
	w.st.curr.Add(^uint64(0))
}

// info describes a UDP descriptor for stats conns, as memcached shows an
// idle one: the socket's own address, no listen address.
func (u *udpConn) info(fd int, activity uint64, now int64) connInfo {
	return connInfo{
		fd:    fd,
		udp:   true,
		addr:  u.sock.name,
		state: stateNames[activity&stateMask],
		idle:  time.Duration(max(0, now-int64(activity>>stateBits))),
	}
}
