package emcache

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The Linux half of the poller pair (loop_bsd.go is the other): one epoll
// instance per worker, woken by an eventfd, as memcached does when built
// with HAVE_EVENTFD. The rest of the reactor is in reactor.go and
// accept.go.

// poller is one epoll instance plus the eventfd that wakes it.
type poller struct {
	epfd   int
	wakefd int
	events [pollBatch]unix.EpollEvent
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	p := &poller{epfd: epfd, wakefd: wakefd}
	if err := p.add(wakefd); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func epollEvents(in interest) uint32 {
	var ev uint32
	if in&wantRead != 0 {
		ev |= unix.EPOLLIN
	}
	if in&wantWrite != 0 {
		ev |= unix.EPOLLOUT
	}
	return ev
}

// add registers fd for readability, level-triggered: a connection left
// with unread input (ReqsPerEvent reached) is reported again on the next
// wait without the worker tracking readiness itself.
func (p *poller) add(fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// mod replaces fd's interest set.
func (p *poller) mod(fd int, in interest) error {
	ev := unix.EpollEvent{Events: epollEvents(in), Fd: int32(fd)}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
}

// del unregisters fd. Connections do not need it: a closed fd leaves the
// epoll set by itself, and a syscall per close is worth saving.
func (p *poller) del(fd int) error {
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

// wait blocks until events arrive or timeoutMs passes (-1 = forever).
//
// A busy poller's next events are seldom more than a millisecond away, so
// it first waits up to rawWaitMs in a raw system call, which the runtime
// does not hear of: entering and leaving a blocking call it knows of costs
// bookkeeping on every wake-up, and the P, which sysmon hands elsewhere
// meanwhile, must be won back (about a tenth of the server's CPU per
// request at get90 and conns1k). The thread keeps its P for that
// millisecond; the runtime can still preempt it, since its signal
// interrupts the call, which then returns no events. Past that, the wait
// is one the runtime knows of, so an idle server's Ps serve the rest of
// the program.
func (p *poller) wait(timeoutMs int) (int, error) {
	raw := rawWaitMs
	if timeoutMs >= 0 && timeoutMs < raw {
		raw = timeoutMs
	}
	r, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(p.epfd), uintptr(unsafe.Pointer(&p.events[0])), uintptr(len(p.events)), uintptr(raw), 0, 0)
	switch {
	case errno == unix.EINTR:
		return 0, nil
	case errno != 0:
		return 0, errno
	case r > 0 || timeoutMs == raw:
		return int(r), nil
	}
	if timeoutMs > 0 {
		timeoutMs -= raw
	}
	n, err := unix.EpollWait(p.epfd, p.events[:], timeoutMs)
	if err == unix.EINTR {
		return 0, nil
	}
	return n, err
}

// rawWaitMs is how long wait blocks unseen by the runtime before it blocks
// the ordinary way.
const rawWaitMs = 10

// event decodes the i-th event of the last wait.
func (p *poller) event(i int) (fd int, ev pollEvent) {
	e := &p.events[i]
	fd = int(e.Fd)
	if fd == p.wakefd {
		return fd, evWake
	}
	if e.Events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR|unix.EPOLLRDHUP) != 0 {
		ev |= evRead
	}
	if e.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		ev |= evWrite
	}
	return fd, ev
}

var wakeValue = [8]byte{1} // an eventfd write adds this little-endian 1

// wake interrupts wait from another goroutine.
func (p *poller) wake() {
	// EAGAIN means the counter is saturated: the worker is woken already.
	unix.Write(p.wakefd, wakeValue[:])
}

// drainWake resets the eventfd so the next wait blocks again.
func (p *poller) drainWake() {
	var b [8]byte
	unix.Read(p.wakefd, b[:])
}

func (p *poller) close() error {
	err1 := unix.Close(p.wakefd)
	err2 := unix.Close(p.epfd)
	if err1 != nil {
		return err1
	}
	return err2
}

// readFd reads once; errWouldBlock replaces EAGAIN.
func readFd(fd int, b []byte) (int, error) {
	return rawIO(unix.SYS_READ, fd, b)
}

func writeFd(fd int, b []byte) (int, error) {
	return rawIO(unix.SYS_WRITE, fd, b)
}

// writevFd writes a prefix of bufs' concatenation with one raw writev;
// past maxIovecs buffers, the rest waits for the next call.
func writevFd(fd int, bufs [][]byte) (int, error) {
	var iov [maxIovecs]unix.Iovec
	n := 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		if n == len(iov) {
			break
		}
		iov[n].Base = &b[0]
		iov[n].SetLen(len(b))
		n++
	}
	for {
		w, _, errno := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
		switch errno {
		case 0:
			return int(w), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, errWouldBlock
		}
		return 0, errno
	}
}

// rawIO reads or writes a non-blocking fd with a raw system call: it never
// blocks, so the Go scheduler need not be told (entersyscall/exitsyscall
// cost about as much as the loopback copy of a small reply).
func rawIO(trap uintptr, fd int, b []byte) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	for {
		n, _, errno := unix.RawSyscall(trap, uintptr(fd), uintptr(p), uintptr(len(b)))
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, errWouldBlock
		}
		return 0, errno
	}
}

// udpIO is what a worker's UDP descriptor needs to answer a datagram
// without allocating: the sender's address as recvfrom wrote it, and the
// message sendmsg sends, header and payload as two iovecs.
type udpIO struct {
	from    unix.RawSockaddrAny
	fromLen uint32
	iov     [2]unix.Iovec
	msg     unix.Msghdr
}

// recvFromFd reads one datagram into b and its sender into io;
// errWouldBlock when none is waiting.
func recvFromFd(fd int, b []byte, io *udpIO) (int, error) {
	for {
		io.fromLen = unix.SizeofSockaddrAny
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			0, uintptr(unsafe.Pointer(&io.from)), uintptr(unsafe.Pointer(&io.fromLen)))
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, errWouldBlock
		}
		return 0, errno
	}
}

// sendToFd sends one datagram, hdr then b, to the sender recvFromFd last
// read into io.
func sendToFd(fd int, hdr, b []byte, io *udpIO) (int, error) {
	io.iov[0].Base = &hdr[0]
	io.iov[0].SetLen(len(hdr))
	io.iov[1].Base = &b[0]
	io.iov[1].SetLen(len(b))
	io.msg = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&io.from)), Namelen: io.fromLen, Iov: &io.iov[0]}
	io.msg.SetIovlen(len(io.iov))
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&io.msg)), 0)
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, errWouldBlock
		}
		return 0, errno
	}
}

// acceptFd accepts one connection, non-blocking and close-on-exec. It
// skips connections that died in the backlog; errWouldBlock means none is
// pending; other errors (EMFILE, ENFILE, ENOBUFS...) ask for a back-off.
func acceptFd(lfd int) (int, netip.AddrPort, error) {
	for {
		fd, sa, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch err {
		case nil:
			return fd, sockaddrAddrPort(sa), nil
		case unix.EAGAIN:
			return -1, netip.AddrPort{}, errWouldBlock
		case unix.EINTR, unix.ECONNABORTED, unix.EPERM, unix.EPROTO:
			continue
		}
		return -1, netip.AddrPort{}, err
	}
}

// yieldCPU lets other runnable threads on this core go first
// (sched_yield; returns at once when there are none).
func yieldCPU() { unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }

// watchSupported: watchers are written through raw non-blocking sockets.
const watchSupported = true
