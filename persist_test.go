//go:build unix

package emcache

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testClock is a settable clock for Config.Now, in whole seconds.
type testClock struct{ sec atomic.Int64 }

func newTestClock() *testClock {
	c := new(testClock)
	c.sec.Store(1_700_000_000)
	return c
}

func (c *testClock) now() time.Time          { return time.Unix(c.sec.Load(), 0) }
func (c *testClock) advance(d time.Duration) { c.sec.Add(int64(d / time.Second)) }

// restartConfig is a small cache in a memory file under dir.
func restartConfig(dir string, clk *testClock) Config {
	return Config{
		MaxBytes:    8 << 20,
		MaxItemSize: 512 << 10,
		MemoryFile:  filepath.Join(dir, "mem"),
		Now:         clk.now,
	}
}

func openCache(t *testing.T, cfg Config) *Cache {
	t.Helper()
	c, err := New(cfg)
	require.NoError(t, err)
	return c
}

// exptimeOf returns the item's expiry as a Unix second, 0 for none.
func exptimeOf(it Item) int64 {
	if it.Expires.IsZero() {
		return 0
	}
	return it.Expires.Unix()
}

// putItem is the one Go-API store of these tests; ttl in seconds, 0 none.
func putItem(t *testing.T, c *Cache, key string, value []byte, flags uint32, ttl int64) uint64 {
	t.Helper()
	cas, err := c.Store([]byte(key), value, StoreOptions{Flags: flags, TTL: time.Duration(ttl) * time.Second})
	require.NoError(t, err, key)
	return cas
}

// crash ends c as a kill -9 would: the file keeps what was written to it,
// and nothing is saved.
func crash(c *Cache) {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.crawlDone
	for _, s := range c.shards {
		s.mu.Lock()
		s.release()
		s.mu.Unlock()
	}
	c.mf.f.Close()
}

// casHighs tracks the highest CAS seen per shard: CAS values rise within
// a shard (their low bits), and a new one must be above every earlier one
// there, across restarts too, so that no stale CAS matches a new item.
type casHighs struct {
	mask uint64
	high map[uint64]uint64
}

func (h *casHighs) note(cas uint64) {
	if h.high == nil {
		h.high = map[uint64]uint64{}
	}
	h.high[cas&h.mask] = max(h.high[cas&h.mask], cas)
}

func (h *casHighs) requireAbove(t *testing.T, cas uint64) {
	t.Helper()
	require.Greater(t, cas, h.high[cas&h.mask], "a new CAS is above every earlier one of its shard")
	h.note(cas)
}

// stored is what a test expects of an item after a restart.
type stored struct {
	value []byte
	flags uint32
	exp   int64
	cas   uint64
}

func requireItems(t *testing.T, c *Cache, want map[string]stored) {
	t.Helper()
	for k, w := range want {
		it, err := c.Get([]byte(k))
		require.NoError(t, err, k)
		require.True(t, bytes.Equal(w.value, it.Value), "%s: value differs", k)
		require.Equal(t, w.flags, it.Flags, k)
		require.Equal(t, w.exp, exptimeOf(it), k)
		require.Equal(t, w.cas, it.CAS, k)
	}
}

func requireWarm(t *testing.T, c *Cache) {
	t.Helper()
	warm, why := c.WarmStart()
	require.NoError(t, why)
	require.True(t, warm)
}

func requireCold(t *testing.T, c *Cache, reason error) {
	t.Helper()
	warm, why := c.WarmStart()
	require.False(t, warm)
	require.ErrorIs(t, why, reason)
	assert.Zero(t, c.Stats().CurrItems)
}

