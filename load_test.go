package emcache

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// constLoader returns a loader of value with ttl that counts its calls.
func constLoader(calls *atomic.Int64, value string, ttl time.Duration) Loader {
	return func(context.Context, []byte) ([]byte, time.Duration, error) {
		calls.Add(1)
		return []byte(value), ttl, nil
	}
}

// blockingLoader returns a loader that reports its start on started, then
// waits for release before returning value.
func blockingLoader(started chan<- struct{}, release <-chan struct{}, value string) Loader {
	return func(context.Context, []byte) ([]byte, time.Duration, error) {
		started <- struct{}{}
		<-release
		return []byte(value), time.Minute, nil
	}
}

// flightWaiters is the number of callers waiting on key's flight.
func flightWaiters(c *Cache, key string) int {
	c.leases.mu.Lock()
	defer c.leases.mu.Unlock()
	if f := c.leases.m[key]; f != nil {
		return f.waiters
	}
	return 0
}

// loadResult is one GetOrLoad's outcome, for goroutines to report.
type loadResult struct {
	it  Item
	err error
}

// goLoad runs GetOrLoad in a goroutine and returns where its result goes.
func goLoad(ctx context.Context, c *Cache, key string, load Loader) <-chan loadResult {
	out := make(chan loadResult, 1)
	go func() {
		it, err := c.GetOrLoad(ctx, []byte(key), load)
		out <- loadResult{it, err}
	}()
	return out
}

func TestGetOrLoadHitAndMiss(t *testing.T) {
	c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
	var calls atomic.Int64
	it, err := c.GetOrLoad(context.Background(), []byte("k"), constLoader(&calls, "loaded", 10*time.Second))
	require.NoError(t, err)
	assert.Equal(t, "loaded", string(it.Value))
	assert.Equal(t, clk.Now().Add(10*time.Second).Unix(), it.Expires.Unix())
	assert.NotZero(t, it.CAS)
	got := mustGet(t, c, "k")
	assert.Equal(t, it.CAS, got.CAS, "the loaded value is stored")
	assert.Equal(t, it.Expires, got.Expires, "with the loader's TTL")

	it, err = c.GetOrLoad(context.Background(), []byte("k"), constLoader(&calls, "again", 0))
	require.NoError(t, err)
	assert.Equal(t, "loaded", string(it.Value), "a hit does not load")
	assert.EqualValues(t, 1, calls.Load())
	st := c.Stats()
	assert.EqualValues(t, 1, st.GetMisses)
	assert.EqualValues(t, 2, st.GetHits)

	_, err = c.GetOrLoad(context.Background(), nil, constLoader(&calls, "x", 0))
	assert.ErrorIs(t, err, ErrKeyInvalid)
}

// TestGetOrLoadOncePerRound is the stampede: 1000 goroutines miss the same
// key at once, round after round, and the loader runs once per round.
func TestGetOrLoadOncePerRound(t *testing.T) {
	const goroutines, rounds = 1000, 100
	c := newTestCache(t, Config{MaxBytes: 8 << 20})
	for round := range rounds {
		key := fmt.Sprintf("round:%d", round)
		want := "value of " + key
		var calls, entered atomic.Int64
		allIn := make(chan struct{})
		load := func(_ context.Context, k []byte) ([]byte, time.Duration, error) {
			calls.Add(1)
			<-allIn // the others are waiting or about to
			return []byte("value of " + string(k)), 0, nil
		}
		var wg sync.WaitGroup
		var bad atomic.Int64
		for range goroutines {
			wg.Go(func() {
				if entered.Add(1) == goroutines {
					close(allIn)
				}
				it, err := c.GetOrLoad(context.Background(), []byte(key), load)
				if err != nil || string(it.Value) != want {
					bad.Add(1)
				}
			})
		}
		wg.Wait()
		require.EqualValues(t, 1, calls.Load(), "round %d: loader calls", round)
		require.Zero(t, bad.Load(), "round %d: callers without the loaded value", round)
	}
	assert.Empty(t, c.leases.m, "every flight ended")
}

