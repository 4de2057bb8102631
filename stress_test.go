//go:build stress

package emcache

// Hostile clients, faults and limits, against an in-process server over
// loopback. Each scenario asserts a bound: the Go heap or RSS, a canary
// client's latency, goroutine and connection counts, and that the canary's
// keys written before the attack read back intact after it. Run with
//
//	go test -race -tags stress -run Stress .
//
// The sizes are bounded (hundreds of connections, not tens of thousands)
// so that the whole suite stays around a minute with the race detector on
// a small machine; the figures each test measures are logged with -v.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	// stressCanaryKeys is how many keys the canary writes before an attack
	// and reads back after it.
	stressCanaryKeys = 200
	// stressSamples is how many get round trips one latency figure takes.
	stressSamples = 300
	// stressP99 bounds the canary's p99 get latency under attack. It is
	// generous: the attackers run in the same process, on a machine that
	// may have two busy cores, under the race detector.
	stressP99 = 50 * time.Millisecond
)

// stressEnv is a server under attack and what the assertions need of it.
type stressEnv struct {
	t    *testing.T
	s    *Server
	c    *Cache
	addr string
	mu   sync.Mutex
	logs bytes.Buffer
}

// startStress serves a fresh cache on loopback (see startProtoServer) with a
// logger whose output is checked, at the end of the test, for recovered
// panics: the server survives a panic in a request handler by closing the
// connection, which hides the bug from the client.
func startStress(t *testing.T, scfg ServerConfig, ccfg Config) *stressEnv {
	t.Helper()
	e := &stressEnv{t: t}
	scfg.Logger = slog.New(slog.NewTextHandler(lockedWriter{&e.mu, &e.logs}, nil))
	e.s, e.addr = startProtoServer(t, scfg, ccfg)
	e.c = e.s.cache
	t.Cleanup(func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		assert.NotContains(t, e.logs.String(), "panic", "the server recovered from a panic")
	})
	return e
}

// dial opens a raw client connection, closed at the end of the test.
func (e *stressEnv) dial() net.Conn {
	e.t.Helper()
	nc, err := net.DialTimeout("tcp", e.addr, ioTimeout)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { nc.Close() })
	return nc
}

// conns returns the server's open client connections.
func (e *stressEnv) conns() int { return int(e.s.Stats().CurrConnections) }

// waitConns waits until the server has exactly n client connections.
func (e *stressEnv) waitConns(n int) {
	e.t.Helper()
	eventually(e.t, fmt.Sprintf("%d connections (have %d)", n, e.conns()), func() bool { return e.conns() == n })
}

// statesCount counts the connections in a stats conns state.
func (e *stressEnv) statesCount(state string) int {
	n := 0
	for _, ci := range e.s.connInfos() {
		if ci.state == state {
			n++
		}
	}
	return n
}

// stressValue is one VALUE of a retrieval reply.
type stressValue struct {
	key   string
	flags uint32
	cas   uint64
	data  []byte
}

// readRetrieval reads a get/gets reply up to its END.
func readRetrieval(r *bufio.Reader) ([]stressValue, error) {
	var vals []stressValue
	for range 1 << 20 {
		line, err := r.ReadString('\n')
		if err != nil {
			return vals, fmt.Errorf("after %d values: %w (partial %q)", len(vals), err, line)
		}
		if line == "END\r\n" {
			return vals, nil
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f) > 5 || f[0] != "VALUE" {
			return vals, fmt.Errorf("unexpected reply line %q", line)
		}
		flags, err1 := strconv.ParseUint(f[2], 10, 32)
		n, err2 := strconv.Atoi(f[3])
		v := stressValue{key: f[1], flags: uint32(flags)}
		var err3 error
		if len(f) == 5 {
			v.cas, err3 = strconv.ParseUint(f[4], 10, 64)
		}
		if err := errors.Join(err1, err2, err3); err != nil {
			return vals, fmt.Errorf("reply line %q: %w", line, err)
		}
		v.data = make([]byte, n+2)
		if _, err := io.ReadFull(r, v.data); err != nil {
			return vals, fmt.Errorf("data of %q: %w", line, err)
		}
		if !bytes.HasSuffix(v.data, []byte("\r\n")) {
			return vals, fmt.Errorf("data of %q not followed by CRLF", line)
		}
		v.data = v.data[:n]
		vals = append(vals, v)
	}
	return vals, errors.New("reply never ends")
}

// roundTripLine sends req and reads one line of reply, with a deadline.
func roundTripLine(nc net.Conn, r *bufio.Reader, req string) (string, error) {
	nc.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(nc, req); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

// canary is a well-behaved client: it writes its keys before an attack,
// measures its get latency during it and reads its keys back after it.
type canary struct {
	e      *stressEnv
	nc     net.Conn
	r      *bufio.Reader
	values [][]byte
	next   int
	// hits and read are what it read, so that a test can tell the server's
	// output to other clients from its own.
	hits, read int
}

func canaryKey(i int) string { return "canary:" + strconv.Itoa(i) }

// newCanary connects and writes the canary's keys, values of 16 to 815
// bytes that fit any MaxItemSize the tests use.
func (e *stressEnv) newCanary() *canary {
	e.t.Helper()
	nc := e.dial()
	cn := &canary{e: e, nc: nc, r: bufio.NewReader(nc)}
	var req strings.Builder
	for i := range stressCanaryKeys {
		v := fmt.Appendf(nil, "canary-%d-", i)
		for len(v) < 16+i*97%800 {
			v = append(v, byte('a'+(i+len(v))%26))
		}
		cn.values = append(cn.values, v)
		fmt.Fprintf(&req, "set %s %d 0 %d\r\n%s\r\n", canaryKey(i), i, len(v), v)
	}
	nc.SetDeadline(time.Now().Add(ioTimeout))
	_, err := io.WriteString(nc, req.String())
	require.NoError(e.t, err)
	for range stressCanaryKeys {
		line, err := cn.r.ReadString('\n')
		require.NoError(e.t, err)
		require.Equal(e.t, "STORED\r\n", line)
	}
	return cn
}

// errCanaryMiss is a canary key not found.
var errCanaryMiss = errors.New("missing (evicted?)")

// get reads one canary key and checks it.
func (cn *canary) get(i int) error {
	cn.nc.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(cn.nc, "get "+canaryKey(i)+"\r\n"); err != nil {
		return err
	}
	vals, err := readRetrieval(cn.r)
	if err != nil {
		return err
	}
	if len(vals) == 0 {
		return fmt.Errorf("canary key %d: %w", i, errCanaryMiss)
	}
	if len(vals) != 1 {
		return fmt.Errorf("canary key %d: %d values, want 1", i, len(vals))
	}
	v := vals[0]
	if v.key != canaryKey(i) || v.flags != uint32(i) || !bytes.Equal(v.data, cn.values[i]) {
		return fmt.Errorf("canary key %d: got %s flags %d %q", i, v.key, v.flags, v.data)
	}
	cn.hits++
	cn.read += len(fmt.Sprintf("VALUE %s %d %d\r\n\r\nEND\r\n", v.key, v.flags, len(v.data))) + len(v.data)
	return nil
}

// p99 runs n get round trips over the canary's keys, checking every value,
// and returns their 99th percentile latency.
func (cn *canary) p99(n int) time.Duration {
	cn.e.t.Helper()
	lat := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		require.NoError(cn.e.t, cn.get(cn.next))
		lat = append(lat, time.Since(start))
		cn.next = (cn.next + 1) % stressCanaryKeys
	}
	return percentile(lat, 99)
}

