package emcache

import (
	"bytes"
	"encoding/binary"
	"slices"
	"time"
)

// This file serves memcached's binary protocol (memcached's proto_bin.c and
// protocol_binary.h). A connection speaks it when its first byte is the
// request magic, or always with ServerConfig.Protocol "binary". Requests are
// frames: a 24-byte header, then extras, key and value, whose lengths the
// header gives. handle's bounds hold here too: a frame is checked from its
// header alone, a body is buffered only when it can be served (at most the
// largest item plus its extras), and a refused body is discarded as it
// streams in.

// Frame layout and limits.
const (
	binReqMagic  = 0x80
	binResMagic  = 0x81
	binHeaderLen = 24
	// binMaxMechLen is memcached's MAX_SASL_MECH_LEN.
	binMaxMechLen = 32
	// binNoCreate in an increment's expiration means "do not create": a
	// miss is then a miss instead of storing the initial value.
	binNoCreate = 0xffffffff
)

// Opcodes (protocol_binary.h). The quiet ones (…Q) answer only errors, or,
// for gets, only hits.
const (
	binOpGet        = 0x00
	binOpSet        = 0x01
	binOpAdd        = 0x02
	binOpReplace    = 0x03
	binOpDelete     = 0x04
	binOpIncrement  = 0x05
	binOpDecrement  = 0x06
	binOpQuit       = 0x07
	binOpFlush      = 0x08
	binOpGetQ       = 0x09
	binOpNoop       = 0x0a
	binOpVersion    = 0x0b
	binOpGetK       = 0x0c
	binOpGetKQ      = 0x0d
	binOpAppend     = 0x0e
	binOpPrepend    = 0x0f
	binOpStat       = 0x10
	binOpSetQ       = 0x11
	binOpAddQ       = 0x12
	binOpReplaceQ   = 0x13
	binOpDeleteQ    = 0x14
	binOpIncrementQ = 0x15
	binOpDecrementQ = 0x16
	binOpQuitQ      = 0x17
	binOpFlushQ     = 0x18
	binOpAppendQ    = 0x19
	binOpPrependQ   = 0x1a
	binOpTouch      = 0x1c
	binOpGAT        = 0x1d
	binOpGATQ       = 0x1e
	binOpSASLList   = 0x20
	binOpSASLAuth   = 0x21
	binOpSASLStep   = 0x22
	binOpGATK       = 0x23
	binOpGATKQ      = 0x24
	// binOpUnknown stands for every opcode memcached does not serve
	// (verbosity, the range operations, anything undefined).
	binOpUnknown = 0xff
)

// Response statuses (protocol_binary_response_status).
const (
	binOK           uint16 = 0x00
	binNotFound     uint16 = 0x01
	binExists       uint16 = 0x02
	binTooLarge     uint16 = 0x03
	binInvalid      uint16 = 0x04
	binNotStored    uint16 = 0x05
	binNonNumeric   uint16 = 0x06
	binAuthError    uint16 = 0x20
	binAuthContinue uint16 = 0x21
	binUnknownCmd   uint16 = 0x81
	binNoMemory     uint16 = 0x82
)

// binStatusText is the body memcached's write_bin_error sends with a status.
func binStatusText(status uint16) string {
	switch status {
	case binNotFound:
		return "Not found"
	case binExists:
		return "Data exists for key."
	case binTooLarge:
		return "Too large."
	case binInvalid:
		return "Invalid arguments"
	case binNotStored:
		return "Not stored."
	case binNonNumeric:
		return "Non-numeric server-side value for incr or decr"
	case binAuthError:
		return "Auth failure."
	case binUnknownCmd:
		return "Unknown command"
	case binNoMemory:
		return "Out of memory"
	}
	return ""
}

// binNoMemoryStore is the text memcached sends when it cannot allocate an
// item for a store (its out_of_memory with the SERVER_ERROR prefix cut).
const binNoMemoryStore = "Out of memory allocating item"

// binConn is the binary protocol's part of a connection's parse state.
type binConn struct {
	// swallow is how many bytes of a refused request body are still to
	// come; they are discarded as they arrive.
	swallow int64
}

