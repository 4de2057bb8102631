package emcache

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newClockedCache returns a cache on a fake clock.
func newClockedCache(t testing.TB, cfg Config) (*Cache, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	cfg.Now = clk.Now
	return newTestCache(t, cfg), clk
}

// itemSize is an item's size as MaxItemSize counts it.
func itemSize(key, value string) int { return ItemOverhead + len(key) + len(value) }

// storedSize is the arena bytes, as Stats.Bytes counts them, of an item
// stored with flags 0 and no expiry, which has the smallest header.
func storedSize(key, value string) int {
	return offKey + uvarintLen(uint64(len(value))) + len(key) + len(value)
}

// indexedBytes sums the arena bytes of the items the index holds: what
// Stats.Bytes must say.
func indexedBytes(c *Cache) uint64 {
	var n uint64
	for _, s := range c.shards {
		s.mu.Lock()
		for _, e := range s.slots {
			if e != 0 {
				n += s.size(s.slotOff(e))
			}
		}
		s.mu.Unlock()
	}
	return n
}

// unixOf is an Item.Expires in Unix seconds, 0 for never.
// errorsOf lists the errors errors.Join joined in err.
func errorsOf(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func unixOf(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// mustSet stores value under key with client flags, expiring after secs
// seconds (0: never), and returns its CAS.
func mustSet(t testing.TB, c *Cache, key, value string, flags uint32, secs int64) uint64 {
	t.Helper()
	cas, err := c.Store([]byte(key), []byte(value), StoreOptions{Flags: flags, TTL: time.Duration(secs) * time.Second})
	require.NoError(t, err, "set %q", key)
	return cas
}

func mustGet(t testing.TB, c *Cache, key string) Item {
	t.Helper()
	it, err := c.Get([]byte(key))
	require.NoError(t, err, "get %q", key)
	return it
}

// crawlAll runs every shard's crawler step over its whole index, under the
// shard lock as the background crawler does.
func crawlAll(c *Cache) {
	now := c.clock()
	for _, s := range c.shards {
		s.mu.Lock()
		s.crawl(2*len(s.slots), now)
		s.mu.Unlock()
	}
}

// keyOps is every method that takes a key, reduced to its error.
var keyOps = []struct {
	name string
	run  func(c *Cache, key []byte) error
}{
	{"Get", func(c *Cache, k []byte) error { _, err := c.Get(k); return err }},
	{"GetAppend", func(c *Cache, k []byte) error { _, _, err := c.GetAppend(nil, k); return err }},
	{"GetAndTouch", func(c *Cache, k []byte) error { _, err := c.GetAndTouch(k, 10*time.Second); return err }},
	{"Set", func(c *Cache, k []byte) error { err := c.Set(k, []byte("1"), 0); return err }},
	{"Add", func(c *Cache, k []byte) error { err := c.Add(k, []byte("1"), 0); return err }},
	{"Replace", func(c *Cache, k []byte) error { err := c.Replace(k, []byte("1"), 0); return err }},
	{"Append", func(c *Cache, k []byte) error { err := c.Append(k, []byte("1")); return err }},
	{"Prepend", func(c *Cache, k []byte) error { err := c.Prepend(k, []byte("1")); return err }},
	{"CompareAndSwap", func(c *Cache, k []byte) error { err := c.CompareAndSwap(k, []byte("1"), 1, 0); return err }},
	{"Delete", func(c *Cache, k []byte) error { return c.Delete(k) }},
	{"Touch", func(c *Cache, k []byte) error { return c.Touch(k, 10*time.Second) }},
	{"Incr", func(c *Cache, k []byte) error { _, err := c.Incr(k, 1); return err }},
	{"Decr", func(c *Cache, k []byte) error { _, err := c.Decr(k, 1); return err }},
	{"Store", func(c *Cache, k []byte) error {
		_, err := c.Store(k, []byte("1"), StoreOptions{Flags: 1})
		return err
	}},
	{"GetOrLoad", func(c *Cache, k []byte) error {
		_, err := c.GetOrLoad(context.Background(), k, func(context.Context, []byte) ([]byte, time.Duration, error) {
			return []byte("1"), 0, nil
		})
		return err
	}},
	{"Update", func(c *Cache, k []byte) error {
		_, err := c.Update(k, func([]byte, bool) ([]byte, time.Duration, UpdateOp) { return []byte("1"), 0, UpdateSet })
		return err
	}},
	{"GetMulti", func(c *Cache, k []byte) error { _, err := c.GetMulti([][]byte{k}); return err }},
}

// cacheOps is every exported method of Cache that takes no key, reduced to
// its error (nil for those without one: they must not panic).
var cacheOps = []struct {
	name string
	run  func(c *Cache) error
}{
	{"FlushAll", func(c *Cache) error { return c.FlushAll(0) }},
	{"SetMaxBytes", func(c *Cache) error { return c.SetMaxBytes(64 << 20) }},
	{"Serve", func(c *Cache) error {
		s, err := c.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}})
		if err == nil {
			s.Close()
		}
		return err
	}},
	{"Close", func(c *Cache) error { return c.Close() }},
	{"Stats", func(c *Cache) error { c.Stats(); return nil }},
	{"ResetStats", func(c *Cache) error { c.ResetStats(); return nil }},
	{"Len", func(c *Cache) error { c.Len(); return nil }},
	{"MaxBytes", func(c *Cache) error { c.MaxBytes(); return nil }},
	{"MaxItemSize", func(c *Cache) error { c.MaxItemSize(); return nil }},
	{"Scan", func(c *Cache) error {
		for range c.Scan(nil) {
			return errors.New("an item in a cache that holds none")
		}
		return nil
	}},
	{"DeletePrefix", func(c *Cache) error { return c.DeletePrefix([]byte("k")) }},
	{"WarmStart", func(c *Cache) error { _, err := c.WarmStart(); return err }},
}

// TestCacheZeroAndClosed: every exported method of a zero Cache returns
// ErrNotInitialized, of a closed one ErrClosed, and none panics. The table
// must name every method, so that a new one is checked too.
func TestCacheZeroAndClosed(t *testing.T) {
	named := map[string]bool{}
	for _, op := range keyOps {
		named[op.name] = true
	}
	for _, op := range cacheOps {
		named[op.name] = true
	}
	typ := reflect.TypeFor[*Cache]()
	for i := range typ.NumMethod() {
		assert.True(t, named[typ.Method(i).Name], "Cache.%s is not in keyOps or cacheOps", typ.Method(i).Name)
	}

	closed := newTestCache(t, Config{MaxBytes: 1 << 20})
	require.NoError(t, closed.Close())
	caches := []struct {
		name string
		c    *Cache
		want error
	}{
		{"zero", &Cache{}, ErrNotInitialized},
		{"closed", closed, ErrClosed},
	}
	for _, cc := range caches {
		t.Run(cc.name, func(t *testing.T) {
			for _, op := range keyOps {
				assert.ErrorIs(t, op.run(cc.c, []byte("k")), cc.want, op.name)
			}
			for _, op := range cacheOps {
				err := op.run(cc.c)
				switch op.name {
				case "Close":
					if cc.want == ErrClosed {
						assert.NoError(t, err, "closing again is no error")
						continue
					}
				case "Stats", "ResetStats", "Len", "MaxBytes", "MaxItemSize", "Scan", "WarmStart":
					assert.NoError(t, err, op.name)
					continue
				}
				assert.ErrorIs(t, err, cc.want, op.name)
			}
			assert.Zero(t, cc.c.Len())
			assert.Zero(t, cc.c.Stats().CurrItems)
		})
	}
	var zero Cache
	_, err := zero.Get([]byte("k"))
	assert.ErrorIs(t, err, ErrNotInitialized, "var c emcache.Cache")
}

// TestCacheLen counts items without taking a shard lock.
func TestCacheLen(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20})
	assert.Zero(t, c.Len())
	for i := range 100 {
		mustSet(t, c, strconv.Itoa(i), "v", 0, 0)
	}
	mustSet(t, c, "0", "again", 0, 0)
	assert.Equal(t, 100, c.Len())
	require.NoError(t, c.Delete([]byte("5")))
	assert.Equal(t, 99, c.Len())
	assert.EqualValues(t, c.Len(), c.Stats().CurrItems)
	for _, s := range c.shards {
		s.mu.Lock() // a Len during a held lock still answers
	}
	assert.Equal(t, 99, c.Len())
	for _, s := range c.shards {
		s.mu.Unlock()
	}
	require.NoError(t, c.FlushAll(0))
	assert.Zero(t, c.Len())
}

func TestStatsHitRatio(t *testing.T) {
	assert.Zero(t, Stats{}.HitRatio(), "no reads")
	assert.Equal(t, 0.75, Stats{GetHits: 3, GetMisses: 1}.HitRatio())
	assert.Equal(t, 1.0, Stats{GetHits: 3}.HitRatio())
}

func TestCacheKeyLength(t *testing.T) {
	tests := []struct {
		name  string
		key   string
		valid bool
	}{
		{"empty", "", false},
		{"one byte", "k", true},
		{"250 bytes", strings.Repeat("k", MaxKeyLen), true},
		{"251 bytes", strings.Repeat("k", MaxKeyLen+1), false},
		{"1000 bytes", strings.Repeat("k", 1000), false},
		{"spaces", "a key with spaces", true},
		{"control bytes", "\x00\x01\t\r\n\x7f", true},
		{"NUL only", "\x00", true},
		{"high bytes", "\xff\xfe\x80 not utf-8", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache(t, Config{MaxBytes: 1 << 20})
			key := []byte(tt.key)
			if !tt.valid {
				for _, op := range keyOps {
					assert.ErrorIs(t, op.run(c, key), ErrKeyInvalid, op.name)
				}
				assert.Zero(t, c.Stats().CurrItems)
				return
			}
			cas := mustSet(t, c, tt.key, "v", 5, 0)
			it := mustGet(t, c, tt.key)
			assert.Equal(t, "v", string(it.Value))
			assert.Equal(t, uint32(5), it.Flags)
			assert.Equal(t, cas, it.CAS)
			found, err := c.GetMulti([][]byte{key})
			require.NoError(t, err)
			assert.Contains(t, found, tt.key)
			require.NoError(t, c.Delete(key))
			_, err = c.Get(key)
			assert.ErrorIs(t, err, ErrNotFound)
		})
	}
}

// TestCacheKeysAreDistinct checks that keys differing only in bytes the text
// protocol cannot carry, or in length, are separate items.
func TestCacheKeysAreDistinct(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20})
	keys := []string{"a", "a ", " a", "a\x00", "\x00a", "A", strings.Repeat("a", 250), strings.Repeat("a", 249)}
	for i, k := range keys {
		mustSet(t, c, k, strconv.Itoa(i), 0, 0)
	}
	for i, k := range keys {
		assert.Equal(t, strconv.Itoa(i), string(mustGet(t, c, k).Value), "key %q", k)
	}
}

