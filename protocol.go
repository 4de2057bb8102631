package emcache

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Version is the version the server reports to `version` and `stats`. It
// keeps memcached's numbering so that clients which parse the version (to
// pick features) treat the server as the memcached release it behaves like.
const Version = "1.6.18-emcache"

// Limits of memcached's text protocol (memcached.h, proto_text.c).
const (
	// maxLineLen is how much memcached buffers looking for the end of a
	// command line; past it without a newline it closes the connection,
	// except for get/gets, whose key list may be any length.
	maxLineLen = 2048
	// maxTokens is memcached's MAX_TOKENS: a command is split into at most
	// maxTokens-1 words, the terminal slot standing for the rest.
	maxTokens = 24
	// maxGetLeadingSpaces is how many spaces may precede an over-long
	// get/gets before memcached treats the line as garbage.
	maxGetLeadingSpaces = 100
	// maxVerbosity is memcached's MAX_VERBOSITY_LEVEL.
	maxVerbosity = 2
	// minMemLimitMB and maxMemLimitMB bound cache_memlimit's argument.
	minMemLimitMB = 8
	maxMemLimitMB = 1000000000
	// defaultGetOutput bounds the reply bytes one call of handle produces for
	// a retrieval before it yields, when ServerConfig.MaxOutput is unset: a
	// multiget over large values must not build gigabytes in one go.
	defaultGetOutput = 1 << 20
)

// Replies, with their line ends, so that each is one append.
const (
	rError             = "ERROR\r\n"
	rEnd               = "END\r\n"
	rStored            = "STORED\r\n"
	rNotStored         = "NOT_STORED\r\n"
	rExists            = "EXISTS\r\n"
	rNotFound          = "NOT_FOUND\r\n"
	rDeleted           = "DELETED\r\n"
	rTouched           = "TOUCHED\r\n"
	rOK                = "OK\r\n"
	rReset             = "RESET\r\n"
	rBadFormat         = "CLIENT_ERROR bad command line format\r\n"
	rBadDataChunk      = "CLIENT_ERROR bad data chunk\r\n"
	rBadExptime        = "CLIENT_ERROR invalid exptime argument\r\n"
	rBadDelta          = "CLIENT_ERROR invalid numeric delta argument\r\n"
	rNonNumeric        = "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
	rDeleteUsage       = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
	rFlushDisabled     = "CLIENT_ERROR flush_all not allowed\r\n"
	rShutdownMode      = "CLIENT_ERROR invalid shutdown mode\r\n"
	rShutdownOff       = "ERROR: shutdown not enabled\r\n"
	rTooLarge          = "SERVER_ERROR object too large for cache\r\n"
	rNoMemory          = "SERVER_ERROR out of memory storing object\r\n"
	rNoMemoryDelta     = "SERVER_ERROR out of memory\r\n"
	rMemTooSmall       = "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
	rMemNotMB          = "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"
	rMemFailed         = "MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust\r\n"
	rDetailUsage       = "CLIENT_ERROR usage: stats detail on|off|dump\r\n"
	rCachedumpOff      = "CLIENT_ERROR stats cachedump not allowed\r\n"
	rWatchOff          = "CLIENT_ERROR watch commands not allowed\r\n"
	rCrawlerOff        = "CLIENT_ERROR lru crawler disabled\r\n"
	rVersionPrefix     = "VERSION "
	rValuePrefix       = "VALUE "
	rCRLF              = "\r\n"
	rServerErrorPrefix = "SERVER_ERROR "
)

// action tells the reactor what to do with a connection after handle returns.
type action uint8

const (
	actNone     action = iota // keep serving
	actClose                  // flush out, then close the connection: the client erred
	actQuit                   // flush out, then close the connection: the client asked to
	actShutdown               // flush out, close, then shut the whole server down gracefully
	actWatch                  // flush out, then hand the connection to the watchers (watch.go)
)

// protoState says what the next input bytes of a connection are.
type protoState uint8