func TestRestartKeepsItemsFlagsAndCAS(t *testing.T) {
	clk := newTestClock()
	cfg := restartConfig(t.TempDir(), clk)
	c := openCache(t, cfg)
	warm, why := c.WarmStart()
	require.False(t, warm)
	require.ErrorIs(t, why, ErrNoSavedState)

	want := map[string]stored{}
	maxCAS := casHighs{mask: c.shardMask}
	for i, size := 0, 2; size <= 256<<10; i, size = i+1, size*2 {
		k := "size" + strconv.Itoa(i)
		v := bytes.Repeat([]byte{byte('a' + i)}, size)
		cas := putItem(t, c, k, v, uint32(i), 0)
		want[k] = stored{value: v, flags: uint32(i), cas: cas}
		maxCAS.note(cas)
	}
	now := clk.now().Unix()
	casLong := putItem(t, c, "ttl100", []byte("stays"), 0, 100)
	putItem(t, c, "ttl5", []byte("goes"), 0, 5)
	putItem(t, c, "deleted", []byte("gone"), 0, 0)
	require.NoError(t, c.Delete([]byte("deleted")))
	want["ttl100"] = stored{value: []byte("stays"), exp: now + 100, cas: casLong}
	maxCAS.note(casLong)
	require.NoError(t, c.Close())
	_, err := os.Stat(cfg.MemoryFile + MetaSuffix)
	require.NoError(t, err, "Close saves the metadata")

	clk.advance(7 * time.Second)
	c = openCache(t, cfg)
	t.Cleanup(func() { c.Close() })
	requireWarm(t, c)
	_, err = os.Stat(cfg.MemoryFile + MetaSuffix)
	require.ErrorIs(t, err, os.ErrNotExist, "a start removes the metadata, so a crash cannot resume")
	requireItems(t, c, want)
	// The TTL ran on while stopped: 93 of 100 seconds are left.
	it, err := c.Get([]byte("ttl100"))
	require.NoError(t, err)
	assert.Equal(t, int64(93), exptimeOf(it)-clk.now().Unix())
	for _, k := range []string{"ttl5", "deleted"} {
		_, err := c.Get([]byte(k))
		assert.ErrorIs(t, err, ErrNotFound, k)
	}
	for i := range 100 {
		cas := putItem(t, c, "new"+strconv.Itoa(i), []byte("v"), 0, 0)
		maxCAS.requireAbove(t, cas)
	}
}

func TestRestartInTheSameSecond(t *testing.T) {
	clk := newTestClock()
	cfg := restartConfig(t.TempDir(), clk)
	c := openCache(t, cfg)
	cas := putItem(t, c, "k", []byte("v"), 7, 0)
	require.NoError(t, c.Close())
	c = openCache(t, cfg)
	t.Cleanup(func() { c.Close() })
	requireWarm(t, c)
	requireItems(t, c, map[string]stored{"k": {value: []byte("v"), flags: 7, cas: cas}})
}

func TestRestartKeepsFlushes(t *testing.T) {
	clk := newTestClock()
	cfg := restartConfig(t.TempDir(), clk)
	c := openCache(t, cfg)
	putItem(t, c, "before", []byte("v"), 0, 0)
	c.FlushAll(0)
	putItem(t, c, "after", []byte("w"), 0, 0)
	c.FlushAll(30 * time.Second) // due while stopped
	require.NoError(t, c.Close())

	clk.advance(time.Minute)
	c = openCache(t, cfg)
	requireWarm(t, c)
	assert.Zero(t, c.Stats().CurrItems, "the flush due while stopped ran at start")
	for _, k := range []string{"before", "after"} {
		_, err := c.Get([]byte(k))
		assert.ErrorIs(t, err, ErrNotFound, k)
	}
	putItem(t, c, "later", []byte("x"), 0, 0)
	c.FlushAll(30 * time.Second) // due after the next start
	require.NoError(t, c.Close())

	c = openCache(t, cfg)
	t.Cleanup(func() { c.Close() })
	requireWarm(t, c)
	_, err := c.Get([]byte("later"))
	require.NoError(t, err, "a flush not yet due keeps the item")
	clk.advance(31 * time.Second)
	_, err = c.Get([]byte("later"))
	assert.ErrorIs(t, err, ErrNotFound, "the pending flush survived the restart")
}

