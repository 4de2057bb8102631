//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package emcache

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Large values are written from the arena under a pin (pin.go). These
// tests hold such a write half done with a client that reads slowly
// through a tiny receive buffer, change the cache under it, and check that
// the client still gets the value as it was when the get ran.

// pinnedValueLen is far more than the loopback socket buffers hold with a
// tiny receive window, so the reply stays half written.
const pinnedValueLen = 900 << 10

// pinValue is a value of n bytes that differs with version at every
// position, so a value overwritten in part shows.
func pinValue(version byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte((i/7+int(version))%26)
	}
	return b
}

// startPinServer serves a cache of 8 MB (two shards of 4 MB), which a few
// megabytes of sets wrap around.
func startPinServer(t *testing.T) (*Cache, *Server) {
	t.Helper()
	return startPinServerConfig(t, ServerConfig{})
}

// startPinServerConfig is startPinServer with cfg's settings (TLS).
func startPinServerConfig(t *testing.T, cfg ServerConfig) (*Cache, *Server) {
	t.Helper()
	c, err := New(Config{MaxBytes: 8 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	cfg.Addrs, cfg.Workers = []string{"127.0.0.1:0"}, 2
	s, err := c.Serve(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return c, s
}

// dialSlow connects with a receive buffer of a few kilobytes.
func dialSlow(t *testing.T, s *Server) *testClient {
	t.Helper()
	return dialSlowWith(t, s, func(nc net.Conn) net.Conn { return nc })
}

// dialSlowWith is dialSlow whose connection wrap makes (TLS, with its
// handshake done) before the server's end gets its small send buffer.
func dialSlowWith(t *testing.T, s *Server, wrap func(net.Conn) net.Conn) *testClient {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		cerr := rc.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		})
		if cerr != nil {
			return cerr
		}
		return err
	}}
	nc, err := d.Dial("tcp", s.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	local := nc.LocalAddr().String()
	nc = wrap(nc)
	// The server's end gets a small send buffer too: autotuned, it would
	// take a whole value at once.
	fd := -1
	eventually(t, "the server to adopt the connection", func() bool {
		for _, ci := range s.connInfos() {
			if ci.listenAddr != "" && strings.HasSuffix(ci.addr, local) {
				fd = ci.fd
				return true
			}
		}
		return false
	})
	require.NoError(t, unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096))
	return &testClient{t: t, nc: nc, r: bufio.NewReaderSize(nc, 1024)}
}