// TestGetOrLoadRemoteGetsZ: while a Go caller loads, a network client's mg
// with N finds the lease item with the token already sent (Z) and does not
// win.
func TestGetOrLoadRemoteGetsZ(t *testing.T) {
	c, s := startServer(t, ServerConfig{})
	cl := dial(t, s)
	started, release := make(chan struct{}), make(chan struct{})
	res := goLoad(context.Background(), c, "k", blockingLoader(started, release, "local"))
	<-started
	cl.roundTrip("mg k v N30 t\r\n", "VA 0 t30 Z\r\n\r\n")
	cl.roundTrip("mg k v N30\r\n", "VA 0 Z\r\n\r\n")
	_, err := c.Get([]byte("k"))
	assert.ErrorIs(t, err, ErrNotFound, "Get misses the lease item")
	close(release)
	r := <-res
	require.NoError(t, r.err)
	assert.Equal(t, "local", string(r.it.Value))
	cl.roundTrip("mg k v N30\r\n", "VA 5\r\nlocal\r\n")
}

// TestGetOrLoadWaitsForRemoteWin: while a network client holds the win, a
// Go caller waits for its ms and returns that value without loading.
func TestGetOrLoadWaitsForRemoteWin(t *testing.T) {
	c, s := startServer(t, ServerConfig{})
	cl := dial(t, s)
	cl.roundTrip("mg k v N30\r\n", "VA 0 W\r\n\r\n")
	var calls atomic.Int64
	res := goLoad(context.Background(), c, "k", constLoader(&calls, "local", 0))
	eventually(t, "the Go caller waiting on the remote lease", func() bool { return flightWaiters(c, "k") == 1 })
	cl.roundTrip("ms k 6 T60\r\nremote\r\n", "HD\r\n")
	r := <-res
	require.NoError(t, r.err)
	assert.Equal(t, "remote", string(r.it.Value))
	assert.Zero(t, calls.Load(), "the loader did not run")
	assert.Zero(t, c.leases.remote.Load())
	assert.Empty(t, c.leases.m)
}

// TestGetOrLoadRemoteLeaseEnds: a network client wins and never stores;
// the Go caller loads itself once the lease's TTL is over.
func TestGetOrLoadRemoteLeaseEnds(t *testing.T) {
	c, s := startServer(t, ServerConfig{})
	cl := dial(t, s)
	cl.roundTrip("mg k v N1\r\n", "VA 0 W\r\n\r\n")
	var calls atomic.Int64
	it, err := c.GetOrLoad(context.Background(), []byte("k"), constLoader(&calls, "local", 0))
	require.NoError(t, err)
	assert.Equal(t, "local", string(it.Value))
	assert.EqualValues(t, 1, calls.Load())
	assert.Empty(t, c.leases.m)
}

// TestGetOrLoadWriteDuringLoadWins: a set or delete during the load, from
// Go or the wire, keeps the loaded value out of the cache; the callers
// still get it.
func TestGetOrLoadWriteDuringLoadWins(t *testing.T) {
	tests := []struct {
		name  string
		write func(t *testing.T, c *Cache, cl *testClient)
		want  string // the item after the load; "" for none
	}{
		{"Delete", func(t *testing.T, c *Cache, _ *testClient) { require.NoError(t, c.Delete([]byte("k"))) }, ""},
		{"Set", func(t *testing.T, c *Cache, _ *testClient) {
			require.NoError(t, c.Set([]byte("k"), []byte("newer"), 0))
		}, "newer"},
		{"md", func(_ *testing.T, _ *Cache, cl *testClient) { cl.roundTrip("md k\r\n", "HD\r\n") }, ""},
		{"ms", func(_ *testing.T, _ *Cache, cl *testClient) { cl.roundTrip("ms k 5\r\nwired\r\n", "HD\r\n") }, "wired"},
		{"flush_all", func(_ *testing.T, _ *Cache, cl *testClient) { cl.roundTrip("flush_all\r\n", "OK\r\n") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := startServer(t, ServerConfig{})
			cl := dial(t, s)
			started, release := make(chan struct{}), make(chan struct{})
			res := goLoad(context.Background(), c, "k", blockingLoader(started, release, "loaded"))
			<-started
			tt.write(t, c, cl)
			close(release)
			r := <-res
			require.NoError(t, r.err)
			assert.Equal(t, "loaded", string(r.it.Value), "the caller gets what it loaded")
			it, err := c.Get([]byte("k"))
			if tt.want == "" {
				assert.ErrorIs(t, err, ErrNotFound, "the loaded value was not stored")
			} else {
				require.NoError(t, err)
				assert.Equal(t, tt.want, string(it.Value))
			}
			assert.Empty(t, c.leases.m)
		})
	}
}