// TestCacheTTL checks that a Go TTL is a duration whatever its length:
// below a second it still expires (rounded up to the clock's second), past
// memcached's 30-day boundary it is not read as a Unix time, and past the
// 32-bit expiry it saturates.
func TestCacheTTL(t *testing.T) {
	const base = 1_800_000_000 // newFakeClock's start, in Unix seconds
	const never = time.Duration(-1)
	const day = 24 * time.Hour
	const year = 365 * day
	tests := []struct {
		name string
		ttl  time.Duration
		// gone: the item is already expired when stored.
		gone bool
		// wantExp is Item.Expires, in Unix seconds, while the item is live.
		wantExp int64
		// lastLive is the latest clock offset at which the item must be
		// readable, expireAt the first at which it must be gone (never: it
		// does not expire).
		lastLive, expireAt time.Duration
	}{
		{name: "zero never expires", ttl: 0, wantExp: 0, lastLive: 10 * year, expireAt: never},
		{name: "one nanosecond rounds up to a second", ttl: time.Nanosecond, wantExp: base + 1, lastLive: time.Second - time.Nanosecond, expireAt: time.Second},
		{name: "half a second rounds up", ttl: 500 * time.Millisecond, wantExp: base + 1, lastLive: 999 * time.Millisecond, expireAt: time.Second},
		{name: "one second", ttl: time.Second, wantExp: base + 1, lastLive: time.Second - time.Nanosecond, expireAt: time.Second},
		{name: "a second and a half", ttl: 1500 * time.Millisecond, wantExp: base + 2, lastLive: 2*time.Second - time.Nanosecond, expireAt: 2 * time.Second},
		{name: "100 seconds", ttl: 100 * time.Second, wantExp: base + 100, lastLive: 100*time.Second - time.Nanosecond, expireAt: 100 * time.Second},
		{name: "30 days", ttl: 30 * day, wantExp: base + relativeExptimeMax, lastLive: 30*day - time.Nanosecond, expireAt: 30 * day},
		{name: "30 days and a second", ttl: 30*day + time.Second, wantExp: base + relativeExptimeMax + 1, lastLive: 30 * day, expireAt: 30*day + time.Second},
		{name: "31 days is not a time in 1970", ttl: 31 * day, wantExp: base + 31*86400, lastLive: 31*day - time.Nanosecond, expireAt: 31 * day},
		{name: "10 years", ttl: 10 * year, wantExp: base + 10*365*86400, lastLive: 10*year - time.Nanosecond, expireAt: 10 * year},
		{name: "beyond 2106 saturates", ttl: 200 * year, wantExp: math.MaxUint32, lastLive: 10 * year, expireAt: never},
		{name: "largest duration saturates", ttl: math.MaxInt64, wantExp: math.MaxUint32, lastLive: 10 * year, expireAt: never},
		{name: "negative is expired at once", ttl: -time.Nanosecond, gone: true},
		{name: "most negative", ttl: math.MinInt64, gone: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
			start := clk.Now()
			require.NoError(t, c.Set([]byte("k"), []byte("v"), tt.ttl), "a store succeeds whatever its TTL")
			if tt.gone {
				_, err := c.Get([]byte("k"))
				assert.ErrorIs(t, err, ErrNotFound)
				return
			}
			it := mustGet(t, c, "k")
			assert.Equal(t, tt.wantExp, unixOf(it.Expires))
			clk.Set(start.Add(tt.lastLive))
			it = mustGet(t, c, "k")
			assert.Equal(t, tt.wantExp, unixOf(it.Expires))
			if tt.expireAt == never {
				return
			}
			clk.Set(start.Add(tt.expireAt))
			_, err := c.Get([]byte("k"))
			assert.ErrorIs(t, err, ErrNotFound, "expired at exactly its deadline second")
		})
	}
}

// TestExpiryExptime checks the protocols' reading of memcached's exptime,
// which the Go API never sees: up to 30 days relative seconds, beyond an
// absolute Unix time, negative or past already expired.
func TestExpiryExptime(t *testing.T) {
	const now = 1_800_000_000
	tests := []struct {
		name    string
		exptime int64
		want    uint32 // 0: never; at most now: already expired
	}{
		{"zero never expires", 0, 0},
		{"relative one second", 1, now + 1},
		{"relative maximum is 30 days", relativeExptimeMax, now + relativeExptimeMax},
		{"over 30 days is an absolute time long past", relativeExptimeMax + 1, relativeExptimeMax + 1},
		{"absolute future", now + 500, now + 500},
		{"absolute far future", 4_000_000_000, 4_000_000_000},
		{"beyond 32 bits saturates", math.MaxInt64, math.MaxUint32},
		{"absolute now", now, now},
		{"negative", -1, 1},
		{"most negative", math.MinInt64, 1},
	}
	for _, tt := range tests {
		got := expiry(tt.exptime, now)
		assert.Equal(t, tt.want, got, tt.name)
		if tt.want != 0 && tt.want <= now {
			assert.True(t, expired(got, now), tt.name)
		}
	}
}

// TestCacheTTLEveryCommand checks that every command taking a TTL converts
// it the same way.
func TestCacheTTLEveryCommand(t *testing.T) {
	const base = 1_800_000_000
	ops := []struct {
		name string
		run  func(t *testing.T, c *Cache, key []byte, ttl time.Duration) error
	}{
		{"Set", func(_ *testing.T, c *Cache, k []byte, ttl time.Duration) error {
			return c.Set(k, []byte("v"), ttl)
		}},
		{"Add", func(t *testing.T, c *Cache, k []byte, ttl time.Duration) error {
			require.NoError(t, c.Delete(k))
			return c.Add(k, []byte("v"), ttl)
		}},
		{"Replace", func(_ *testing.T, c *Cache, k []byte, ttl time.Duration) error {
			return c.Replace(k, []byte("v"), ttl)
		}},
		{"CompareAndSwap", func(t *testing.T, c *Cache, k []byte, ttl time.Duration) error {
			it, err := c.Get(k)
			require.NoError(t, err)
			return c.CompareAndSwap(k, []byte("v"), it.CAS, ttl)
		}},
		{"Store", func(_ *testing.T, c *Cache, k []byte, ttl time.Duration) error {
			_, err := c.Store(k, []byte("v"), StoreOptions{Flags: 3, TTL: ttl})
			return err
		}},
		{"Touch", func(_ *testing.T, c *Cache, k []byte, ttl time.Duration) error { return c.Touch(k, ttl) }},
		{"GetAndTouch", func(_ *testing.T, c *Cache, k []byte, ttl time.Duration) error {
			_, err := c.GetAndTouch(k, ttl)
			return err
		}},
	}
	ttls := []struct {
		name    string
		ttl     time.Duration
		wantExp int64 // 0: never; -1: gone at once
	}{
		{"never", 0, 0},
		{"a minute", time.Minute, base + 60},
		{"a millisecond", time.Millisecond, base + 1},
		{"40 days", 40 * 24 * time.Hour, base + 40*86400},
		{"negative", -time.Second, -1},
	}
	for _, op := range ops {
		for _, e := range ttls {
			t.Run(op.name+"/"+e.name, func(t *testing.T) {
				c, _ := newClockedCache(t, Config{MaxBytes: 1 << 20})
				mustSet(t, c, "k", "v", 0, 0)
				require.NoError(t, op.run(t, c, []byte("k"), e.ttl))
				it, err := c.Get([]byte("k"))
				if e.wantExp == -1 {
					assert.ErrorIs(t, err, ErrNotFound)
					return
				}
				require.NoError(t, err)
				assert.Equal(t, e.wantExp, unixOf(it.Expires))
			})
		}
	}
}

func TestCacheIncrDecr(t *testing.T) {
	tests := []struct {
		name      string
		value     string
		incr      bool
		delta     uint64
		want      uint64
		wantValue string
		wantErr   error
	}{
		{name: "incr", value: "5", incr: true, delta: 1, want: 6, wantValue: "6"},
		{name: "incr by zero", value: "7", incr: true, delta: 0, want: 7, wantValue: "7"},
		{name: "incr grows one digit", value: "9", incr: true, delta: 1, want: 10, wantValue: "10"},
		{name: "incr grows two digits", value: "99", incr: true, delta: 901, want: 1000, wantValue: "1000"},
		{name: "incr to max", value: "18446744073709551614", incr: true, delta: 1, want: math.MaxUint64, wantValue: "18446744073709551615"},
		{name: "incr wraps at 2^64", value: "18446744073709551615", incr: true, delta: 2, want: 1, wantValue: "1" + strings.Repeat(" ", 19)},
		{name: "incr max delta wraps", value: "1", incr: true, delta: math.MaxUint64, want: 0, wantValue: "0"},
		{name: "incr leading spaces", value: "  5", incr: true, delta: 1, want: 6, wantValue: "6  "},
		{name: "incr after padding decr", value: "9 ", incr: true, delta: 1, want: 10, wantValue: "10"},
		{name: "incr leading zeros", value: "007", incr: true, delta: 1, want: 8, wantValue: "8  "},
		{name: "decr", value: "10", delta: 3, want: 7, wantValue: "7 "},
		{name: "decr pads shorter number", value: "10", delta: 1, want: 9, wantValue: "9 "},
		{name: "decr pads two digits", value: "1000", delta: 1, want: 999, wantValue: "999 "},
		{name: "decr stops at zero", value: "5", delta: 10, want: 0, wantValue: "0"},
		{name: "decr max delta", value: "18446744073709551615", delta: math.MaxUint64, want: 0, wantValue: "0" + strings.Repeat(" ", 19)},
		{name: "decr zero", value: "0", delta: 1, want: 0, wantValue: "0"},
		{name: "decr leading spaces", value: " 12", delta: 2, want: 10, wantValue: "10 "},
		// Regression: padding longer than a uint64's 20 digits panicked.
		{name: "decr long padding", value: "1" + strings.Repeat(" ", 30), delta: 1, want: 0, wantValue: "0" + strings.Repeat(" ", 30)},
		{name: "letters", value: "abc", incr: true, delta: 1, wantErr: ErrNotNumeric},
		{name: "decr letters", value: "abc", delta: 1, wantErr: ErrNotNumeric},
		{name: "empty", value: "", incr: true, delta: 1, wantErr: ErrNotNumeric},
		{name: "only spaces", value: "   ", incr: true, delta: 1, wantErr: ErrNotNumeric},
		{name: "negative", value: "-1", incr: true, delta: 1, wantErr: ErrNotNumeric},
		{name: "digits then letters", value: "12abc", incr: true, delta: 1, wantErr: ErrNotNumeric},
		{name: "2^64 overflows", value: "18446744073709551616", incr: true, delta: 1, wantErr: ErrNotNumeric},
		{name: "21 digits", value: "123456789012345678901", delta: 1, wantErr: ErrNotNumeric},
		// memcached's strtoull stops at the first space and takes the number.
		{name: "digits, space, letters", value: "12 abc", incr: true, delta: 1, want: 13, wantValue: "13    "},
		{name: "leading zeros past 20 digits", value: "000000000000000000000012", incr: true, delta: 1, want: 13, wantValue: "13" + strings.Repeat(" ", 22)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newClockedCache(t, Config{MaxBytes: 1 << 20})
			key := []byte("n")
			oldCAS := mustSet(t, c, "n", tt.value, 42, 1000)
			var got uint64
			var err error
			if tt.incr {
				got, err = c.Incr(key, tt.delta)
			} else {
				got, err = c.Decr(key, tt.delta)
			}
			it := mustGet(t, c, "n")
			assert.Equal(t, uint32(42), it.Flags, "flags kept")
			assert.Equal(t, int64(1_800_000_000+1000), unixOf(it.Expires), "expiry kept")
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				assert.Equal(t, tt.value, string(it.Value), "value unchanged")
				assert.Equal(t, oldCAS, it.CAS, "CAS unchanged")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.wantValue, string(it.Value))
			assert.NotEqual(t, oldCAS, it.CAS, "incr/decr give the item a new CAS")
			assert.NotZero(t, it.CAS)
		})
	}
}

func TestCacheIncrDecrMissing(t *testing.T) {
	c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
	_, err := c.Incr([]byte("none"), 1)
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = c.Decr([]byte("none"), 1)
	assert.ErrorIs(t, err, ErrNotFound)
	mustSet(t, c, "exp", "5", 0, 1)
	clk.Advance(time.Second)
	_, err = c.Incr([]byte("exp"), 1)
	assert.ErrorIs(t, err, ErrNotFound, "expired counts as missing")
}

func TestCacheAppendPrepend(t *testing.T) {
	tests := []struct {
		name    string
		prepend bool
		add     string
		want    string
	}{
		{"append", false, "-end", "mid-end"},
		{"prepend", true, "start-", "start-mid"},
		{"append empty", false, "", "mid"},
		{"prepend empty", true, "", "mid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
			key := []byte("k")
			oldCAS := mustSet(t, c, "k", "mid", 7, 100)
			mode := ModeAppend
			if tt.prepend {
				mode = ModePrepend
			}
			op := func(key, value []byte) (uint64, error) { return c.Store(key, value, StoreOptions{Mode: mode}) }
			cas, err := op(key, []byte(tt.add))
			require.NoError(t, err)
			assert.NotEqual(t, oldCAS, cas, "a new CAS")
			it := mustGet(t, c, "k")
			assert.Equal(t, tt.want, string(it.Value))
			assert.Equal(t, uint32(7), it.Flags, "flags kept")
			assert.Equal(t, int64(1_800_000_100), unixOf(it.Expires), "expiry kept")
			assert.Equal(t, cas, it.CAS)

			clk.Advance(100 * time.Second)
			_, err = c.Get(key)
			assert.ErrorIs(t, err, ErrNotFound, "still expires at the original time")
			_, err = op(key, []byte("x"))
			assert.ErrorIs(t, err, ErrNotStored, "expired counts as missing")
			_, err = op([]byte("missing"), []byte("x"))
			assert.ErrorIs(t, err, ErrNotStored)
			_, err = c.Get([]byte("missing"))
			assert.ErrorIs(t, err, ErrNotFound, "a failed append creates nothing")
		})
	}
}

