package emcache

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// metaClock is a settable clock for Config.Now, so that TTLs, recache
// windows and last-access times are exact.
type metaClock struct{ sec atomic.Int64 }

func newMetaClock() *metaClock {
	c := &metaClock{}
	c.sec.Store(1_700_000_000)
	return c
}

func (c *metaClock) now() time.Time        { return time.Unix(c.sec.Load(), 0) }
func (c *metaClock) advance(seconds int64) { c.sec.Add(seconds) }

// metaCacheBytes keeps the test caches to one shard, which startMetaServer
// makes wide (every record with a CAS field, as in a cache that cannot
// evict), so that CAS values are 1, 2, 3... in the order items change, as
// memcached's, and replies can be compared whole.
const metaCacheBytes = 8000

// metaFill is the longest value key "k" can hold in the test caches.
const metaFill = MinMaxItemSize - ItemOverhead - len("k")

// startMetaServer serves a one-shard cache on the fake clock and returns a
// connection to it.
func startMetaServer(t *testing.T, cfg Config) (*Server, net.Conn, *metaClock) {
	t.Helper()
	clk := newMetaClock()
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = metaCacheBytes
	}
	cfg.Now = clk.now
	s, addr := startProtoServer(t, ServerConfig{}, cfg)
	require.Len(t, s.cache.shards, 1)
	sh := s.cache.shards[0]
	sh.mu.Lock()
	sh.wide = true
	sh.mu.Unlock()
	return s, protoDial(t, addr), clk
}

// metaStep is one exchange: the clock moves, req goes out, and exactly want
// must come back.
type metaStep struct {
	advance int64
	req     string
	want    string
}

func mstep(req, want string) metaStep { return metaStep{req: req, want: want} }

func mafter(seconds int64, req, want string) metaStep {
	return metaStep{advance: seconds, req: req, want: want}
}

func runMetaSteps(t *testing.T, conn net.Conn, clk *metaClock, steps []metaStep) {
	t.Helper()
	for i, st := range steps {
		clk.advance(st.advance)
		require.Equal(t, st.want, protoRoundTrip(t, conn, st.req), "step %d: %q", i, st.req)
	}
}

var (
	metaOpaque32 = "O" + strings.Repeat("o", 31)
	metaOpaque33 = "O" + strings.Repeat("o", 32)
)

