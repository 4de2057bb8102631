package emcache

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scrape is a parsed exposition: each sample's value by its series
// ("name{labels}" as written), and each family's type.
type scrape struct {
	text   string
	values map[string]float64
	types  map[string]string
}

func parseScrape(t *testing.T, text string) scrape {
	t.Helper()
	sc := scrape{text: text, values: map[string]float64{}, types: map[string]string{}}
	for line := range strings.SplitSeq(strings.TrimSuffix(text, "\n"), "\n") {
		if typ, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, kind, _ := strings.Cut(typ, " ")
			require.NotContains(t, sc.types, name, "family %s appears twice", name)
			sc.types[name] = kind
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, line)
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		sc.values[line[:i]] = v
	}
	return sc
}

func scrapeHandler(t *testing.T, s *Server) scrape {
	t.Helper()
	rr := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rr.Code)
	require.Equal(t, metricsContentType, rr.Header().Get("Content-Type"))
	return parseScrape(t, rr.Body.String())
}

func TestMetricsAfterTraffic(t *testing.T) {
	s, addr := startProtoServer(t, ServerConfig{Workers: 2}, Config{})
	a, b := protoDial(t, addr), protoDial(t, addr)
	protoRoundTrip(t, a, "set key-one 0 0 1\r\nx\r\nset key-two 0 0 1\r\ny\r\nset key-three 0 0 1\r\nz\r\n"+
		"get key-one\r\nget key-two\r\nincr nope 1\r\n")
	// A worker files a batch's latency after sending its replies: once
	// the next round trip on the same connection is answered, the first
	// is filed.
	protoRoundTrip(t, a, "")
	protoRoundTrip(t, b, "")
	protoRoundTrip(t, b, "")
	sc := scrapeHandler(t, s)

	for _, tt := range []struct {
		series string
		want   float64
	}{
		{`memcached_up`, 1},
		{`memcached_version{version="` + Version + `"}`, 1},
		{`memcached_commands_total{command="set",status="hit"}`, 3},
		{`memcached_commands_total{command="get",status="hit"}`, 2},
		{`memcached_commands_total{command="get",status="miss"}`, 0},
		{`memcached_commands_total{command="incr",status="miss"}`, 1},
		{`memcached_current_items`, 3},
		{`memcached_items_total`, 3},
		{`memcached_current_connections`, 2},
		{`memcached_max_connections`, 1024},
		{`memcached_lru_crawler_enabled`, 1},
		{`memcached_lru_crawler_sleep`, 100},
		{`memcached_lru_crawler_hot_max_factor`, 0.2},
		{`memcached_slab_current_items{slab="1"}`, 3},
		{`memcached_slab_commands_total{command="set",slab="1",status="hit"}`, 3},
		{`memcached_slab_commands_total{command="get",slab="1",status="hit"}`, 2},
		{`memcached_slab_lru_hits_total{lru="cold",slab="1"}`, 2},
		{`emcache_command_duration_seconds_count{command="get"}`, 2},
		{`emcache_command_duration_seconds_bucket{command="get",le="+Inf"}`, 2},
		{`emcache_command_duration_seconds_count{command="set"}`, 3},
		{`emcache_worker_connections{worker="0"}`, 1},
		{`emcache_worker_connections{worker="1"}`, 1},
	} {
		t.Run(tt.series, func(t *testing.T) {
			got, ok := sc.values[tt.series]
			require.True(t, ok, "no sample %s", tt.series)
			assert.Equal(t, tt.want, got)
		})
	}

	for _, tt := range []struct{ family, typ string }{
		{"memcached_up", gauge},
		{"memcached_commands_total", counter},
		{"memcached_uptime_seconds", counter},
		{"memcached_slab_mem_requested_bytes", counter}, // as the exporter types it
		{"memcached_slab_chunk_size_bytes", gauge},
		{"emcache_command_duration_seconds", histogram},
		{"emcache_worker_connections", gauge},
		{"emcache_worker_requests_total", counter},
		{"emcache_memory_bytes", gauge},
	} {
		assert.Equal(t, tt.typ, sc.types[tt.family], tt.family)
	}

	// Connection a's first batch (six requests and its version) and b's
	// first version are filed; the last version on each may not be yet.
	requests := sc.values[`emcache_worker_requests_total{worker="0"}`] + sc.values[`emcache_worker_requests_total{worker="1"}`]
	assert.GreaterOrEqual(t, requests, 8.0)
	assert.LessOrEqual(t, requests, 10.0)

	// Buckets are cumulative and end at the count.
	prev := 0.0
	for _, le := range latencyBounds {
		n := sc.values[`emcache_command_duration_seconds_bucket{command="set",le="`+strconv.FormatFloat(le.Seconds(), 'g', -1, 64)+`"}`]
		assert.GreaterOrEqual(t, n, prev, "le=%v", le)
		prev = n
	}
	assert.LessOrEqual(t, prev, 3.0)
	assert.Positive(t, sc.values[`emcache_command_duration_seconds_sum{command="set"}`])

	for _, area := range []string{"arena", "index", "go_heap"} {
		assert.Positive(t, sc.values[`emcache_memory_bytes{area="`+area+`"}`], area)
	}
	assert.Equal(t, float64(s.cache.MaxBytes()), sc.values[`emcache_memory_bytes{area="arena"}`])
	assert.NotContains(t, sc.text, "key-", "keys never become labels")
}