func TestRestartKeepsPrefixDeletions(t *testing.T) {
	clk := newTestClock()
	cfg := restartConfig(t.TempDir(), clk)
	c := openCache(t, cfg)
	for i := range 1000 {
		putItem(t, c, "a:"+strconv.Itoa(i), []byte("v"), 0, 0)
		putItem(t, c, "b:"+strconv.Itoa(i), []byte("w"), 0, 0)
	}
	require.NoError(t, c.DeletePrefix([]byte("a:")))
	putItem(t, c, "a:after", []byte("x"), 0, 0)
	require.NoError(t, c.Close())

	c = openCache(t, cfg)
	t.Cleanup(func() { c.Close() })
	requireWarm(t, c)
	for i := range 1000 {
		_, err := c.Get([]byte("a:" + strconv.Itoa(i)))
		assert.ErrorIs(t, err, ErrNotFound, "a:%d was deleted before the stop", i)
		_, err = c.Get([]byte("b:" + strconv.Itoa(i)))
		assert.NoError(t, err, "b:%d", i)
	}
	_, err := c.Get([]byte("a:after"))
	assert.NoError(t, err, "stored after the deletion")
	assert.EqualValues(t, 1001, c.Len())
}

func TestRestartAfterCrashIsCold(t *testing.T) {
	clk := newTestClock()
	cfg := restartConfig(t.TempDir(), clk)
	c := openCache(t, cfg)
	putItem(t, c, "k", []byte("v"), 0, 0)
	require.NoError(t, c.Close())

	// A warm start, a delete, then a crash: the delete must not be undone
	// by resuming the state saved before it.
	c = openCache(t, cfg)
	requireWarm(t, c)
	require.NoError(t, c.Delete([]byte("k")))
	putItem(t, c, "unsaved", []byte("u"), 0, 0)
	crash(c)

	c = openCache(t, cfg)
	t.Cleanup(func() { c.Close() })
	requireCold(t, c, ErrNoSavedState)
	for _, k := range []string{"k", "unsaved"} {
		_, err := c.Get([]byte(k))
		assert.ErrorIs(t, err, ErrNotFound, k)
	}
}

func TestRestartWithOtherSettingsIsCold(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"MaxBytes", func(c *Config) { c.MaxBytes = 16 << 20 }},
		{"MaxItemSize", func(c *Config) { c.MaxItemSize = 256 << 10 }},
		{"NoCAS", func(c *Config) { c.NoCAS = true }},
		{"NoEvict", func(c *Config) { c.NoEvict = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newTestClock()
			cfg := restartConfig(t.TempDir(), clk)
			c := openCache(t, cfg)
			putItem(t, c, "k", []byte("v"), 0, 0)
			require.NoError(t, c.Close())
			tt.change(&cfg)
			c = openCache(t, cfg)
			t.Cleanup(func() { c.Close() })
			requireCold(t, c, ErrStateIncompatible)
			assert.ErrorContains(t, func() error { _, why := c.WarmStart(); return why }(), tt.name)
			_, err := c.Get([]byte("k"))
			assert.ErrorIs(t, err, ErrNotFound)
		})
	}
}

// savedFiles fills a cache in dir, closes it, and returns its settings,
// the memory file's and metadata's bytes, and what it held.
func savedFiles(t *testing.T, dir string, clk *testClock) (Config, []byte, []byte, map[string]stored) {
	cfg := restartConfig(dir, clk)
	c := openCache(t, cfg)
	want := map[string]stored{}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		k := "key" + strconv.Itoa(i)
		v := make([]byte, 1+rng.IntN(3000))
		for j := range v {
			v[j] = byte('a' + rng.IntN(26))
		}
		cas := putItem(t, c, k, v, uint32(i), 0)
		want[k] = stored{value: v, flags: uint32(i), cas: cas}
	}
	require.NoError(t, c.Close())
	mem, err := os.ReadFile(cfg.MemoryFile)
	require.NoError(t, err)
	meta, err := os.ReadFile(cfg.MemoryFile + MetaSuffix)
	require.NoError(t, err)
	return cfg, mem, meta, want
}

