package emcache

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock for tests, safe for the background
// reclaimer to read concurrently.
type fakeClock struct{ ns atomic.Int64 }

func (f *fakeClock) Now() time.Time          { return time.Unix(0, f.ns.Load()) }
func (f *fakeClock) Advance(d time.Duration) { f.ns.Add(int64(d)) }
func (f *fakeClock) Set(t time.Time)         { f.ns.Store(t.UnixNano()) }

func newFakeClock() *fakeClock {
	f := &fakeClock{}
	f.ns.Store(1_800_000_000 * int64(time.Second))
	return f
}

func newTestCache(t testing.TB, cfg Config) *Cache {
	t.Helper()
	c, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

type modelItem struct {
	value []byte
	flags uint32
	exp   int64 // absolute Unix seconds, 0 = never
	cas   uint64
}

// TestModelRandomOps drives long random operation sequences against the
// cache and a map model, with a budget large enough that nothing is evicted,
// and demands identical answers.
func TestModelRandomOps(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runModel(t, seed, 64<<20) })
	}
}

// TestModelUnderEviction is TestModelRandomOps with a budget far below the
// working set: the cache may forget items, but whatever it returns must be
// exactly the model's last write.
func TestModelUnderEviction(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runModel(t, seed, 8<<10) })
	}
}

func runModel(t *testing.T, seed uint64, maxBytes int64) {
	clk := newFakeClock()
	lossy := maxBytes < 1<<20
	c := newTestCache(t, Config{MaxBytes: maxBytes, MaxItemSize: MinMaxItemSize, Now: clk.Now})
	model := map[string]*modelItem{}
	rng := rand.New(rand.NewPCG(seed, seed))
	now := func() int64 { return clk.Now().Unix() }
	live := func(k string) *modelItem {
		it := model[k]
		if it == nil || (it.exp != 0 && it.exp <= now()) {
			delete(model, k)
			return nil
		}
		return it
	}
	randValue := func() []byte {
		v := make([]byte, rng.IntN(300))
		if lossy {
			v = v[:min(len(v), rng.IntN(100))]
		}
		for i := range v {
			v[i] = byte(rng.IntN(256))
		}
		if rng.IntN(4) == 0 {
			v = fmt.Appendf(nil, "%d", rng.Uint64N(1e6))
		}
		return v
	}
	// randTTL mixes no expiry, TTLs of a few seconds, below a second (they
	// round up) and beyond 30 days (no longer read as a Unix time).
	randTTL := func() time.Duration {
		switch rng.IntN(5) {
		case 0:
			return time.Duration(rng.IntN(5)) * time.Second
		case 1:
			return time.Duration(1+rng.IntN(999)) * time.Millisecond
		case 2:
			return time.Duration(relativeExptimeMax+1+rng.IntN(5)) * time.Second
		default:
			return 0
		}
	}
	// absExp is when an item stored now with ttl expires.
	absExp := func(ttl time.Duration) int64 {
		if ttl == 0 {
			return 0
		}
		return now() + int64((ttl+time.Second-1)/time.Second)
	}
	for op := 0; op < 20000; op++ {
		k := fmt.Sprintf("key%d", rng.IntN(200))
		key := []byte(k)
		m := live(k)
		if lossy && m != nil {
			// Sync with evictions first; a hit must match the model.
			it, err := c.Get(key)
			if err != nil {
				delete(model, k)
				m = nil
			} else {
				require.Equal(t, m.value, it.Value, "op %d key %s", op, k)
				require.Equal(t, m.cas, it.CAS)
			}
		}
		switch rng.IntN(12) {
		case 0, 1, 2:
			it, err := c.Get(key)
			if m == nil {
				require.ErrorIs(t, err, ErrNotFound, "op %d get %s", op, k)
				continue
			}
			require.NoError(t, err, "op %d get %s", op, k)
			require.Equal(t, m.value, it.Value, "op %d get %s", op, k)
			require.Equal(t, m.flags, it.Flags)
			require.Equal(t, m.cas, it.CAS)
			require.Equal(t, m.exp, unixOf(it.Expires))
		case 3, 4:
			v, f, e := randValue(), rng.Uint32(), randTTL()
			cas, err := c.Store(key, v, StoreOptions{Flags: f, TTL: e})
			require.NoError(t, err)
			model[k] = &modelItem{value: v, flags: f, exp: absExp(e), cas: cas}
		case 5:
			v, f, e := randValue(), rng.Uint32(), randTTL()
			cas, err := c.Store(key, v, StoreOptions{Mode: ModeAdd, Flags: f, TTL: e})
			if m != nil {
				require.ErrorIs(t, err, ErrNotStored)
				continue
			}
			require.NoError(t, err)
			model[k] = &modelItem{value: v, flags: f, exp: absExp(e), cas: cas}
		case 6:
			v, f, e := randValue(), rng.Uint32(), randTTL()
			cas, err := c.Store(key, v, StoreOptions{Mode: ModeReplace, Flags: f, TTL: e})
			if m == nil {
				require.ErrorIs(t, err, ErrNotStored)
				continue
			}
			require.NoError(t, err)
			model[k] = &modelItem{value: v, flags: f, exp: absExp(e), cas: cas}
		case 7:
			v := randValue()
			var cas uint64
			var err error
			prepend := rng.IntN(2) == 0
			if prepend {
				cas, err = c.Store(key, v, StoreOptions{Mode: ModePrepend})
			} else {
				cas, err = c.Store(key, v, StoreOptions{Mode: ModeAppend})
			}
			if m == nil || (lossy && errors.Is(err, ErrNotStored)) {
				require.ErrorIs(t, err, ErrNotStored)
				delete(model, k)
				continue
			}
			if errors.Is(err, ErrTooLarge) {
				continue
			}
			require.NoError(t, err)
			if prepend {
				m.value = append(append([]byte{}, v...), m.value...)
			} else {
				m.value = append(append([]byte{}, m.value...), v...)
			}
			m.cas = cas
		case 8:
			v, f, e := randValue(), rng.Uint32(), randTTL()
			want := uint64(1) // a made-up CAS: 0 is none to Store
			if m != nil {
				want = m.cas
				if rng.IntN(3) == 0 {
					want++
				}
			}
			cas, err := c.Store(key, v, StoreOptions{Flags: f, TTL: e, CAS: want})
			switch {
			case m == nil:
				require.ErrorIs(t, err, ErrNotFound)
			case want != m.cas:
				require.ErrorIs(t, err, ErrExists)
			default:
				require.NoError(t, err)
				model[k] = &modelItem{value: v, flags: f, exp: absExp(e), cas: cas}
			}
		case 9:
			err := c.Delete(key)
			if m == nil {
				require.ErrorIs(t, err, ErrNotFound)
				continue
			}
			require.NoError(t, err)
			delete(model, k)
		case 10:
			d := rng.Uint64N(1000)
			incr := rng.IntN(2) == 0
			var n uint64
			var err error
			if incr {
				n, err = c.Incr(key, d)
			} else {
				n, err = c.Decr(key, d)
			}
			if m == nil {
				require.ErrorIs(t, err, ErrNotFound)
				continue
			}
			old, ok := parseCounter(m.value)
			if !ok {
				require.ErrorIs(t, err, ErrNotNumeric, "value %q", m.value)
				continue
			}
			require.NoError(t, err)
			if incr {
				old += d
			} else {
				old -= min(old, d)
			}
			require.Equal(t, old, n)
			digits := fmt.Appendf(nil, "%d", n)
			if len(digits) < len(m.value) {
				digits = append(digits, bytes.Repeat([]byte(" "), len(m.value)-len(digits))...)
			}
			m.value = digits
			it, err := c.Get(key)
			if lossy && err != nil {
				delete(model, k)
				continue
			}
			require.NoError(t, err)
			m.cas = it.CAS
		case 11:
			if rng.IntN(4) == 0 {
				clk.Advance(time.Second)
				continue
			}
			e := randTTL()
			err := c.Touch(key, e)
			if m == nil {
				require.ErrorIs(t, err, ErrNotFound)
				continue
			}
			require.NoError(t, err)
			m.exp = absExp(e)
		}
	}
	st := c.Stats()
	n := 0
	for k := range model {
		if live(k) != nil {
			n++
		}
	}
	if lossy {
		assert.NotZero(t, st.Evictions)
		assert.LessOrEqual(t, st.Bytes, uint64(maxBytes))
		return
	}
	assert.Zero(t, st.Evictions)
	assert.GreaterOrEqual(t, int(st.CurrItems), n, "curr_items counts every unreclaimed item")
}

