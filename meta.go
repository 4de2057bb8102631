package emcache

import (
	"encoding/base64"
	"strconv"
	"sync"
)

// The meta protocol: mg, ms, md, ma, mn and me, as memcached 1.6.18 parses
// and answers them (proto_text.c: _meta_flag_preparse, process_mget_command
// and its siblings), with the flags later releases added: E on every
// command, x on md, C on mg, s and N on ms.
//
// A command is `<cm> <key> [<datalen>] <flag>*`, each flag one character
// with its token glued on (T30, Oabc). The reply is a two-letter code and
// the requested return flags in the order they were asked for. Errors are
// never hidden by q, which hides only the nominal code of each command.

// Limits of memcached's meta commands (proto_text.c).
const (
	// metaMaxTokens is MFLAG_MAX_OPT_LENGTH: a meta command has fewer
	// tokens, counting the command, key, flags and the terminal token.
	metaMaxTokens = 20
	// metaMaxOpaque is MFLAG_MAX_OPAQUE_LENGTH, the longest O token, its O
	// included.
	metaMaxOpaque = 32
)

// Meta replies, with their line ends.
const (
	rMetaNoop            = "MN\r\n"
	rMetaMissLine        = "EN\r\n"
	rMetaFlagsTooLongGet = "CLIENT_ERROR options flags are too long\r\n"
	rMetaFlagsTooLong    = "CLIENT_ERROR options flags too long\r\n"
	rMetaInvalidFlag     = "CLIENT_ERROR invalid flag\r\n"
	rMetaDuplicateFlag   = "CLIENT_ERROR duplicate flag\r\n"
	rMetaInvalidOrDup    = "CLIENT_ERROR invalid or duplicate flag\r\n"
	rMetaBadToken        = "CLIENT_ERROR bad token in command line format\r\n"
	rMetaBadKey          = "CLIENT_ERROR error decoding key\r\n"
	rMetaBadInitial      = "CLIENT_ERROR invalid numeric initial value\r\n"
	rMetaBadDelta        = "CLIENT_ERROR invalid numeric delta value\r\n"
	rMetaModeLength      = "CLIENT_ERROR incorrect length for M token\r\n"
	rMetaOpaqueTooLong   = "CLIENT_ERROR opaque token too long\r\n"
	rMetaSetMode         = "CLIENT_ERROR invalid mode for ms M token\r\n"
	rMetaArithMode       = "CLIENT_ERROR invalid mode for ma M token\r\n"
	rMetaNoMemoryNew     = "SERVER_ERROR Out of memory allocating new item\r\n"
)

// metaFlags are a meta command's flags as memcached's _meta_flag_preparse
// reads them. Every command accepts every flag it knows; each command uses
// the ones that mean something to it.
type metaFlags struct {
	key         []byte // the key, decoded when b is given
	binary      bool   // b
	decodedLen  int    // the length of the key b decoded
	quiet       bool   // q
	value       bool   // v
	noBump      bool   // u
	touch       bool   // T
	vivify      bool   // N
	stale       bool   // I
	removeValue bool   // x
	hasCAS      bool   // C
	mode        byte   // M
	exptime     int64  // T
	vivExptime  int64  // N
	recacheTTL  int64  // R
	clientFlags uint32 // F
	cas         uint64 // C
	casIn       uint64 // E
	delta       uint64 // D
	initial     uint64 // J
	opaque      []byte // the O token, O included
}

// parseMetaFlags reads the flag tokens toks into f and returns "" or the
// error reply, and the key: f.key, or with a b flag f.key decoded into kbuf.
// The caller stores the key in f, so that kbuf can stay on its stack. Like
// memcached it stops at the first unknown or repeated flag but reads on
// past a bad token, the last one named in the reply.
func parseMetaFlags(toks [][]byte, f *metaFlags, kbuf *[MaxKeyLen]byte) (string, []byte) {
	e := parseMetaTokens(toks, f, kbuf)
	if f.binary {
		return e, kbuf[:f.decodedLen]
	}
	return e, f.key
}