const (
	stCommand  protoState = iota // a command line
	stData                       // the data block of a parsed storage command
	stSwallow                    // the rest of a refused data block, discarded
	stGetKeys                    // more keys of a retrieval command
	stSkipLine                   // the rest of a line already answered with an error
	stDump                       // an lru_crawler metadump streaming out (admin.go)
)

// pendingStore is a storage command, classic or ms, waiting for its data
// block, kept so its line need not stay buffered while a large value
// trickles in: what the engine's storeReq takes besides key and value.
type pendingStore struct {
	kind    storeKind
	noreply bool // noreply, or ms's q
	nkey    uint8
	flags   uint32
	exptime int64
	cas     uint64
	vlen    int // data block length, without its CRLF
	// key is borrowed from keyPool only while a value trickles in, so an
	// idle connection does not carry a key-sized buffer.
	key *[MaxKeyLen]byte
	// ms is the rest of an ms command (meta.go), borrowed from msPool only
	// meanwhile; nil for the classic commands.
	ms *msState
}

// protoConn is the per-connection parse state that survives between calls
// to handle. Its zero value is a fresh connection. It owns no buffers, so an
// idle connection costs only this struct.
type protoConn struct {
	state protoState
	// started is set once the first byte arrived: memcached picks the
	// protocol of a connection from its first byte.
	started bool
	// binary is set when that byte chose the binary protocol (binary.go),
	// which then serves every request of the connection.
	binary bool
	bin    binConn
	// auth is the state of SASL or ASCII authentication (auth.go).
	auth authConn

	// block is the storage command of stData.
	block pendingStore
	// swallow is how many bytes of a refused data block are still to come.
	swallow int

	// The retrieval of stGetKeys.
	getCAS, getTouch bool
	getSawKey        bool // memcached answers a get without keys with ERROR
	getExp           int64
	// getStart is where this retrieval's replies start in out, or -1 once
	// part of them was handed to the reactor and can no longer be retracted.
	getStart int

	// dump is where the metadump of stDump stands.
	dump dumpCursor

	// fd is the connection's descriptor, as watch lines name it (cfd).
	fd int
	// watchKinds are the log kinds a watch command asked for.
	watchKinds uint32
}

// connState is the stats conns state of a connection between reads that
// holds buffered input (inBuffered) or none: memcached's conn_nread while a
// data block is arriving, conn_swallow while a refused one is discarded.
func (pc *protoConn) connState(inBuffered bool) uint64 {
	switch {
	case pc.state == stData:
		return stateNread
	case pc.state == stSwallow || pc.binary && pc.bin.swallow > 0:
		return stateSwallow
	case inBuffered:
		return stateRead
	}
	return stateWaiting
}

// producing reports that the connection has replies to make without new
// input (a metadump streaming out).
func (pc *protoConn) producing() bool { return pc.state == stDump }

// keyPool lends key buffers to connections whose value is still arriving.
var keyPool = sync.Pool{New: func() any { return new([MaxKeyLen]byte) }}

// awaitBlock enters stData: the data block of the storage command in
// pc.block, whose key is key, is still to come.
func (pc *protoConn) awaitBlock(key []byte) {
	b := &pc.block
	if b.key == nil {
		b.key = keyPool.Get().(*[MaxKeyLen]byte)
	}
	b.nkey = uint8(copy(b.key[:], key))
	pc.state = stData
}

// pending returns the input a request in progress needs in all once that is
// known (a data block being read), else 0, so the reactor can size the
// connection's buffer once instead of doubling and copying.
func (pc *protoConn) pending() int {
	if pc.state == stData {
		return pc.block.vlen + 2
	}
	return 0
}