func TestCacheAdd(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, c *Cache, clk *fakeClock)
		wantErr error
		want    string
	}{
		{"missing", func(*testing.T, *Cache, *fakeClock) {}, nil, "new"},
		{"live", func(t *testing.T, c *Cache, _ *fakeClock) { mustSet(t, c, "k", "old", 0, 0) }, ErrNotStored, "old"},
		{"live with ttl", func(t *testing.T, c *Cache, clk *fakeClock) {
			mustSet(t, c, "k", "old", 0, 10)
			clk.Advance(9 * time.Second)
		}, ErrNotStored, "old"},
		{"expired", func(t *testing.T, c *Cache, clk *fakeClock) {
			mustSet(t, c, "k", "old", 0, 10)
			clk.Advance(10 * time.Second)
		}, nil, "new"},
		{"deleted", func(t *testing.T, c *Cache, _ *fakeClock) {
			mustSet(t, c, "k", "old", 0, 0)
			require.NoError(t, c.Delete([]byte("k")))
		}, nil, "new"},
		{"flushed", func(t *testing.T, c *Cache, _ *fakeClock) {
			mustSet(t, c, "k", "old", 0, 0)
			c.FlushAll(0)
		}, nil, "new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
			tt.prepare(t, c, clk)
			cas, err := c.Store([]byte("k"), []byte("new"), StoreOptions{Mode: ModeAdd})
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				assert.Zero(t, cas)
			} else {
				require.NoError(t, err)
				assert.Equal(t, cas, mustGet(t, c, "k").CAS)
			}
			assert.Equal(t, tt.want, string(mustGet(t, c, "k").Value))
		})
	}
}

func TestCacheReplace(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, c *Cache, clk *fakeClock)
		wantErr error
	}{
		{"missing", func(*testing.T, *Cache, *fakeClock) {}, ErrNotStored},
		{"live", func(t *testing.T, c *Cache, _ *fakeClock) { mustSet(t, c, "k", "old", 0, 0) }, nil},
		{"expired", func(t *testing.T, c *Cache, clk *fakeClock) {
			mustSet(t, c, "k", "old", 0, 5)
			clk.Advance(5 * time.Second)
		}, ErrNotStored},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
			tt.prepare(t, c, clk)
			_, err := c.Store([]byte("k"), []byte("new"), StoreOptions{Mode: ModeReplace, Flags: 9})
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				_, err = c.Get([]byte("k"))
				assert.ErrorIs(t, err, ErrNotFound, "replace creates nothing")
				return
			}
			require.NoError(t, err)
			it := mustGet(t, c, "k")
			assert.Equal(t, "new", string(it.Value))
			assert.Equal(t, uint32(9), it.Flags)
		})
	}
}

func TestCacheCompareAndSwap(t *testing.T) {
	tests := []struct {
		name string
		// prepare stores what the test needs and returns the CAS to offer.
		prepare func(t *testing.T, c *Cache, clk *fakeClock) uint64
		wantErr error
		want    string // the value afterwards; "" = no item
	}{
		{"missing", func(*testing.T, *Cache, *fakeClock) uint64 { return 1 }, ErrNotFound, ""},
		{"match", func(t *testing.T, c *Cache, _ *fakeClock) uint64 { return mustSet(t, c, "k", "old", 0, 0) }, nil, "new"},
		{"mismatch", func(t *testing.T, c *Cache, _ *fakeClock) uint64 { return mustSet(t, c, "k", "old", 0, 0) + 1 }, ErrExists, "old"},
		{"zero never matches", func(t *testing.T, c *Cache, _ *fakeClock) uint64 {
			mustSet(t, c, "k", "old", 0, 0)
			return 0
		}, ErrExists, "old"},
		{"changed since read", func(t *testing.T, c *Cache, _ *fakeClock) uint64 {
			cas := mustSet(t, c, "k", "old", 0, 0)
			mustSet(t, c, "k", "other", 0, 0)
			return cas
		}, ErrExists, "other"},
		{"touched since read keeps the CAS", func(t *testing.T, c *Cache, _ *fakeClock) uint64 {
			cas := mustSet(t, c, "k", "old", 0, 0)
			require.NoError(t, c.Touch([]byte("k"), 100*time.Second))
			return cas
		}, nil, "new"},
		{"incremented since read", func(t *testing.T, c *Cache, _ *fakeClock) uint64 {
			cas := mustSet(t, c, "k", "1", 0, 0)
			_, err := c.Incr([]byte("k"), 1)
			require.NoError(t, err)
			return cas
		}, ErrExists, "2"},
		{"deleted since read", func(t *testing.T, c *Cache, _ *fakeClock) uint64 {
			cas := mustSet(t, c, "k", "old", 0, 0)
			require.NoError(t, c.Delete([]byte("k")))
			return cas
		}, ErrNotFound, ""},
		{"expired since read", func(t *testing.T, c *Cache, clk *fakeClock) uint64 {
			cas := mustSet(t, c, "k", "old", 0, 3)
			clk.Advance(3 * time.Second)
			return cas
		}, ErrNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
			offer := tt.prepare(t, c, clk)
			var cas uint64
			var err error
			if offer == 0 {
				// 0 is no condition to Store; CompareAndSwap takes it as a CAS.
				err = c.CompareAndSwap([]byte("k"), []byte("new"), offer, 0)
			} else {
				cas, err = c.Store([]byte("k"), []byte("new"), StoreOptions{Flags: 3, CAS: offer})
			}
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				assert.Zero(t, cas)
			} else {
				require.NoError(t, err)
				assert.NotEqual(t, offer, cas)
			}
			it, err := c.Get([]byte("k"))
			if tt.want == "" {
				assert.ErrorIs(t, err, ErrNotFound)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(it.Value))
			if tt.wantErr == nil {
				assert.Equal(t, cas, it.CAS)
				assert.Equal(t, uint32(3), it.Flags)
			}
		})
	}
}

// TestCacheCASUnique checks that every store and arithmetic change hands out
// a fresh nonzero CAS, across shards.
func TestCacheCASUnique(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 8 << 20, MaxItemSize: MinMaxItemSize})
	require.Greater(t, len(c.shards), 1)
	seen := map[uint64]string{}
	note := func(what string, cas uint64) {
		t.Helper()
		require.NotZero(t, cas, what)
		prev, dup := seen[cas]
		require.False(t, dup, "%s reuses the CAS of %s", what, prev)
		seen[cas] = what
	}
	for i := range 2000 {
		k := fmt.Sprintf("k%d", i)
		note("set "+k, mustSet(t, c, k, "1", 0, 0))
		cas, err := c.Store([]byte(k), []byte("0"), StoreOptions{Mode: ModeAppend})
		require.NoError(t, err)
		note("append "+k, cas)
		_, err = c.Incr([]byte(k), 1)
		require.NoError(t, err)
		note("incr "+k, mustGet(t, c, k).CAS)
	}
}

func TestCacheNoCAS(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20, NoCAS: true})
	k := []byte("k")
	ops := []struct {
		name string
		cas  func() (uint64, error)
	}{
		{"Store", func() (uint64, error) { return c.Store(k, []byte("1"), StoreOptions{}) }},
		{"Get", func() (uint64, error) { it, err := c.Get(k); return it.CAS, err }},
		{"GetAppend", func() (uint64, error) { _, it, err := c.GetAppend(nil, k); return it.CAS, err }},
		{"GetAndTouch", func() (uint64, error) { it, err := c.GetAndTouch(k, 0); return it.CAS, err }},
		{"GetMulti", func() (uint64, error) { m, err := c.GetMulti([][]byte{k}); return m["k"].CAS, err }},
		{"Replace", func() (uint64, error) { return c.Store(k, []byte("1"), StoreOptions{Mode: ModeReplace}) }},
		{"Append", func() (uint64, error) { return c.Store(k, []byte("0"), StoreOptions{Mode: ModeAppend}) }},
		{"Prepend", func() (uint64, error) { return c.Store(k, []byte("1"), StoreOptions{Mode: ModePrepend}) }},
		{"Get after Incr", func() (uint64, error) {
			if _, err := c.Incr(k, 1); err != nil {
				return 1, err
			}
			it, err := c.Get(k)
			return it.CAS, err
		}},
		{"view", func() (uint64, error) {
			var got uint64 = 1
			c.view(k, false, 0, func(_ []byte, _, _ uint32, cas uint64) { got = cas })
			return got, nil
		}},
		{"Add", func() (uint64, error) {
			require.NoError(t, c.Delete(k))
			return c.Store(k, []byte("1"), StoreOptions{Mode: ModeAdd})
		}},
	}
	for _, op := range ops {
		cas, err := op.cas()
		require.NoError(t, err, op.name)
		assert.Zero(t, cas, op.name)
	}
	// As memcached -C: without CAS values no CAS matches, 0 included.
	for _, cas := range []uint64{0, 1} {
		err := c.CompareAndSwap(k, []byte("x"), cas, 0)
		assert.ErrorIs(t, err, ErrExists, "CAS %d", cas)
	}
}

func TestCacheTouch(t *testing.T) {
	tests := []struct {
		name    string
		gat     bool
		ttl     time.Duration
		wantExp int64         // while live
		goneAt  time.Duration // -1: never within the test
	}{
		{"touch", false, 100 * time.Second, 1_800_000_100, 100 * time.Second},
		{"touch beyond 30 days", false, 40 * 24 * time.Hour, 1_800_000_000 + 40*86400, 40 * 24 * time.Hour},
		{"touch zero removes expiry", false, 0, 0, -1},
		{"touch negative expires", false, -1, 0, 0},
		{"gat", true, 100 * time.Second, 1_800_000_100, 100 * time.Second},
		{"gat beyond 30 days", true, 40 * 24 * time.Hour, 1_800_000_000 + 40*86400, 40 * 24 * time.Hour},
		{"gat zero removes expiry", true, 0, 0, -1},
		{"gat negative expires", true, -1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
			start := clk.Now()
			cas := mustSet(t, c, "k", "v", 4, 10)
			if tt.gat {
				it, err := c.GetAndTouch([]byte("k"), tt.ttl)
				require.NoError(t, err)
				assert.Equal(t, "v", string(it.Value))
				assert.Equal(t, uint32(4), it.Flags)
				assert.Equal(t, cas, it.CAS, "gat keeps the CAS")
				if tt.goneAt != 0 {
					assert.Equal(t, tt.wantExp, unixOf(it.Expires), "gat returns the new expiry")
				}
			} else {
				require.NoError(t, c.Touch([]byte("k"), tt.ttl))
			}
			if tt.goneAt == 0 {
				_, err := c.Get([]byte("k"))
				assert.ErrorIs(t, err, ErrNotFound)
				return
			}
			clk.Advance(10 * time.Second) // the old expiry no longer applies
			it := mustGet(t, c, "k")
			assert.Equal(t, tt.wantExp, unixOf(it.Expires))
			assert.Equal(t, cas, it.CAS, "touch keeps the CAS")
			if tt.goneAt < 0 {
				clk.Advance(100 * 365 * 24 * time.Hour)
				mustGet(t, c, "k")
				return
			}
			clk.Set(start.Add(tt.goneAt - time.Nanosecond))
			mustGet(t, c, "k")
			clk.Set(start.Add(tt.goneAt))
			_, err := c.Get([]byte("k"))
			assert.ErrorIs(t, err, ErrNotFound)
		})
	}
}

