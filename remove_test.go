package emcache

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// removals records what Config.OnRemove hears.
type removals struct {
	mu     sync.Mutex
	events []removal
}

type removal struct {
	key   string
	cause RemoveCause
}

func (r *removals) hear(key []byte, cause RemoveCause) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, removal{string(key), cause})
}

func (r *removals) take() []removal {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

func (r *removals) count(cause RemoveCause) (n uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.cause == cause {
			n++
		}
	}
	return n
}

func TestOnRemoveCauses(t *testing.T) {
	var heard removals
	c, clk := newClockedCache(t, Config{MaxBytes: 8 << 20, OnRemove: heard.hear})
	one := func(key string, cause RemoveCause) []removal { return []removal{{key, cause}} }

	store(t, c, "k", "1", 0)
	assert.Empty(t, heard.take(), "a new item replaces nothing")
	store(t, c, "k", "2", 0)
	assert.Equal(t, one("k", RemoveReplaced), heard.take(), "set over an item")
	err := c.Append([]byte("k"), []byte("3"))
	require.NoError(t, err)
	assert.Equal(t, one("k", RemoveReplaced), heard.take(), "append")
	err = c.Replace([]byte("k"), []byte("4"), 0)
	require.NoError(t, err)
	assert.Equal(t, one("k", RemoveReplaced), heard.take(), "replace")
	err = c.Set([]byte("k"), make([]byte, c.MaxItemSize()), 0)
	require.ErrorIs(t, err, ErrTooLarge)
	assert.Equal(t, one("k", RemoveReplaced), heard.take(), "a set too large drops the old value")

	store(t, c, "n", "7", 0)
	_, err = c.Incr([]byte("n"), 100)
	require.NoError(t, err)
	require.NoError(t, c.Touch([]byte("n"), 100*time.Second))
	assert.Empty(t, heard.take(), "arithmetic and touch change an item, not remove it")
	require.NoError(t, c.Delete([]byte("n")))
	assert.Equal(t, one("n", RemoveDeleted), heard.take(), "delete")
	assert.ErrorIs(t, c.Delete([]byte("n")), ErrNotFound)
	assert.Empty(t, heard.take(), "a delete that misses")

	store(t, c, "e", "v", 10)
	clk.Advance(11 * time.Second)
	_, err = c.Get([]byte("e"))
	require.ErrorIs(t, err, ErrNotFound)
	assert.Equal(t, one("e", RemoveExpired), heard.take(), "a read that finds it expired")
	store(t, c, "e2", "v", 10)
	clk.Advance(11 * time.Second)
	c.reclaimAll()
	assert.Equal(t, one("e2", RemoveExpired), heard.take(), "the reclaimer")

	store(t, c, "p:1", "v", 0)
	store(t, c, "q:1", "v", 0)
	require.NoError(t, c.DeletePrefix([]byte("p:")))
	assert.Empty(t, heard.take(), "a prefix deletion reports items as they are reclaimed")
	_, err = c.Get([]byte("p:1"))
	require.ErrorIs(t, err, ErrNotFound)
	assert.Equal(t, one("p:1", RemoveFlushed), heard.take(), "a read that meets a deleted item")
	store(t, c, "p:2", "v", 0)
	require.NoError(t, c.DeletePrefix([]byte("p:")))
	sweepAll(c)
	assert.Equal(t, one("p:2", RemoveFlushed), heard.take(), "the sweep")

	store(t, c, "x", "v", 5)
	clk.Advance(6 * time.Second)
	c.FlushAll(0)
	assert.ElementsMatch(t, []removal{{"q:1", RemoveFlushed}, {"x", RemoveExpired}}, heard.take(), "flush_all")
}

func TestOnRemoveEvictionsMatchStats(t *testing.T) {
	var heard removals
	c := newTestCache(t, Config{MaxBytes: 4 << 20, MaxItemSize: 64 << 10, OnRemove: heard.hear})
	value := strings.Repeat("v", 300)
	for i := range 40_000 {
		store(t, c, fmt.Sprintf("k%d", i), value, 0)
		if i%3 == 0 { // some read, so that moves happen too
			_, _ = c.Get(fmt.Appendf(nil, "k%d", i))
		}
	}
	st := c.Stats()
	require.NotZero(t, st.Evictions)
	assert.Equal(t, st.Evictions, heard.count(RemoveEvicted))
	assert.Equal(t, 40_000-int(st.CurrItems), len(heard.take()), "every item that left was heard of")
}

func TestOnRemoveOverTCP(t *testing.T) {
	var heard removals
	c := newTestCache(t, Config{MaxBytes: 4 << 20, MaxItemSize: 64 << 10, OnRemove: heard.hear})
	srv, err := c.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	cl := dial(t, srv)

	cl.roundTrip("set k 0 0 1\r\na\r\nset k 0 0 1\r\nb\r\ndelete k\r\n", "STORED\r\nSTORED\r\nDELETED\r\n")
	assert.Equal(t, []removal{{"k", RemoveReplaced}, {"k", RemoveDeleted}}, heard.take())
	cl.roundTrip("ms m 1\r\na\r\nms m 1\r\nb\r\n", "HD\r\nHD\r\n")
	assert.Equal(t, []removal{{"m", RemoveReplaced}}, heard.take(), "meta set")

	value := strings.Repeat("v", 300)
	var req strings.Builder
	for i := range 20_000 {
		fmt.Fprintf(&req, "set k%d 0 0 %d noreply\r\n%s\r\n", i, len(value), value)
	}
	cl.send(req.String())
	cl.send("stats\r\n")
	m := regexp.MustCompile(`STAT evictions (\d+)\r\n`).FindStringSubmatch(statsReply(t, cl))
	require.NotNil(t, m)
	evictions, err := strconv.ParseUint(m[1], 10, 64)
	require.NoError(t, err)
	require.NotZero(t, evictions)
	assert.Equal(t, evictions, heard.count(RemoveEvicted), "stats evictions")
}

// The callback runs after the shard's lock is released: it may read,
// store and delete, prefixes included.
func TestOnRemoveCallbackUsesCache(t *testing.T) {
	var c *Cache
	var heard removals
	c = newTestCache(t, Config{MaxBytes: 8 << 20, OnRemove: func(key []byte, cause RemoveCause) {
		heard.hear(key, cause)
		if cause != RemoveDeleted {
			return
		}
		_, err := c.Get(key)
		assert.ErrorIs(t, err, ErrNotFound, "the removed item is gone")
		err = c.Set(append([]byte("audit:"), key...), []byte("deleted"), 0)
		assert.NoError(t, err)
		assert.NoError(t, c.DeletePrefix([]byte("tmp:")))
	}})
	store(t, c, "k", "v", 0)
	store(t, c, "tmp:1", "v", 0)
	require.NoError(t, c.Delete([]byte("k")))
	it, err := c.Get([]byte("audit:k"))
	require.NoError(t, err)
	assert.Equal(t, "deleted", string(it.Value))
	_, err = c.Get([]byte("tmp:1"))
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Equal(t, []removal{{"k", RemoveDeleted}, {"tmp:1", RemoveFlushed}}, heard.take())
}

func TestRemoveCauseString(t *testing.T) {
	for cause, want := range map[RemoveCause]string{
		RemoveEvicted: "evicted", RemoveExpired: "expired", RemoveDeleted: "deleted",
		RemoveReplaced: "replaced", RemoveFlushed: "flushed", 0: "unknown", 99: "unknown",
	} {
		assert.Equal(t, want, cause.String())
	}
}
