package emcache

import "math"

// memcached's number parsing (util.c's safe_strto* over C's strto*), which
// every text and meta command's arguments go through, so that a number
// memcached accepts is accepted here and one it refuses is refused.

// exptimeArg turns a parsed exptime into the cache's argument: memcached
// keeps exptimes in a 32-bit int, so larger numbers wrap as they do there.
func exptimeArg(e int64) int64 { return int64(int32(e)) }

// isCSpace is C's isspace in the C locale.
func isCSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r')
}

// strtoull parses a word as C's strtoull(s, &end, 10) does, with its
// leading white space and sign, and reports whether memcached's safe_
// wrappers accept the result: some digits, nothing but white space after
// them, no overflow. neg reports a leading minus.
func strtoull(w []byte) (v uint64, neg, ok bool) {
	i := 0
	for i < len(w) && isCSpace(w[i]) {
		i++
	}
	if i < len(w) && (w[i] == '+' || w[i] == '-') {
		neg = w[i] == '-'
		i++
	}
	start := i
	for ; i < len(w) && w[i] >= '0' && w[i] <= '9'; i++ {
		d := uint64(w[i] - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, neg, false // ERANGE
		}
		v = v*10 + d
	}
	if i == start || (i < len(w) && !isCSpace(w[i])) {
		return 0, neg, false
	}
	return v, neg, true
}

// safeStrtoull is memcached's safe_strtoull: a negative number is refused
// only when its unsigned value looks negative as a signed one.
func safeStrtoull(w []byte) (uint64, bool) {
	v, neg, ok := strtoull(w)
	if !ok {
		return 0, false
	}
	if neg {
		v = -v
	}
	if neg && int64(v) < 0 {
		return 0, false
	}
	return v, true
}

// safeStrtoul is memcached's safe_strtoul on a 64-bit host: the value is
// parsed as 64 bits and the caller truncates it to 32, so 4294967297 is 1.
func safeStrtoul(w []byte) (uint64, bool) { return safeStrtoull(w) }

// safeStrtol is memcached's safe_strtol on a 64-bit host: C's strtol with
// its range check on long; the caller truncates to 32 bits.
func safeStrtol(w []byte) (int64, bool) {
	v, neg, ok := strtoull(w)
	if !ok {
		return 0, false
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return int64(-v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}