func TestCacheTouchMissing(t *testing.T) {
	c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
	assert.ErrorIs(t, c.Touch([]byte("none"), 10*time.Second), ErrNotFound)
	_, err := c.GetAndTouch([]byte("none"), 10*time.Second)
	assert.ErrorIs(t, err, ErrNotFound)
	mustSet(t, c, "k", "v", 0, 1)
	clk.Advance(time.Second)
	assert.ErrorIs(t, c.Touch([]byte("k"), 100*time.Second), ErrNotFound, "an expired item cannot be revived")
	_, err = c.GetAndTouch([]byte("k"), 100*time.Second)
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestCacheFlushAllNow(t *testing.T) {
	for _, delay := range []time.Duration{0, -5 * time.Second} {
		t.Run(delay.String(), func(t *testing.T) {
			c, _ := newClockedCache(t, Config{MaxBytes: 4 << 20, MaxItemSize: MinMaxItemSize})
			for i := range 1000 {
				mustSet(t, c, fmt.Sprintf("k%d", i), "v", 0, 0)
			}
			c.FlushAll(delay)
			for i := range 1000 {
				_, err := c.Get(fmt.Appendf(nil, "k%d", i))
				require.ErrorIs(t, err, ErrNotFound)
			}
			st := c.Stats()
			assert.Zero(t, st.CurrItems)
			assert.Zero(t, st.Bytes)
			assert.Equal(t, uint64(1), st.CmdFlush)
			mustSet(t, c, "k1", "after", 0, 0)
			assert.Equal(t, "after", string(mustGet(t, c, "k1").Value))
		})
	}
}

func TestCacheFlushAllDelayed(t *testing.T) {
	c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
	start := clk.Now()
	mustSet(t, c, "before", "v", 0, 0)
	c.FlushAll(10 * time.Second)
	assert.Equal(t, uint64(1), c.Stats().CmdFlush)
	mustSet(t, c, "pending", "v", 0, 0)

	clk.Set(start.Add(10*time.Second - time.Nanosecond))
	mustGet(t, c, "before")
	mustGet(t, c, "pending")
	mustSet(t, c, "late", "v", 0, 0)

	clk.Set(start.Add(10 * time.Second))
	for _, k := range []string{"before", "pending", "late"} {
		_, err := c.Get([]byte(k))
		assert.ErrorIs(t, err, ErrNotFound, "%s was stored before the deadline", k)
	}
	mustSet(t, c, "after", "v", 0, 0)
	clk.Advance(time.Hour)
	mustGet(t, c, "after")
}

// TestCacheFlushAllDelayedFirstOpStores checks that when the first command
// after the deadline is a store, that store survives the flush it triggers.
func TestCacheFlushAllDelayedFirstOpStores(t *testing.T) {
	c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
	mustSet(t, c, "old", "v", 0, 0)
	c.FlushAll(5 * time.Second)
	clk.Advance(time.Minute)
	mustSet(t, c, "new", "v", 0, 0)
	mustGet(t, c, "new")
	_, err := c.Get([]byte("old"))
	assert.ErrorIs(t, err, ErrNotFound)
	clk.Advance(time.Minute)
	mustGet(t, c, "new")
}

// TestCacheFlushAllHugeDelay is a regression test: rounding a delay near
// the largest Duration up to whole seconds must not overflow into a deadline
// in the past that flushes at once.
func TestCacheFlushAllHugeDelay(t *testing.T) {
	for _, delay := range []time.Duration{math.MaxInt64, math.MaxInt64 - time.Second/2} {
		t.Run(delay.String(), func(t *testing.T) {
			c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
			mustSet(t, c, "k", "v", 0, 0)
			c.FlushAll(delay)
			clk.Advance(100 * 365 * 24 * time.Hour)
			_, err := c.Get([]byte("k"))
			assert.NoError(t, err, "a flush ~292 years away invalidates nothing yet")
		})
	}
}

func TestCacheFlushAllDelayedReplacedByNow(t *testing.T) {
	c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
	mustSet(t, c, "a", "v", 0, 0)
	c.FlushAll(time.Hour)
	c.FlushAll(0)
	mustSet(t, c, "b", "v", 0, 0)
	clk.Advance(2 * time.Hour)
	mustGet(t, c, "b")
}

func TestCacheTooLarge(t *testing.T) {
	const maxItem = MinMaxItemSize
	key250 := strings.Repeat("k", MaxKeyLen)
	fit := func(key string) int { return maxItem - ItemOverhead - len(key) }
	stores := []struct {
		name string
		run  func(c *Cache, key, value []byte) error
		// existing: the command needs a live item first.
		existing bool
		// removesOld: a refused store drops the old item (only set does).
		removesOld bool
	}{
		{"Set", func(c *Cache, k, v []byte) error { err := c.Set(k, v, 0); return err }, false, true},
		{"Set over existing", func(c *Cache, k, v []byte) error { err := c.Set(k, v, 0); return err }, true, true},
		{"Add", func(c *Cache, k, v []byte) error { err := c.Add(k, v, 0); return err }, false, false},
		{"Replace", func(c *Cache, k, v []byte) error { err := c.Replace(k, v, 0); return err }, true, false},
		{"CompareAndSwap", func(c *Cache, k, v []byte) error {
			it, err := c.Get(k)
			if err != nil {
				return err
			}
			err = c.CompareAndSwap(k, v, it.CAS, 0)
			return err
		}, true, false},
	}
	for _, key := range []string{"k", key250} {
		for _, st := range stores {
			for _, over := range []int{0, 1} {
				name := fmt.Sprintf("%s/key%d/size%+d", st.name, len(key), over)
				t.Run(name, func(t *testing.T) {
					c := newTestCache(t, Config{MaxBytes: 1 << 20, MaxItemSize: maxItem})
					require.Equal(t, maxItem, c.MaxItemSize())
					if st.existing {
						mustSet(t, c, key, "old", 0, 0)
					}
					value := bytes.Repeat([]byte("v"), fit(key)+over)
					require.Equal(t, maxItem+over, ItemOverhead+len(key)+len(value))
					err := st.run(c, []byte(key), value)
					if over == 0 {
						require.NoError(t, err)
						assert.Equal(t, value, mustGet(t, c, key).Value)
						return
					}
					assert.ErrorIs(t, err, ErrTooLarge)
					assert.Equal(t, uint64(1), c.Stats().StoreTooLarge)
					it, err := c.Get([]byte(key))
					switch {
					case !st.existing || st.removesOld:
						assert.ErrorIs(t, err, ErrNotFound)
					default:
						require.NoError(t, err)
						assert.Equal(t, "old", string(it.Value))
					}
				})
			}
		}
	}
}

// TestCacheItemSizeLikeMemcached pins the largest value memcached 1.6.18
// stores under a 3-byte key with the default 1 MiB limit, measured against
// it: client flags cost 4 bytes, and -C (no CAS) gives 8 back.
func TestCacheItemSizeLikeMemcached(t *testing.T) {
	tests := []struct {
		flags   uint32
		noCAS   bool
		largest int
	}{
		{0, false, 1048514},
		{7, false, 1048510},
		{0, true, 1048522},
		{7, true, 1048518},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("flags%d/nocas%v", tt.flags, tt.noCAS), func(t *testing.T) {
			c := newTestCache(t, Config{MaxBytes: 16 << 20, NoCAS: tt.noCAS})
			require.Equal(t, DefaultMaxItemSize, c.MaxItemSize())
			value := make([]byte, tt.largest+1)
			_, err := c.Store([]byte("abc"), value[:tt.largest], StoreOptions{Flags: tt.flags})
			require.NoError(t, err)
			_, err = c.Store([]byte("abc"), value, StoreOptions{Flags: tt.flags})
			assert.ErrorIs(t, err, ErrTooLarge)
		})
	}
}

func TestCacheTooLargeAppend(t *testing.T) {
	const maxItem = MinMaxItemSize
	for _, prepend := range []bool{false, true} {
		t.Run(fmt.Sprint("prepend=", prepend), func(t *testing.T) {
			c := newTestCache(t, Config{MaxBytes: 1 << 20, MaxItemSize: maxItem})
			old := strings.Repeat("o", 500)
			mustSet(t, c, "k", old, 0, 0)
			op := c.Append
			if prepend {
				op = c.Prepend
			}
			// The combined item is what must fit.
			err := op([]byte("k"), bytes.Repeat([]byte("x"), maxItem-itemSize("k", old)+1))
			assert.ErrorIs(t, err, ErrTooLarge)
			assert.Equal(t, old, string(mustGet(t, c, "k").Value), "the old item stays")
			err = op([]byte("k"), bytes.Repeat([]byte("x"), maxItem-itemSize("k", old)))
			require.NoError(t, err)
			assert.Len(t, mustGet(t, c, "k").Value, maxItem-itemSize("k", ""))
		})
	}
}

// fillNoEvict stores distinct keys until stores fail with ErrNoMemory and
// returns the values stored and the keys refused.
func fillNoEvict(t *testing.T, c *Cache, n int) (stored map[string]string, refused []string) {
	t.Helper()
	stored = map[string]string{}
	for i := range n {
		k := fmt.Sprintf("key%05d", i)
		v := fmt.Sprintf("%s=%090d", k, i)
		err := c.Set([]byte(k), []byte(v), 0)
		if errors.Is(err, ErrNoMemory) {
			refused = append(refused, k)
			continue
		}
		require.NoError(t, err)
		stored[k] = v
	}
	return stored, refused
}

func TestCacheNoEvict(t *testing.T) {
	const maxBytes = 64 << 10
	c := newTestCache(t, Config{MaxBytes: maxBytes, MaxItemSize: MinMaxItemSize, NoEvict: true})
	// Four times what fits, so that every shard fills.
	stored, refused := fillNoEvict(t, c, 4*maxBytes/itemSize("key00000", strings.Repeat("v", 99)))
	require.NotEmpty(t, refused, "a full NoEvict cache refuses stores")
	st := c.Stats()
	assert.Zero(t, st.Evictions)
	assert.Equal(t, uint64(len(refused)), st.StoreNoMemory)
	assert.Equal(t, uint64(len(stored)), st.CurrItems)
	assert.LessOrEqual(t, st.Bytes, uint64(maxBytes))
	assert.Greater(t, st.Bytes, uint64(maxBytes/2), "most of the memory is usable")
	for k, v := range stored {
		it, err := c.Get([]byte(k))
		require.NoError(t, err, "no stored item is lost: %s", k)
		require.Equal(t, v, string(it.Value))
	}
	for _, k := range refused {
		_, err := c.Get([]byte(k))
		require.ErrorIs(t, err, ErrNotFound)
	}

	// A refused Set drops the key's old value (memcached does, so that a
	// client never reads the value it just failed to overwrite); the
	// other items are untouched.
	full := c.shardFor(xxhash.Sum64([]byte(refused[0])))
	var victim string
	for k := range stored {
		if c.shardFor(xxhash.Sum64([]byte(k))) == full {
			victim = k
			break
		}
	}
	require.NotEmpty(t, victim)
	big := bytes.Repeat([]byte("b"), MinMaxItemSize-itemSize(victim, ""))
	err := c.Set([]byte(victim), big, 0)
	require.ErrorIs(t, err, ErrNoMemory)
	_, err = c.Get([]byte(victim))
	assert.ErrorIs(t, err, ErrNotFound, "the old value of a refused set is removed")
	delete(stored, victim)
	for k, v := range stored {
		it, err := c.Get([]byte(k))
		require.NoError(t, err, k)
		require.Equal(t, v, string(it.Value))
	}
	assert.Zero(t, c.Stats().Evictions)

	// Other refused commands keep the old value.
	refusedReplace := false
	for k := range stored {
		if c.shardFor(xxhash.Sum64([]byte(k))) != full {
			continue
		}
		err := c.Replace([]byte(k), bytes.Repeat([]byte("r"), MinMaxItemSize-itemSize(k, "")), 0)
		if errors.Is(err, ErrNoMemory) {
			assert.Equal(t, stored[k], string(mustGet(t, c, k).Value), "replace keeps the old value")
			refusedReplace = true
			break
		}
		require.NoError(t, err)
		delete(stored, k)
	}
	assert.True(t, refusedReplace, "a full shard refuses a largest-size replace")
}

// TestCacheNoEvictOverwrite checks that a NoEvict cache holding far less
// than its limit can overwrite its items forever: the space of replaced
// values must be reused, not leaked.
func TestCacheNoEvictOverwrite(t *testing.T) {
	const maxBytes = 64 << 10
	c := newTestCache(t, Config{MaxBytes: maxBytes, MaxItemSize: MinMaxItemSize, NoEvict: true})
	const keys = 100 // about a fifth of the memory
	for round := range 100 {
		for i := range keys {
			k := fmt.Sprintf("key%03d", i)
			v := fmt.Sprintf("%s/%d/%0*d", k, round, 20+(i*7+round)%80, 0)
			err := c.Set([]byte(k), []byte(v), 0)
			require.NoError(t, err, "round %d key %s", round, k)
		}
	}
	for i := range keys {
		k := fmt.Sprintf("key%03d", i)
		assert.True(t, strings.HasPrefix(string(mustGet(t, c, k).Value), k+"/99/"))
	}
	assert.Zero(t, c.Stats().Evictions)
	assert.Zero(t, c.Stats().StoreNoMemory)
}

