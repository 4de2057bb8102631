package emcache

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ioTimeout bounds every client read and write, so a broken server fails
// a test instead of hanging it.
const ioTimeout = 10 * time.Second

func startServer(t *testing.T, cfg ServerConfig) (*Cache, *Server) {
	t.Helper()
	c, err := New(Config{MaxBytes: 64 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	if cfg.Addrs == nil && cfg.UnixSocket == "" {
		cfg.Addrs = []string{"127.0.0.1:0"}
	}
	s, err := c.Serve(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return c, s
}

type testClient struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, s *Server) *testClient {
	t.Helper()
	nc, err := net.DialTimeout(s.Addr().Network(), s.Addr().String(), ioTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	return &testClient{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *testClient) send(req string) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := io.WriteString(c.nc, req)
	require.NoError(c.t, err)
}

// expect reads exactly len(want) bytes and compares them.
func (c *testClient) expect(want string) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	got := make([]byte, len(want))
	n, err := io.ReadFull(c.r, got)
	require.NoError(c.t, err, "read %d of %d bytes: %q", n, len(want), got[:n])
	require.Equal(c.t, want, string(got))
}

func (c *testClient) roundTrip(req, want string) {
	c.t.Helper()
	c.send(req)
	c.expect(want)
}

// expectEOF reads until the server closes the connection and returns what
// came before.
func (c *testClient) expectEOF() string {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	b, err := io.ReadAll(c.r)
	if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		require.NoError(c.t, err, "waiting for the server to close, got %q", b)
	}
	return string(b)
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}

// eventually polls cond a bounded number of times; the state it waits on
// (a worker closing a socket, a counter) has no channel to wait on.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestServerSetGet(t *testing.T) {
	_, s := startServer(t, ServerConfig{})
	c := dial(t, s)
	c.roundTrip("set foo 5 0 3\r\nbar\r\n", "STORED\r\n")
	c.roundTrip("get foo\r\n", "VALUE foo 5 3\r\nbar\r\nEND\r\n")
	c.roundTrip("get nope\r\n", "END\r\n")
	st := s.Stats()
	assert.EqualValues(t, 1, st.CurrConnections)
	assert.EqualValues(t, 1, st.TotalConnections)
	assert.Equal(t, 4, st.Threads)
	assert.Equal(t, 1024, st.MaxConns)
	assert.EqualValues(t, len("set foo 5 0 3\r\nbar\r\nget foo\r\nget nope\r\n"), st.BytesRead)
	// The worker counts a write after making it.
	eventually(t, "bytes_written", func() bool {
		return s.Stats().BytesWritten == uint64(len("STORED\r\nVALUE foo 5 3\r\nbar\r\nEND\r\nEND\r\n"))
	})
}

// mixedPipeline builds n requests of several kinds; pipelineReplies has
// the replies a correct server sends, in order.
func mixedPipeline(n int) string {
	var rb strings.Builder
	for i := range n {
		k := fmt.Sprintf("key:%d", i%97)
		switch i % 6 {
		case 0:
			v := strings.Repeat(string(rune('a'+i%26)), i%300)
			fmt.Fprintf(&rb, "set %s %d 0 %d\r\n%s\r\n", k, i, len(v), v)
		case 1:
			fmt.Fprintf(&rb, "get %s\r\n", k)
		case 2:
			fmt.Fprintf(&rb, "delete %s\r\n", k)
		case 3:
			fmt.Fprintf(&rb, "set n:%d 0 0 1\r\n7\r\nincr n:%d %d\r\n", i, i, i)
		case 4:
			fmt.Fprintf(&rb, "get missing:%d n:%d\r\n", i, i-1)
		case 5:
			rb.WriteString("version\r\n")
		}
	}
	return rb.String()
}