func parseMetaTokens(toks [][]byte, f *metaFlags, kbuf *[MaxKeyLen]byte) string {
	var seen [2]uint64
	bad := ""
	for _, tok := range toks {
		o := tok[0]
		if o >= 127 || seen[o>>6]&(1<<(o&63)) != 0 {
			return rMetaDuplicateFlag
		}
		seen[o>>6] |= 1 << (o & 63)
		arg := tok[1:]
		switch o {
		case 'b':
			f.decodedLen = base64Decode(kbuf[:], f.key)
			f.binary = true
			if f.decodedLen == 0 {
				bad = rMetaBadKey
			}
		case 'N':
			f.vivify = true
			if v, ok := safeStrtol(arg); ok {
				f.vivExptime = exptimeArg(v)
			} else {
				bad = rMetaBadToken
			}
		case 'T':
			if v, ok := safeStrtol(arg); ok {
				f.exptime, f.touch = exptimeArg(v), true
			} else {
				bad = rMetaBadToken
			}
		case 'R':
			if v, ok := safeStrtol(arg); ok {
				f.recacheTTL = exptimeArg(v)
			} else {
				bad = rMetaBadToken
			}
		case 'O':
			f.opaque = tok
		case 'P', 'L', 'k', 's', 't', 'c', 'f', 'l', 'h':
			// Return flags, read again when the reply is built; P and L
			// are proxy hints memcached ignores.
		case 'v':
			f.value = true
		case 'u':
			f.noBump = true
		case 'q':
			f.quiet = true
		case 'x':
			f.removeValue = true
		case 'F':
			if v, ok := safeStrtoul(arg); ok {
				f.clientFlags = uint32(v)
			} else if bad == "" {
				bad = rBadFormat // memcached names no reason for F
			}
		case 'C':
			if v, ok := safeStrtoull(arg); ok {
				f.cas, f.hasCAS = v, true
			} else {
				bad = rMetaBadToken
			}
		case 'E':
			if v, ok := safeStrtoull(arg); ok {
				f.casIn = v
			} else {
				bad = rMetaBadToken
			}
		case 'M':
			if len(tok) != 2 {
				bad = rMetaModeLength
			} else {
				f.mode = tok[1]
			}
		case 'J':
			if v, ok := safeStrtoull(arg); ok {
				f.initial = v
			} else {
				bad = rMetaBadInitial
			}
		case 'D':
			if v, ok := safeStrtoull(arg); ok {
				f.delta = v
			} else {
				bad = rMetaBadDelta
			}
		case 'I':
			f.stale = true
		default:
			return rMetaInvalidFlag
		}
	}
	return bad
}

// metaCommand runs a meta command: a two-letter command starting with m.
func (s *Server) metaCommand(pc *protoConn, rest []byte, t *[maxTokens][]byte, nt, lineLen int, out []byte) (int, []byte, action) {
	switch t[0][1] {
	case 'g':
		return lineLen, s.mgCmd(pc.fd, t, nt, out), actNone
	case 's':
		n, o := s.msCmd(pc, rest, t, nt, lineLen, out)
		return n, o, actNone
	case 'd':
		return lineLen, s.mdCmd(t, nt, out), actNone
	case 'a':
		return lineLen, s.maCmd(t, nt, out), actNone
	case 'n':
		// The reactor flushes what handle produced when it returns, so
		// mn needs nothing more to end a quiet pipeline.
		return lineLen, append(out, rMetaNoop...), actNone
	case 'e':
		return lineLen, s.meCmd(t, nt, out), actNone
	}
	return lineLen, append(out, rError...), actNone
}

// metaCheck applies the checks memcached makes before it reads a meta
// command's flags and returns "" or the error reply; tooLong is the reply
// for too many tokens, which mg words differently.
func metaCheck(t *[maxTokens][]byte, nt int, tooLong string) string {
	switch {
	case nt < 3:
		return rError
	case len(t[1]) > MaxKeyLen:
		return rBadFormat
	case nt > metaMaxTokens:
		return tooLong
	}
	return ""
}

// mgCmd runs mg <key> <flag>*.
func (s *Server) mgCmd(fd int, t *[maxTokens][]byte, nt int, out []byte) []byte {
	if e := metaCheck(t, nt, rMetaFlagsTooLongGet); e != "" {
		return append(out, e...)
	}
	toks := t[2 : nt-1]
	var kbuf [MaxKeyLen]byte
	f := metaFlags{key: t[1]}
	e, key := parseMetaFlags(toks, &f, &kbuf)
	if e != "" {
		return append(out, e...)
	}
	f.key = key
	if len(f.opaque) > metaMaxOpaque {
		return append(out, rMetaOpaqueTooLong...)
	}
	s.hot.observe(f.key)
	r := metaGetReq{noBump: f.noBump, touch: f.touch, vivify: f.vivify, casIn: f.casIn, binaryKey: f.binary}
	size := 0
	hit := s.cache.metaGet(f.key, &r, func(it lockedItem, created bool) {
		size = len(it.value())
		out = appendMetaHit(out, it, created, toks, &f)
	})
	if s.watch.wants(logFetchers) {
		s.logGet(fd, f.key, hit, size)
	}
	if hit || f.quiet {
		return out
	}
	// A miss echoes only the opaque and the key.
	out = append(out, "EN"...)
	out = appendMetaEcho(out, toks, f.key, f.binary)
	return append(out, rCRLF...)
}