func percentile(lat []time.Duration, p int) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return lat[(len(lat)*p+99)/100-1]
}

// ping reads the canary's keys every interval until stop is closed and
// returns the latencies; it runs in its own goroutine while the test
// goroutine drives an attack.
func (cn *canary) ping(stop <-chan struct{}, every time.Duration) ([]time.Duration, error) {
	var lat []time.Duration
	for range 1 << 20 {
		select {
		case <-stop:
			return lat, nil
		default:
		}
		start := time.Now()
		if err := cn.get(cn.next); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(start))
		cn.next = (cn.next + 1) % stressCanaryKeys
		time.Sleep(every) // pacing the canary, not synchronising
	}
	return lat, errors.New("pinged for too long")
}

// requireP99 measures the canary's latency and asserts the bound.
func (cn *canary) requireP99(what string) time.Duration {
	cn.e.t.Helper()
	p := cn.p99(stressSamples)
	cn.e.t.Logf("%s: canary p99 over %d gets = %v", what, stressSamples, p)
	assert.Less(cn.e.t, p, stressP99, "%s: canary p99 latency", what)
	return p
}

// verify reads every canary key back in one multiget and checks each.
func (cn *canary) verify() {
	cn.e.t.Helper()
	missing := cn.readBack()
	require.Empty(cn.e.t, missing, "canary keys lost")
}

// readBack reads every canary key in one multiget, checks that each value
// returned is exactly the one written and returns the keys missing.
func (cn *canary) readBack() (missing []int) {
	t := cn.e.t
	t.Helper()
	var req strings.Builder
	req.WriteString("get")
	for i := range stressCanaryKeys {
		req.WriteString(" " + canaryKey(i))
	}
	req.WriteString("\r\n")
	cn.nc.SetDeadline(time.Now().Add(ioTimeout))
	_, err := io.WriteString(cn.nc, req.String())
	require.NoError(t, err)
	vals, err := readRetrieval(cn.r)
	require.NoError(t, err)
	for i := range stressCanaryKeys {
		if len(vals) == 0 || vals[0].key != canaryKey(i) {
			missing = append(missing, i)
			continue
		}
		v := vals[0]
		vals = vals[1:]
		require.Equal(t, uint32(i), v.flags)
		require.Equal(t, string(cn.values[i]), string(v.data), "canary key %d", i)
		cn.hits++
	}
	require.Empty(t, vals, "values out of order or unrequested")
	return missing
}

// memSample is the process's memory at one moment.
type memSample struct {
	heap uint64 // Go heap objects, live and not yet swept
	rss  uint64 // resident set, from /proc/self/status (0 where absent)
}

func readMem() memSample {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	m := memSample{heap: s[0].Value.Uint64()}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				m.rss = kb << 10
			}
		}
	}
	return m
}

// memWatch samples memory in the background and keeps the peaks.
type memWatch struct {
	base, peak memSample
	stop       chan struct{}
	done       chan struct{}
}