// TestGetOrLoadErrorReachesWaiters: the loader's error goes to every caller
// waiting on it, and the key is released for the next.
func TestGetOrLoadErrorReachesWaiters(t *testing.T) {
	c, s := startServer(t, ServerConfig{})
	errDB := errors.New("database down")
	started, release := make(chan struct{}), make(chan struct{})
	failing := func(context.Context, []byte) ([]byte, time.Duration, error) {
		started <- struct{}{}
		<-release
		return nil, 0, errDB
	}
	leader := goLoad(context.Background(), c, "k", failing)
	<-started
	var waiters []<-chan loadResult
	for range 3 {
		waiters = append(waiters, goLoad(context.Background(), c, "k", failing))
	}
	eventually(t, "three waiters", func() bool { return flightWaiters(c, "k") == 3 })
	close(release)
	assert.ErrorIs(t, (<-leader).err, errDB)
	for _, w := range waiters {
		assert.ErrorIs(t, (<-w).err, errDB)
	}
	dial(t, s).roundTrip("mg k v\r\n", "EN\r\n") // the lease item is gone
	var calls atomic.Int64
	it, err := c.GetOrLoad(context.Background(), []byte("k"), constLoader(&calls, "ok", 0))
	require.NoError(t, err)
	assert.Equal(t, "ok", string(it.Value))
}

// TestGetOrLoadPanicReleasesKey: a panicking loader panics on in its own
// goroutine once the key is released; the waiters get a *PanicError.
func TestGetOrLoadPanicReleasesKey(t *testing.T) {
	c, s := startServer(t, ServerConfig{})
	started, release := make(chan struct{}), make(chan struct{})
	boom := errors.New("boom")
	panicking := func(context.Context, []byte) ([]byte, time.Duration, error) {
		started <- struct{}{}
		<-release
		panic(boom)
	}
	recovered := make(chan any, 1)
	go func() {
		defer func() { recovered <- recover() }()
		c.GetOrLoad(context.Background(), []byte("k"), panicking)
	}()
	<-started
	waiter := goLoad(context.Background(), c, "k", panicking)
	eventually(t, "a waiter", func() bool { return flightWaiters(c, "k") == 1 })
	close(release)
	assert.Equal(t, boom, <-recovered, "the loading goroutine panics with the loader's value")
	err := (<-waiter).err
	var pe *PanicError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, boom, pe.Value)
	assert.NotEmpty(t, pe.Stack)
	assert.ErrorIs(t, err, boom)

	dial(t, s).roundTrip("mg k v N30\r\n", "VA 0 W\r\n\r\n") // released: a network client wins it
	dial(t, s).roundTrip("md k\r\n", "HD\r\n")
	var calls atomic.Int64
	it, err := c.GetOrLoad(context.Background(), []byte("k"), constLoader(&calls, "ok", 0))
	require.NoError(t, err)
	assert.Equal(t, "ok", string(it.Value))
}