// binHeader is a request header, host order.
type binHeader struct {
	opcode  uint8
	extlen  uint8
	keylen  uint16
	bodylen uint32
	opaque  uint32
	cas     uint64
}

func parseBinHeader(b []byte) binHeader {
	return binHeader{
		opcode:  b[1],
		keylen:  binary.BigEndian.Uint16(b[2:]),
		extlen:  b[4],
		bodylen: binary.BigEndian.Uint32(b[8:]),
		opaque:  binary.BigEndian.Uint32(b[12:]),
		cas:     binary.BigEndian.Uint64(b[16:]),
	}
}

// binBase maps an opcode to the command it runs and whether it is quiet.
func binBase(op uint8) (base uint8, quiet bool) {
	switch op {
	case binOpGet, binOpSet, binOpAdd, binOpReplace, binOpDelete, binOpIncrement,
		binOpDecrement, binOpQuit, binOpFlush, binOpNoop, binOpVersion, binOpGetK,
		binOpAppend, binOpPrepend, binOpStat, binOpTouch, binOpGAT, binOpGATK,
		binOpSASLList, binOpSASLAuth, binOpSASLStep:
		return op, false
	case binOpGetQ:
		return binOpGet, true
	case binOpGetKQ:
		return binOpGetK, true
	case binOpSetQ:
		return binOpSet, true
	case binOpAddQ:
		return binOpAdd, true
	case binOpReplaceQ:
		return binOpReplace, true
	case binOpDeleteQ:
		return binOpDelete, true
	case binOpIncrementQ:
		return binOpIncrement, true
	case binOpDecrementQ:
		return binOpDecrement, true
	case binOpQuitQ:
		return binOpQuit, true
	case binOpFlushQ:
		return binOpFlush, true
	case binOpAppendQ:
		return binOpAppend, true
	case binOpPrependQ:
		return binOpPrepend, true
	case binOpGATQ:
		return binOpGAT, true
	case binOpGATKQ:
		return binOpGATK, true
	}
	return binOpUnknown, false
}

// binWellFormed applies memcached's per-command checks of the header's
// lengths (dispatch_bin_command); a request failing them is a protocol
// error, answered with Invalid arguments before the connection closes.
func binWellFormed(base uint8, h *binHeader) bool {
	ext, key, body := uint32(h.extlen), uint32(h.keylen), h.bodylen
	switch base {
	case binOpVersion, binOpNoop, binOpQuit, binOpSASLList:
		return ext == 0 && key == 0 && body == 0
	case binOpFlush:
		return key == 0 && body == ext && (ext == 0 || ext == 4)
	case binOpSet, binOpAdd, binOpReplace:
		return ext == 8 && key != 0
	case binOpGet, binOpGetK, binOpDelete:
		return ext == 0 && key != 0 && body == key
	case binOpIncrement, binOpDecrement:
		return ext == 20 && key != 0 && body == key+ext
	case binOpAppend, binOpPrepend:
		return ext == 0 && key != 0
	case binOpStat:
		return ext == 0
	case binOpSASLAuth, binOpSASLStep:
		return ext == 0 && key != 0
	case binOpTouch, binOpGAT, binOpGATK:
		return ext == 4 && key != 0
	}
	return true
}

// binAuthExempt lists what an unauthenticated SASL connection may send.
func binAuthExempt(op uint8) bool {
	switch op {
	case binOpSASLList, binOpSASLAuth, binOpSASLStep, binOpVersion:
		return true
	}
	return false
}

// appendBinHeader appends a response header. The opcode and opaque are the
// request's, unchanged: clients match responses to requests by them.
func appendBinHeader(out []byte, h *binHeader, status uint16, keylen, extlen, bodylen int, cas uint64) []byte {
	out = append(out, binResMagic, h.opcode, byte(keylen>>8), byte(keylen), byte(extlen), 0, byte(status>>8), byte(status))
	out = binary.BigEndian.AppendUint32(out, uint32(bodylen))
	out = binary.BigEndian.AppendUint32(out, h.opaque)
	return binary.BigEndian.AppendUint64(out, cas)
}

// appendBinError appends an error response with memcached's text for it.
func appendBinError(out []byte, h *binHeader, status uint16) []byte {
	return appendBinText(out, h, status, binStatusText(status))
}

