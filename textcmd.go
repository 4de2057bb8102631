package emcache

import (
	"math"
	"strconv"
	"sync"
	"time"
)

// The text protocol's commands that change items (storage, incr/decr,
// delete, touch, flush_all) and its run-time settings (verbosity,
// cache_memlimit): each parses its line in memcached's order of checks,
// runs the engine (engine.go) and turns its result into memcached's reply.

// keyPool lends key buffers to connections whose value is still arriving.
var keyPool = sync.Pool{New: func() any { return new([MaxKeyLen]byte) }}

// awaitBlock enters awaitData: the data block of the storage command in
// pc.block, whose key is key, is still to come.
func (pc *protoConn) awaitBlock(key []byte) {
	b := &pc.block
	if b.key == nil {
		b.key = keyPool.Get().(*[MaxKeyLen]byte)
	}
	b.nkey = uint8(copy(b.key[:], key))
	pc.state = awaitData
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
	s.hot.observe(key)

	if s.tooLarge(len(key), vlen, uint32(flags)) {
		// memcached refuses before reading the block, then swallows it,
		// and a set drops the old value so no client reads a stale one.
		s.cache.refuse(&storeReq{key: key, dropOnFail: kind == storeSet})
		if s.watch.wants(logMutations) {
			s.logStore(pc.fd, key, resultTooLarge, kind, pc.block.exptime, vlen)
		}
		pc.state = swallowData
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
// reads it into an int32 and refuses what is then negative or above
// INT_MAX-2 (its t/issue_70.t: -1, 4294967295, 2147483647), and those
// answers are kept; but 4294967297 it reads as 1, and the bytes past the
// first would be parsed as commands: a length that only truncation makes
// valid answers bad data chunk, with nothing swallowed.
func dataLen(vl int64) (int, string) {
	n := int32(vl)
	switch {
	case n < 0 || n > math.MaxInt32-2:
		return 0, rBadFormat
	case int64(n) != vl:
		return 0, rBadDataChunk
	}
	return int(n), ""
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

// The text protocol's answers to the engine's results, per command: its
// table from result to wire bytes.
var (
	storeReplies = [...]string{
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
	deleteReplies = [...]string{resultOK: rDeleted, resultNotFound: rNotFound}
	touchReplies  = [...]string{resultOK: rTouched, resultNotFound: rNotFound}
	arithReplies  = [...]string{resultNotFound: rNotFound, resultNonNumeric: rNonNumeric, resultNoMemory: rNoMemoryDelta}
)

// textResult appends the reply replies has for res, or a SERVER_ERROR
// naming a result the command has no word for (a closed cache).
func textResult(out []byte, noreply bool, res result, replies []string) []byte {
	if int(res) < len(replies) && replies[res] != "" {
		return reply(out, noreply, replies[res])
	}
	return serverError(out, noreply, res.err())
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
	s.hot.stored(res, key, size)
	if s.watch.wants(logMutations) {
		s.logStore(pc.fd, key, res, r.kind, r.exptime, len(value))
	}
	if ms != nil {
		return appendMSReply(out, ms, b.noreply, res, key, cas, size)
	}
	return textResult(out, b.noreply, res, storeReplies[:])
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
	s.hot.observe(key)
	res, v, _, _ := s.cache.arith(&arithReq{key: key, decr: !incr, delta: delta}, nil)
	if res != resultOK {
		return textResult(out, noreply, res, arithReplies[:])
	}
	if noreply {
		return out
	}
	out = strconv.AppendUint(out, v, 10)
	return append(out, rCRLF...)
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
	s.hot.observe(key)
	return textResult(out, noreply, s.cache.deleteItem(&deleteReq{key: key}), deleteReplies[:])
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
	s.hot.observe(key)
	return textResult(out, noreply, s.cache.view(key, true, exptimeArg(exp), nil), touchReplies[:])
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

// flushPrefix runs flush_prefix <prefix> [noreply] (DeletePrefix), which
// -F refuses as it refuses flush_all, and which is counted, refused or
// not, as flush_all is.
func (s *Server) flushPrefix(t *[maxTokens][]byte, nt int, noreply bool, out []byte) []byte {
	if nt == 3 {
		noreply = false // a lone word is the prefix, as delete's key
	} else if nt != 4 || !noreply {
		return append(out, rError...)
	}
	s.cache.cmdFlushPrefix.Add(1)
	if s.cfg.DisableFlush {
		return reply(out, noreply, rFlushPrefixOff)
	}
	if len(t[1]) > MaxKeyLen {
		return reply(out, noreply, rBadFormat)
	}
	if err := s.cache.deletePrefix(t[1]); err != nil {
		return serverError(out, noreply, err)
	}
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
