package emcache

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Sizes of FuzzCacheOps's cache: small enough that a few dozen operations
// evict, and with the smallest item size memcached allows.
const (
	fuzzMaxBytes    = 64 << 10
	fuzzMaxItemSize = 1 << 10
	// fuzzMaxOps bounds the operations one input runs, however long it is.
	fuzzMaxOps = 4096
)

// Operations of FuzzCacheOps, chosen by an input byte modulo fuzzNumOps.
const (
	fuzzSet = iota
	fuzzAdd
	fuzzReplace
	fuzzAppend
	fuzzPrepend
	fuzzCAS
	fuzzDelete
	fuzzIncr
	fuzzDecr
	fuzzTouch
	fuzzGet
	fuzzGetAndTouch
	fuzzGetMulti
	fuzzFlush
	fuzzAdvance
	fuzzNumOps
)

// fuzzKeys are the keys an input byte picks from, modulo their count:
// enough short keys for their values to overflow the cache, keys at and near
// MaxKeyLen, and two invalid keys that every operation must refuse.
var fuzzKeys = func() []string {
	var keys []string
	for i := range 96 {
		keys = append(keys, fmt.Sprintf("k%d", i))
	}
	return append(keys,
		strings.Repeat("m", 120),
		strings.Repeat("L", MaxKeyLen),
		"",                               // invalid: empty
		strings.Repeat("x", MaxKeyLen+1), // invalid: too long
	)
}()

// FuzzCacheOps decodes its input as a sequence of cache operations and runs
// them against a small cache and a map model. The cache may forget items
// (eviction), so a miss is always allowed, except with NoEvict, where
// nothing may vanish; but a hit must return exactly the model's last write,
// with its flags, expiry and CAS, and no operation may panic.
//
// Input layout: one configuration byte (bit 0: NoEvict), then per operation
// an opcode byte and its arguments, each one byte (a missing byte reads as 0).
func FuzzCacheOps(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		fz := newCacheFuzzer(t, data)
		for ops := 0; ops < fuzzMaxOps && fz.pos < len(fz.data); ops++ {
			fz.step(ops)
			require.LessOrEqual(t, fz.c.Stats().Bytes, uint64(fuzzMaxBytes), "%s: arena over MaxBytes", fz.op)
		}
		fz.checkAll()
	})
}

// cacheFuzzer is one run of FuzzCacheOps: the input, the cache under test,
// its clock and the model of what it must hold.
type cacheFuzzer struct {
	t       *testing.T
	data    []byte
	pos     int
	c       *Cache
	clk     *fakeClock
	noEvict bool
	model   map[string]*modelItem
	// flushAt is a delayed flush_all not yet applied, in Unix seconds.
	flushAt int64
	// mayVanish holds keys that may be gone even from a NoEvict cache: a
	// delayed flush_all was due when a newer one replaced it, and the
	// background reclaimer, which runs on wall-clock ticks, may or may not
	// have applied it first.
	mayVanish map[string]bool
	gen       int // store counter, to make every written value distinct
	op        string
}

func newCacheFuzzer(t *testing.T, data []byte) *cacheFuzzer {
	fz := &cacheFuzzer{t: t, data: data, clk: newFakeClock(), model: map[string]*modelItem{}, mayVanish: map[string]bool{}}
	fz.noEvict = fz.next()&1 != 0
	c, err := New(Config{MaxBytes: fuzzMaxBytes, MaxItemSize: fuzzMaxItemSize, NoEvict: fz.noEvict, Now: fz.clk.Now})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	fz.c = c
	return fz
}

func (fz *cacheFuzzer) next() byte {
	if fz.pos >= len(fz.data) {
		return 0
	}
	b := fz.data[fz.pos]
	fz.pos++
	return b
}

func (fz *cacheFuzzer) now() int64 { return fz.clk.Now().Unix() }

// key returns the key an argument byte selects and whether it is valid.
func (fz *cacheFuzzer) key() (string, bool) {
	k := fuzzKeys[int(fz.next())%len(fuzzKeys)]
	return k, len(k) >= 1 && len(k) <= MaxKeyLen
}

