package emcache

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// protoItemSize is the MaxItemSize of the protocol tests' caches: small, so
// that too-large values are cheap to send.
const protoItemSize = 1024

// protoIOTimeout bounds every socket read and write of a test.
const protoIOTimeout = 10 * time.Second

func newProtoCache(t testing.TB, cfg Config) *Cache {
	t.Helper()
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 4 << 20
	}
	if cfg.MaxItemSize == 0 {
		cfg.MaxItemSize = protoItemSize
	}
	c, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// startProtoServer serves a fresh cache on a kernel-chosen loopback port.
func startProtoServer(t testing.TB, scfg ServerConfig, ccfg Config) (*Server, string) {
	t.Helper()
	c := newProtoCache(t, ccfg)
	scfg.Addrs = []string{"127.0.0.1:0"}
	s, err := c.Serve(scfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, s.Addr().String()
}

func protoDial(t testing.TB, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, protoIOTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(protoIOTimeout)))
	return conn
}

// protoSentinel is sent after a request so that everything the server answered
// before it can be compared exactly, including nothing at all.
const protoSentinel = "version\r\n"

var protoSentinelReply = "VERSION " + Version + "\r\n"

// protoRoundTrip sends req followed by the protoSentinel and returns what the server
// answered before the protoSentinel's reply.
func protoRoundTrip(t testing.TB, conn net.Conn, req string) string {
	t.Helper()
	_, err := io.WriteString(conn, req+protoSentinel)
	require.NoError(t, err)
	return readUntilProtoSentinel(t, conn)
}

func readUntilProtoSentinel(t testing.TB, conn net.Conn) string {
	t.Helper()
	var got []byte
	buf := make([]byte, 64<<10)
	for !bytes.HasSuffix(got, []byte(protoSentinelReply)) {
		k, err := conn.Read(buf)
		got = append(got, buf[:k]...)
		require.NoError(t, err, "read so far: %q", got)
	}
	return string(got[:len(got)-len(protoSentinelReply)])
}

// requireProtoClosed checks that the server closed conn after sending want.
func requireProtoClosed(t testing.TB, conn net.Conn, want string) {
	t.Helper()
	got, err := io.ReadAll(conn)
	require.NoError(t, err)
	require.Equal(t, want, string(got))
}

var (
	protoKey250 = strings.Repeat("k", 250)
	protoKey251 = strings.Repeat("k", 251)
)

// protoCASRe matches the CAS value in a gets/gats reply.
var protoCASRe = regexp.MustCompile(`^VALUE (\S+) (\d+) (\d+) (\d+)\r\n`)

