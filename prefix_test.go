package emcache

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// store sets key to value with a TTL of ttl seconds (0: none). Every test
// of prefix deletion, Scan and OnRemove stores through it.
func store(t testing.TB, c *Cache, key, value string, ttl int64) {
	t.Helper()
	err := c.Set([]byte(key), []byte(value), time.Duration(ttl)*time.Second)
	require.NoError(t, err, "set %q", key)
}

// sweepAll runs every shard's reclaimer of deleted prefixes to its end.
func sweepAll(c *Cache) {
	for _, s := range c.shards {
		for done := false; !done; {
			s.mu.Lock()
			s.sweepDead(holdSlots)
			done = len(s.dead) == 0
			s.unlock()
		}
	}
}

func pendingPrefixes(c *Cache) (n int) {
	for _, s := range c.shards {
		s.mu.Lock()
		n = max(n, len(s.dead))
		s.mu.Unlock()
	}
	return n
}

func hits(c *Cache, format string, n int) (found int) {
	for i := range n {
		if _, err := c.Get(fmt.Appendf(nil, format, i)); err == nil {
			found++
		}
	}
	return found
}

func TestDeletePrefix(t *testing.T) {
	const n = 100_000
	c := newTestCache(t, Config{MaxBytes: 64 << 20})
	for i := range n {
		store(t, c, fmt.Sprintf("a:%d", i), "va", 0)
		store(t, c, fmt.Sprintf("b:%d", i), "vb", 0)
	}
	require.NoError(t, c.DeletePrefix([]byte("a:")))
	store(t, c, "a:new", "after", 0)

	assert.Zero(t, hits(c, "a:%d", n), "a:* items stored before the deletion")
	assert.Equal(t, n, hits(c, "b:%d", n), "b:* items")
	it, err := c.Get([]byte("a:new"))
	require.NoError(t, err, "an a: item stored after the deletion")
	assert.Equal(t, "after", string(it.Value))
	st := c.Stats()
	// The background sweep may have reclaimed some before a read met them.
	assert.Equal(t, uint64(n), st.GetFlushed+st.Reclaimed, "deleted items read or reclaimed")
	assert.Equal(t, uint64(1), st.CmdFlushPrefix)

	sweepAll(c)
	assert.Zero(t, pendingPrefixes(c), "deletions retired once swept")
	st = c.Stats()
	assert.Equal(t, uint64(n+1), st.CurrItems)
	assert.Equal(t, indexedBytes(c), st.Bytes)
	assert.Equal(t, n, hits(c, "b:%d", n), "b:* items after the sweep")
	_, err = c.Get([]byte("a:new"))
	assert.NoError(t, err, "a:new after the sweep")
}

func TestDeletePrefixSweepReclaims(t *testing.T) {
	const n = 20_000
	c := newTestCache(t, Config{MaxBytes: 16 << 20})
	for i := range n {
		store(t, c, fmt.Sprintf("a:%d", i), "va", 0)
		store(t, c, fmt.Sprintf("b:%d", i), "vb", 0)
	}
	require.NoError(t, c.DeletePrefix([]byte("a:")))
	// Nothing read them: the sweep alone reclaims the dead items.
	sweepAll(c)
	st := c.Stats()
	assert.Equal(t, uint64(n), st.CurrItems)
	assert.Equal(t, uint64(n), st.CrawlerReclaimed)
	assert.Zero(t, st.GetFlushed)
	assert.Equal(t, n, hits(c, "b:%d", n))
}

// Items read before the deletion are moved, not evicted, when the ring's
// tail reaches them; a moved record is written anew, and must not come
// back to life by landing past the watermark.
func TestDeletePrefixMovedItemsStayDeleted(t *testing.T) {
	const n = 2000
	c := newTestCache(t, Config{MaxBytes: 4 << 20, MaxItemSize: 64 << 10})
	value := strings.Repeat("v", 200)
	for i := range n {
		store(t, c, fmt.Sprintf("a:%d", i), value, 0)
	}
	for range 3 {
		require.Equal(t, n, hits(c, "a:%d", n), "every a: item read")
	}
	require.NoError(t, c.DeletePrefix([]byte("a:")))
	// Churn past the arena's size with items read once, which the small
	// ring promotes, so that the main ring's tail reaches every a: record
	// (read ones would be moved on a few times before being evicted).
	for i := range 30_000 {
		key := fmt.Sprintf("b:%d", i)
		store(t, c, key, value, 0)
		_, err := c.Get([]byte(key))
		require.NoError(t, err)
	}
	assert.Zero(t, hits(c, "a:%d", n))
	for _, s := range c.shards {
		s.mu.Lock()
		s.sweepDead(0)
		assert.Empty(t, s.dead, "the tail passed every deleted record: the sweep has none to visit")
		s.mu.Unlock()
	}
}

func TestDeletePrefixSurvivesResize(t *testing.T) {
	const n = 5000
	c := newTestCache(t, Config{MaxBytes: 32 << 20})
	for i := range n {
		store(t, c, fmt.Sprintf("a:%d", i), "va", 0)
		store(t, c, fmt.Sprintf("b:%d", i), "vb", 0)
	}
	require.NoError(t, c.DeletePrefix([]byte("a:")))
	require.NoError(t, c.SetMaxBytes(48<<20))
	assert.Zero(t, hits(c, "a:%d", n))
	assert.Equal(t, n, hits(c, "b:%d", n))
	assert.Zero(t, pendingPrefixes(c), "resizing moved every live record past the watermarks")
	assert.Equal(t, uint64(n), c.Stats().CurrItems)
}