// pipelineReplies replays mixedPipeline on a map.
func pipelineReplies(n int) string {
	type item struct {
		flags int
		v     string
	}
	m := map[string]item{}
	var wb strings.Builder
	for i := range n {
		k := fmt.Sprintf("key:%d", i%97)
		switch i % 6 {
		case 0:
			m[k] = item{i, strings.Repeat(string(rune('a'+i%26)), i%300)}
			wb.WriteString("STORED\r\n")
		case 1:
			if it, ok := m[k]; ok {
				fmt.Fprintf(&wb, "VALUE %s %d %d\r\n%s\r\n", k, it.flags, len(it.v), it.v)
			}
			wb.WriteString("END\r\n")
		case 2:
			if _, ok := m[k]; ok {
				delete(m, k)
				wb.WriteString("DELETED\r\n")
			} else {
				wb.WriteString("NOT_FOUND\r\n")
			}
		case 3:
			fmt.Fprintf(&wb, "STORED\r\n%d\r\n", 7+i)
		case 4:
			fmt.Fprintf(&wb, "VALUE n:%d 0 %d\r\n%d\r\nEND\r\n", i-1, len(fmt.Sprint(7+i-1)), 7+i-1)
		case 5:
			wb.WriteString("VERSION " + Version + "\r\n")
		}
	}
	return wb.String()
}

func TestServerPipelining(t *testing.T) {
	_, s := startServer(t, ServerConfig{Workers: 2, ReqsPerEvent: 5})
	const n = 6000
	req := mixedPipeline(n)
	want := pipelineReplies(n)
	c := dial(t, s)
	// Write from a goroutine: the replies may fill the socket buffers
	// before the requests are all sent.
	errc := make(chan error, 1)
	go func() {
		c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
		_, err := io.WriteString(c.nc, req)
		errc <- err
	}()
	c.expect(want)
	require.NoError(t, <-errc)
	// 6000 requests at 5 per turn cannot be served without yielding.
	assert.Greater(t, s.Stats().ConnYields, uint64(100))
	c.roundTrip("get key:1\r\n", "END\r\n")
}

func TestServerOneBytePerWrite(t *testing.T) {
	_, s := startServer(t, ServerConfig{})
	c := dial(t, s)
	value := strings.Repeat("0123456789", 3000) // longer than a read buffer
	req := fmt.Sprintf("set slow 3 0 %d\r\n%s\r\nget slow\r\n", len(value), value)
	for i := 0; i < len(req); {
		// The command lines and the value's edges go one byte per write;
		// the middle of the value a few bytes at a time keeps the test fast.
		step := 1
		if i > 100 && i < len(req)-100 {
			step = min(7, len(req)-100-i)
		}
		c.send(req[i : i+step])
		i += step
	}
	c.expect(fmt.Sprintf("STORED\r\nVALUE slow 3 %d\r\n%s\r\nEND\r\n", len(value), value))
	line := "get slow slow\r\n"
	for i := range len(line) {
		c.send(line[i : i+1])
	}
	one := fmt.Sprintf("VALUE slow 3 %d\r\n%s\r\n", len(value), value)
	c.expect(one + one + "END\r\n")
}

func TestServerByteAtATimeLoop(t *testing.T) {
	// Every byte of a short pipeline in its own write, over several keys.
	_, s := startServer(t, ServerConfig{})
	c := dial(t, s)
	req := mixedPipeline(30)
	for i := range len(req) {
		c.send(req[i : i+1])
	}
	c.expect(pipelineReplies(30))
}

func TestServerRoundRobin(t *testing.T) {
	const workers, perWorker = 4, 5
	_, s := startServer(t, ServerConfig{Workers: workers})
	var clients []*testClient
	for i := range workers * perWorker {
		c := dial(t, s)
		// A round trip per connection pins the accept order.
		c.roundTrip(fmt.Sprintf("set k%d 0 0 1\r\nx\r\n", i), "STORED\r\n")
		clients = append(clients, c)
	}
	st := s.Stats()
	require.Len(t, st.Workers, workers)
	for i, ws := range st.Workers {
		assert.EqualValues(t, perWorker, ws.CurrConnections, "worker %d", i)
		assert.EqualValues(t, perWorker, ws.TotalConnections, "worker %d", i)
	}
	assert.EqualValues(t, workers*perWorker, st.CurrConnections)
	for _, c := range clients {
		c.roundTrip("get k0\r\n", "VALUE k0 0 1\r\nx\r\nEND\r\n")
		c.nc.Close()
	}
	eventually(t, "connections to close", func() bool { return s.Stats().CurrConnections == 0 })
	assert.EqualValues(t, workers*perWorker, s.Stats().TotalConnections)
}