// appendMetaHit appends mg's reply for a hit. It walks the flags in their
// order, as memcached does: T and N change the TTL where they stand, so a t
// before them reports the TTL the item had, and R compares the TTL as it is
// at that point.
func appendMetaHit(out []byte, it lockedItem, created bool, toks [][]byte, f *metaFlags) []byte {
	v := it.value()
	// C (memcached 1.6.40): a client holding this version needs no value.
	withValue := f.value && !(f.hasCAS && it.cas() == f.cas)
	if withValue {
		out = append(out, "VA "...)
		out = strconv.AppendInt(out, int64(len(v)), 10)
	} else {
		out = append(out, "HD"...)
	}
	tokenSent := it.has(bitWon)
	won := false
	for _, tok := range toks {
		switch tok[0] {
		case 'T':
			it.setExptime(f.exptime)
		case 'N':
			if created {
				it.setExptime(f.vivExptime)
				won = true
			}
		case 'R':
			if exp := it.expiry(); !tokenSent && !created && exp != 0 && exp < expiry(f.recacheTTL, it.now) {
				won = true
			}
		case 's':
			out = append(out, " s"...)
			out = strconv.AppendInt(out, int64(len(v)), 10)
		case 't':
			out = append(out, " t"...)
			out = strconv.AppendInt(out, it.ttl(), 10)
		case 'c':
			out = append(out, " c"...)
			out = strconv.AppendUint(out, it.cas(), 10)
		case 'f':
			out = append(out, " f"...)
			out = strconv.AppendUint(out, uint64(it.clientFlags()), 10)
		case 'l':
			out = append(out, " l"...)
			out = strconv.AppendUint(out, uint64(it.idle()), 10)
		case 'h':
			if it.has(bitFetched) {
				out = append(out, " h1"...)
			} else {
				out = append(out, " h0"...)
			}
		case 'O':
			out = append(out, ' ')
			out = append(out, tok...)
		case 'k':
			out = appendMetaKey(out, it.key(), it.has(bitKeyBinary))
		}
	}
	// memcached's order: Z (a token went out before), X (stale), then W;
	// the first fetch of a stale item wins unless a token went out.
	if tokenSent {
		out = append(out, " Z"...)
	}
	if it.has(bitStale) {
		out = append(out, " X"...)
		won = won || !tokenSent
	}
	if won {
		out = append(out, " W"...)
		it.mark(bitWon)
	}
	out = append(out, rCRLF...)
	if withValue {
		out = append(out, v...)
		out = append(out, rCRLF...)
	}
	return out
}

// appendMetaEcho appends the return flags every reply carries, hit or not:
// the opaque and the key.
func appendMetaEcho(out []byte, toks [][]byte, key []byte, binary bool) []byte {
	for _, tok := range toks {
		switch tok[0] {
		case 'O':
			out = append(out, ' ')
			out = append(out, tok...)
		case 'k':
			out = appendMetaKey(out, key, binary)
		}
	}
	return out
}

// appendMetaKey appends the k return flag: the key, or for a key that came
// base64-encoded its encoding followed by a b flag.
func appendMetaKey(out, key []byte, binary bool) []byte {
	out = append(out, " k"...)
	if !binary {
		return append(out, key...)
	}
	out = base64.StdEncoding.AppendEncode(out, key)
	return append(out, " b"...)
}

// msState is what an ms command keeps for its data block beyond what
// every storage command keeps (pendingStore): the flags only ms has, and
// the return flags to echo, so that the line need not stay buffered while a
// large value arrives.
type msState struct {
	stale      bool   // I
	vivify     bool   // N
	binaryKey  bool   // b
	casIn      uint64 // E
	vivExptime int64  // N's exptime
	// ret are the return flags among O, k, c and s, in request order.
	ret     [4]byte
	nret    uint8
	nopaque uint8
	opaque  [metaMaxOpaque]byte
}

