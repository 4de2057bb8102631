package emcache

import "errors"

// errWouldBlock is what the fd primitives and transports return for
// EAGAIN.
var errWouldBlock = errors.New("emcache: operation would block")

// transport moves one connection's bytes between its socket and the
// reactor, which calls nothing else for them: a connection that is more
// than a bare socket (TLS, say) is one more transport, not edits across
// the reactor and the protocols. conn.fd still names the connection, for
// its poller registration, stats conns and watch lines.
//
// What the reactor and a transport count on from each other:
//   - Neither blocks: read and write return errWouldBlock instead, and the
//     reactor waits for the socket in its poller.
//   - Input a transport has taken off the socket but not yet returned by
//     read (records decrypted ahead) is invisible to the poller: buffered
//     reports it, and the reactor reads again rather than wait.
//   - After a short write, the reactor's next write to the connection
//     starts with the bytes not yet reported written, unchanged (they are
//     its pending output), and it waits for writability meanwhile. So a
//     transport that must take everything it is given (one encrypting into
//     its own buffer) may report bytes written only once they are on the
//     socket.
type transport interface {
	// read reads what is ready into b: errWouldBlock when nothing is, 0
	// and nil at EOF.
	read(b []byte) (int, error)
	// write writes a prefix of b, all of it or less; errWouldBlock when
	// the socket takes nothing.
	write(b []byte) (int, error)
	// buffered reports input taken off the socket that read has not
	// returned yet.
	buffered() bool
	// close closes the socket and releases what the transport holds.
	close() error
}

// vectorWriter is a transport that can write several buffers at once, as
// a reply does that sends large values from the arena (pin.go): it writes
// a prefix of their concatenation, with errWouldBlock as write's. A
// transport without it gets every value copied into its replies.
type vectorWriter interface {
	writev(bufs [][]byte) (int, error)
}

// fdTransport is a bare non-blocking socket. A connection's is its fd
// field itself (conn.t points at conn.fd), so that the usual transport
// costs no allocation and no memory beyond the interface value.
type fdTransport int

func (t *fdTransport) read(b []byte) (int, error)     { return readFd(int(*t), b) }
func (t *fdTransport) write(b []byte) (int, error)    { return writeFd(int(*t), b) }
func (t *fdTransport) writev(b [][]byte) (int, error) { return writevFd(int(*t), b) }
func (t *fdTransport) buffered() bool                 { return false }
func (t *fdTransport) close() error                   { return closeFd(int(*t)) }
