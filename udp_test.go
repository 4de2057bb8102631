package emcache

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startUDPServer serves a fresh cache over TCP and UDP on kernel-chosen
// loopback ports.
func startUDPServer(t *testing.T, cfg ServerConfig) *Server {
	t.Helper()
	cfg.Addrs = []string{"127.0.0.1:0"}
	cfg.UDPAddrs = []string{"127.0.0.1:0"}
	_, s := startServer(t, cfg)
	return s
}

// udpClient speaks memcached's UDP framing.
type udpClient struct {
	t  *testing.T
	uc *net.UDPConn
}

func dialUDP(t *testing.T, s *Server) *udpClient {
	t.Helper()
	uc, err := net.DialUDP("udp", nil, s.UDPAddrs()[0].(*net.UDPAddr))
	require.NoError(t, err)
	t.Cleanup(func() { uc.Close() })
	// Room for the longest reply a test asks for, which arrives at once:
	// 100 datagrams of the default buffer's 200 KiB.
	uc.SetReadBuffer(1 << 20)
	return &udpClient{t: t, uc: uc}
}

// udpFrame is a request datagram: the frame header, then the payload.
func udpFrame(id, seq, total, reserved uint16, payload string) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, seq)
	b = binary.BigEndian.AppendUint16(b, total)
	b = binary.BigEndian.AppendUint16(b, reserved)
	return append(b, payload...)
}

func (c *udpClient) sendRaw(d []byte) {
	c.t.Helper()
	require.NoError(c.t, c.uc.SetWriteDeadline(time.Now().Add(ioTimeout)))
	_, err := c.uc.Write(d)
	require.NoError(c.t, err)
}

// send sends payload as one well-framed request.
func (c *udpClient) send(id uint16, payload string) { c.sendRaw(udpFrame(id, 0, 1, 0, payload)) }

// message reads the datagrams of the next reply message, which must answer
// request id, and returns their payloads joined in sequence order. It
// checks the framing as a client must rely on it: every datagram at most
// 1400 bytes and carrying a payload, the id echoed, the reserved bytes
// zero, the same total in each, and every sequence number below it once.
func (c *udpClient) message(id uint16) (string, int) {
	c.t.Helper()
	parts := map[uint16][]byte{}
	total := -1
	buf := make([]byte, 64<<10)
	for total < 0 || len(parts) < total {
		require.NoError(c.t, c.uc.SetReadDeadline(time.Now().Add(ioTimeout)))
		n, err := c.uc.Read(buf)
		require.NoError(c.t, err, "datagram %d of %d", len(parts), total)
		d := buf[:n]
		require.LessOrEqual(c.t, n, udpMaxPayload)
		require.Greater(c.t, n, udpHeaderLen)
		require.Equal(c.t, id, binary.BigEndian.Uint16(d), "request id")
		assert.Zero(c.t, binary.BigEndian.Uint16(d[6:]), "reserved")
		seq, tot := binary.BigEndian.Uint16(d[2:]), int(binary.BigEndian.Uint16(d[4:]))
		if total < 0 {
			total = tot
		}
		require.Equal(c.t, total, tot, "total of datagram %d", seq)
		require.Less(c.t, int(seq), total)
		require.NotContains(c.t, parts, seq, "sequence number twice")
		if int(seq) < total-1 {
			assert.Equal(c.t, udpMaxPayload, n, "only the last datagram is short")
		}
		parts[seq] = bytes.Clone(d[udpHeaderLen:])
	}
	var b strings.Builder
	for seq := range uint16(total) {
		b.Write(parts[seq])
	}
	return b.String(), total
}

// roundTrip sends payload as request id and returns its reply message.
func (c *udpClient) roundTrip(id uint16, payload string) string {
	c.t.Helper()
	c.send(id, payload)
	m, _ := c.message(id)
	return m
}