func TestTextProtocolCommands(t *testing.T) {
	tooBig := strings.Repeat("z", protoItemSize)
	tests := []struct {
		name   string
		setup  string // sent first; its replies are not checked
		req    string
		want   string
		wantRe string // instead of want, for replies carrying a CAS
		closed bool   // the server must close the connection after want
	}{
		// retrieval
		{name: "set get", req: "set a 0 0 1\r\nx\r\nget a\r\n", want: "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n"},
		{name: "get miss", req: "get nope\r\n", want: "END\r\n"},
		{name: "get many dup miss", setup: "set a 1 0 1\r\na\r\nset b 2 0 2\r\nbb\r\n", req: "get a nope b a\r\n",
			want: "VALUE a 1 1\r\na\r\nVALUE b 2 2\r\nbb\r\nVALUE a 1 1\r\na\r\nEND\r\n"},
		{name: "get no key", req: "get\r\n", want: "ERROR\r\n"},
		{name: "get only spaces", req: "get   \r\n", want: "ERROR\r\n"},
		{name: "gets no key", req: "gets\r\n", want: "ERROR\r\n"},
		{name: "gets", setup: "set a 5 0 2\r\nab\r\n", req: "gets a\r\n", wantRe: `^VALUE a 5 2 \d+\r\nab\r\nEND\r\n$`},
		{name: "bget", setup: "set a 5 0 2\r\nab\r\n", req: "bget a\r\n", want: "VALUE a 5 2\r\nab\r\nEND\r\n"},
		{name: "get key too long", setup: "set a 0 0 1\r\na\r\n", req: "get a " + protoKey251 + " a\r\n", want: "CLIENT_ERROR bad command line format\r\n"},
		{name: "get key 250", setup: "set " + protoKey250 + " 0 0 1\r\na\r\n", req: "get " + protoKey250 + "\r\n", want: "VALUE " + protoKey250 + " 0 1\r\na\r\nEND\r\n"},
		{name: "get spaces", setup: "set a 0 0 1\r\na\r\n", req: "get   a  a \r\n", want: "VALUE a 0 1\r\na\r\nVALUE a 0 1\r\na\r\nEND\r\n"},
		// A NUL would let one key alias another (memcached ends the line
		// there): every command naming one is refused.
		{name: "get NUL refused", setup: "set a 0 0 1\r\na\r\n", req: "get a\x00 a\r\nget a\x00junk\r\nget b a\x00\r\n", want: strings.Repeat("CLIENT_ERROR bad command line format\r\n", 3)},
		{name: "delete NUL refused", setup: "set nulkey 0 0 1\r\na\r\n", req: "delete nulkey\x00\r\nget nulkey\r\n", want: "CLIENT_ERROR bad command line format\r\nVALUE nulkey 0 1\r\na\r\nEND\r\n"},
		{name: "meta NUL refused", setup: "set a 0 0 1\r\na\r\n", req: "mg a\x00b v\r\nmd a\x00\r\nmg a v\r\n", want: "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\nVA 1\r\na\r\n"},
		{name: "gat", setup: "set a 3 0 1\r\na\r\n", req: "gat 100 a nope\r\n", want: "VALUE a 3 1\r\na\r\nEND\r\n"},
		{name: "gats", setup: "set a 3 0 1\r\na\r\n", req: "gats 100 a\r\n", wantRe: `^VALUE a 3 1 \d+\r\na\r\nEND\r\n$`},
		{name: "gat no key", req: "gat 10\r\n", want: "END\r\n"},
		{name: "gat nothing", req: "gat\r\n", want: "ERROR\r\n"},
		{name: "gat bad exptime", req: "gat x a\r\n", want: "CLIENT_ERROR invalid exptime argument\r\n"},
		{name: "gat negative expires", setup: "set a 0 0 1\r\na\r\n", req: "gat -1 a\r\nget a\r\n", want: "VALUE a 0 1\r\na\r\nEND\r\nEND\r\n"},

		// framing and tokens
		{name: "bare LF", req: "set a 0 0 1\nx\r\nget a\n", want: "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n"},
		{name: "tab is a key byte", req: "set a\tb 0 0 1\r\nx\r\nget a\tb\r\n", want: "STORED\r\nVALUE a\tb 0 1\r\nx\r\nEND\r\n"},
		{name: "leading spaces", req: "  set a 0 0 1\r\nx\r\n   get a\r\n", want: "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n"},
		{name: "case sensitive", req: "GET a\r\nSet a 0 0 1\r\n", want: "ERROR\r\nERROR\r\n"},
		{name: "empty line", req: "\r\n\n", want: "ERROR\r\nERROR\r\n"},
		{name: "unknown", req: "foo bar\r\nx\r\n", want: "ERROR\r\nERROR\r\n"},
		{name: "http closes", req: "GET / HTTP/1.1\r\n", closed: true},

		// storage
		{name: "flags wrap to 32 bits", req: "set g 4294967297 0 1\r\nx\r\nget g\r\n", want: "STORED\r\nVALUE g 1 1\r\nx\r\nEND\r\n"},
		{name: "flags max", req: "set g 4294967295 0 1\r\nx\r\nget g\r\n", want: "STORED\r\nVALUE g 4294967295 1\r\nx\r\nEND\r\n"},
		{name: "negative flags", req: "set a -1 0 1\r\nx\r\n", want: "CLIENT_ERROR bad command line format\r\nERROR\r\n"},
		{name: "bad exptime", req: "set a 0 x 1\r\nx\r\n", want: "CLIENT_ERROR bad command line format\r\nERROR\r\n"},
		{name: "negative length", req: "set a 0 0 -1\r\nx\r\n", want: "CLIENT_ERROR bad command line format\r\nERROR\r\n"},
		{name: "length not a number", req: "set a 0 0 1x\r\nx\r\n", want: "CLIENT_ERROR bad command line format\r\nERROR\r\n"},
		{name: "key too long", req: "set " + protoKey251 + " 0 0 1\r\nx\r\n", want: "CLIENT_ERROR bad command line format\r\nERROR\r\n"},
		{name: "key too long noreply", req: "set " + protoKey251 + " 0 0 1 noreply\r\nx\r\n", want: "ERROR\r\n"},
		{name: "too few tokens", req: "set a 0 0\r\n", want: "ERROR\r\n"},
		{name: "too many tokens", req: "set a 0 0 1 noreply x\r\nx\r\n", want: "ERROR\r\nERROR\r\n"},
		{name: "extra token ignored", req: "set a 0 0 1 junk\r\nx\r\n", want: "STORED\r\n"},
		{name: "negative exptime stores expired", req: "set a 0 -1 1\r\nx\r\nget a\r\n", want: "STORED\r\nEND\r\n"},
		{name: "bad data chunk", req: "set a 0 0 1\r\nxy\r\nget a\r\n", want: "CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\n"},
		{name: "bad data chunk noreply", req: "set a 0 0 1 noreply\r\nxyz", want: ""},
		{name: "noreply", req: "set a 0 0 1 noreply\r\nx\r\nget a\r\n", want: "VALUE a 0 1\r\nx\r\nEND\r\n"},
		{name: "empty value", req: "set a 0 0 0\r\n\r\nget a\r\n", want: "STORED\r\nVALUE a 0 0\r\n\r\nEND\r\n"},
		{name: "binary value", req: "set a 0 0 4\r\n\r\n\x00\n\r\nget a\r\n", want: "STORED\r\nVALUE a 0 4\r\n\r\n\x00\n\r\nEND\r\n"},
		{name: "too large swallowed, old value removed", setup: "set a 0 0 1\r\nx\r\n",
			req:  "set a 0 0 " + strconv.Itoa(len(tooBig)) + "\r\n" + tooBig + "\r\nget a\r\n",
			want: "SERVER_ERROR object too large for cache\r\nEND\r\n"},
		{name: "too large noreply", req: "set a 0 0 2000 noreply\r\n" + strings.Repeat("y", 2000) + "\r\n", want: ""},
		{name: "too large add keeps old", setup: "set a 0 0 1\r\nx\r\n",
			req:  "add a 0 0 " + strconv.Itoa(len(tooBig)) + "\r\n" + tooBig + "\r\nget a\r\n",
			want: "SERVER_ERROR object too large for cache\r\nVALUE a 0 1\r\nx\r\nEND\r\n"},
		{name: "largest item fits", req: "set a 0 0 " + strconv.Itoa(protoItemSize-ItemOverhead-1) + "\r\n" + strings.Repeat("v", protoItemSize-ItemOverhead-1) + "\r\n", want: "STORED\r\n"},
		// memcached truncates lengths to 32 bits (4294967297 is 1); here
		// a length no item can have is refused and nothing swallowed.
		{name: "length past 32 bits refused", setup: "set a 0 0 1\r\no\r\n", req: "set a 0 0 4294967297\r\nx\r\nget a\r\n", want: "CLIENT_ERROR bad data chunk\r\nERROR\r\nVALUE a 0 1\r\no\r\nEND\r\n"},
		// memcached's t/issue_70.t: what int32 makes negative or too long.
		{name: "length refused as memcached refuses it", req: "set a 0 0 -1\r\nset a 0 0 4294967295\r\nset a 0 0 2147483647\r\nscoobyscoobydoo\r\n", want: strings.Repeat("CLIENT_ERROR bad command line format\r\n", 3) + "ERROR\r\n"},
		{name: "negative length past 32 bits refused", req: "set a 0 0 -4294967295\r\nx\r\nms a -4294967295\r\nx\r\nms a 4294967297\r\nx\r\nset a 0 0 -1\r\nx\r\nget a\r\n", want: strings.Repeat("CLIENT_ERROR bad data chunk\r\nERROR\r\n", 3) + "CLIENT_ERROR bad command line format\r\nERROR\r\nEND\r\n"},
		{name: "add", setup: "set a 0 0 1\r\nx\r\n", req: "add a 0 0 1\r\ny\r\nadd b 0 0 1\r\ny\r\n", want: "NOT_STORED\r\nSTORED\r\n"},
		{name: "replace", setup: "set a 0 0 1\r\nx\r\n", req: "replace b 0 0 1\r\ny\r\nreplace a 7 0 1\r\ny\r\nget a\r\n",
			want: "NOT_STORED\r\nSTORED\r\nVALUE a 7 1\r\ny\r\nEND\r\n"},
		{name: "append prepend", setup: "set a 9 0 1\r\nx\r\n",
			req:  "append a 0 0 2\r\nyz\r\nprepend a 0 0 1\r\nw\r\nappend b 0 0 1\r\ny\r\nprepend b 0 0 1\r\ny\r\nget a\r\n",
			want: "STORED\r\nSTORED\r\nNOT_STORED\r\nNOT_STORED\r\nVALUE a 9 4\r\nwxyz\r\nEND\r\n"},
		{name: "cas missing", req: "cas a 0 0 1 1\r\nx\r\n", want: "NOT_FOUND\r\n"},
		{name: "cas no unique", req: "cas a 0 0 1\r\nx\r\n", want: "ERROR\r\nERROR\r\n"},
		{name: "cas bad unique", req: "cas a 0 0 1 x\r\nx\r\n", want: "CLIENT_ERROR bad command line format\r\nERROR\r\n"},
		{name: "cas mismatch", setup: "set a 0 0 1\r\nx\r\n", req: "cas a 0 0 1 0\r\ny\r\n", want: "EXISTS\r\n"},

		// incr/decr
		{name: "incr decr pad", setup: "set n 0 0 2\r\n10\r\n", req: "incr n 5\r\ndecr n 100\r\nget n\r\n", want: "15\r\n0\r\nVALUE n 0 2\r\n0 \r\nEND\r\n"},
		{name: "incr wraps", setup: "set n 0 0 20\r\n18446744073709551615\r\n", req: "incr n 2\r\n", want: "1\r\n"},
		{name: "incr missing", req: "incr n 1\r\ndecr n 1\r\n", want: "NOT_FOUND\r\nNOT_FOUND\r\n"},
		{name: "incr non numeric", setup: "set n 0 0 1\r\nx\r\n", req: "incr n 1\r\n", want: "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"},
		{name: "incr bad delta", setup: "set n 0 0 1\r\n1\r\n", req: "incr n -1\r\nincr n x\r\nincr n 18446744073709551616\r\n",
			want: "CLIENT_ERROR invalid numeric delta argument\r\nCLIENT_ERROR invalid numeric delta argument\r\nCLIENT_ERROR invalid numeric delta argument\r\n"},
		{name: "incr noreply", setup: "set n 0 0 1\r\n1\r\n", req: "incr n 1 noreply\r\nget n\r\n", want: "VALUE n 0 1\r\n2\r\nEND\r\n"},
		{name: "incr tokens", req: "incr n\r\nincr n 1 noreply x\r\n", want: "ERROR\r\nERROR\r\n"},
		{name: "incr key too long", req: "incr " + protoKey251 + " 1\r\n", want: "CLIENT_ERROR bad command line format\r\n"},

		// delete / touch
		{name: "delete", setup: "set a 0 0 1\r\nx\r\n", req: "delete a\r\ndelete a\r\n", want: "DELETED\r\nNOT_FOUND\r\n"},
		{name: "delete hold zero", setup: "set a 0 0 1\r\nx\r\n", req: "delete a 0\r\n", want: "DELETED\r\n"},
		{name: "delete bad hold", req: "delete a 1\r\n", want: "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"},
		{name: "delete noreply", setup: "set a 0 0 1\r\nx\r\n", req: "delete a noreply\r\ndelete a 0 noreply\r\nget a\r\n", want: "END\r\n"},
		{name: "delete tokens", req: "delete\r\ndelete a 0 noreply x\r\n", want: "ERROR\r\nERROR\r\n"},
		{name: "touch", setup: "set a 0 0 1\r\nx\r\n", req: "touch a 100\r\ntouch b 100\r\n", want: "TOUCHED\r\nNOT_FOUND\r\n"},
		{name: "touch bad exptime", req: "touch a x\r\n", want: "CLIENT_ERROR invalid exptime argument\r\n"},
		{name: "touch expires", setup: "set a 0 0 1\r\nx\r\n", req: "touch a -1\r\nget a\r\n", want: "TOUCHED\r\nEND\r\n"},
		{name: "touch noreply", setup: "set a 0 0 1\r\nx\r\n", req: "touch a 10 noreply\r\n", want: ""},

		// the rest
		{name: "flush_all", setup: "set a 0 0 1\r\nx\r\n", req: "flush_all\r\nget a\r\n", want: "OK\r\nEND\r\n"},
		{name: "flush_all zero", setup: "set a 0 0 1\r\nx\r\n", req: "flush_all 0\r\nget a\r\n", want: "OK\r\nEND\r\n"},
		{name: "flush_all noreply", setup: "set a 0 0 1\r\nx\r\n", req: "flush_all noreply\r\nflush_all 0 noreply\r\nget a\r\n", want: "END\r\n"},
		{name: "flush_all delayed", setup: "set a 0 0 1\r\nx\r\n", req: "flush_all 100\r\nget a\r\n", want: "OK\r\nVALUE a 0 1\r\nx\r\nEND\r\n"},
		{name: "flush_all bad", req: "flush_all x\r\nflush_all 1 2 3\r\n", want: "CLIENT_ERROR invalid exptime argument\r\nERROR\r\n"},
		{name: "version", req: "version\r\n", want: "VERSION " + Version + "\r\n"},
		{name: "verbosity", req: "verbosity 1\r\nverbosity\r\nverbosity x\r\nverbosity 1 noreply\r\n", want: "OK\r\nERROR\r\nCLIENT_ERROR bad command line format\r\n"},
		{name: "cache_memlimit", req: "cache_memlimit 7\r\ncache_memlimit x\r\ncache_memlimit 2000000000\r\ncache_memlimit 16\r\ncache_memlimit 16 noreply\r\n",
			want: "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\nERROR\r\nMEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\nOK\r\n"},
		{name: "shutdown disabled", req: "shutdown\r\n", want: "ERROR: shutdown not enabled\r\n"},
		{name: "quit", setup: "set a 0 0 1\r\nx\r\n", req: "get a\r\nquit\r\nget a\r\n", want: "VALUE a 0 1\r\nx\r\nEND\r\n", closed: true},
		{name: "stats unknown", req: "stats nope\r\n", want: "ERROR\r\n"},
		{name: "stats reset", req: "stats reset\r\n", want: "RESET\r\n"},
		{name: "stats detail", req: "stats detail\r\nstats detail on\r\nstats detail dump\r\nstats detail x\r\n",
			want: "CLIENT_ERROR usage: stats detail on|off|dump\r\nOK\r\nEND\r\nCLIENT_ERROR usage: stats detail on|off|dump\r\n"},
		{name: "stats sizes", req: "stats sizes\r\n", want: "STAT sizes_status disabled\r\nEND\r\n"},
		{name: "stats sizes_disable", req: "stats sizes_disable\r\n", want: "STAT sizes_status disabled\r\n"},
		{name: "stats extstore", req: "stats extstore\r\n", want: "END\r\n"},
		{name: "stats cachedump", setup: "set a 5 0 1\r\nx\r\nset b 0 1000 3\r\nyyy\r\n",
			req:    "stats cachedump 1 0\r\nstats cachedump 1 1\r\nstats cachedump 2 0\r\n",
			wantRe: `^(ITEM a \[1 b; 0 s\]\r\nITEM b \[3 b; \d{10} s\]\r\n|ITEM b \[3 b; \d{10} s\]\r\nITEM a \[1 b; 0 s\]\r\n)END\r\nITEM [ab] \[[13] b; \d+ s\]\r\nEND\r\nEND\r\n$`},
		{name: "stats cachedump bad", req: "stats cachedump 1\r\nstats cachedump x 1\r\nstats cachedump 64 1\r\n",
			want: "CLIENT_ERROR bad command line format\r\nCLIENT_ERROR bad command line format\r\nCLIENT_ERROR Illegal slab id\r\n"},
		{name: "lru_crawler", req: "lru_crawler tocrawl 100\r\nlru_crawler sleep 100\r\nlru_crawler sleep 2000000\r\nlru_crawler tocrawl x\r\n" +
			"lru_crawler crawl 0\r\nlru_crawler crawl 1,x\r\nlru_crawler mgdump all\r\nlru_crawler nope\r\n",
			want: "OK\r\nOK\r\nCLIENT_ERROR sleep must be one second or less\r\nCLIENT_ERROR bad command line format\r\n" +
				"BADCLASS invalid class id\r\nBADCLASS invalid class id\r\nERROR\r\nERROR\r\n"},
		{name: "lru_crawler disabled", req: "lru_crawler disable\r\nlru_crawler crawl all\r\nlru_crawler metadump all\r\nlru_crawler enable\r\n",
			want: "OK\r\nCLIENT_ERROR lru crawler disabled\r\nCLIENT_ERROR lru crawler disabled\r\nOK\r\n"},
		{name: "metadump bad class", req: "lru_crawler metadump 64\r\n", want: "BADCLASS invalid class id\r\n"},
		{name: "metadump other class", setup: "set a 0 0 1\r\nx\r\n", req: "lru_crawler metadump 2\r\n", want: "END\r\n"},
		{name: "metadump pipelined", req: "mn\r\nlru_crawler metadump all\r\n", want: "MN\r\nERROR cannot pipeline other commands before metadump\r\n"},
		{name: "slabs", req: "slabs reassign 1 1\r\nslabs reassign 1 5\r\nslabs reassign 1 0\r\nslabs reassign x 0\r\nslabs automove 0\r\n" +
			"slabs automove 3\r\nslabs automove x\r\nslabs automove ratio 0.5\r\nslabs automove ratio\r\nslabs automove 2 noreply\r\nslabs nope\r\n",
			want: "SAME src and dst class are identical\r\nBADCLASS invalid src or dst class id\r\nNOSPARE source class has no spare pages\r\n" +
				"CLIENT_ERROR bad command line format\r\nOK\r\nERROR\r\nCLIENT_ERROR bad command line format\r\nOK\r\nERROR\r\nERROR\r\n"},
		{name: "lru", req: "lru mode flat\r\nlru mode x\r\nlru temp_ttl 10\r\nlru temp_ttl x\r\nlru tune 20 20 0.1 2\r\nlru tune 50 50 0.1 2\r\n" +
			"lru tune 20 20 0 2\r\nlru tune x 20 0.1 2\r\nlru mode flat noreply\r\nlru\r\n",
			want: "OK\r\nERROR\r\nOK\r\nERROR\r\nOK\r\nERROR hot and warm pcts must not exceed 80\r\n" +
				"ERROR hot/warm age factors must be greater than 0\r\nERROR\r\nERROR\r\n"},
		{name: "stats items empty", req: "stats items\r\n", want: "END\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, addr := startProtoServer(t, ServerConfig{}, Config{})
			conn := protoDial(t, addr)
			if tt.setup != "" {
				protoRoundTrip(t, conn, tt.setup)
			}
			if tt.closed {
				_, err := io.WriteString(conn, tt.req)
				require.NoError(t, err)
				requireProtoClosed(t, conn, tt.want)
				return
			}
			got := protoRoundTrip(t, conn, tt.req)
			if tt.wantRe != "" {
				require.Regexp(t, tt.wantRe, got)
				return
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestTextProtocolCAS(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{}, Config{})
	conn := protoDial(t, addr)
	require.Equal(t, "STORED\r\n", protoRoundTrip(t, conn, "set a 0 0 1\r\nx\r\n"))
	m := protoCASRe.FindStringSubmatch(protoRoundTrip(t, conn, "gets a\r\n"))
	require.NotNil(t, m)
	cas := m[4]
	require.Equal(t, "STORED\r\n", protoRoundTrip(t, conn, "cas a 4 0 1 "+cas+"\r\ny\r\n"))
	require.Equal(t, "EXISTS\r\n", protoRoundTrip(t, conn, "cas a 4 0 1 "+cas+"\r\nz\r\n"))
	m = protoCASRe.FindStringSubmatch(protoRoundTrip(t, conn, "gats 0 a\r\n"))
	require.NotNil(t, m)
	assert.NotEqual(t, cas, m[4], "a store gives a new CAS")
	require.Equal(t, "", protoRoundTrip(t, conn, "cas a 0 0 1 "+m[4]+" noreply\r\nw\r\n"))
	require.Equal(t, "VALUE a 0 1\r\nw\r\nEND\r\n", protoRoundTrip(t, conn, "get a\r\n"))
}

func TestTextProtocolNoCAS(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{}, Config{NoCAS: true})
	conn := protoDial(t, addr)
	// memcached -C answers EXISTS to every cas, even one naming the 0 that
	// gets shows: no CAS matches when there are none.
	require.Equal(t, "STORED\r\nVALUE a 0 1 0\r\nx\r\nEND\r\nEXISTS\r\n",
		protoRoundTrip(t, conn, "set a 0 0 1\r\nx\r\ngets a\r\ncas a 0 0 1 0\r\ny\r\n"))
}

func TestTextProtocolFlushDisabled(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{DisableFlush: true}, Config{})
	conn := protoDial(t, addr)
	require.Equal(t, "CLIENT_ERROR flush_all not allowed\r\n", protoRoundTrip(t, conn, "flush_all\r\nflush_all noreply\r\n"))
}

func TestTextProtocolOutOfMemory(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{}, Config{MaxBytes: 8 * protoItemSize, NoEvict: true})
	conn := protoDial(t, addr)
	val := strings.Repeat("v", 400)
	ooms := 0
	for i := range 100 {
		got := protoRoundTrip(t, conn, fmt.Sprintf("set k%d 0 0 %d\r\n%s\r\n", i, len(val), val))
		if got == "SERVER_ERROR out of memory storing object\r\n" {
			ooms++
			continue
		}
		require.Equal(t, "STORED\r\n", got)
	}
	require.Positive(t, ooms, "a cache that never evicts fills up")
	// k0 was stored first; its shard has no room for a bigger value. The
	// block is read, and the old value is dropped as memcached drops it.
	big := strings.Repeat("b", protoItemSize-ItemOverhead-2)
	require.Equal(t, "SERVER_ERROR out of memory storing object\r\nEND\r\n",
		protoRoundTrip(t, conn, fmt.Sprintf("set k0 0 0 %d\r\n%s\r\nget k0\r\n", len(big), big)))
	require.Equal(t, "", protoRoundTrip(t, conn, fmt.Sprintf("set k1 0 0 %d noreply\r\n%s\r\n", len(big), big)))
	require.Regexp(t, `STAT store_no_memory [1-9]`, protoRoundTrip(t, conn, "stats\r\n"))
}