// TestCacheNoEvictNeverLosesData drives random stores of mixed sizes into a
// NoEvict cache far past its limit: refused stores are fine, but every item
// it accepted must stay readable with its last value.
func TestCacheNoEvictNeverLosesData(t *testing.T) {
	const maxBytes = 256 << 10
	c := newTestCache(t, Config{MaxBytes: maxBytes, MaxItemSize: 4 * MinMaxItemSize, NoEvict: true})
	rng := rand.New(rand.NewPCG(3, 4))
	model := map[string]string{}
	refused := 0
	const ops = 8000
	for op := range ops {
		k := fmt.Sprintf("k%d", rng.IntN(3000))
		n := rng.IntN(200)
		if rng.IntN(20) == 0 {
			n = rng.IntN(4*MinMaxItemSize - ItemOverhead - len(k))
		}
		v := fmt.Sprintf("%s/%d/%0*d", k, op, n, 0)
		v = v[:min(len(v), 4*MinMaxItemSize-ItemOverhead-len(k))]
		switch rng.IntN(8) {
		case 0:
			err := c.Append([]byte(k), []byte("+"))
			switch {
			case err == nil:
				model[k] += "+"
			case errors.Is(err, ErrNoMemory), errors.Is(err, ErrTooLarge):
				refused++
			default:
				require.ErrorIs(t, err, ErrNotStored)
				_, had := model[k]
				require.False(t, had, "op %d: append missed live %s", op, k)
			}
		case 1:
			err := c.Delete([]byte(k))
			if _, ok := model[k]; ok {
				require.NoError(t, err, "op %d", op)
			}
			delete(model, k)
		default:
			err := c.Set([]byte(k), []byte(v), 0)
			if errors.Is(err, ErrNoMemory) {
				refused++
				delete(model, k) // a refused set drops the old value
				break
			}
			require.NoError(t, err, "op %d", op)
			model[k] = v
		}
		if op%500 == 0 || op == ops-1 {
			for mk, mv := range model {
				it, err := c.Get([]byte(mk))
				require.NoError(t, err, "op %d: %s lost", op, mk)
				require.Equal(t, mv, string(it.Value), "op %d", op)
			}
		}
	}
	st := c.Stats()
	assert.NotZero(t, refused, "the workload overflows the cache")
	assert.Zero(t, st.Evictions)
	assert.Equal(t, uint64(len(model)), st.CurrItems)
	assert.LessOrEqual(t, st.Bytes, uint64(maxBytes))
}

func TestCacheConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // in the error message
	}{
		{"MaxBytes too small", Config{MaxBytes: 2*MinMaxItemSize - 1}, "MaxBytes"},
		{"MaxBytes negative", Config{MaxBytes: -1}, "MaxBytes"},
		{"MaxBytes too large", Config{MaxBytes: 1 << 50}, "MaxBytes"},
		{"MaxItemSize below 1 KiB", Config{MaxBytes: 1 << 20, MaxItemSize: MinMaxItemSize - 1}, "MaxItemSize"},
		{"MaxItemSize negative", Config{MaxBytes: 1 << 20, MaxItemSize: -1}, "MaxItemSize"},
		{"MaxItemSize over half of MaxBytes", Config{MaxBytes: 1 << 20, MaxItemSize: 1<<19 + 1}, "MaxItemSize"},
		{"default MaxItemSize over half of MaxBytes", Config{MaxItemSize: DefaultMaxBytes/2 + 1}, "MaxItemSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *Cache
			var err error
			require.NotPanics(t, func() { c, err = New(tt.cfg) })
			require.Error(t, err)
			assert.Nil(t, c)
			assert.Contains(t, err.Error(), tt.want)
			assert.True(t, strings.HasPrefix(err.Error(), "emcache: "), err.Error())
		})
	}
}

func TestCacheConfigDefaults(t *testing.T) {
	tests := []struct {
		name         string
		cfg          Config
		wantMaxBytes int64
		wantMaxItem  int
	}{
		{"zero value is memcached's defaults", Config{}, DefaultMaxBytes, DefaultMaxItemSize},
		{"small MaxBytes caps the default item size", Config{MaxBytes: 4096}, 4096, 2048},
		{"smallest cache", Config{MaxBytes: 2 * MinMaxItemSize, MaxItemSize: MinMaxItemSize}, 2 * MinMaxItemSize, MinMaxItemSize},
		{"item size exactly half", Config{MaxBytes: 1 << 20, MaxItemSize: 1 << 19}, 1 << 20, 1 << 19},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache(t, tt.cfg)
			assert.Equal(t, tt.wantMaxBytes, c.MaxBytes())
			assert.Equal(t, tt.wantMaxItem, c.MaxItemSize())
			assert.Equal(t, uint64(tt.wantMaxBytes), c.Stats().LimitMaxbytes)
			// The largest item fits, even in the smallest cache.
			k := "k"
			v := bytes.Repeat([]byte("v"), tt.wantMaxItem-itemSize(k, ""))
			err := c.Set([]byte(k), v, 0)
			require.NoError(t, err)
			assert.Equal(t, v, mustGet(t, c, k).Value)
		})
	}
}

func TestCacheGetAppend(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20})
	cas := mustSet(t, c, "k", "value", 3, 0)

	dst := make([]byte, 0, 64)
	dst = append(dst, "pre:"...)
	out, it, err := c.GetAppend(dst, []byte("k"))
	require.NoError(t, err)
	assert.Equal(t, "pre:value", string(out))
	assert.Equal(t, "value", string(it.Value))
	assert.Equal(t, uint32(3), it.Flags)
	assert.Equal(t, cas, it.CAS)
	assert.Same(t, &out[4], &it.Value[0], "Value aliases the appended bytes")
	assert.Same(t, &dst[0], &out[0], "dst had room: no new array")
	assert.Equal(t, len(it.Value), cap(it.Value), "appending to Value cannot clobber dst")

	out2, _, err := c.GetAppend(out[:4], []byte("missing"))
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Equal(t, "pre:", string(out2), "a miss returns dst unchanged")

	out3, it, err := c.GetAppend(nil, []byte("k"))
	require.NoError(t, err)
	assert.Equal(t, "value", string(out3))
	assert.Equal(t, "value", string(it.Value))

	// Get returns a copy the caller may keep and change.
	got := mustGet(t, c, "k")
	copy(got.Value, "XXXXX")
	out[4] = 'Y'
	assert.Equal(t, "value", string(mustGet(t, c, "k").Value))
}

func TestCacheGetAppendNoAllocs(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20})
	key := []byte("key")
	mustSet(t, c, "key", strings.Repeat("v", 500), 0, 0)
	buf := make([]byte, 0, 1024)
	var err error
	allocs := testing.AllocsPerRun(1000, func() {
		buf, _, err = c.GetAppend(buf[:0], key)
	})
	require.NoError(t, err)
	assert.Len(t, buf, 500)
	assert.Zero(t, allocs, "a GetAppend hit into a buffer with room allocates nothing")
}

func TestCacheGetMulti(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20})
	mustSet(t, c, "a", "1", 1, 0)
	mustSet(t, c, "b", "2", 2, 0)
	got, err := c.GetMulti([][]byte{[]byte("a"), []byte("missing"), []byte("b"), []byte(""), []byte("a")})
	require.Len(t, got, 2, "the items found are returned with the error")
	assert.Equal(t, "1", string(got["a"].Value))
	assert.Equal(t, uint32(2), got["b"].Flags)
	var ke *KeyError
	require.ErrorAs(t, err, &ke, "a miss is no error, an invalid key is")
	assert.Empty(t, ke.Key)
	assert.ErrorIs(t, err, ErrKeyInvalid)

	got, err = c.GetMulti([][]byte{[]byte("a"), []byte("missing")})
	assert.NoError(t, err, "misses are no error")
	assert.Len(t, got, 1)
	got, err = c.GetMulti(nil)
	assert.NoError(t, err)
	assert.Empty(t, got)

	long := bytes.Repeat([]byte("k"), MaxKeyLen+1)
	_, err = c.GetMulti([][]byte{nil, long})
	assert.Len(t, errorsOf(err), 2, "every failing key is reported")
}

func TestCacheView(t *testing.T) {
	c, clk := newClockedCache(t, Config{MaxBytes: 1 << 20})
	cas := mustSet(t, c, "k", "v", 6, 0)
	var calls int
	ok := c.view([]byte("k"), false, 0, func(value []byte, flags, _ uint32, gotCAS uint64) {
		calls++
		assert.Equal(t, "v", string(value))
		assert.Equal(t, uint32(6), flags)
		assert.Equal(t, cas, gotCAS)
	})
	assert.Equal(t, resultOK, ok)
	assert.Equal(t, 1, calls)
	assert.Equal(t, resultNotFound, c.view([]byte("missing"), false, 0, func([]byte, uint32, uint32, uint64) { calls++ }))
	assert.Equal(t, resultBadKey, c.view(nil, false, 0, func([]byte, uint32, uint32, uint64) { calls++ }))
	assert.Equal(t, 1, calls)

	assert.Equal(t, resultOK, c.view([]byte("k"), true, 5, nil))
	assert.Equal(t, int64(1_800_000_005), unixOf(mustGet(t, c, "k").Expires), "touch=true sets the expiry")
	clk.Advance(5 * time.Second)
	assert.Equal(t, resultNotFound, c.view([]byte("k"), false, 0, func([]byte, uint32, uint32, uint64) { calls++ }))
}