// watchMem collects garbage, takes the baseline and starts sampling.
func watchMem(t *testing.T) *memWatch {
	runtime.GC()
	m := &memWatch{base: readMem(), stop: make(chan struct{}), done: make(chan struct{})}
	m.peak = m.base
	go func() {
		defer close(m.done)
		tick := time.NewTicker(5 * time.Millisecond) // sampling pace
		defer tick.Stop()
		for {
			s := readMem()
			m.peak.heap = max(m.peak.heap, s.heap)
			m.peak.rss = max(m.peak.rss, s.rss)
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(m.finish)
	return m
}

// finish stops sampling; the peaks are final after it. Idempotent.
func (m *memWatch) finish() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

// growth returns the peak growth over the baseline.
func (m *memWatch) growth() (heap, rss int64) {
	m.finish()
	return int64(m.peak.heap) - int64(m.base.heap), int64(m.peak.rss) - int64(m.base.rss)
}

const mib = 1 << 20

func mb(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/mib) }

// setLinger0 makes Close send a reset instead of a FIN.
func setLinger0(t *testing.T, nc net.Conn) {
	require.NoError(t, nc.(*net.TCPConn).SetLinger(0))
}

// readToEOF reads what the server sends until it closes the connection.
// A reset counts as a close: a server that closes with unread input resets.
func readToEOF(nc net.Conn) (string, error) {
	nc.SetReadDeadline(time.Now().Add(ioTimeout))
	b, err := io.ReadAll(nc)
	if err != nil && isReset(err) {
		err = nil
	}
	return string(b), err
}

// replyLineRe matches a stream of the replies the text protocol can give
// to garbage: errors and retrieval ends.
var replyLineRe = regexp.MustCompile(`^((ERROR|END|CLIENT_ERROR [^\r\n]*|SERVER_ERROR [^\r\n]*)\r\n)*$`)

// TestStressMalformedInput throws garbage of every kind at the server from
// many connections at once: each gets a clear error or a closed connection,
// nothing panics, and what one connection may make the server buffer is
// bounded however much it sends.
func TestStressMalformedInput(t *testing.T) {
	e := startStress(t, ServerConfig{Workers: 2}, Config{MaxBytes: 8 * mib, MaxItemSize: 1024})
	cn := e.newCanary()
	mem := watchMem(t)
	bytesRead0 := e.s.Stats().BytesRead

	// Cases with exact replies; each runs on its own connection, which is
	// then closed.
	key251 := strings.Repeat("k", MaxKeyLen+1)
	var manyKeys strings.Builder
	manyKeys.WriteString("get")
	for i := range 10000 {
		fmt.Fprintf(&manyKeys, " missing:%d", i)
	}
	manyKeys.WriteString(" " + canaryKey(7) + "\r\n")
	exact := []struct{ req, reply string }{
		// A NUL has no place in a command line (memcached would end the
		// line there and let one key alias another).
		{"get a\x00b\r\n", "CLIENT_ERROR bad command line format\r\n"},
		{"\x00\x00\x00\r\n", "CLIENT_ERROR bad command line format\r\n"},
		{"set k\x00 0 0 1\r\nx\r\n", "CLIENT_ERROR bad command line format\r\nERROR\r\n"},
		{"set k 0 0 -1\r\n", "CLIENT_ERROR bad command line format\r\n"},
		{"set k 0 0 2147483647\r\n", "CLIENT_ERROR bad command line format\r\n"},
		{"set k 0 0 99999999999999999999\r\n", "CLIENT_ERROR bad command line format\r\n"},
		{"set k -5 0 1\r\nx\r\n", "CLIENT_ERROR bad command line format\r\nERROR\r\n"},
		{"set k 0 0 4096\r\n" + strings.Repeat("z", 4096) + "\r\nget k\r\n", "SERVER_ERROR object too large for cache\r\nEND\r\n"},
		{"set k 0 0 1\r\nxyz\r\n", "CLIENT_ERROR bad data chunk\r\nERROR\r\n"},
		{"incr k -1\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n"},
		{"incr k 99999999999999999999\r\n", "CLIENT_ERROR invalid numeric delta argument\r\n"},
		{"touch k abc\r\n", "CLIENT_ERROR invalid exptime argument\r\n"},
		{"get " + key251 + "\r\n", "CLIENT_ERROR bad command line format\r\n"},
		{"set " + key251 + " 0 0 1\r\nx\r\n", "CLIENT_ERROR bad command line format\r\nERROR\r\n"},
		{"delete " + key251 + "\r\n", "CLIENT_ERROR bad command line format\r\n"},
		{"incr " + key251 + " 1\r\n", "CLIENT_ERROR bad command line format\r\n"},
		{"touch " + key251 + " 1\r\n", "CLIENT_ERROR bad command line format\r\n"},
		{"get " + strings.Repeat("q", 1<<20) + " " + canaryKey(1) + "\r\n", "CLIENT_ERROR bad command line format\r\n"},
		{"get" + strings.Repeat(" ", 1<<20) + "\r\n", "ERROR\r\n"},
		{manyKeys.String(), fmt.Sprintf("VALUE %s 7 %d\r\n%s\r\nEND\r\n", canaryKey(7), len(cn.values[7]), cn.values[7])},
		{strings.Repeat("a", maxLineLen+1), ""}, // closed: a line too long
		{"GET / HTTP/1.1\r\n", ""},              // closed: a web client
	}
	// Streams with no line end at all: the server must hang up after
	// reading little of each.
	const floods, floodBytes = 24, 8 << 20

	var wg sync.WaitGroup
	var done atomic.Int64
	errc := make(chan error, 1024)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(exact); i += 4 {
				tc := exact[i]
				nc, err := net.DialTimeout("tcp", e.addr, ioTimeout)
				if err != nil {
					report(err)
					return
				}
				// Write in the background: a long request may still be
				// going in while the reply comes out.
				werr := make(chan error, 1)
				go func() {
					nc.SetWriteDeadline(time.Now().Add(ioTimeout))
					_, err := io.WriteString(nc, tc.req)
					if err == nil {
						err = nc.(*net.TCPConn).CloseWrite()
					}
					werr <- err
				}()
				got, err := readToEOF(nc)
				nc.Close()
				if err := <-werr; err != nil && tc.reply != "" {
					report(fmt.Errorf("case %d: write: %w", i, err))
				}
				if err != nil {
					report(fmt.Errorf("case %d: read: %w", i, err))
				}
				if got != tc.reply {
					report(fmt.Errorf("case %d %.60q: got %.200q, want %.200q", i, tc.req, got, tc.reply))
				}
				done.Add(1)
			}
		})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	randomInputs := make([][]byte, 64)
	for i := range randomInputs {
		randomInputs[i] = make([]byte, 4096)
		for j := range randomInputs[i] {
			randomInputs[i][j] = byte(rng.Uint32())
		}
		if i%2 == 0 {
			// Avoid the binary protocol's magic, which closes at once.
			randomInputs[i][0] = 'x'
		}
	}
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(randomInputs); i += 4 {
				nc, err := net.DialTimeout("tcp", e.addr, ioTimeout)
				if err != nil {
					report(err)
					return
				}
				nc.SetDeadline(time.Now().Add(ioTimeout))
				_, werr := nc.Write(randomInputs[i])
				if werr == nil {
					nc.(*net.TCPConn).CloseWrite()
				}
				got, err := readToEOF(nc)
				nc.Close()
				if err != nil {
					report(fmt.Errorf("random input %d: %w", i, err))
				}
				// Garbage gets errors, all of them whole lines.
				if !replyLineRe.MatchString(got) {
					report(fmt.Errorf("random input %d: reply %.200q", i, got))
				}
				done.Add(1)
			}
		})
	}
	chunk := bytes.Repeat([]byte("A"), 64<<10)
	var floodSent atomic.Int64
	for w := range floods {
		wg.Go(func() {
			nc, err := net.DialTimeout("tcp", e.addr, ioTimeout)
			if err != nil {
				report(err)
				return
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(ioTimeout))
			if w%2 == 1 {
				nc.Write([]byte("set k 0 0 1\r\nx\r\nse")) // a valid start
			}
			for sent := 0; sent < floodBytes; sent += len(chunk) {
				n, err := nc.Write(chunk)
				floodSent.Add(int64(n))
				if err != nil {
					break // the server hung up, as it should
				}
			}
			if got, err := readToEOF(nc); err != nil || (got != "" && got != "STORED\r\n") {
				report(fmt.Errorf("flood %d: got %q, %v", w, got, err))
			}
			done.Add(1)
		})
	}
	p99 := cn.requireP99("malformed input")
	wg.Wait()
	close(errc)
	for err := range errc {
		assert.NoError(t, err)
	}
	assert.EqualValues(t, len(exact)+len(randomInputs)+floods, done.Load())

	// Each flood wrote megabytes; the server read a few buffers of each.
	read := e.s.Stats().BytesRead - bytesRead0
	heap, rss := mem.growth()
	t.Logf("malformed input: floods sent %s, server read %s in all; peak heap +%s, RSS +%s; p99 %v",
		mb(floodSent.Load()), mb(int64(read)), mb(heap), mb(rss), p99)
	// The floods aside, the server reads every byte sent; of each flood it
	// reads a couple of buffers before hanging up.
	others := 0
	for _, tc := range exact {
		others += len(tc.req)
	}
	for _, in := range randomInputs {
		others += len(in)
	}
	assert.LessOrEqual(t, int(read), others+floods*4*readBufSize, "the server buffered unterminated lines")
	assert.Less(t, heap, int64(64*mib), "heap growth under malformed input")

	e.waitConns(1)
	cn.verify()
}

// stall opens n connections that each send prefix and then nothing.
func (e *stressEnv) stall(n int, prefix func(i int) string) []net.Conn {
	e.t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		nc := e.dial()
		nc.SetWriteDeadline(time.Now().Add(ioTimeout))
		_, err := io.WriteString(nc, prefix(i))
		require.NoError(e.t, err)
		conns[i] = nc
	}
	return conns
}

func stallPrefix(i int) string {
	switch i % 3 {
	case 0:
		return "g" // one byte of a command
	case 1:
		return "set stalled 0 0 100\r\nab" // mid data block
	}
	return "get " + strings.Repeat("k", 100) // mid key
}