// TestFillFarPastLimit writes 16x the budget of mixed sizes and checks that
// the arena stays bounded and every hit returns the last value written.
func TestFillFarPastLimit(t *testing.T) {
	const maxBytes = 4 << 20
	c := newTestCache(t, Config{MaxBytes: maxBytes, MaxItemSize: 64 << 10})
	rng := rand.New(rand.NewPCG(7, 7))
	last := map[string]int{}
	value := func(k string, gen, n int) []byte {
		return fmt.Appendf(nil, "%s/%d/%0*d", k, gen, n, 0)
	}
	written := 0
	for gen := 0; written < 16*maxBytes; gen++ {
		k := fmt.Sprintf("k%d", rng.IntN(20000))
		n := 10 + rng.IntN(2000)
		if rng.IntN(50) == 0 {
			n = 30000
		}
		err := c.Set([]byte(k), value(k, gen, n), 0)
		require.NoError(t, err)
		last[k] = gen
		written += n
		if gen%7 == 0 {
			kk := fmt.Sprintf("k%d", rng.IntN(20000))
			if it, err := c.Get([]byte(kk)); err == nil {
				g, ok := last[kk]
				require.True(t, ok)
				require.Equal(t, fmt.Sprintf("%s/%d/", kk, g), string(it.Value[:len(fmt.Sprintf("%s/%d/", kk, g))]))
			}
		}
	}
	st := c.Stats()
	assert.LessOrEqual(t, st.Bytes, uint64(maxBytes))
	assert.NotZero(t, st.Evictions)
	var arena int
	for _, s := range c.shards {
		arena += len(s.buf)
	}
	assert.LessOrEqual(t, arena, maxBytes)
	for k, g := range last {
		it, err := c.Get([]byte(k))
		if err != nil {
			continue
		}
		prefix := fmt.Sprintf("%s/%d/", k, g)
		require.Equal(t, prefix, string(it.Value[:len(prefix)]), "stale or foreign value")
	}
}