// value returns a fresh value: a number (possibly space-padded, possibly
// near 2^64) for incr and decr, or 0 to 1075 bytes, enough to cross
// MaxItemSize. Each starts with its key and a generation, so a value read
// under the wrong key or a stale one cannot pass for the right one.
func (fz *cacheFuzzer) value(key string) []byte {
	b := fz.next()
	fz.gen++
	if b < 40 {
		n := uint64(fz.next())<<8 | uint64(fz.next())
		switch b % 4 {
		case 0:
			return strconv.AppendUint(nil, n, 10)
		case 1:
			return fmt.Appendf(nil, "  %d", n)
		case 2:
			return fmt.Appendf(nil, "%d   ", n)
		default:
			return strconv.AppendUint(nil, math.MaxUint64-n, 10)
		}
	}
	n := int(b-40) * 5
	v := fmt.Appendf(make([]byte, 0, n+32), "%s#%d#", key, fz.gen)
	for len(v) < n {
		v = append(v, byte('a'+fz.gen%26))
	}
	return v[:n]
}

// ttl returns a TTL covering the Go API's cases: none, negative, below a
// second, whole and fractional seconds, 30 days and just beyond (memcached's
// boundary, which a Go TTL does not have) and beyond 32-bit Unix time.
func (fz *cacheFuzzer) ttl() time.Duration {
	switch fz.next() % 10 {
	case 0, 1:
		return 0
	case 2:
		return -time.Nanosecond
	case 3:
		return time.Millisecond
	case 4:
		return time.Second
	case 5:
		return 2500 * time.Millisecond
	case 6:
		return relativeExptimeMax * time.Second
	case 7:
		return (relativeExptimeMax + 1) * time.Second
	case 8:
		return math.MaxInt64
	default:
		return 3 * time.Second
	}
}

// absExp is when an item stored now with ttl expires, as an absolute Unix
// second: a negative TTL at once (second 1), a positive one rounded up.
func (fz *cacheFuzzer) absExp(ttl time.Duration) int64 {
	switch {
	case ttl == 0:
		return 0
	case ttl < 0:
		return 1
	}
	e := fz.now() + int64((ttl-1)/time.Second) + 1
	return min(e, math.MaxUint32)
}

// tooLarge is memcached's item size rule (ItemOverhead): client flags count
// 4 bytes.
func tooLarge(key string, valueLen int, flags uint32) bool {
	n := ItemOverhead + len(key) + valueLen
	if flags != 0 {
		n += 4
	}
	return n > fuzzMaxItemSize
}

// live returns the model's item for key if the cache must consider it live.
// Like memcached, a delayed flush_all takes effect lazily, at the first
// operation on a key at or after its time (a newer flush_all replacing it
// before then cancels it), so the model applies it the same way.
func (fz *cacheFuzzer) live(key string) *modelItem {
	now := fz.now()
	if fz.flushAt != 0 && now >= fz.flushAt {
		clear(fz.model)
		fz.flushAt = 0
	}
	m := fz.model[key]
	if m != nil && m.exp != 0 && m.exp <= now {
		delete(fz.model, key)
		return nil
	}
	return m
}

// vanished records that the cache no longer has key although the model
// does: eviction, which NoEvict forbids.
func (fz *cacheFuzzer) vanished(key string) {
	require.False(fz.t, fz.noEvict && !fz.mayVanish[key], "%s: %q vanished from a NoEvict cache", fz.op, key)
	delete(fz.model, key)
}

// checkHit compares a hit with the model's last write for key.
func (fz *cacheFuzzer) checkHit(key string, m *modelItem, it Item) {
	t := fz.t
	require.NotNil(t, m, "%s: hit on %q, which holds nothing (value %q)", fz.op, key, it.Value)
	require.Equal(t, string(m.value), string(it.Value), "%s: value of %q", fz.op, key)
	require.Equal(t, m.flags, it.Flags, "%s: flags of %q", fz.op, key)
	require.Equal(t, m.exp, unixOf(it.Expires), "%s: exptime of %q", fz.op, key)
	require.Equal(t, m.cas, it.CAS, "%s: CAS of %q", fz.op, key)
}

// stored records a successful store of a whole new value.
func (fz *cacheFuzzer) stored(key string, v []byte, flags uint32, exp time.Duration, cas uint64) {
	require.NotZero(fz.t, cas, "%s: a store returned CAS 0", fz.op)
	delete(fz.mayVanish, key)
	fz.model[key] = &modelItem{value: v, flags: flags, exp: fz.absExp(exp), cas: cas}
}