// TestRestartWithDamagedFiles damages one byte of the metadata or of the
// memory file (arenas and saved indexes alike) at a time: each start must
// be cold, or warm with every item exactly as stored.
func TestRestartWithDamagedFiles(t *testing.T) {
	clk := newTestClock()
	dir := t.TempDir()
	cfg, mem, meta, want := savedFiles(t, dir, clk)
	rng := rand.New(rand.NewPCG(3, 4))
	trials := []struct {
		name string
		file []byte
		at   func() int
	}{
		{"metadata", meta, func() int { return rng.IntN(len(meta)) }},
		{"memory file", mem, func() int { return rng.IntN(len(mem)) }},
		// Most of the memory file is arena space no item uses; aim at
		// the items and the indexes too.
		{"items", mem, func() int { return cfg.itemByteForTest(rng) }},
		{"indexes", mem, func() int { return len(mem) - 1 - rng.IntN(len(mem)-int(cfg.arenasForTest())) }},
	}
	var warmStarts, coldStarts int
	for _, tr := range trials {
		for range 12 {
			at := tr.at()
			damaged := bytes.Clone(tr.file)
			damaged[at] ^= byte(1 + rng.IntN(255))
			m, mt := mem, meta
			if tr.name == "metadata" {
				mt = damaged
			} else {
				m = damaged
			}
			require.NoError(t, os.WriteFile(cfg.MemoryFile, m, 0o600))
			require.NoError(t, os.WriteFile(cfg.MemoryFile+MetaSuffix, mt, 0o600))
			c := openCache(t, cfg)
			if warm, why := c.WarmStart(); warm {
				warmStarts++
				requireItems(t, c, want)
			} else {
				coldStarts++
				require.ErrorIs(t, why, ErrStateCorrupt, "%s byte %d", tr.name, at)
				assert.Zero(t, c.Stats().CurrItems)
			}
			require.NoError(t, c.Close())
		}
	}
	// Damage to the metadata, the items or the indexes is always caught.
	assert.GreaterOrEqual(t, coldStarts, 36, "warm %d, cold %d", warmStarts, coldStarts)

	// A truncated metadata file.
	for _, n := range []int{0, 1, len(meta) / 2, len(meta) - 1} {
		require.NoError(t, os.WriteFile(cfg.MemoryFile, mem, 0o600))
		require.NoError(t, os.WriteFile(cfg.MemoryFile+MetaSuffix, meta[:n], 0o600))
		c := openCache(t, cfg)
		requireCold(t, c, ErrStateCorrupt)
		require.NoError(t, c.Close())
	}
	// A memory file cut short.
	require.NoError(t, os.WriteFile(cfg.MemoryFile, mem[:len(mem)/2], 0o600))
	require.NoError(t, os.WriteFile(cfg.MemoryFile+MetaSuffix, meta, 0o600))
	c := openCache(t, cfg)
	requireCold(t, c, ErrStateCorrupt)
	require.NoError(t, c.Close())
}

// arenasForTest is the bytes of the arenas New lays out for cfg in its
// memory file, and itemByteForTest a random offset among the first bytes
// of a main ring, which a few hundred items fill (they go there while the
// cache has room).
func (cfg Config) arenasForTest() int64 {
	n := int64(shardCount(cfg.MaxBytes, cfg.MaxItemSize))
	page := int64(os.Getpagesize())
	return n * ((cfg.MaxBytes/n + page - 1) &^ (page - 1))
}

func (cfg Config) itemByteForTest(rng *rand.Rand) int {
	n := int64(shardCount(cfg.MaxBytes, cfg.MaxItemSize))
	span := cfg.arenasForTest() / n
	mainBase := cfg.MaxBytes / n * smallRingPercent / 100
	return int(rng.Int64N(n)*span + mainBase + rng.Int64N(64<<10))
}