func TestServerManyConcurrentClients(t *testing.T) {
	_, s := startServer(t, ServerConfig{Workers: 3, ReqsPerEvent: 3})
	var wg sync.WaitGroup
	const clients, rounds = 24, 50
	for i := range clients {
		c := dial(t, s)
		wg.Go(func() {
			for j := range rounds {
				k := fmt.Sprintf("c%d-%d", i, j)
				c.send(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\nget %s\r\n", k, len(k), k, k))
				c.expect(fmt.Sprintf("STORED\r\nVALUE %s 0 %d\r\n%s\r\nEND\r\n", k, len(k), k))
			}
		})
	}
	wg.Wait()
}

func TestServerMaxConns(t *testing.T) {
	_, s := startServer(t, ServerConfig{MaxConns: 2})
	a, b := dial(t, s), dial(t, s)
	a.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
	b.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
	extra := dial(t, s)
	assert.Equal(t, tooManyConns, extra.expectEOF())
	assert.EqualValues(t, 1, s.Stats().RejectedConnections)
	assert.EqualValues(t, 2, s.Stats().CurrConnections)
	// Everyone else is still served, and a freed slot is reusable.
	a.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
	b.nc.Close()
	eventually(t, "the closed connection to be released", func() bool { return s.Stats().CurrConnections == 1 })
	d := dial(t, s)
	d.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
}

// With ReservedFDs, MaxConns counts as memcached's -c: the listener, the
// reserved descriptors and one more leave 10 - 1 - 5 - 1 = 3 clients.
func TestServerMaxConnsCountsReservedFDs(t *testing.T) {
	_, s := startServer(t, ServerConfig{MaxConns: 10, ReservedFDs: 5})
	for range 3 {
		dial(t, s).roundTrip("version\r\n", "VERSION "+Version+"\r\n")
	}
	assert.Equal(t, tooManyConns, dial(t, s).expectEOF())
	assert.EqualValues(t, 1, s.Stats().RejectedConnections)

	c, err := New(Config{})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = c.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}, MaxConns: 7, ReservedFDs: 5})
	assert.ErrorIs(t, err, ErrMaxConnsTooLow)
}

func TestServerIdleTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	_, s := startServer(t, ServerConfig{IdleTimeout: timeout, Workers: 1})
	idle := dial(t, s)
	idle.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
	start := time.Now()
	assert.Empty(t, idle.expectEOF())
	// The server times idleness from the read, this client from the reply.
	assert.GreaterOrEqual(t, time.Since(start), timeout/2, "kicked before IdleTimeout")
	assert.EqualValues(t, 1, s.Stats().IdleKicks)

	// A connection that keeps talking outlives the timeout.
	busy := dial(t, s)
	for start := time.Now(); time.Since(start) < 2*timeout; {
		busy.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
		time.Sleep(10 * time.Millisecond) // pacing the client, not synchronising
	}
	assert.EqualValues(t, 1, s.Stats().IdleKicks)
}

func fdCount(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	for range 400 {
		if runtime.NumGoroutine() <= base {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("goroutines: %d, want <= %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
}

func TestServerCloseWithClients(t *testing.T) {
	c, err := New(Config{MaxBytes: 16 << 20})
	require.NoError(t, err)
	defer c.Close()
	goroutines, fds := runtime.NumGoroutine(), fdCount(t)

	s, err := c.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 3, IdleTimeout: time.Hour})
	require.NoError(t, err)
	var clients []*testClient
	for i := range 9 {
		cl := dial(t, s)
		cl.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
		if i%3 == 1 {
			cl.send("set half 0 0 10\r\nabc") // mid-request
		}
		clients = append(clients, cl)
	}
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close twice")
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	for _, cl := range clients {
		cl.expectEOF()
		cl.nc.Close()
	}
	_, err = net.DialTimeout("tcp", s.Addr().String(), ioTimeout)
	assert.Error(t, err, "still accepting after Close")
	waitGoroutines(t, goroutines)
	if fds >= 0 {
		eventually(t, "fds to be released", func() bool { return fdCount(t) <= fds })
	}
}

func TestServerShutdownIdle(t *testing.T) {
	c, err := New(Config{MaxBytes: 16 << 20})
	require.NoError(t, err)
	defer c.Close()
	goroutines := runtime.NumGoroutine()
	s, err := c.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}})
	require.NoError(t, err)
	cl := dial(t, s)
	cl.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	<-s.Done()
	assert.Empty(t, cl.expectEOF())
	cl.nc.Close()
	waitGoroutines(t, goroutines)
}