// setWire stores value under key over cl.
func setWire(cl *testClient, key string, value []byte) {
	cl.t.Helper()
	cl.send(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", key, len(value), value))
	cl.expect("STORED\r\n")
}

// readSlowly reads n bytes in steps of at most 1 KB.
func readSlowly(cl *testClient, n int) []byte {
	cl.t.Helper()
	got := make([]byte, 0, n)
	var step [1024]byte
	for len(got) < n {
		cl.nc.SetReadDeadline(time.Now().Add(ioTimeout))
		k, err := cl.r.Read(step[:min(len(step), n-len(got))])
		require.NoError(cl.t, err, "after %d of %d bytes", len(got), n)
		got = append(got, step[:k]...)
	}
	return got
}

// churn writes several times the cache's memory in other keys, so every
// ring wraps over whatever it held: the values are too large for the small
// ring, whose FIFO would otherwise take them all and leave the main ring's
// items alone.
func churn(cl *testClient) {
	cl.t.Helper()
	v := pinValue(9, 450<<10)
	for i := range 60 {
		setWire(cl, fmt.Sprintf("churn%d", i), v)
	}
}

// pinCount is the number of pins the cache's shards hold.
func pinCount(c *Cache) int {
	n := 0
	for _, s := range c.shards {
		s.mu.Lock()
		n += len(s.pins)
		s.mu.Unlock()
	}
	return n
}

func TestPinnedWriteSurvivesChanges(t *testing.T) {
	cases := []struct {
		name string
		// change runs while the reply is half written; wrapped says it
		// overwrote the arena, so the pin must have been revoked.
		change  func(t *testing.T, c *Cache, w *testClient)
		wrapped bool
		// rewritten stores the value twice before the get, so that its
		// record has a CAS field and a store of that size goes in place.
		rewritten bool
	}{
		{"nothing", func(*testing.T, *Cache, *testClient) {}, false, false},
		{"overwrite", func(_ *testing.T, _ *Cache, w *testClient) {
			for v := byte(1); v < 3; v++ {
				setWire(w, "pinned", pinValue(v, pinnedValueLen))
			}
		}, false, false},
		{"overwrite in place", func(_ *testing.T, _ *Cache, w *testClient) {
			setWire(w, "pinned", pinValue(1, pinnedValueLen))
		}, true, true},
		{"overwrite and evict", func(_ *testing.T, _ *Cache, w *testClient) {
			setWire(w, "pinned", pinValue(1, pinnedValueLen))
			churn(w)
		}, true, false},
		{"delete and evict", func(_ *testing.T, _ *Cache, w *testClient) {
			w.roundTrip("delete pinned\r\n", "DELETED\r\n")
			churn(w)
		}, true, false},
		{"evict", func(_ *testing.T, _ *Cache, w *testClient) { churn(w) }, true, false},
		{"flush_all and refill", func(_ *testing.T, _ *Cache, w *testClient) {
			w.roundTrip("flush_all\r\n", "OK\r\n")
			churn(w)
		}, true, false},
		{"resize", func(t *testing.T, c *Cache, _ *testClient) {
			require.NoError(t, c.SetMaxBytes(16<<20))
		}, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, s := startPinServer(t)
			w := dial(t, s)
			old := pinValue(0, pinnedValueLen)
			setWire(w, "pinned", old)
			if tc.rewritten {
				setWire(w, "pinned", old)
			}
			setWire(w, "small", []byte("tiny"))

			r := dialSlow(t, s)
			r.send("get pinned small\r\n")
			header := fmt.Sprintf("VALUE pinned 0 %d\r\n", len(old))
			r.expect(header)
			eventually(t, "the reply to be half written", func() bool { return hasState(s, "conn_mwrite") })
			tc.change(t, c, w)
			if tc.wrapped {
				assert.Zero(t, pinCount(c), "the pin was revoked")
			}

			want := string(old) + "\r\nVALUE small 0 4\r\ntiny\r\nEND\r\n"
			got := readSlowly(r, len(want))
			require.True(t, bytes.Equal([]byte(want), got), "the value changed under the reply at byte %d", firstDiff(want, got))
			eventually(t, "the pins to be released", func() bool { return pinCount(c) == 0 })
			r.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
		})
	}
}

func TestPinnedIncrInPlace(t *testing.T) {
	c, s := startPinServer(t)
	w := dial(t, s)
	// A number with trailing spaces is a counter memcached rewrites in
	// place, large as it is.
	setWire(w, "n", []byte("7"+strings.Repeat(" ", pinnedValueLen-1)))
	// The first change moves the item to a record with a CAS field,
	// which the next changes in place.
	w.roundTrip("incr n 1\r\n", "8\r\n")
	old := []byte("8" + strings.Repeat(" ", pinnedValueLen-1))
	r := dialSlow(t, s)
	r.send("get n\r\n")
	r.expect(fmt.Sprintf("VALUE n 0 %d\r\n", len(old)))
	eventually(t, "the reply to be half written", func() bool { return hasState(s, "conn_mwrite") })
	w.roundTrip("incr n 1000\r\n", "1008\r\n")
	assert.Zero(t, pinCount(c), "the in-place change revoked the pin")
	want := string(old) + "\r\nEND\r\n"
	got := readSlowly(r, len(want))
	require.True(t, bytes.Equal([]byte(want), got), "the value changed under the reply at byte %d", firstDiff(want, got))
}

// A client that goes away mid-value releases its pin.
func TestPinnedWriteConnClosed(t *testing.T) {
	c, s := startPinServer(t)
	w := dial(t, s)
	setWire(w, "pinned", pinValue(0, pinnedValueLen))
	r := dialSlow(t, s)
	r.send("get pinned pinned pinned\r\n")
	r.expect(fmt.Sprintf("VALUE pinned 0 %d\r\n", pinnedValueLen))
	eventually(t, "the reply to be half written", func() bool { return hasState(s, "conn_mwrite") })
	require.NotZero(t, pinCount(c))
	r.nc.Close()
	eventually(t, "the pins to be released", func() bool { return pinCount(c) == 0 })
	churn(w)
	w.roundTrip("get small\r\n", "END\r\n")
}