// tcpReply is what the TCP protocol answers req: what UDP must carry,
// byte for byte.
func tcpReply(t *testing.T, s *Server, req, end string) string {
	t.Helper()
	tc := dial(t, s)
	tc.send(req)
	tc.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	var b strings.Builder
	for !strings.HasSuffix(b.String(), end) {
		line, err := tc.r.ReadString('\n')
		require.NoError(t, err, "after %q", b.String())
		b.WriteString(line)
	}
	tc.nc.Close()
	return b.String()
}

func TestUDPSetGet(t *testing.T) {
	s := startUDPServer(t, ServerConfig{})
	c := dialUDP(t, s)
	assert.Equal(t, "STORED\r\n", c.roundTrip(1, "set foo 5 0 6\r\nfooval\r\n"))
	assert.Equal(t, "VALUE foo 5 6\r\nfooval\r\nEND\r\n", c.roundTrip(2, "get foo\r\n"))
	assert.Equal(t, "END\r\n", c.roundTrip(3, "get nothing\r\n"))
	assert.Equal(t, "NOT_FOUND\r\n", c.roundTrip(4, "incr n 1\r\n"))
	assert.Equal(t, "STORED\r\n", c.roundTrip(5, "set n 0 0 1\r\n1\r\n"))
	assert.Equal(t, "2\r\n", c.roundTrip(6, "incr n 1\r\n"))
	assert.Equal(t, "DELETED\r\n", c.roundTrip(7, "delete foo\r\n"))
	// And TCP sees what UDP stored.
	assert.Equal(t, "VALUE n 0 1\r\n2\r\nEND\r\n", tcpReply(t, s, "get n\r\n", "END\r\n"))
}

func TestUDPEchoesRequestID(t *testing.T) {
	s := startUDPServer(t, ServerConfig{})
	c := dialUDP(t, s)
	for _, id := range []uint16{0, 1, 161, 0x7fff, 0x8000, 0xffff} {
		assert.Equal(t, "VERSION "+Version+"\r\n", c.roundTrip(id, "version\r\n"), "id %d", id)
	}
}

// A value longer than a datagram comes back as one message of several,
// reassembled by sequence number (memcached's t/udp.t sends 20000 bytes).
func TestUDPValueSpansDatagrams(t *testing.T) {
	s := startUDPServer(t, ServerConfig{})
	c := dialUDP(t, s)
	for _, size := range []int{udpDataSize - 30, udpDataSize, 20000, 100 << 10} {
		val := strings.Repeat("abcdefghij", size/10+1)[:size]
		assert.Equal(t, "STORED\r\n", tcpReply(t, s, fmt.Sprintf("set big 0 0 %d\r\n%s\r\n", size, val), "\r\n"))
		want := fmt.Sprintf("VALUE big 0 %d\r\n%s\r\nEND\r\n", size, val)
		c.send(53, "get big\r\n")
		got, total := c.message(53)
		assert.Equal(t, want, got, "value of %d bytes", size)
		assert.Equal(t, (len(want)+udpDataSize-1)/udpDataSize, total)
	}
}

// A multi-get's reply is one message, the same bytes TCP answers, however
// many datagrams it takes.
func TestUDPMultiGetOneMessage(t *testing.T) {
	s := startUDPServer(t, ServerConfig{})
	c := dialUDP(t, s)
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
		if i%5 != 0 { // some misses between the hits
			val := strings.Repeat(string(rune('a'+i%26)), 500+i*37)
			assert.Equal(t, "STORED\r\n", c.roundTrip(uint16(i), fmt.Sprintf("set %s %d 0 %d\r\n%s\r\n", keys[i], i, len(val), val)))
		}
	}
	req := "gets " + strings.Join(keys, " ") + "\r\n"
	want := tcpReply(t, s, req, "END\r\n")
	c.send(900, req)
	got, total := c.message(900)
	assert.Equal(t, want, got)
	assert.Greater(t, total, 10)
}