func TestCacheStats(t *testing.T) {
	const maxBytes = 1 << 20
	c, clk := newClockedCache(t, Config{MaxBytes: maxBytes, MaxItemSize: MinMaxItemSize})
	var casA uint64
	want := Stats{LimitMaxbytes: maxBytes}
	steps := []struct {
		name   string
		do     func(t *testing.T)
		update func(w *Stats)
	}{
		{"new cache", func(*testing.T) {}, func(*Stats) {}},
		{"set", func(t *testing.T) { casA = mustSet(t, c, "a", "1", 0, 0) }, func(w *Stats) {
			w.CmdSet++
			w.TotalItems++
			w.CurrItems++
		}},
		{"get hit", func(t *testing.T) { mustGet(t, c, "a") }, func(w *Stats) { w.CmdGet++; w.GetHits++ }},
		{"get miss", func(t *testing.T) {
			_, err := c.Get([]byte("zz"))
			require.ErrorIs(t, err, ErrNotFound)
		}, func(w *Stats) { w.CmdGet++; w.GetMisses++ }},
		{"getappend hit", func(t *testing.T) {
			_, _, err := c.GetAppend(nil, []byte("a"))
			require.NoError(t, err)
		}, func(w *Stats) { w.CmdGet++; w.GetHits++ }},
		{"set expiring", func(t *testing.T) { mustSet(t, c, "e", "x", 0, 1) }, func(w *Stats) {
			w.CmdSet++
			w.TotalItems++
			w.CurrItems++
		}},
		{"get expired", func(t *testing.T) {
			clk.Advance(time.Second)
			_, err := c.Get([]byte("e"))
			require.ErrorIs(t, err, ErrNotFound)
		}, func(w *Stats) {
			w.CmdGet++
			w.GetMisses++
			w.GetExpired++ // and, as in memcached, not reclaimed
			w.CurrItems--
		}},
		{"touch hit", func(t *testing.T) { require.NoError(t, c.Touch([]byte("a"), 1000*time.Second)) }, func(w *Stats) {
			w.CmdTouch++
			w.TouchHits++
		}},
		{"touch miss", func(t *testing.T) { require.ErrorIs(t, c.Touch([]byte("zz"), 1000*time.Second), ErrNotFound) }, func(w *Stats) {
			w.CmdTouch++
			w.TouchMisses++
		}},
		{"cas miss", func(t *testing.T) {
			err := c.CompareAndSwap([]byte("zz"), []byte("2"), 1, 0)
			require.ErrorIs(t, err, ErrNotFound)
		}, func(w *Stats) { w.CmdSet++; w.CasMisses++ }},
		{"cas badval", func(t *testing.T) {
			err := c.CompareAndSwap([]byte("a"), []byte("2"), casA+1, 0)
			require.ErrorIs(t, err, ErrExists)
		}, func(w *Stats) { w.CmdSet++; w.CasBadval++ }},
		{"cas hit", func(t *testing.T) {
			err := c.CompareAndSwap([]byte("a"), []byte("2"), casA, 0)
			require.NoError(t, err)
		}, func(w *Stats) { w.CmdSet++; w.CasHits++; w.TotalItems++ }},
		{"incr hit", func(t *testing.T) {
			_, err := c.Incr([]byte("a"), 1)
			require.NoError(t, err)
		}, func(w *Stats) { w.IncrHits++ }},
		{"incr miss", func(t *testing.T) {
			_, err := c.Incr([]byte("zz"), 1)
			require.ErrorIs(t, err, ErrNotFound)
		}, func(w *Stats) { w.IncrMisses++ }},
		{"decr hit", func(t *testing.T) {
			_, err := c.Decr([]byte("a"), 1)
			require.NoError(t, err)
		}, func(w *Stats) { w.DecrHits++ }},
		{"decr miss", func(t *testing.T) {
			_, err := c.Decr([]byte("zz"), 1)
			require.ErrorIs(t, err, ErrNotFound)
		}, func(w *Stats) { w.DecrMisses++ }},
		{"append", func(t *testing.T) {
			err := c.Append([]byte("a"), []byte("0"))
			require.NoError(t, err)
		}, func(w *Stats) { w.CmdSet++; w.TotalItems++ }},
		{"add exists", func(t *testing.T) {
			err := c.Add([]byte("a"), []byte("x"), 0)
			require.ErrorIs(t, err, ErrNotStored)
		}, func(w *Stats) { w.CmdSet++ }},
		{"replace miss", func(t *testing.T) {
			err := c.Replace([]byte("zz"), []byte("x"), 0)
			require.ErrorIs(t, err, ErrNotStored)
		}, func(w *Stats) { w.CmdSet++ }},
		{"delete hit", func(t *testing.T) { require.NoError(t, c.Delete([]byte("a"))) }, func(w *Stats) {
			w.DeleteHits++
			w.CurrItems--
		}},
		{"delete miss", func(t *testing.T) { require.ErrorIs(t, c.Delete([]byte("a")), ErrNotFound) }, func(w *Stats) {
			w.DeleteMisses++
		}},
		{"set two", func(t *testing.T) {
			mustSet(t, c, "b", "bb", 0, 0)
			mustSet(t, c, "c", "ccc", 0, 0)
		}, func(w *Stats) {
			w.CmdSet += 2
			w.TotalItems += 2
			w.CurrItems += 2
		}},
		{"overwrite", func(t *testing.T) { mustSet(t, c, "b", "b", 0, 0) }, func(w *Stats) {
			w.CmdSet++
			w.TotalItems++
		}},
		{"flush_all", func(*testing.T) { c.FlushAll(0) }, func(w *Stats) {
			w.CmdFlush++
			w.CurrItems = 0
		}},
		{"set after flush", func(t *testing.T) { mustSet(t, c, "d", "d", 0, 0) }, func(w *Stats) {
			w.CmdSet++
			w.TotalItems++
			w.CurrItems++
		}},
	}
	for _, step := range steps {
		step.do(t)
		step.update(&want)
		want.Bytes = indexedBytes(c)
		require.Equal(t, want, c.Stats(), "after %s", step.name)
	}

	c.ResetStats()
	assert.Equal(t, Stats{
		CurrItems:     want.CurrItems,
		Bytes:         want.Bytes,
		LimitMaxbytes: want.LimitMaxbytes,
	}, c.Stats(), "stats reset keeps only the item count, bytes and limit")
}

// TestCacheStatsStoreFailures checks the counters of refused stores.
func TestCacheStatsStoreFailures(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20, MaxItemSize: MinMaxItemSize})
	big := make([]byte, MinMaxItemSize)
	for _, op := range []func() error{
		func() error { err := c.Set([]byte("k"), big, 0); return err },
		func() error { err := c.Add([]byte("k"), big, 0); return err },
	} {
		require.ErrorIs(t, op(), ErrTooLarge)
	}
	st := c.Stats()
	assert.Equal(t, uint64(2), st.StoreTooLarge)
	assert.Zero(t, st.StoreNoMemory)
	assert.Zero(t, st.TotalItems)
	assert.Zero(t, st.CurrItems)
}

// TestCacheStatsLikeMemcached pins counters whose meaning memcached defines
// in ways that are easy to miss.
func TestCacheStatsLikeMemcached(t *testing.T) {
	t.Run("gat counts as a touch, not a get", func(t *testing.T) {
		// memcached's process_get_command with should_touch counts
		// touch_cmds and touch_hits/touch_misses only.
		c := newTestCache(t, Config{MaxBytes: 1 << 20})
		mustSet(t, c, "k", "v", 0, 0)
		_, err := c.GetAndTouch([]byte("k"), 100*time.Second)
		require.NoError(t, err)
		_, err = c.GetAndTouch([]byte("missing"), 100*time.Second)
		require.ErrorIs(t, err, ErrNotFound)
		st := c.Stats()
		assert.Equal(t, uint64(2), st.CmdTouch)
		assert.Equal(t, uint64(1), st.TouchHits)
		assert.Equal(t, uint64(1), st.TouchMisses)
		assert.Zero(t, st.CmdGet, "cmd_get")
		assert.Zero(t, st.GetHits, "get_hits")
		assert.Zero(t, st.GetMisses, "get_misses")
	})
	t.Run("refused store is not a cmd_set", func(t *testing.T) {
		// memcached counts set_cmds once the data is read into a new
		// item; a store refused as too large never gets one.
		c := newTestCache(t, Config{MaxBytes: 1 << 20, MaxItemSize: MinMaxItemSize})
		err := c.Set([]byte("k"), make([]byte, MinMaxItemSize), 0)
		require.ErrorIs(t, err, ErrTooLarge)
		assert.Zero(t, c.Stats().CmdSet)
	})
	t.Run("incr that grows the value stores a new item", func(t *testing.T) {
		// memcached's do_add_delta links a new item when the number no
		// longer fits, which counts in total_items.
		c := newTestCache(t, Config{MaxBytes: 1 << 20})
		mustSet(t, c, "n", "9", 0, 0)
		_, err := c.Incr([]byte("n"), 1)
		require.NoError(t, err)
		assert.Equal(t, uint64(2), c.Stats().TotalItems)
	})
}

func TestCacheStatsEvictions(t *testing.T) {
	const maxBytes = 256 << 10
	tests := []struct {
		name string
		read bool // read every item once after storing it
	}{
		{"unread", false},
		{"read", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestCache(t, Config{MaxBytes: maxBytes, MaxItemSize: MinMaxItemSize})
			v := strings.Repeat("v", 100)
			n := 4 * maxBytes / itemSize("k00000", v)
			for i := range n {
				k := fmt.Sprintf("k%05d", i)
				mustSet(t, c, k, v, 0, 0)
				if tt.read {
					mustGet(t, c, k)
				}
			}
			st := c.Stats()
			assert.NotZero(t, st.Evictions)
			assert.Equal(t, uint64(n), st.TotalItems)
			assert.Equal(t, st.TotalItems, st.CurrItems+st.Evictions, "every item is live or evicted")
			assert.LessOrEqual(t, st.Bytes, uint64(maxBytes))
			assert.Equal(t, indexedBytes(c), st.Bytes)
			assert.GreaterOrEqual(t, st.Bytes, st.CurrItems*uint64(storedSize("k00000", v)))
			if tt.read {
				assert.Zero(t, st.EvictedUnfetched)
			} else {
				assert.Equal(t, st.Evictions, st.EvictedUnfetched)
			}
		})
	}
}

func TestCacheCrawlerReclaimsExpired(t *testing.T) {
	c, clk := newClockedCache(t, Config{MaxBytes: 8 << 20, MaxItemSize: MinMaxItemSize})
	const n = 3000
	for i := range n {
		mustSet(t, c, fmt.Sprintf("short%d", i), "v", 0, 10)
		mustSet(t, c, fmt.Sprintf("long%d", i), "v", 0, 0)
	}
	for i := range n / 10 {
		mustGet(t, c, fmt.Sprintf("short%d", i))
	}
	crawlAll(c)
	require.Equal(t, uint64(2*n), c.Stats().CurrItems, "nothing expired yet")

	clk.Advance(10 * time.Second)
	before := c.Stats()
	crawlAll(c)
	st := c.Stats()
	assert.Equal(t, uint64(n), st.CrawlerReclaimed)
	assert.Equal(t, uint64(n), st.Reclaimed)
	assert.Equal(t, uint64(n-n/10), st.ExpiredUnfetched)
	assert.Equal(t, uint64(n), st.CurrItems)
	var wantBytes uint64
	for i := range n {
		wantBytes += uint64(storedSize(fmt.Sprintf("long%d", i), "v"))
	}
	assert.Equal(t, wantBytes, st.Bytes)
	assert.Equal(t, before.CmdGet, st.CmdGet, "reclaimed without a read")
	for i := range n {
		mustGet(t, c, fmt.Sprintf("long%d", i))
	}
}

// TestCacheCrawlerBacksOff checks the crawler's pace over a shard: while no
// item has had an expiry and after a pass that met none, a pass takes
// idleCrawlPass steps;
// a store with an expiry, a touch that sets one or a pass that meets one
// brings back the full pace.
func TestCacheCrawlerBacksOff(t *testing.T) {
	c, clk := newClockedCache(t, Config{MaxBytes: 8 << 20, MaxItemSize: MinMaxItemSize})
	// The test takes the background crawler's steps itself.
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.crawlDone
	s := c.shardFor(xxhash.Sum64([]byte("ttl")))
	step := func() uint64 {
		t.Helper()
		s.mu.Lock()
		defer s.mu.Unlock()
		before := s.cursor
		s.crawlStep(c.clock())
		return (s.cursor + s.nslots - before) % s.nslots
	}
	pace := func(period uint64) uint64 { return (s.nslots + period - 1) / period }
	// pass steps until the cursor has wrapped once and is back where it
	// was: one end of a pass, where the pace changes.
	pass := func() {
		t.Helper()
		end, wrapped := s.cursor, false
		for i := 0; !wrapped || s.cursor < end; i++ {
			require.Less(t, i, idleCrawlPass+1, "the cursor never came round")
			prev := s.cursor
			step()
			wrapped = wrapped || s.cursor < prev
		}
	}
	var inShard string // a key of s's
	for i := range 20_000 {
		k := fmt.Sprintf("k%d", i)
		mustSet(t, c, k, "v", 0, 0)
		if c.shardFor(xxhash.Sum64([]byte(k))) == s {
			inShard = k
		}
	}
	require.NotEmpty(t, inShard)
	assert.Equal(t, pace(idleCrawlPass), step(), "no item has had an expiry")
	s.idleCrawl = false
	assert.Equal(t, pace(crawlPass), step(), "full pace")
	pass()
	assert.Equal(t, pace(idleCrawlPass), step(), "the pace after a pass without an expiry")

	mustSet(t, c, "ttl", "v", 0, 5)
	assert.Equal(t, pace(crawlPass), step(), "a store with an expiry restores the pace")
	require.NoError(t, c.Delete([]byte("ttl")))
	pass() // the store counts for the pass it came in
	pass()
	require.True(t, s.idleCrawl)
	require.NoError(t, c.Touch([]byte(inShard), time.Minute))
	assert.False(t, s.idleCrawl, "a touch restores the pace")

	s.idleCrawl = true
	pass()
	pass()
	assert.False(t, s.idleCrawl, "a pass that met an expiry restores the pace")

	// A store with an expiry behind the crawler's cursor still counts for
	// the pass under way.
	s.mu.Lock()
	s.idleCrawl, s.passSawExpiry = true, false
	s.expiring(5) // as write and setExpiry call it
	s.passEnded()
	s.mu.Unlock()
	assert.False(t, s.idleCrawl, "a store with an expiry during the pass")

	clk.Advance(2 * time.Minute)
	pass()
	pass()
	assert.Equal(t, uint64(1), c.Stats().CrawlerReclaimed)

	s.mu.Lock()
	s.clear() // flush_all (FlushAll refuses: the stopped crawler reads as closed)
	s.mu.Unlock()
	assert.True(t, s.idleCrawl, "flush_all leaves no item with an expiry")
}

