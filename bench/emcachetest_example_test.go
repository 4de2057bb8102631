package bench_test

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/emcache/emcache"
	"github.com/emcache/emcache/emcachetest"
)

// The README's "Use it in your tests" example: code that caches through
// gomemcache, tested against the real engine with a clock the test moves.
func TestSessionExpires(t *testing.T) {
	ts := emcachetest.NewServer(t)
	mc := memcache.New(ts.Addr())

	err := mc.Set(&memcache.Item{Key: "session", Value: []byte("alice"), Expiration: 60})
	require.NoError(t, err)

	ts.FastForward(59 * time.Second)
	it, err := mc.Get("session")
	require.NoError(t, err)
	require.Equal(t, "alice", string(it.Value))

	ts.FastForward(time.Second)
	_, err = mc.Get("session")
	require.ErrorIs(t, err, memcache.ErrCacheMiss)
}

// The README's failure-injection example.
func TestSetOutOfMemory(t *testing.T) {
	ts := emcachetest.NewServer(t)
	mc := memcache.New(ts.Addr())

	ts.InjectFault(1, emcache.Fault{Command: "set", Reply: "SERVER_ERROR out of memory storing object"})
	err := mc.Set(&memcache.Item{Key: "k", Value: []byte("v")})
	require.ErrorContains(t, err, "SERVER_ERROR out of memory storing object")

	require.NoError(t, mc.Set(&memcache.Item{Key: "k", Value: []byte("v")}))
}

func TestEmcachetestGomemcacheTouchAndFlush(t *testing.T) {
	ts := emcachetest.NewServer(t)
	mc := memcache.New(ts.Addr())

	require.NoError(t, mc.Set(&memcache.Item{Key: "k", Value: []byte("v"), Expiration: 10}))
	ts.FastForward(9 * time.Second)
	require.NoError(t, mc.Touch("k", 100))
	ts.FastForward(99 * time.Second)
	_, err := mc.Get("k")
	require.NoError(t, err)
	ts.FastForward(time.Second)
	_, err = mc.Get("k")
	require.ErrorIs(t, err, memcache.ErrCacheMiss)

	// Seeded straight into the cache, read through the client.
	_, err = ts.Cache().Store([]byte("seeded"), []byte("x"), emcache.StoreOptions{Flags: 9})
	require.NoError(t, err)
	it, err := mc.Get("seeded")
	require.NoError(t, err)
	assert.Equal(t, uint32(9), it.Flags)
	require.NoError(t, mc.DeleteAll())
	_, err = mc.Get("seeded")
	require.ErrorIs(t, err, memcache.ErrCacheMiss)
}

func TestEmcachetestGomemcacheFaults(t *testing.T) {
	ts := emcachetest.NewServer(t)
	mc := memcache.New(ts.Addr())
	require.NoError(t, mc.Set(&memcache.Item{Key: "k", Value: []byte("v")}))

	t.Run("server error on get", func(t *testing.T) {
		ts.InjectFault(1, emcache.Fault{Command: "gets", Reply: "SERVER_ERROR temporary failure"})
		_, err := mc.Get("k") // gomemcache's Get sends gets
		require.ErrorContains(t, err, "SERVER_ERROR temporary failure")
		_, err = mc.Get("k")
		require.NoError(t, err)
	})
	t.Run("closed connection", func(t *testing.T) {
		ts.InjectFault(1, emcache.Fault{Close: true})
		_, err := mc.Get("k")
		require.Error(t, err)
		require.NotErrorIs(t, err, memcache.ErrCacheMiss)
		_, err = mc.Get("k") // the client dials again
		require.NoError(t, err)
	})
	t.Run("client timeout", func(t *testing.T) {
		mc.Timeout = 50 * time.Millisecond
		ts.InjectFault(1, emcache.Fault{Delay: 500 * time.Millisecond})
		_, err := mc.Get("k")
		var ne net.Error
		require.True(t, errors.As(err, &ne) && ne.Timeout(), "want a timeout, got %v", err)
		// The stall holds the test server's only worker: a patient client
		// gets its answer once it ends.
		mc.Timeout = 10 * time.Second
		_, err = mc.Get("k")
		require.NoError(t, err)
	})
	t.Run("a few of many", func(t *testing.T) {
		ts.InjectFault(3, emcache.Fault{Command: "set", Reply: "SERVER_ERROR out of memory storing object"})
		failed := 0
		for i := range 10 {
			if err := mc.Set(&memcache.Item{Key: fmt.Sprint("k", i), Value: []byte("v")}); err != nil {
				failed++
			}
		}
		assert.Equal(t, 3, failed)
	})
}

// exampleT stands in for the *testing.T that a test passes to NewServer and
// that examples do not get: it runs the cleanups when the example ends.
type exampleT struct{ cleanups []func() }

func (t *exampleT) Helper()                           {}
func (t *exampleT) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (t *exampleT) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// A gomemcache client against a test server: the code under test gets the
// server's address, the test reads what it stored straight from the cache.
func Example_emcachetestGomemcache() {
	t := &exampleT{} // a test passes its *testing.T
	defer t.done()

	ts := emcachetest.NewServer(t)
	mc := memcache.New(ts.Addr())
	if err := mc.Set(&memcache.Item{Key: "user:1", Value: []byte("ada"), Flags: 7}); err != nil {
		t.Fatalf("set: %v", err)
	}

	it, err := ts.Cache().Get([]byte("user:1"))
	fmt.Printf("%s %d %v\n", it.Value, it.Flags, err)
	_, err = mc.Get("user:2")
	fmt.Println(err)
	// Output:
	// ada 7 <nil>
	// memcache: cache miss
}

// An expiry test that takes no time: the server's clock moves on demand.
func Example_emcachetestExpiry() {
	t := &exampleT{} // a test passes its *testing.T
	defer t.done()

	ts := emcachetest.NewServer(t)
	mc := memcache.New(ts.Addr())
	mc.Set(&memcache.Item{Key: "otp", Value: []byte("123456"), Expiration: 300})

	for _, wait := range []time.Duration{299 * time.Second, time.Second} {
		ts.FastForward(wait)
		_, err := mc.Get("otp")
		fmt.Printf("after %v more: %v\n", wait, err)
	}
	// Output:
	// after 4m59s more: <nil>
	// after 1s more: memcache: cache miss
}
