package emcache

import (
	"bytes"
	"math"
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
	rFlushPrefixOff    = "CLIENT_ERROR flush_prefix not allowed\r\n"
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
	awaitCommand protoState = iota // a command line
	awaitData                      // the data block of a parsed storage command
	swallowData                    // the rest of a refused data block, discarded
	awaitGetKeys                   // more keys of a retrieval command
	skipLine                       // the rest of a line already answered with an error
	streamDump                     // an lru_crawler metadump streaming out (admin.go)
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

// getState is a retrieval whose key list is still being served.
type getState struct {
	cas, touch bool
	sawKey     bool // memcached answers a get without keys with ERROR
	exp        int64
	// start is where this retrieval's replies start in out, or -1 once part
	// of them was handed to the reactor and can no longer be retracted.
	start int
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

	// block is the storage command of awaitData.
	block pendingStore
	// swallow is how many bytes of a refused data block are still to come.
	swallow int

	// get is the retrieval of awaitGetKeys.
	get getState

	// dump is where the metadump of streamDump stands.
	dump dumpCursor

	// fd is the connection's descriptor, as watch lines name it (cfd).
	fd int
	// tally, when not nil, counts each request's command for the latency
	// histograms (latency.go); its reactor files it.
	tally *tally
	// watchKinds are the log kinds a watch command asked for.
	watchKinds uint32
	// datagram marks a UDP datagram's requests (udp.go), which nothing
	// may take over the socket for.
	datagram bool
	// refs, when not nil, takes the large values of text gets by
	// reference into the arena (pin.go); the reactor points it at the
	// list of the output being appended to.
	refs *outRefs
}

// outLen is the length of the output so far: out and the values it refers
// to.
func (pc *protoConn) outLen(out []byte) int { return len(out) + pc.refs.size() }

// connState is the stats conns state of a connection between reads that
// holds buffered input (inBuffered) or none: memcached's conn_nread while a
// data block is arriving, conn_swallow while a refused one is discarded.
func (pc *protoConn) connState(inBuffered bool) uint64 {
	switch {
	case pc.state == awaitData:
		return stateNread
	case pc.state == swallowData || pc.binary && pc.bin.swallow > 0:
		return stateSwallow
	case inBuffered:
		return stateRead
	}
	return stateWaiting
}

// producing reports that the connection has replies to make without new
// input (a metadump streaming out).
func (pc *protoConn) producing() bool { return pc.state == streamDump }

// pending returns the input a request in progress needs in all once that is
// known (a data block being read), else 0, so the reactor can size the
// connection's buffer once instead of doubling and copying.
func (pc *protoConn) pending() int {
	if pc.state == awaitData {
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
	pc.get.start = -1
	if pc.binary {
		return s.handleBinary(pc, in, out, maxReqs)
	}
	for {
		switch pc.state {
		case swallowData:
			k := min(len(in)-n, pc.swallow)
			n += k
			pc.swallow -= k
			if pc.swallow > 0 {
				return n, out, reqs, actNone
			}
			pc.state = awaitCommand
			continue
		case awaitData:
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
			pc.state = awaitCommand
			continue
		case streamDump:
			var done bool
			if out, done = s.metadumpStep(pc, out); !done {
				// Like a spent -R budget: the reactor flushes and calls
				// again, after the client has read if out is past the bound.
				return n, out, maxReqs, actNone
			}
			reqs++
			pc.state = awaitCommand
			continue
		case awaitGetKeys, skipLine:
			k, o, done, yield := s.getKeys(pc, in[n:], out)
			n += k
			out = o
			if done {
				reqs++
				pc.state = awaitCommand
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
		if reqs > 0 && pc.outLen(out) > s.cfg.MaxOutput {
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
			pc.count(cmdGet)
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
		if pc.state == awaitCommand || pc.state == swallowData {
			// Answered (a refused block is answered before it is read);
			// retrievals and stores count when they finish.
			reqs++
		}
	}
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
		pc.count(cmdOther)
		return lineLen, append(out, rBadFormat...), actNone
	}
	var t [maxTokens][]byte
	nt := tokenize(line, &t)
	if nt < 2 || len(t[0]) < 2 {
		pc.count(cmdOther)
		return lineLen, append(out, rError...), actNone
	}
	pc.count(textCmdKind(t[0]))
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
	case "flush_prefix":
		return lineLen, s.flushPrefix(&t, nt, noreply, out), actNone
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
	case "refresh_certs":
		return lineLen, s.refreshCertsCmd(noreply, out), actNone
	}

	if cmd[0] == 'm' && len(cmd) == 2 {
		return s.metaCommand(pc, rest, &t, nt, lineLen, out)
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

// serverError reports an error the protocol has no word for.
func serverError(out []byte, noreply bool, err error) []byte {
	if noreply {
		return out
	}
	out = append(out, rServerErrorPrefix...)
	out = append(out, err.Error()...)
	return append(out, rCRLF...)
}
