package emcache_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emcache/emcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type user struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

func newTyped[V any](t testing.TB, codec emcache.Codec[V]) (*emcache.Cache, *emcache.Typed[V]) {
	t.Helper()
	c, err := emcache.New(emcache.Config{MaxBytes: 1 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c, emcache.NewTyped(c, codec)
}

func TestTypedJSON(t *testing.T) {
	c, users := newTyped(t, emcache.JSON[user]())
	u, ok, err := users.Get("user:1")
	require.NoError(t, err, "a miss is no error")
	assert.False(t, ok)
	assert.Zero(t, u)

	ada := user{Name: "Ada", Email: "ada@example.com"}
	require.NoError(t, users.Set("user:1", ada, time.Hour))
	u, ok, err = users.Get("user:1")
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, ada, u)
	it, err := c.Get([]byte("user:1"))
	require.NoError(t, err)
	assert.JSONEq(t, `{"name":"Ada","email":"ada@example.com"}`, string(it.Value), "network clients read the encoding")

	require.NoError(t, c.Set([]byte("user:2"), []byte("not json"), 0))
	_, ok, err = users.Get("user:2")
	var syntax *json.SyntaxError
	assert.ErrorAs(t, err, &syntax, "a value the codec cannot decode is an error")
	assert.False(t, ok)

	require.NoError(t, users.Delete("user:1"))
	_, ok, err = users.Get("user:1")
	require.NoError(t, err)
	assert.False(t, ok)
	assert.NoError(t, users.Delete("user:1"), "deleting a missing key is no error")

	assert.ErrorIs(t, users.Set("", ada, 0), emcache.ErrKeyInvalid)
	_, _, err = users.Get("")
	assert.ErrorIs(t, err, emcache.ErrKeyInvalid)
	assert.ErrorIs(t, users.Delete(""), emcache.ErrKeyInvalid)
}

func TestTypedGetOrLoad(t *testing.T) {
	_, users := newTyped(t, emcache.JSON[user]())
	var calls atomic.Int64
	load := func(_ context.Context, key string) (user, time.Duration, error) {
		calls.Add(1)
		return user{Name: key}, time.Minute, nil
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			u, err := users.GetOrLoad(context.Background(), "grace", load)
			if err != nil || u.Name != "grace" {
				t.Errorf("got %v, %v", u, err)
			}
		})
	}
	wg.Wait()
	assert.EqualValues(t, 1, calls.Load())
	u, ok, err := users.Get("grace")
	require.NoError(t, err)
	assert.True(t, ok, "the loaded value is stored")
	assert.Equal(t, "grace", u.Name)

	errDB := errors.New("db")
	_, err = users.GetOrLoad(context.Background(), "alan", func(context.Context, string) (user, time.Duration, error) {
		return user{}, 0, errDB
	})
	assert.ErrorIs(t, err, errDB)
	_, ok, _ = users.Get("alan")
	assert.False(t, ok)
}

func TestTypedUpdate(t *testing.T) {
	c, users := newTyped(t, emcache.JSON[user]())
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			err := users.Update("u", func(old user, found bool) (user, time.Duration, emcache.UpdateOp) {
				old.Name += "a"
				return old, time.Hour, emcache.UpdateSet
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	u, ok, err := users.Get("u")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Len(t, u.Name, 20, "no update lost")

	require.NoError(t, c.Set([]byte("bad"), []byte("{"), 0))
	called := false
	err = users.Update("bad", func(user, bool) (user, time.Duration, emcache.UpdateOp) {
		called = true
		return user{}, 0, emcache.UpdateSet
	})
	var syntax *json.SyntaxError
	assert.ErrorAs(t, err, &syntax, "an undecodable value aborts")
	assert.False(t, called)
	it, err := c.Get([]byte("bad"))
	require.NoError(t, err)
	assert.Equal(t, "{", string(it.Value), "and is left as it was")

	require.NoError(t, users.Update("u", func(user, bool) (user, time.Duration, emcache.UpdateOp) {
		return user{}, 0, emcache.UpdateDelete
	}))
	_, ok, err = users.Get("u")
	require.NoError(t, err)
	assert.False(t, ok)
}

// uint64Codec encodes a uint64 in 8 bytes without allocating.
type uint64Codec struct{}

func (uint64Codec) Append(dst []byte, v uint64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(dst, v), nil
}

func (uint64Codec) Decode(data []byte) (uint64, error) {
	if len(data) != 8 {
		return 0, errors.New("not 8 bytes")
	}
	return binary.BigEndian.Uint64(data), nil
}

// TestTypedAllocations: the typed layer allocates nothing beyond what its
// codec does.
func TestTypedAllocations(t *testing.T) {
	if emcache.RaceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers at random")
	}
	_, counters := newTyped(t, emcache.Codec[uint64](uint64Codec{}))
	require.NoError(t, counters.Set("n", 42, 0))
	load := func(context.Context, string) (uint64, time.Duration, error) { return 7, 0, nil }
	allocs := map[string]float64{
		"Get hit":  testing.AllocsPerRun(1000, func() { counters.Get("n") }),
		"Get miss": testing.AllocsPerRun(1000, func() { counters.Get("missing") }),
		"Set":      testing.AllocsPerRun(1000, func() { counters.Set("n", 43, 0) }),
		"GetOrLoad hit": testing.AllocsPerRun(1000, func() {
			counters.GetOrLoad(context.Background(), "n", load)
		}),
	}
	allocs["Update"] = testing.AllocsPerRun(1000, func() {
		counters.Update("n", func(old uint64, _ bool) (uint64, time.Duration, emcache.UpdateOp) {
			return old + 1, 0, emcache.UpdateKeepTTL
		})
	})
	for op, n := range allocs {
		assert.Zero(t, n, "%s with an allocation-free codec", op)
	}

	_, users := newTyped(t, emcache.JSON[user]())
	ada := user{Name: "Ada", Email: "ada@example.com"}
	require.NoError(t, users.Set("u", ada, 0))
	enc, err := json.Marshal(ada)
	require.NoError(t, err)
	decode := testing.AllocsPerRun(1000, func() {
		var u user
		json.Unmarshal(enc, &u)
	})
	get := testing.AllocsPerRun(1000, func() { users.Get("u") })
	assert.Equal(t, decode, get, "a JSON Get allocates what json.Unmarshal does")
	marshal := testing.AllocsPerRun(1000, func() { json.Marshal(ada) })
	set := testing.AllocsPerRun(1000, func() { users.Set("u", ada, 0) })
	assert.Equal(t, marshal, set, "a JSON Set allocates what json.Marshal does")
}
