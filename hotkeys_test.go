package emcache

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hotClock replaces s's clock for hot keys with one the test moves by
// hand, and returns the function that moves it: each call to it ends one
// window.
func hotClock(t *testing.T, s *Server) (nextWindow func()) {
	t.Helper()
	h := &s.hot
	require.True(t, h.on, "sampling is off")
	now := time.Unix(1_700_000_000, 0)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clock = func() time.Time { return now }
	h.end = now.Add(h.window)
	h.cur.reset()
	return func() {
		h.mu.Lock()
		now = now.Add(h.window)
		h.mu.Unlock()
	}
}

// keyStats sends `stats <group>` and returns its lines' keys, decoded, and
// values, in order; every line must have exactly the three fields a parser
// of stats replies expects.
func keyStats(t *testing.T, c *testClient, group string) (keys []string, values []uint64) {
	t.Helper()
	c.send("stats " + group + "\r\n")
	for {
		c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
		line, err := c.r.ReadString('\n')
		require.NoError(t, err)
		require.True(t, strings.HasSuffix(line, "\r\n"), "line %q", line)
		line = strings.TrimSuffix(line, "\r\n")
		if line == "END" {
			return keys, values
		}
		f := strings.Split(line, " ")
		require.Len(t, f, 3, "line %q", line)
		require.Equal(t, "STAT", f[0])
		key, err := url.PathUnescape(f[1])
		require.NoError(t, err, "line %q", line)
		v, err := strconv.ParseUint(f[2], 10, 64)
		require.NoError(t, err, "line %q", line)
		keys = append(keys, key)
		values = append(values, v)
	}
}

// Under a Zipf load one key planted at 5% of requests is the hottest of
// each window, at its true rate within 20%.
func TestHotKeysZipfPlanted(t *testing.T) {
	const (
		perWindow = 200_000
		batch     = 100 // keys per get
		lines     = 10  // gets per write
		planted   = "planted:key"
	)
	// 1 in 10 rather than the default 1 in 100 keeps the test short: the
	// planted key then has some 1000 samples a window, so 20% is six
	// standard deviations of its count.
	_, s := startServer(t, ServerConfig{HotKeysSample: 10})
	nextWindow := hotClock(t, s)
	c := dial(t, s)
	r := rand.New(rand.NewPCG(1, 2))
	// The hottest Zipf key takes some 2% of requests: below the planted
	// key, well above most.
	zipf := rand.NewZipf(r, 1.1, 10, 9_999)
	n := 0
	var req strings.Builder
	for w := range 2 {
		plantedReqs := 0
		for range perWindow / (batch * lines) {
			req.Reset()
			for range lines {
				req.WriteString("get")
				for range batch {
					n++
					if n%20 == 0 {
						req.WriteString(" " + planted)
						plantedReqs++
					} else {
						fmt.Fprintf(&req, " k:%d", zipf.Uint64())
					}
				}
				req.WriteString("\r\n")
			}
			c.roundTrip(req.String(), strings.Repeat("END\r\n", lines))
		}
		nextWindow()
		keys, rates := keyStats(t, c, "hotkeys")
		require.NotEmpty(t, keys, "window %d", w)
		assert.Equal(t, planted, keys[0], "window %d: %v %v", w, keys, rates)
		want := float64(plantedReqs) / s.cfg.HotKeysWindow.Seconds()
		assert.InEpsilon(t, want, float64(rates[0]), 0.2, "window %d", w)
		assert.LessOrEqual(t, len(keys), s.cfg.HotKeysK)
		for i := 1; i < len(rates); i++ {
			assert.GreaterOrEqual(t, rates[i-1], rates[i], "hottest first")
		}
	}
	assert.Equal(t, planted, s.HotKeys()[0].Key)
}

// Each protocol's keyed commands are sampled, a window with nothing sampled
// reports nothing, and keys any byte may be in come out parseable.
func TestHotKeysProtocolsAndBinaryKeys(t *testing.T) {
	s, addr := startBinServer(t, ServerConfig{HotKeysSample: 1, HotKeysWindow: time.Second}, Config{})
	nextWindow := hotClock(t, s)
	weird := "a b\r\nc%d\x00\xff"
	conn := protoDial(t, addr)
	var reqs, want []binMsg
	for range 3 {
		set := bStore(binOpSetQ, weird, "v", 0, 0)
		get := bReq(binOpGetQ, weird)
		reqs = append(reqs, set, get)
		want = append(want, bHit(get, 0, false, "v"))
	}
	reqs = append(reqs, bDelta(binOpIncrementQ, "b1", 1, 0, 0)) // creates it, quietly
	binRoundTrip(t, conn, reqs, want)

	c := dial(t, s)
	c.roundTrip("get t1 t1\r\n", "END\r\n")
	c.roundTrip("set t2 0 0 1\r\nx\r\ndelete t2\r\n", "STORED\r\nDELETED\r\n")
	c.roundTrip("mg m1 v\r\nms m2 1\r\ny\r\nmd m2\r\nma m3\r\n", "EN\r\nHD\r\nHD\r\nNF\r\n")
	c.roundTrip("mg TDE= b\r\n", "EN\r\n") // base64 of "L1"
	c.roundTrip("incr i1 1\r\ntouch t4 0\r\n", "NOT_FOUND\r\nNOT_FOUND\r\n")

	nextWindow()
	keys, rates := keyStats(t, c, "hotkeys")
	const perReq = 1 // every request sampled, windows of a second
	got := map[string]uint64{}
	for i, k := range keys {
		got[k] = rates[i]
	}
	assert.Equal(t, map[string]uint64{
		weird: 6 * perReq,
		"t1":  2 * perReq, "t2": 2 * perReq,
		"m1": perReq, "m2": 2 * perReq, "m3": perReq, "L1": perReq,
		"i1": perReq, "t4": perReq, "b1": perReq,
	}, got)
	assert.Equal(t, weird, keys[0])

	bigKeys, sizes := keyStats(t, c, "bigkeys")
	assert.Equal(t, []string{weird}, bigKeys, "t2 and m2 are deleted")
	assert.Equal(t, []uint64{1}, sizes)

	nextWindow()
	keys, _ = keyStats(t, c, "hotkeys")
	assert.Empty(t, keys, "nothing sampled in the window just ended")
	nextWindow()
	nextWindow()
	c.roundTrip("get t3\r\n", "END\r\n")
	keys, _ = keyStats(t, c, "hotkeys")
	assert.Empty(t, keys, "t3 is in the window being counted")
	nextWindow()
	keys, _ = keyStats(t, c, "hotkeys")
	assert.Equal(t, []string{"t3"}, keys)
}