// appendBinText appends a response whose body is text and whose CAS is 0.
func appendBinText(out []byte, h *binHeader, status uint16, text string) []byte {
	out = appendBinHeader(out, h, status, 0, 0, len(text), 0)
	return append(out, text...)
}

// handleBinary is handle for a binary connection: the same contract, with
// frames instead of lines.
func (s *Server) handleBinary(pc *protoConn, in, out []byte, maxReqs int) (n int, outNew []byte, reqs int, act action) {
	limit := s.cfg.MaxOutput
	if limit <= 0 {
		limit = defaultGetOutput
	}
	for {
		if pc.bin.swallow > 0 {
			k := int(min(int64(len(in)-n), pc.bin.swallow))
			n += k
			pc.bin.swallow -= int64(k)
			if pc.bin.swallow > 0 {
				return n, out, reqs, actNone
			}
		}
		if reqs >= maxReqs || len(in)-n < binHeaderLen {
			return n, out, reqs, actNone
		}
		k, o, a := s.binRequest(pc, in[n:], out)
		if k == 0 {
			return n, out, reqs, actNone // the rest of the frame is still to come
		}
		n += k
		out = o
		reqs++
		if a != actNone {
			return n, out, reqs, a
		}
		if len(out) >= limit && n < len(in) {
			// Replies piled up (a run of large GETKQ hits): yield as a
			// spent -R budget does so that the reactor sends them first.
			return n, out, maxReqs, actNone
		}
	}
}