// A retrieval whose reply passes the output bound is cut into several
// messages at value boundaries, so that a reply's buffer stays bounded;
// together they are TCP's reply.
func TestUDPLargeMultiGetSplitsAtOutputBound(t *testing.T) {
	const bound = 16 << 10
	s := startUDPServer(t, ServerConfig{MaxOutput: bound})
	c := dialUDP(t, s)
	val := strings.Repeat("v", 7000)
	var keys []string
	for i := range 10 {
		keys = append(keys, fmt.Sprintf("big%d", i))
		assert.Equal(t, "STORED\r\n", c.roundTrip(1, fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", keys[i], len(val), val)))
	}
	req := "get " + strings.Join(keys, " ") + "\r\n"
	want := tcpReply(t, s, req, "END\r\n")
	c.send(2, req)
	var got strings.Builder
	messages := 0
	for !strings.HasSuffix(got.String(), "END\r\n") && messages < len(keys)+1 {
		m, _ := c.message(2)
		require.True(t, strings.HasPrefix(m, "VALUE ") || m == "END\r\n", "a message starts at a value: %.40q", m)
		assert.LessOrEqual(t, len(m), bound+len(val)+100)
		got.WriteString(m)
		messages++
	}
	assert.Equal(t, want, got.String())
	assert.Greater(t, messages, 1)
}

// Each request of a datagram gets a message of its own; noreply gets none.
func TestUDPSeveralRequestsInADatagram(t *testing.T) {
	s := startUDPServer(t, ServerConfig{})
	c := dialUDP(t, s)
	c.send(7, "set a 0 0 1 noreply\r\n1\r\nget a\r\nms b 2 T0\r\nhi\r\nmg b v f\r\nmn\r\n")
	for _, want := range []string{"VALUE a 0 1\r\n1\r\nEND\r\n", "HD\r\n", "VA 2 f0\r\nhi\r\n", "MN\r\n"} {
		got, _ := c.message(7)
		assert.Equal(t, want, got)
	}
}

func TestUDPMeta(t *testing.T) {
	s := startUDPServer(t, ServerConfig{})
	c := dialUDP(t, s)
	assert.Equal(t, "HD\r\n", c.roundTrip(1, "ms mk 5 F3\r\nhello\r\n"))
	assert.Equal(t, "VA 5 s5 f3\r\nhello\r\n", c.roundTrip(2, "mg mk s v f\r\n"))
	assert.Equal(t, "EN\r\n", c.roundTrip(3, "mg missing v\r\n"))
	assert.Equal(t, "HD\r\n", c.roundTrip(4, "md mk\r\n"))
	assert.Equal(t, "MN\r\n", c.roundTrip(5, "mn\r\n"))
}

func TestUDPBinary(t *testing.T) {
	s := startUDPServer(t, ServerConfig{})
	c := dialUDP(t, s)
	val := strings.Repeat("b", 5000)
	set := c.roundTrip(1, string(bStore(binOpSet, "bk", val, 7, 0).encode()))
	require.Len(t, set, binHeaderLen)
	assert.Equal(t, byte(binResMagic), set[0])
	assert.Zero(t, binary.BigEndian.Uint16([]byte(set[6:8])), "status")

	// The value spans datagrams; the reply is TCP's, byte for byte.
	get := string(bReq(binOpGet, "bk").encode())
	tc := dial(t, s)
	tc.send(get)
	want := make([]byte, binHeaderLen+4+len(val))
	tc.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	_, err := io.ReadFull(tc.r, want)
	require.NoError(t, err)
	assert.Equal(t, string(want), c.roundTrip(2, get))

	// Quiet misses answer nothing; the no-op after them does.
	miss := string(bReq(binOpGetKQ, "nope").encode())
	noop := bReq(binOpNoop, "")
	got := c.roundTrip(3, miss+miss+string(noop.encode()))
	require.Len(t, got, binHeaderLen)
	assert.Equal(t, byte(binOpNoop), got[1])
}

// Datagrams memcached drops get no answer, and the socket goes on serving:
// each bad datagram is followed by a good one, whose reply must be the
// next to arrive.
func TestUDPBadFrames(t *testing.T) {
	s := startUDPServer(t, ServerConfig{Workers: 1})
	c := dialUDP(t, s)
	bad := map[string][]byte{
		"empty":                {},
		"short header":         {0, 1, 0, 0, 0},
		"header only":          udpFrame(1, 0, 1, 0, ""),
		"one of two datagrams": udpFrame(1, 0, 2, 0, "get a\r\n"),
		"total zero":           udpFrame(1, 0, 0, 0, "get a\r\n"),
		"total 256":            udpFrame(1, 0, 256, 0, "get a\r\n"),
		"no line end":          udpFrame(1, 0, 1, 0, "get a"),
		"key list cut short":   udpFrame(1, 0, 1, 0, "get "+strings.Repeat("k ", 3000)),
		"data block cut short": udpFrame(1, 0, 1, 0, "set cut 0 0 10\r\n12\r\n"),
		"binary header short":  udpFrame(1, 0, 1, 0, "\x80\x00\x00"),
		"binary body short":    udpFrame(1, 0, 1, 0, string(bStore(binOpSet, "cut", "0123456789", 0, 0).encode()[:30])),
		"noreply":              udpFrame(1, 0, 1, 0, "set q 0 0 1 noreply\r\nq\r\n"),
		"quit":                 udpFrame(1, 0, 1, 0, "quit\r\n"),
		"watch":                udpFrame(1, 0, 1, 0, "watch\r\n"),
		"metadump":             udpFrame(1, 0, 1, 0, "lru_crawler metadump all\r\n"),
	}
	id := uint16(100)
	for name, d := range bad {
		c.sendRaw(d)
		id++
		assert.Equal(t, "END\r\n", c.roundTrip(id, "get cut\r\n"), name)
	}
	// The sequence number and reserved bytes are not looked at.
	c.sendRaw(udpFrame(9, 5, 1, 0xffff, "version\r\n"))
	m, _ := c.message(9)
	assert.Equal(t, "VERSION "+Version+"\r\n", m)
	assert.Equal(t, "VALUE q 0 1\r\nq\r\nEND\r\n", c.roundTrip(10, "get q\r\n"), "noreply stored")
}

// Errors are answered as on TCP; an error that closes a TCP connection
// (or quit) ends the datagram: what follows it is not run.
func TestUDPErrors(t *testing.T) {
	s := startUDPServer(t, ServerConfig{MaxItemSize: 1024})
	c := dialUDP(t, s)
	assert.Equal(t, "ERROR\r\n", c.roundTrip(1, "bogus\r\n"))
	assert.Equal(t, "CLIENT_ERROR bad command line format\r\n", c.roundTrip(2, "set k 0 0 x\r\n"))
	// Too large: answered, its data skipped, and the next request runs.
	c.send(3, "set k 0 0 2000\r\n"+strings.Repeat("x", 2000)+"\r\nget k\r\n")
	for _, want := range []string{"SERVER_ERROR object too large for cache\r\n", "END\r\n"} {
		got, _ := c.message(3)
		assert.Equal(t, want, got)
	}
	c.send(4, "get k\r\nquit\r\nset after 0 0 1\r\n1\r\n")
	got, _ := c.message(4)
	assert.Equal(t, "END\r\n", got)
	assert.Equal(t, "END\r\n", c.roundTrip(5, "get after\r\n"), "nothing runs after quit")
	// A binary frame with a bad magic closes a TCP connection: nothing
	// after it runs either.
	c.send(6, string(bStore(binOpSet, "b1", "v", 0, 0).encode())+"\x42"+strings.Repeat("\x00", 23)+string(bStore(binOpSet, "b2", "v", 0, 0).encode()))
	got, _ = c.message(6)
	assert.Len(t, got, binHeaderLen)
	assert.Equal(t, "VALUE b1 0 1\r\nv\r\nEND\r\n", c.roundTrip(7, "get b1 b2\r\n"))
}

func TestUDPStats(t *testing.T) {
	s := startUDPServer(t, ServerConfig{Workers: 3})
	c := dialUDP(t, s)
	port := s.UDPAddrs()[0].(*net.UDPAddr).Port

	settings := c.roundTrip(1, "stats settings\r\n")
	assert.Contains(t, settings, fmt.Sprintf("STAT udpport %d\r\n", port))
	assert.Contains(t, settings, "STAT num_threads_per_udp 3\r\n")

	// Each worker's descriptor for the socket is a connection, as each of
	// memcached's threads has a UDP conn.
	assert.EqualValues(t, 3, s.Stats().CurrConnections)
	conns := tcpReply(t, s, "stats conns\r\n", "END\r\n")
	assert.Equal(t, 3, strings.Count(conns, ":UDP UDP\r\n"), conns)
	assert.Equal(t, 3, strings.Count(conns, fmt.Sprintf(":addr udp:127.0.0.1:%d\r\n", port)), conns)
	assert.Equal(t, 3, strings.Count(conns, ":state conn_read\r\n"), conns)

	// A worker counts what it wrote after the write returns, which may be
	// after the client has read it: the TCP connection's count is in once
	// the worker has seen it close, and the datagram's eventually.
	require.Eventually(t, func() bool { return s.Stats().CurrConnections == 3 }, ioTimeout, time.Millisecond)
	before := s.Stats()
	c.roundTrip(2, "version\r\n")
	want := before.BytesWritten + uint64(udpHeaderLen+len("VERSION "+Version+"\r\n"))
	require.Eventually(t, func() bool { return s.Stats().BytesWritten >= want }, ioTimeout, time.Millisecond)
	after := s.Stats()
	assert.Equal(t, before.BytesRead+uint64(udpHeaderLen+len("version\r\n")), after.BytesRead)
	assert.Equal(t, want, after.BytesWritten)
}

func TestUDPConfig(t *testing.T) {
	c, err := New(Config{MaxBytes: 8 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	for name, cfg := range map[string]ServerConfig{
		"not host:port": {UDPAddrs: []string{"127.0.0.1"}},
		"with SASL":     {Addrs: []string{"127.0.0.1:0"}, UDPAddrs: []string{"127.0.0.1:0"}, SASL: true, Credentials: []Credential{{User: "u", Password: "p"}}},
		"with ASCII auth": {Addrs: []string{"127.0.0.1:0"}, UDPAddrs: []string{"127.0.0.1:0"}, ASCIIAuth: true,
			Credentials: []Credential{{User: "u", Password: "p"}}},
	} {
		_, err := c.Serve(cfg)
		assert.Error(t, err, name)
	}

	// UDP alone serves, and Addr names its socket.
	s, err := c.Serve(ServerConfig{UDPAddrs: []string{"127.0.0.1:0"}})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	assert.Equal(t, s.UDPAddrs()[0], s.Addr())
	assert.Equal(t, "VERSION "+Version+"\r\n", dialUDP(t, s).roundTrip(1, "version\r\n"))
}

// Several UDP sockets get one worker each, spread round-robin, as
// memcached gives each of several UDP ports one thread.
func TestUDPSeveralSockets(t *testing.T) {
	_, s := startServer(t, ServerConfig{Workers: 2, UDPAddrs: []string{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"}})
	require.Len(t, s.UDPAddrs(), 3)
	assert.EqualValues(t, 3, s.Stats().CurrConnections)
	assert.Equal(t, []uint64{2, 1}, []uint64{s.Stats().Workers[0].CurrConnections, s.Stats().Workers[1].CurrConnections})
	for i, a := range s.UDPAddrs() {
		uc, err := net.DialUDP("udp", nil, a.(*net.UDPAddr))
		require.NoError(t, err)
		t.Cleanup(func() { uc.Close() })
		c := &udpClient{t: t, uc: uc}
		assert.Contains(t, c.roundTrip(uint16(i), "stats settings\r\n"), "STAT num_threads_per_udp 1\r\n")
	}
}

// FuzzUDPDatagram runs arbitrary datagrams as the workers do: whatever the
// bytes, a datagram ends within one step per byte of it (each step consumes
// input or ends it), and every reply fits the frame header's count.
func FuzzUDPDatagram(f *testing.F) {
	for _, seed := range []string{
		"get a b c\r\n",
		"set a 0 0 1\r\nx\r\nget a\r\nmg a v\r\nmn\r\n",
		"set a 0 0 5\r\nab",
		"get " + strings.Repeat("k ", 300) + "\r\n",
		"gat 10 a\r\nquit\r\nget a\r\n",
		"lru_crawler metadump all\r\nwatch\r\n",
		string(bStore(binOpSet, "k", "v", 0, 0).encode()) + string(bReq(binOpGetKQ, "k").encode()),
		"\x80\x01\x00\x00",
	} {
		f.Add(udpFrame(1, 0, 1, 0, seed))
	}
	f.Add([]byte{0, 1, 0, 0, 0, 2, 0, 0, 'g'})
	s := newHandleServer(f, ServerConfig{})
	f.Fuzz(func(t *testing.T, d []byte) {
		_, p, ok := udpRequest(d)
		if !ok {
			return
		}
		in := s.udpRequests(p)
		pc := protoConn{datagram: true}
		var reply []byte
		steps := 0
		for done := len(in) == 0; !done; steps++ {
			require.LessOrEqual(t, steps, len(p), "a step that neither consumes nor ends")
			in, reply, done = s.udpStep(&pc, in, reply[:0])
			require.LessOrEqual(t, len(reply), udpDataSize*int(udpTotal(len(reply))))
		}
	})
}

// Under ReservedFDs the workers' UDP descriptors count against MaxConns
// as memcached's UDP conns do: 12 - 1 listener - 3 UDP - 5 - 1 = 2 clients.
func TestUDPDescriptorsCountAgainstMaxConns(t *testing.T) {
	s := startUDPServer(t, ServerConfig{Workers: 3, MaxConns: 12, ReservedFDs: 5})
	for range 2 {
		dial(t, s).roundTrip("version\r\n", "VERSION "+Version+"\r\n")
	}
	assert.Equal(t, tooManyConns, dial(t, s).expectEOF())
	assert.EqualValues(t, 5, s.Stats().CurrConnections, "2 clients and 3 UDP descriptors")
}

// Closing and shutting down release every descriptor and goroutine, a
// reply in flight or not.
func TestUDPCloseAndShutdown(t *testing.T) {
	c, err := New(Config{MaxBytes: 16 << 20})
	require.NoError(t, err)
	defer c.Close()
	goroutines, fds := runtime.NumGoroutine(), fdCount(t)
	for _, stop := range []func(*Server) error{
		(*Server).Close,
		func(s *Server) error { return s.Shutdown(context.Background()) },
	} {
		s, err := c.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}, UDPAddrs: []string{"127.0.0.1:0"}, Workers: 2})
		require.NoError(t, err)
		u := dialUDP(t, s)
		assert.Equal(t, "STORED\r\n", u.roundTrip(1, "set v 0 0 50000\r\n"+strings.Repeat("v", 50000)+"\r\n"))
		u.send(2, "get v v v\r\n") // its reply in flight, or not yet read
		require.NoError(t, stop(s))
		<-s.Done()
		u.uc.Close()
	}
	waitGoroutines(t, goroutines)
	if fds >= 0 {
		eventually(t, "fds to be released", func() bool { return fdCount(t) <= fds })
	}
}
