//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package emcache

import (
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// What both pollers (loop_linux.go, loop_bsd.go) share: the reactor entry
// points and socket helpers.

// start runs the reactor: N workers, each on its own poller.
func (s *Server) start() error { return s.startReactor() }

// wakeWorkers makes every worker look at s.phase again.
func (s *Server) wakeWorkers() { s.wakePollers() }

// connPlat and serverPlat are empty here: the reactor keeps all its
// state in reactor.go.
type (
	connPlat   struct{}
	serverPlat struct{}
)

func closeFd(fd int) error { return unix.Close(fd) }

func sockaddrAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// setNoDelay turns Nagle off: replies are already batched per wake-up.
func setNoDelay(fd int) error {
	return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
}

// setBacklog re-listens on an already listening socket, which only
// updates the accept queue length (the net package uses the system's
// maximum).
func setBacklog(rc syscall.RawConn, n int) (fd int, err error) {
	cerr := rc.Control(func(f uintptr) {
		fd = int(f)
		err = unix.Listen(fd, n)
	})
	if cerr != nil {
		return -1, cerr
	}
	return fd, err
}

// dupFd duplicates fd, close-on-exec, so that a worker registers a shared
// UDP socket in its poller under a descriptor of its own.
func dupFd(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }

// dupFile returns a duplicate of the non-blocking socket fd as a file in
// the Go runtime's poller, whose reads and writes park the goroutine
// rather than block a thread and honour deadlines; closing it leaves fd
// open.
func dupFile(fd int) (*os.File, error) {
	syscall.ForkLock.RLock()
	nfd, err := unix.Dup(fd)
	if err == nil {
		unix.CloseOnExec(nfd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(nfd), "tls handshake"), nil
}