func TestTextProtocolShutdown(t *testing.T) {
	s, addr := startProtoServer(t, ServerConfig{AllowShutdown: true}, Config{})
	conn := protoDial(t, addr)
	require.Equal(t, "CLIENT_ERROR invalid shutdown mode\r\n", protoRoundTrip(t, conn, "shutdown now\r\n"))
	_, err := io.WriteString(conn, "shutdown graceful\r\n")
	require.NoError(t, err)
	requireProtoClosed(t, conn, "")
	select {
	case <-s.Done():
	case <-time.After(protoIOTimeout):
		t.Fatal("server still running after shutdown")
	}
}

func TestTextProtocolLineLimit(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{}, Config{})

	// At the limit the server keeps waiting for the line end.
	conn := protoDial(t, addr)
	_, err := io.WriteString(conn, strings.Repeat("a", maxLineLen))
	require.NoError(t, err)
	require.Equal(t, "ERROR\r\n", protoRoundTrip(t, conn, "\r\n"))

	// One byte past it without a line end, the connection goes.
	conn = protoDial(t, addr)
	_, err = io.WriteString(conn, strings.Repeat("a", maxLineLen+1))
	require.NoError(t, err)
	requireProtoClosed(t, conn, "")

	// A storage command is no exception.
	conn = protoDial(t, addr)
	_, err = io.WriteString(conn, "set "+strings.Repeat("a", maxLineLen))
	require.NoError(t, err)
	requireProtoClosed(t, conn, "")
}