// A value stored once tops the big keys whatever the sampling, and leaves
// them once it is gone.
func TestBigKeysPlanted(t *testing.T) {
	_, s := startServer(t, ServerConfig{HotKeysSample: 1 << 30})
	c := dial(t, s)
	r := rand.New(rand.NewPCG(3, 4))
	var req strings.Builder
	for i := range 500 {
		v := strings.Repeat("s", 1+r.IntN(10_000))
		fmt.Fprintf(&req, "set small:%d 0 0 %d noreply\r\n%s\r\n", i, len(v), v)
	}
	c.send(req.String())
	big := strings.Repeat("B", 900<<10)
	c.roundTrip(fmt.Sprintf("set big:planted 0 0 %d\r\n%s\r\n", len(big), big), "STORED\r\n")
	c.send(req.String())
	c.roundTrip("mn\r\n", "MN\r\n")

	keys, sizes := keyStats(t, c, "bigkeys")
	require.Len(t, keys, s.cfg.HotKeysK)
	assert.Equal(t, "big:planted", keys[0])
	assert.Equal(t, uint64(len(big)), sizes[0])
	for i := 1; i < len(sizes); i++ {
		assert.GreaterOrEqual(t, sizes[i-1], sizes[i], "largest first")
	}
	assert.Equal(t, []KeySize{{"big:planted", len(big)}}, s.BigKeys()[:1])

	c.roundTrip("set big:planted 0 0 1\r\nx\r\n", "STORED\r\n")
	keys, _ = keyStats(t, c, "bigkeys")
	assert.NotContains(t, keys, "big:planted", "replaced by a smaller value")
	assert.Len(t, keys, s.cfg.HotKeysK-1)

	c.roundTrip(fmt.Sprintf("set big:again 0 0 %d\r\n%s\r\n", len(big), big), "STORED\r\n")
	keys, _ = keyStats(t, c, "bigkeys")
	assert.Equal(t, "big:again", keys[0], "the floor fell when the stale key left")
}

// With sampling off nothing is tracked and both groups answer an empty
// list.
func TestHotKeysOff(t *testing.T) {
	_, s := startServer(t, ServerConfig{HotKeysSample: -1})
	c := dial(t, s)
	c.roundTrip("set k 0 0 1\r\nx\r\nget k\r\n", "STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n")
	c.roundTrip("stats hotkeys\r\n", "END\r\n")
	c.roundTrip("stats bigkeys\r\n", "END\r\n")
	assert.Nil(t, s.HotKeys())
	assert.Nil(t, s.BigKeys())
}

// However many distinct keys come, the summaries hold a bounded number.
func TestHotKeysBoundedMemory(t *testing.T) {
	cfg := ServerConfig{HotKeysSample: 1}
	require.NoError(t, cfg.fillHotKeys())
	var h hotKeys
	h.init(&cfg)
	key := make([]byte, 0, 16)
	for i := range 1_000_000 {
		key = strconv.AppendInt(key[:0], int64(i), 36)
		h.observe(key)
		h.stored(resultOK, key, i)
	}
	slots := hotSlotsPerKey * cfg.HotKeysK
	assert.Len(t, h.cur.e, slots)
	assert.Len(t, h.cur.pos, slots)
	assert.Len(t, h.big.keys.e, cfg.HotKeysK)
	assert.Len(t, h.big.keys.pos, cfg.HotKeysK)
	assert.Equal(t, uint64(1_000_000-cfg.HotKeysK), h.big.floor.Load())
}

// A request the sampler passes over copies nothing.
func TestHotKeysUnsampledAllocatesNothing(t *testing.T) {
	cfg := ServerConfig{HotKeysSample: 1 << 62}
	require.NoError(t, cfg.fillHotKeys())
	var h hotKeys
	h.init(&cfg)
	key := []byte("some:key")
	h.stored(resultOK, key, 100)
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		h.observe(key)
		h.stored(resultOK, key, 1)
	}))
}

func TestHotKeysConfig(t *testing.T) {
	cfg := ServerConfig{}
	require.NoError(t, cfg.fillHotKeys())
	assert.Equal(t, 100, cfg.HotKeysSample)
	assert.Equal(t, 10, cfg.HotKeysK)
	assert.Equal(t, 10*time.Second, cfg.HotKeysWindow)
	for _, bad := range []ServerConfig{{HotKeysK: -1}, {HotKeysK: maxHotKeysK + 1}, {HotKeysWindow: -time.Second}} {
		assert.Error(t, bad.fillHotKeys(), "%+v", bad)
	}
}
