package emcache

import (
	"bytes"
	"slices"
	"strconv"
)

// The text protocol's retrievals: get, gets, gat and gats. One path serves
// a key list whole, streamed (longer than a line may be buffered) or
// resumed after an output bound, keeping at most one partial key buffered.

// longGetPrefix reports whether an unterminated line of more than
// maxLineLen bytes is a get or gets, which memcached lets stream, and where
// its key list starts.
func longGetPrefix(b []byte) (pos int, cas bool, ok bool) {
	i := 0
	for i < len(b) && b[i] == ' ' {
		i++
	}
	if i > maxGetLeadingSpaces {
		return 0, false, false
	}
	switch {
	case bytes.HasPrefix(b[i:], []byte("get ")):
		return i + 3, false, true
	case bytes.HasPrefix(b[i:], []byte("gets ")):
		return i + 4, true, true
	}
	return 0, false, false
}

// startGet enters the retrieval state; the key list is processed by getKeys.
func (pc *protoConn) startGet(cas, touch bool, exp int64, sawKey bool, outStart int) {
	pc.state = awaitGetKeys
	pc.get = getState{cas: cas, touch: touch, exp: exp, sawKey: sawKey, start: outStart}
}

// startGetLine starts get, gets, gat or gats from a complete line: it checks
// the arguments as memcached does and leaves the keys to the retrieval
// state, so that one code path serves whole, streamed and resumed key lists.
func (s *Server) startGetLine(pc *protoConn, rest []byte, nt int, cas, touch bool, out []byte) (int, []byte, action) {
	lineEnd := bytes.IndexByte(rest, '\n') + 1
	if nt < 3 {
		return lineEnd, append(out, rError...), actNone
	}
	pos := skipWord(rest, 0) // the command
	var exp int64
	if touch {
		start := skipSpaces(rest, pos)
		pos = skipWord(rest, start)
		e, ok := safeStrtol(trimCR(rest[start:pos]))
		if !ok {
			return lineEnd, append(out, rBadExptime...), actNone
		}
		exp = exptimeArg(e)
	}
	pc.startGet(cas, touch, exp, touch, len(out))
	return pos, out, actNone
}

// trimCR drops the CR of a CRLF line end from the last word of a line.
func trimCR(w []byte) []byte {
	if len(w) > 0 && w[len(w)-1] == '\r' {
		return w[:len(w)-1]
	}
	return w
}

func skipSpaces(b []byte, i int) int {
	for i < len(b) && b[i] == ' ' {
		i++
	}
	return i
}

// skipWord returns the end of the word at or after i: the next space, NUL or
// line end.
func skipWord(b []byte, i int) int {
	i = skipSpaces(b, i)
	for i < len(b) && b[i] != ' ' && b[i] != '\n' && b[i] != 0 {
		i++
	}
	return i
}