// TestStressSlowClients stalls hundreds of connections mid-request: the
// canary on the same workers is not slowed, each stalled connection costs a
// bounded buffer, and IdleTimeout closes them all.
func TestStressSlowClients(t *testing.T) {
	const stalled = 300
	t.Run("stalled", func(t *testing.T) {
		e := startStress(t, ServerConfig{Workers: 4}, Config{MaxBytes: 8 * mib, MaxItemSize: 1024})
		cn := e.newCanary()
		mem := watchMem(t)
		read0 := e.s.Stats().BytesRead
		conns := e.stall(stalled, stallPrefix)
		want := 0
		for i := range stalled {
			want += len(stallPrefix(i))
		}
		e.waitConns(stalled + 1)
		eventually(t, "the stalled bytes to be read", func() bool { return e.s.Stats().BytesRead-read0 >= uint64(want) })
		cn.requireP99(fmt.Sprintf("%d stalled connections", stalled))
		heap, rss := mem.growth()
		t.Logf("%d stalled connections: heap +%s (%d bytes each), RSS +%s", stalled, mb(heap), heap/stalled, mb(rss))
		// A connection with a partial request holds one read buffer.
		assert.Less(t, heap, int64(stalled*(readBufSize+4096)+4*mib), "heap per stalled connection")
		for _, nc := range conns {
			nc.Close()
		}
		e.waitConns(1)
		cn.verify()
	})
	t.Run("idle timeout", func(t *testing.T) {
		const timeout = 300 * time.Millisecond
		e := startStress(t, ServerConfig{Workers: 4, IdleTimeout: timeout}, Config{MaxBytes: 8 * mib, MaxItemSize: 1024})
		cn := e.newCanary()
		// The canary keeps talking, so it is never idle; the others all go.
		stop := make(chan struct{})
		type pingResult struct {
			lat []time.Duration
			err error
		}
		pinged := make(chan pingResult, 1)
		go func() {
			lat, err := cn.ping(stop, 2*time.Millisecond)
			pinged <- pingResult{lat, err}
		}()
		conns := e.stall(stalled, stallPrefix)
		eventually(t, "the stalled connections to be kicked", func() bool { return e.s.Stats().IdleKicks >= stalled })
		close(stop)
		res := <-pinged
		require.NoError(t, res.err)
		lat := res.lat
		require.EqualValues(t, stalled, e.s.Stats().IdleKicks)
		for i, nc := range conns {
			got, err := readToEOF(nc)
			require.NoError(t, err, "stalled connection %d", i)
			require.Empty(t, got)
		}
		e.waitConns(1)
		t.Logf("idle timeout: %d stalled connections kicked, canary p99 %v over %d gets", stalled, percentile(lat, 99), len(lat))
		cn.verify()
	})
}

// TestStressConnectionFlood fills MaxConns and floods the server with more:
// existing clients keep being served, every excess connection gets memcached's
// error and is closed, and the server accepts again once the flood drains.
func TestStressConnectionFlood(t *testing.T) {
	const maxConns = 64
	e := startStress(t, ServerConfig{Workers: 4, MaxConns: maxConns}, Config{MaxBytes: 8 * mib, MaxItemSize: 1024})
	cn := e.newCanary()
	// Regular clients, busy through the flood.
	const regulars = 15
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var regularOps atomic.Int64
	for i := range regulars {
		nc := e.dial()
		wg.Go(func() {
			r := bufio.NewReader(nc)
			key := fmt.Sprintf("regular:%d", i)
			for n := 0; n < 100000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				line, err := roundTripLine(nc, r, fmt.Sprintf("set %s 0 0 %d\r\n%d\r\n", key, len(strconv.Itoa(n)), n))
				if !assert.NoError(t, err) || !assert.Equal(t, "STORED\r\n", line) {
					return
				}
				regularOps.Add(1)
			}
		})
	}
	e.waitConns(1 + regulars)

	// At the limit: every slot taken, all served.
	holders := make([]*testClient, 0, maxConns)
	for len(holders) < maxConns-1-regulars {
		hc := dial(t, e.s)
		hc.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
		holders = append(holders, hc)
	}
	require.Equal(t, maxConns, e.conns())

	// Past it: a flood of connections, each refused with the message.
	const flooders, perFlooder = 8, 40
	rejected0 := e.s.Stats().RejectedConnections
	var refused, other atomic.Int64
	var fw sync.WaitGroup
	for range flooders {
		fw.Go(func() {
			for range perFlooder {
				nc, err := net.DialTimeout("tcp", e.addr, ioTimeout)
				if !assert.NoError(t, err) {
					return
				}
				got, err := readToEOF(nc)
				nc.Close()
				if err == nil && got == tooManyConns {
					refused.Add(1)
				} else {
					other.Add(1)
					t.Errorf("flood connection: got %q, %v", got, err)
				}
			}
		})
	}
	p99 := cn.requireP99("connection flood")
	fw.Wait()
	t.Logf("connection flood: %d refused, %d other, canary p99 %v, regular clients made %d stores",
		refused.Load(), other.Load(), p99, regularOps.Load())
	assert.EqualValues(t, flooders*perFlooder, refused.Load())
	assert.EqualValues(t, flooders*perFlooder, e.s.Stats().RejectedConnections-rejected0)
	require.Equal(t, maxConns, e.conns())

	// Drained: the holders leave, new clients take their places, and the
	// first one past the limit is refused again.
	for _, hc := range holders {
		hc.nc.Close()
	}
	e.waitConns(1 + regulars)
	var churn sync.WaitGroup
	for range 8 {
		churn.Go(func() {
			for range 25 {
				nc, err := net.DialTimeout("tcp", e.addr, ioTimeout)
				if !assert.NoError(t, err) {
					return
				}
				line, err := roundTripLine(nc, bufio.NewReader(nc), "version\r\n")
				nc.Close()
				assert.NoError(t, err)
				assert.Equal(t, "VERSION "+Version+"\r\n", line)
			}
		})
	}
	churn.Wait()
	e.waitConns(1 + regulars)
	for range maxConns - 1 - regulars {
		hc := dial(t, e.s)
		hc.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
	}
	extra := dial(t, e.s)
	assert.Equal(t, tooManyConns, extra.expectEOF())

	close(stop)
	wg.Wait()
	cn.verify()
}

// neverReader opens a connection that pipelines req over and over and
// never reads a reply, with a small receive buffer so that the kernel
// absorbs little of the backlog. The returned channel reports when its
// writer stops, which it does once the connection is closed.
func (e *stressEnv) neverReader(req string) (net.Conn, <-chan struct{}) {
	e.t.Helper()
	nc := e.dialSmallRcvBuf()
	done := make(chan struct{})
	buf := []byte(strings.Repeat(req, (64<<10)/len(req)))
	go func() {
		defer close(done)
		for range 1 << 14 {
			// Blocks once the server stops reading; fails once closed.
			if _, err := nc.Write(buf); err != nil {
				return
			}
		}
	}()
	return nc, done
}

// dialSmallRcvBuf connects with a small receive buffer, so that the kernel
// holds little of what the server sends a client that does not read.
func (e *stressEnv) dialSmallRcvBuf() net.Conn {
	e.t.Helper()
	// Set before connecting: a buffer shrunk afterwards leaves a window
	// the client cannot back, and the transfer crawls once it does read.
	d := net.Dialer{Timeout: ioTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	nc, err := d.Dial("tcp", e.addr)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { nc.Close() })
	return nc
}