// step decodes and runs one operation.
func (fz *cacheFuzzer) step(n int) {
	t := fz.t
	opc := int(fz.next()) % fuzzNumOps
	fz.op = fmt.Sprintf("op %d (%d)", n, opc)
	switch opc {
	case fuzzFlush:
		if d := fz.next() % 4; d == 0 {
			fz.c.FlushAll(0)
			clear(fz.model)
			fz.flushAt = 0
		} else {
			if fz.flushAt != 0 && fz.now() >= fz.flushAt {
				for key := range fz.model {
					fz.mayVanish[key] = true
				}
			}
			fz.c.FlushAll(time.Duration(d) * time.Second)
			fz.flushAt = fz.now() + int64(d)
		}
		return
	case fuzzAdvance:
		fz.clk.Advance(time.Duration(fz.next()%16) * 250 * time.Millisecond)
		return
	case fuzzGetMulti:
		fz.getMulti()
		return
	}

	key, valid := fz.key()
	if !valid {
		fz.invalidKey(opc, key)
		return
	}
	m := fz.live(key)
	k := []byte(key)
	switch opc {
	case fuzzSet:
		v, flags, exp := fz.value(key), uint32(fz.next())*0x01010101, fz.ttl()
		cas, err := fz.c.Store(k, v, StoreOptions{Flags: flags, TTL: exp})
		require.Equal(t, tooLarge(key, len(v), flags), errors.Is(err, ErrTooLarge), "%s: set of %d bytes: %v", fz.op, len(v), err)
		switch {
		case err == nil:
			fz.stored(key, v, flags, exp, cas)
		case errors.Is(err, ErrTooLarge), errors.Is(err, ErrNoMemory) && fz.noEvict:
			delete(fz.model, key) // memcached unlinks the old value of a failed set
		default:
			require.NoError(t, err, "%s: set", fz.op)
		}

	case fuzzAdd, fuzzReplace:
		v, flags, exp := fz.value(key), uint32(fz.next())*0x01010101, fz.ttl()
		var cas uint64
		var err error
		if opc == fuzzAdd {
			cas, err = fz.c.Store(k, v, StoreOptions{Mode: ModeAdd, Flags: flags, TTL: exp})
		} else {
			cas, err = fz.c.Store(k, v, StoreOptions{Mode: ModeReplace, Flags: flags, TTL: exp})
		}
		switch {
		case err == nil:
			if opc == fuzzAdd && m != nil {
				fz.vanished(key)
			}
			require.False(t, opc == fuzzReplace && m == nil, "%s: replace of absent %q stored", fz.op, key)
			require.False(t, tooLarge(key, len(v), flags), "%s: stored an oversized value", fz.op)
			fz.stored(key, v, flags, exp, cas)
		case errors.Is(err, ErrNotStored):
			if opc == fuzzAdd {
				require.NotNil(t, m, "%s: add of absent %q not stored", fz.op, key)
			} else if m != nil {
				fz.vanished(key)
			}
		case errors.Is(err, ErrTooLarge):
			require.True(t, tooLarge(key, len(v), flags), "%s: %d bytes refused as too large", fz.op, len(v))
			if opc == fuzzAdd && m != nil {
				fz.vanished(key) // add reaches the size check only for an absent key
			}
			require.False(t, opc == fuzzReplace && m == nil, "%s: replace of absent %q: %v", fz.op, key, err)
		case errors.Is(err, ErrNoMemory):
			require.True(t, fz.noEvict, "%s: %v while evicting", fz.op, err)
		default:
			require.NoError(t, err, "%s", fz.op)
		}

	case fuzzAppend, fuzzPrepend:
		v := fz.value(key)
		var cas uint64
		var err error
		if opc == fuzzAppend {
			cas, err = fz.c.Store(k, v, StoreOptions{Mode: ModeAppend})
		} else {
			cas, err = fz.c.Store(k, v, StoreOptions{Mode: ModePrepend})
		}
		if m == nil {
			require.ErrorIs(t, err, ErrNotStored, "%s: append/prepend to absent %q", fz.op, key)
			return
		}
		big := tooLarge(key, len(m.value)+len(v), m.flags)
		switch {
		case err == nil:
			require.False(t, big, "%s: stored an oversized value", fz.op)
			require.NotZero(t, cas)
			if opc == fuzzAppend {
				m.value = append(append([]byte(nil), m.value...), v...)
			} else {
				m.value = append(append([]byte(nil), v...), m.value...)
			}
			m.cas = cas
		case errors.Is(err, ErrNotStored):
			fz.vanished(key)
		case errors.Is(err, ErrTooLarge):
			require.True(t, big, "%s: %d+%d bytes refused as too large", fz.op, len(m.value), len(v))
		case errors.Is(err, ErrNoMemory):
			require.True(t, fz.noEvict, "%s: %v while evicting", fz.op, err)
		default:
			require.NoError(t, err, "%s", fz.op)
		}

	case fuzzCAS:
		v, flags, exp := fz.value(key), uint32(fz.next())*0x01010101, fz.ttl()
		want := uint64(fz.next()) + 1 // a stale or made-up CAS
		right := m != nil && fz.next()%4 != 0
		if right {
			want = m.cas
		} else if m != nil && want == m.cas {
			want++
		}
		cas, err := fz.c.Store(k, v, StoreOptions{Flags: flags, TTL: exp, CAS: want})
		if m == nil {
			require.ErrorIs(t, err, ErrNotFound, "%s: cas on absent %q", fz.op, key)
			return
		}
		switch {
		case err == nil:
			require.True(t, right, "%s: cas with a wrong CAS stored", fz.op)
			require.False(t, tooLarge(key, len(v), flags), "%s: stored an oversized value", fz.op)
			fz.stored(key, v, flags, exp, cas)
		case errors.Is(err, ErrNotFound):
			fz.vanished(key)
		case errors.Is(err, ErrExists):
			require.False(t, right, "%s: cas with the right CAS refused", fz.op)
		case errors.Is(err, ErrTooLarge):
			require.True(t, right && tooLarge(key, len(v), flags), "%s: %v", fz.op, err)
		case errors.Is(err, ErrNoMemory):
			require.True(t, right && fz.noEvict, "%s: %v", fz.op, err)
		default:
			require.NoError(t, err, "%s", fz.op)
		}

	case fuzzDelete:
		err := fz.c.Delete(k)
		if m == nil {
			require.ErrorIs(t, err, ErrNotFound, "%s: delete of absent %q", fz.op, key)
			return
		}
		if errors.Is(err, ErrNotFound) {
			fz.vanished(key)
			return
		}
		require.NoError(t, err, "%s", fz.op)
		delete(fz.model, key)

	case fuzzIncr, fuzzDecr:
		fz.arithmetic(opc == fuzzIncr, key, m)

	case fuzzTouch:
		exp := fz.ttl()
		err := fz.c.Touch(k, exp)
		if m == nil {
			require.ErrorIs(t, err, ErrNotFound, "%s: touch of absent %q", fz.op, key)
			return
		}
		if errors.Is(err, ErrNotFound) {
			fz.vanished(key)
			return
		}
		require.NoError(t, err, "%s", fz.op)
		m.exp = fz.absExp(exp)

	case fuzzGet, fuzzGetAndTouch:
		var it Item
		var err error
		if opc == fuzzGet {
			it, err = fz.c.Get(k)
		} else {
			exp := fz.ttl()
			it, err = fz.c.GetAndTouch(k, exp)
			if m != nil && err == nil {
				m.exp = fz.absExp(exp)
			}
		}
		if errors.Is(err, ErrNotFound) {
			if m != nil {
				fz.vanished(key)
			}
			return
		}
		require.NoError(t, err, "%s", fz.op)
		fz.checkHit(key, m, it)
	}
}