func TestTextProtocolHugeMultiget(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{}, Config{})
	conn := protoDial(t, addr)
	require.Equal(t, "STORED\r\nSTORED\r\n", protoRoundTrip(t, conn, "set k7 0 0 2\r\nv7\r\nset k99999 1 0 1\r\nz\r\n"))

	const nkeys = 100000
	var req, want strings.Builder
	req.WriteString("get")
	for i := range nkeys {
		fmt.Fprintf(&req, " k%d", i)
		switch i {
		case 7:
			want.WriteString("VALUE k7 0 2\r\nv7\r\n")
		case 99999:
			want.WriteString("VALUE k99999 1 1\r\nz\r\n")
		}
	}
	req.WriteString("\r\n")
	want.WriteString("END\r\n")

	errc := make(chan error, 1)
	go func() {
		_, err := io.WriteString(conn, req.String()+protoSentinel)
		errc <- err
	}()
	got := readUntilProtoSentinel(t, conn)
	require.NoError(t, <-errc)
	require.Equal(t, want.String(), got)
}

func TestTextProtocolMultigetLargeOutput(t *testing.T) {
	// Many hits of large values: the reply is produced in bounded pieces
	// and must still arrive whole and in order.
	_, addr := startProtoServer(t, ServerConfig{MaxOutput: 4096}, Config{})
	conn := protoDial(t, addr)
	val := strings.Repeat("v", 900)
	require.Equal(t, "STORED\r\n", protoRoundTrip(t, conn, "set big 0 0 900\r\n"+val+"\r\n"))
	const n = 2000
	var want strings.Builder
	for range n {
		want.WriteString("VALUE big 0 900\r\n" + val + "\r\n")
	}
	want.WriteString("END\r\n")
	req := "get" + strings.Repeat(" big", n) + "\r\n"
	errc := make(chan error, 1)
	go func() {
		_, err := io.WriteString(conn, req+protoSentinel)
		errc <- err
	}()
	got := readUntilProtoSentinel(t, conn)
	require.NoError(t, <-errc)
	require.Equal(t, want.String(), got)
}

