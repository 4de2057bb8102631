package emcache

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var metadumpLineRe = regexp.MustCompile(`^key=(\S+) exp=(-1|\d+) la=(\d+) cas=(\d+) fetch=(yes|no) cls=1 size=(\d+)\n$`)

// readMetadump reads a metadump's lines up to its END.
func readMetadump(t *testing.T, r *bufio.Reader) []string {
	t.Helper()
	var lines []string
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err, "after %d lines", len(lines))
		if line == "END\r\n" {
			return lines
		}
		lines = append(lines, line)
	}
}

func TestMetadumpShowsEveryLiveItem(t *testing.T) {
	clk := newFakeClock()
	_, addr := startProtoServer(t, ServerConfig{}, Config{Now: clk.Now})
	conn := protoDial(t, addr)
	protoRoundTrip(t, conn, "set plain 0 0 1\r\nx\r\nset ttl 0 100 2\r\nyy\r\nset gone 0 1 1\r\nz\r\nget plain\r\n"+
		"ms AAEC/w== 1 b\r\nq\r\n") // a binary key: 00 01 02 ff
	clk.Advance(2 * time.Second) // gone expires
	clock := clk.Now()

	_, err := io.WriteString(conn, "lru_crawler metadump all\r\n")
	require.NoError(t, err)
	lines := readMetadump(t, bufio.NewReader(conn))
	require.Len(t, lines, 3)
	got := map[string][]string{}
	for _, l := range lines {
		m := metadumpLineRe.FindStringSubmatch(l)
		require.NotNil(t, m, "line %q", l)
		got[m[1]] = m[2:]
	}
	now := strconv.FormatInt(clock.Unix(), 10)
	set := strconv.FormatInt(clock.Unix()-2, 10)
	require.Contains(t, got, "plain")
	assert.Equal(t, []string{"-1", set, "yes"}, []string{got["plain"][0], got["plain"][1], got["plain"][3]})
	require.Contains(t, got, "ttl")
	assert.Equal(t, strconv.FormatInt(clock.Unix()-2+100, 10), got["ttl"][0])
	assert.Equal(t, "no", got["ttl"][3])
	assert.Contains(t, got, "%00%01%02%FF", "binary keys are percent-encoded: %v", got)
	assert.NotEqual(t, now, got["plain"][1], "la is the last access, not the time of the dump")

	// The connection goes on serving after the dump.
	assert.Equal(t, "VALUE plain 0 1\r\nx\r\nEND\r\n", protoRoundTrip(t, conn, "get plain\r\n"))
}

func TestMetadumpStreamsPastTheOutputBound(t *testing.T) {
	const items = 3000
	s, addr := startProtoServer(t, ServerConfig{MaxOutput: 4096}, Config{MaxBytes: 8 << 20})
	for i := range items {
		err := s.cache.Set(fmt.Appendf(nil, "key:%05d", i), []byte("v"), 0)
		require.NoError(t, err)
	}
	conn := protoDial(t, addr)
	// A request pipelined behind the dump waits for it, then is answered.
	_, err := io.WriteString(conn, "lru_crawler metadump hash\r\nget key:00007\r\n")
	require.NoError(t, err)
	r := bufio.NewReader(conn)
	lines := readMetadump(t, r)
	require.Len(t, lines, items)
	seen := make(map[string]bool, items)
	for _, l := range lines {
		m := metadumpLineRe.FindStringSubmatch(l)
		require.NotNil(t, m, "line %q", l)
		seen[m[1]] = true
	}
	assert.Len(t, seen, items, "every item exactly once")
	reply, err := r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "VALUE key:00007 0 1\r\n", reply)
}

func TestDumpsDisabled(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{DisableDump: true}, Config{})
	conn := protoDial(t, addr)
	assert.Equal(t, "ERROR metadump not allowed\r\nCLIENT_ERROR stats cachedump not allowed\r\n",
		protoRoundTrip(t, conn, "lru_crawler metadump all\r\nstats cachedump 1 0\r\n"))
	assert.Contains(t, protoRoundTrip(t, conn, "stats settings\r\n"), "STAT dump_enabled no\r\n")
}

func TestLRUCrawlerCrawlReclaimsExpired(t *testing.T) {
	clk := newFakeClock()
	s, addr := startProtoServer(t, ServerConfig{}, Config{Now: clk.Now})
	conn := protoDial(t, addr)
	protoRoundTrip(t, conn, "set a 0 1 1\r\nx\r\nset b 0 0 1\r\ny\r\n")
	clk.Advance(2 * time.Second)
	require.Equal(t, "OK\r\n", protoRoundTrip(t, conn, "lru_crawler crawl all\r\n"))
	require.Eventually(t, func() bool { return !s.crawler.running.Load() }, 10*time.Second, time.Millisecond)
	st := s.cache.Stats()
	assert.Equal(t, uint64(1), st.CurrItems)
	assert.Equal(t, uint64(1), st.CrawlerReclaimed)
	assert.Equal(t, uint64(1), s.crawler.starts.Load())
}