// A client with replies pending gets all of them before the connection
// closes, even if it starts reading only after Shutdown began.
func TestServerShutdownFlushesPending(t *testing.T) {
	c, s := startServer(t, ServerConfig{Workers: 1, MaxOutput: 64 << 10})
	value := strings.Repeat("v", 500<<10)
	err := c.Set([]byte("big"), []byte(value), 0)
	require.NoError(t, err)
	cl := dial(t, s)
	const gets = 60 // 30 MB of replies: more than the socket buffers hold
	cl.send(strings.Repeat("get big\r\n", gets))
	eventually(t, "the server to block on the unread replies", func() bool { return hasState(s, "conn_mwrite") })
	processed := c.Stats().CmdGet

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	got := cl.expectEOF()
	require.NoError(t, <-done)
	one := fmt.Sprintf("VALUE big 0 %d\r\n%s\r\nEND\r\n", len(value), value)
	// Every request the server executed is answered in full; the rest
	// were never read.
	assert.Equal(t, strings.Repeat(one, int(c.Stats().CmdGet)), got)
	assert.GreaterOrEqual(t, c.Stats().CmdGet, processed)
}

// hasState reports whether some connection is in the stats conns state.
func hasState(s *Server, state string) bool {
	for _, ci := range s.connInfos() {
		if ci.state == state {
			return true
		}
	}
	return false
}

func TestServerShutdownDeadline(t *testing.T) {
	c, s := startServer(t, ServerConfig{Workers: 1})
	err := c.Set([]byte("big"), []byte(strings.Repeat("v", 500<<10)), 0)
	require.NoError(t, err)
	cl := dial(t, s)
	cl.send(strings.Repeat("get big\r\n", 40)) // never read
	eventually(t, "replies to back up", func() bool { return hasState(s, "conn_mwrite") })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, s.Shutdown(ctx), context.DeadlineExceeded)
	<-s.Done()
}

func TestServerShutdownCommand(t *testing.T) {
	_, s := startServer(t, ServerConfig{AllowShutdown: true})
	other := dial(t, s)
	other.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
	cl := dial(t, s)
	cl.send("shutdown\r\n")
	cl.expectEOF()
	select {
	case <-s.Done():
	case <-time.After(ioTimeout):
		t.Fatal("shutdown command did not stop the server")
	}
	other.expectEOF()
}

func TestServerUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "emc") // short: socket paths are limited to ~100 bytes
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "mc.sock")
	// A stale socket file, as a crashed instance leaves behind.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Skipf("no Unix sockets here: %v", err)
	}
	stale.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	stale.Close()
	_, err = os.Stat(path)
	require.NoError(t, err)

	_, s := startServer(t, ServerConfig{UnixSocket: path, UnixSocketMode: 0o660})
	assert.Equal(t, "unix", s.Addr().Network())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o660), fi.Mode().Perm())

	cl := dial(t, s)
	cl.roundTrip("set u 0 0 2\r\nhi\r\nget u\r\n", "STORED\r\nVALUE u 0 2\r\nhi\r\nEND\r\n")
	var found bool
	for _, ci := range s.connInfos() {
		if ci.state != "conn_listening" {
			found = true
			assert.Equal(t, "unix:"+path, ci.addr)
			assert.Equal(t, "unix:"+path, ci.listenAddr)
		}
	}
	assert.True(t, found)
	require.NoError(t, s.Close())
	_, err = os.Stat(path)
	assert.True(t, os.IsNotExist(err), "socket file left behind: %v", err)
}

func TestServerUnixSocketNotASocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	c, err := New(Config{})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Serve(ServerConfig{UnixSocket: path})
	assert.ErrorContains(t, err, "not a socket")
}