// handle executes complete requests from in (at most maxReqs of them),
// appending replies to out.
//
// n = bytes of in consumed; the reactor keeps in[n:] and appends newly read
// bytes after it. If n < len(in) && reqs < maxReqs && act == actNone, handle
// needs more input to progress. handle never retains in or out. It bounds
// what it needs buffered: a command line <= 2048 bytes (longer without
// newline -> actClose, except get/gets key lists which it consumes as they
// stream in, keeping at most one partial key), a data block <= MaxItemSize+2
// (oversized ones it swallows chunk by chunk via protoConn state).
//
// A retrieval whose replies exceed the output bound (ServerConfig.MaxOutput)
// stops early and reports reqs == maxReqs, as when the -R budget is spent,
// so that the reactor flushes out and calls again without waiting for input.
func (s *Server) handle(pc *protoConn, in, out []byte, maxReqs int) (n int, outNew []byte, reqs int, act action) {
	if maxReqs <= 0 {
		maxReqs = math.MaxInt
	}
	pc.getStart = -1
	if pc.binary {
		return s.handleBinary(pc, in, out, maxReqs)
	}
	for {
		switch pc.state {
		case stSwallow:
			k := min(len(in)-n, pc.swallow)
			n += k
			pc.swallow -= k
			if pc.swallow > 0 {
				return n, out, reqs, actNone
			}
			pc.state = stCommand
			continue
		case stData:
			b := &pc.block
			need := b.vlen + 2
			if len(in)-n < need {
				return n, out, reqs, actNone
			}
			if reqs >= maxReqs {
				return n, out, reqs, actNone
			}
			out = s.finishStore(pc, b.ms, b.key[:b.nkey], in[n:n+need], out)
			keyPool.Put(b.key)
			b.key = nil
			if b.ms != nil {
				msPool.Put(b.ms)
				b.ms = nil
			}
			n += need
			reqs++
			pc.state = stCommand
			continue
		case stDump:
			var done bool
			if out, done = s.metadumpStep(pc, out); !done {
				// Like a spent -R budget: the reactor flushes and calls
				// again, after the client has read if out is past the bound.
				return n, out, maxReqs, actNone
			}
			reqs++
			pc.state = stCommand
			continue
		case stGetKeys, stSkipLine:
			k, o, done, yield := s.getKeys(pc, in[n:], out)
			n += k
			out = o
			if done {
				reqs++
				pc.state = stCommand
				continue
			}
			if yield {
				return n, out, maxReqs, actNone
			}
			return n, out, reqs, actNone
		}

		if n == len(in) || reqs >= maxReqs {
			return n, out, reqs, actNone
		}
		if reqs > 0 && len(out) > s.cfg.MaxOutput {
			// Backpressure: the reactor yields (as for -R) and stops
			// reading until the client drains its replies.
			return n, out, maxReqs, actNone
		}
		if !pc.started {
			pc.started = true
			if s.binaryFirst(in[n]) {
				pc.binary = true
				k, o, r, a := s.handleBinary(pc, in[n:], out, maxReqs-reqs)
				return n + k, o, reqs + r, a
			}
		}
		if s.cfg.ASCIIAuth && !pc.auth.authed {
			// -Y: nothing but the authentication token until it is right.
			k, o, answered, a := s.asciiAuth(pc, in[n:], out)
			n, out = n+k, o
			if !answered {
				return n, out, reqs, a
			}
			reqs++
			if a != actNone {
				return n, out, reqs, a
			}
			continue
		}
		rest := in[n:]
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			if len(rest) <= maxLineLen {
				return n, out, reqs, actNone
			}
			// No line end within memcached's limit: only a long multiget
			// may go on; anything else is garbage and the connection goes.
			pos, cas, ok := longGetPrefix(rest)
			if !ok {
				return n, out, reqs, actClose
			}
			pc.startGet(cas, false, 0, false, len(out))
			n += pos
			continue
		}
		line := rest[:nl]
		if nl > 1 && line[nl-1] == '\r' {
			line = line[:nl-1]
		}
		var consumed int
		faulted := false
		if s.fault.Load() != nil { // a test's injected failure (fault.go): one load when none
			consumed, out, act, faulted = s.injectFault(pc, line, nl+1, out)
		}
		if !faulted {
			if s.watch.wants(logRawCmds) {
				s.logRawCmd(pc.fd, line)
			}
			consumed, out, act = s.command(pc, rest, line, nl+1, out)
		}
		if act != actNone {
			return n + consumed, out, reqs + 1, act
		}
		n += consumed
		if pc.state == stCommand || pc.state == stSwallow {
			// Answered (a refused block is answered before it is read);
			// retrievals and stores count when they finish.
			reqs++
		}
	}
}

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

