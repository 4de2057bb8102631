package emcachetest_test

import (
	"runtime"
	"testing"

	"github.com/emcache/emcache/emcachetest"
)

// BenchmarkNewServer measures what a test pays for its own server: starting
// it and, through the cleanup, stopping it. It also reports the goroutines
// and file descriptors each running server holds.
func BenchmarkNewServer(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		emcachetest.NewServer(b).Close()
	}

	// After the loop: ResetTimer and b.Loop's start drop reported metrics.
	const live = 16
	g0, f0 := runtime.NumGoroutine(), openFDs()
	for range live {
		defer emcachetest.NewServer(b).Close()
	}
	b.ReportMetric(float64(runtime.NumGoroutine()-g0)/live, "goroutines/server")
	if f0 >= 0 {
		b.ReportMetric(float64(openFDs()-f0)/live, "fds/server")
	}
}