// TestCacheBackgroundCrawler checks that the crawler goroutine started by New
// reclaims expired items on its own.
func TestCacheBackgroundCrawler(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the crawler's one-second tick")
	}
	var now atomic.Int64
	now.Store(1_800_000_000)
	c := newTestCache(t, Config{
		MaxBytes:    1 << 20,
		MaxItemSize: MinMaxItemSize,
		Now:         func() time.Time { return time.Unix(now.Load(), 0) },
	})
	for i := range 100 {
		mustSet(t, c, fmt.Sprintf("k%d", i), "v", 0, 1)
	}
	now.Add(1)
	require.Eventually(t, func() bool { return c.Stats().CrawlerReclaimed == 100 },
		10*time.Second, 10*time.Millisecond)
	assert.Zero(t, c.Stats().CurrItems)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close is idempotent")
}

func TestCacheSetMaxBytes(t *testing.T) {
	const small, large = 1 << 20, 4 << 20
	v := strings.Repeat("v", 100)
	key := func(i int) string { return fmt.Sprintf("key%06d", i) }
	val := func(i int) string { return fmt.Sprintf("%s=%s", key(i), v) }
	per := itemSize(key(0), val(0))

	t.Run("grow", func(t *testing.T) {
		c := newTestCache(t, Config{MaxBytes: small, MaxItemSize: MinMaxItemSize})
		n := small / 4 / per
		for i := range n {
			mustSet(t, c, key(i), val(i), 0, 0)
		}
		cas := make([]uint64, n)
		for i := range n {
			cas[i] = mustGet(t, c, key(i)).CAS
		}
		require.NoError(t, c.SetMaxBytes(large))
		assert.Equal(t, int64(large), c.MaxBytes())
		assert.Equal(t, uint64(large), c.Stats().LimitMaxbytes)
		for i := range n {
			it := mustGet(t, c, key(i))
			require.Equal(t, val(i), string(it.Value), "kept across the resize")
			require.Equal(t, cas[i], it.CAS, "the CAS moves with the item")
		}
		err := c.CompareAndSwap([]byte(key(0)), []byte("new"), cas[0], 0)
		require.NoError(t, err)
		// Now twice the old limit fits without evicting.
		for i := n; i < 2*small/per; i++ {
			mustSet(t, c, key(i), val(i), 0, 0)
		}
		assert.Zero(t, c.Stats().Evictions)
	})

	t.Run("shrink", func(t *testing.T) {
		c := newTestCache(t, Config{MaxBytes: large, MaxItemSize: MinMaxItemSize})
		n := large / 2 / per
		for i := range n {
			mustSet(t, c, key(i), val(i), 0, 0)
		}
		require.Zero(t, c.Stats().Evictions)
		require.NoError(t, c.SetMaxBytes(small))
		st := c.Stats()
		assert.Equal(t, int64(small), c.MaxBytes())
		assert.LessOrEqual(t, st.Bytes, uint64(small))
		assert.Greater(t, st.Bytes, uint64(small/2), "the smaller cache is still used")
		assert.NotZero(t, st.Evictions)
		hits := 0
		for i := range n {
			it, err := c.Get([]byte(key(i)))
			if err != nil {
				continue
			}
			hits++
			require.Equal(t, val(i), string(it.Value))
		}
		assert.Equal(t, int(st.CurrItems), hits)
		// The most recent stores are kept: the newest 5% of the items
		// are far fewer than the smaller cache holds.
		for i := n - n/20; i < n; i++ {
			_, err := c.Get([]byte(key(i)))
			assert.NoError(t, err, "recent item %d", i)
		}
		// The cache keeps working at the new size.
		for i := n; i < 2*n; i++ {
			mustSet(t, c, key(i), val(i), 0, 0)
		}
		assert.LessOrEqual(t, c.Stats().Bytes, uint64(small))
		assert.Equal(t, val(2*n-1), string(mustGet(t, c, key(2*n-1)).Value))
	})

	t.Run("too small", func(t *testing.T) {
		c := newTestCache(t, Config{MaxBytes: small, MaxItemSize: MinMaxItemSize})
		mustSet(t, c, "k", "v", 0, 0)
		// New gives each shard room for shardItems largest items, and the
		// limit may shrink until a shard holds minShardItems of them.
		least := int64(len(c.shards) * minShardItems * MinMaxItemSize)
		require.NoError(t, c.SetMaxBytes(least))
		for _, n := range []int64{least - 1, MinMaxItemSize, 0, -1} {
			err := c.SetMaxBytes(n)
			assert.ErrorIs(t, err, ErrMaxBytes, "SetMaxBytes(%d)", n)
		}
		assert.Equal(t, least, c.MaxBytes())
		assert.Equal(t, "v", string(mustGet(t, c, "k").Value))
	})
}

func TestCacheConcurrentIncr(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20})
	const goroutines, each = 8, 2000
	mustSet(t, c, "n", "0", 0, 0)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				if _, err := c.Incr([]byte("n"), 1); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, strconv.Itoa(goroutines*each), string(mustGet(t, c, "n").Value))
	assert.Equal(t, uint64(goroutines*each), c.Stats().IncrHits)
}

func TestCacheConcurrentCompareAndSwap(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20})
	const goroutines, each = 8, 300
	mustSet(t, c, "n", "0", 0, 0)
	var retries atomic.Uint64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				for attempt := 0; ; attempt++ {
					if attempt == 1_000_000 {
						t.Error("CompareAndSwap never succeeded")
						return
					}
					it, err := c.Get([]byte("n"))
					if err != nil {
						t.Error(err)
						return
					}
					n, _ := strconv.Atoi(string(it.Value))
					err = c.CompareAndSwap([]byte("n"), strconv.AppendInt(nil, int64(n+1), 10), it.CAS, 0)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrExists) {
						t.Error(err)
						return
					}
					retries.Add(1)
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, strconv.Itoa(goroutines*each), string(mustGet(t, c, "n").Value))
	st := c.Stats()
	assert.Equal(t, uint64(goroutines*each), st.CasHits)
	assert.Equal(t, retries.Load(), st.CasBadval)
}

// TestCacheConcurrentMixed runs every command from many goroutines on a
// cache small enough to evict, with resizes and flushes, for the race
// detector and to check that a hit never returns another key's data.
func TestCacheConcurrentMixed(t *testing.T) {
	const maxBytes = 2 << 20 // halving keeps the smallest shard size
	c := newTestCache(t, Config{MaxBytes: maxBytes, MaxItemSize: MinMaxItemSize})
	const goroutines, ops, keys = 8, 4000, 3000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			buf := make([]byte, 0, MinMaxItemSize)
			for i := range ops {
				k := fmt.Appendf(nil, "k%d", (i*7919+g*104729)%keys)
				prefix := string(k) + "|"
				check := func(v []byte) {
					if !strings.HasPrefix(string(v), prefix) {
						t.Errorf("key %s holds %.40q", k, v)
					}
				}
				var err error
				switch i % 10 {
				case 0, 1, 2:
					_, err = c.Store(k, fmt.Appendf(nil, "%s%d-%0*d", prefix, g, i%300, 0), StoreOptions{Flags: uint32(g), TTL: time.Duration(int64(i%3)) * time.Second})
				case 3:
					var it Item
					if it, err = c.Get(k); err == nil {
						check(it.Value)
					}
				case 4:
					var it Item
					if buf, it, err = c.GetAppend(buf[:0], k); err == nil {
						check(it.Value)
					}
				case 5:
					err = c.Append(k, []byte("+a"))
				case 6:
					var it Item
					if it, err = c.GetAndTouch(k, 100*time.Second); err == nil {
						check(it.Value)
						err = c.CompareAndSwap(k, append([]byte(prefix), "cas"...), it.CAS, 0)
					}
				case 7:
					err = c.Delete(k)
				case 8:
					err = c.Touch(k, 0)
					c.view(k, false, 0, func(v []byte, _, _ uint32, _ uint64) { check(v) })
				case 9:
					err = c.Add(k, append([]byte(prefix), "add"...), 0)
					_ = c.Stats()
				}
				if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNotStored) &&
					!errors.Is(err, ErrExists) && !errors.Is(err, ErrTooLarge) {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			if err := c.SetMaxBytes(int64(maxBytes / (1 + i%2))); err != nil {
				t.Error(err)
			}
			if i%5 == 0 {
				c.FlushAll(0)
			}
			crawlAll(c)
		}
	})
	wg.Wait()
	assert.LessOrEqual(t, c.Stats().Bytes, uint64(c.MaxBytes()))
}

// TestCacheScanResistance checks S3-FIFO's promise: a working set that is
// read survives a one-pass scan of new keys larger than the whole cache.
func TestCacheScanResistance(t *testing.T) {
	const maxBytes = 4 << 20
	c := newTestCache(t, Config{MaxBytes: maxBytes, MaxItemSize: MinMaxItemSize})
	v := []byte(strings.Repeat("v", 100))
	hot := make([][]byte, maxBytes/5/itemSize("hot00000", string(v))) // a fifth of the cache
	for i := range hot {
		hot[i] = fmt.Appendf(nil, "hot%05d", i)
		err := c.Set(hot[i], v, 0)
		require.NoError(t, err)
	}
	for range 3 {
		for _, k := range hot {
			_, _ = c.Get(k)
		}
	}
	// Cache-aside scan: each key is missed, stored, never read again.
	// Four times the cache: more passes than CLOCK's access counter
	// survives, so only the small-ring filter keeps the hot set.
	scan := 4 * maxBytes / itemSize("scan00000000", string(v))
	for i := range scan {
		k := fmt.Appendf(nil, "scan%08d", i)
		_, err := c.Get(k)
		require.ErrorIs(t, err, ErrNotFound)
		err = c.Set(k, v, 0)
		require.NoError(t, err)
	}
	st := c.Stats()
	require.NotZero(t, st.Evictions, "the scan overflowed the cache")
	require.LessOrEqual(t, st.Bytes, uint64(maxBytes))
	hits := 0
	for _, k := range hot {
		if _, err := c.Get(k); err == nil {
			hits++
		}
	}
	ratio := float64(hits) / float64(len(hot))
	t.Logf("hot set hit ratio after a %d-key scan: %.4f (%d keys)", scan, ratio, len(hot))
	assert.GreaterOrEqual(t, ratio, 0.95)
}

// TestCacheHotKeyOutlivesOneHitStream checks that a key read often is never
// evicted by a stream of keys each stored once, even when the stream between
// two reads is several times the cache: LRU would lose it at once, CLOCK
// once its access counter runs out.
func TestCacheHotKeyOutlivesOneHitStream(t *testing.T) {
	const maxBytes = 256 << 10
	c := newTestCache(t, Config{MaxBytes: maxBytes, MaxItemSize: MinMaxItemSize})
	hotKey := []byte("the-hot-key")
	mustSet(t, c, string(hotKey), "hot", 0, 0)
	v := []byte(strings.Repeat("s", 30))
	capacity := maxBytes / itemSize("s0000000", string(v))
	period := 4 * capacity
	for i := range 16 * capacity {
		if i%period == 0 || i < 100 {
			_, err := c.Get(hotKey)
			require.NoError(t, err, "hot key evicted after %d one-hit stores", i)
		}
		err := c.Set(fmt.Appendf(nil, "s%07d", i), v, 0)
		require.NoError(t, err)
	}
	_, err := c.Get(hotKey)
	require.NoError(t, err)
	assert.NotZero(t, c.Stats().Evictions)
}

// heapObjects returns the number of live heap objects after a full GC.
func heapObjects() uint64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/objects:objects"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestCacheHeapObjectsIndependentOfItems checks that items cost the garbage
// collector nothing: 30 times more items leave the heap object count
// unchanged but for a few index slices.
func TestCacheHeapObjectsIndependentOfItems(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 64 << 20})
	key := make([]byte, 0, 32)
	value := []byte("0123456789")
	fill := func(from, to int) {
		for i := from; i < to; i++ {
			key = strconv.AppendInt(append(key[:0], "key:"...), int64(i), 10)
			if err := c.Set(key, value, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	fill(0, 10_000)
	before := heapObjects()
	fill(10_000, 300_000)
	after := heapObjects()
	require.Equal(t, uint64(300_000), c.Stats().CurrItems, "nothing evicted")
	t.Logf("heap objects: %d with 10k items, %d with 300k items", before, after)
	assert.Less(t, int64(after)-int64(before), int64(200))
}

// Regression: overwriting one key over and over cycles its shard's log; an
// unread item sharing that shard was evicted when the tail reached it,
// although the shard held almost no live data (the stress suite's flood
// test lost canary keys this way).
func TestCacheOverwritesDoNotEvictUnreadItems(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20, MaxItemSize: MinMaxItemSize})
	for i := range 200 {
		mustSet(t, c, fmt.Sprintf("quiet%d", i), "never read", 0, 0)
	}
	v := strings.Repeat("x", 500)
	for n := range 20000 {
		mustSet(t, c, fmt.Sprintf("hot%d", n%8), v, 0, 0)
	}
	assert.Zero(t, c.Stats().Evictions)
	for i := range 200 {
		_, err := c.Get([]byte(fmt.Sprintf("quiet%d", i)))
		require.NoError(t, err, "quiet%d", i)
	}
}

