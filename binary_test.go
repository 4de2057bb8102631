package emcache

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// binMsg is a binary request or response in host order.
type binMsg struct {
	magic  uint8 // 0 = the request magic
	op     uint8
	status uint16 // responses only
	ext    []byte
	key    []byte
	val    []byte
	cas    uint64
	opaque uint32
}

// binAnyCAS in an expected response stands for any non-zero CAS.
const binAnyCAS = math.MaxUint64

func (m binMsg) encode() []byte {
	magic := m.magic
	if magic == 0 {
		magic = binReqMagic
	}
	b := []byte{magic, m.op, 0, 0, byte(len(m.ext)), 0, byte(m.status >> 8), byte(m.status)}
	binary.BigEndian.PutUint16(b[2:], uint16(len(m.key)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.ext)+len(m.key)+len(m.val)))
	b = binary.BigEndian.AppendUint32(b, m.opaque)
	b = binary.BigEndian.AppendUint64(b, m.cas)
	b = append(b, m.ext...)
	b = append(b, m.key...)
	return append(b, m.val...)
}

// Request builders.
func bReq(op uint8, key string) binMsg {
	return binMsg{op: op, key: []byte(key), opaque: uint32(op) + 1000}
}

func bStore(op uint8, key, val string, flags, exp uint32) binMsg {
	m := bReq(op, key)
	m.ext = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, flags), exp)
	m.val = []byte(val)
	return m
}

func bConcat(op uint8, key, val string) binMsg {
	m := bReq(op, key)
	m.val = []byte(val)
	return m
}

func bDelta(op uint8, key string, delta, initial uint64, exp uint32) binMsg {
	m := bReq(op, key)
	m.ext = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, delta), initial)
	m.ext = binary.BigEndian.AppendUint32(m.ext, exp)
	return m
}

func bExp(op uint8, key string, exp uint32) binMsg {
	m := bReq(op, key)
	m.ext = binary.BigEndian.AppendUint32(nil, exp)
	return m
}

func (m binMsg) withCAS(cas uint64) binMsg { m.cas = cas; return m }

// Expected responses. They echo the request's opcode and opaque.
func bOK(req binMsg) binMsg {
	return binMsg{magic: binResMagic, op: req.op, opaque: req.opaque, cas: binAnyCAS}
}

func bOKNoCAS(req binMsg) binMsg {
	r := bOK(req)
	r.cas = 0
	return r
}

func bErr(req binMsg, status uint16) binMsg {
	return binMsg{magic: binResMagic, op: req.op, opaque: req.opaque, status: status, val: []byte(binStatusText(status))}
}

func bHit(req binMsg, flags uint32, withKey bool, val string) binMsg {
	r := bOK(req)
	r.ext = binary.BigEndian.AppendUint32(nil, flags)
	if withKey {
		r.key = req.key
	}
	r.val = []byte(val)
	return r
}

func bKeyMiss(req binMsg) binMsg {
	return binMsg{magic: binResMagic, op: req.op, opaque: req.opaque, status: binNotFound, key: req.key}
}

func bNumber(req binMsg, v uint64) binMsg {
	r := bOK(req)
	r.val = binary.BigEndian.AppendUint64(nil, v)
	return r
}

func readBin(t testing.TB, r io.Reader) binMsg {
	t.Helper()
	var h [binHeaderLen]byte
	_, err := io.ReadFull(r, h[:])
	require.NoError(t, err)
	m := binMsg{
		magic:  h[0],
		op:     h[1],
		status: binary.BigEndian.Uint16(h[6:]),
		cas:    binary.BigEndian.Uint64(h[16:]),
		opaque: binary.BigEndian.Uint32(h[12:]),
	}
	keylen, extlen := int(binary.BigEndian.Uint16(h[2:])), int(h[4])
	body := make([]byte, binary.BigEndian.Uint32(h[8:]))
	_, err = io.ReadFull(r, body)
	require.NoError(t, err)
	require.LessOrEqual(t, extlen+keylen, len(body))
	m.ext, m.key, m.val = body[:extlen], body[extlen:extlen+keylen], body[extlen+keylen:]
	return m
}

func requireBin(t testing.TB, want, got binMsg, msgAndArgs ...any) {
	t.Helper()
	if want.cas == binAnyCAS {
		require.NotZero(t, got.cas, msgAndArgs...)
		want.cas = got.cas
	}
	norm := func(m binMsg) binMsg {
		for _, b := range []*[]byte{&m.ext, &m.key, &m.val} {
			if len(*b) == 0 {
				*b = nil
			}
		}
		return m
	}
	require.Equal(t, norm(want), norm(got), msgAndArgs...)
}

// binRoundTrip sends reqs in one write followed by a VERSION, which even an
// unauthenticated SASL connection may send, and checks that exactly want
// comes back before the VERSION's reply.
func binRoundTrip(t testing.TB, conn net.Conn, reqs []binMsg, want []binMsg) []binMsg {
	t.Helper()
	var buf []byte
	for _, r := range reqs {
		buf = append(buf, r.encode()...)
	}
	sentinel := bReq(binOpVersion, "")
	sentinel.opaque = 0x5e771e
	_, err := conn.Write(append(buf, sentinel.encode()...))
	require.NoError(t, err)
	var got []binMsg
	for i := range want {
		m := readBin(t, conn)
		requireBin(t, want[i], m, "response %d", i)
		got = append(got, m)
	}
	reply := bOKNoCAS(sentinel)
	reply.val = []byte(Version)
	requireBin(t, reply, readBin(t, conn), "unexpected response instead of the VERSION's")
	return got
}