// TestStressNeverReaders has clients pipeline gets and never read the
// replies: the server stops reading them once their backlog passes
// MaxOutput, so its memory stays bounded, and the canary is not slowed.
func TestStressNeverReaders(t *testing.T) {
	const (
		readers   = 16
		maxOutput = 256 << 10
		valueLen  = 16 << 10
	)
	e := startStress(t, ServerConfig{Workers: 4, MaxOutput: maxOutput}, Config{MaxBytes: 16 * mib, MaxItemSize: 64 << 10})
	cn := e.newCanary()
	value := strings.Repeat("v", valueLen)
	err := e.c.Set([]byte("big"), []byte(value), 0)
	require.NoError(t, err)
	reply := len(fmt.Sprintf("VALUE big 0 %d\r\n%s\r\nEND\r\n", valueLen, value))
	hits0, written0 := e.c.Stats().GetHits, e.s.Stats().BytesWritten
	mem := watchMem(t)

	conns := make([]net.Conn, readers)
	writers := make([]<-chan struct{}, readers)
	for i := range conns {
		conns[i], writers[i] = e.neverReader("get big\r\n")
	}
	eventually(t, "every never-reader to be blocked", func() bool { return e.statesCount("conn_mwrite") == readers })
	cn0hits, cn0read := cn.hits, cn.read
	p99 := cn.requireP99(fmt.Sprintf("%d never-readers", readers))

	// What the server holds for the never-readers: the replies it made
	// minus what it wrote, read while nothing moves (they are blocked).
	hits := int(e.c.Stats().GetHits-hits0) - (cn.hits - cn0hits)
	written := int(e.s.Stats().BytesWritten-written0) - (cn.read - cn0read)
	pending := hits*reply - written
	heap, rss := mem.growth()
	// ServerConfig.MaxOutput: past it the server stops reading a client,
	// and only one request's reply may take the backlog beyond it.
	perConn := maxOutput + reply
	t.Logf("%d never-readers: %d gets executed (%s of replies), %s pending in the server (bound %s), peak heap +%s, RSS +%s, canary p99 %v",
		readers, hits, mb(int64(hits*reply)), mb(int64(pending)), mb(int64(readers*perConn)), mb(heap), mb(rss), p99)
	assert.LessOrEqual(t, pending, readers*perConn, "output backlog")
	// The heap holds the backlogs, with room for a garbage cycle.
	assert.Less(t, heap, int64(2*readers*perConn+16*mib), "heap growth")

	for i, nc := range conns {
		if i%2 == 0 {
			setLinger0(t, nc)
		}
		nc.Close()
		<-writers[i]
	}
	e.waitConns(1)
	cn.verify()
}

// TestStressResetsAndHalfCloses has clients reset or half-close their
// connections mid-request and mid-reply: nothing leaks, no worker gets
// stuck, and a half-closing client still receives every reply it asked for.
func TestStressResetsAndHalfCloses(t *testing.T) {
	const workers = 4
	e := startStress(t, ServerConfig{Workers: workers, MaxOutput: 64 << 10}, Config{MaxBytes: 16 * mib, MaxItemSize: 64 << 10})
	cn := e.newCanary()
	value := strings.Repeat("r", 32<<10)
	err := e.c.Set([]byte("big"), []byte(value), 0)
	require.NoError(t, err)
	bigReply := fmt.Sprintf("VALUE big 0 %d\r\n%s\r\nEND\r\n", len(value), value)
	fds := fdCount(t)
	goroutines := runtime.NumGoroutine()

	type mode struct {
		name string
		run  func(nc net.Conn) error
	}
	reset := func(nc net.Conn) error {
		if err := nc.(*net.TCPConn).SetLinger(0); err != nil {
			return err
		}
		return nc.Close()
	}
	write := func(nc net.Conn, s string) error {
		nc.SetWriteDeadline(time.Now().Add(ioTimeout))
		_, err := io.WriteString(nc, s)
		return err
	}
	expectAll := func(nc net.Conn, req, want string) error {
		if err := write(nc, req); err != nil {
			return err
		}
		if err := nc.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		got, err := readToEOF(nc)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("got %d bytes, want %d: %.100q", len(got), len(want), got)
		}
		return nil
	}
	modes := []mode{
		{"reset mid-line", func(nc net.Conn) error {
			return errors.Join(write(nc, "get ab"), reset(nc))
		}},
		{"reset mid-data", func(nc net.Conn) error {
			return errors.Join(write(nc, "set k 0 0 1000\r\nabc"), reset(nc))
		}},
		{"reset mid-reply", func(nc net.Conn) error {
			if err := write(nc, strings.Repeat("get big\r\n", 50)); err != nil {
				return err
			}
			nc.SetReadDeadline(time.Now().Add(ioTimeout))
			if _, err := io.ReadFull(nc, make([]byte, 1000)); err != nil {
				return err
			}
			return reset(nc)
		}},
		{"reset mid-multiget", func(nc net.Conn) error {
			return errors.Join(write(nc, "get"+strings.Repeat(" big", 100)+"\r\n"), reset(nc))
		}},
		{"half-close mid-line", func(nc net.Conn) error {
			return expectAll(nc, "get ab", "")
		}},
		{"half-close mid-data", func(nc net.Conn) error {
			return expectAll(nc, "set hc 0 0 10\r\nabc", "")
		}},
		{"half-close after a partial command", func(nc net.Conn) error {
			return expectAll(nc, "set hc 0 0 1\r\nx\r\nget hc\r\nget", "STORED\r\nVALUE hc 0 1\r\nx\r\nEND\r\n")
		}},
		{"half-close mid-reply", func(nc net.Conn) error {
			return expectAll(nc, strings.Repeat("get big\r\n", 40), strings.Repeat(bigReply, 40))
		}},
	}
	const perMode = 24
	var wg sync.WaitGroup
	for mi, m := range modes {
		wg.Go(func() {
			for i := range perMode {
				nc, err := net.DialTimeout("tcp", e.addr, ioTimeout)
				if !assert.NoError(t, err) {
					return
				}
				err = m.run(nc)
				nc.Close()
				// A reset racing the server's own close may fail the
				// client's last call: only lost replies count.
				if err != nil && !isReset(err) && !errors.Is(err, syscall.EPIPE) {
					t.Errorf("%s %d (mode %d): %v", m.name, i, mi, err)
				}
			}
		})
	}
	p99 := cn.requireP99("resets and half-closes")
	wg.Wait()
	e.waitConns(1)
	t.Logf("resets and half-closes: %d connections, canary p99 %v", len(modes)*perMode, p99)

	// No worker is stuck: a connection on each is served.
	for range workers {
		c := dial(t, e.s)
		c.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
	}
	for i, w := range e.s.Stats().Workers {
		assert.NotZero(t, w.CurrConnections, "worker %d", i)
	}
	cn.verify()
	waitGoroutines(t, goroutines)
	// The probes above are still open, at both ends.
	eventually(t, "fds to be released", func() bool { return fdCount(t) <= fds+2*workers })
}

// stressPayload is a value that names its key, generation and length and
// fills the rest with a pattern derived from them, so that a torn value, a
// stale one or another key's is recognised.
func stressPayload(key string, gen, n int) []byte {
	v := fmt.Appendf(make([]byte, 0, n+40), "%s|%d|%d|", key, gen, n)
	if len(v) >= n {
		return v
	}
	// The alphabet rotated by gen, repeated: built in bulk, as megabytes
	// of it are made and checked per test.
	const alphabet = "abcdefghijklmnopqrstuvwxyz"
	off := (gen + len(v)) % 26
	pattern := alphabet[off:] + alphabet[:off]
	v = append(v, strings.Repeat(pattern, (n-len(v))/26+1)...)
	return v[:n]
}