func TestMetaProtocol(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		steps []metaStep
	}{
		// mg: return flags.
		{name: "mg every return flag", steps: []metaStep{
			mstep("set mk 3 0 2\r\nhi\r\n", "STORED\r\n"),
			mstep("mg mk s v f t c k Oabc\r\n", "VA 2 s2 f3 t-1 c1 kmk Oabc\r\nhi\r\n"),
			mstep("mg mk s f\r\n", "HD s2 f3\r\n"),
			mstep("mg mk\r\n", "HD\r\n"),
		}},
		{name: "mg miss echoes only k and O", steps: []metaStep{
			mstep("mg nokey v s t c f h l k Oq1\r\n", "EN knokey Oq1\r\n"),
			mstep("mg nokey\r\n", "EN\r\n"),
		}},
		{name: "mg t counts down", steps: []metaStep{
			mstep("set k 0 100 1\r\nx\r\n", "STORED\r\n"),
			mafter(30, "mg k t\r\n", "HD t70\r\n"),
			mafter(70, "mg k t\r\n", "EN\r\n"),
		}},
		{name: "mg T touches where it stands", steps: []metaStep{
			mstep("set k 0 100 1\r\nx\r\n", "STORED\r\n"),
			mstep("mg k t T300\r\n", "HD t100\r\n"),
			mafter(10, "mg k t\r\n", "HD t290\r\n"),
			mstep("mg k T200 t\r\n", "HD t200\r\n"),
			mstep("mg k T0 t\r\n", "HD t-1\r\n"),
			mstep("mg k T-1 v\r\n", "VA 1\r\nx\r\n"),
			mstep("mg k v\r\n", "EN\r\n"),
		}},
		{name: "mg h and l report the previous access", steps: []metaStep{
			mstep("set k 0 0 1\r\nx\r\n", "STORED\r\n"),
			mafter(5, "mg k h l\r\n", "HD h0 l5\r\n"),
			mafter(3, "mg k l h\r\n", "HD l3 h1\r\n"),
			mstep("mg k l\r\n", "HD l0\r\n"),
		}},
		{name: "mg u does not bump", steps: []metaStep{
			mstep("set k 0 0 1\r\nx\r\n", "STORED\r\n"),
			mafter(5, "mg k u h l\r\n", "HD h0 l5\r\n"),
			mafter(1, "mg k h l\r\n", "HD h0 l6\r\n"),
			mafter(1, "mg k u h l\r\n", "HD h1 l1\r\n"),
		}},
		{name: "mg q hides only misses", steps: []metaStep{
			mstep("set k 0 0 2\r\nbo\r\n", "STORED\r\n"),
			mstep("mg k v q\r\nmg miss v q k\r\nmg k s q\r\nmn\r\n", "VA 2\r\nbo\r\nHD s2\r\nMN\r\n"),
			mstep("mg miss q\r\n", ""),
			mstep("mg k v v q\r\n", "CLIENT_ERROR duplicate flag\r\n"),
		}},
		{name: "mg opaque", steps: []metaStep{
			mstep("set k 0 0 1\r\nx\r\n", "STORED\r\n"),
			mstep("mg k "+metaOpaque32+"\r\n", "HD "+metaOpaque32+"\r\n"),
			mstep("mg k O\r\n", "HD O\r\n"),
			mstep("mg k "+metaOpaque33+"\r\n", "CLIENT_ERROR opaque token too long\r\n"),
			mstep("mg miss "+metaOpaque33+"\r\n", "CLIENT_ERROR opaque token too long\r\n"),
		}},
		{name: "mg C drops a value the client holds", steps: []metaStep{
			mstep("set k 0 0 1\r\nx\r\n", "STORED\r\n"),
			mstep("mg k v c C1\r\n", "HD c1\r\n"),
			mstep("mg k v C2\r\n", "VA 1\r\nx\r\n"),
		}},

		// b: base64 keys.
		{name: "b stores, fetches and echoes keys encoded", steps: []metaStep{
			mstep("ms Zm9v 2 b k c\r\nhi\r\n", "HD kZm9v b c1\r\n"),
			mstep("mg Zm9v b k v\r\n", "VA 2 kZm9v b\r\nhi\r\n"),
			// The item remembers its key came encoded, as memcached's does.
			mstep("mg foo k s\r\n", "HD kZm9v b s2\r\n"),
			mstep("get foo\r\n", "VALUE foo 0 2\r\nhi\r\nEND\r\n"),
			mstep("mg YmFy b k Ox\r\n", "EN kYmFy b Ox\r\n"),
			mstep("ms AAEC/w== 1 b\r\nz\r\n", "HD\r\n"),
			mstep("mg AAEC/w== b v k\r\n", "VA 1 kAAEC/w== b\r\nz\r\n"),
			mstep("md AAEC/w== b k q\r\nmg AAEC/w== b\r\n", "EN\r\n"),
			// memcached's decoder skips bytes outside the alphabet.
			mstep("mg Zm*9v b s\r\n", "HD s2\r\n"),
		}},
		{name: "b rejects what does not decode", steps: []metaStep{
			mstep("mg Zm9 b\r\n", "CLIENT_ERROR error decoding key\r\n"),
			mstep("mg ==== b\r\n", "CLIENT_ERROR error decoding key\r\n"),
			mstep("mg **** b\r\n", "CLIENT_ERROR error decoding key\r\n"),
			mstep("ms Zm9 2 b\r\nhi\r\nmn\r\n", "CLIENT_ERROR error decoding key\r\nMN\r\n"),
			mstep("md Zm9 b\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
			mstep("ma Zm9 b\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
			mstep("me Zm9 b\r\n", "CLIENT_ERROR bad command line format\r\n"),
		}},

		// N, R, I: vivify, recache and stale items with W, X, Z.
		{name: "mg N vivifies and hands out one win", steps: []metaStep{
			mstep("mg viv N30 v c t\r\n", "VA 0 c1 t30 W\r\n\r\n"),
			mstep("mg viv N30 v c t\r\n", "VA 0 c1 t30 Z\r\n\r\n"),
			// q does not hide a vivified item: a miss never happens.
			mafter(5, "mg viv s N30 t q\r\n", "HD s0 t25 Z\r\n"),
			mstep("ms viv 2 C2 T60\r\nno\r\n", "EX\r\n"),
			mstep("ms viv 2 C1 T60\r\nok\r\n", "HD\r\n"),
			mstep("mg viv N30 v c t\r\n", "VA 2 c2 t60\r\nok\r\n"),
		}},
		{name: "mg N sets the TTL where it stands", steps: []metaStep{
			mstep("mg viv t N30\r\n", "HD t-1 W\r\n"),
			mstep("mg viv t\r\n", "HD t30 Z\r\n"),
			mstep("mg viv0 N0 t\r\n", "HD t-1 W\r\n"),
		}},
		{name: "mg N with E sets the vivified CAS", steps: []metaStep{
			mstep("mg vivE s c v N30 t E9876\r\n", "VA 0 s0 c9876 t30 W\r\n\r\n"),
			mstep("mg vivE c E5\r\n", "HD c9876 Z\r\n"),
		}},
		{name: "mg R wins inside the recache window", steps: []metaStep{
			mstep("set k 0 100 1\r\nx\r\n", "STORED\r\n"),
			mstep("mg k R30 t\r\n", "HD t100\r\n"),
			mafter(75, "mg k R30 t\r\n", "HD t25 W\r\n"),
			mstep("mg k R30 t\r\n", "HD t25 Z\r\n"),
			// A new value clears the token.
			mstep("set k 0 20 1\r\ny\r\n", "STORED\r\n"),
			mstep("mg k R30 c\r\n", "HD c2 W\r\n"),
			// Items that never expire never win this way; nor does R0.
			mstep("set n 0 0 1\r\nx\r\n", "STORED\r\n"),
			mstep("mg n R30\r\n", "HD\r\n"),
			mstep("mg k R0\r\n", "HD Z\r\n"),
		}},
		{name: "mg R compares the TTL a T before it set", steps: []metaStep{
			mstep("set k 0 100 1\r\nx\r\n", "STORED\r\n"),
			mstep("mg k R60 T30 t\r\n", "HD t30\r\n"),
			mstep("mg k T100\r\n", "HD\r\n"),
			mstep("mg k T30 R60\r\n", "HD W\r\n"),
		}},
		{name: "md I makes a stale item; ms I stores stale values", steps: []metaStep{
			mstep("set toinv 0 0 3\r\nmoo\r\n", "STORED\r\n"),
			mstep("mg toinv s v\r\n", "VA 3 s3\r\nmoo\r\n"),
			mstep("md toinv I T30\r\n", "HD\r\n"),
			mstep("mg toinv s t c v\r\n", "VA 3 s3 t30 c2 X W\r\nmoo\r\n"),
			mstep("mg toinv s t c v\r\n", "VA 3 s3 t30 c2 Z X\r\nmoo\r\n"),
			mstep("ms toinv 1 T90 C0\r\nf\r\n", "EX\r\n"),
			mstep("ms toinv 1 T90 C1\r\nf\r\n", "EX\r\n"),
			// With I a lower CAS goes in, stale: TTL and token stay.
			mstep("ms toinv 1 I T90 C1 c\r\nf\r\n", "HD c3\r\n"),
			mstep("mg toinv s t c v\r\n", "VA 1 s1 t30 c3 Z X\r\nf\r\n"),
			mstep("ms toinv 1 T90 C3\r\ng\r\n", "HD\r\n"),
			mstep("mg toinv s t c v\r\n", "VA 1 s1 t90 c4\r\ng\r\n"),
			// I alone is no CAS store.
			mstep("ms toinv 1 I\r\nh\r\n", "HD\r\n"),
			mstep("mg toinv v\r\n", "VA 1\r\nh\r\n"),
		}},

		// ms.
		{name: "ms return flags", steps: []metaStep{
			mstep("ms ms1 2 T0 F5 c k O1\r\nhi\r\n", "HD c1 kms1 O1\r\n"),
			mstep("mg ms1 f t v\r\n", "VA 2 f5 t-1\r\nhi\r\n"),
			mstep("ms ms1 2 s Ox k\r\nyo\r\n", "HD s2 Ox kms1\r\n"),
			mstep("ms ms1 0\r\n\r\n", "HD\r\n"),
			mstep("mg ms1 s v\r\n", "VA 0 s0\r\n\r\n"),
			mstep("ms ms1 1 T100 F4294967297\r\nz\r\n", "HD\r\n"),
			mstep("mg ms1 f t\r\n", "HD f1 t100\r\n"),
		}},
		{name: "ms modes", steps: []metaStep{
			mstep("ms k 2 T120\r\naa\r\n", "HD\r\n"),
			mstep("ms k 2 ME\r\nzz\r\n", "NS\r\n"),
			mstep("ms new 2 ME\r\nbb\r\n", "HD\r\n"),
			mstep("ms new 2 MA s\r\ncc\r\n", "HD s4\r\n"),
			mstep("ms new 2 MP s c\r\naa\r\n", "HD s6 c4\r\n"),
			mstep("mg new v\r\n", "VA 6\r\naabbcc\r\n"),
			mstep("ms nope 2 MR\r\nzz\r\n", "NS\r\n"),
			mstep("ms new 2 MR\r\nxx\r\n", "HD\r\n"),
			mstep("ms new 2 MS\r\nyy\r\n", "HD\r\n"),
			mstep("mg new v\r\n", "VA 2\r\nyy\r\n"),
			mstep("ms new 2 MZ\r\ntt\r\nmg new v\r\n", "CLIENT_ERROR invalid mode for ms M token\r\nVA 2\r\nyy\r\n"),
			mstep("ms new 2 Ms\r\ntt\r\n", "CLIENT_ERROR invalid mode for ms M token\r\n"),
			mstep("ms new 2 MSS\r\ntt\r\n", "CLIENT_ERROR incorrect length for M token\r\n"),
			mstep("ms new 2 M\r\ntt\r\n", "CLIENT_ERROR incorrect length for M token\r\n"),
		}},
		{name: "ms append and prepend keep flags and TTL", steps: []metaStep{
			mstep("ms k 2 F7 T50\r\nab\r\n", "HD\r\n"),
			mafter(10, "ms k 2 MA F9 T500\r\ncd\r\n", "HD\r\n"),
			mstep("mg k v f t\r\n", "VA 4 f7 t40\r\nabcd\r\n"),
		}},
		{name: "ms append with N vivifies, with C compares", steps: []metaStep{
			mstep("ms appendcas 2 MA C5000 T30\r\nhi\r\n", "NS\r\n"),
			mstep("ms appendcas 2 MA T30\r\nhi\r\n", "NS\r\n"),
			mstep("ms appendcas 2 T30 c\r\nho\r\n", "HD c1\r\n"),
			mstep("ms appendcas 2 MA C5000\r\nhi\r\n", "EX\r\n"),
			mstep("ms appendcas 2 MA C1\r\nhi\r\n", "HD\r\n"),
			mstep("ms appendviv 2 MA N30 F3 T99\r\nmo\r\n", "HD\r\n"),
			mstep("mg appendviv s v t f\r\n", "VA 2 s2 t30 f3\r\nmo\r\n"),
			mstep("ms appendviv 2 MA N30 s\r\nko\r\n", "HD s4\r\n"),
			mstep("ms prependviv 2 MP N0\r\nmo\r\n", "HD\r\n"),
			mstep("mg prependviv t v\r\n", "VA 2 t-1\r\nmo\r\n"),
		}},
		{name: "ms C and E", steps: []metaStep{
			mstep("ms k 2\r\nbo\r\n", "HD\r\n"),
			mstep("ms k 2 c C11\r\nio\r\n", "EX c0\r\n"),
			mstep("ms k 2 c C1\r\nio\r\n", "HD c2\r\n"),
			mstep("ms nokey 2 c C1\r\nio\r\n", "NF c0\r\n"),
			mstep("ms k 2 MR C9\r\nio\r\n", "EX\r\n"),
			mstep("ms k 2 ME C9\r\nio\r\n", "NS\r\n"),
			mstep("ms e 2 E973\r\nji\r\n", "HD\r\n"),
			mstep("mg e c\r\n", "HD c973\r\n"),
			mstep("ms e 2 c C973 E4000\r\nlo\r\n", "HD c4000\r\n"),
		}},
		{name: "ms q hides only HD", steps: []metaStep{
			mstep("ms k 2 q\r\nhi\r\n", ""),
			mstep("ms k 2 q ME\r\nhi\r\n", "NS\r\n"),
			mstep("ms k 2 q C99\r\nhi\r\n", "EX\r\n"),
			mstep("ms k 2 q MZ\r\nhi\r\n", "CLIENT_ERROR invalid mode for ms M token\r\n"),
			mstep("ms k 2 q\r\nhiX\r\n", "CLIENT_ERROR bad data chunk\r\nERROR\r\n"),
			mstep("ms k 2 q\r\nbo\r\nmg k v q\r\nmg miss v q\r\nmn\r\n", "VA 2\r\nbo\r\nMN\r\n"),
		}},
		{name: "ms refuses a bad line without swallowing", steps: []metaStep{
			mstep("ms\r\n", "ERROR\r\n"),
			mstep("ms k\r\n", "CLIENT_ERROR bad command line format\r\n"),
			mstep("ms k xx\r\nhi\r\n", "CLIENT_ERROR bad command line format\r\nERROR\r\n"),
			mstep("ms k -1\r\nhi\r\n", "CLIENT_ERROR bad command line format\r\nERROR\r\n"),
			mstep("ms "+protoKey251+" 2\r\nhi\r\n", "CLIENT_ERROR bad command line format\r\nERROR\r\n"),
			mstep("ms k 2 "+strings.Repeat("P ", 16)+"L\r\nhi\r\n", "CLIENT_ERROR options flags too long\r\nERROR\r\n"),
		}},
		{name: "ms swallows the block of a line with bad flags", steps: []metaStep{
			mstep("ms k 2 !\r\nhi\r\n", "CLIENT_ERROR invalid flag\r\n"),
			mstep("ms k 2 c c\r\nhi\r\n", "CLIENT_ERROR duplicate flag\r\n"),
			mstep("ms k 2 Tx\r\nhi\r\n", "CLIENT_ERROR bad token in command line format\r\n"),
			mstep("ms k 2 Fx\r\nhi\r\n", "CLIENT_ERROR bad command line format\r\n"),
			mstep("ms k 2 Fx Tx\r\nhi\r\n", "CLIENT_ERROR bad token in command line format\r\n"),
			mstep("ms k 2 "+metaOpaque33+"\r\nhi\r\n", "CLIENT_ERROR opaque token too long\r\n"),
			mstep("ms k 4 !\r\nhi\r\n\r\n", "CLIENT_ERROR invalid flag\r\n"),
			mstep("mg k\r\n", "EN\r\n"),
		}},
		{name: "ms bad data chunk", steps: []metaStep{
			mstep("ms k 2\r\nhiX\r\n", "CLIENT_ERROR bad data chunk\r\nERROR\r\n"),
			mstep("ms k 2\r\nh\r\n\r\n", "CLIENT_ERROR bad data chunk\r\nERROR\r\n"),
			mstep("mg k\r\n", "EN\r\n"),
		}},
		{name: "ms too large swallows the block and drops the key", steps: []metaStep{
			mstep("ms k 2\r\nhi\r\n", "HD\r\n"),
			mstep("ms k 999 MA\r\n"+strings.Repeat("z", 999)+"\r\n", "SERVER_ERROR object too large for cache\r\n"),
			mstep("mg k\r\n", "EN\r\n"),
			// An append can outgrow the limit only once joined: not stored.
			mstep("ms k 900\r\n"+strings.Repeat("a", 900)+"\r\n", "HD\r\n"),
			mstep(fmt.Sprintf("ms k %d MA\r\n%s\r\n", metaFill-900, strings.Repeat("b", metaFill-900)), "HD\r\n"),
			mstep("ms k 1 MA\r\nc\r\n", "NS\r\n"),
			mstep("mg k s\r\n", fmt.Sprintf("HD s%d\r\n", metaFill)),
		}},

		// md.
		{name: "md", steps: []metaStep{
			mstep("md k\r\n", "NF\r\n"),
			mstep("md k q Oo k\r\n", "NF Oo kk\r\n"),
			mstep("set k 0 0 2\r\nzo\r\n", "STORED\r\n"),
			mstep("md k C11 Oo\r\n", "EX Oo\r\n"),
			mstep("md k C1 k Oo\r\n", "HD kk Oo\r\n"),
			mstep("mg k\r\n", "EN\r\n"),
			mstep("set k 0 0 2\r\nzo\r\n", "STORED\r\n"),
			mstep("md k q\r\nmn\r\n", "MN\r\n"),
			mstep("mg k\r\n", "EN\r\n"),
		}},
		{name: "md x empties the value, with I leaves a stale tombstone", steps: []metaStep{
			mstep("ms mdx 2 T50 F3\r\nmx\r\n", "HD\r\n"),
			mstep("md mdx x\r\n", "HD\r\n"),
			mstep("mg mdx t f c v\r\n", "VA 0 t-1 f0 c1\r\n\r\n"),
			mstep("ms mdx 2 T50\r\nmz\r\n", "HD\r\n"),
			mstep("md mdx x I T20 F8\r\n", "HD\r\n"),
			mstep("mg mdx t f c v\r\n", "VA 0 t20 f8 c3 X W\r\n\r\n"),
		}},
		{name: "md E sets the CAS it leaves", steps: []metaStep{
			mstep("ms mdE 2 E1234\r\nmE\r\n", "HD\r\n"),
			mstep("md mdE C1234 E5678 I\r\n", "HD\r\n"),
			mstep("mg mdE c\r\n", "HD c5678 X W\r\n"),
			mstep("md mdE x E42\r\n", "HD\r\n"),
			mstep("mg mdE c\r\n", "HD c42\r\n"),
		}},
		{name: "md flag errors", steps: []metaStep{
			mstep("md k !\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
			mstep("md k q q\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
			mstep("md k Tx q\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
			mstep("md k "+metaOpaque33+"\r\n", "CLIENT_ERROR opaque token too long\r\n"),
			mstep("md\r\n", "ERROR\r\n"),
			mstep("md "+protoKey251+"\r\n", "CLIENT_ERROR bad command line format\r\n"),
			mstep("md k "+strings.Repeat("P ", 17)+"L\r\n", "CLIENT_ERROR options flags too long\r\n"),
		}},

		// ma.
		{name: "ma incr, decr, N and J", steps: []metaStep{
			mstep("ma mo\r\n", "NF\r\n"),
			mstep("ma mo D1 Oo k\r\n", "NF Oo kmo\r\n"),
			mstep("set mo 0 0 1\r\n1\r\n", "STORED\r\n"),
			mstep("ma mo\r\n", "HD\r\n"),
			mstep("ma mo v\r\n", "VA 1\r\n3\r\n"),
			mstep("ma mi N0 J13 v t\r\n", "VA 2 t-1\r\n13\r\n"),
			mstep("ma mi N0 J13 v\r\n", "VA 2\r\n14\r\n"),
			mstep("ma mi D30 v\r\n", "VA 2\r\n44\r\n"),
			mstep("ma mi MI D1 v\r\n", "VA 2\r\n45\r\n"),
			mstep("ma mi M+ v\r\n", "VA 2\r\n46\r\n"),
			mstep("ma mi MD D22 v\r\n", "VA 2\r\n24\r\n"),
			mstep("ma mi M- D9000 v\r\n", "VA 1\r\n0\r\n"),
			// Shorter numbers are written in place, space-padded.
			mstep("get mi\r\n", "VALUE mi 0 2\r\n0 \r\nEND\r\n"),
			mstep("ma mi MX\r\n", "CLIENT_ERROR invalid mode for ma M token\r\n"),
			mstep("ma mi q D1\r\nmn\r\n", "MN\r\n"),
			mstep("ma new q N0\r\nmn\r\n", "MN\r\n"),
			mstep("mg new v\r\n", "VA 1\r\n0\r\n"),
			mstep("ma mu N90 J5 t v k\r\n", "VA 1 t90 kmu\r\n5\r\n"),
		}},
		{name: "ma wraps, and grows the number when it must", steps: []metaStep{
			mstep("set w 0 0 20\r\n18446744073709551615\r\n", "STORED\r\n"),
			mstep("ma w D2 v\r\n", "VA 1\r\n1\r\n"),
			mstep("set g 5 100 1\r\n9\r\n", "STORED\r\n"),
			mstep("ma g v t\r\n", "VA 2 t100\r\n10\r\n"),
			mstep("mg g f s v\r\n", "VA 2 f5 s2\r\n10\r\n"),
		}},
		{name: "ma T and t where they stand", steps: []metaStep{
			mstep("set k 0 0 1\r\n1\r\n", "STORED\r\n"),
			mstep("ma k t T300\r\n", "HD t-1\r\n"),
			mstep("ma k t\r\n", "HD t300\r\n"),
			mstep("ma k T200 t\r\n", "HD t200\r\n"),
		}},
		{name: "ma C and E", steps: []metaStep{
			mstep("ma maE v N0 c E4321 J5\r\n", "VA 1 c4321\r\n5\r\n"),
			mstep("ma maE C99 v\r\n", "EX\r\n"),
			mstep("ma maE C4321 c v\r\n", "VA 1 c1\r\n6\r\n"),
			mstep("ma maE C0 v\r\n", "VA 1\r\n7\r\n"),
			mstep("ma maE c v E8765\r\n", "VA 1 c8765\r\n8\r\n"),
		}},
		{name: "ma non-numeric values", steps: []metaStep{
			mstep("set k 0 0 1\r\nq\r\n", "STORED\r\n"),
			mstep("ma k\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"),
			mstep("ma k q\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"),
			mstep("set e 0 0 0\r\n\r\n", "STORED\r\n"),
			mstep("ma e\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"),
			// Any length parses, as memcached 1.6.18's strtoull reads it.
			mstep("set n 0 0 22\r\n1                     \r\n", "STORED\r\n"),
			mstep("ma n v\r\n", "VA 1\r\n2\r\n"),
			mstep("set n 0 0 4\r\n12 x\r\n", "STORED\r\n"),
			mstep("ma n v\r\n", "VA 2\r\n13\r\n"),
		}},
		{name: "ma flag errors", steps: []metaStep{
			mstep("ma k Jx\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
			mstep("ma k Dx\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
			mstep("ma k D1 D1\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
			mstep("ma k MDD\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
			mstep("ma k !\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
			mstep("ma k q "+metaOpaque33+"\r\n", "CLIENT_ERROR opaque token too long\r\n"),
			mstep("ma\r\n", "ERROR\r\n"),
		}},

		// mn, me, unknown commands.
		{name: "mn", steps: []metaStep{
			mstep("mn\r\n", "MN\r\n"),
			mstep("mn with words\r\n", "MN\r\n"),
		}},
		{name: "me", steps: []metaStep{
			mstep("me mek\r\n", "EN\r\n"),
			mstep("set mek 0 0 2\r\nhi\r\n", "STORED\r\n"),
			mafter(4, "me mek\r\n", "ME mek exp=-1 la=4 cas=1 fetch=no cls=1 size=27\r\n"),
			mstep("mg mek\r\nme mek\r\n", "HD\r\nME mek exp=-1 la=0 cas=1 fetch=yes cls=1 size=27\r\n"),
			mstep("ms mek 2 T100\r\nho\r\n", "HD\r\n"),
			mafter(10, "me mek extra words\r\n", "ME mek exp=-90 la=10 cas=2 fetch=no cls=1 size=27\r\n"),
			mstep("ms Zm9v 2 b\r\nhi\r\n", "HD\r\n"),
			mstep("me Zm9v b\r\n", "ME Zm9v exp=-1 la=0 cas=3 fetch=no cls=1 size=27\r\n"),
			mstep("me\r\n", "CLIENT_ERROR bad command line format\r\n"),
			mstep("me "+protoKey251+"\r\n", "CLIENT_ERROR bad command line format\r\n"),
		}},
		{name: "unknown meta commands", steps: []metaStep{
			mstep("mx k\r\n", "ERROR\r\n"),
			mstep("mgg k\r\n", "ERROR\r\n"),
			mstep("MG k\r\n", "ERROR\r\n"),
		}},

		// Errors common to every meta command; q never hides them.
		{name: "mg flag errors", steps: []metaStep{
			mstep("mg\r\n", "ERROR\r\n"),
			mstep("mg "+protoKey251+" v\r\n", "CLIENT_ERROR bad command line format\r\n"),
			mstep("mg "+protoKey250+" v\r\n", "EN\r\n"),
			mstep("mg foo m o o o o o o o o o\r\n", "CLIENT_ERROR invalid flag\r\n"),
			mstep("mg k v v\r\n", "CLIENT_ERROR duplicate flag\r\n"),
			mstep("mg k \xff\r\n", "CLIENT_ERROR duplicate flag\r\n"),
			mstep("mg k T q\r\n", "CLIENT_ERROR bad token in command line format\r\n"),
			mstep("mg k Tabc\r\n", "CLIENT_ERROR bad token in command line format\r\n"),
			mstep("mg k N3x\r\n", "CLIENT_ERROR bad token in command line format\r\n"),
			mstep("mg k R\r\n", "CLIENT_ERROR bad token in command line format\r\n"),
			mstep("mg k C-1\r\n", "CLIENT_ERROR bad token in command line format\r\n"),
			mstep("mg k Ex\r\n", "CLIENT_ERROR bad token in command line format\r\n"),
			mstep("mg k F-1\r\n", "CLIENT_ERROR bad command line format\r\n"),
			mstep("mg k M\r\n", "CLIENT_ERROR incorrect length for M token\r\n"),
			mstep("mg k Jx\r\n", "CLIENT_ERROR invalid numeric initial value\r\n"),
			mstep("mg k Dx\r\n", "CLIENT_ERROR invalid numeric delta value\r\n"),
			// The last bad token is the one named; an unknown flag stops.
			mstep("mg k Jx Dx\r\n", "CLIENT_ERROR invalid numeric delta value\r\n"),
			mstep("mg k Jx ! Dx\r\n", "CLIENT_ERROR invalid flag\r\n"),
			// Flags the other commands use are accepted and ignored.
			mstep("mg k F5 MZ J1 D1 I x P L u\r\n", "EN\r\n"),
		}},
		{name: "too many flags", steps: []metaStep{
			mstep("set k 0 0 1\r\nx\r\n", "STORED\r\n"),
			mstep("mg k s v f t c k h l u q Oa P L T30 R5 E1 x\r\n", "VA 1 s1 f0 t-1 c1 kk h0 l0 Oa\r\nx\r\n"),
			mstep("mg k t\r\n", "HD t30\r\n"),
			mstep("mg k s v f t c k h l u q Oa P L T30 R5 E1 x I\r\n", "CLIENT_ERROR options flags are too long\r\n"),
			mstep("mg k "+strings.Repeat("v ", 30)+"\r\n", "CLIENT_ERROR options flags are too long\r\n"),
		}},

		// Configurations.
		{name: "CAS disabled", cfg: Config{NoCAS: true}, steps: []metaStep{
			mstep("ms k 2 c\r\nhi\r\n", "HD c0\r\n"),
			mstep("mg k c\r\n", "HD c0\r\n"),
			// memcached -C cannot compare: every C store fails.
			mstep("ms k 2 C0\r\nhi\r\n", "EX\r\n"),
			mstep("md k C0 q\r\nmg k\r\n", "EN\r\n"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, conn, clk := startMetaServer(t, tt.cfg)
			runMetaSteps(t, conn, clk, tt.steps)
		})
	}
}

// TestMetaOutOfMemory fills a cache that may not evict.
func TestMetaOutOfMemory(t *testing.T) {
	_, conn, clk := startMetaServer(t, Config{NoEvict: true})
	// Large values fill the main ring, small ones the small ring, empty
	// ones under two-byte keys what is left.
	for _, size := range []int{800, 40, 0} {
		val := strings.Repeat("v", size)
		full := false
		for i := 0; i < 1000 && !full; i++ {
			key := fmt.Sprintf("%c%d", 'a'+i/100, i%100)
			got := protoRoundTrip(t, conn, fmt.Sprintf("ms %s%d %d\r\n%s\r\n", key, size, size, val))
			if got != "HD\r\n" {
				require.Equal(t, "SERVER_ERROR out of memory storing object\r\n", got)
				full = true
			}
		}
		require.True(t, full)
	}
	runMetaSteps(t, conn, clk, []metaStep{
		// No room to vivify into: a miss, or for ma an error.
		mstep("mg new N30 v\r\n", "EN\r\n"),
		mstep("ma new N0 J5 v\r\n", "SERVER_ERROR Out of memory allocating new item\r\n"),
		// A value no larger than the old one takes its place, full or not.
		mstep("ms a1800 790\r\n"+strings.Repeat("w", 790)+"\r\n", "HD\r\n"),
		mstep("mg a1800 s\r\n", "HD s790\r\n"),
		// A failed set leaves no stale value behind.
		mstep("mg a0800 s\r\n", "HD s800\r\n"),
		mstep("ms a0800 900\r\n"+strings.Repeat("w", 900)+"\r\n", "SERVER_ERROR out of memory storing object\r\n"),
		mstep("mg a0800\r\n", "EN\r\n"),
	})
}

// TestMetaStats checks that meta commands count as memcached counts them.
func TestMetaStats(t *testing.T) {
	_, conn, clk := startMetaServer(t, Config{})
	runMetaSteps(t, conn, clk, []metaStep{
		mstep("ms a 1\r\n1\r\n", "HD\r\n"),
		mstep("mg a\r\nmg a T10\r\nmg miss\r\nmg miss T10\r\nmg viv N10\r\n", "HD\r\nHD\r\nEN\r\nEN\r\nHD W\r\n"),
		mstep("ms a 1 C1\r\n2\r\nms a 1 C1\r\n2\r\nms nope 1 C1\r\n2\r\n", "HD\r\nEX\r\nNF\r\n"),
		mstep("md nope\r\nmd viv\r\nmd a C99\r\n", "NF\r\nHD\r\nEX\r\n"),
		mstep("ma a\r\nma nope\r\nma a MD\r\nma nope MD\r\n", "HD\r\nNF\r\nHD\r\nNF\r\n"),
		mstep("ms big 1000\r\n"+strings.Repeat("b", 1000)+"\r\n", "SERVER_ERROR object too large for cache\r\n"),
	})
	st := readProtoStats(t, conn, "stats")
	for name, want := range map[string]string{
		"cmd_get": "4", "get_hits": "2", "get_misses": "2",
		"cmd_touch": "1", "touch_hits": "1", "touch_misses": "0",
		"cmd_set":  "4",
		"cas_hits": "1", "cas_badval": "1", "cas_misses": "1",
		"delete_hits": "1", "delete_misses": "2",
		"incr_hits": "1", "incr_misses": "1", "decr_hits": "1", "decr_misses": "1",
		"store_too_large": "1",
	} {
		assert.Equal(t, want, st[name], name)
	}
}

// TestMetaOneWinner races clients for the win token of one key: exactly
// one of them may recache it.
func TestMetaOneWinner(t *testing.T) {
	s, _, _ := startMetaServer(t, Config{})
	addr := s.Addr().String()
	const clients, rounds = 8, 20
	var wins [rounds]atomic.Int32
	var wg sync.WaitGroup
	for range clients {
		conn := protoDial(t, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256)
			for r := range rounds {
				if _, err := fmt.Fprintf(conn, "mg race%d N30 c\r\n", r); err != nil {
					t.Error(err)
					return
				}
				n, err := conn.Read(buf)
				if err != nil {
					t.Error(err)
					return
				}
				if strings.HasSuffix(string(buf[:n]), " W\r\n") {
					wins[r].Add(1)
				}
			}
		}()
	}
	wg.Wait()
	for r := range rounds {
		assert.Equal(t, int32(1), wins[r].Load(), "round %d", r)
	}
}

// metaPipeline exercises every meta command, with data blocks and a quiet
// run, for the split and allocation tests.
func metaPipeline() string {
	return "ms a 5 T0 F3 k\r\nhello\r\n" +
		"ms b 2 q\r\nhi\r\n" +
		"mg a v f t s k Oop\r\n" +
		"mg b v q\r\nmg miss v q\r\nmn\r\n" +
		"ms a 3 MA s\r\n!!!\r\n" +
		"ma n N0 J41 v\r\nma n v\r\n" +
		"md b q\r\nmd b\r\n" +
		"ms YmlnZ2Vy 300 b\r\n" + strings.Repeat("x", 300) + "\r\n" +
		"mg YmlnZ2Vy b s k\r\n" +
		"mg a v\r\nmn\r\n"
}

var metaPipelineWant = "HD ka\r\n" +
	"VA 5 f3 t-1 s5 ka Oop\r\nhello\r\n" +
	"VA 2\r\nhi\r\nMN\r\n" +
	"HD s8\r\n" +
	"VA 2\r\n41\r\nVA 2\r\n42\r\n" +
	"NF\r\n" +
	"HD\r\n" +
	"HD s300 kYmlnZ2Vy b\r\n" +
	"VA 8\r\nhello!!!\r\nMN\r\n"

// TestMetaSplits feeds a meta pipeline to handle in every way a reactor may
// read it: the replies must not depend on where the reads end.
func TestMetaSplits(t *testing.T) {
	req := []byte(metaPipeline())
	s := newHandleServer(t, ServerConfig{})
	for _, chunk := range []int{1, 2, 3, 7, 64, 1000} {
		s.cache.FlushAll(0)
		f := newProtoFeeder(s)
		for i := 0; i < len(req); i += chunk {
			f.write(t, req[i:min(i+chunk, len(req))])
		}
		require.Equal(t, actNone, f.act)
		require.Equal(t, metaPipelineWant, string(f.out), "chunk %d", chunk)
		// A data block waits without its line.
		require.LessOrEqual(t, f.maxKept, 300+2+maxLineLen)
	}
	for cut := range len(req) {
		s.cache.FlushAll(0)
		f := newProtoFeeder(s)
		f.write(t, req[:cut])
		f.write(t, req[cut:])
		require.Equal(t, metaPipelineWant, string(f.out), "cut at %d", cut)
	}
}

// TestMetaNoAllocs checks that the requests mcbench sends (mg k v, ms k
// len) and the other hit paths allocate nothing.
func TestMetaNoAllocs(t *testing.T) {
	s := newHandleServer(t, ServerConfig{})
	err := s.cache.Set([]byte("hit"), []byte("value"), 0)
	require.NoError(t, err)
	err = s.cache.Set([]byte("n"), []byte("1"), 0)
	require.NoError(t, err)
	var pc protoConn
	out := make([]byte, 0, 4096)
	for _, req := range []string{
		"mg hit v\r\n", "mg hit s v f t c k h l Oxx\r\n", "mg miss v\r\n", "mg aGl0 b k v\r\n",
		"ms key 5\r\nvalue\r\n", "ms key 5 T0 F1 c k s Oo\r\nvalue\r\n", "ms key 5 q\r\nvalue\r\n",
		"ms a2V5 5 b k\r\nvalue\r\n", "ms key 5 MA\r\nvalue\r\n",
		"ma n v\r\n", "md nope\r\n", "me hit\r\n", "mn\r\n",
	} {
		in := []byte(req)
		allocs := testing.AllocsPerRun(100, func() {
			n, _, _, _ := s.handle(&pc, in, out[:0], 20)
			if n != len(in) {
				panic("not consumed")
			}
		})
		assert.Zero(t, allocs, "%q", req)
		if req == "ms key 5 MA\r\nvalue\r\n" {
			// Keep the appended value small for the next runs.
			err = s.cache.Set([]byte("key"), []byte("v"), 0)
			require.NoError(t, err)
		}
	}
}

func TestMetaBase64Decode(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"Zm9v", "foo", true},
		{"Zm8=", "fo", true},
		{"Zg==", "f", true},
		{"Zg==Zm9v", "f", true}, // the first padded block ends it
		{"Z m 9 v", "foo", true},
		{"Zm9", "", false},
		{"Z===", "", false},
		{"====", "", false},
		{"", "", false},
		{"!!!!", "", false},
	} {
		var dst [MaxKeyLen]byte
		n := base64Decode(dst[:], []byte(tt.in))
		assert.Equal(t, tt.ok, n > 0, "%q", tt.in)
		if tt.ok {
			assert.Equal(t, tt.want, string(dst[:n]), "%q", tt.in)
		}
	}
}

// TestMetaSlowData sends an ms data block across reads over a socket.
func TestMetaSlowData(t *testing.T) {
	_, conn, _ := startMetaServer(t, Config{})
	_, err := io.WriteString(conn, "ms k 10 k O1\r\nhello")
	require.NoError(t, err)
	require.Equal(t, "HD kk O1\r\nVA 10\r\nhelloworld\r\n", protoRoundTrip(t, conn, "world\r\nmg k v\r\n"))
}

// FuzzMetaProtocol feeds arbitrary bytes, in arbitrary reads, to handle
// starting from meta commands: it must not panic, must keep its buffering
// within the protocol's bounds, and must answer in proportion to what it is
// asked.
func FuzzMetaProtocol(f *testing.F) {
	for _, seed := range []string{
		metaPipeline(),
		"mg k s v f t c k h l u q Oop\r\nmg k N30 R10 T5 E3 v\r\nmn\r\n",
		"ms k 3 MA N30 C1 E2 I T5 F1 b q\r\nabc\r\n",
		"ms k 2000 T0\r\n",
		"md k I T30 x C5 E6 q k O1\r\nma k N0 J5 D3 MD T1 t c v\r\n",
		"me k\r\nme Zm9v b\r\nmn\r\n",
		"mg Zm9v b k v\r\nms Zm9 2 b\r\nhi\r\n",
		"ms k xx\r\nhi\r\nms k 2 !\r\nhi\r\n",
	} {
		f.Add([]byte(seed), uint8(7))
	}
	s := newHandleServer(f, ServerConfig{})
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fd := newProtoFeeder(s)
		size := max(int(chunk)%64+1, len(data)/256)
		for i := 0; i < len(data) && fd.act == actNone; i += size {
			fd.write(t, data[i:min(i+size, len(data))])
			if fd.act != actNone {
				break // the connection closes: what it buffered is dropped
			}
			kept := len(fd.buf)
			switch fd.pc.state {
			case awaitData:
				require.Less(t, kept, fd.pc.block.vlen+2)
				require.LessOrEqual(t, fd.pc.block.vlen, protoItemSize)
			case awaitGetKeys:
				require.LessOrEqual(t, kept, MaxKeyLen+1)
			case awaitCommand:
				require.LessOrEqual(t, kept, maxLineLen)
			default:
				require.Zero(t, kept)
			}
		}
		// Every request line is at least 3 bytes, and a reply holds at
		// most one value and a line of flags.
		require.LessOrEqual(t, len(fd.out), (len(data)/3+1)*(protoItemSize+1024))
	})
}

// TestMetaInvalidationFlowRealCAS runs memcached's serve-stale flow with the
// CAS values a default cache hands out (not the 1, 2, 3 of the other meta
// tests): a client holding the CAS it read before md I bumped it recaches
// with ms I and that older CAS, and its value is stored, stale. It needs
// every new CAS of a key to be higher than the key's earlier ones.
func TestMetaInvalidationFlowRealCAS(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{}, Config{MaxBytes: 64 << 20, MaxItemSize: MinMaxItemSize})
	conn := protoDial(t, addr)
	// casOf sends req and returns the CAS its reply's c flag carries.
	casOf := func(req string) uint64 {
		t.Helper()
		reply := protoRoundTrip(t, conn, req)
		for _, f := range strings.Fields(reply) {
			if f[0] == 'c' {
				cas, err := strconv.ParseUint(f[1:], 10, 64)
				require.NoError(t, err)
				return cas
			}
		}
		t.Fatalf("no CAS in %q", reply)
		return 0
	}
	for i := range 50 {
		k := fmt.Sprintf("k%d", i)
		// Other keys change between the steps, as in a live cache.
		require.Equal(t, "HD\r\n", protoRoundTrip(t, conn, fmt.Sprintf("ms other%d 2\r\nxx\r\n", i)))
		require.Equal(t, "HD\r\n", protoRoundTrip(t, conn, "ms "+k+" 3 T0\r\nold\r\n"))
		held := casOf("mg " + k + " c\r\n")
		require.Equal(t, "HD\r\n", protoRoundTrip(t, conn, "md "+k+" I T30\r\n"))
		require.Greater(t, casOf("mg "+k+" c\r\n"), held, "md I bumps the CAS up")
		require.Equal(t, "HD\r\n", protoRoundTrip(t, conn, fmt.Sprintf("ms %s 3 I C%d\r\nnew\r\n", k, held)), "stale store with the older CAS")
		reply := protoRoundTrip(t, conn, "mg "+k+" v c\r\n")
		require.Contains(t, reply, " X", "the recached value stays stale")
		require.Contains(t, reply, "\r\nnew\r\n")
		// An ordinary store after an increment: CAS values keep rising.
		require.Equal(t, "HD\r\n", protoRoundTrip(t, conn, "ms n"+k+" 1\r\n5\r\n"))
		before := casOf("ma n" + k + " c\r\n")
		require.Equal(t, "HD\r\n", protoRoundTrip(t, conn, "ms n"+k+" 1\r\n7\r\n"))
		require.Greater(t, casOf("mg n"+k+" c\r\n"), before, "a store after ma gets a higher CAS")
	}
}