// tokenize splits line on spaces as memcached's tokenize_command does and
// returns ntokens as memcached counts them: the words (at most maxTokens-1)
// plus the terminal token.
func tokenize(line []byte, t *[maxTokens][]byte) int {
	n, i := 0, 0
	for n < maxTokens-1 {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		if i == len(line) {
			break
		}
		j := i
		for j < len(line) && line[j] != ' ' {
			j++
		}
		t[n] = line[i:j]
		n++
		i = j
	}
	t[n] = nil
	return n + 1
}

// command runs the command line that starts rest (line is its text without
// the line end, lineLen its length with it) and returns how many bytes of
// rest it consumed: the line, and the data block when complete.
func (s *Server) command(pc *protoConn, rest, line []byte, lineLen int, out []byte) (int, []byte, action) {
	// memcached reads the line as a C string, which a NUL ends: a client
	// could name one key (get canary:001\0junk, delete nulkey\0) and reach
	// another. A NUL has no place in a command line: refuse it.
	if bytes.IndexByte(line, 0) >= 0 {
		return lineLen, append(out, rBadFormat...), actNone
	}
	var t [maxTokens][]byte
	nt := tokenize(line, &t)
	if nt < 2 || len(t[0]) < 2 {
		return lineLen, append(out, rError...), actNone
	}
	// noreply is recognised only as the last word (set_noreply_maybe).
	noreply := string(t[nt-2]) == "noreply"
	cmd := t[0]

	switch string(cmd) {
	case "get", "bget":
		return s.startGetLine(pc, rest, nt, false, false, out)
	case "gets":
		return s.startGetLine(pc, rest, nt, true, false, out)
	case "gat":
		return s.startGetLine(pc, rest, nt, false, true, out)
	case "gats":
		return s.startGetLine(pc, rest, nt, true, true, out)
	case "set":
		return s.storage(pc, storeSet, rest, &t, nt, lineLen, noreply, out)
	case "add":
		return s.storage(pc, storeAdd, rest, &t, nt, lineLen, noreply, out)
	case "replace":
		return s.storage(pc, storeReplace, rest, &t, nt, lineLen, noreply, out)
	case "append":
		return s.storage(pc, storeAppend, rest, &t, nt, lineLen, noreply, out)
	case "prepend":
		return s.storage(pc, storePrepend, rest, &t, nt, lineLen, noreply, out)
	case "cas":
		return s.storage(pc, storeCAS, rest, &t, nt, lineLen, noreply, out)
	case "incr", "decr":
		return lineLen, s.arithmetic(cmd[0] == 'i', &t, nt, noreply, out), actNone
	case "delete":
		return lineLen, s.delete(&t, nt, noreply, out), actNone
	case "touch":
		return lineLen, s.touch(&t, nt, noreply, out), actNone
	case "flush_all":
		return lineLen, s.flushAll(&t, nt, noreply, out), actNone
	case "version":
		out = append(out, rVersionPrefix...)
		out = append(out, Version...)
		return lineLen, append(out, rCRLF...), actNone
	case "verbosity":
		return lineLen, s.verbosityCmd(&t, nt, noreply, out), actNone
	case "stats":
		return lineLen, s.statsCmd(&t, nt, out), actNone
	case "quit":
		return lineLen, out, actQuit
	case "shutdown":
		if !s.cfg.AllowShutdown {
			return lineLen, append(out, rShutdownOff...), actNone
		}
		if nt == 2 || (nt == 3 && string(t[1]) == "graceful") {
			return lineLen, out, actShutdown
		}
		return lineLen, append(out, rShutdownMode...), actNone
	case "cache_memlimit":
		return lineLen, s.memlimit(&t, nt, noreply, out), actNone
	case "watch":
		out, act := s.watchCmd(pc, &t, nt, out)
		return lineLen, out, act
	case "lru_crawler":
		return lineLen, s.lruCrawlerCmd(pc, &t, nt, out), actNone
	case "slabs":
		return lineLen, s.slabsCmd(&t, nt, out), actNone
	case "lru":
		return lineLen, s.lruCmd(&t, nt, out), actNone
	}

	if cmd[0] == 'm' && len(cmd) == 2 {
		return s.meta(pc, rest, &t, nt, lineLen, out)
	}
	switch cmd[0] {
	case 'g', 's', 'a', 'c', 'i', 'd', 't':
		// memcached dispatches on the first letter before comparing names,
		// and these branches answer an unknown name with ERROR alone.
		return lineLen, append(out, rError...), actNone
	}
	// A line ending in an HTTP version is a web client talking to the
	// wrong port: memcached hangs up on it without a word.
	if bytes.HasPrefix(t[nt-2], []byte("HTTP/")) {
		return lineLen, out, actClose
	}
	return lineLen, append(out, rError...), actNone
}