// protoPipeline is a mix of commands with their exact replies, used whole,
// byte by byte and in every split. It leaves the cache as it found it
// (without a and b), so one server can run it again and again.
var protoPipeline = []struct{ req, reply string }{
	{"set a 0 0 1\r\nx\r\n", "STORED\r\n"},
	{"get a b\r\n", "VALUE a 0 1\r\nx\r\nEND\r\n"},
	{"set a 0 0 2000\r\n" + strings.Repeat("q", 2000) + "\r\n", "SERVER_ERROR object too large for cache\r\n"},
	{"add b 3 0 3 noreply\r\nabc\r\n", ""},
	{"gets b\r\n", ""}, // reply checked by pattern
	{"incr b 1\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"},
	{"set n 0 0 1\nx\n\n", "CLIENT_ERROR bad data chunk\r\n"},
	{"set " + protoKey251 + " 0 0 1\r\n", "CLIENT_ERROR bad command line format\r\n"},
	{"x\r\n", "ERROR\r\n"},
	{"delete b\r\n", "DELETED\r\n"},
	{"get " + strings.Repeat("a ", 1500) + "\r\n", "END\r\n"},
	// Not version: its reply is the sentinel's, and a read ending right
	// after it would end readUntilProtoSentinel early.
	{"touch nokey 10\r\n", "NOT_FOUND\r\n"},
}