// checkPayload verifies a value read under key and returns its generation.
func checkPayload(key string, v []byte) (int, error) {
	parts := bytes.SplitN(v, []byte("|"), 4)
	if len(parts) != 4 || string(parts[0]) != key {
		return 0, fmt.Errorf("key %s: foreign value %.60q", key, v)
	}
	gen, err1 := strconv.Atoi(string(parts[1]))
	n, err2 := strconv.Atoi(string(parts[2]))
	if err1 != nil || err2 != nil || !bytes.Equal(v, stressPayload(key, gen, n)) {
		return 0, fmt.Errorf("key %s: torn value of %d bytes: %.60q", key, len(v), v)
	}
	return gen, nil
}

// TestStressMemoryLimit writes 16 times MaxBytes of mixed-size values from
// several connections while others read: RSS stays within a bound of
// MaxBytes, the Go heap holds no item data, and every read is a miss or the
// key's last write, never a torn or foreign value.
func TestStressMemoryLimit(t *testing.T) {
	const (
		maxBytes    = 8 * mib
		maxItemSize = 256 << 10
		writers     = 4
		readers     = 1
		keysPer     = 400
	)
	e := startStress(t, ServerConfig{Workers: 4}, Config{MaxBytes: maxBytes, MaxItemSize: maxItemSize})
	cn := e.newCanary()
	mem := watchMem(t)
	var written atomic.Int64
	var reads, hits, misses atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		nc := e.dial()
		wg.Go(func() {
			r := bufio.NewReader(nc)
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			last := map[string]int{}
			size := func() int {
				switch x := rng.IntN(100); {
				case x < 60:
					return 10 + rng.IntN(500)
				case x < 90:
					return 500 + rng.IntN(8<<10)
				case x < 98:
					return 8<<10 + rng.IntN(64<<10)
				default:
					return 64<<10 + rng.IntN(maxItemSize-(64<<10)-200)
				}
			}
			for gen := 0; written.Load() < 16*maxBytes && gen < 1<<20; gen++ {
				key := fmt.Sprintf("w%d:%d", w, rng.IntN(keysPer))
				v := stressPayload(key, gen, size())
				// A set and, every fourth time, a get of one of this
				// writer's keys: its own writes are ordered, so the value
				// must be the last.
				rkey := fmt.Sprintf("w%d:%d", w, rng.IntN(keysPer))
				req := fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", key, len(v), v)
				check := gen%4 == 0
				if check {
					req += "get " + rkey + "\r\n"
				}
				line, err := roundTripLine(nc, r, req)
				if !assert.NoError(t, err) || !assert.Equal(t, "STORED\r\n", line, "set %s", key) {
					return
				}
				last[key] = gen
				written.Add(int64(len(v)))
				if !check {
					continue
				}
				vals, err := readRetrieval(r)
				if !assert.NoError(t, err) {
					return
				}
				reads.Add(1)
				if len(vals) == 0 {
					misses.Add(1)
					continue
				}
				hits.Add(1)
				g, err := checkPayload(rkey, vals[0].data)
				if !assert.NoError(t, err) {
					return
				}
				want, ok := last[rkey]
				if !assert.True(t, ok, "hit on %s, never written", rkey) || !assert.Equal(t, want, g, "generation of %s", rkey) {
					return
				}
			}
		})
	}
	for rd := range readers {
		nc := e.dial()
		wg.Go(func() {
			r := bufio.NewReader(nc)
			rng := rand.New(rand.NewPCG(uint64(rd), 7))
			for written.Load() < 16*maxBytes {
				var req strings.Builder
				req.WriteString("get")
				keys := map[string]bool{}
				for range 4 {
					k := fmt.Sprintf("w%d:%d", rng.IntN(writers), rng.IntN(keysPer))
					keys[k] = true
					req.WriteString(" " + k)
				}
				req.WriteString("\r\n")
				nc.SetDeadline(time.Now().Add(ioTimeout))
				if _, err := io.WriteString(nc, req.String()); !assert.NoError(t, err) {
					return
				}
				vals, err := readRetrieval(r)
				if !assert.NoError(t, err) {
					return
				}
				reads.Add(4)
				hits.Add(int64(len(vals)))
				for _, v := range vals {
					_, err := checkPayload(v.key, v.data)
					if !assert.NoError(t, err) || !assert.True(t, keys[v.key], "unrequested key %s", v.key) {
						return
					}
				}
			}
		})
	}
	// The canary reads its keys throughout, as a working client would;
	// with eviction a miss is allowed, a wrong value never.
	var lat []time.Duration
	evicted := map[int]bool{}
	for i := 0; i < 200000 && written.Load() < 16*maxBytes; i++ {
		start := time.Now()
		err := cn.get(i % stressCanaryKeys)
		lat = append(lat, time.Since(start))
		if errors.Is(err, errCanaryMiss) {
			evicted[i%stressCanaryKeys] = true
			continue
		}
		require.NoError(t, err)
	}
	wg.Wait()
	heap, rss := mem.growth()
	st := e.c.Stats()
	p99 := percentile(lat, 99)
	t.Logf("memory limit: wrote %s through a %s cache (%d evictions, %d items, %s used); %d reads, %d hits; peak heap +%s, RSS +%s; canary p99 %v over %d gets",
		mb(written.Load()), mb(maxBytes), st.Evictions, st.CurrItems, mb(int64(st.Bytes)), reads.Load(), hits.Load(), mb(heap), mb(rss), p99, len(lat))
	assert.GreaterOrEqual(t, written.Load(), int64(16*maxBytes))
	assert.LessOrEqual(t, st.Bytes, uint64(maxBytes))
	assert.NotZero(t, st.Evictions)
	assert.Less(t, p99, stressP99, "canary p99 latency")
	// Item memory lives outside the Go heap; what grows there is per
	// connection (input buffers up to MaxItemSize) and the clients' own
	// garbage in this process.
	assert.Less(t, heap, int64(64*mib), "heap growth")
	// RSS: the arena (MaxBytes, mapped outside the heap) and its index,
	// plus the heap and its garbage; the race detector's shadow memory
	// doubles what the test touches. (Measured: MaxBytes + 10 MiB, or
	// + 21 MiB with the race detector, when the test runs alone.)
	rssBound := int64(maxBytes + 32*mib)
	if raceEnabled {
		rssBound *= 2
	}
	assert.Less(t, rss, rssBound, "RSS growth")
	// The canary's keys may be evicted here: the write stream sweeps the
	// cache several times a second, faster than the canary rereads each
	// key. What holds is that every one still there is intact.
	for _, i := range cn.readBack() {
		evicted[i] = true
	}
	t.Logf("memory limit: %d of %d canary keys survived, all intact", stressCanaryKeys-len(evicted), stressCanaryKeys)
}