// invalidKey runs an operation with a key memcached cannot hold: every
// operation must refuse it.
func (fz *cacheFuzzer) invalidKey(opc int, key string) {
	k := []byte(key)
	var err error
	switch opc {
	case fuzzSet:
		err = fz.c.Set(k, []byte("v"), 0)
	case fuzzAdd:
		err = fz.c.Add(k, []byte("v"), 0)
	case fuzzReplace:
		err = fz.c.Replace(k, []byte("v"), 0)
	case fuzzAppend:
		err = fz.c.Append(k, []byte("v"))
	case fuzzPrepend:
		err = fz.c.Prepend(k, []byte("v"))
	case fuzzCAS:
		err = fz.c.CompareAndSwap(k, []byte("v"), 1, 0)
	case fuzzDelete:
		err = fz.c.Delete(k)
	case fuzzIncr:
		_, err = fz.c.Incr(k, 1)
	case fuzzDecr:
		_, err = fz.c.Decr(k, 1)
	case fuzzTouch:
		err = fz.c.Touch(k, 0)
	case fuzzGet:
		_, err = fz.c.Get(k)
	default:
		_, err = fz.c.GetAndTouch(k, 0)
	}
	require.ErrorIs(fz.t, err, ErrKeyInvalid, "%s: key of %d bytes", fz.op, len(key))
}