// getKeys serves keys of the current retrieval from b, which starts inside
// its key list, and returns how much of b it consumed, whether the command
// is finished, and whether it stopped early because its output is large.
// Without a line end in b it serves every key followed by a space and keeps
// the last, possibly partial, key unconsumed: at most MaxKeyLen bytes stay
// buffered however long the key list.
func (s *Server) getKeys(pc *protoConn, b []byte, out []byte) (int, []byte, bool, bool) {
	nl := bytes.IndexByte(b, '\n')
	if pc.state == skipLine {
		if nl < 0 {
			return len(b), out, false, false
		}
		return nl + 1, out, true, false
	}
	region := b
	if nl >= 0 {
		region = b[:nl]
		if nl > 0 && region[nl-1] == '\r' {
			region = region[:nl-1]
		}
	}
	if bytes.IndexByte(region, 0) >= 0 {
		// memcached would end the line at the NUL, a C string's end, and
		// serve the key before it: a client could name one key and get
		// another. The command is refused, as for a key too long.
		return s.getBadKey(pc, b, nl, out)
	}
	limit := s.cfg.MaxOutput
	if limit <= 0 {
		limit = defaultGetOutput
	}
	limit += pc.outLen(out)
	i := 0
	for {
		i = skipSpaces(region, i)
		if i == len(region) {
			break
		}
		j := bytes.IndexByte(region[i:], ' ')
		if j < 0 {
			j = len(region) - i
			if nl < 0 {
				// The key may continue in the next read; a CR may be
				// the line end's, its LF still to come.
				if j > MaxKeyLen && (j > MaxKeyLen+1 || region[len(region)-1] != '\r') {
					return s.getBadKey(pc, b, nl, out)
				}
				return i, out, false, false
			}
		}
		key := region[i : i+j]
		if len(key) > MaxKeyLen {
			return s.getBadKey(pc, b, nl, out)
		}
		pc.get.sawKey = true
		n := len(out)
		var size int
		out, size = s.appendValue(out, key, pc.refs, pc.get.cas, pc.get.touch, pc.get.exp)
		hit := len(out) > n
		s.prefixes.record(key, prefixGet, hit)
		s.hot.observe(key)
		if s.watch.wants(logFetchers) {
			s.logGet(pc.fd, key, hit, size)
		}
		i += j
		if pc.outLen(out) >= limit && skipSpaces(region, i) < len(region) {
			return i, out, false, true
		}
	}
	if nl >= 0 {
		return nl + 1, s.getEnd(pc, out), true, false
	}
	return len(b), out, false, false
}

// getEnd finishes a retrieval's reply.
func (s *Server) getEnd(pc *protoConn, out []byte) []byte {
	if !pc.get.sawKey {
		// Only a streamed line of spaces gets here: memcached sees a get
		// without keys, a wrong token count.
		return append(out, rError...)
	}
	return append(out, rEnd...)
}

// getBadKey answers a retrieval naming a key over MaxKeyLen bytes or with a
// NUL in it. Like memcached for a long key it drops the values already
// produced for the command, when they are still in out, and ignores the
// rest of the line.
func (s *Server) getBadKey(pc *protoConn, b []byte, nl int, out []byte) (int, []byte, bool, bool) {
	if pc.get.start >= 0 && pc.get.start <= len(out) {
		out = out[:pc.get.start]
		pc.refs.truncate(pc.get.start)
	}
	out = append(out, rBadFormat...)
	if nl >= 0 {
		return nl + 1, out, true, false
	}
	pc.state = skipLine
	return len(b), out, false, false
}

// appendValue appends the VALUE reply for key if the cache holds it, and
// returns the value's length. It runs once per requested key, so it
// allocates nothing: the value is copied from the cache's memory straight
// into out under the shard lock, or, when large, pinned there and sent
// from it (refs, pin.go).
func (s *Server) appendValue(out, key []byte, refs *outRefs, withCAS, touch bool, exp int64) ([]byte, int) {
	size := 0
	s.cache.viewShard(key, touch, exp, func(sh *shard, v []byte, flags uint32, cas uint64) {
		size = len(v)
		// VALUE, key, three numbers of at most 20 digits, spaces, CRLFs.
		n := len(v)
		if len(v) >= refMinLen {
			n = 0 // it may go by reference; a copy grows out then
		}
		out = slices.Grow(out, len(rValuePrefix)+len(key)+n+3*20+3+4)
		out = append(out, rValuePrefix...)
		out = append(out, key...)
		out = append(out, ' ')
		out = strconv.AppendUint(out, uint64(flags), 10)
		out = append(out, ' ')
		out = strconv.AppendUint(out, uint64(len(v)), 10)
		if withCAS {
			out = append(out, ' ')
			out = strconv.AppendUint(out, cas, 10)
		}
		out = append(out, rCRLF...)
		if !refs.add(sh, v, len(out)) {
			out = append(out, v...)
		}
		out = append(out, rCRLF...)
	})
	return out, size
}
