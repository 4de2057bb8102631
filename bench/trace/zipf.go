// Package trace generates the deterministic synthetic key streams that the
// benchmarks replay: Zipf-distributed keys for any exponent, Zipf with
// periodic scans, loops, and Zipf over a sliding window of keys (churn).
package trace

import (
	"math"
	"math/rand/v2"
)

// Zipf draws ranks from a Zipf distribution over n elements,
// P(rank k) ∝ k^-s for k = 1..n, for any exponent s > 0.
//
// math/rand/v2's Zipf only accepts s > 1, but cache traces are usually
// modelled with s between 0.6 and 1.1, so this uses rejection-inversion
// sampling (W. Hörmann and G. Derflinger, "Rejection-inversion to generate
// variates from monotone discrete distributions", 1996), the method of Apache
// Commons RNG's RejectionInversionZipfSampler: O(1) memory and expected O(1)
// time per draw for every s and n.
type Zipf struct {
	rng *rand.Rand
	n   float64
	s   float64
	// hX1 and hN bound the area under the continuous hat function from which
	// a draw is inverted; accept is the squeeze that accepts most draws
	// without evaluating the hat integral again.
	hX1, hN, accept float64
}

// NewZipf returns a sampler of ranks 0..n-1 (rank 0 is the most popular)
// with exponent s, drawing uniform numbers from rng. It panics if s <= 0 or
// n == 0, which are programming errors in a benchmark definition.
func NewZipf(rng *rand.Rand, s float64, n uint64) *Zipf {
	if !(s > 0) || n == 0 {
		panic("trace: Zipf needs s > 0 and n > 0")
	}
	z := &Zipf{rng: rng, n: float64(n), s: s}
	z.hX1 = z.hIntegral(1.5) - 1
	z.hN = z.hIntegral(z.n + 0.5)
	z.accept = 2 - z.hIntegralInverse(z.hIntegral(2.5)-z.h(2))
	return z
}

// Next returns the next rank, 0-based.
func (z *Zipf) Next() uint64 {
	for {
		u := z.hN + z.rng.Float64()*(z.hX1-z.hN)
		x := z.hIntegralInverse(u)
		k := math.Floor(x + 0.5)
		if k < 1 {
			k = 1
		} else if k > z.n {
			k = z.n
		}
		if k-x <= z.accept || u >= z.hIntegral(k+0.5)-z.h(k) {
			return uint64(k) - 1
		}
	}
}

// h is the unnormalised probability of rank x.
func (z *Zipf) h(x float64) float64 { return math.Exp(-z.s * math.Log(x)) }

// hIntegral is the antiderivative of h, written so that it stays accurate
// as s approaches 1 (where it becomes log x).
func (z *Zipf) hIntegral(x float64) float64 {
	logX := math.Log(x)
	return expm1Over((1-z.s)*logX) * logX
}

// hIntegralInverse inverts hIntegral.
func (z *Zipf) hIntegralInverse(x float64) float64 {
	t := x * (1 - z.s)
	if t < -1 {
		// Rounding can push t just past the pole of log1p; clamping keeps
		// the result finite and the rejection step corrects the draw.
		t = -1
	}
	return math.Exp(log1pOver(t) * x)
}

// log1pOver is log1p(x)/x, continued to 1 at x = 0.
func log1pOver(x float64) float64 {
	if math.Abs(x) > 1e-8 {
		return math.Log1p(x) / x
	}
	return 1 - x*(0.5-x*(1.0/3-0.25*x))
}

// expm1Over is expm1(x)/x, continued to 1 at x = 0.
func expm1Over(x float64) float64 {
	if math.Abs(x) > 1e-8 {
		return math.Expm1(x) / x
	}
	return 1 + x*0.5*(1+x*(1.0/3)*(1+0.25*x))
}

// ZipfProb returns the exact probability of 0-based rank k under a Zipf
// distribution with exponent s over n elements. It sums n terms, so tests use
// it with moderate n.
func ZipfProb(s float64, n, k uint64) float64 {
	var norm float64
	for i := n; i >= 1; i-- { // smallest terms first, for accuracy
		norm += math.Pow(float64(i), -s)
	}
	return math.Pow(float64(k+1), -s) / norm
}