// fill completes r with what only ms asks for. memcached removes the old
// item after any failed ms, whatever its mode, so that no stale value
// outlives it.
func (m *msState) fill(r *storeReq) {
	r.stale, r.vivify, r.vivExptime = m.stale, m.vivify, m.vivExptime
	r.casIn, r.binaryKey = m.casIn, m.binaryKey
	r.dropOnFail = true
}

// msKind maps ms's M token (0 when absent) to a store kind; false for a
// mode ms does not have.
func msKind(mode byte) (storeKind, bool) {
	switch mode {
	case 0, 'S':
		return storeSet, true
	case 'E':
		return storeAdd, true
	case 'A':
		return storeAppend, true
	case 'P':
		return storePrepend, true
	case 'R':
		return storeReplace, true
	}
	return 0, false
}

// msCmd runs ms <key> <datalen> <flag>*, whose data block follows the line.
// It returns how much of rest it consumed: the line alone when the block is
// still arriving or is refused, else the whole request.
func (s *Server) msCmd(pc *protoConn, rest []byte, t *[maxTokens][]byte, nt, lineLen int, out []byte) (int, []byte) {
	// Errors found before the data length is known leave the block unread,
	// to be parsed as commands, as memcached does.
	if e := metaCheck(t, nt, rMetaFlagsTooLong); e != "" {
		return lineLen, append(out, e...)
	}
	if nt == 3 {
		return lineLen, append(out, rBadFormat...)
	}
	vl, ok := safeStrtol(t[2])
	if !ok {
		return lineLen, append(out, rBadFormat...)
	}
	vlen, e := dataLen(vl)
	if e != "" {
		return lineLen, append(out, e...)
	}
	toks := t[3 : nt-1]
	var kbuf [MaxKeyLen]byte
	f := metaFlags{key: t[1]}
	var key []byte
	e, key = parseMetaFlags(toks, &f, &kbuf)
	f.key = key
	if e == "" && len(f.opaque) > metaMaxOpaque {
		e = rMetaOpaqueTooLong
	}
	kind, ok := msKind(f.mode)
	if e == "" && !ok {
		e = rMetaSetMode
	}
	if e == "" && s.tooLarge(len(f.key), vlen, f.clientFlags) {
		s.cache.refuse(&storeReq{key: f.key, dropOnFail: true})
		e = rTooLarge
	}
	if e != "" {
		// From here on memcached knows the length and swallows the block.
		pc.state, pc.swallow = swallowData, vlen+2
		return lineLen, append(out, e...)
	}
	// A set or replace with a CAS is memcached's cas command; append and
	// prepend test the CAS too, add ignores it.
	if f.hasCAS && (kind == storeSet || kind == storeReplace) {
		kind = storeCAS
	}
	s.hot.observe(f.key)
	pc.block = pendingStore{kind: kind, noreply: f.quiet, flags: f.clientFlags, exptime: f.exptime, cas: f.cas, vlen: vlen}
	m := msState{stale: f.stale, vivify: f.vivify, vivExptime: f.vivExptime, casIn: f.casIn, binaryKey: f.binary}
	for _, tok := range toks {
		switch tok[0] {
		case 'O', 'k', 'c', 's':
			m.ret[m.nret] = tok[0]
			m.nret++
		}
	}
	m.nopaque = uint8(copy(m.opaque[:], f.opaque))
	need := lineLen + vlen + 2
	if len(rest) >= need {
		return need, s.finishStore(pc, &m, f.key, rest[lineLen:need], out)
	}
	pc.block.ms = msPool.Get().(*msState)
	*pc.block.ms = m
	pc.awaitBlock(f.key)
	return lineLen, out
}

// metaCodes are the return codes every meta command reports alike; the
// commands answer the other results their own way.
var metaCodes = [...]string{
	resultOK:        "HD",
	resultNotStored: "NS",
	resultExists:    "EX",
	resultNotFound:  "NF",
}

// appendMetaCode appends res's return code; false means res has a
// command's own reply.
func appendMetaCode(out []byte, res result) ([]byte, bool) {
	if int(res) < len(metaCodes) {
		return append(out, metaCodes[res]...), true
	}
	return out, false
}

// msPool lends the state of an ms command to connections whose data block
// is still arriving.
var msPool = sync.Pool{New: func() any { return new(msState) }}