// A client that sends many gets and never reads must not grow the
// server's memory without bound, nor stall others on its worker.
func TestServerBackpressure(t *testing.T) {
	const maxOut = 256 << 10
	c, s := startServer(t, ServerConfig{Workers: 1, MaxOutput: maxOut})
	value := strings.Repeat("x", 10<<10)
	err := c.Set([]byte("k"), []byte(value), 0)
	require.NoError(t, err)
	reply := len(fmt.Sprintf("VALUE k 0 %d\r\n%s\r\nEND\r\n", len(value), value))

	hog := dial(t, s)
	const gets = 20000 // 200 MB of replies if all were executed
	writeDone := make(chan struct{})
	go func() {
		defer close(writeDone)
		hog.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
		io.WriteString(hog.nc, strings.Repeat("get k\r\n", gets)) // blocks, then fails at Close
	}()
	// Pending output = replies generated - replies written, read while
	// the hit count holds still so the two counters agree (up to the one
	// write the worker has made but not yet counted).
	otherHits, otherBytes := 0, 0
	pending := func() int {
		for range 10000 {
			hits := c.Stats().GetHits
			written := int(s.Stats().BytesWritten) - otherBytes
			if c.Stats().GetHits == hits {
				return (int(hits)-otherHits)*reply - written
			}
		}
		t.Fatal("the hog never stops making progress")
		return 0
	}
	// The kernel's socket buffers keep absorbing some replies as they
	// autotune, so the hog may still progress a little; what must hold is
	// the bound on what the server itself keeps.
	bound := 2*maxOut + reply*s.cfg.ReqsPerEvent
	eventually(t, "the hog to be blocked", func() bool { return hasState(s, "conn_mwrite") })
	assert.LessOrEqual(t, pending(), bound, "pending output unbounded")

	other := dial(t, s)
	const otherReply = "STORED\r\nVALUE o 0 1\r\n1\r\nEND\r\n"
	other.roundTrip("set o 0 0 1\r\n1\r\nget o\r\n", otherReply)
	otherHits, otherBytes = 1, len(otherReply)
	for range 20 {
		other.roundTrip("get o\r\n", "VALUE o 0 1\r\n1\r\nEND\r\n")
		otherHits++
		otherBytes += len("VALUE o 0 1\r\n1\r\nEND\r\n")
		assert.LessOrEqual(t, pending(), bound, "pending output unbounded")
	}
	assert.Less(t, int(c.Stats().GetHits), gets/4, "the hog's requests kept being executed")

	require.NoError(t, s.Close())
	<-writeDone
}

// A bug in a request handler costs its connection, not the worker.
func TestServerRecoversPanic(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	// A Cache whose only shard is missing: any key lookup panics.
	broken := &Cache{shards: make([]*shard, 1)}
	s, err := broken.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 1, Logger: logger})
	require.NoError(t, err)
	defer s.Close()
	a := dial(t, s)
	a.send("get boom\r\n")
	assert.Empty(t, a.expectEOF())
	b := dial(t, s)
	b.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
	mu.Lock()
	assert.Contains(t, logs.String(), "panic")
	mu.Unlock()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestServerConnInfos(t *testing.T) {
	_, s := startServer(t, ServerConfig{Addrs: []string{"127.0.0.1:0", "127.0.0.1:0"}})
	cl := dial(t, s)
	cl.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
	// The reply can reach the client before its worker marks the
	// connection waiting again.
	var infos []connInfo
	eventually(t, "the connection to wait for its next command", func() bool {
		infos = s.connInfos()
		return !slices.ContainsFunc(infos, func(ci connInfo) bool { return ci.state == "conn_parse_cmd" })
	})
	require.Len(t, infos, 3)
	var listeners int
	for _, ci := range infos {
		if ci.state == "conn_listening" {
			listeners++
			assert.True(t, strings.HasPrefix(ci.addr, "tcp:127.0.0.1:"), ci.addr)
			assert.Empty(t, ci.listenAddr)
			continue
		}
		assert.Equal(t, "tcp:"+cl.nc.LocalAddr().String(), ci.addr)
		assert.Equal(t, "tcp:"+s.Addr().String(), ci.listenAddr)
		assert.Equal(t, "conn_waiting", ci.state)
		assert.Less(t, ci.idle, time.Minute)
	}
	assert.Equal(t, 2, listeners)
}

// A connection whose data block is still arriving is in conn_nread, as
// memcached's stats conns shows it.
func TestServerConnInfosDataBlock(t *testing.T) {
	_, s := startServer(t, ServerConfig{})
	cl := dial(t, s)
	_, err := io.WriteString(cl.nc, "set foo 0 0 6\r\nfoo")
	require.NoError(t, err)
	eventually(t, "the connection to read its data block", func() bool {
		return slices.ContainsFunc(s.connInfos(), func(ci connInfo) bool { return ci.state == "conn_nread" })
	})
	cl.roundTrip("bar\r\n", "STORED\r\n")
}