// binRequest runs the request at the start of b, which holds at least a
// header. It returns how much of b it consumed, 0 when it needs more of the
// frame; a refused body left unread is then being swallowed.
func (s *Server) binRequest(pc *protoConn, b, out []byte) (int, []byte, action) {
	if b[0] != binReqMagic {
		// memcached closes without a word: nothing after this can be
		// framed.
		return binHeaderLen, out, actClose
	}
	h := parseBinHeader(b)
	extlen, keylen, bodylen := int64(h.extlen), int64(h.keylen), int64(h.bodylen)
	if keylen+extlen > bodylen {
		return binHeaderLen, appendBinError(out, &h, binUnknownCmd), actClose
	}
	if s.cfg.SASL && !pc.auth.authed && !binAuthExempt(h.opcode) {
		return binHeaderLen, appendBinError(out, &h, binAuthError), actClose
	}
	if keylen > MaxKeyLen {
		return binHeaderLen, appendBinError(out, &h, binInvalid), actClose
	}
	base, quiet := binBase(h.opcode)
	pc.count(binCmdKind(base))
	if !binWellFormed(base, &h) {
		return binHeaderLen, appendBinError(out, &h, binInvalid), actClose
	}
	head := binHeaderLen + int(extlen+keylen) // header, extras and key
	vlen := bodylen - extlen - keylen

	// Requests whose body may be refused are decided before it is read.
	switch base {
	case binOpUnknown:
		pc.bin.swallow = bodylen
		return binHeaderLen, appendBinError(out, &h, binUnknownCmd), actNone
	case binOpSet, binOpAdd, binOpReplace, binOpAppend, binOpPrepend:
		var flags uint32
		if extlen >= 4 && len(b) >= binHeaderLen+4 {
			flags = binary.BigEndian.Uint32(b[binHeaderLen:])
		}
		if vlen > int64(s.maxItemSize()) || s.tooLarge(int(keylen), int(vlen), flags) {
			if len(b) < head {
				return 0, out, actNone
			}
			// As memcached, a set refused for its size also drops the
			// key's old value, so no client reads a stale one.
			s.cache.refuse(&storeReq{key: b[binHeaderLen+extlen : head], dropOnFail: base == binOpSet, uncountedRefusal: true})
			pc.bin.swallow = vlen
			return head, appendBinError(out, &h, binTooLarge), actNone
		}
	case binOpSASLList, binOpSASLAuth, binOpSASLStep:
		if !s.cfg.SASL {
			pc.bin.swallow = bodylen
			return binHeaderLen, appendBinError(out, &h, binUnknownCmd), actNone
		}
		if base == binOpSASLList {
			break
		}
		if keylen > binMaxMechLen {
			pc.bin.swallow = bodylen
			return binHeaderLen, appendBinError(out, &h, binInvalid), actNone
		}
		if vlen > int64(s.maxItemSize()) || s.tooLarge(int(keylen), int(vlen), 0) {
			pc.bin.swallow = bodylen
			return binHeaderLen, appendBinError(out, &h, binNoMemory), actNone
		}
	case binOpStat:
		// A value after the group name means nothing: drop it.
		if len(b) < head {
			return 0, out, actNone
		}
		pc.bin.swallow = vlen
		return head, s.binStat(out, &h, b[binHeaderLen:head]), actNone
	}

	// A value the command has no use for (TOUCH and GAT do not forbid
	// one) is dropped rather than buffered.
	end, unused := head, vlen
	switch base {
	case binOpSet, binOpAdd, binOpReplace, binOpAppend, binOpPrepend, binOpSASLAuth, binOpSASLStep:
		end, unused = head+int(vlen), 0
	}
	if len(b) < end {
		return 0, out, actNone
	}
	pc.bin.swallow = unused
	ext := b[binHeaderLen : binHeaderLen+extlen]
	key := b[binHeaderLen+extlen : head]
	val := b[head:end]

	switch base {
	case binOpGet, binOpGetK:
		return end, s.binGet(pc.fd, out, &h, key, base == binOpGetK, quiet, false, 0), actNone
	case binOpGAT, binOpGATK:
		exp := int64(binary.BigEndian.Uint32(ext))
		return end, s.binGet(pc.fd, out, &h, key, base == binOpGATK, quiet, true, exp), actNone
	case binOpTouch:
		s.hot.observe(key)
		return end, s.binTouch(out, &h, key, int64(binary.BigEndian.Uint32(ext))), actNone
	case binOpSet, binOpAdd, binOpReplace, binOpAppend, binOpPrepend:
		if base != binOpAppend && base != binOpPrepend {
			s.prefixes.record(key, prefixSet, false)
		}
		s.hot.observe(key)
		return end, s.binStore(pc.fd, out, &h, base, quiet, ext, key, val), actNone
	case binOpDelete:
		s.prefixes.record(key, prefixDel, false)
		s.hot.observe(key)
		return end, s.binDelete(out, &h, key, quiet), actNone
	case binOpIncrement, binOpDecrement:
		s.hot.observe(key)
		return end, s.binDelta(out, &h, base == binOpIncrement, quiet, ext, key), actNone
	case binOpFlush:
		return end, s.binFlush(out, &h, quiet, ext), actNone
	case binOpNoop:
		return end, appendBinHeader(out, &h, binOK, 0, 0, 0, 0), actNone
	case binOpVersion:
		return end, appendBinText(out, &h, binOK, Version), actNone
	case binOpQuit:
		if !quiet {
			out = appendBinHeader(out, &h, binOK, 0, 0, 0, 0)
		}
		return end, out, actQuit
	case binOpSASLList, binOpSASLAuth, binOpSASLStep:
		return end, s.binSASL(pc, out, &h, base, key, val), actNone
	}
	// Unreachable: every base opcode is served above.
	return end, appendBinError(out, &h, binUnknownCmd), actNone
}

// binGet serves GET, GETK, GAT and GATK and their quiet forms. A hit copies
// the value from the cache into out under the shard lock and allocates
// nothing.
func (s *Server) binGet(fd int, out []byte, h *binHeader, key []byte, withKey, quiet, touch bool, exp int64) []byte {
	size := 0
	hit := s.cache.view(key, touch, exp, func(v []byte, flags, _ uint32, cas uint64) {
		size = len(v)
		kl := 0
		if withKey {
			kl = len(key)
		}
		out = slices.Grow(out, binHeaderLen+4+kl+len(v))
		out = appendBinHeader(out, h, binOK, kl, 4, 4+kl+len(v), cas)
		out = binary.BigEndian.AppendUint32(out, flags)
		if withKey {
			out = append(out, key...)
		}
		out = append(out, v...)
	})
	s.prefixes.record(key, prefixGet, hit == resultOK)
	s.hot.observe(key)
	if s.watch.wants(logFetchers) {
		s.logGet(fd, key, hit == resultOK, size)
	}
	switch {
	case hit == resultOK || quiet:
		return out
	case withKey:
		// memcached answers a keyed miss with the key instead of a text.
		out = appendBinHeader(out, h, binNotFound, len(key), 0, len(key), 0)
		return append(out, key...)
	}
	return appendBinError(out, h, binNotFound)
}

