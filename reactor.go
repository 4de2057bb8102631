package emcache

import (
	"cmp"
	"fmt"
	"net/netip"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The reactor runs memcached's threading model (see memcached's
// thread.c): one listener (accept.go) hands accepted fds round-robin to N
// workers, each owning its connections and one poller for their whole
// life; this file is the workers' side. The poller and fd primitives come
// from a pair of files with the same small API, loop_linux.go (epoll) and
// loop_bsd.go (kqueue); loop_other.go serves the remaining systems with a
// goroutine per connection on the net package instead.

const (
	// pollBatch is how many events one wait returns at most.
	pollBatch = 128
	// maxIdleScan is the coarsest idle-timeout check interval (memcached
	// checks once a second).
	maxIdleScan = time.Second
	// minIdleScan keeps tiny idle timeouts from turning into busy scans.
	minIdleScan = 5 * time.Millisecond
)

// interest is what a connection waits for in its poller.
type interest uint8

const (
	wantRead interest = 1 << iota
	wantWrite
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
	t    transport // a handshaken TLS connection's; nil for a bare socket
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
	refs     outRefs  // obuf's arena references (pin.go)
	freeRefs []*outRefs
	pins     []*arenaPin // spare pins
	yield    []*conn     // connections that hit ReqsPerEvent, served next iteration
	yield2   []*conn     // the other yield list, swapped to avoid allocation
	popped   []queuedConn
	now      int64 // s.clock() after the last wait
	nextScan int64 // next idle-timeout check
	epoch    uint64
	draining bool
	// tally counts the commands of the requests whose replies serve has
	// not sent yet; latency is where they are filed once sent (latency.go).
	tally   tally
	latency [numCmdKinds]latencyHist

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
	fd    int       // names the connection; -1 once closed
	t     transport // carries its bytes; &fd as an *fdTransport
	in    []byte
	out   []byte   // unsent replies; nil when everything is sent
	refs  *outRefs // the values out refers to; nil when none
	l     *listener
	peer  netip.AddrPort
	udp   *udpConn // set when c is a worker's descriptor for a UDP socket (udp.go)
	// activity packs the last activity time (s.clock) and the stats conns
	// state, so snapshots read both with one atomic load.
	activity   atomic.Uint64
	lastActive int64
	epoch      uint64 // the worker epoch it was last served in
	closeWhy   string // conn_close's reason for watchers; "" is normal
	interest   interest
	closing    bool // close once out is sent
	needMore   bool // in holds only an incomplete request
	inYield    bool
	vectored   bool // t is a vectorWriter: large values go by reference
}

func (c *conn) setActivity(t int64, state uint64) {
	c.activity.Store(uint64(t)<<stateBits | state)
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
		w.refs.w = w
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
	if err := s.startUDP(); err != nil {
		return fail(err)
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
		if ph := s.phase.Load(); ph != phaseRun {
			if ph == phaseClose {
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
		if w.s.phase.Load() != phaseRun {
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
		c := &conn{fd: q.fd, l: q.l, peer: q.peer, interest: wantRead, lastActive: w.now, t: q.t}
		c.proto.tally = &w.tally
		if c.t == nil {
			c.t = (*fdTransport)(&c.fd)
		}
		_, c.vectored = c.t.(vectorWriter)
		c.proto.fd = q.fd
		c.setActivity(w.now, stateWaiting)
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
		if c.t.buffered() {
			// Requests that came with the end of a TLS handshake are off
			// the socket already: the poller will not report them.
			w.serve(c)
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
			w.setInterest(c, wantWrite)
		}
	}
}

func (w *worker) kickIdle() {
	idle := int64(w.s.cfg.IdleTimeout)
	for _, c := range w.byFd {
		if c != nil && c.udp == nil && w.now-c.lastActive > idle {
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
	t := c.t
	if ft, ok := t.(*fdTransport); ok {
		own := *ft // c.fd's own, which is about to read -1
		t = &own
	}
	if !s.watch.add(t, c.proto.watchKinds, out, release) {
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
	w.dropRefs(c)
	w.nconns--
}

func (w *worker) closeConn(c *conn) {
	if c.fd < 0 {
		return
	}
	if c.udp != nil {
		w.closeUDP(c)
		return
	}
	fd := c.fd
	w.mu.Lock()
	w.byFd[fd] = nil
	w.mu.Unlock()
	c.t.close()
	if w.s.watch.wants(logConnEvents) {
		w.s.logConn(fd, c.peer, c.l.tcp, cmp.Or(c.closeWhy, closeNormal))
	}
	c.fd = -1
	w.putBuf(c.in)
	w.putBuf(c.out)
	c.in, c.out = nil, nil
	w.dropRefs(c)
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
// then sends their replies with one write. Each turn of its loop is the
// same few steps: relieve backpressure, take input, execute it; finish
// then sends what the turns produced and rearms the poller.
//
// The budget: a serve executes at most ReqsPerEvent requests, so that one
// pipelining client cannot starve the others on its worker; a connection
// that spends it is served again after them (w.yield) without waiting for
// the poller, which may have nothing new to report.
//
// Where input lives: a connection with nothing buffered reads into the
// worker's shared rbuf, and only the rest a turn leaves unconsumed (an
// incomplete request, or requests past the budget) moves to a buffer of
// its own, c.in; a connection with something in c.in reads after it. So
// an idle connection holds no buffer, and a steady stream of whole
// requests copies nothing.
//
// Where output lives: replies are appended to the worker's shared obuf
// while c has nothing unsent, else to c.out; whatever the socket does not
// take becomes (or stays) c.out, so c.out != nil means replies are
// pending.
func (w *worker) serve(c *conn) {
	if c.epoch == w.epoch {
		return // kqueue reports read and write separately
	}
	c.epoch = w.epoch
	if c.udp != nil {
		w.serveUDP(c)
		return
	}
	defer w.recoverServe(c)
	r := round{out: w.outBuf(c), budget: w.s.cfg.ReqsPerEvent}
	w.bindRefs(c)
	next := stepOn
	for next == stepOn && r.budget > 0 && !c.closing {
		if c.proto.outLen(r.out) > w.s.cfg.MaxOutput {
			if next = w.relieve(c, &r); next != stepOn {
				break
			}
		}
		var data []byte
		if data, next = w.input(c, &r); next != stepOn {
			break
		}
		next = w.execute(c, &r, data)
	}
	if next != stepGone {
		w.finish(c, &r)
	} else {
		w.fileLatency()
	}
}

// fileLatency files the requests tallied since the last call under the
// time since the wake-up that brought them in. It runs just before their
// replies are written, so that a client that has its reply finds its
// request counted.
func (w *worker) fileLatency() {
	if w.tally.kinds != 0 {
		w.tally.file(&w.latency, time.Duration(w.s.clock()-w.now))
	}
}

// round is one serve call's progress, which its steps share. It lives on
// serve's stack: the steps take a pointer that does not escape.
type round struct {
	out    []byte // the replies so far: c.out, or obuf while c.out is nil
	budget int    // requests left before c yields to the worker's others
	// shared says the input being executed is in the worker's rbuf, which
	// the next read overwrites, rather than in c.in.
	shared bool
	// drained says a short read emptied the socket and the transport
	// holds no more input: the poller reports new data (it is
	// level-triggered), so waiting for it saves a read that would find
	// none.
	drained bool
	// blocked says out is past MaxOutput and the socket is full: c reads
	// nothing more until its client reads its replies (backpressure).
	blocked bool
}

// step is what one of serve's steps leaves it to do.
type step uint8

const (
	stepOn   step = iota // keep going
	stepStop             // stop reading; send and rearm
	stepGone             // c is closed or handed over: touch it no more
)

// recoverServe closes c when serving it panicked, so that a bug one
// request hits costs that connection, not the server.
func (w *worker) recoverServe(c *conn) {
	if r := recover(); r != nil {
		w.s.log.Error("emcache: panic serving a connection; closing it",
			"fd", c.fd, "worker", w.id, "panic", r, "stack", string(debug.Stack()))
		w.closeConn(c)
	}
}

// relieve sends r.out once it has grown past MaxOutput, before reading
// more requests, so that a client pipelining large replies is bounded to
// about MaxOutput of them buffered; if the socket takes too little, c is
// blocked until its client reads.
func (w *worker) relieve(c *conn, r *round) step {
	if err := w.flush(c, r.out); err != nil {
		w.closeConn(c)
		return stepGone
	}
	r.out = w.outBuf(c)
	w.bindRefs(c)
	if c.proto.outLen(r.out) > w.s.cfg.MaxOutput {
		r.blocked = true
		return stepStop
	}
	return stepOn
}

// input returns the bytes to execute next. Buffered input comes first,
// unless it is known to be an incomplete request (c.needMore), for which
// only more bytes help; a retrieval still producing replies needs none.
func (w *worker) input(c *conn, r *round) ([]byte, step) {
	if len(c.in) > 0 && !c.needMore || c.proto.producing() {
		r.shared = false
		return c.in, stepOn
	}
	if r.drained {
		return nil, stepStop
	}
	return w.read(c, r)
}

// read reads once from c: after what c.in holds, growing it if needed,
// or into the shared rbuf when c.in is empty. At EOF the requests read
// before it are still answered, then c closes; a partial one is dropped.
func (w *worker) read(c *conn, r *round) ([]byte, step) {
	buf := w.rbuf
	r.shared = len(c.in) == 0
	if !r.shared {
		if !w.growIn(c) {
			w.s.log.Error("emcache: request exceeds the input buffer; closing", "fd", c.fd)
			w.closeConn(c)
			return nil, stepGone
		}
		buf = c.in[len(c.in):cap(c.in)]
	}
	n, err := c.t.read(buf)
	switch {
	case err == errWouldBlock:
		return nil, stepStop
	case err != nil:
		c.closeWhy = closeError
		w.closeConn(c)
		return nil, stepGone
	case n == 0:
		c.closing = true
		return nil, stepStop
	}
	r.drained = n < len(buf) && !c.t.buffered()
	w.st.bytesRead.Add(uint64(n))
	c.lastActive = w.now
	c.setActivity(w.now, stateParseCmd)
	if r.shared {
		return buf[:n], stepOn
	}
	c.in = c.in[:len(c.in)+n]
	return c.in, stepOn
}

// execute runs the protocol over data within the budget, appending the
// replies to r.out, and keeps what it leaves unconsumed; the last
// request's action decides whether c carries on.
func (w *worker) execute(c *conn, r *round, data []byte) step {
	n, out, reqs, act := w.s.handle(&c.proto, data, r.out, r.budget)
	r.out = out
	r.budget -= reqs
	w.keepRest(c, data[n:], r.shared)
	// Input left with budget to spare is an incomplete request: only a
	// read can complete it. Input left because the budget ran out may
	// hold whole requests, which the next serve executes before reading.
	c.needMore = len(c.in) > 0 && r.budget > 0
	switch act {
	case actNone:
		return stepOn
	case actWatch:
		w.handToWatchers(c, w.inlineRefs(c, r.out))
		return stepGone
	case actClose:
		c.closeWhy = closeError
	case actShutdown:
		w.s.shutdownCommand()
	}
	c.closing = true // serve's loop ends; finish sends out, then closes
	return stepOn
}

// keepRest makes rest, the input execute left, c's buffered input. Rest
// in the shared rbuf moves to a buffer of c's own, sized for the data
// block it has begun, as the next read overwrites rbuf; rest in c.in moves
// to its front; with no rest c.in goes back to the pool.
func (w *worker) keepRest(c *conn, rest []byte, shared bool) {
	if shared {
		if len(rest) > 0 {
			c.in = append(w.takeBuf(max(len(rest), c.proto.pending())), rest...)
		}
		return
	}
	if k := copy(c.in, rest); k > 0 {
		c.in = c.in[:k]
		return
	}
	w.putBuf(c.in)
	c.in = nil
}

// finish ends a serve: it sends what the round produced (unless blocked,
// where relieve just found the socket full), closes c once a closing
// connection has sent everything, queues c to be served again without
// waiting when the budget ran out, and rearms the poller.
func (w *worker) finish(c *conn, r *round) {
	w.fileLatency()
	if !r.blocked {
		if err := w.flush(c, r.out); err != nil {
			c.closeWhy = closeError
			w.closeConn(c)
			return
		}
	}
	if c.closing && c.out == nil {
		w.closeConn(c)
		return
	}
	if r.budget <= 0 && !c.closing {
		w.st.yields.Add(1)
		if !c.inYield {
			c.inYield = true
			w.yield = append(w.yield, c)
		}
	}
	w.rearm(c)
}

// rearm registers what c waits for next, reading unless it is closing or
// blocked, writing while replies are pending, and publishes its state for
// stats conns. A poller registration only changes when the interest does,
// so a connection that keeps up costs no system call here.
func (w *worker) rearm(c *conn) {
	want := interest(0)
	if !c.closing && len(c.out)+c.refs.size() <= w.s.cfg.MaxOutput {
		want |= wantRead
	}
	if c.out != nil {
		want |= wantWrite
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
	c.setActivity(c.lastActive, state)
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
	if refs := c.proto.refs; refs != nil && len(refs.list) > 0 {
		return w.flushRefs(c, out, refs)
	}
	var err error
	sent := 0
	for sent < len(out) {
		n, e := c.t.write(out[sent:])
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
	w.settleRefs(c)
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