// TestStressConcurrentUpdates runs incr and gets/cas loops from many
// connections on shared keys over the wire: no update is lost.
func TestStressConcurrentUpdates(t *testing.T) {
	e := startStress(t, ServerConfig{Workers: 4}, Config{MaxBytes: 8 * mib, MaxItemSize: 1024})
	cn := e.newCanary()
	c0 := dial(t, e.s)
	c0.roundTrip("set ctr 0 0 1\r\n0\r\nset cas 0 0 1\r\n0\r\n", "STORED\r\nSTORED\r\n")

	t.Run("incr", func(t *testing.T) {
		const conns, per, batch = 16, 400, 40
		results := make([][]uint64, conns)
		var wg sync.WaitGroup
		for i := range conns {
			nc := e.dial()
			wg.Go(func() {
				r := bufio.NewReader(nc)
				req := strings.Repeat("incr ctr 1\r\n", batch)
				for range per / batch {
					nc.SetDeadline(time.Now().Add(ioTimeout))
					if _, err := io.WriteString(nc, req); !assert.NoError(t, err) {
						return
					}
					for range batch {
						line, err := r.ReadString('\n')
						if !assert.NoError(t, err) {
							return
						}
						n, err := strconv.ParseUint(strings.TrimSuffix(line, "\r\n"), 10, 64)
						if !assert.NoError(t, err, "reply %q", line) {
							return
						}
						results[i] = append(results[i], n)
					}
				}
			})
		}
		cn.requireP99("concurrent incr")
		wg.Wait()
		// Every increment returned a distinct value: together exactly 1..N.
		var all []uint64
		for i, rs := range results {
			assert.True(t, slices.IsSorted(rs), "connection %d saw the counter go back", i)
			all = append(all, rs...)
		}
		slices.Sort(all)
		require.Len(t, all, conns*per)
		for i, n := range all {
			require.EqualValues(t, i+1, n, "increment results")
		}
		c0.roundTrip("get ctr\r\n", fmt.Sprintf("VALUE ctr 0 %d\r\n%d\r\nEND\r\n", len(strconv.Itoa(conns*per)), conns*per))
	})

	t.Run("gets/cas", func(t *testing.T) {
		const conns, per = 8, 60
		var wg sync.WaitGroup
		var exists atomic.Int64
		for range conns {
			nc := e.dial()
			wg.Go(func() {
				r := bufio.NewReader(nc)
				for done, tries := 0, 0; done < per; tries++ {
					if !assert.Less(t, tries, 100*per, "cas never succeeds") {
						return
					}
					nc.SetDeadline(time.Now().Add(ioTimeout))
					if _, err := io.WriteString(nc, "gets cas\r\n"); !assert.NoError(t, err) {
						return
					}
					vals, err := readRetrieval(r)
					if !assert.NoError(t, err) || !assert.Len(t, vals, 1) {
						return
					}
					n, err := strconv.Atoi(string(vals[0].data))
					if !assert.NoError(t, err) {
						return
					}
					v := strconv.Itoa(n + 1)
					line, err := roundTripLine(nc, r, fmt.Sprintf("cas cas 0 0 %d %d\r\n%s\r\n", len(v), vals[0].cas, v))
					if !assert.NoError(t, err) {
						return
					}
					switch line {
					case "STORED\r\n":
						done++
					case "EXISTS\r\n":
						exists.Add(1)
					default:
						t.Errorf("cas: %q", line)
						return
					}
				}
			})
		}
		wg.Wait()
		total := strconv.Itoa(conns * per)
		t.Logf("gets/cas: %d updates, %d lost races retried", conns*per, exists.Load())
		c0.roundTrip("get cas\r\n", fmt.Sprintf("VALUE cas 0 %d\r\n%s\r\nEND\r\n", len(total), total))
	})
	cn.verify()
}

// TestStressExpiry reads keys from many connections while a fake clock
// moves past their expiry times: no key is ever returned once its time has
// come.
func TestStressExpiry(t *testing.T) {
	clk := newFakeClock()
	e := startStress(t, ServerConfig{Workers: 4}, Config{MaxBytes: 8 * mib, MaxItemSize: 1024, Now: clk.Now})
	const keys, steps = 100, 12
	t0 := clk.Now().Unix()
	expiry := make([]int64, keys)
	var req strings.Builder
	for i := range keys {
		ttl := int64(i%10 + 1)
		expiry[i] = t0 + ttl
		exp := ttl // relative
		if i%2 == 1 {
			exp = t0 + ttl // absolute
		}
		v := fmt.Sprintf("value-%d", i)
		fmt.Fprintf(&req, "set e:%d 0 %d %d noreply\r\n%s\r\n", i, exp, len(v), v)
	}
	c0 := dial(t, e.s)
	// Negative and past absolute exptimes store items already expired.
	past := strconv.FormatInt(t0-1, 10)
	c0.roundTrip(req.String()+"set gone 0 -1 1\r\nx\r\nset gone2 0 "+past+" 1\r\nx\r\nget gone gone2\r\n", "STORED\r\nSTORED\r\nEND\r\n")

	var wg sync.WaitGroup
	var rounds atomic.Int64
	stop := make(chan struct{})
	for rd := range 8 {
		nc := e.dial()
		wg.Go(func() {
			r := bufio.NewReader(nc)
			rng := rand.New(rand.NewPCG(uint64(rd), 3))
			for range 1 << 20 {
				select {
				case <-stop:
					return
				default:
				}
				i := rng.IntN(keys)
				cmd := "get"
				if rng.IntN(4) == 0 {
					cmd = "gets"
				}
				// The clock only moves forward: if it already reads the
				// expiry time, the server's reading is later still.
				before := clk.Now().Unix()
				nc.SetDeadline(time.Now().Add(ioTimeout))
				if _, err := fmt.Fprintf(nc, "%s e:%d\r\n", cmd, i); !assert.NoError(t, err) {
					return
				}
				vals, err := readRetrieval(r)
				if !assert.NoError(t, err) {
					return
				}
				if len(vals) > 0 {
					if !assert.Less(t, before, expiry[i], "e:%d returned at %d, expired at %d", i, before, expiry[i]) ||
						!assert.Equal(t, fmt.Sprintf("value-%d", i), string(vals[0].data)) {
						return
					}
				}
				rounds.Add(1)
			}
		})
	}
	for range steps {
		// Let the readers make progress at this time, then move on.
		target := rounds.Load() + 200
		eventually(t, "readers to progress", func() bool { return rounds.Load() >= target })
		clk.Advance(time.Second)
	}
	close(stop)
	wg.Wait()
	var all strings.Builder
	all.WriteString("get")
	for i := range keys {
		fmt.Fprintf(&all, " e:%d", i)
	}
	c0.roundTrip(all.String()+"\r\n", "END\r\n")
	t.Logf("expiry: %d reads across %d clock steps", rounds.Load(), steps)
}