// TestCacheOverwritesKeepUnreadItemsOfManySizes is the overwrite case with
// small shards and unread items of many sizes: moving one past the log's
// dead records can need a few bytes more than the ring has free (its CAS
// goes along), and it must be set aside then, not evicted.
func TestCacheOverwritesKeepUnreadItemsOfManySizes(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 8 << 20, MaxItemSize: MinMaxItemSize})
	values := make([][]byte, 200)
	for i := range values {
		v := fmt.Appendf(nil, "unread-%d-", i)
		for len(v) < 16+i*97%800 {
			v = append(v, byte('a'+(i+len(v))%26))
		}
		values[i] = v
		_, err := c.Store(fmt.Appendf(nil, "unread:%d", i), v, StoreOptions{Flags: uint32(i)})
		require.NoError(t, err)
	}
	for n := range 5000 {
		for k := range 15 {
			err := c.Set(fmt.Appendf(nil, "overwritten:%d", k), strconv.AppendInt(nil, int64(n), 10), 0)
			require.NoError(t, err)
		}
	}
	assert.Zero(t, c.Stats().Evictions)
	for i, v := range values {
		it, err := c.Get(fmt.Appendf(nil, "unread:%d", i))
		require.NoError(t, err, "unread:%d", i)
		assert.Equal(t, v, it.Value)
		assert.Equal(t, uint32(i), it.Flags)
	}
}

// TestCacheIdleSaturates checks the last-access time of an item nobody
// reads for months: the crawler keeps its idle time at maxIdle instead of
// letting the 23-bit field wrap.
func TestCacheIdleSaturates(t *testing.T) {
	c, clk := newClockedCache(t, Config{})
	mustSet(t, c, "old", "v", 0, 0)
	idle := func() uint32 {
		h := xxhash.Sum64([]byte("old"))
		s := c.shardFor(h)
		s.mu.Lock()
		defer s.mu.Unlock()
		slot, ok := s.find([]byte("old"), h)
		require.True(t, ok)
		return s.idle(s.offAt(slot), c.clock())
	}
	clk.Advance(10 * 24 * time.Hour)
	crawlAll(c)
	assert.Equal(t, uint32(10*24*3600), idle(), "exact below maxIdle")
	for range 20 { // 200 days, the crawler passing every ten
		clk.Advance(10 * 24 * time.Hour)
		crawlAll(c)
	}
	assert.Equal(t, uint32(maxIdle), idle())
	mustGet(t, c, "old")
	assert.Zero(t, idle(), "a read starts it over")
}

// TestCacheCASNeverRepeats checks that a CAS a client holds never matches a
// later item, and that a key's CAS only rises: not after the item is
// replaced, incremented, deleted, flushed or its cache resized, nor once the
// cache is full and new items start in the small ring, although most CAS
// values derive from log positions.
func TestCacheCASNeverRepeats(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20, MaxItemSize: MinMaxItemSize})
	seen := map[uint64]bool{}
	last := map[string]uint64{}
	record := func(key string, cas uint64) {
		t.Helper()
		require.False(t, seen[cas], "CAS %d handed out twice", cas)
		seen[cas] = true
		require.Greater(t, cas, last[key], "CAS of %s went down", key)
		last[key] = cas
	}
	big := bytes.Repeat([]byte("f"), 900)
	for round := range 4 {
		for i := range 600 {
			k := fmt.Sprintf("k%d", i%50)
			cas, err := c.Store([]byte(k), []byte("1"), StoreOptions{})
			require.NoError(t, err)
			record(k, cas)
			var res result
			res, _, cas, _ = c.arith(&arithReq{key: []byte(k), delta: 1}, nil)
			require.Equal(t, resultOK, res)
			record(k, cas)
			// Filler that fills the cache, so later stores go to the small
			// ring.
			err = c.Set(fmt.Appendf(nil, "fill%d-%d", round, i), big, 0)
			require.NoError(t, err)
		}
		switch round {
		case 0:
			c.FlushAll(0)
		case 1:
			require.NoError(t, c.Delete([]byte("k1")))
		case 2:
			require.NoError(t, c.SetMaxBytes(2<<20))
		}
	}
	require.NotZero(t, c.Stats().Evictions, "the filler overflowed the cache")
	old := mustGet(t, c, "k2").CAS
	err := c.Set([]byte("k2"), []byte("newer"), 0)
	require.NoError(t, err)
	err = c.CompareAndSwap([]byte("k2"), []byte("stale"), old, 0)
	assert.ErrorIs(t, err, ErrExists)
}

// TestCacheOverwriteInPlace writes one key over and over with values of
// falling, equal and rising sizes: each read returns the latest value under
// a new, rising CAS, the old CAS no longer matches, the values that fit the
// item's record allocate nothing, and the live bytes still add up.
func TestCacheOverwriteInPlace(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20, MaxItemSize: MinMaxItemSize})
	key := []byte("k")
	s := c.shardFor(xxhash.Sum64(key))
	var last uint64
	for i, n := range []int{100, 100, 100, 90, 40, 40, 120, 120, 3} {
		value := bytes.Repeat([]byte{byte('a' + i)}, n)
		s.mu.Lock()
		heads := s.small.head + s.main.head
		s.mu.Unlock()
		cas, err := c.Store(key, value, StoreOptions{Flags: uint32(i)})
		require.NoError(t, err)
		it := mustGet(t, c, "k")
		assert.Equal(t, value, it.Value, "store %d", i)
		assert.Equal(t, uint32(i), it.Flags)
		assert.Equal(t, cas, it.CAS)
		assert.Greater(t, cas, last, "store %d: CAS went down", i)
		if last != 0 {
			assert.ErrorIs(t, c.CompareAndSwap(key, []byte("x"), last, 0), ErrExists)
		}
		last = cas
		s.mu.Lock()
		grew := s.small.head + s.main.head - heads
		live := s.liveIn(&s.small) + s.liveIn(&s.main)
		s.mu.Unlock()
		// The first two stores and the one that grows allocate.
		if i > 1 && i != 6 {
			assert.Zero(t, grew, "store %d of %d bytes allocated", i, n)
		}
		assert.Equal(t, live, c.Stats().Bytes, "store %d: live bytes", i)
	}
}

// TestCacheNoEvictKeepsItemsWhenFull checks that a cache that cannot evict
// refuses stores once full and never loses an item making room: not while
// compacting past deleted items, not for items of awkward sizes.
func TestCacheNoEvictKeepsItemsWhenFull(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20, MaxItemSize: MinMaxItemSize, NoEvict: true})
	want := map[string]string{}
	for i := 0; ; i++ {
		k := fmt.Sprintf("k%d", i)
		v := strings.Repeat(string(rune('a'+i%26)), 1+i*37%900)
		if err := c.Set([]byte(k), []byte(v), 0); err != nil {
			require.ErrorIs(t, err, ErrNoMemory)
			break
		}
		want[k] = v
	}
	for k := range want {
		mustGet(t, c, k)
	}
	// Free scattered room, then keep storing past full.
	i := 0
	for k := range want {
		if i++; i%3 == 0 {
			require.NoError(t, c.Delete([]byte(k)))
			delete(want, k)
		}
	}
	for i := range 20000 {
		k := fmt.Sprintf("more%d", i)
		v := strings.Repeat("m", 1+i*53%900)
		if err := c.Set([]byte(k), []byte(v), 0); err == nil {
			want[k] = v
		} else {
			require.ErrorIs(t, err, ErrNoMemory)
		}
	}
	assert.Zero(t, c.Stats().Evictions)
	for k, v := range want {
		it, err := c.Get([]byte(k))
		require.NoError(t, err, "lost %s", k)
		require.Equal(t, v, string(it.Value))
	}
}

// TestCacheWideArenaUnits runs a cache whose one shard is too large for
// byte offsets in an index slot, so records are aligned to larger units:
// values written across several wraps of the log, overwritten, deleted and
// moved, must all read back intact.
func TestCacheWideArenaUnits(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 64 << 20, MaxItemSize: 16 << 20})
	require.Len(t, c.shards, 1)
	require.NotZero(t, c.shards[0].unit, "offsets count in units")
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string][]byte{}
	for i := range 30000 {
		k := fmt.Sprintf("k%d", rng.IntN(3000))
		switch rng.IntN(10) {
		case 0:
			_ = c.Delete([]byte(k))
			delete(want, k)
		case 1, 2, 3:
			if it, err := c.Get([]byte(k)); err == nil {
				require.Equal(t, want[k], it.Value, "op %d %s", i, k)
			}
		default:
			v := bytes.Repeat([]byte{byte(i)}, 1+rng.IntN(8000))
			_, err := c.Store([]byte(k), v, StoreOptions{Flags: uint32(i)})
			require.NoError(t, err)
			want[k] = v
		}
	}
	sh := c.shards[0]
	sh.mu.Lock()
	head, size := sh.main.head, sh.main.size
	sh.mu.Unlock()
	require.Greater(t, head, size, "the log wrapped")
	for k, v := range want {
		if it, err := c.Get([]byte(k)); err == nil {
			require.Equal(t, v, it.Value, k)
		}
	}
	assert.Equal(t, indexedBytes(c), c.Stats().Bytes)
}

// Values near the item size limit replace one another whole: a shard whose
// main ring fits three keeps three, instead of evicting a further one for
// the few bytes of slack it keeps for moving small records.
func TestCacheKeepsAsManyLargeValuesAsFit(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 4 << 20, MaxItemSize: 1 << 20})
	require.Len(t, c.shards, 1)
	value := make([]byte, 1<<20-1024)
	for i := range 20 {
		err := c.Set(fmt.Appendf(nil, "k%d", i), value, 0)
		require.NoError(t, err)
		if i >= 2 {
			require.Equal(t, uint64(3), c.Stats().CurrItems, "after %d stores", i+1)
		}
	}
}

// TestCacheKeyRuleOnTheWire: a key the text protocol cannot carry (a space,
// a control byte) is stored as a binary key, so meta clients reach it with
// the b flag and mg's k flag returns it encoded; a wire-safe key is echoed
// as it is.
func TestCacheKeyRuleOnTheWire(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 1 << 20})
	_, s := startServerOn(t, c)
	cl := dial(t, s)
	for _, key := range []string{"a key", "tab\tkey", "nul\x00", "del\x7f"} {
		require.NoError(t, c.Set([]byte(key), []byte("v"), 0))
		b64 := base64.StdEncoding.EncodeToString([]byte(key))
		cl.roundTrip("mg "+b64+" b v k\r\n", "VA 1 k"+b64+" b\r\nv\r\n")
	}
	require.NoError(t, c.Set([]byte("plain:key"), []byte("v"), 0))
	cl.roundTrip("mg plain:key v k\r\n", "VA 1 kplain:key\r\nv\r\n")
	b64 := base64.StdEncoding.EncodeToString([]byte("plain:key"))
	cl.roundTrip("mg "+b64+" b v k\r\n", "VA 1 kplain:key\r\nv\r\n")
	// A text client's "get a key" asks for "a" and "key".
	cl.roundTrip("get a key\r\n", "END\r\n")
}

// TestWireKey checks the word-at-a-time scan against the rule byte by byte:
// every byte value at every position of keys around the word size.
func TestWireKey(t *testing.T) {
	byteRule := func(key []byte) bool {
		for _, b := range key {
			if b <= ' ' || b == 0x7f {
				return false
			}
		}
		return true
	}
	for n := 1; n <= 17; n++ {
		for pos := range n {
			for v := range 256 {
				key := []byte("abcdefghijklmnopq"[:n])
				key[pos] = byte(v)
				// A neighbour above 0x7f must not hide the byte, nor one
				// below 0x21 make the rest fail.
				if pos+1 < n {
					key[pos+1] = 0xff
				}
				require.Equal(t, byteRule(key), wireKey(key), "key %q", key)
			}
		}
	}
}