// binTouch serves TOUCH, which answers with the item's flags.
func (s *Server) binTouch(out []byte, h *binHeader, key []byte, exp int64) []byte {
	res := s.cache.view(key, true, exp, func(_ []byte, flags, _ uint32, cas uint64) {
		out = appendBinHeader(out, h, binOK, 0, 4, 4, cas)
		out = binary.BigEndian.AppendUint32(out, flags)
	})
	if res == resultOK {
		return out
	}
	return appendBinError(out, h, binNotFound)
}

// binStoreKind is the store kind of a storage opcode.
func binStoreKind(base uint8) storeKind {
	switch base {
	case binOpAdd:
		return storeAdd
	case binOpReplace:
		return storeReplace
	case binOpAppend:
		return storeAppend
	case binOpPrepend:
		return storePrepend
	}
	return storeSet
}

// binStore serves SET, ADD, REPLACE, APPEND and PREPEND. A CAS in the
// request makes any of them conditional on the item's CAS, as in memcached.
func (s *Server) binStore(fd int, out []byte, h *binHeader, base uint8, quiet bool, ext, key, val []byte) []byte {
	r := storeReq{kind: binStoreKind(base), key: key, value: val}
	if !r.kind.concat() {
		r.flags = binary.BigEndian.Uint32(ext)
		r.exptime = int64(binary.BigEndian.Uint32(ext[4:]))
	}
	// memcached makes a set, add or replace with a CAS a cas command
	// (process_bin_update); with CAS disabled it drops the request's CAS.
	if h.cas != 0 && !s.cache.noCAS {
		r.cas = h.cas
		if !r.kind.concat() {
			r.kind = storeCAS
		}
	}
	r.dropOnFail = r.kind == storeSet
	r.uncountedRefusal = true
	if s.watch.wants(logFetchers) {
		s.logStoreLookup(fd, key)
	}
	res, cas, size := s.cache.store(&r)
	s.hot.stored(res, key, size)
	if s.watch.wants(logMutations) {
		s.logStore(fd, key, res, r.kind, r.exptime, len(val))
	}
	switch {
	case res == resultOK && quiet:
		return out
	case res == resultOK:
		return appendBinHeader(out, h, binOK, 0, 0, 0, cas)
	case res == resultExists:
		return appendBinError(out, h, binExists)
	case res == resultNotFound:
		return appendBinError(out, h, binNotFound)
	case r.kind.concat():
		// memcached has one answer for every append that did not happen.
		return appendBinError(out, h, binNotStored)
	case res == resultTooLarge:
		return appendBinError(out, h, binTooLarge)
	case res == resultNoMemory:
		return appendBinText(out, h, binNoMemory, binNoMemoryStore)
	case res == resultNotStored && r.kind == storeAdd:
		return appendBinError(out, h, binExists)
	case res == resultNotStored && r.kind == storeReplace:
		return appendBinError(out, h, binNotFound)
	}
	return appendBinError(out, h, binNotStored)
}

// binDelete serves DELETE; a CAS makes it conditional.
func (s *Server) binDelete(out []byte, h *binHeader, key []byte, quiet bool) []byte {
	switch s.cache.deleteItem(&deleteReq{key: key, hasCAS: h.cas != 0, cas: h.cas}) {
	case resultOK:
		if quiet {
			return out
		}
		return appendBinHeader(out, h, binOK, 0, 0, 0, 0)
	case resultExists:
		return appendBinError(out, h, binExists)
	}
	return appendBinError(out, h, binNotFound)
}