// appendMSReply appends ms's reply to the store that returned res, the new
// CAS cas and the stored length size.
func appendMSReply(out []byte, m *msState, quiet bool, res result, key []byte, cas uint64, size int) []byte {
	if res == resultOK && quiet {
		return out
	}
	if res == resultTooLarge {
		// Only a concatenation gets here (a value too large is refused
		// before it is read): memcached's joined item fails to allocate.
		res = resultNotStored
	}
	out, ok := appendMetaCode(out, res)
	if !ok {
		return append(out, rNoMemory...)
	}
	for _, r := range m.ret[:m.nret] {
		switch r {
		case 'O':
			out = append(out, ' ')
			out = append(out, m.opaque[:m.nopaque]...)
		case 'k':
			out = appendMetaKey(out, key, m.binaryKey)
		case 'c':
			out = append(out, " c"...)
			out = strconv.AppendUint(out, cas, 10)
		case 's':
			out = append(out, " s"...)
			out = strconv.AppendInt(out, int64(size), 10)
		}
	}
	return append(out, rCRLF...)
}

// parseKeyedFlags makes the checks md and ma share and reads their flags
// into f, whose key is t[1] and defaults are set, decoding a b key into
// kbuf. It returns the flag tokens and the key (the caller stores it in f,
// as for parseMetaFlags), or the error reply: md and ma name no reason for
// a bad flag.
func parseKeyedFlags(t *[maxTokens][]byte, nt int, f *metaFlags, kbuf *[MaxKeyLen]byte) ([][]byte, []byte, string) {
	if e := metaCheck(t, nt, rMetaFlagsTooLong); e != "" {
		return nil, nil, e
	}
	toks := t[2 : nt-1]
	e, key := parseMetaFlags(toks, f, kbuf)
	if e != "" {
		return nil, nil, rMetaInvalidOrDup
	}
	return toks, key, ""
}

// mdCmd runs md <key> <flag>*.
func (s *Server) mdCmd(t *[maxTokens][]byte, nt int, out []byte) []byte {
	var kbuf [MaxKeyLen]byte
	f := metaFlags{key: t[1]}
	toks, key, e := parseKeyedFlags(t, nt, &f, &kbuf)
	if e != "" {
		return append(out, e...)
	}
	f.key = key
	if len(f.opaque) > metaMaxOpaque {
		return append(out, rMetaOpaqueTooLong...)
	}
	r := deleteReq{
		key: f.key, hasCAS: f.hasCAS, cas: f.cas, casMissCounts: true,
		stale: f.stale, emptyValue: f.removeValue, flags: f.clientFlags,
		hasTTL: f.touch, exptime: f.exptime, casIn: f.casIn, binaryKey: f.binary,
	}
	s.hot.observe(f.key)
	res := s.cache.deleteItem(&r)
	if res == resultOK && f.quiet {
		return out
	}
	out, ok := appendMetaCode(out, res)
	if !ok {
		return append(out, rNoMemoryDelta...)
	}
	out = appendMetaEcho(out, toks, f.key, f.binary)
	return append(out, rCRLF...)
}

// maCmd runs ma <key> <flag>*.
func (s *Server) maCmd(t *[maxTokens][]byte, nt int, out []byte) []byte {
	var kbuf [MaxKeyLen]byte
	f := metaFlags{key: t[1], delta: 1}
	toks, key, e := parseKeyedFlags(t, nt, &f, &kbuf)
	if e != "" {
		return append(out, e...)
	}
	f.key = key
	var decr bool
	switch f.mode {
	case 0, 'I', '+':
	case 'D', '-':
		decr = true
	default:
		return append(out, rMetaArithMode...)
	}
	if len(f.opaque) > metaMaxOpaque {
		return append(out, rMetaOpaqueTooLong...)
	}
	r := arithReq{
		key: f.key, decr: decr, delta: f.delta, create: f.vivify, initial: f.initial,
		casIn: f.casIn, binaryKey: f.binary,
	}
	if f.hasCAS {
		r.cas = f.cas
	}
	s.hot.observe(f.key)
	start := len(out)
	res, _, _, created := s.cache.arith(&r, func(it lockedItem, created bool, n uint64) {
		out = appendMetaArith(out, it, created, n, toks, &f)
	})
	switch {
	case res == resultOK:
		if f.quiet {
			// T and N took effect; only the reply goes. (memcached 1.6.18
			// still answered an auto-created item; later releases do not.)
			out = out[:start]
		}
		return out
	case res == resultNonNumeric:
		return append(out, rNonNumeric...)
	case res == resultNoMemory && created:
		return append(out, rMetaNoMemoryNew...)
	}
	out, ok := appendMetaCode(out, res)
	if !ok {
		return append(out, rNoMemoryDelta...)
	}
	out = appendMetaEcho(out, toks, f.key, f.binary)
	return append(out, rCRLF...)
}

