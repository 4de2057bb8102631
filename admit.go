package emcache

// Admission against MaxConns, which every reactor (accept.go's, and
// loop_other.go's goroutine per connection) applies through admit, so
// that they count connections and rejections alike.

// tooManyConns is memcached's reply to a connection over -c.
const tooManyConns = "ERROR Too many open connections\r\n"

// clientLimit is how many client connections MaxConns leaves room for.
func (s *Server) clientLimit() int {
	if s.cfg.ReservedFDs == 0 {
		return s.cfg.MaxConns
	}
	return s.cfg.MaxConns - len(s.listeners) - s.udpDescriptors() - s.cfg.ReservedFDs - 1
}

// admit takes a client slot for a connection just accepted, or counts it
// rejected when none is left; the caller then sends it tooManyConns and
// closes it, as memcached does. An admitted connection gives its slot
// back (s.open.Add(-1)) once closed.
func (s *Server) admit() bool {
	if s.open.Add(1) <= int64(s.clientLimit()) {
		return true
	}
	s.open.Add(-1)
	s.rejected.Add(1) // counted before the client can see the close
	return false
}