func protoPipelineRequest() string {
	var b strings.Builder
	for _, p := range protoPipeline {
		b.WriteString(p.req)
	}
	return b.String()
}

var protoPipelineRe = func() *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, p := range protoPipeline {
		if strings.HasPrefix(p.req, "gets b") {
			b.WriteString(`VALUE b 3 3 \d+\r\nabc\r\nEND\r\n`)
			continue
		}
		b.WriteString(regexp.QuoteMeta(p.reply))
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}()

func TestTextProtocolOneBytePerWrite(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{}, Config{})
	conn := protoDial(t, addr)
	require.NoError(t, conn.(*net.TCPConn).SetNoDelay(true))
	req := protoPipelineRequest()
	errc := make(chan error, 1)
	go func() {
		for i := range len(req) {
			if _, err := conn.Write([]byte{req[i]}); err != nil {
				errc <- err
				return
			}
		}
		_, err := io.WriteString(conn, protoSentinel)
		errc <- err
	}()
	got := readUntilProtoSentinel(t, conn)
	require.NoError(t, <-errc)
	require.Regexp(t, protoPipelineRe, got)
}

func TestTextProtocolManyInOneWrite(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{}, Config{})
	conn := protoDial(t, addr)
	const n = 2000
	var req, want strings.Builder
	for i := range n {
		fmt.Fprintf(&req, "set k%d %d 0 %d\r\n%s\r\nget k%d\r\n", i, i, len(strconv.Itoa(i)), strconv.Itoa(i), i)
		fmt.Fprintf(&want, "STORED\r\nVALUE k%d %d %d\r\n%d\r\nEND\r\n", i, i, len(strconv.Itoa(i)), i)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := io.WriteString(conn, req.String()+protoSentinel)
		errc <- err
	}()
	got := readUntilProtoSentinel(t, conn)
	require.NoError(t, <-errc)
	require.Equal(t, want.String(), got)
}

// readProtoStats sends a stats command and parses its STAT lines, requiring the
// reply to end with END.
func readProtoStats(t *testing.T, conn net.Conn, cmd string) map[string]string {
	t.Helper()
	_, err := io.WriteString(conn, cmd+"\r\n")
	require.NoError(t, err)
	r := bufio.NewReader(conn)
	stats := map[string]string{}
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		require.True(t, strings.HasSuffix(line, "\r\n"), "line %q", line)
		line = strings.TrimSuffix(line, "\r\n")
		if line == "END" {
			require.Zero(t, r.Buffered(), "nothing after END")
			return stats
		}
		f := strings.Split(line, " ")
		require.Len(t, f, 3, "line %q", line)
		require.Equal(t, "STAT", f[0])
		stats[f[1]] = f[2]
	}
}

func TestTextProtocolStats(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{IdleTimeout: time.Hour}, Config{})
	conn := protoDial(t, addr)
	require.Equal(t, "STORED\r\nVALUE a 0 1\r\nx\r\nEND\r\nEND\r\n", protoRoundTrip(t, conn, "set a 0 0 1\r\nx\r\nget a\r\nget b\r\n"))
	big := strings.Repeat("b", 2000)
	require.Equal(t, strings.Repeat("SERVER_ERROR object too large for cache\r\n", 2),
		protoRoundTrip(t, conn, "add x 0 0 2000\r\n"+big+"\r\nappend a 0 0 2000\r\n"+big+"\r\n"))

	// memcached_exporter's sequence on one connection.
	general := readProtoStats(t, conn, "stats")
	slabs := readProtoStats(t, conn, "stats slabs")
	items := readProtoStats(t, conn, "stats items")
	settings := readProtoStats(t, conn, "stats settings")
	conns := readProtoStats(t, conn, "stats conns")

	textual := map[string]bool{"version": true, "libevent": true}
	for k, v := range general {
		if textual[k] {
			continue
		}
		_, err := strconv.ParseFloat(v, 64)
		require.NoError(t, err, "stats %s = %q", k, v)
	}
	assert.Equal(t, Version, general["version"])
	assert.Regexp(t, `^\d+\.\d{6}$`, general["rusage_user"])
	assert.Regexp(t, `^\d+\.\d{6}$`, general["rusage_system"])
	for k, want := range map[string]string{
		"cmd_get": "2", "get_hits": "1", "store_too_large": "2", "get_misses": "1", "cmd_set": "1", "curr_items": "1", "total_items": "1",
		"threads": "4", "idle_kicks": "0", "max_connections": "1024",
	} {
		assert.Equal(t, want, general[k], "stats %s", k)
	}
	for _, k := range []string{"pid", "uptime", "time", "pointer_size", "total_connections", "rejected_connections",
		"connection_structures", "cmd_flush", "cmd_touch", "bytes", "evictions", "reclaimed", "bytes_read",
		"bytes_written", "limit_maxbytes", "conn_yields", "store_no_memory", "accepting_conns"} {
		assert.Contains(t, general, k)
	}
	assert.Equal(t, "1", items["items:1:number"])
	assert.Equal(t, "1", slabs["active_slabs"])
	assert.Equal(t, "1", slabs["1:get_hits"])
	for k, want := range map[string]string{
		"maxbytes": strconv.Itoa(4 << 20), "maxconns": "1024", "item_size_max": strconv.Itoa(protoItemSize),
		"cas_enabled": "yes", "flush_enabled": "yes", "evictions": "on", "tcp_backlog": "1024",
		"reqs_per_event": "20", "num_threads": "4", "domain_socket": "NULL", "idle_timeout": "3600",
		"binding_protocol": "auto-negotiate", "inter": "127.0.0.1", "udpport": "0",
	} {
		assert.Equal(t, want, settings[k], "stats settings %s", k)
	}
	assert.NotEmpty(t, conns)
	for k := range conns {
		assert.Regexp(t, `^\d+:(addr|listen_addr|state|secs_since_last_cmd)$`, k)
	}

	require.Equal(t, "RESET\r\n", protoRoundTrip(t, conn, "stats reset\r\n"))
	assert.Equal(t, "0", readProtoStats(t, conn, "stats")["cmd_get"])
}

