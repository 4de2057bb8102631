package trace

import (
	"math/rand/v2"
	"strconv"
)

// KeyLen is the length of every key that AppendKey makes. All caches see the
// same fixed-size keys so that a byte budget holds the same payload in each.
const KeyLen = 16

// keyDigits is what is left of KeyLen after the "key:" prefix.
const keyDigits = KeyLen - len("key:")

// AppendKey appends the key of id to dst: "key:" and id in decimal,
// zero-padded to KeyLen bytes. Ids must be below 10^12.
func AppendKey(dst []byte, id uint64) []byte {
	dst = append(dst, "key:"...)
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], id, 10)
	for i := len(d); i < keyDigits; i++ {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}

// newRand returns the generator behind every trace: PCG seeded from seed
// alone, so a trace is a pure function of its parameters.
func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
}

// ZipfTrace returns n key ids drawn from a Zipf distribution with exponent s
// over ids 0..keys-1, id 0 being the most popular.
func ZipfTrace(seed uint64, s float64, keys uint64, n int) []uint64 {
	z := NewZipf(newRand(seed), s, keys)
	out := make([]uint64, n)
	for i := range out {
		out[i] = z.Next()
	}
	return out
}

// ZipfScanTrace returns n key ids: a Zipf stream like ZipfTrace, interrupted
// after every scanEvery draws by a sequential scan of scanLen fresh ids
// (starting at keys and never repeated), as a batch job or a crawler would
// cause. Scan requests count towards n.
func ZipfScanTrace(seed uint64, s float64, keys uint64, n, scanEvery, scanLen int) []uint64 {
	z := NewZipf(newRand(seed), s, keys)
	out := make([]uint64, 0, n)
	fresh := keys
	for len(out) < n {
		for i := 0; i < scanEvery && len(out) < n; i++ {
			out = append(out, z.Next())
		}
		for i := 0; i < scanLen && len(out) < n; i++ {
			out = append(out, fresh)
			fresh++
		}
	}
	return out
}

// LoopTrace returns n key ids cycling through 0..keys-1 in order. With keys
// slightly above a cache's capacity, LRU and FIFO caches hit never; a cache
// that keeps a stable subset hits about capacity/keys of the time.
func LoopTrace(keys uint64, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i) % keys
	}
	return out
}

// ChurnTrace returns n key ids whose popular set shifts over time, as new
// content does: a Zipf stream with exponent s over a window of keys ids in
// which the newest id is the most popular. The window slides by one id
// every shiftEvery requests, so each id enters at rank 0 and sinks one rank
// per slide until it leaves the window and never recurs: request i draws
// rank r and asks for id i/shiftEvery + keys-1-r. Frequency counted in the
// past misleads here, while recency is right.
func ChurnTrace(seed uint64, s float64, keys uint64, n, shiftEvery int) []uint64 {
	z := NewZipf(newRand(seed), s, keys)
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i/shiftEvery) + keys - 1 - z.Next()
	}
	return out
}