// requireBinClosed checks that the server sends want and then closes.
func requireBinClosed(t testing.TB, conn net.Conn, want ...binMsg) {
	t.Helper()
	for _, w := range want {
		requireBin(t, w, readBin(t, conn))
	}
	rest, err := io.ReadAll(conn)
	require.NoError(t, err)
	require.Empty(t, rest)
}

func startBinServer(t testing.TB, scfg ServerConfig, ccfg Config) (*Server, string) {
	t.Helper()
	return startProtoServer(t, scfg, ccfg)
}

func TestBinaryOpcodes(t *testing.T) {
	s, addr := startBinServer(t, ServerConfig{}, Config{})
	c := s.cache
	set := func(key, val string, flags uint32) {
		_, err := c.Store([]byte(key), []byte(val), StoreOptions{Flags: flags})
		require.NoError(t, err)
	}
	type step struct {
		reqs []binMsg
		want []binMsg
	}
	tests := []struct {
		name  string
		setup func()
		steps func() []step
		check func(t *testing.T)
	}{
		{name: "get", setup: func() { set("get-hit", "hello", 7) }, steps: func() []step {
			hit, miss := bReq(binOpGet, "get-hit"), bReq(binOpGet, "get-miss")
			return []step{{[]binMsg{hit, miss}, []binMsg{bHit(hit, 7, false, "hello"), bErr(miss, binNotFound)}}}
		}},
		{name: "getq", setup: func() { set("getq-hit", "v", 1) }, steps: func() []step {
			hit, miss := bReq(binOpGetQ, "getq-hit"), bReq(binOpGetQ, "getq-miss")
			return []step{{[]binMsg{miss, hit, miss}, []binMsg{bHit(hit, 1, false, "v")}}}
		}},
		{name: "getk", setup: func() { set("getk-hit", "v", 2) }, steps: func() []step {
			hit, miss := bReq(binOpGetK, "getk-hit"), bReq(binOpGetK, "getk-miss")
			return []step{{[]binMsg{hit, miss}, []binMsg{bHit(hit, 2, true, "v"), bKeyMiss(miss)}}}
		}},
		{name: "getkq multi-get", setup: func() { set("mg1", "one", 1); set("mg3", "three", 3) }, steps: func() []step {
			k1, k2, k3 := bReq(binOpGetKQ, "mg1"), bReq(binOpGetKQ, "mg2"), bReq(binOpGetKQ, "mg3")
			return []step{{[]binMsg{k1, k2, k3}, []binMsg{bHit(k1, 1, true, "one"), bHit(k3, 3, true, "three")}}}
		}},
		{name: "set", steps: func() []step {
			s1 := bStore(binOpSet, "set-k", "v1", 5, 0)
			g := bReq(binOpGet, "set-k")
			return []step{{[]binMsg{s1, g}, []binMsg{bOK(s1), bHit(g, 5, false, "v1")}}}
		}},
		{name: "setq", steps: func() []step {
			s1, s2 := bStore(binOpSetQ, "setq-k", "v1", 0, 0), bStore(binOpSetQ, "setq-k", "v2", 9, 0)
			g := bReq(binOpGet, "setq-k")
			return []step{{[]binMsg{s1, s2, g}, []binMsg{bHit(g, 9, false, "v2")}}}
		}},
		{name: "add", setup: func() { set("add-old", "x", 0) }, steps: func() []step {
			a, old, oldQ, newQ := bStore(binOpAdd, "add-new", "v", 0, 0), bStore(binOpAdd, "add-old", "v", 0, 0),
				bStore(binOpAddQ, "add-old", "v", 0, 0), bStore(binOpAddQ, "addq-new", "v", 0, 0)
			return []step{{[]binMsg{a, old, oldQ, newQ}, []binMsg{bOK(a), bErr(old, binExists), bErr(oldQ, binExists)}}}
		}},
		{name: "replace", setup: func() { set("rep-old", "x", 0) }, steps: func() []step {
			r, miss, q, missQ := bStore(binOpReplace, "rep-old", "v", 0, 0), bStore(binOpReplace, "rep-miss", "v", 0, 0),
				bStore(binOpReplaceQ, "rep-old", "w", 0, 0), bStore(binOpReplaceQ, "rep-miss", "v", 0, 0)
			return []step{{[]binMsg{r, miss, q, missQ}, []binMsg{bOK(r), bErr(miss, binNotFound), bErr(missQ, binNotFound)}}}
		}, check: func(t *testing.T) {
			it, err := c.Get([]byte("rep-old"))
			require.NoError(t, err)
			assert.Equal(t, "w", string(it.Value))
		}},
		{name: "append prepend", setup: func() { set("cat", "mid", 4) }, steps: func() []step {
			a, aq := bConcat(binOpAppend, "cat", ">"), bConcat(binOpAppendQ, "cat", ")")
			p, pq := bConcat(binOpPrepend, "cat", "<"), bConcat(binOpPrependQ, "cat", "(")
			miss, missQ := bConcat(binOpAppend, "cat-miss", "x"), bConcat(binOpPrependQ, "cat-miss", "x")
			g := bReq(binOpGet, "cat")
			return []step{{[]binMsg{a, aq, p, pq, miss, missQ, g},
				[]binMsg{bOK(a), bOK(p), bErr(miss, binNotStored), bErr(missQ, binNotStored), bHit(g, 4, false, "(<mid>)")}}}
		}},
		{name: "delete", setup: func() { set("del", "x", 0); set("delq", "x", 0) }, steps: func() []step {
			d, dq, miss, missQ := bReq(binOpDelete, "del"), bReq(binOpDeleteQ, "delq"), bReq(binOpDelete, "del"), bReq(binOpDeleteQ, "delq")
			return []step{{[]binMsg{d, dq, miss, missQ}, []binMsg{bOKNoCAS(d), bErr(miss, binNotFound), bErr(missQ, binNotFound)}}}
		}},
		{name: "increment decrement", setup: func() { set("text", "abc", 0) }, steps: func() []step {
			create := bDelta(binOpIncrement, "ctr", 5, 40, 0)
			inc := bDelta(binOpIncrement, "ctr", 2, 0, 0)
			incQ := bDelta(binOpIncrementQ, "ctr", 100, 0, 0)
			dec := bDelta(binOpDecrement, "ctr", 1000, 0, 0)
			decQ := bDelta(binOpDecrementQ, "ctr", 1, 0, 0)
			noCreate := bDelta(binOpDecrement, "ctr-none", 1, 7, binNoCreate)
			noCreateQ := bDelta(binOpIncrementQ, "ctr-none", 1, 7, binNoCreate)
			nonNum := bDelta(binOpIncrement, "text", 1, 0, 0)
			createQ := bDelta(binOpDecrementQ, "ctr-q", 1, 3, 0)
			g := bReq(binOpGet, "ctr-q")
			return []step{{
				[]binMsg{create, inc, incQ, dec, decQ, noCreate, noCreateQ, nonNum, createQ, g},
				[]binMsg{bNumber(create, 40), bNumber(inc, 42), bNumber(dec, 0),
					bErr(noCreate, binNotFound), bErr(noCreateQ, binNotFound), bErr(nonNum, binNonNumeric),
					bHit(g, 0, false, "3")},
			}}
		}, check: func(t *testing.T) {
			it, err := c.Get([]byte("ctr"))
			require.NoError(t, err)
			assert.Equal(t, "0  ", string(it.Value), "decremented in place, space-padded")
		}},
		{name: "touch gat", setup: func() { set("tg", "val", 6) }, steps: func() []step {
			touch, touchMiss := bExp(binOpTouch, "tg", 100), bExp(binOpTouch, "tg-miss", 100)
			gat, gatq, gatk, gatkq := bExp(binOpGAT, "tg", 100), bExp(binOpGATQ, "tg", 100), bExp(binOpGATK, "tg", 100), bExp(binOpGATKQ, "tg", 100)
			gatMiss, gatqMiss, gatkMiss, gatkqMiss := bExp(binOpGAT, "tg-miss", 1), bExp(binOpGATQ, "tg-miss", 1), bExp(binOpGATK, "tg-miss", 1), bExp(binOpGATKQ, "tg-miss", 1)
			touchHit := bOK(touch)
			touchHit.ext = []byte{0, 0, 0, 6}
			return []step{{
				[]binMsg{touch, touchMiss, gat, gatq, gatk, gatkq, gatMiss, gatqMiss, gatkMiss, gatkqMiss},
				[]binMsg{touchHit, bErr(touchMiss, binNotFound), bHit(gat, 6, false, "val"), bHit(gatq, 6, false, "val"),
					bHit(gatk, 6, true, "val"), bHit(gatkq, 6, true, "val"), bErr(gatMiss, binNotFound), bKeyMiss(gatkMiss)},
			}}
		}, check: func(t *testing.T) {
			it, err := c.Get([]byte("tg"))
			require.NoError(t, err)
			assert.False(t, it.Expires.IsZero())
		}},
		{name: "version noop", steps: func() []step {
			v, n := bReq(binOpVersion, ""), bReq(binOpNoop, "")
			ver := bOKNoCAS(v)
			ver.val = []byte(Version)
			return []step{{[]binMsg{v, n}, []binMsg{ver, bOKNoCAS(n)}}}
		}},
		{name: "flush", setup: func() { set("fl", "x", 0) }, steps: func() []step {
			f, fq, g := bReq(binOpFlush, ""), bReq(binOpFlushQ, ""), bReq(binOpGet, "fl")
			return []step{{[]binMsg{f, fq, g}, []binMsg{bOKNoCAS(f), bErr(g, binNotFound)}}}
		}},
		{name: "unknown opcodes", steps: func() []step {
			verbosity := bExp(0x1b, "", 1)
			rget := bConcat(0x30, "range", "body")
			listMechs, auth := bReq(binOpSASLList, ""), bConcat(binOpSASLAuth, "PLAIN", "\x00u\x00p")
			saslStep := bConcat(binOpSASLStep, "PLAIN", "\x00u\x00p")
			return []step{{[]binMsg{verbosity, rget, listMechs, auth, saslStep}, []binMsg{
				bErr(verbosity, binUnknownCmd), bErr(rget, binUnknownCmd), bErr(listMechs, binUnknownCmd),
				bErr(auth, binUnknownCmd), bErr(saslStep, binUnknownCmd)}}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			conn := protoDial(t, addr)
			for _, st := range tt.steps() {
				binRoundTrip(t, conn, st.reqs, st.want)
			}
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
}

func TestBinaryQuit(t *testing.T) {
	_, addr := startBinServer(t, ServerConfig{}, Config{})
	for _, op := range []uint8{binOpQuit, binOpQuitQ} {
		conn := protoDial(t, addr)
		q := bReq(op, "")
		noop := bReq(binOpNoop, "")
		_, err := conn.Write(append(q.encode(), noop.encode()...))
		require.NoError(t, err)
		if op == binOpQuit {
			requireBinClosed(t, conn, bOKNoCAS(q))
		} else {
			requireBinClosed(t, conn)
		}
	}
}

// TestBinaryPipeline checks quiet stores and a GETKQ multi-get terminated
// by NOOP, the batching libmemcached and spymemcached use, in one write.
func TestBinaryPipeline(t *testing.T) {
	_, addr := startBinServer(t, ServerConfig{}, Config{})
	conn := protoDial(t, addr)
	var reqs, want []binMsg
	for i := range 200 {
		reqs = append(reqs, bStore(binOpSetQ, "p"+strings.Repeat("x", i%50)+string(rune('a'+i%26)), "v", uint32(i), 0))
	}
	for _, r := range reqs {
		g := bReq(binOpGetKQ, string(r.key))
		g.opaque = r.opaque
		reqs = append(reqs, g)
	}
	// Later sets of a key win: expect each GETKQ to see the last flags.
	last := map[string]uint32{}
	for _, r := range reqs[:200] {
		last[string(r.key)] = binary.BigEndian.Uint32(r.ext)
	}
	for _, g := range reqs[200:] {
		want = append(want, bHit(g, last[string(g.key)], true, "v"))
	}
	reqs = append(reqs, bReq(binOpGetKQ, "p-missing"))
	binRoundTrip(t, conn, reqs, want)
}

func TestBinaryCAS(t *testing.T) {
	s, addr := startBinServer(t, ServerConfig{}, Config{})
	conn := protoDial(t, addr)
	set := bStore(binOpSet, "c", "v1", 1, 0)
	cas := binRoundTrip(t, conn, []binMsg{set}, []binMsg{bOK(set)})[0].cas

	get := bReq(binOpGet, "c")
	require.Equal(t, cas, binRoundTrip(t, conn, []binMsg{get}, []binMsg{bHit(get, 1, false, "v1")})[0].cas)

	// A CAS turns any store into compare-and-swap.
	bad := bStore(binOpSet, "c", "x", 0, 0).withCAS(cas + 1)
	badQ := bStore(binOpSetQ, "c", "x", 0, 0).withCAS(cas + 1)
	missing := bStore(binOpReplace, "c-missing", "x", 0, 0).withCAS(cas)
	addMissing := bStore(binOpAdd, "c-missing", "x", 0, 0).withCAS(cas)
	binRoundTrip(t, conn, []binMsg{bad, badQ, missing, addMissing},
		[]binMsg{bErr(bad, binExists), bErr(badQ, binExists), bErr(missing, binNotFound), bErr(addMissing, binNotFound)})
	good := bStore(binOpSet, "c", "v2", 2, 0).withCAS(cas)
	cas2 := binRoundTrip(t, conn, []binMsg{good}, []binMsg{bOK(good)})[0].cas
	require.NotEqual(t, cas, cas2)
	stale := bStore(binOpAdd, "c", "v3", 3, 0).withCAS(cas)
	binRoundTrip(t, conn, []binMsg{stale}, []binMsg{bErr(stale, binExists)})

	// Append, increment and delete honour a CAS too.
	appBad := bConcat(binOpAppend, "c", "!").withCAS(cas)
	app := bConcat(binOpAppend, "c", "!").withCAS(cas2)
	cas3 := binRoundTrip(t, conn, []binMsg{appBad, app}, []binMsg{bErr(appBad, binExists), bOK(app)})[1].cas
	require.Equal(t, "v2!", string(binRoundTrip(t, conn, []binMsg{get}, []binMsg{bHit(get, 2, false, "v2!")})[0].val))

	err := s.cache.Set([]byte("n"), []byte("10"), 0)
	require.NoError(t, err)
	gn := bReq(binOpGet, "n")
	ncas := binRoundTrip(t, conn, []binMsg{gn}, []binMsg{bHit(gn, 0, false, "10")})[0].cas
	incBad := bDelta(binOpIncrement, "n", 1, 0, 0).withCAS(ncas + 1)
	inc := bDelta(binOpIncrement, "n", 1, 0, 0).withCAS(ncas)
	got := binRoundTrip(t, conn, []binMsg{incBad, inc}, []binMsg{bErr(incBad, binExists), bNumber(inc, 11)})
	require.Equal(t, got[1].cas, binRoundTrip(t, conn, []binMsg{gn}, []binMsg{bHit(gn, 0, false, "11")})[0].cas,
		"the increment's CAS is the item's")

	delBad := bReq(binOpDelete, "c").withCAS(cas2)
	del := bReq(binOpDelete, "c").withCAS(cas3)
	delMiss := bReq(binOpDelete, "c").withCAS(cas3)
	binRoundTrip(t, conn, []binMsg{delBad, del, delMiss}, []binMsg{bErr(delBad, binExists), bOKNoCAS(del), bErr(delMiss, binNotFound)})

	st := s.cache.Stats()
	assert.Equal(t, uint64(1), st.DeleteHits)
	assert.Equal(t, uint64(1), st.IncrHits)
}

func TestBinaryNoCAS(t *testing.T) {
	_, addr := startBinServer(t, ServerConfig{}, Config{NoCAS: true})
	conn := protoDial(t, addr)
	set := bStore(binOpSet, "k", "v", 0, 0)
	resp := bOK(set)
	resp.cas = 0
	binRoundTrip(t, conn, []binMsg{set}, []binMsg{resp})
	// memcached -C ignores a store's CAS.
	casSet := bStore(binOpSet, "k", "w", 0, 0).withCAS(12345)
	get := bReq(binOpGet, "k")
	hit := bHit(get, 0, false, "w")
	hit.cas = 0
	binRoundTrip(t, conn, []binMsg{casSet, get}, []binMsg{bOKNoCAS(casSet), hit})
}

func TestBinaryIncrementExpiration(t *testing.T) {
	clk := newFakeClock()
	_, addr := startBinServer(t, ServerConfig{}, Config{Now: clk.Now})
	conn := protoDial(t, addr)
	create := bDelta(binOpIncrement, "e", 1, 100, 10)
	get := bReq(binOpGet, "e")
	binRoundTrip(t, conn, []binMsg{create, get}, []binMsg{bNumber(create, 100), bHit(get, 0, false, "100")})
	clk.Advance(11 * time.Second)
	binRoundTrip(t, conn, []binMsg{get}, []binMsg{bErr(get, binNotFound)})

	// An absolute expiration, and wrapping at 2^64.
	abs := bDelta(binOpIncrement, "w", 1, math.MaxUint64, uint32(clk.Now().Unix()+5))
	wrap := bDelta(binOpIncrement, "w", 2, 0, 0)
	binRoundTrip(t, conn, []binMsg{abs, wrap}, []binMsg{bNumber(abs, math.MaxUint64), bNumber(wrap, 1)})
	clk.Advance(5 * time.Second)
	gw := bReq(binOpGet, "w")
	binRoundTrip(t, conn, []binMsg{gw}, []binMsg{bErr(gw, binNotFound)})
}

func TestBinaryFlushDelay(t *testing.T) {
	clk := newFakeClock()
	s, addr := startBinServer(t, ServerConfig{}, Config{Now: clk.Now})
	conn := protoDial(t, addr)
	err := s.cache.Set([]byte("a"), []byte("x"), 0)
	require.NoError(t, err)
	flush := bExp(binOpFlush, "", 5)
	get := bReq(binOpGet, "a")
	binRoundTrip(t, conn, []binMsg{flush, get}, []binMsg{bOKNoCAS(flush), bHit(get, 0, false, "x")})
	clk.Advance(5 * time.Second)
	binRoundTrip(t, conn, []binMsg{get}, []binMsg{bErr(get, binNotFound)})

	// An absolute time, quietly.
	err = s.cache.Set([]byte("a"), []byte("y"), 0)
	require.NoError(t, err)
	flushQ := bExp(binOpFlushQ, "", uint32(clk.Now().Unix()+3))
	binRoundTrip(t, conn, []binMsg{flushQ, get}, []binMsg{bHit(get, 0, false, "y")})
	clk.Advance(3 * time.Second)
	binRoundTrip(t, conn, []binMsg{get}, []binMsg{bErr(get, binNotFound)})
	assert.Equal(t, uint64(2), s.cache.Stats().CmdFlush)

	// -F: memcached refuses with an authentication error.
	_, addr = startBinServer(t, ServerConfig{DisableFlush: true}, Config{})
	conn = protoDial(t, addr)
	f := bReq(binOpFlush, "")
	binRoundTrip(t, conn, []binMsg{f}, []binMsg{bErr(f, binAuthError)})
}

// readBinStats sends STAT with group as key and collects the packets up to
// the terminating one with an empty key.
func readBinStats(t *testing.T, conn net.Conn, group string) map[string]string {
	t.Helper()
	req := bReq(binOpStat, group)
	_, err := conn.Write(req.encode())
	require.NoError(t, err)
	stats := map[string]string{}
	for {
		m := readBin(t, conn)
		require.Equal(t, uint8(binResMagic), m.magic)
		require.Equal(t, uint8(binOpStat), m.op)
		require.Equal(t, req.opaque, m.opaque)
		require.Zero(t, m.cas)
		require.Empty(t, m.ext)
		require.Equal(t, binOK, m.status, "STAT %q: %q", group, m.val)
		if len(m.key) == 0 {
			require.Empty(t, m.val)
			return stats
		}
		stats[string(m.key)] = string(m.val)
	}
}

func TestBinaryStat(t *testing.T) {
	s, addr := startBinServer(t, ServerConfig{}, Config{})
	conn := protoDial(t, addr)
	set, get := bStore(binOpSet, "a", "x", 0, 0), bReq(binOpGet, "a")
	binRoundTrip(t, conn, []binMsg{set, get}, []binMsg{bOK(set), bHit(get, 0, false, "x")})

	general := readBinStats(t, conn, "")
	assert.Equal(t, Version, general["version"])
	assert.Equal(t, "1", general["cmd_get"])
	assert.Equal(t, "1", general["curr_items"])
	assert.Contains(t, general, "pid")
	// The same statistics as the text protocol's, in the same order.
	text := s.appendGeneralStats(nil)
	assert.Equal(t, bytes.Count(text, []byte("\r\n")), len(general))

	settings := readBinStats(t, conn, "settings")
	assert.Equal(t, "auto-negotiate", settings["binding_protocol"])
	assert.Equal(t, "1", readBinStats(t, conn, "items")["items:1:number"])
	assert.Equal(t, "1", readBinStats(t, conn, "slabs")["active_slabs"])
	assert.Empty(t, readBinStats(t, conn, "detail on"))
	binRoundTrip(t, conn, []binMsg{bStore(binOpSet, "p:1", "x", 0, 0)}, []binMsg{bOK(bStore(binOpSet, "p:1", "x", 0, 0))})
	assert.Equal(t, map[string]string{"detailed": "PREFIX p get 0 hit 0 set 1 del 0\r\nEND\r\n"}, readBinStats(t, conn, "detail dump"))
	assert.Equal(t, map[string]string{"sizes_status": "disabled"}, readBinStats(t, conn, "sizes_disable"))

	assert.Empty(t, readBinStats(t, conn, "reset"))
	assert.Equal(t, "0", readBinStats(t, conn, "")["cmd_get"])

	// conns is a text-protocol group in memcached.
	for _, group := range []string{"bogus", "detail what", "cachedump 1 1", "conns"} {
		req := bReq(binOpStat, group)
		binRoundTrip(t, conn, []binMsg{req}, []binMsg{bErr(req, binNotFound)})
	}
}

func TestBinaryMalformed(t *testing.T) {
	_, addr := startBinServer(t, ServerConfig{}, Config{})
	raw := func(b []byte) net.Conn {
		conn := protoDial(t, addr)
		_, err := conn.Write(b)
		require.NoError(t, err)
		return conn
	}
	noop := bReq(binOpNoop, "")

	t.Run("bad magic after negotiation", func(t *testing.T) {
		bad := noop
		bad.magic = binResMagic
		requireBinClosed(t, raw(append(noop.encode(), bad.encode()...)), bOKNoCAS(noop))
	})
	t.Run("keylen larger than bodylen", func(t *testing.T) {
		g := bReq(binOpGet, "abc")
		b := g.encode()
		binary.BigEndian.PutUint32(b[8:], 2)
		requireBinClosed(t, raw(b), bErr(g, binUnknownCmd))
	})
	t.Run("extlen plus keylen larger than bodylen", func(t *testing.T) {
		st := bStore(binOpSet, "abc", "", 0, 0)
		b := st.encode()
		binary.BigEndian.PutUint32(b[8:], 10)
		requireBinClosed(t, raw(b), bErr(st, binUnknownCmd))
	})
	t.Run("key over 250 bytes", func(t *testing.T) {
		g := bReq(binOpGet, protoKey251)
		requireBinClosed(t, raw(g.encode()), bErr(g, binInvalid))
	})
	t.Run("lengths wrong for the command", func(t *testing.T) {
		for _, m := range []binMsg{
			bExp(binOpGet, "k", 1), bReq(binOpSet, "k"), bConcat(binOpNoop, "", "x"), bReq(binOpIncrement, "k"),
			bReq(binOpGet, ""), bExp(binOpTouch, "", 1), bConcat(binOpVersion, "k", ""), bConcat(binOpDelete, "k", "v"),
		} {
			requireBinClosed(t, raw(m.encode()), bErr(m, binInvalid))
		}
	})
	t.Run("body larger than the item limit", func(t *testing.T) {
		big := bStore(binOpSet, "big", strings.Repeat("v", 64<<10), 0, 0)
		bigQ := bConcat(binOpAppendQ, "big", strings.Repeat("v", 2*protoItemSize))
		conn := protoDial(t, addr)
		// The value is refused before it is read, then discarded; the
		// connection goes on.
		binRoundTrip(t, conn, []binMsg{big, bigQ}, []binMsg{bErr(big, binTooLarge), bErr(bigQ, binTooLarge)})
	})
	t.Run("truncated frame", func(t *testing.T) {
		set := bStore(binOpSet, "trunc", "value", 0, 0)
		b := set.encode()
		conn := raw(b[:30])
		// Other clients are served meanwhile.
		other := protoDial(t, addr)
		binRoundTrip(t, other, nil, nil)
		_, err := conn.Write(b[30:])
		require.NoError(t, err)
		binRoundTrip(t, conn, nil, []binMsg{bOK(set)})
		// A connection that goes away mid-frame is just closed.
		conn = raw(b[:10])
		require.NoError(t, conn.Close())
		binRoundTrip(t, other, nil, nil)
	})
}

func TestBinaryProtocolOption(t *testing.T) {
	version := bReq(binOpVersion, "")
	ver := bOKNoCAS(version)
	ver.val = []byte(Version)

	// -B binary: text is a header with a bad magic byte, once 24 bytes
	// of it arrived.
	_, addr := startBinServer(t, ServerConfig{Protocol: "binary"}, Config{})
	conn := protoDial(t, addr)
	_, err := io.WriteString(conn, strings.Repeat("version\r\n", 3))
	require.NoError(t, err)
	requireBinClosed(t, conn)
	conn = protoDial(t, addr)
	binRoundTrip(t, conn, []binMsg{version}, []binMsg{ver})

	// -B ascii: the magic byte is just text.
	_, addr = startBinServer(t, ServerConfig{Protocol: "ascii"}, Config{})
	conn = protoDial(t, addr)
	require.Equal(t, "ERROR\r\n", protoRoundTrip(t, conn, "\x80\x80\r\n"))

	// auto: each connection picks for itself.
	_, addr = startBinServer(t, ServerConfig{Protocol: "auto"}, Config{})
	binRoundTrip(t, protoDial(t, addr), []binMsg{version}, []binMsg{ver})
	require.Equal(t, "", protoRoundTrip(t, protoDial(t, addr), ""))

	_, err = newProtoCache(t, Config{}).Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}, Protocol: "udp"})
	require.ErrorContains(t, err, "Protocol")
}

// --- handle without sockets ---

func TestBinaryHandleSplits(t *testing.T) {
	s := newHandleServer(t, ServerConfig{})
	var req []byte
	for _, m := range []binMsg{
		bStore(binOpSet, "a", "alpha", 1, 0), bReq(binOpGetK, "a"), bReq(binOpGetKQ, "nope"),
		bStore(binOpSetQ, "n", "5", 0, 0), bDelta(binOpIncrement, "n", 1, 0, 0), bConcat(0x40, "unk", "body"), bReq(binOpNoop, ""),
	} {
		req = append(req, m.encode()...)
	}
	ref := newProtoFeeder(s)
	ref.write(t, req)
	require.Equal(t, actNone, ref.act)
	require.NotEmpty(t, ref.out)
	mask := func(out []byte) []byte {
		// The CAS values differ from run to run.
		out = bytes.Clone(out)
		for i := 0; i+binHeaderLen <= len(out); {
			clear(out[i+16 : i+24])
			i += binHeaderLen + int(binary.BigEndian.Uint32(out[i+8:]))
		}
		return out
	}
	want := mask(ref.out)
	for cut := 1; cut < len(req); cut++ {
		f := newProtoFeeder(s)
		f.write(t, req[:cut])
		f.write(t, req[cut:])
		require.Equal(t, want, mask(f.out), "cut at %d", cut)
	}
	f := newProtoFeeder(s)
	for i := range req {
		f.write(t, req[i:i+1])
	}
	require.Equal(t, want, mask(f.out))
}

func TestBinaryHandleBoundedBuffering(t *testing.T) {
	s := newHandleServer(t, ServerConfig{})
	// A 4 GiB body is refused from its header and discarded as it comes.
	set := bStore(binOpSet, "huge", "", 0, 0)
	hdr := set.encode()
	binary.BigEndian.PutUint32(hdr[8:], math.MaxUint32)
	f := newProtoFeeder(s)
	f.write(t, hdr)
	require.Equal(t, bErr(set, binTooLarge).encode()[:binHeaderLen], f.out[:binHeaderLen])
	chunk := bytes.Repeat([]byte("v"), 64<<10)
	for range 100 {
		f.write(t, chunk)
		require.Empty(t, f.buf)
	}
	require.Equal(t, int64(math.MaxUint32-8-4-100*len(chunk)), f.pc.bin.swallow)

	// So is an unknown command's body.
	f = newProtoFeeder(s)
	unk := bConcat(0x50, "", "")
	hdr = unk.encode()
	binary.BigEndian.PutUint32(hdr[8:], 1<<30)
	f.write(t, hdr)
	f.write(t, chunk)
	require.Empty(t, f.buf)
	require.Equal(t, actNone, f.act)

	// A frame that can be served is kept until it is whole, no more.
	f = newProtoFeeder(s)
	fit := bStore(binOpSet, protoKey250, strings.Repeat("v", protoItemSize-ItemOverhead-250), 0, 0).encode()
	f.write(t, fit[:len(fit)-1])
	require.Len(t, f.buf, len(fit)-1)
	require.Empty(t, f.out)
	f.write(t, fit[len(fit)-1:])
	require.Empty(t, f.buf)
	require.Equal(t, binOK, binary.BigEndian.Uint16(f.out[6:]))

	// A partial header waits.
	f = newProtoFeeder(s)
	f.write(t, fit[:binHeaderLen-1])
	require.Len(t, f.buf, binHeaderLen-1)
}

func TestBinaryHandleOutputYield(t *testing.T) {
	s := newHandleServer(t, ServerConfig{MaxOutput: 1000})
	err := s.cache.Set([]byte("big"), bytes.Repeat([]byte("v"), 600), 0)
	require.NoError(t, err)
	var in []byte
	for range 4 {
		in = append(in, bReq(binOpGetKQ, "big").encode()...)
	}
	in = append(in, bReq(binOpNoop, "").encode()...)
	var pc protoConn
	var out []byte
	calls := 0
	for len(in) > 0 {
		calls++
		require.Less(t, calls, 100)
		n, o, reqs, act := s.handle(&pc, in, out, 20)
		require.Equal(t, actNone, act)
		out, in = o, in[n:]
		if len(in) > 0 {
			require.Equal(t, 20, reqs, "large replies yield like a spent -R budget")
		}
	}
	require.Greater(t, calls, 1)
	require.Len(t, out, 4*(binHeaderLen+4+3+600)+binHeaderLen)
}

func TestBinaryHandleMaxReqs(t *testing.T) {
	s := newHandleServer(t, ServerConfig{})
	noop := bReq(binOpNoop, "").encode()
	in := bytes.Repeat(noop, 3)
	var pc protoConn
	n, out, reqs, act := s.handle(&pc, in, nil, 2)
	require.Equal(t, actNone, act)
	require.Equal(t, 2, reqs)
	require.Equal(t, 2*binHeaderLen, n)
	require.Len(t, out, 2*binHeaderLen)
}

func TestBinaryHandleNoAllocs(t *testing.T) {
	s := newHandleServer(t, ServerConfig{})
	err := s.cache.Set([]byte("hit"), []byte("value"), 0)
	require.NoError(t, err)
	var pc protoConn
	pc.started, pc.binary = true, true
	out := make([]byte, 0, 4096)
	for _, m := range []binMsg{
		bReq(binOpGet, "hit"), bReq(binOpGetK, "hit"), bReq(binOpGetKQ, "hit"), bReq(binOpGetQ, "miss"),
		bReq(binOpGet, "miss"), bStore(binOpSet, "key", "value", 1, 0), bStore(binOpSetQ, "key", "value", 1, 0),
		bReq(binOpNoop, ""), bExp(binOpTouch, "hit", 0), bReq(binOpDelete, "nope"),
		bDelta(binOpIncrement, "ctr", 1, 0, 0),
	} {
		in := m.encode()
		allocs := testing.AllocsPerRun(100, func() {
			n, _, _, _ := s.handle(&pc, in, out[:0], 20)
			if n != len(in) {
				panic("not consumed")
			}
		})
		assert.Zero(t, allocs, "opcode %#x", m.op)
	}
}

// FuzzBinaryProtocol feeds arbitrary bytes after a binary request, in
// arbitrary reads, to handle: it must not panic and must keep what it
// buffers within a frame it can serve.
func FuzzBinaryProtocol(f *testing.F) {
	for _, seed := range [][]binMsg{
		{bStore(binOpSet, "a", "x", 1, 0), bReq(binOpGet, "a"), bReq(binOpGetKQ, "a"), bReq(binOpNoop, "")},
		{bDelta(binOpIncrement, "n", 1, 5, 0), bDelta(binOpDecrementQ, "n", 9, 0, binNoCreate), bExp(binOpGAT, "n", 10)},
		{bReq(binOpStat, ""), bReq(binOpStat, "settings"), bReq(binOpFlush, ""), bReq(binOpVersion, "")},
		{bConcat(binOpAppend, "a", "y"), bReq(binOpDelete, "a").withCAS(5), bConcat(0x1b, "", "zz"), bReq(binOpQuitQ, "")},
		{bStore(binOpSet, "big", strings.Repeat("b", 2000), 0, 0), bReq(binOpSASLList, "")},
	} {
		var b []byte
		for _, m := range seed {
			b = append(b, m.encode()...)
		}
		f.Add(b, uint8(7))
	}
	s := newHandleServer(f, ServerConfig{})
	// The largest frame handle may need whole: a set of the largest item.
	maxFrame := binHeaderLen + 8 + protoItemSize - ItemOverhead
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fd := newProtoFeeder(s)
		fd.write(t, bReq(binOpNoop, "").encode())
		step := max(int(chunk)%64+1, len(data)/256)
		for i := 0; i < len(data) && fd.act == actNone; i += step {
			fd.write(t, data[i:min(i+step, len(data))])
			if fd.act != actNone {
				break // what follows a closing request is never read
			}
			require.True(t, fd.pc.binary)
			if fd.pc.bin.swallow > 0 {
				require.Empty(t, fd.buf)
			}
			require.LessOrEqual(t, len(fd.buf), maxFrame)
		}
	})
}

func TestBinaryClosedCache(t *testing.T) {
	c := newProtoCache(t, Config{})
	require.NoError(t, c.Close())
	res, _, _, _ := c.arith(&arithReq{key: []byte("k"), delta: 1, create: true}, nil)
	assert.Equal(t, resultClosed, res)
	assert.Equal(t, resultClosed, c.deleteItem(&deleteReq{key: []byte("k"), hasCAS: true, cas: 1}))
	res, _, _ = c.store(&storeReq{kind: storeAppend, key: []byte("k"), value: []byte("v"), cas: 1})
	assert.Equal(t, resultClosed, res)
}

// The initial value an increment stores on a miss is not a set in
// memcached's counters (complete_incr_bin stores it without counting).
func TestBinaryIncrementCreateIsNotASet(t *testing.T) {
	s, addr := startBinServer(t, ServerConfig{}, Config{})
	conn := protoDial(t, addr)
	create := bDelta(binOpIncrement, "ctr", 5, 40, 0)
	binRoundTrip(t, conn, []binMsg{create}, []binMsg{bNumber(create, 40)})
	st := s.cache.Stats()
	assert.Zero(t, st.CmdSet)
	assert.Equal(t, uint64(1), st.TotalItems)
}