func TestServerConfigErrors(t *testing.T) {
	c, err := New(Config{MaxItemSize: 1 << 20})
	require.NoError(t, err)
	defer c.Close()
	local := []string{"127.0.0.1:0"}
	for _, tc := range []struct {
		cfg  ServerConfig
		want string
	}{
		{ServerConfig{}, "needs Addrs, PlainAddrs, UnixSocket or UDPAddrs"},
		{ServerConfig{Addrs: []string{"nonsense"}}, "Addrs[0]"},
		{ServerConfig{Addrs: local, Workers: -1}, "Workers"},
		{ServerConfig{Addrs: local, MaxConns: -1}, "MaxConns"},
		{ServerConfig{Addrs: local, ReqsPerEvent: -5}, "ReqsPerEvent"},
		{ServerConfig{Addrs: local, Backlog: -1}, "Backlog"},
		{ServerConfig{Addrs: local, MaxOutput: -1}, "MaxOutput"},
		{ServerConfig{Addrs: local, IdleTimeout: -time.Second}, "IdleTimeout"},
		{ServerConfig{Addrs: local, Verbosity: -1}, "Verbosity"},
		{ServerConfig{Addrs: local, MaxItemSize: 2 << 20}, "exceeds the cache's maximum item size"},
		{ServerConfig{Addrs: local, UnixSocketMode: os.ModeDir | 0o700}, "UnixSocketMode"},
		{ServerConfig{Addrs: []string{"127.0.0.1:99999"}}, "listen"},
	} {
		s, err := c.Serve(tc.cfg)
		assert.Nil(t, s)
		assert.ErrorContains(t, err, tc.want)
	}
	var nilCache *Cache
	_, err = nilCache.Serve(ServerConfig{Addrs: local})
	assert.Error(t, err)

	// Defaults are filled.
	s, err := c.Serve(ServerConfig{Addrs: local})
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, defaultWorkers, s.cfg.Workers)
	assert.Equal(t, defaultReqsPerEvent, s.cfg.ReqsPerEvent)
	assert.Equal(t, defaultBacklog, s.cfg.Backlog)
	assert.Equal(t, defaultMaxOutput, s.cfg.MaxOutput)
	assert.Equal(t, 1<<20, s.cfg.MaxItemSize)
	assert.Equal(t, os.FileMode(0o700), s.cfg.UnixSocketMode)
	assert.NotNil(t, s.cfg.Logger)
}

// The benchmarks report allocations of the whole process, server side
// included: the client below allocates nothing per request.
func BenchmarkServerGetRoundTrip(b *testing.B)  { benchmarkServerGet(b, 1) }
func BenchmarkServerGetPipeline16(b *testing.B) { benchmarkServerGet(b, 16) }

func benchmarkServerGet(b *testing.B, depth int) {
	c, err := New(Config{MaxBytes: 64 << 20})
	require.NoError(b, err)
	defer c.Close()
	err = c.Set([]byte("bench"), []byte(strings.Repeat("v", 100)), 0)
	require.NoError(b, err)
	s, err := c.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 1})
	require.NoError(b, err)
	defer s.Close()
	nc, err := net.Dial("tcp", s.Addr().String())
	require.NoError(b, err)
	defer nc.Close()
	req := []byte(strings.Repeat("get bench\r\n", depth))
	reply := len(fmt.Sprintf("VALUE bench 0 100\r\n%s\r\nEND\r\n", strings.Repeat("v", 100))) * depth
	buf := make([]byte, reply)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += depth {
		if _, err := nc.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(nc, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// TestServerLendsItsProcs checks that a server adds a P per worker while it
// runs and takes them back once stopped, whatever stops it.
func TestServerLendsItsProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	c := newTestCache(t, Config{})
	s, err := c.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 3})
	require.NoError(t, err)
	assert.Equal(t, before+3, runtime.GOMAXPROCS(0))
	require.NoError(t, s.Close())
	assert.Equal(t, before, runtime.GOMAXPROCS(0))

	s, err = c.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 2})
	require.NoError(t, err)
	require.NoError(t, s.Shutdown(context.Background()))
	assert.Equal(t, before, runtime.GOMAXPROCS(0))

	_, err = c.Serve(ServerConfig{Addrs: []string{"256.0.0.1:0"}, Workers: 2})
	require.Error(t, err)
	assert.Equal(t, before, runtime.GOMAXPROCS(0), "a server that failed to start lends none")
}