// arithmetic runs incr or decr and checks the result and the stored value,
// which keeps its length, space-padded, when the number gets shorter.
func (fz *cacheFuzzer) arithmetic(incr bool, key string, m *modelItem) {
	t := fz.t
	k := []byte(key)
	delta := uint64(fz.next())
	if fz.next()%8 == 0 {
		delta = math.MaxUint64 - delta // wraps incr, clamps decr
	}
	var got uint64
	var err error
	if incr {
		got, err = fz.c.Incr(k, delta)
	} else {
		got, err = fz.c.Decr(k, delta)
	}
	if m == nil {
		require.ErrorIs(t, err, ErrNotFound, "%s: incr/decr of absent %q", fz.op, key)
		return
	}
	if errors.Is(err, ErrNotFound) {
		fz.vanished(key)
		return
	}
	old, numeric := fuzzParseNumber(m.value)
	if !numeric {
		require.ErrorIs(t, err, ErrNotNumeric, "%s: incr/decr of %q", fz.op, m.value)
		return
	}
	if errors.Is(err, ErrNoMemory) {
		require.True(t, fz.noEvict, "%s: %v while evicting", fz.op, err)
		return
	}
	require.NoError(t, err, "%s: incr/decr of %q", fz.op, m.value)
	want := old + delta // wraps at 2^64, as memcached's incr
	if !incr {
		want = old - min(old, delta)
	}
	require.Equal(t, want, got, "%s: %q incr=%v by %d", fz.op, m.value, incr, delta)
	digits := strconv.AppendUint(nil, want, 10)
	if len(digits) < len(m.value) {
		digits = append(digits, strings.Repeat(" ", len(m.value)-len(digits))...)
	}
	// The new CAS is only visible to a read; a longer number may also have
	// been stored as a new item whose old self was evicted to make room,
	// which memcached then stores without flags or expiry.
	it, err := fz.c.Get(k)
	if errors.Is(err, ErrNotFound) {
		fz.vanished(key)
		return
	}
	require.NoError(t, err, "%s", fz.op)
	require.Equal(t, string(digits), string(it.Value), "%s: value after incr/decr", fz.op)
	require.NotEqual(t, m.cas, it.CAS, "%s: incr/decr kept the CAS", fz.op)
	if it.Flags != m.flags || unixOf(it.Expires) != m.exp {
		require.False(t, fz.noEvict || len(digits) == len(m.value),
			"%s: incr/decr changed flags/exptime from %d/%d to %d/%d", fz.op, m.flags, m.exp, it.Flags, unixOf(it.Expires))
		require.Zero(t, it.Flags)
		require.Zero(t, unixOf(it.Expires))
	}
	m.value, m.flags, m.exp, m.cas = digits, it.Flags, unixOf(it.Expires), it.CAS
}

// fuzzParseNumber models memcached's parse of a value for incr and decr:
// strtoull over it as a C string (up to a NUL): leading white space, an
// optional sign, digits, then the end or white space; a minus only when
// the result does not look negative as a signed number.
func fuzzParseNumber(v []byte) (uint64, bool) {
	const space = " \t\n\v\f\r"
	s := string(v)
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimLeft(s, space)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	end := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(s)
	}
	if end == 0 || end < len(s) && !strings.ContainsRune(space, rune(s[end])) {
		return 0, false
	}
	n, err := strconv.ParseUint(s[:end], 10, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		n = -n
		if int64(n) < 0 {
			return 0, false
		}
	}
	return n, true
}

// getMulti reads one to four keys at once.
func (fz *cacheFuzzer) getMulti() {
	n := int(fz.next())%4 + 1
	var keys [][]byte
	want := map[string]*modelItem{}
	invalid := 0
	for range n {
		key, valid := fz.key()
		keys = append(keys, []byte(key))
		if valid {
			want[key] = fz.live(key)
		} else {
			invalid++
		}
	}
	got, err := fz.c.GetMulti(keys)
	require.Len(fz.t, errorsOf(err), invalid, "%s: GetMulti reports an error only for invalid keys: %v", fz.op, err)
	require.NotErrorIs(fz.t, err, ErrNotFound, "%s: a miss is no error", fz.op)
	for key, it := range got {
		m, ok := want[key]
		require.True(fz.t, ok, "%s: GetMulti returned unasked or invalid key %q", fz.op, key)
		fz.checkHit(key, m, it)
	}
	for key, m := range want {
		if _, hit := got[key]; !hit && m != nil {
			fz.vanished(key)
		}
	}
}

// checkAll reads back every key the model holds.
func (fz *cacheFuzzer) checkAll() {
	fz.op = "final read"
	for _, key := range fuzzKeys {
		if len(key) < 1 || len(key) > MaxKeyLen {
			continue
		}
		m := fz.live(key)
		it, err := fz.c.Get([]byte(key))
		if errors.Is(err, ErrNotFound) {
			if m != nil {
				fz.vanished(key)
			}
			continue
		}
		require.NoError(fz.t, err)
		fz.checkHit(key, m, it)
	}
}
