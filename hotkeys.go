package emcache

import (
	"cmp"
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Hot keys and big keys (`stats hotkeys`, `stats bigkeys`), which memcached
// cannot tell: the keys taking the most requests, counted from a sample of
// the requests, and the keys holding the largest values, offered by every
// store.

const (
	defaultHotKeysSample = 100 // one request in 100: 1%
	defaultHotKeysK      = 10
	defaultHotKeysWindow = 10 * time.Second

	// hotSlotsPerKey sizes the Space-Saving summary against the K keys it
	// reports: a count overestimates by at most the samples over the
	// slots, so more slots than keys keep the K hottest apart from the
	// keys that churn through the summary's tail.
	hotSlotsPerKey = 8
	// maxHotKeysK bounds the memory the summaries take whatever the key
	// stream: hotSlotsPerKey*maxHotKeysK keys of at most MaxKeyLen bytes.
	maxHotKeysK = 1000
)

// KeyRate is a hot key and its request rate, as [Server.HotKeys] reports it.
type KeyRate struct {
	Key string
	// PerSecond is the key's requests per second over the last complete
	// window, estimated from its sampled requests.
	PerSecond uint64
}

// KeySize is a big key and the length of its value, as [Server.BigKeys]
// reports it.
type KeySize struct {
	Key  string
	Size int
}

// HotKeys returns the keys requested most in the last complete window of
// ServerConfig.HotKeysWindow, hottest first, at most ServerConfig.HotKeysK
// of them: what `stats hotkeys` answers. Requests are sampled, so a key
// needs a rate of some ServerConfig.HotKeysSample requests per window to
// show. It returns nil when sampling is off.
func (s *Server) HotKeys() []KeyRate {
	return s.hot.hottest()
}

// BigKeys returns the keys holding the largest values stored through the
// server's protocols, largest first, at most ServerConfig.HotKeysK of them:
// what `stats bigkeys` answers. Every store is considered, not a sample, so
// one large value shows however rarely it is written. A key whose value was
// deleted, expired, evicted or replaced by a smaller one since is left out,
// which makes room for later stores. It returns nil when sampling is off.
func (s *Server) BigKeys() []KeySize {
	return s.hot.big.largest(s.cache)
}

// fillHotKeys checks and defaults the hot-keys settings.
func (cfg *ServerConfig) fillHotKeys() error {
	switch {
	case cfg.HotKeysK < 0 || cfg.HotKeysK > maxHotKeysK:
		return fmt.Errorf("emcache: ServerConfig.HotKeysK must be 0 to %d, got %d", maxHotKeysK, cfg.HotKeysK)
	case cfg.HotKeysWindow < 0:
		return fmt.Errorf("emcache: ServerConfig.HotKeysWindow must not be negative, got %v", cfg.HotKeysWindow)
	}
	if cfg.HotKeysSample == 0 {
		cfg.HotKeysSample = defaultHotKeysSample
	}
	if cfg.HotKeysK == 0 {
		cfg.HotKeysK = defaultHotKeysK
	}
	if cfg.HotKeysWindow == 0 {
		cfg.HotKeysWindow = defaultHotKeysWindow
	}
	return nil
}

// hotKeys samples keyed requests into a per-window Space-Saving summary and
// keeps the big keys. The fields before mu are set before the workers start
// and only read after, so the request path reads them without a lock.
type hotKeys struct {
	on     bool
	limit  uint64 // a request is sampled when a random uint64 is at most limit
	every  uint64 // the sampling's 1-in-N, which scales counts back to requests
	k      int
	window time.Duration

	mu    sync.Mutex
	clock func() time.Time // time.Now; tests drive the windows with their own
	end   time.Time        // when the window being counted ends
	cur   keyHeap          // the window being counted
	last  []KeyRate        // the last complete window's hottest

	big bigKeys
}

func (h *hotKeys) init(cfg *ServerConfig) {
	if cfg.HotKeysSample < 0 {
		return
	}
	h.on = true
	h.every = uint64(cfg.HotKeysSample)
	// P(draw <= limit) = (limit+1)/2^64: 1/N, and exactly 1 for N = 1.
	h.limit = math.MaxUint64 / h.every
	h.k, h.window = cfg.HotKeysK, cfg.HotKeysWindow
	h.clock = time.Now
	h.end = h.clock().Add(h.window)
	h.cur.init(hotSlotsPerKey * h.k)
	h.big.keys.init(h.k)
}

// observe offers a keyed request to the sampler; inlined, it costs one
// branch while sampling is off.
func (h *hotKeys) observe(key []byte) {
	if h.on {
		h.draw(key)
	}
}

// draw samples key with probability 1/every. The draw comes from the
// runtime's per-thread generator, and each worker runs on a thread of its
// own: workers share nothing until a request is sampled, where a shared
// 1-in-N counter would bounce a cache line between them on every request.
// Random draws rather than every Nth request also keep a client that cycles
// through N keys from aliasing with the sampler and showing one key only.
func (h *hotKeys) draw(key []byte) {
	if rand.Uint64() > h.limit {
		return
	}
	h.mu.Lock()
	h.rotateLocked(h.clock())
	h.cur.bump(key)
	h.mu.Unlock()
}

// stored offers a store's value length to the big keys; inlined, it costs
// one branch while sampling is off and one comparison more for a value too
// small to enter. (Its inlining cost is at the compiler's budget: keep it
// this small.)
func (h *hotKeys) stored(res result, key []byte, size int) {
	if h.on && uint64(size) > h.big.floor.Load() {
		h.big.offer(res, key, size)
	}
}

// rotateLocked closes the window being counted once now is past its end.
// Windows follow each other from the server's start, so that each count
// spans one whole window; when a whole window passed with nothing sampled,
// the last one is empty.
func (h *hotKeys) rotateLocked(now time.Time) {
	if now.Before(h.end) {
		return
	}
	ended := int64(now.Sub(h.end)/h.window) + 1
	h.last = nil
	if ended == 1 {
		h.last = h.ratesLocked()
	}
	h.cur.reset()
	h.end = h.end.Add(time.Duration(ended) * h.window)
}

// ratesLocked turns the current window's k highest counts into rates.
func (h *hotKeys) ratesLocked() []KeyRate {
	top := h.cur.top(h.k)
	if len(top) == 0 {
		return nil
	}
	perCount := float64(h.every) / h.window.Seconds()
	rates := make([]KeyRate, len(top))
	for i, e := range top {
		rates[i] = KeyRate{Key: e.key, PerSecond: uint64(math.Round(float64(e.n) * perCount))}
	}
	return rates
}

func (h *hotKeys) hottest() []KeyRate {
	if !h.on {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rotateLocked(h.clock())
	return slices.Clone(h.last)
}

// bigKeys holds the k largest values offered. Once it holds k, floor is
// the smallest of them, which a store must exceed to be worth the lock.
type bigKeys struct {
	floor atomic.Uint64
	mu    sync.Mutex
	keys  keyHeap
}

// offer is stored's slow path: the result is checked here, past the floor,
// to keep stored small enough to inline.
func (b *bigKeys) offer(res result, key []byte, vlen int) {
	if res != resultOK {
		return
	}
	size := uint64(vlen)
	b.mu.Lock()
	defer b.mu.Unlock()
	if i, ok := b.keys.pos[string(key)]; ok {
		b.keys.e[i].n = size
		heap.Fix(&b.keys, i)
	} else if len(b.keys.e) < b.keys.max {
		heap.Push(&b.keys, keyCount{key: string(key), n: size})
	} else if size > b.keys.e[0].n {
		// Checked again: another store may have raised the floor since.
		b.keys.replaceMin(string(key), size)
	}
	b.setFloorLocked()
}

func (b *bigKeys) setFloorLocked() {
	var f uint64
	if len(b.keys.e) == b.keys.max {
		f = b.keys.e[0].n
	}
	b.floor.Store(f)
}

// largest keeps the keys that still hold a value at least as large as the
// one offered, with its length now, and returns them largest first.
func (b *bigKeys) largest(c *Cache) []KeySize {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys.max == 0 { // off
		return nil
	}
	kept := b.keys.e[:0]
	for _, e := range b.keys.e {
		if size, ok := c.peekSize([]byte(e.key)); ok && uint64(size) >= e.n {
			kept = append(kept, keyCount{key: e.key, n: uint64(size)})
		}
	}
	clear(b.keys.e[len(kept):])
	b.keys.e = kept
	clear(b.keys.pos)
	for i, e := range kept {
		b.keys.pos[e.key] = i
	}
	heap.Init(&b.keys)
	b.setFloorLocked()

	top := b.keys.top(len(kept))
	if len(top) == 0 {
		return nil
	}
	sizes := make([]KeySize, len(top))
	for i, e := range top {
		sizes[i] = KeySize{Key: e.key, Size: int(e.n)}
	}
	return sizes
}

// keyHeap is a min-heap of at most max keys by a number, which knows where
// each key is so that its number can change in place.
type keyHeap struct {
	e   []keyCount
	pos map[string]int
	max int
}

type keyCount struct {
	key string
	n   uint64
}

func (h *keyHeap) init(n int) {
	h.max = n
	h.e = make([]keyCount, 0, n)
	h.pos = make(map[string]int, n)
}

func (h *keyHeap) Len() int           { return len(h.e) }
func (h *keyHeap) Less(i, j int) bool { return h.e[i].n < h.e[j].n }

func (h *keyHeap) Swap(i, j int) {
	h.e[i], h.e[j] = h.e[j], h.e[i]
	h.pos[h.e[i].key] = i
	h.pos[h.e[j].key] = j
}

func (h *keyHeap) Push(x any) {
	e := x.(keyCount)
	h.pos[e.key] = len(h.e)
	h.e = append(h.e, e)
}

func (h *keyHeap) Pop() any {
	e := h.e[len(h.e)-1]
	h.e = h.e[:len(h.e)-1]
	delete(h.pos, e.key)
	return e
}

// bump counts one more sample of key the Space-Saving way: a key not held
// while the heap is full takes the place of the least counted and inherits
// its count, so that a count overestimates by at most what it displaced
// and a key stream of any variety fits in max keys.
func (h *keyHeap) bump(key []byte) {
	if i, ok := h.pos[string(key)]; ok {
		h.e[i].n++
		heap.Fix(h, i)
		return
	}
	if len(h.e) < h.max {
		heap.Push(h, keyCount{key: string(key), n: 1})
		return
	}
	h.replaceMin(string(key), h.e[0].n+1)
}

func (h *keyHeap) replaceMin(key string, n uint64) {
	delete(h.pos, h.e[0].key)
	h.e[0] = keyCount{key: key, n: n}
	h.pos[key] = 0
	heap.Fix(h, 0)
}

// top returns the k highest, highest first, ties in key order.
func (h *keyHeap) top(k int) []keyCount {
	all := slices.Clone(h.e)
	slices.SortFunc(all, func(a, b keyCount) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		return cmp.Compare(a.key, b.key)
	})
	return all[:min(k, len(all))]
}

func (h *keyHeap) reset() {
	clear(h.e)
	h.e = h.e[:0]
	clear(h.pos)
}

// appendHotKeys answers `stats hotkeys`. Keys are percent-encoded as in
// memcached's metadump: a binary-protocol key may hold spaces, CR or LF.
func (s *Server) appendHotKeys(out []byte) []byte {
	for _, kr := range s.HotKeys() {
		out = appendKeyStat(out, kr.Key, kr.PerSecond)
	}
	return append(out, rEnd...)
}

// appendBigKeys answers `stats bigkeys`, keys encoded as for hot keys.
func (s *Server) appendBigKeys(out []byte) []byte {
	for _, ks := range s.BigKeys() {
		out = appendKeyStat(out, ks.Key, uint64(ks.Size))
	}
	return append(out, rEnd...)
}

func appendKeyStat(out []byte, key string, v uint64) []byte {
	out = append(out, "STAT "...)
	out = appendURIEncoded(out, []byte(key))
	out = append(out, ' ')
	out = strconv.AppendUint(out, v, 10)
	return append(out, rCRLF...)
}