// TestGetOrLoadGoexit: a loader that ends its goroutine (t.FailNow does)
// releases the key; the waiters get an error rather than hang.
func TestGetOrLoadGoexit(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20})
	started, release := make(chan struct{}), make(chan struct{})
	exiting := func(context.Context, []byte) ([]byte, time.Duration, error) {
		started <- struct{}{}
		<-release
		runtime.Goexit()
		return nil, 0, nil
	}
	go c.GetOrLoad(context.Background(), []byte("k"), exiting)
	<-started
	waiter := goLoad(context.Background(), c, "k", exiting)
	eventually(t, "a waiter", func() bool { return flightWaiters(c, "k") == 1 })
	close(release)
	assert.ErrorIs(t, (<-waiter).err, errLoaderExited)
	var calls atomic.Int64
	_, err := c.GetOrLoad(context.Background(), []byte("k"), constLoader(&calls, "ok", 0))
	assert.NoError(t, err)
}

// TestGetOrLoadWaiterContext: a waiter whose context ends returns at once;
// the load goes on for the others.
func TestGetOrLoadWaiterContext(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20})
	started, release := make(chan struct{}), make(chan struct{})
	load := blockingLoader(started, release, "v")
	leader := goLoad(context.Background(), c, "k", load)
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	waiter := goLoad(ctx, c, "k", load)
	eventually(t, "a waiter", func() bool { return flightWaiters(c, "k") == 1 })
	cancel()
	assert.ErrorIs(t, (<-waiter).err, context.Canceled)
	close(release)
	r := <-leader
	require.NoError(t, r.err)
	assert.Equal(t, "v", string(r.it.Value))

	// The same for a wait on a network client's lease.
	_, s := startServerOn(t, c)
	dial(t, s).roundTrip("mg r v N30\r\n", "VA 0 W\r\n\r\n")
	ctx, cancel = context.WithCancel(context.Background())
	var calls atomic.Int64
	waiter = goLoad(ctx, c, "r", constLoader(&calls, "x", 0))
	eventually(t, "a remote waiter", func() bool { return flightWaiters(c, "r") == 1 })
	cancel()
	assert.ErrorIs(t, (<-waiter).err, context.Canceled)
	assert.Zero(t, calls.Load())
	assert.Zero(t, c.leases.remote.Load(), "the last waiter drops the remote flight")
	assert.Empty(t, c.leases.m)
}

// startServerOn serves c on a loopback port.
func startServerOn(t *testing.T, c *Cache) (*Cache, *Server) {
	t.Helper()
	s, err := c.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return c, s
}

// TestGetOrLoadLeaderContextRetries: when the first caller's context ends
// and its loader fails for it, a waiter with a live context loads anew
// instead of taking that caller's error.
func TestGetOrLoadLeaderContextRetries(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20})
	started := make(chan struct{})
	var calls atomic.Int64
	load := func(ctx context.Context, _ []byte) ([]byte, time.Duration, error) {
		if calls.Add(1) == 1 {
			started <- struct{}{}
			<-ctx.Done()
			return nil, 0, ctx.Err()
		}
		return []byte("second"), 0, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	leader := goLoad(ctx, c, "k", load)
	<-started
	waiter := goLoad(context.Background(), c, "k", load)
	eventually(t, "a waiter", func() bool { return flightWaiters(c, "k") == 1 })
	cancel()
	assert.ErrorIs(t, (<-leader).err, context.Canceled)
	r := <-waiter
	require.NoError(t, r.err)
	assert.Equal(t, "second", string(r.it.Value))
	assert.EqualValues(t, 2, calls.Load())
}