// appendMetaArith appends ma's reply for the number n, walking the flags in
// order as memcached does (a t before T reports the TTL before it).
func appendMetaArith(out []byte, it lockedItem, created bool, n uint64, toks [][]byte, f *metaFlags) []byte {
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], n, 10)
	if f.value {
		out = append(out, "VA "...)
		out = strconv.AppendInt(out, int64(len(d)), 10)
	} else {
		out = append(out, "HD"...)
	}
	for _, tok := range toks {
		switch tok[0] {
		case 'c':
			out = append(out, " c"...)
			out = strconv.AppendUint(out, it.cas(), 10)
		case 't':
			out = append(out, " t"...)
			out = strconv.AppendInt(out, it.ttl(), 10)
		case 'T':
			it.setExptime(f.exptime)
		case 'N':
			if created {
				it.setExptime(f.vivExptime)
			}
		case 'O':
			out = append(out, ' ')
			out = append(out, tok...)
		case 'k':
			out = appendMetaKey(out, f.key, f.binary)
		}
	}
	if f.value {
		out = append(out, rCRLF...)
		out = append(out, d...)
	}
	return append(out, rCRLF...)
}

// meCmd runs me <key> [b], memcached's human-readable dump of an item's
// metadata.
func (s *Server) meCmd(t *[maxTokens][]byte, nt int, out []byte) []byte {
	if nt < 3 || len(t[1]) > MaxKeyLen {
		return append(out, rBadFormat...)
	}
	key := t[1]
	var kbuf [MaxKeyLen]byte
	if nt >= 4 && len(t[2]) == 1 && t[2][0] == 'b' {
		n := base64Decode(kbuf[:], key)
		if n == 0 {
			return append(out, rBadFormat...)
		}
		key = kbuf[:n]
	}
	s.metaCmds.Add(1)
	info, ok := s.cache.debug(key)
	if !ok {
		return append(out, rMetaMissLine...)
	}
	out = append(out, "ME "...)
	if info.binary {
		out = base64.StdEncoding.AppendEncode(out, key)
	} else {
		out = append(out, key...)
	}
	out = append(out, " exp="...)
	out = strconv.AppendInt(out, int64(info.exp), 10)
	out = append(out, " la="...)
	out = strconv.AppendUint(out, uint64(info.idle), 10)
	out = append(out, " cas="...)
	out = strconv.AppendUint(out, info.cas, 10)
	if info.fetched {
		out = append(out, " fetch=yes"...)
	} else {
		out = append(out, " fetch=no"...)
	}
	// One slab class: emcache sizes items exactly (see stats items).
	out = append(out, " cls=1 size="...)
	out = strconv.AppendInt(out, int64(info.size), 10)
	return append(out, rCRLF...)
}

// base64Table maps a byte to its base64 value and every byte outside the
// alphabet to 0x80; '=' maps to 0, as in memcached's table.
var base64Table = func() (t [256]byte) {
	for i := range t {
		t[i] = 0x80
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range len(alphabet) {
		t[alphabet[i]] = byte(i)
	}
	t['='] = 0
	return t
}()

// base64Decode decodes src into dst as memcached's base64_decode does and
// returns the decoded length, 0 for a key it refuses. It is lenient as
// memcached is: bytes outside the alphabet are skipped, and the first
// padded block ends the input.
func base64Decode(dst, src []byte) int {
	count := 0
	for _, c := range src {
		if base64Table[c] != 0x80 {
			count++
		}
	}
	if count == 0 || count%4 != 0 || count/4*3 > len(dst) {
		return 0
	}
	var block [4]byte
	pos, n, pad := 0, 0, 0
	for _, c := range src {
		v := base64Table[c]
		if v == 0x80 {
			continue
		}
		if c == '=' {
			pad++
		}
		block[n] = v
		n++
		if n < 4 {
			continue
		}
		dst[pos] = block[0]<<2 | block[1]>>4
		dst[pos+1] = block[1]<<4 | block[2]>>2
		dst[pos+2] = block[2]<<6 | block[3]
		pos += 3
		n = 0
		if pad > 0 {
			if pad > 2 {
				return 0
			}
			return pos - pad
		}
	}
	return pos
}
