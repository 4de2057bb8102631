package emcache

import (
	"net/netip"
	"slices"
	"time"
)

// The reactor's listener side, memcached's main thread: one goroutine
// waits on every listening socket, admits what it accepts against
// MaxConns and hands each connection to a worker (reactor.go).

// acceptBackoff is how long accepting pauses after EMFILE and the like:
// memcached's maxconns_handler retries every 10 ms too.
const acceptBackoff = 10 * time.Millisecond

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

// dispatch hands an accepted fd to the next worker (dispatch_conn_new).
func (s *Server) dispatch(l *listener, fd int, peer netip.AddrPort) {
	if !s.admit() {
		writeFd(fd, []byte(tooManyConns))
		closeFd(fd)
		return
	}
	if l.tcp {
		setNoDelay(fd)
	}
	q := queuedConn{fd: fd, peer: peer, l: l}
	if l.tls {
		s.tls.submit(q) // handed to a worker once handshaken
		return
	}
	s.toWorker(q)
}

// toWorker queues q to the next worker.
func (s *Server) toWorker(q queuedConn) {
	w := s.workers[(s.next.Add(1)-1)%uint32(len(s.workers))]
	// One wake per empty-to-non-empty transition: the worker drains its
	// notify fd before popping, so a push after the pop wakes it again.
	if w.q.push(q) {
		w.p.wake()
	}
}