func TestDeletePrefixBounded(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 8 << 20})
	const prefixes = 3 * maxDeadPrefixes
	for p := range prefixes {
		for i := range 20 {
			store(t, c, fmt.Sprintf("p%d:%d", p, i), "v", 0)
		}
	}
	store(t, c, "keep", "v", 0)
	for p := range prefixes {
		require.NoError(t, c.DeletePrefix(fmt.Appendf(nil, "p%d:", p)))
		require.LessOrEqual(t, pendingPrefixes(c), maxDeadPrefixes)
	}
	for p := range prefixes {
		assert.Zero(t, hits(c, fmt.Sprintf("p%d:%%d", p), 20), "prefix p%d:", p)
	}
	_, err := c.Get([]byte("keep"))
	assert.NoError(t, err)
}

func TestDeletePrefixMerges(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 8 << 20})
	store(t, c, "user:1:a", "v", 0)
	store(t, c, "user:2:a", "v", 0)
	store(t, c, "other", "v", 0)
	require.NoError(t, c.DeletePrefix([]byte("user:1:")))
	require.NoError(t, c.DeletePrefix([]byte("user:2:")))
	require.Equal(t, 2, pendingPrefixes(c))
	require.NoError(t, c.DeletePrefix([]byte("user:")))
	assert.Equal(t, 1, pendingPrefixes(c), "user: covers the two older deletions")
	assert.Zero(t, hits(c, "user:%d:a", 3))
	require.NoError(t, c.DeletePrefix(nil))
	assert.Equal(t, 1, pendingPrefixes(c), "the empty prefix covers every deletion")
	_, err := c.Get([]byte("other"))
	assert.ErrorIs(t, err, ErrNotFound, "the empty prefix deletes everything")
}

func TestDeletePrefixErrors(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 8 << 20})
	assert.ErrorIs(t, c.DeletePrefix(make([]byte, MaxKeyLen+1)), ErrKeyInvalid)
	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.DeletePrefix([]byte("a")), ErrClosed)
}

func TestFlushPrefixOverTCP(t *testing.T) {
	const n = 100_000
	c := newTestCache(t, Config{MaxBytes: 64 << 20})
	srv, err := c.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	cl := dial(t, srv)
	const batch = 1000
	var req strings.Builder
	for i := 0; i < n; i += batch {
		req.Reset()
		for j := i; j < i+batch; j++ {
			fmt.Fprintf(&req, "set a:%d 0 0 2 noreply\r\nva\r\nset b:%d 0 0 2 noreply\r\nvb\r\n", j, j)
		}
		cl.send(req.String())
	}
	cl.roundTrip("flush_prefix a:\r\n", "OK\r\n")
	cl.roundTrip("set a:new 0 0 5\r\nafter\r\n", "STORED\r\n")

	for i := 0; i < n; i += batch {
		req.Reset()
		var want strings.Builder
		for j := i; j < i+batch; j++ {
			fmt.Fprintf(&req, "get a:%d\r\nget b:%d\r\n", j, j)
			fmt.Fprintf(&want, "END\r\nVALUE b:%d 0 2\r\nvb\r\nEND\r\n", j)
		}
		cl.send(req.String())
		cl.expect(want.String())
	}
	cl.roundTrip("get a:new\r\n", "VALUE a:new 0 5\r\nafter\r\nEND\r\n")
	st := c.Stats()
	assert.Equal(t, uint64(1), st.CmdFlushPrefix)
	assert.Equal(t, uint64(n), st.GetFlushed+st.Reclaimed, "deleted items read or reclaimed")
}

func TestFlushPrefixCommand(t *testing.T) {
	long := strings.Repeat("k", MaxKeyLen+1)
	tests := []struct {
		name, req, want string
		cfg             ServerConfig
		gone, counted   bool
	}{
		{"ok", "flush_prefix a:\r\n", "OK\r\n", ServerConfig{}, true, true},
		{"noreply", "flush_prefix a: noreply\r\n", "", ServerConfig{}, true, true},
		{"lone noreply is the prefix", "flush_prefix noreply\r\n", "OK\r\n", ServerConfig{}, false, true},
		{"no prefix", "flush_prefix\r\n", "ERROR\r\n", ServerConfig{}, false, false},
		{"extra word", "flush_prefix a: b\r\n", "ERROR\r\n", ServerConfig{}, false, false},
		{"too many words", "flush_prefix a: b noreply\r\n", "ERROR\r\n", ServerConfig{}, false, false},
		{"prefix too long", "flush_prefix " + long + "\r\n", "CLIENT_ERROR bad command line format\r\n", ServerConfig{}, false, true},
		{"disabled", "flush_prefix a:\r\n", "CLIENT_ERROR flush_prefix not allowed\r\n", ServerConfig{DisableFlush: true}, false, true},
		{"disabled noreply", "flush_prefix a: noreply\r\n", "", ServerConfig{DisableFlush: true}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, srv := startServer(t, tt.cfg)
			store(t, c, "a:1", "v", 0)
			cl := dial(t, srv)
			// The get after the command shows what it did and that the
			// connection still parses commands.
			want := tt.want + "VALUE a:1 0 1\r\nv\r\nEND\r\n"
			if tt.gone {
				want = tt.want + "END\r\n"
			}
			cl.roundTrip(tt.req+"get a:1\r\n", want)
			count := "0"
			if tt.counted {
				count = "1"
			}
			cl.send("stats\r\n")
			assert.Contains(t, statsReply(t, cl), "STAT cmd_flush_prefix "+count+"\r\n")
		})
	}
}

// statsReply reads a stats reply through its END line.
func statsReply(t *testing.T, cl *testClient) string {
	t.Helper()
	var b strings.Builder
	for {
		line, err := cl.r.ReadString('\n')
		require.NoError(t, err)
		b.WriteString(line)
		if line == "END\r\n" {
			return b.String()
		}
	}
}