// --- handle without sockets ---

// newHandleServer starts a server to call handle on directly; no client
// connects to it.
func newHandleServer(t testing.TB, cfg ServerConfig) *Server {
	t.Helper()
	s, _ := startProtoServer(t, cfg, Config{MaxBytes: 256 << 10})
	return s
}

// protoFeeder plays the reactor for handle: it keeps the unconsumed input,
// appends what arrives and calls handle until it needs more input.
type protoFeeder struct {
	s       *Server
	pc      protoConn
	buf     []byte
	out     []byte
	act     action
	maxReqs int
	// maxKept is the most input handle ever left unconsumed.
	maxKept int
}

func (f *protoFeeder) write(t testing.TB, p []byte) {
	t.Helper()
	if f.act != actNone {
		return
	}
	f.buf = append(f.buf, p...)
	for i := 0; ; i++ {
		require.Less(t, i, 1<<20, "handle makes no progress")
		// A fresh copy each call: handle must not rely on in's identity.
		in := append([]byte(nil), f.buf...)
		n, out, reqs, act := f.s.handle(&f.pc, in, f.out, f.maxReqs)
		require.GreaterOrEqual(t, n, 0)
		require.LessOrEqual(t, n, len(in))
		require.LessOrEqual(t, reqs, f.maxReqs)
		f.out = out
		f.buf = f.buf[n:]
		f.maxKept = max(f.maxKept, len(f.buf))
		if act != actNone {
			f.act = act
			return
		}
		if reqs < f.maxReqs {
			return
		}
	}
}

func newProtoFeeder(s *Server) *protoFeeder { return &protoFeeder{s: s, maxReqs: 20} }

func TestHandleSplits(t *testing.T) {
	req := []byte(protoPipelineRequest())
	s := newHandleServer(t, ServerConfig{})
	ref := newProtoFeeder(s)
	ref.write(t, req)
	require.Regexp(t, protoPipelineRe, string(ref.out))

	for _, chunk := range []int{1, 2, 3, 5, 7, 64, 1000} {
		f := newProtoFeeder(s)
		for i := 0; i < len(req); i += chunk {
			f.write(t, req[i:min(i+chunk, len(req))])
		}
		require.Equal(t, actNone, f.act)
		require.Regexp(t, protoPipelineRe, string(f.out), "chunk %d", chunk)
	}
	// Every split into two reads, and three reads around each line end.
	for cut := range len(req) {
		f := newProtoFeeder(s)
		f.write(t, req[:cut])
		f.write(t, req[cut:])
		require.Regexp(t, protoPipelineRe, string(f.out), "cut at %d", cut)
		if req[cut] == '\n' {
			f = newProtoFeeder(s)
			f.write(t, req[:cut-1])
			f.write(t, req[cut-1:cut+1])
			f.write(t, req[cut+1:])
			require.Regexp(t, protoPipelineRe, string(f.out), "cuts around %d", cut)
		}
	}
}

func TestHandleMaxReqs(t *testing.T) {
	s := newHandleServer(t, ServerConfig{})
	var pc protoConn
	in := []byte("version\r\nversion\r\nversion\r\n")
	n, out, reqs, act := s.handle(&pc, in, nil, 2)
	require.Equal(t, actNone, act)
	require.Equal(t, 2, reqs)
	require.Equal(t, 18, n)
	require.Equal(t, strings.Repeat(protoSentinelReply, 2), string(out))

	// A storage command counts once, when its block has arrived.
	n, _, reqs, _ = s.handle(&pc, []byte("set a 0 0 5\r\nab"), nil, 20)
	require.Equal(t, 13, n)
	require.Zero(t, reqs)
	n, out, reqs, _ = s.handle(&pc, []byte("abcde\r\n"), nil, 20)
	require.Equal(t, 7, n)
	require.Equal(t, 1, reqs)
	require.Equal(t, "STORED\r\n", string(out))
}

func TestHandleBoundedBuffering(t *testing.T) {
	s := newHandleServer(t, ServerConfig{})
	s.cache.Set([]byte("k5"), []byte("five"), 0)

	// A get line of a million bytes streams through with at most one key
	// kept, however the reads fall.
	f := newProtoFeeder(s)
	var want bytes.Buffer
	f.write(t, []byte("get"))
	for i := range 100000 {
		k := fmt.Sprintf(" k%d", i%10)
		if i%10 == 5 {
			want.WriteString("VALUE k5 0 4\r\nfive\r\n")
		}
		f.write(t, []byte(k))
	}
	f.write(t, []byte("\r\n"))
	want.WriteString("END\r\n")
	require.Equal(t, actNone, f.act)
	require.Equal(t, want.String(), string(f.out))
	require.LessOrEqual(t, f.maxKept, maxLineLen+8)

	// Once streaming, only the partial key stays.
	f = newProtoFeeder(s)
	f.write(t, []byte("get "+strings.Repeat("k5 ", 1000)))
	f.write(t, []byte(strings.Repeat("k5 ", 100)+"k"))
	require.Equal(t, "k", string(f.buf))
	f.write(t, []byte("5\r\n"))
	require.Equal(t, strings.Repeat("VALUE k5 0 4\r\nfive\r\n", 1101)+"END\r\n", string(f.out))

	// A 250-byte key whose CR came without its LF is not too long.
	f = newProtoFeeder(s)
	f.write(t, []byte("get "+strings.Repeat("x ", 1100)+protoKey250+"\r"))
	require.Equal(t, protoKey250+"\r", string(f.buf))
	f.write(t, []byte("\n"))
	require.Equal(t, "END\r\n", string(f.out))

	// A key over 250 bytes in a streamed line ends it with an error and the
	// rest of the line is dropped.
	f = newProtoFeeder(s)
	f.write(t, []byte("get "+strings.Repeat("k5 ", 1000)))
	f.write(t, []byte(protoKey251))
	require.Empty(t, f.buf)
	f.write(t, []byte(strings.Repeat("k5 ", 1000)+"\r\nversion\r\n"))
	require.Equal(t, strings.Repeat("VALUE k5 0 4\r\nfive\r\n", 1000)+"CLIENT_ERROR bad command line format\r\n"+protoSentinelReply, string(f.out))
	// Within one read, the values already produced are dropped, as
	// memcached drops them.
	f = newProtoFeeder(s)
	f.write(t, []byte("get "+strings.Repeat("k5 ", 1000)+protoKey251))
	f.write(t, []byte(" k5\r\nversion\r\n"))
	require.Equal(t, "CLIENT_ERROR bad command line format\r\n"+protoSentinelReply, string(f.out))

	// Oversized blocks are swallowed as they come, not buffered.
	f = newProtoFeeder(s)
	f.write(t, []byte("set big 0 0 1000000\r\n"))
	for range 1000 {
		f.write(t, bytes.Repeat([]byte("b"), 1000))
		require.Empty(t, f.buf)
	}
	f.write(t, []byte("\r\nversion\r\n"))
	require.Equal(t, "SERVER_ERROR object too large for cache\r\n"+protoSentinelReply, string(f.out))

	// A block that fits waits whole, without its command line.
	f = newProtoFeeder(s)
	f.write(t, []byte("set "+protoKey250+" 0 0 500\r\n"+strings.Repeat("d", 499)))
	require.Len(t, f.buf, 499)
	f.write(t, []byte("d\r\n"))
	require.Equal(t, "STORED\r\n", string(f.out))
}