// TestStressClose closes and shuts down servers with clients attached in
// every state: the call returns, and no goroutine or fd is left behind.
func TestStressClose(t *testing.T) {
	for _, graceful := range []bool{false, true} {
		t.Run(map[bool]string{false: "Close", true: "Shutdown"}[graceful], func(t *testing.T) {
			c, err := New(Config{MaxBytes: 8 * mib, MaxItemSize: 64 << 10})
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
			err = c.Set([]byte("big"), bytes.Repeat([]byte("b"), 32<<10), 0)
			require.NoError(t, err)
			goroutines, fds := runtime.NumGoroutine(), fdCount(t)
			s, err := c.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 4, MaxOutput: 64 << 10})
			require.NoError(t, err)
			e := &stressEnv{t: t, s: s, c: c, addr: s.Addr().String()}

			var clients []net.Conn
			for i := range 40 {
				tc := dial(t, s)
				tc.roundTrip("version\r\n", "VERSION "+Version+"\r\n")
				clients = append(clients, tc.nc)
				if i%2 == 1 {
					tc.send("set half 0 0 10\r\nabc") // mid-request
				}
			}
			clients = append(clients, e.stall(40, stallPrefix)...)
			var writers []<-chan struct{}
			for range 8 {
				nc, done := e.neverReader("get big\r\n")
				clients = append(clients, nc)
				writers = append(writers, done)
			}
			eventually(t, "never-readers to be blocked", func() bool { return e.statesCount("conn_mwrite") == 8 })
			// Clients keep connecting while the server stops.
			var flood sync.WaitGroup
			flood.Go(func() {
				for range 2000 {
					nc, err := net.DialTimeout("tcp", e.addr, ioTimeout)
					if err != nil {
						return // the listener is gone
					}
					nc.Close()
				}
			})

			closed := make(chan error, 1)
			start := time.Now()
			go func() {
				if graceful {
					// The never-readers never drain: the deadline ends it.
					ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
					defer cancel()
					closed <- s.Shutdown(ctx)
				} else {
					closed <- s.Close()
				}
			}()
			select {
			case err := <-closed:
				if graceful {
					assert.ErrorIs(t, err, context.DeadlineExceeded)
				} else {
					assert.NoError(t, err)
				}
			case <-time.After(ioTimeout):
				t.Fatal("the server did not stop")
			}
			t.Logf("stopped with %d clients attached in %v", len(clients), time.Since(start))
			flood.Wait()
			for i, nc := range clients {
				_, err := readToEOF(nc)
				assert.NoError(t, err, "client %d", i)
				nc.Close()
			}
			for _, w := range writers {
				<-w
			}
			waitGoroutines(t, goroutines)
			eventually(t, "fds to be released", func() bool { return fdCount(t) <= fds })
		})
	}
}

// TestStressBounds checks each limit at its value and one past it.
func TestStressBounds(t *testing.T) {
	t.Run("line length", func(t *testing.T) {
		e := startStress(t, ServerConfig{}, Config{MaxBytes: 8 * mib, MaxItemSize: 1024})
		send := func(nc net.Conn, n int) {
			line := strings.Repeat("a", n)
			for i := 0; i < n; i += 100 { // trickled, in many reads
				nc.SetWriteDeadline(time.Now().Add(ioTimeout))
				_, err := io.WriteString(nc, line[i:min(i+100, n)])
				require.NoError(t, err)
			}
		}
		at := e.dial()
		send(at, maxLineLen)
		line, err := roundTripLine(at, bufio.NewReader(at), "\r\n")
		require.NoError(t, err)
		require.Equal(t, "ERROR\r\n", line)

		past := e.dial()
		send(past, maxLineLen+1)
		got, err := readToEOF(past)
		require.NoError(t, err)
		require.Empty(t, got)
	})

	t.Run("item size", func(t *testing.T) {
		const maxItem = 4096
		e := startStress(t, ServerConfig{}, Config{MaxBytes: 8 * mib, MaxItemSize: maxItem})
		c := dial(t, e.s)
		key := "item"
		fit := maxItem - ItemOverhead - len(key)
		for _, n := range []int{fit, fit + 1} {
			v := strings.Repeat("i", n)
			c.roundTrip("set item 0 0 1\r\nx\r\n", "STORED\r\n")
			// Trickled, so that the block arrives over many reads.
			req := fmt.Sprintf("set item 0 0 %d\r\n%s\r\n", n, v)
			for i := 0; i < len(req); i += 512 {
				c.send(req[i:min(i+512, len(req))])
			}
			if n == fit {
				c.expect("STORED\r\n")
				c.roundTrip("get item\r\n", fmt.Sprintf("VALUE item 0 %d\r\n%s\r\nEND\r\n", n, v))
			} else {
				// Refused, swallowed, and the old value gone.
				c.expect("SERVER_ERROR object too large for cache\r\n")
				c.roundTrip("get item\r\n", "END\r\n")
			}
		}
	})

	t.Run("output backlog", func(t *testing.T) {
		const maxOutput = 64 << 10
		for _, replyLen := range []int{maxOutput, maxOutput + 1} {
			e := startStress(t, ServerConfig{Workers: 1, MaxOutput: maxOutput}, Config{MaxBytes: 8 * mib, MaxItemSize: 128 << 10})
			head := "VALUE k 0 00000\r\n"
			n := replyLen - len(head) - len("\r\nEND\r\n")
			head = fmt.Sprintf("VALUE k 0 %d\r\n", n)
			value := strings.Repeat("o", n)
			reply := head + value + "\r\nEND\r\n"
			require.Len(t, reply, replyLen)
			err := e.c.Set([]byte("k"), []byte(value), 0)
			require.NoError(t, err)

			const gets = 400 // 25 MiB of replies, far more than the kernel buffers
			nc := e.dialSmallRcvBuf()
			wrote := make(chan error, 1)
			go func() {
				nc.SetWriteDeadline(time.Now().Add(ioTimeout))
				_, err := io.WriteString(nc, strings.Repeat("get k\r\n", gets))
				wrote <- err
			}()
			eventually(t, "the reader to be blocked", func() bool { return e.statesCount("conn_mwrite") == 1 })
			// Pending output = replies made - bytes written, read while
			// the hit count holds still so that the two agree.
			hits, pending := 0, -1
			for range 1000 {
				hits = int(e.c.Stats().GetHits)
				written := int(e.s.Stats().BytesWritten)
				if int(e.c.Stats().GetHits) == hits {
					pending = hits*replyLen - written
					break
				}
			}
			t.Logf("reply of %d bytes, MaxOutput %d: %d gets executed while blocked, %d bytes pending", replyLen, maxOutput, hits, pending)
			assert.GreaterOrEqual(t, pending, 0)
			// ServerConfig.MaxOutput: the server stops reading once the
			// backlog is past it, so only one reply may take it beyond.
			assert.LessOrEqual(t, pending, maxOutput+replyLen, "output backlog of a client that does not read")
			assert.Less(t, hits, gets, "backpressure never stopped the reading")
			// Reading resumes the server, and every reply arrives intact.
			r := bufio.NewReader(nc)
			got := make([]byte, replyLen)
			for i := range gets {
				nc.SetReadDeadline(time.Now().Add(ioTimeout))
				_, err := io.ReadFull(r, got)
				require.NoError(t, err, "reply %d", i)
				require.Equal(t, reply, string(got), "reply %d", i)
			}
			require.NoError(t, <-wrote)
		}
	})
}
