package bench

import (
	"fmt"
	"sync"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/emcache/emcache"
)

// newClient starts an in-process server on a kernel-chosen loopback port and
// returns a gomemcache client for it.
func newClient(t *testing.T) *memcache.Client {
	t.Helper()
	c, err := emcache.New(emcache.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	s, err := c.Serve(emcache.ServerConfig{Addrs: []string{"127.0.0.1:0"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	mc := memcache.New(s.Addr().String())
	t.Cleanup(func() { _ = mc.Close() })
	return mc
}

func getValue(t *testing.T, mc *memcache.Client, key string) string {
	t.Helper()
	it, err := mc.Get(key)
	require.NoError(t, err, key)
	return string(it.Value)
}

func TestGomemcachePing(t *testing.T) {
	require.NoError(t, newClient(t).Ping())
}

func TestGomemcacheSetGet(t *testing.T) {
	mc := newClient(t)
	_, err := mc.Get("missing")
	require.ErrorIs(t, err, memcache.ErrCacheMiss)

	require.NoError(t, mc.Set(&memcache.Item{Key: "k", Value: []byte("hello"), Flags: 42}))
	it, err := mc.Get("k")
	require.NoError(t, err)
	assert.Equal(t, "k", it.Key)
	assert.Equal(t, "hello", string(it.Value))
	assert.Equal(t, uint32(42), it.Flags)

	require.NoError(t, mc.Set(&memcache.Item{Key: "empty", Value: []byte{}}))
	assert.Equal(t, "", getValue(t, mc, "empty"))

	binary := []byte("a\r\nb\x00c END\r\n")
	require.NoError(t, mc.Set(&memcache.Item{Key: "bin", Value: binary}))
	assert.Equal(t, string(binary), getValue(t, mc, "bin"))

	// A negative expiration stores an already expired item.
	require.NoError(t, mc.Set(&memcache.Item{Key: "gone", Value: []byte("x"), Expiration: -1}))
	_, err = mc.Get("gone")
	require.ErrorIs(t, err, memcache.ErrCacheMiss)
}

func TestGomemcacheTooLarge(t *testing.T) {
	mc := newClient(t)
	require.NoError(t, mc.Set(&memcache.Item{Key: "big", Value: []byte("old")}))
	err := mc.Set(&memcache.Item{Key: "big", Value: make([]byte, emcache.DefaultMaxItemSize+1)})
	require.Error(t, err)
	// memcached drops the old value when a set of the key fails for size.
	_, err = mc.Get("big")
	require.ErrorIs(t, err, memcache.ErrCacheMiss)
	// The connection is still in sync after the rejected data block.
	require.NoError(t, mc.Set(&memcache.Item{Key: "after", Value: []byte("ok")}))
	assert.Equal(t, "ok", getValue(t, mc, "after"))
}

func TestGomemcacheGetMulti(t *testing.T) {
	mc := newClient(t)
	for i := range 20 {
		require.NoError(t, mc.Set(&memcache.Item{Key: fmt.Sprint("m", i), Value: []byte(fmt.Sprint("v", i)), Flags: uint32(i)}))
	}
	keys := []string{"m0", "m7", "missing", "m19"}
	got, err := mc.GetMulti(keys)
	require.NoError(t, err)
	require.Len(t, got, 3)
	for _, k := range []string{"m0", "m7", "m19"} {
		require.Contains(t, got, k)
		assert.Equal(t, "v"+k[1:], string(got[k].Value))
	}
	assert.Equal(t, uint32(19), got["m19"].Flags)
}

func TestGomemcacheAddReplace(t *testing.T) {
	mc := newClient(t)
	require.ErrorIs(t, mc.Replace(&memcache.Item{Key: "k", Value: []byte("r")}), memcache.ErrNotStored)
	require.NoError(t, mc.Add(&memcache.Item{Key: "k", Value: []byte("a")}))
	require.ErrorIs(t, mc.Add(&memcache.Item{Key: "k", Value: []byte("b")}), memcache.ErrNotStored)
	assert.Equal(t, "a", getValue(t, mc, "k"))
	require.NoError(t, mc.Replace(&memcache.Item{Key: "k", Value: []byte("r")}))
	assert.Equal(t, "r", getValue(t, mc, "k"))
}

func TestGomemcacheAppendPrepend(t *testing.T) {
	mc := newClient(t)
	require.ErrorIs(t, mc.Append(&memcache.Item{Key: "k", Value: []byte("x")}), memcache.ErrNotStored)
	require.ErrorIs(t, mc.Prepend(&memcache.Item{Key: "k", Value: []byte("x")}), memcache.ErrNotStored)
	require.NoError(t, mc.Set(&memcache.Item{Key: "k", Value: []byte("mid"), Flags: 7}))
	require.NoError(t, mc.Append(&memcache.Item{Key: "k", Value: []byte("-end"), Flags: 99}))
	require.NoError(t, mc.Prepend(&memcache.Item{Key: "k", Value: []byte("start-"), Flags: 99}))
	it, err := mc.Get("k")
	require.NoError(t, err)
	assert.Equal(t, "start-mid-end", string(it.Value))
	assert.Equal(t, uint32(7), it.Flags, "append and prepend keep the flags")
}

func TestGomemcacheCompareAndSwap(t *testing.T) {
	mc := newClient(t)
	require.NoError(t, mc.Set(&memcache.Item{Key: "k", Value: []byte("v1")}))
	it, err := mc.Get("k") // gomemcache uses gets, so the item carries its CAS
	require.NoError(t, err)
	stale := *it

	it.Value = []byte("v2")
	require.NoError(t, mc.CompareAndSwap(it))
	assert.Equal(t, "v2", getValue(t, mc, "k"))

	stale.Value = []byte("lost")
	require.ErrorIs(t, mc.CompareAndSwap(&stale), memcache.ErrCASConflict)
	assert.Equal(t, "v2", getValue(t, mc, "k"))

	require.NoError(t, mc.Delete("k"))
	it.Value = []byte("v3")
	require.ErrorIs(t, mc.CompareAndSwap(it), memcache.ErrCacheMiss)
}

func TestGomemcacheDelete(t *testing.T) {
	mc := newClient(t)
	require.ErrorIs(t, mc.Delete("k"), memcache.ErrCacheMiss)
	require.NoError(t, mc.Set(&memcache.Item{Key: "k", Value: []byte("v")}))
	require.NoError(t, mc.Delete("k"))
	_, err := mc.Get("k")
	require.ErrorIs(t, err, memcache.ErrCacheMiss)
}

func TestGomemcacheIncrDecr(t *testing.T) {
	mc := newClient(t)
	_, err := mc.Increment("n", 1)
	require.ErrorIs(t, err, memcache.ErrCacheMiss)
	_, err = mc.Decrement("n", 1)
	require.ErrorIs(t, err, memcache.ErrCacheMiss)

	require.NoError(t, mc.Set(&memcache.Item{Key: "n", Value: []byte("10")}))
	v, err := mc.Increment("n", 5)
	require.NoError(t, err)
	assert.Equal(t, uint64(15), v)
	v, err = mc.Decrement("n", 100)
	require.NoError(t, err)
	assert.Equal(t, uint64(0), v, "decr clamps at 0")

	require.NoError(t, mc.Set(&memcache.Item{Key: "n", Value: []byte("100")}))
	v, err = mc.Decrement("n", 91)
	require.NoError(t, err)
	assert.Equal(t, uint64(9), v)
	assert.Equal(t, "9  ", getValue(t, mc, "n"), "memcached pads a shorter number with spaces")

	require.NoError(t, mc.Set(&memcache.Item{Key: "n", Value: []byte("18446744073709551615")}))
	v, err = mc.Increment("n", 2)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), v, "incr wraps at 2^64")

	require.NoError(t, mc.Set(&memcache.Item{Key: "s", Value: []byte("abc")}))
	_, err = mc.Increment("s", 1)
	require.ErrorContains(t, err, "non-numeric")
	_, err = mc.Decrement("s", 1)
	require.ErrorContains(t, err, "non-numeric")
}

func TestGomemcacheTouch(t *testing.T) {
	mc := newClient(t)
	require.ErrorIs(t, mc.Touch("k", 100), memcache.ErrCacheMiss)
	require.NoError(t, mc.Set(&memcache.Item{Key: "k", Value: []byte("v")}))
	require.NoError(t, mc.Touch("k", 100))
	assert.Equal(t, "v", getValue(t, mc, "k"))
	// Touching with a negative expiration expires the item at once.
	require.NoError(t, mc.Touch("k", -1))
	_, err := mc.Get("k")
	require.ErrorIs(t, err, memcache.ErrCacheMiss)
}

func TestGomemcacheGetAndTouch(t *testing.T) {
	mc := newClient(t)
	_, err := mc.GetAndTouch("k", 100)
	require.ErrorIs(t, err, memcache.ErrCacheMiss)
	require.NoError(t, mc.Set(&memcache.Item{Key: "k", Value: []byte("v"), Flags: 3}))
	it, err := mc.GetAndTouch("k", 100)
	require.NoError(t, err)
	assert.Equal(t, "v", string(it.Value))
	assert.Equal(t, uint32(3), it.Flags)
}

func TestGomemcacheFlushAll(t *testing.T) {
	mc := newClient(t)
	for _, flush := range []func() error{mc.FlushAll, mc.DeleteAll} {
		require.NoError(t, mc.Set(&memcache.Item{Key: "a", Value: []byte("1")}))
		require.NoError(t, mc.Set(&memcache.Item{Key: "b", Value: []byte("2")}))
		require.NoError(t, flush())
		got, err := mc.GetMulti([]string{"a", "b"})
		require.NoError(t, err)
		assert.Empty(t, got)
		// The cache stays usable after a flush.
		require.NoError(t, mc.Set(&memcache.Item{Key: "a", Value: []byte("3")}))
		assert.Equal(t, "3", getValue(t, mc, "a"))
	}
}

// TestGomemcacheConcurrent runs several goroutines over the client's
// connection pool, each on its own keys, and checks every reply.
func TestGomemcacheConcurrent(t *testing.T) {
	mc := newClient(t)
	mc.MaxIdleConns = 8
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				k, v := fmt.Sprintf("g%d-%d", g, i), fmt.Sprintf("value-%d-%d", g, i)
				if !assert.NoError(t, mc.Set(&memcache.Item{Key: k, Value: []byte(v)})) {
					return
				}
				it, err := mc.Get(k)
				if !assert.NoError(t, err) || !assert.Equal(t, v, string(it.Value)) {
					return
				}
			}
		})
	}
	wg.Wait()
}