// Pipelined gets of values large and small, read through a tiny window:
// every reply arrives whole and in order, past partial writes that end
// inside values and between them.
func TestPinnedWritesPipelined(t *testing.T) {
	c, s := startPinServer(t)
	w := dial(t, s)
	var want strings.Builder
	var req strings.Builder
	for i := range 40 {
		n := []int{10, refMinLen, refMinLen - 1, 70 << 10, 300 << 10, 1}[i%6]
		key := fmt.Sprintf("k%d", i)
		v := pinValue(byte(i), n)
		setWire(w, key, v)
		fmt.Fprintf(&req, "get %s nokey%d %s\r\n", key, i, key)
		fmt.Fprintf(&want, "VALUE %s 0 %d\r\n%s\r\nVALUE %s 0 %d\r\n%s\r\nEND\r\n", key, n, v, key, n, v)
	}
	r := dialSlow(t, s)
	go func() { // the requests may back up too: write them meanwhile
		r.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
		io.WriteString(r.nc, req.String())
	}()
	got := readSlowly(r, want.Len())
	require.True(t, bytes.Equal([]byte(want.String()), got), "the replies differ at byte %d", firstDiff(want.String(), got))
	eventually(t, "the pins to be released", func() bool { return pinCount(c) == 0 })
}

func firstDiff(want string, got []byte) int {
	for i := range min(len(want), len(got)) {
		if want[i] != got[i] {
			return i
		}
	}
	return min(len(want), len(got))
}

// Replies that cannot go by reference (the meta and binary protocols', and
// any over TLS, whose transport does not write vectors) copy large values:
// no pin is taken, and what the client reads is the value as it was when
// read, however the cache changes while the reply is half written.
func TestLargeValuesCopiedWhereNotPinned(t *testing.T) {
	pki := newTestPKI(t)
	old := pinValue(0, pinnedValueLen)
	getReq := bReq(binOpGet, "pinned")
	binHeader := bHit(getReq, 0, false, "").encode()
	cases := []struct {
		name  string
		tls   bool
		req   string
		head  string // what precedes the value
		trail string // what follows it
	}{
		{"meta", false, "mg pinned v\r\n", fmt.Sprintf("VA %d\r\n", len(old)), "\r\n"},
		{"binary", false, string(getReq.encode()), "", ""},
		{"text over TLS", true, "get pinned\r\n", fmt.Sprintf("VALUE pinned 0 %d\r\n", len(old)), "\r\nEND\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var cfg ServerConfig
			wrap := func(nc net.Conn) net.Conn { return nc }
			if tc.tls {
				cfg.TLS = pki.serverTLS(t)
				wrap = func(nc net.Conn) net.Conn {
					conn := tls.Client(nc, pki.clientTLS())
					require.NoError(t, conn.SetDeadline(time.Now().Add(ioTimeout)))
					require.NoError(t, conn.Handshake())
					return conn
				}
			}
			c, s := startPinServerConfig(t, cfg)
			w := dialSlowWith(t, s, wrap) // a writer's window need not be small
			setWire(w, "pinned", old)

			r := dialSlowWith(t, s, wrap)
			r.send(tc.req)
			head := tc.head
			if tc.name == "binary" {
				// The header carries the body's length: the value's.
				h := readSlowly(r, len(binHeader)) // with the flags
				require.Equal(t, uint32(4+len(old)), binary.BigEndian.Uint32(h[8:12]))
				head = ""
			}
			r.expect(head)
			eventually(t, "the reply to be half written", func() bool { return hasState(s, "conn_mwrite") })
			assert.Zero(t, pinCount(c), "a copied reply pins nothing")
			setWire(w, "pinned", pinValue(1, pinnedValueLen))
			churn(w)

			want := string(old) + tc.trail
			got := readSlowly(r, len(want))
			require.True(t, bytes.Equal([]byte(want), got), "the value changed under the reply at byte %d", firstDiff(want, got))
		})
	}
}