// TestGetOrLoadRefreshAhead: a hit within RefreshAhead of its expiry is
// served as it is while one background load replaces it.
func TestGetOrLoadRefreshAhead(t *testing.T) {
	clk := newFakeClock()
	c := newTestCache(t, Config{MaxBytes: 1 << 20, Now: clk.Now, RefreshAhead: 10 * time.Second})
	_, s := startServerOn(t, c)
	cl := dial(t, s)
	require.NoError(t, c.Set([]byte("k"), []byte("old"), time.Minute))
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	load := func(context.Context, []byte) ([]byte, time.Duration, error) {
		calls.Add(1)
		started <- struct{}{}
		<-release
		return []byte("new"), time.Minute, nil
	}
	it, err := c.GetOrLoad(context.Background(), []byte("k"), load)
	require.NoError(t, err)
	assert.Equal(t, "old", string(it.Value), "no refresh while the TTL is long")

	clk.Advance(51 * time.Second)
	it, err = c.GetOrLoad(context.Background(), []byte("k"), load)
	require.NoError(t, err)
	assert.Equal(t, "old", string(it.Value), "served the current value while it refreshes")
	<-started
	it, err = c.GetOrLoad(context.Background(), []byte("k"), load)
	require.NoError(t, err)
	assert.Equal(t, "old", string(it.Value))
	cl.roundTrip("mg k v R30\r\n", "VA 3 Z\r\nold\r\n")
	close(release)
	eventually(t, "the refreshed value", func() bool {
		it, err := c.Get([]byte("k"))
		return err == nil && string(it.Value) == "new"
	})
	assert.EqualValues(t, 1, calls.Load(), "one refresh")
	assert.Equal(t, clk.Now().Add(time.Minute).Unix(), mustGet(t, c, "k").Expires.Unix())
	cl.roundTrip("mg k v R30\r\n", "VA 3\r\nnew\r\n")
}

// TestGetOrLoadRefreshFailureKeepsValue: a failed refresh leaves the item
// and its TTL, and lets a later reader try again.
func TestGetOrLoadRefreshFailureKeepsValue(t *testing.T) {
	clk := newFakeClock()
	c := newTestCache(t, Config{MaxBytes: 1 << 20, Now: clk.Now, RefreshAhead: 10 * time.Second})
	require.NoError(t, c.Set([]byte("k"), []byte("old"), 15*time.Second))
	done := make(chan struct{})
	var calls atomic.Int64
	failing := func(context.Context, []byte) ([]byte, time.Duration, error) {
		calls.Add(1)
		defer func() { done <- struct{}{} }()
		return nil, 0, errors.New("no")
	}
	clk.Advance(6 * time.Second)
	it, err := c.GetOrLoad(context.Background(), []byte("k"), failing)
	require.NoError(t, err)
	assert.Equal(t, "old", string(it.Value))
	<-done
	// The loader returned; releasing the token follows it.
	eventually(t, "the win token released", func() bool { return !hasWinToken(c, "k") })
	_, err = c.GetOrLoad(context.Background(), []byte("k"), failing)
	require.NoError(t, err)
	<-done
	assert.EqualValues(t, 2, calls.Load(), "a later reader tries again")
	assert.Equal(t, "old", string(mustGet(t, c, "k").Value))
}

// hasWinToken reports whether key's item carries the win token.
func hasWinToken(c *Cache, key string) bool {
	s, h, now, res := c.acquire([]byte(key))
	if res != resultOK {
		return false
	}
	defer s.mu.Unlock()
	_, off, ok := s.lookup([]byte(key), h, now)
	return ok && s.bits(off)&bitWon != 0
}

// TestGetOrLoadNoEvictFull: with no room for the lease item the load still
// runs once, and a store meanwhile still wins.
func TestGetOrLoadNoEvictFull(t *testing.T) {
	const maxBytes = 64 << 10
	c := newTestCache(t, Config{MaxBytes: maxBytes, MaxItemSize: MinMaxItemSize, NoEvict: true})
	fillNoEvict(t, c, 4*maxBytes/itemSize("key00000", strings.Repeat("v", 99)))
	var calls atomic.Int64
	it, err := c.GetOrLoad(context.Background(), []byte("absent"), constLoader(&calls, "v", 0))
	require.NoError(t, err, "the value is returned though it cannot be stored")
	assert.Equal(t, "v", string(it.Value))
	assert.EqualValues(t, 1, calls.Load())
	assert.Empty(t, c.leases.m)
}