// binDelta serves INCREMENT and DECREMENT. Their extras are the delta, the
// initial value stored on a miss and its expiration, binNoCreate for none.
func (s *Server) binDelta(out []byte, h *binHeader, incr, quiet bool, ext, key []byte) []byte {
	exp := binary.BigEndian.Uint32(ext[16:])
	r := arithReq{
		key: key, decr: !incr, delta: binary.BigEndian.Uint64(ext), cas: h.cas,
		create: exp != binNoCreate, initial: binary.BigEndian.Uint64(ext[8:]), exptime: int64(exp),
	}
	res, v, cas, _ := s.cache.arith(&r, nil)
	switch res {
	case resultOK:
		if quiet {
			return out
		}
		out = appendBinHeader(out, h, binOK, 0, 0, 8, cas)
		return binary.BigEndian.AppendUint64(out, v)
	case resultNotFound:
		return appendBinError(out, h, binNotFound)
	case resultExists:
		return appendBinError(out, h, binExists)
	case resultNonNumeric:
		return appendBinError(out, h, binNonNumeric)
	case resultNoMemory:
		return appendBinText(out, h, binNoMemory, "Out of memory incrementing value")
	}
	return appendBinError(out, h, binNotStored)
}

// binFlush serves FLUSH, whose optional extras delay it. memcached answers
// a flush disabled by -F with an authentication error.
func (s *Server) binFlush(out []byte, h *binHeader, quiet bool, ext []byte) []byte {
	if s.cfg.DisableFlush {
		return appendBinError(out, h, binAuthError)
	}
	var exp int64
	if len(ext) == 4 {
		exp = int64(binary.BigEndian.Uint32(ext))
	}
	var delay time.Duration
	switch {
	case exp <= 0:
	case exp > relativeExptimeMax:
		// An absolute time, on the cache's clock.
		delay = time.Duration(exp-s.cache.unixNow()) * time.Second
	default:
		delay = time.Duration(exp) * time.Second
	}
	s.cache.FlushAll(delay)
	if quiet {
		return out
	}
	return appendBinHeader(out, h, binOK, 0, 0, 0, 0)
}

// binStat serves STAT: one packet per statistic, then one with an empty key.
// group selects what `stats <group>` shows in the text protocol; the text
// protocol's own generator produces the lines, so both always agree.
func (s *Server) binStat(out []byte, h *binHeader, group []byte) []byte {
	line := append([]byte("stats "), group...)
	if z := bytes.IndexByte(line, 0); z >= 0 {
		line = line[:z]
	}
	var t [maxTokens][]byte
	nt := tokenize(line, &t)
	sub := ""
	if nt > 2 {
		sub = string(t[1])
	}
	switch {
	case sub == "conns":
		// memcached serves stats conns in the text protocol only.
		return appendBinError(out, h, binNotFound)
	case sub == "detail" && nt == 4 && string(t[2]) == "dump":
		// memcached sends the text dump as the value of one stat.
		dump := s.prefixes.appendDump(nil)
		out = appendBinHeader(out, h, binOK, len("detailed"), 0, len("detailed")+len(dump), 0)
		out = append(out, "detailed"...)
		out = append(out, dump...)
		return appendBinHeader(out, h, binOK, 0, 0, 0, 0)
	}
	text := s.statsCmd(&t, nt, nil)
	// sizes_disable is memcached's one stats reply without END.
	ok := sub == "sizes_disable"
	for len(text) > 0 {
		nl := bytes.Index(text, []byte(rCRLF))
		if nl < 0 {
			break
		}
		l := text[:nl]
		text = text[nl+len(rCRLF):]
		if stat, isStat := bytes.CutPrefix(l, []byte("STAT ")); isStat {
			name, value, _ := bytes.Cut(stat, []byte(" "))
			out = appendBinHeader(out, h, binOK, len(name), 0, len(name)+len(value), 0)
			out = append(out, name...)
			out = append(out, value...)
			continue
		}
		// END, or the RESET and OK of stats reset and stats detail.
		ok = string(l) == "END" || string(l) == "RESET" || string(l) == "OK"
		break
	}
	if !ok {
		// An unknown group, or a refused one: memcached's answer to both.
		return appendBinError(out, h, binNotFound)
	}
	return appendBinHeader(out, h, binOK, 0, 0, 0, 0)
}

// binaryFirst reports whether a connection whose first byte is b speaks the
// binary protocol: memcached's negotiation, unless Protocol forces one.
func (s *Server) binaryFirst(b byte) bool {
	switch s.cfg.Protocol {
	case "binary":
		return true
	case "ascii":
		return false
	}
	return b == binReqMagic
}
