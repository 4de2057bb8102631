package emcache

import (
	"bufio"
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

// startWatcher sends watch with args on a new connection and returns a
// reader of its log lines once the server said OK.
func startWatcher(t *testing.T, addr, args string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn := protoDial(t, addr)
	_, err := io.WriteString(conn, "watch"+args+"\r\n")
	require.NoError(t, err)
	r := bufio.NewReader(conn)
	ok, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "OK\r\n", ok)
	return conn, r
}

// nextLine reads the next log line that matches kind (type=kind), skipping
// others.
func nextLine(t *testing.T, r *bufio.Reader, kind string) string {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		if strings.Contains(line, " type="+kind+" ") {
			return line
		}
	}
}

const watchPrefix = `^ts=\d+\.\d+ gid=\d+ `

func TestWatchFetchersAndMutations(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{}, Config{})
	_, fetches := startWatcher(t, addr, "")
	_, muts := startWatcher(t, addr, " mutations")
	cl := protoDial(t, addr)
	protoRoundTrip(t, cl, "set foo 0 100 3\r\nbar\r\nget foo nope\r\nadd foo 0 0 1\r\nx\r\nms b%20c 2 T0\r\nhi\r\n")

	// A store looks the key up first, and memcached logs that lookup.
	assert.Regexp(t, watchPrefix+`type=item_get key=foo status=not_found clsid=1 cfd=\d+ size=0\n$`, nextLine(t, fetches, "item_get"))
	assert.Regexp(t, watchPrefix+`type=item_get key=foo status=found clsid=1 cfd=\d+ size=3\n$`, nextLine(t, fetches, "item_get"))
	assert.Regexp(t, watchPrefix+`type=item_get key=nope status=not_found clsid=1 cfd=\d+ size=0\n$`, nextLine(t, fetches, "item_get"))
	assert.Regexp(t, watchPrefix+`type=item_store key=foo status=stored cmd=set ttl=100 clsid=1 cfd=\d+ size=3\n$`, nextLine(t, muts, "item_store"))
	assert.Regexp(t, watchPrefix+`type=item_store key=foo status=not_stored cmd=add ttl=0 clsid=1 cfd=\d+ size=1\n$`, nextLine(t, muts, "item_store"))
	assert.Regexp(t, watchPrefix+`type=item_store key=b%2520c status=stored cmd=set ttl=0 clsid=1 cfd=\d+ size=2\n$`, nextLine(t, muts, "item_store"))
}

func TestWatchConnEventsAndRawCmds(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{}, Config{})
	_, r := startWatcher(t, addr, " connevents rawcmds")
	cl := protoDial(t, addr)
	protoRoundTrip(t, cl, "get k\r\n")
	require.NoError(t, cl.Close())

	assert.Regexp(t, watchPrefix+`type=conn_new rip=127\.0\.0\.1 rport=\d+ transport=tcp cfd=\d+\n$`, nextLine(t, r, "conn_new"))
	raw := regexp.MustCompile(watchPrefix + `<\d+ get k\n$`)
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		if raw.MatchString(line) {
			break
		}
	}
	assert.Regexp(t, watchPrefix+`type=conn_close rip=127\.0\.0\.1 rport=\d+ transport=tcp reason=normal cfd=\d+\n$`, nextLine(t, r, "conn_close"))
}

func TestWatchEvictions(t *testing.T) {
	s, addr := startProtoServer(t, ServerConfig{}, Config{MaxBytes: 2 * MinMaxItemSize, MaxItemSize: MinMaxItemSize})
	_, r := startWatcher(t, addr, " evictions")
	value := make([]byte, 300)
	for i := 0; s.cache.Stats().Evictions == 0; i++ {
		require.Less(t, i, 1000, "nothing was evicted")
		err := s.cache.Set(fmt.Appendf(nil, "k%d", i), value, 0)
		require.NoError(t, err)
	}
	assert.Regexp(t, watchPrefix+`type=eviction key=k\d+ fetch=no ttl=-1 la=\d+ clsid=1 size=300\n$`, nextLine(t, r, "eviction"))
}

func TestWatchRefusals(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{}, Config{})
	conn := protoDial(t, addr)
	assert.Equal(t, "ERROR\r\n", protoRoundTrip(t, conn, "watch nonsense\r\n"))
	assert.Equal(t, "MN\r\nERROR cannot pipeline other commands before watch\r\n", protoRoundTrip(t, conn, "mn\r\nwatch\r\n"))
	for range maxWatchers {
		startWatcher(t, addr, "")
	}
	assert.Equal(t, "WATCHER_TOO_MANY log watcher limit reached\r\n", protoRoundTrip(t, conn, "watch\r\n"))
	assert.Equal(t, strconv.Itoa(maxWatchers), readProtoStats(t, conn, "stats")["log_watchers"])

	_, addr = startProtoServer(t, ServerConfig{DisableWatch: true}, Config{})
	assert.Equal(t, "CLIENT_ERROR watch commands not allowed\r\n", protoRoundTrip(t, protoDial(t, addr), "watch\r\n"))
}

// A watcher that does not keep up loses lines, never memory: what does not
// fit its buffer is counted and announced as skipped=N once room frees.
func TestWatchSkipsWhatDoesNotFit(t *testing.T) {
	var h watchHub
	h.init(1024)
	none := fdTransport(-1)
	require.True(t, h.add(&none, logFetchers, nil, func() {}))
	w := h.watchers[0]
	line := func(b []byte) []byte { return append(b, "type=item_get key=x"...) }
	for range 100 {
		h.emit(logFetchers, line)
	}
	assert.LessOrEqual(t, len(w.buf), 1024)
	require.NotZero(t, w.skipped)
	skipped := w.skipped
	w.buf = w.buf[:0] // the writer sent everything
	h.emit(logFetchers, line)
	assert.Regexp(t, fmt.Sprintf(`^skipped=%d\n`+strings.TrimPrefix(watchPrefix, "^")+`type=item_get key=x\n$`, skipped), string(w.buf))
	assert.Zero(t, w.skipped)
	h.emit(logMutations, line)
	assert.Equal(t, 1, strings.Count(string(w.buf), "\n")-1, "a line of a kind the watcher did not ask for")
}

func TestWatchersEndWithTheServer(t *testing.T) {
	s, addr := startProtoServer(t, ServerConfig{}, Config{})
	conn, r := startWatcher(t, addr, "")
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(protoIOTimeout)))
	require.NoError(t, s.Close())
	_, err := r.ReadString('\n')
	assert.ErrorIs(t, err, io.EOF)
	assert.Zero(t, s.Stats().CurrConnections)
}