// The exporter reads the crawler's settings only while it is enabled, and
// shows no per-class family for an empty cache.
func TestMetricsFollowSettings(t *testing.T) {
	s, addr := startProtoServer(t, ServerConfig{NoLRUCrawler: true}, Config{})
	conn := protoDial(t, addr)
	sc := scrapeHandler(t, s)
	assert.NotContains(t, sc.types, "memcached_lru_crawler_sleep")
	assert.NotContains(t, sc.types, "memcached_slab_current_items")
	assert.Contains(t, sc.types, "memcached_lru_crawler_starts_total") // from stats, not settings

	protoRoundTrip(t, conn, "lru_crawler enable\r\nlru tune 10 30 0.5 3\r\nlru_crawler tocrawl 50\r\n")
	sc = scrapeHandler(t, s)
	for series, want := range map[string]float64{
		"memcached_lru_crawler_enabled":         1,
		"memcached_lru_crawler_to_crawl":        50,
		"memcached_lru_crawler_hot_percent":     10,
		"memcached_lru_crawler_warm_percent":    30,
		"memcached_lru_crawler_hot_max_factor":  0.5,
		"memcached_lru_crawler_warm_max_factor": 3,
	} {
		assert.Equal(t, want, sc.values[series], series)
	}
}

// A value larger than the shared read buffer is read into a pooled buffer,
// which goes back to the pool once the set is complete.
func TestMetricsCountPooledBuffers(t *testing.T) {
	s, addr := startProtoServer(t, ServerConfig{Workers: 1}, Config{MaxItemSize: 1 << 20})
	conn := protoDial(t, addr)
	assert.Zero(t, scrapeHandler(t, s).values[`emcache_memory_bytes{area="buffers"}`])
	const n = 3 * readBufSize
	require.Equal(t, "STORED\r\n", protoRoundTrip(t, conn, "set big 0 0 "+strconv.Itoa(n)+"\r\n"+strings.Repeat("v", n)+"\r\n"))
	assert.GreaterOrEqual(t, scrapeHandler(t, s).values[`emcache_memory_bytes{area="buffers"}`], float64(n))
}

func TestPooledBytesFollowPools(t *testing.T) {
	s := &Server{pooled: make([]pooledBytes, 1)}
	w := &worker{s: s}
	held := func() uint64 { return uint64(len(w.free)*readBufSize + w.bigBytes) }
	var out [][]byte
	for _, size := range []int{100, readBufSize, 2 * readBufSize, maxBigPool, 100, 3 * readBufSize} {
		out = append(out, w.takeBuf(size))
		assert.Equal(t, held(), s.pooledBufBytes(), "take %d", size)
	}
	for _, b := range out {
		w.putBuf(b)
		assert.Equal(t, held(), s.pooledBufBytes(), "put %d", cap(b))
	}
	for _, size := range []int{readBufSize, 2 * readBufSize} {
		w.takeBuf(size)
		assert.Equal(t, held(), s.pooledBufBytes(), "take %d again", size)
	}
}

func TestMetricsAddr(t *testing.T) {
	c := newProtoCache(t, Config{})
	s, err := c.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}, MetricsAddr: "127.0.0.1:0"})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	base := "http://" + s.MetricsAddr().String()

	for _, tt := range []struct {
		path string
		code int
		body string
	}{
		{"/metrics", http.StatusOK, "\nmemcached_up 1\n"},
		{"/", http.StatusNotFound, ""},
		{"/metricsx", http.StatusNotFound, ""},
	} {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(base + tt.path)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tt.code, resp.StatusCode)
			assert.Contains(t, string(body), tt.body)
		})
	}

	conn := protoDial(t, s.Addr().String())
	assert.Contains(t, protoRoundTrip(t, conn, "stats settings\r\n"), "STAT metrics_addr "+s.MetricsAddr().String()+"\r\n")

	require.NoError(t, s.Close())
	_, err = net.DialTimeout("tcp", s.MetricsAddr().String(), time.Second)
	require.Error(t, err, "the endpoint stops with the server")
	assert.Equal(t, map[string]float64{"memcached_up": 0}, scrapeHandler(t, s).values, "a stopped server is down")
}

func TestMetricsAddrOffByDefault(t *testing.T) {
	s, addr := startProtoServer(t, ServerConfig{}, Config{})
	assert.Nil(t, s.MetricsAddr())
	assert.Contains(t, protoRoundTrip(t, protoDial(t, addr), "stats settings\r\n"), "STAT metrics_addr NULL\r\n")
}

func TestMetricsAddrErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { taken.Close() })

	for _, tt := range []struct {
		name, addr, msg string
	}{
		{"no port", "127.0.0.1", "is not host:port"},
		{"bad port", "127.0.0.1:http-nope", "unknown port"},
		{"in use", taken.Addr().String(), "address already in use"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newProtoCache(t, Config{})
			// The memcached port too, to show Serve releases it on failure.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			port := ln.Addr().String()
			ln.Close()
			_, err = c.Serve(ServerConfig{Addrs: []string{port}, MetricsAddr: tt.addr})
			require.ErrorIs(t, err, ErrMetricsAddr)
			assert.ErrorContains(t, err, tt.msg)
			s, err := c.Serve(ServerConfig{Addrs: []string{port}})
			require.NoError(t, err, "the failed Serve left its listener open")
			require.NoError(t, s.Close())
		})
	}
}