func TestSettingsFollowTuningCommands(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{}, Config{})
	conn := protoDial(t, addr)
	settings := protoRoundTrip(t, conn, "stats settings\r\n")
	for _, want := range []string{"lru_crawler yes", "slab_automove 1", "slab_reassign yes", "dump_enabled yes", "lru_maintainer_thread yes"} {
		assert.Contains(t, settings, "STAT "+want+"\r\n")
	}
	// memcached 1.6.18's defaults, which memcached_exporter reads.
	for _, want := range []string{"lru_crawler_sleep 100", "lru_crawler_tocrawl 0", "hot_lru_pct 20", "warm_lru_pct 40",
		"hot_max_factor 0.20", "warm_max_factor 2.00"} {
		assert.Contains(t, settings, "STAT "+want+"\r\n")
	}
	protoRoundTrip(t, conn, "lru_crawler disable\r\nslabs automove 0\r\nlru_crawler sleep 250\r\nlru_crawler tocrawl 1000\r\n"+
		"lru tune 10 30 0.1 1.5\r\nlru tune 50 50 0.3 3\r\n")
	settings = protoRoundTrip(t, conn, "stats settings\r\n")
	for _, want := range []string{"lru_crawler no", "slab_automove 0", "lru_crawler_sleep 250", "lru_crawler_tocrawl 1000",
		"hot_lru_pct 10", "warm_lru_pct 30", "hot_max_factor 0.10", "warm_max_factor 1.50"} {
		assert.Contains(t, settings, "STAT "+want+"\r\n")
	}
}

// memcached counts some commands that store or flush nothing: a flush_all
// it refuses, and a store whose data block is malformed.
func TestStatsCountRefusedCommandsAsMemcached(t *testing.T) {
	for _, tt := range []struct {
		name, req, stat string
		cfg             ServerConfig
	}{
		{"flush_all bad exptime", "flush_all abc\r\n", "cmd_flush", ServerConfig{}},
		{"flush_all disabled", "flush_all\r\n", "cmd_flush", ServerConfig{DisableFlush: true}},
		{"set bad data chunk", "set a 0 0 1\r\nxy\r\n", "cmd_set", ServerConfig{}},
		{"ms bad data chunk", "ms a 1\r\nxy\r\n", "cmd_set", ServerConfig{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startProtoServer(t, tt.cfg, Config{})
			conn := protoDial(t, addr)
			protoRoundTrip(t, conn, tt.req)
			assert.Equal(t, "1", readProtoStats(t, conn, "stats")[tt.stat])
		})
	}
}

func TestStatsDetailCountsByPrefix(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{PrefixDelimiter: '/'}, Config{})
	conn := protoDial(t, addr)
	assert.Equal(t, "END\r\n", protoRoundTrip(t, conn, "stats detail dump\r\n"))
	protoRoundTrip(t, conn, "stats detail on\r\n")
	protoRoundTrip(t, conn, "set a/1 0 0 1\r\nx\r\nadd b/1 0 0 1\r\ny\r\nset nodelim 0 0 1\r\nz\r\n"+
		"get a/1 a/2 b/1 nodelim\r\ngets a/1\r\ndelete a/9\r\ndelete b/1\r\n")
	assert.Equal(t, "PREFIX a get 3 hit 2 set 1 del 1\r\nPREFIX b get 1 hit 1 set 1 del 1\r\nEND\r\n",
		protoRoundTrip(t, conn, "stats detail dump\r\n"))
	assert.Contains(t, protoRoundTrip(t, conn, "stats settings\r\n"), "STAT detail_enabled yes\r\nSTAT")

	protoRoundTrip(t, conn, "stats detail off\r\nget a/1\r\n")
	assert.Contains(t, protoRoundTrip(t, conn, "stats detail dump\r\n"), "PREFIX a get 3 ")
	protoRoundTrip(t, conn, "stats reset\r\n")
	assert.Equal(t, "END\r\n", protoRoundTrip(t, conn, "stats detail dump\r\n"))
}

func TestStatsDetailBoundsPrefixes(t *testing.T) {
	p := prefixStats{delim: ':'}
	p.on.Store(true)
	for i := range maxPrefixes + 10 {
		p.record(fmt.Appendf(nil, "p%d:k", i), prefixSet, false)
	}
	p.record([]byte("p0:k"), prefixSet, false)
	assert.Len(t, p.m, maxPrefixes)
	assert.Equal(t, uint64(2), p.m["p0"].set, "known prefixes still count")
}