func TestHandleOutputYield(t *testing.T) {
	s := newHandleServer(t, ServerConfig{MaxOutput: 1000})
	val := bytes.Repeat([]byte("v"), 600)
	s.cache.Set([]byte("big"), val, 0)
	var pc protoConn
	in := []byte("get big big big big\r\nversion\r\n")
	var out []byte
	calls := 0
	for len(in) > 0 {
		calls++
		require.Less(t, calls, 100)
		n, o, reqs, act := s.handle(&pc, in, out, 20)
		require.Equal(t, actNone, act)
		out = o
		in = in[n:]
		if len(in) > 0 {
			require.Equal(t, 20, reqs, "a partial retrieval yields like a spent -R budget")
		}
	}
	require.Greater(t, calls, 1)
	one := "VALUE big 0 600\r\n" + string(val) + "\r\n"
	require.Equal(t, strings.Repeat(one, 4)+"END\r\n"+protoSentinelReply, string(out))
}

func TestHandleNoAllocs(t *testing.T) {
	s := newHandleServer(t, ServerConfig{})
	err := s.cache.Set([]byte("hit"), []byte("value"), 0)
	require.NoError(t, err)
	var pc protoConn
	out := make([]byte, 0, 4096)
	for _, req := range []string{
		"get hit\r\n", "get miss\r\n", "gets hit miss hit\r\n",
		"set key 1 0 5\r\nvalue\r\n", "set key 1 0 5 noreply\r\nvalue\r\n",
		"delete nope\r\n", "incr nope 1\r\n", "touch hit 0\r\n",
	} {
		in := []byte(req)
		allocs := testing.AllocsPerRun(100, func() {
			n, _, _, _ := s.handle(&pc, in, out[:0], 20)
			if n != len(in) {
				panic("not consumed")
			}
		})
		assert.Zero(t, allocs, "%q", req)
	}
}

func TestSafeStrto(t *testing.T) {
	for _, tt := range []struct {
		in  string
		u   uint64
		uok bool
		l   int64
		lok bool
	}{
		{"0", 0, true, 0, true},
		{"123", 123, true, 123, true},
		{"+5", 5, true, 5, true},
		{"-0", 0, true, 0, true},
		{"-1", 0, false, -1, true},
		{"\t7", 7, true, 7, true},
		{"7\r", 7, true, 7, true},
		{"7x", 0, false, 0, false},
		{"", 0, false, 0, false},
		{"-", 0, false, 0, false},
		{"18446744073709551615", 18446744073709551615, true, 0, false},
		{"18446744073709551616", 0, false, 0, false},
		{"-18446744073709551615", 1, true, 0, false},
		{"9223372036854775807", 9223372036854775807, true, 9223372036854775807, true},
		{"-9223372036854775808", 0, false, -9223372036854775808, true},
		{"-9223372036854775809", 9223372036854775807, true, 0, false}, // C negates modulo 2^64
	} {
		u, uok := safeStrtoull([]byte(tt.in))
		assert.Equal(t, tt.uok, uok, "safeStrtoull(%q)", tt.in)
		if tt.uok {
			assert.Equal(t, tt.u, u, "safeStrtoull(%q)", tt.in)
		}
		l, lok := safeStrtol([]byte(tt.in))
		assert.Equal(t, tt.lok, lok, "safeStrtol(%q)", tt.in)
		if tt.lok {
			assert.Equal(t, tt.l, l, "safeStrtol(%q)", tt.in)
		}
	}
}

// FuzzTextProtocol feeds arbitrary bytes, in arbitrary reads, to handle: it
// must not panic, must consume what it can and must keep its buffering
// within the protocol's bounds.
func FuzzTextProtocol(f *testing.F) {
	for _, seed := range []string{
		"set a 0 0 1\r\nx\r\nget a\r\n",
		"get a b c\r\ngets a\r\ngat 10 a\r\n",
		"set a 0 0 2000\r\n",
		"incr a 1\r\ndecr a 1\r\ndelete a 0 noreply\r\n",
		"stats\r\nstats settings\r\nstats items\r\nstats slabs\r\n",
		"get " + strings.Repeat("k ", 1200),
		"cas a 0 0 1 1\r\nx\r\nflush_all 10\r\nverbosity 1\r\n",
		"lru_crawler metadump all\r\nstats cachedump 1 0\r\nlru_crawler crawl 1\r\n",
		"stats detail on\r\nset a:b 0 0 1\r\nx\r\nget a:b\r\nstats detail dump\r\n",
		"slabs automove 1\r\nslabs reassign 1 0\r\nlru tune 10 10 0.1 2\r\nlru_crawler disable\r\n",
		"\x80\x01\x00\x00",
	} {
		f.Add([]byte(seed), uint8(7))
	}
	s := newHandleServer(f, ServerConfig{AllowShutdown: true})
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fd := newProtoFeeder(s)
		// Reads of 1 to 64 bytes, but at most a few hundred of them, so
		// that long inputs do not make each run quadratic.
		step := max(int(chunk)%64+1, len(data)/256)
		for i := 0; i < len(data) && fd.act == actNone; i += step {
			fd.write(t, data[i:min(i+step, len(data))])
			if fd.act != actNone {
				break
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
	})
}