// reply appends r unless the command asked for no reply: classic commands
// with noreply suppress every reply, errors included, as memcached does.
func reply(out []byte, noreply bool, r string) []byte {
	if noreply {
		return out
	}
	return append(out, r...)
}

// startGet enters the retrieval state; the key list is processed by getKeys.
func (pc *protoConn) startGet(cas, touch bool, exp int64, sawKey bool, outStart int) {
	pc.state = stGetKeys
	pc.getCAS, pc.getTouch, pc.getExp, pc.getSawKey = cas, touch, exp, sawKey
	pc.getStart = outStart
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
	if pc.state == stSkipLine {
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
	limit += len(out)
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
		pc.getSawKey = true
		n := len(out)
		var size int
		out, size = s.appendValue(out, key, pc.getCAS, pc.getTouch, pc.getExp)
		hit := len(out) > n
		s.prefixes.record(key, prefixGet, hit)
		if s.watch.wants(logFetchers) {
			s.logGet(pc.fd, key, hit, size)
		}
		i += j
		if len(out) >= limit && skipSpaces(region, i) < len(region) {
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
	if !pc.getSawKey {
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
	if pc.getStart >= 0 && pc.getStart <= len(out) {
		out = out[:pc.getStart]
	}
	out = append(out, rBadFormat...)
	if nl >= 0 {
		return nl + 1, out, true, false
	}
	pc.state = stSkipLine
	return len(b), out, false, false
}

// appendValue appends the VALUE reply for key if the cache holds it, and
// returns the value's length. It runs once per requested key, so it
// allocates nothing: the value is copied from the cache's memory straight
// into out under the shard lock.
func (s *Server) appendValue(out, key []byte, withCAS, touch bool, exp int64) ([]byte, int) {
	size := 0
	s.cache.view(key, touch, exp, func(v []byte, flags, _ uint32, cas uint64) {
		size = len(v)
		// VALUE, key, three numbers of at most 20 digits, spaces, CRLFs.
		out = slices.Grow(out, len(rValuePrefix)+len(key)+len(v)+3*20+3+4)
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
		out = append(out, v...)
		out = append(out, rCRLF...)
	})
	return out, size
}

// storage parses set, add, replace, append, prepend and cas in memcached's
// order of checks. A refused line leaves its data block unread, so the
// block is then parsed as a command, as memcached does; a block refused for
// its size is swallowed.
func (s *Server) storage(pc *protoConn, kind storeKind, rest []byte, t *[maxTokens][]byte, nt, lineLen int, noreply bool, out []byte) (int, []byte, action) {
	want := 6
	if kind == storeCAS {
		want = 7
	}
	if nt != want && nt != want+1 {
		return lineLen, append(out, rError...), actNone
	}
	key := t[1]
	if len(key) > MaxKeyLen {
		return lineLen, reply(out, noreply, rBadFormat), actNone
	}
	flags, ok1 := safeStrtoul(t[2])
	exp, ok2 := safeStrtol(t[3])
	vl, ok3 := safeStrtol(t[4])
	if !ok1 || !ok2 || !ok3 {
		return lineLen, reply(out, noreply, rBadFormat), actNone
	}
	var cas uint64
	if kind == storeCAS {
		var ok bool
		if cas, ok = safeStrtoull(t[5]); !ok {
			return lineLen, reply(out, noreply, rBadFormat), actNone
		}
	}
	vlen, e := dataLen(vl)
	if e != "" {
		return lineLen, reply(out, noreply, e), actNone
	}
	pc.block = pendingStore{kind: kind, noreply: noreply, flags: uint32(flags), exptime: exptimeArg(exp), cas: cas, vlen: vlen}
	s.prefixes.record(key, prefixSet, false)

	if s.tooLarge(len(key), vlen, uint32(flags)) {
		// memcached refuses before reading the block, then swallows it,
		// and a set drops the old value so no client reads a stale one.
		s.cache.refuse(&storeReq{key: key, dropOnFail: kind == storeSet})
		if s.watch.wants(logMutations) {
			s.logStore(pc.fd, key, resultTooLarge, kind, pc.block.exptime, vlen)
		}
		pc.state = stSwallow
		pc.swallow = vlen + 2
		return lineLen, reply(out, noreply, rTooLarge), actNone
	}
	need := lineLen + vlen + 2
	if len(rest) >= need {
		return need, s.finishStore(pc, nil, key, rest[lineLen:need], out), actNone
	}
	pc.awaitBlock(key)
	return lineLen, out, actNone
}

// dataLen checks a storage command's data length, vl as parsed. memcached
// reads it into an int32, so that 4294967297 is 1 and the bytes past the
// first are parsed as commands; here the whole number counts. It returns
// the length or the error reply: memcached's for a negative length, bad
// data chunk for one no item can have, with nothing swallowed.
func dataLen(vl int64) (int, string) {
	switch {
	case vl < 0:
		return 0, rBadFormat
	case vl > math.MaxInt32-2:
		return 0, rBadDataChunk
	}
	return int(vl), ""
}

// tooLarge reports whether an item is over the server's item size limit.
func (s *Server) tooLarge(keyLen, valLen int, flags uint32) bool {
	return s.cache.itemSize(keyLen, valLen, flags) > s.maxItemSize()
}

// maxItemSize is the largest item the server accepts, header and key
// included, as the cache counts it.
func (s *Server) maxItemSize() int {
	m := s.cache.MaxItemSize()
	if s.cfg.MaxItemSize > 0 && s.cfg.MaxItemSize < m {
		m = s.cfg.MaxItemSize
	}
	return m
}

// textStoreReplies are the text protocol's answers to a store.
var textStoreReplies = [...]string{
	resultOK:        rStored,
	resultNotStored: rNotStored,
	resultExists:    rExists,
	resultNotFound:  rNotFound,
	// Only an append or prepend gets here too large (the others are
	// refused before their value is read): memcached's allocation of the
	// joined item fails, which it answers as not stored.
	resultTooLarge: rNotStored,
	resultNoMemory: rNoMemory,
}

// finishStore runs the storage command in pc.block with its data block
// (value + CRLF) and appends its reply; ms is the rest of an ms command,
// nil for the classic ones.
func (s *Server) finishStore(pc *protoConn, ms *msState, key, block []byte, out []byte) []byte {
	b := &pc.block
	if block[len(block)-2] != '\r' || block[len(block)-1] != '\n' {
		s.cache.countBadBlock(key)
		if ms != nil {
			return append(out, rBadDataChunk...) // q hides no error
		}
		return reply(out, b.noreply, rBadDataChunk)
	}
	value := block[:len(block)-2]
	if s.watch.wants(logFetchers) {
		s.logStoreLookup(pc.fd, key)
	}
	r := storeReq{
		kind: b.kind, key: key, value: value,
		flags: b.flags, exptime: b.exptime, cas: b.cas,
		dropOnFail: b.kind == storeSet,
	}
	if ms != nil {
		ms.fill(&r)
	}
	res, cas, size := s.cache.store(&r)
	if s.watch.wants(logMutations) {
		s.logStore(pc.fd, key, res, r.kind, r.exptime, len(value))
	}
	if ms != nil {
		return appendMSReply(out, ms, b.noreply, res, key, cas, size)
	}
	if int(res) < len(textStoreReplies) {
		return reply(out, b.noreply, textStoreReplies[res])
	}
	return serverError(out, b.noreply, res.err())
}

// serverError reports an error the protocol has no word for.
func serverError(out []byte, noreply bool, err error) []byte {
	if noreply {
		return out
	}
	out = append(out, rServerErrorPrefix...)
	out = append(out, err.Error()...)
	return append(out, rCRLF...)
}

// arithmetic runs incr and decr.
func (s *Server) arithmetic(incr bool, t *[maxTokens][]byte, nt int, noreply bool, out []byte) []byte {
	if nt != 4 && nt != 5 {
		return append(out, rError...)
	}
	key := t[1]
	if len(key) > MaxKeyLen {
		return reply(out, noreply, rBadFormat)
	}
	delta, ok := safeStrtoull(t[2])
	if !ok {
		return reply(out, noreply, rBadDelta)
	}
	res, v, _, _ := s.cache.arith(&arithReq{key: key, decr: !incr, delta: delta}, nil)
	switch res {
	case resultOK:
		if noreply {
			return out
		}
		out = strconv.AppendUint(out, v, 10)
		return append(out, rCRLF...)
	case resultNotFound:
		return reply(out, noreply, rNotFound)
	case resultNonNumeric:
		return reply(out, noreply, rNonNumeric)
	case resultNoMemory:
		return reply(out, noreply, rNoMemoryDelta)
	}
	return serverError(out, noreply, res.err())
}

// delete runs delete, which also accepts memcached's legacy hold time when
// it is 0.
func (s *Server) delete(t *[maxTokens][]byte, nt int, noreply bool, out []byte) []byte {
	if nt < 3 || nt > 5 {
		return append(out, rError...)
	}
	if nt > 3 {
		holdIsZero := string(t[2]) == "0"
		valid := (nt == 4 && (holdIsZero || noreply)) || (nt == 5 && holdIsZero && noreply)
		if !valid {
			return reply(out, noreply, rDeleteUsage)
		}
	} else {
		// set_noreply_maybe is only consulted with extra words.
		noreply = false
	}
	key := t[1]
	if len(key) > MaxKeyLen {
		return reply(out, noreply, rBadFormat)
	}
	s.prefixes.record(key, prefixDel, false)
	switch res := s.cache.deleteItem(&deleteReq{key: key}); res {
	case resultOK:
		return reply(out, noreply, rDeleted)
	case resultNotFound:
		return reply(out, noreply, rNotFound)
	default:
		return serverError(out, noreply, res.err())
	}
}

// touch runs touch.
func (s *Server) touch(t *[maxTokens][]byte, nt int, noreply bool, out []byte) []byte {
	if nt != 4 && nt != 5 {
		return append(out, rError...)
	}
	key := t[1]
	if len(key) > MaxKeyLen {
		return reply(out, noreply, rBadFormat)
	}
	exp, ok := safeStrtol(t[2])
	if !ok {
		return reply(out, noreply, rBadExptime)
	}
	switch res := s.cache.view(key, true, exptimeArg(exp), nil); res {
	case resultOK:
		return reply(out, noreply, rTouched)
	case resultNotFound:
		return reply(out, noreply, rNotFound)
	default:
		return serverError(out, noreply, res.err())
	}
}

// flushAll runs flush_all [delay] [noreply]. A delay over 30 days is an
// absolute Unix time, as for exptimes.
func (s *Server) flushAll(t *[maxTokens][]byte, nt int, noreply bool, out []byte) []byte {
	if nt < 2 || nt > 4 {
		return append(out, rError...)
	}
	s.cache.cmdFlush.Add(1)
	if s.cfg.DisableFlush {
		return reply(out, noreply, rFlushDisabled)
	}
	var exp int64
	if (noreply && nt != 3) || (!noreply && nt != 2) {
		e, ok := safeStrtol(t[1])
		if !ok {
			return reply(out, noreply, rBadExptime)
		}
		exp = e
	}
	var delay time.Duration
	switch {
	case exp <= 0:
	case exp > relativeExptimeMax:
		delay = time.Until(time.Unix(exp, 0))
	default:
		delay = time.Duration(exp) * time.Second
	}
	s.cache.flushAll(delay)
	return reply(out, noreply, rOK)
}

// verbosityCmd runs verbosity <level> [noreply].
func (s *Server) verbosityCmd(t *[maxTokens][]byte, nt int, noreply bool, out []byte) []byte {
	if nt != 3 && nt != 4 {
		return append(out, rError...)
	}
	level, ok := safeStrtoul(t[1])
	if !ok {
		return reply(out, noreply, rBadFormat)
	}
	s.verbosity.Store(int32(min(uint32(level), maxVerbosity)))
	return reply(out, noreply, rOK)
}

// memlimit runs cache_memlimit <megabytes> [noreply].
func (s *Server) memlimit(t *[maxTokens][]byte, nt int, noreply bool, out []byte) []byte {
	if nt != 3 && nt != 4 {
		return append(out, rError...)
	}
	mb, ok := safeStrtoul(t[1])
	switch {
	case !ok:
		return reply(out, noreply, rError)
	case uint32(mb) < minMemLimitMB:
		return reply(out, noreply, rMemTooSmall)
	case uint32(mb) > maxMemLimitMB:
		return reply(out, noreply, rMemNotMB)
	}
	if err := s.cache.SetMaxBytes(int64(uint32(mb)) << 20); err != nil {
		return reply(out, noreply, rMemFailed)
	}
	return reply(out, noreply, rOK)
}

// exptimeArg turns a parsed exptime into the cache's argument: memcached
// keeps exptimes in a 32-bit int, so larger numbers wrap as they do there.
func exptimeArg(e int64) int64 { return int64(int32(e)) }

// isCSpace is C's isspace in the C locale.
func isCSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r')
}

// strtoull parses a word as C's strtoull(s, &end, 10) does, with its
// leading white space and sign, and reports whether memcached's safe_
// wrappers accept the result: some digits, nothing but white space after
// them, no overflow. neg reports a leading minus.
func strtoull(w []byte) (v uint64, neg, ok bool) {
	i := 0
	for i < len(w) && isCSpace(w[i]) {
		i++
	}
	if i < len(w) && (w[i] == '+' || w[i] == '-') {
		neg = w[i] == '-'
		i++
	}
	start := i
	for ; i < len(w) && w[i] >= '0' && w[i] <= '9'; i++ {
		d := uint64(w[i] - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, neg, false // ERANGE
		}
		v = v*10 + d
	}
	if i == start || (i < len(w) && !isCSpace(w[i])) {
		return 0, neg, false
	}
	return v, neg, true
}

// safeStrtoull is memcached's safe_strtoull: a negative number is refused
// only when its unsigned value looks negative as a signed one.
func safeStrtoull(w []byte) (uint64, bool) {
	v, neg, ok := strtoull(w)
	if !ok {
		return 0, false
	}
	if neg {
		v = -v
	}
	if neg && int64(v) < 0 {
		return 0, false
	}
	return v, true
}

// safeStrtoul is memcached's safe_strtoul on a 64-bit host: the value is
// parsed as 64 bits and the caller truncates it to 32, so 4294967297 is 1.
func safeStrtoul(w []byte) (uint64, bool) { return safeStrtoull(w) }

// safeStrtol is memcached's safe_strtol on a 64-bit host: C's strtol with
// its range check on long; the caller truncates to 32 bits.
func safeStrtol(w []byte) (int64, bool) {
	v, neg, ok := strtoull(w)
	if !ok {
		return 0, false
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return int64(-v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}
