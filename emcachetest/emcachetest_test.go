package emcachetest_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/emcache/emcache"
	"github.com/emcache/emcache/emcachetest"
)

// ioTimeout only keeps a broken server from hanging a test; nothing waits
// for it to pass.
const ioTimeout = 10 * time.Second

// client is a raw text-protocol connection.
type client struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, ts *emcachetest.Server) *client {
	t.Helper()
	nc, err := net.Dial("tcp", ts.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	require.NoError(t, nc.SetDeadline(time.Now().Add(ioTimeout)))
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// do sends req and checks that the reply is exactly want.
func (c *client) do(req, want string) {
	c.t.Helper()
	_, err := io.WriteString(c.nc, req)
	require.NoError(c.t, err)
	c.expect(want)
}

func (c *client) expect(want string) {
	c.t.Helper()
	got := make([]byte, len(want))
	_, err := io.ReadFull(c.r, got)
	require.NoError(c.t, err, "reading the reply to compare with %q (got %q)", want, got)
	require.Equal(c.t, want, string(got))
}

// expectClosed checks that the server hung up with nothing more to say: the
// read ends with EOF, or with a reset when the server closed the socket
// before reading all that was sent.
func (c *client) expectClosed() {
	c.t.Helper()
	b, err := c.r.ReadByte()
	require.Error(c.t, err, "read %q", b)
	var ne net.Error
	require.False(c.t, errors.As(err, &ne) && ne.Timeout(), "the server did not hang up: %v", err)
}

func TestServerCacheAccess(t *testing.T) {
	ts := emcachetest.NewServer(t)
	c := dial(t, ts)

	_, err := ts.Cache().Store([]byte("seeded"), []byte("by the test"), emcache.StoreOptions{Flags: 7})
	require.NoError(t, err)
	c.do("get seeded\r\n", "VALUE seeded 7 11\r\nby the test\r\nEND\r\n")

	c.do("set written 3 0 5\r\nhello\r\n", "STORED\r\n")
	it, err := ts.Cache().Get([]byte("written"))
	require.NoError(t, err)
	assert.Equal(t, "hello", string(it.Value))
	assert.Equal(t, uint32(3), it.Flags)

	assert.EqualValues(t, emcachetest.DefaultMaxBytes, ts.Cache().MaxBytes())
	assert.Equal(t, 1, ts.Server().Stats().Threads)
	assert.EqualValues(t, 1, ts.Server().Stats().CurrConnections)
}

func TestServerOptions(t *testing.T) {
	ts := emcachetest.NewServer(t,
		emcachetest.WithConfig(emcache.Config{MaxBytes: 4 << 20, NoCAS: true}),
		emcachetest.WithServerConfig(emcache.ServerConfig{Workers: 2, AllowShutdown: true}))
	assert.EqualValues(t, 4<<20, ts.Cache().MaxBytes())
	assert.Equal(t, 2, ts.Server().Stats().Threads)
	c := dial(t, ts)
	c.do("set k 0 0 1\r\nv\r\ngets k\r\n", "STORED\r\nVALUE k 0 1 0\r\nv\r\nEND\r\n")

	// The clock replaces a Now given in the config.
	ts.SetTime(time.Unix(2_000_000_000, 0))
	c.do("set k 0 2000000010 1\r\nv\r\n", "STORED\r\n")
	ts.FastForward(10 * time.Second)
	c.do("get k\r\n", "END\r\n")

	c.do("shutdown\r\n", "")
	c.expectClosed()
	<-ts.Server().Done()
}

func TestNewServerFailure(t *testing.T) {
	ft := &fakeT{}
	func() {
		defer func() { recover() }() // fakeT.Fatalf ends the call as FailNow would
		emcachetest.NewServer(ft, emcachetest.WithConfig(emcache.Config{MaxBytes: 1 << 20, MaxItemSize: 1 << 20}))
	}()
	assert.Contains(t, ft.failed, "emcachetest: emcache: MaxItemSize")
	ft.cleanup()
}

// fakeT is a TB that records a failure instead of failing the test.
type fakeT struct {
	failed   string
	cleanups []func()
}

func (f *fakeT) Helper()           {}
func (f *fakeT) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	panic(f.failed)
}

func (f *fakeT) cleanup() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestServerStoppedByCleanup(t *testing.T) {
	var addr string
	t.Run("sub", func(t *testing.T) {
		addr = emcachetest.NewServer(t).Addr()
		nc, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		nc.Close()
	})
	_, err := net.Dial("tcp", addr)
	require.Error(t, err, "the subtest's server still accepts after its cleanup")
}

func TestServerCloseEarly(t *testing.T) {
	ts := emcachetest.NewServer(t)
	c := dial(t, ts)
	c.do("version\r\n", "VERSION "+emcache.Version+"\r\n")
	ts.Close()
	c.expectClosed()
	ts.Close() // and again from the cleanup
}

func TestExpiryTTL(t *testing.T) {
	ts := emcachetest.NewServer(t)
	c := dial(t, ts)
	c.do("set session 0 60 2\r\nok\r\n", "STORED\r\n")
	err := ts.Cache().Set([]byte("direct"), []byte("x"), 30*time.Second)
	require.NoError(t, err)

	ts.FastForward(29 * time.Second)
	c.do("get session direct\r\n", "VALUE session 0 2\r\nok\r\nVALUE direct 0 1\r\nx\r\nEND\r\n")
	ts.FastForward(time.Second)
	c.do("get session direct\r\n", "VALUE session 0 2\r\nok\r\nEND\r\n")
	ts.FastForward(29 * time.Second)
	c.do("get session\r\n", "VALUE session 0 2\r\nok\r\nEND\r\n")
	ts.FastForward(time.Second)
	c.do("get session\r\n", "END\r\n")
}

func TestExpiryAbsoluteAndSetTime(t *testing.T) {
	ts := emcachetest.NewServer(t)
	start := time.Unix(1_900_000_000, 0)
	ts.SetTime(start)
	assert.True(t, ts.Now().Equal(start))
	c := dial(t, ts)
	c.do("set k 0 1900000100 1\r\nv\r\n", "STORED\r\n")
	ts.SetTime(start.Add(99 * time.Second))
	c.do("get k\r\n", "VALUE k 0 1\r\nv\r\nEND\r\n")
	ts.SetTime(start.Add(100 * time.Second))
	c.do("get k\r\n", "END\r\n")
}

func TestExpiryTouch(t *testing.T) {
	ts := emcachetest.NewServer(t)
	c := dial(t, ts)
	c.do("set k 0 10 1\r\nv\r\n", "STORED\r\n")
	ts.FastForward(5 * time.Second)
	c.do("touch k 100\r\n", "TOUCHED\r\n")
	ts.FastForward(99 * time.Second) // long past the first TTL
	c.do("get k\r\n", "VALUE k 0 1\r\nv\r\nEND\r\n")
	ts.FastForward(time.Second)
	c.do("get k\r\n", "END\r\n")
	c.do("touch k 100\r\n", "NOT_FOUND\r\n")
}

func TestExpiryGat(t *testing.T) {
	ts := emcachetest.NewServer(t)
	c := dial(t, ts)
	c.do("set k 5 10 1\r\nv\r\n", "STORED\r\n")
	ts.FastForward(9 * time.Second)
	c.do("gat 60 k\r\n", "VALUE k 5 1\r\nv\r\nEND\r\n")
	ts.FastForward(59 * time.Second)
	c.do("get k\r\n", "VALUE k 5 1\r\nv\r\nEND\r\n")
	c.do("gat 0 k\r\n", "VALUE k 5 1\r\nv\r\nEND\r\n") // 0: never expires
	ts.FastForward(365 * 24 * time.Hour)
	c.do("get k\r\n", "VALUE k 5 1\r\nv\r\nEND\r\n")
	c.do("gat -1 k\r\n", "VALUE k 5 1\r\nv\r\nEND\r\n") // expires at once
	c.do("get k\r\n", "END\r\n")
}

func TestExpiryFlushAllDelay(t *testing.T) {
	ts := emcachetest.NewServer(t)
	c := dial(t, ts)
	c.do("set old 0 0 1\r\na\r\n", "STORED\r\n")
	c.do("flush_all 30\r\n", "OK\r\n")
	ts.FastForward(29 * time.Second)
	c.do("get old\r\n", "VALUE old 0 1\r\na\r\nEND\r\n")
	ts.FastForward(time.Second)
	c.do("get old\r\n", "END\r\n")
	c.do("set new 0 0 1\r\nb\r\n", "STORED\r\n")
	ts.FastForward(time.Hour)
	c.do("get new\r\n", "VALUE new 0 1\r\nb\r\nEND\r\n")
	assert.EqualValues(t, 1, ts.Cache().Stats().CmdFlush)
}

// TestExpiryMetaWindows drives the meta protocol's time-based flags: T sets
// a TTL, R hands one client the right to recache an item close to expiry.
func TestExpiryMetaWindows(t *testing.T) {
	ts := emcachetest.NewServer(t)
	c := dial(t, ts)
	c.do("ms k 1 T30\r\nv\r\n", "HD\r\n")
	ts.FastForward(19 * time.Second)
	c.do("mg k v t R10\r\n", "VA 1 t11\r\nv\r\n") // 11s left: not yet
	ts.FastForward(6 * time.Second)
	c.do("mg k v t R10\r\n", "VA 1 t5 W\r\nv\r\n") // this client recaches
	c.do("mg k v t R10\r\n", "VA 1 t5 Z\r\nv\r\n") // others see it is taken
	c.do("touch k 100\r\n", "TOUCHED\r\n")
	ts.FastForward(99 * time.Second)
	c.do("mg k s\r\n", "HD s1 Z\r\n")
	ts.FastForward(time.Second)
	c.do("mg k s\r\n", "EN\r\n")
}

const oom = "SERVER_ERROR out of memory storing object"

func TestFaultReply(t *testing.T) {
	ts := emcachetest.NewServer(t)
	c := dial(t, ts)
	ts.InjectFault(2, emcache.Fault{Command: "set", Reply: oom})
	c.do("get k\r\n", "END\r\n") // not a set: untouched
	// The data block of a failed store is read and dropped, including one
	// that looks like a command.
	c.do("set k 0 0 9\r\nget k\r\nxx\r\n", oom+"\r\n")
	c.do("set k 0 0 1\r\nv\r\n", oom+"\r\n")
	c.do("get k\r\n", "END\r\n")
	c.do("set k 0 0 1\r\nv\r\n", "STORED\r\n") // the two faults are used up
	c.do("get k\r\n", "VALUE k 0 1\r\nv\r\nEND\r\n")
	assert.EqualValues(t, 1, ts.Cache().Stats().CmdSet)
}

func TestFaultReplyEveryCommand(t *testing.T) {
	ts := emcachetest.NewServer(t)
	c := dial(t, ts)
	ts.InjectFault(4, emcache.Fault{Reply: "SERVER_ERROR busy"})
	c.do("get k\r\n", "SERVER_ERROR busy\r\n")
	c.do("cas k 0 0 1 99\r\nv\r\n", "SERVER_ERROR busy\r\n")
	c.do("ms k 2 T0\r\nhi\r\n", "SERVER_ERROR busy\r\n") // meta set: its block goes too
	c.do("incr n 1\r\n", "SERVER_ERROR busy\r\n")
	c.do("incr n 1\r\n", "NOT_FOUND\r\n")
}

func TestFaultReplyNoreply(t *testing.T) {
	ts := emcachetest.NewServer(t)
	c := dial(t, ts)
	ts.InjectFault(1, emcache.Fault{Reply: oom})
	// As with memcached's own errors, noreply silences the failure.
	c.do("set k 0 0 1 noreply\r\nv\r\nget k\r\n", "END\r\n")
}

func TestFaultReplyCancel(t *testing.T) {
	ts := emcachetest.NewServer(t)
	c := dial(t, ts)
	ts.InjectFault(5, emcache.Fault{Reply: oom})
	ts.InjectFault(0, emcache.Fault{})
	c.do("set k 0 0 1\r\nv\r\n", "STORED\r\n")
	ts.InjectFault(5, emcache.Fault{Reply: "ERROR"})
	ts.InjectFault(1, emcache.Fault{Reply: oom}) // replaces the first
	c.do("set k 0 0 1\r\nv\r\n", oom+"\r\n")
	c.do("set k 0 0 1\r\nv\r\n", "STORED\r\n")
}

func TestFaultClose(t *testing.T) {
	ts := emcachetest.NewServer(t)
	c := dial(t, ts)
	ts.InjectFault(1, emcache.Fault{Command: "get", Close: true})
	// The set before the failing get is answered, the get is not.
	c.do("set k 0 0 1\r\nv\r\nget k\r\nget k\r\n", "STORED\r\n")
	c.expectClosed()

	c2 := dial(t, ts)
	c2.do("get k\r\n", "VALUE k 0 1\r\nv\r\nEND\r\n")
}

func TestFaultDelay(t *testing.T) {
	ts := emcachetest.NewServer(t)
	c := dial(t, ts)
	const d = 50 * time.Millisecond
	ts.InjectFault(1, emcache.Fault{Delay: d})
	start := time.Now()
	c.do("set k 0 0 1\r\nv\r\n", "STORED\r\n") // late, but it runs
	assert.GreaterOrEqual(t, time.Since(start), d)

	ts.InjectFault(1, emcache.Fault{Delay: d, Reply: oom})
	start = time.Now()
	c.do("set k 0 0 1\r\nw\r\n", oom+"\r\n")
	assert.GreaterOrEqual(t, time.Since(start), d)
	c.do("get k\r\n", "VALUE k 0 1\r\nv\r\nEND\r\n")
}

func TestFaultDelayEndsWithServer(t *testing.T) {
	ts := emcachetest.NewServer(t)
	c := dial(t, ts)
	ts.InjectFault(1, emcache.Fault{Delay: 10 * time.Second})
	_, err := io.WriteString(c.nc, "get k\r\n")
	require.NoError(t, err)
	start := time.Now()
	ts.Close()
	assert.Less(t, time.Since(start), 5*time.Second, "Close waited for the delay")
	c.expectClosed()
}

func TestFaultInvalid(t *testing.T) {
	ts := emcachetest.NewServer(t)
	for _, f := range []emcache.Fault{
		{Reply: "two\r\nlines"},
		{Delay: -time.Second},
		{Delay: time.Hour},
		{Reply: oom, Close: true},
	} {
		assert.Error(t, ts.Server().InjectFault(1, f), "%+v", f)
	}
	ft := &fakeT{}
	ts2 := emcachetest.NewServer(ft)
	func() {
		defer func() { recover() }()
		ts2.InjectFault(1, emcache.Fault{Delay: time.Hour})
	}()
	assert.Contains(t, ft.failed, "Fault.Delay")
	ft.cleanup()
}

// TestFaultCountAcrossConnections checks that a fault for n requests fails
// exactly n, however many connections race for them.
func TestFaultCountAcrossConnections(t *testing.T) {
	ts := emcachetest.NewServer(t, emcachetest.WithServerConfig(emcache.ServerConfig{Workers: 4}))
	const conns, reqs, faults = 8, 50, 100
	ts.InjectFault(faults, emcache.Fault{Reply: "SERVER_ERROR injected"})
	var mu sync.Mutex
	failed := 0
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for range conns {
		wg.Go(func() {
			nc, err := net.Dial("tcp", ts.Addr())
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(ioTimeout))
			r := bufio.NewReader(nc)
			for range reqs {
				if _, err := io.WriteString(nc, "get k\r\n"); err != nil {
					errs <- err
					return
				}
				line, err := r.ReadString('\n')
				if err != nil {
					errs <- err
					return
				}
				switch line {
				case "SERVER_ERROR injected\r\n":
					mu.Lock()
					failed++
					mu.Unlock()
				case "END\r\n":
				default:
					errs <- errors.New("unexpected reply " + line)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, faults, failed)
}

// openFDs counts the process's open file descriptors, or returns -1 where
// /proc/self/fd does not list them.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// settled polls until the goroutine and fd counts are back to at most
// what they were: a stopped server's last goroutines may still be
// returning. The bound is generous; the loop ends as soon as they match.
func settled(goroutines, fds int) (int, int) {
	var g, f int
	for range 1000 {
		g, f = runtime.NumGoroutine(), openFDs()
		if g <= goroutines && f <= fds {
			break
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond) // polling a count, not synchronising with an event
	}
	return g, f
}

func TestThousandServersLeakNothing(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	// One first, so that lazily started runtime machinery (the network
	// poller, timers) is in the baseline.
	emcachetest.NewServer(t).Close()
	g0, f0 := settled(runtime.NumGoroutine(), openFDs())
	for range n {
		ts := emcachetest.NewServer(t)
		nc, err := net.Dial("tcp", ts.Addr())
		require.NoError(t, err)
		_, err = io.WriteString(nc, "set k 0 0 1\r\nv\r\n")
		require.NoError(t, err)
		ts.Close()
		nc.Close()
	}
	g, f := settled(g0, f0)
	assert.LessOrEqual(t, g, g0, "goroutines leaked")
	if f0 >= 0 {
		assert.LessOrEqual(t, f, f0, "file descriptors leaked")
	}
}
