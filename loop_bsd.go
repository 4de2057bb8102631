//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package emcache

import (
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// The kqueue half of the poller pair (loop_linux.go is the other): one
// kqueue per worker, woken through a non-blocking pipe, which every BSD
// has (EVFILT_USER is missing on OpenBSD and older NetBSD), as memcached
// does without eventfd. The rest of the reactor is in reactor.go and
// accept.go.

// poller is one kqueue plus the pipe that wakes it.
type poller struct {
	kq      int
	wakeR   int
	wakeW   int
	ts      unix.Timespec
	changes [2]unix.Kevent_t
	events  [pollBatch]unix.Kevent_t
}

// pipeNonblock makes a close-on-exec, non-blocking pipe; ForkLock keeps
// a concurrent fork+exec from inheriting it before CloseOnExec.
func pipeNonblock() (r, w int, err error) {
	var p [2]int
	syscall.ForkLock.RLock()
	err = unix.Pipe(p[:])
	if err == nil {
		unix.CloseOnExec(p[0])
		unix.CloseOnExec(p[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, -1, err
	}
	for _, fd := range p {
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(p[0])
			unix.Close(p[1])
			return -1, -1, err
		}
	}
	return p[0], p[1], nil
}

func newPoller() (*poller, error) {
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(kq)
	r, w, err := pipeNonblock()
	if err != nil {
		unix.Close(kq)
		return nil, err
	}
	p := &poller{kq: kq, wakeR: r, wakeW: w}
	if err := p.add(r); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// add registers fd for readability. kqueue filters are level-triggered
// without EV_CLEAR, so unread input is reported again on the next wait.
func (p *poller) add(fd int) error {
	unix.SetKevent(&p.changes[0], fd, unix.EVFILT_READ, unix.EV_ADD)
	_, err := unix.Kevent(p.kq, p.changes[:1], nil, nil)
	return err
}

// mod sets fd's interest. Both filters stay registered and are enabled
// or disabled, so neither change can fail with ENOENT.
func (p *poller) mod(fd int, in interest) error {
	rf, wf := unix.EV_ADD|unix.EV_DISABLE, unix.EV_ADD|unix.EV_DISABLE
	if in&wantRead != 0 {
		rf = unix.EV_ADD | unix.EV_ENABLE
	}
	if in&wantWrite != 0 {
		wf = unix.EV_ADD | unix.EV_ENABLE
	}
	unix.SetKevent(&p.changes[0], fd, unix.EVFILT_READ, rf)
	unix.SetKevent(&p.changes[1], fd, unix.EVFILT_WRITE, wf)
	_, err := unix.Kevent(p.kq, p.changes[:], nil, nil)
	return err
}

// del unregisters fd, which add registered for reading only.
// Connections do not need it: a closed fd leaves the kqueue by itself,
// and a syscall per close is worth saving.
func (p *poller) del(fd int) error {
	unix.SetKevent(&p.changes[0], fd, unix.EVFILT_READ, unix.EV_DELETE)
	_, err := unix.Kevent(p.kq, p.changes[:1], nil, nil)
	return err
}

// wait blocks until events arrive or timeoutMs passes (-1 = forever).
func (p *poller) wait(timeoutMs int) (int, error) {
	var ts *unix.Timespec
	if timeoutMs >= 0 {
		p.ts = unix.NsecToTimespec(int64(timeoutMs) * 1e6)
		ts = &p.ts
	}
	n, err := unix.Kevent(p.kq, nil, p.events[:], ts)
	if err == unix.EINTR {
		return 0, nil
	}
	return n, err
}

// event decodes the i-th event of the last wait. kqueue reports a
// readable and writable fd as two events.
func (p *poller) event(i int) (fd int, ev pollEvent) {
	e := &p.events[i]
	fd = int(e.Ident)
	if fd == p.wakeR {
		return fd, evWake
	}
	switch {
	case e.Flags&unix.EV_ERROR != 0:
		ev = evRead | evWrite
	case e.Filter == unix.EVFILT_READ:
		ev = evRead
	case e.Filter == unix.EVFILT_WRITE:
		ev = evWrite
	}
	return fd, ev
}

// wake interrupts wait from another goroutine.
func (p *poller) wake() {
	// EAGAIN means the pipe is full: the worker is woken already.
	unix.Write(p.wakeW, wakeByte[:])
}

var wakeByte = [1]byte{'c'} // memcached writes 'c' to its notify pipe too

// drainWake empties the pipe so the next wait blocks again.
func (p *poller) drainWake() {
	var b [64]byte
	for {
		n, err := unix.Read(p.wakeR, b[:])
		if err != unix.EINTR && n < len(b) {
			return
		}
	}
}

func (p *poller) close() error {
	unix.Close(p.wakeR)
	unix.Close(p.wakeW)
	return unix.Close(p.kq)
}

// readFd reads once; errWouldBlock replaces EAGAIN.
func readFd(fd int, b []byte) (int, error) { return retryIO(unix.Read, fd, b) }

// writeFd writes once; errWouldBlock replaces EAGAIN.
func writeFd(fd int, b []byte) (int, error) { return retryIO(unix.Write, fd, b) }

// writevFd writes a prefix of bufs' concatenation: the first non-empty
// buffer, or part of it (x/sys has no writev on every BSD).
func writevFd(fd int, bufs [][]byte) (int, error) {
	for _, b := range bufs {
		if len(b) > 0 {
			return writeFd(fd, b)
		}
	}
	return 0, nil
}

func retryIO(op func(int, []byte) (int, error), fd int, b []byte) (int, error) {
	for {
		n, err := op(fd, b)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, errWouldBlock
		}
		return 0, err
	}
}

// udpIO is the sender of the datagram a worker's UDP descriptor read
// last, which its reply goes to.
type udpIO struct {
	from unix.Sockaddr
	bufs [2][]byte
}

// recvFromFd reads one datagram into b and its sender into io;
// errWouldBlock when none is waiting.
func recvFromFd(fd int, b []byte, io *udpIO) (int, error) {
	for {
		n, from, err := unix.Recvfrom(fd, b, 0)
		switch err {
		case nil:
			io.from = from
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, errWouldBlock
		}
		return 0, err
	}
}

// sendToFd sends one datagram, hdr then b, to the sender recvFromFd last
// read into io.
func sendToFd(fd int, hdr, b []byte, io *udpIO) (int, error) {
	io.bufs = [2][]byte{hdr, b}
	for {
		n, err := unix.SendmsgBuffers(fd, io.bufs[:], nil, io.from, 0)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, errWouldBlock
		}
		return 0, err
	}
}

// acceptFd accepts one connection, non-blocking and close-on-exec (with
// accept + fcntl, as not every BSD has accept4). It skips connections
// that died in the backlog; errWouldBlock means none is pending; other
// errors (EMFILE, ENFILE, ENOBUFS...) ask for a back-off.
func acceptFd(lfd int) (int, netip.AddrPort, error) {
	for {
		syscall.ForkLock.RLock()
		fd, sa, err := unix.Accept(lfd)
		if err == nil {
			unix.CloseOnExec(fd)
		}
		syscall.ForkLock.RUnlock()
		switch err {
		case nil:
			if err := unix.SetNonblock(fd, true); err != nil {
				unix.Close(fd)
				return -1, netip.AddrPort{}, err
			}
			return fd, sockaddrAddrPort(sa), nil
		case unix.EAGAIN:
			return -1, netip.AddrPort{}, errWouldBlock
		case unix.EINTR, unix.ECONNABORTED, unix.EPERM, unix.EPROTO:
			continue
		}
		return -1, netip.AddrPort{}, err
	}
}

// yieldCPU does nothing on kqueue systems: macOS has no sched_yield system
// call to make directly, and the effect was measured on Linux only.
func yieldCPU() {}

// watchSupported: watchers are written through raw non-blocking sockets.
const watchSupported = true
