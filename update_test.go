package emcache

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// incr is an UpdateFunc adding one to a decimal counter, 0 when absent.
func incr(old []byte, found bool) ([]byte, time.Duration, UpdateOp) {
	n := 0
	if found {
		n, _ = strconv.Atoi(string(old))
	}
	return strconv.AppendInt(nil, int64(n+1), 10), time.Minute, UpdateKeepTTL
}

// TestUpdateConcurrentCounter: concurrent updates of one key lose none.
func TestUpdateConcurrentCounter(t *testing.T) {
	const goroutines, rounds = 100, 100
	c := newTestCache(t, Config{MaxBytes: 1 << 20})
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range rounds {
				if _, err := c.Update([]byte("n"), incr); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, strconv.Itoa(goroutines*rounds), string(mustGet(t, c, "n").Value))
}

func TestUpdateOps(t *testing.T) {
	c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
	key := []byte("k")
	base := clk.Now().Unix()

	cas, err := c.Update(key, func(old []byte, found bool) ([]byte, time.Duration, UpdateOp) {
		assert.False(t, found)
		assert.Nil(t, old)
		return []byte("first"), 10 * time.Second, UpdateKeepTTL
	})
	require.NoError(t, err)
	it := mustGet(t, c, "k")
	assert.Equal(t, "first", string(it.Value))
	assert.Equal(t, cas, it.CAS)
	assert.Equal(t, base+10, it.Expires.Unix(), "a new item takes the TTL")

	_, err = c.Store(key, []byte("flagged"), StoreOptions{Flags: 9, TTL: 100 * time.Second})
	require.NoError(t, err)
	_, err = c.Update(key, func(old []byte, found bool) ([]byte, time.Duration, UpdateOp) {
		assert.True(t, found)
		assert.Equal(t, "flagged", string(old))
		return append([]byte("re"), old...), time.Hour, UpdateKeepTTL
	})
	require.NoError(t, err)
	it = mustGet(t, c, "k")
	assert.Equal(t, "reflagged", string(it.Value))
	assert.Equal(t, uint32(9), it.Flags, "client flags kept")
	assert.Equal(t, base+100, it.Expires.Unix(), "UpdateKeepTTL keeps the expiry")

	_, err = c.Update(key, func(old []byte, _ bool) ([]byte, time.Duration, UpdateOp) {
		return old[2:], time.Hour, UpdateSet // part of old, as it is
	})
	require.NoError(t, err)
	it = mustGet(t, c, "k")
	assert.Equal(t, "flagged", string(it.Value))
	assert.Equal(t, base+3600, it.Expires.Unix(), "UpdateSet takes the TTL")

	cas, err = c.Update(key, func([]byte, bool) ([]byte, time.Duration, UpdateOp) { return nil, 0, UpdateAbort })
	require.NoError(t, err)
	assert.Zero(t, cas)
	assert.Equal(t, "flagged", string(mustGet(t, c, "k").Value), "UpdateAbort changes nothing")

	_, err = c.Update(key, func([]byte, bool) ([]byte, time.Duration, UpdateOp) {
		return []byte(strings.Repeat("x", 2<<20)), 0, UpdateSet
	})
	assert.ErrorIs(t, err, ErrTooLarge)
	assert.Equal(t, "flagged", string(mustGet(t, c, "k").Value), "a failed update keeps the item")

	_, err = c.Update(key, func([]byte, bool) ([]byte, time.Duration, UpdateOp) { return nil, 0, UpdateDelete })
	require.NoError(t, err)
	_, err = c.Get(key)
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = c.Update(key, func([]byte, bool) ([]byte, time.Duration, UpdateOp) { return nil, 0, UpdateDelete })
	assert.NoError(t, err, "deleting nothing is no error")

	_, err = c.Update(nil, incr)
	assert.ErrorIs(t, err, ErrKeyInvalid)
}

// TestUpdateDuringLoad: an update finds no value under a load's lease, and
// its store wins over the load.
func TestUpdateDuringLoad(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20})
	started, release := make(chan struct{}), make(chan struct{})
	res := goLoad(context.Background(), c, "n", blockingLoader(started, release, "100"))
	<-started
	_, err := c.Update([]byte("n"), incr)
	require.NoError(t, err)
	close(release)
	require.NoError(t, (<-res).err)
	assert.Equal(t, "1", string(mustGet(t, c, "n").Value))
}