// TestRestartCyclesWithChurnLoseNothing stops and starts a cache ten
// times with stores, overwrites, deletes, appends and increments between,
// checking every item against a model after each start.
func TestRestartCyclesWithChurnLoseNothing(t *testing.T) {
	clk := newTestClock()
	cfg := restartConfig(t.TempDir(), clk)
	model := map[string]stored{}
	rng := rand.New(rand.NewPCG(5, 6))
	maxCAS := casHighs{mask: uint64(shardCount(cfg.MaxBytes, cfg.MaxItemSize) - 1)}
	note := func(k string, c *Cache) {
		it, err := c.Get([]byte(k))
		require.NoError(t, err, k)
		model[k] = stored{value: bytes.Clone(it.Value), flags: it.Flags, exp: exptimeOf(it), cas: it.CAS}
		maxCAS.note(it.CAS)
	}
	for cycle := range 10 {
		c := openCache(t, cfg)
		if cycle > 0 {
			requireWarm(t, c)
		}
		require.Equal(t, uint64(len(model)), c.Stats().CurrItems, "cycle %d", cycle)
		requireItems(t, c, model)
		for range 400 {
			k := "k" + strconv.Itoa(rng.IntN(600))
			switch op := rng.IntN(10); {
			case op < 5:
				v := bytes.Repeat([]byte{byte('a' + rng.IntN(26))}, 1+rng.IntN(2000))
				var ttl int64
				if rng.IntN(4) == 0 {
					ttl = 3600
				}
				cas := putItem(t, c, k, v, uint32(rng.IntN(1000)), ttl)
				maxCAS.requireAbove(t, cas)
				note(k, c)
			case op < 7:
				err := c.Delete([]byte(k))
				if _, ok := model[k]; ok {
					require.NoError(t, err)
					delete(model, k)
				} else {
					require.ErrorIs(t, err, ErrNotFound)
				}
			case op < 8:
				if err := c.Append([]byte(k), []byte("+tail")); err == nil {
					note(k, c)
				}
			case op < 9:
				n := "n" + strconv.Itoa(rng.IntN(20))
				if _, err := c.Incr([]byte(n), 3); err == nil {
					note(n, c)
				} else {
					putItem(t, c, n, []byte("1"), 0, 0)
					note(n, c)
				}
			default:
				if _, ok := model[k]; ok {
					require.NoError(t, c.Touch([]byte(k), 2*time.Hour))
					note(k, c)
				}
			}
		}
		requireItems(t, c, model)
		require.Zero(t, c.Stats().Evictions, "the test must not fill the cache")
		require.NoError(t, c.Close())
		clk.advance(time.Duration(rng.IntN(3)) * time.Second)
	}
}

func TestMemoryFileIsExclusive(t *testing.T) {
	cfg := restartConfig(t.TempDir(), newTestClock())
	c := openCache(t, cfg)
	t.Cleanup(func() { c.Close() })
	_, err := New(cfg)
	require.ErrorContains(t, err, "in use")
	require.ErrorIs(t, c.SetMaxBytes(16<<20), ErrMemoryFileFixed)
}

// The small ring's live bytes, which decide whether it compacts or evicts,
// come back with a warm restart.
func TestRestartKeepsSmallRingBytes(t *testing.T) {
	clk := newTestClock()
	cfg := restartConfig(t.TempDir(), clk)
	c := openCache(t, cfg)
	value := make([]byte, 1000)
	for i := 0; c.Stats().Evictions == 0; i++ {
		putItem(t, c, "fill"+strconv.Itoa(i), value, 0, 0)
	}
	small := func(c *Cache) (counted, live []uint64) {
		for _, s := range c.shards {
			s.mu.Lock()
			counted, live = append(counted, s.smallBytes), append(live, s.liveIn(&s.small))
			s.mu.Unlock()
		}
		return counted, live
	}
	before, live := small(c)
	require.Equal(t, live, before)
	require.NotZero(t, slices.Max(before), "the small ring holds items")
	require.NoError(t, c.Close())

	c = openCache(t, cfg)
	t.Cleanup(func() { c.Close() })
	requireWarm(t, c)
	after, live := small(c)
	assert.Equal(t, before, after)
	assert.Equal(t, live, after)
}
