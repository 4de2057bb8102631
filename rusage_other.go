//go:build !unix

package emcache

import (
	"runtime/metrics"
	"time"
)

// cpuMetrics are the Go runtime's estimates of CPU time spent in Go code, the
// garbage collector and the scavenger, for systems without getrusage.
var cpuMetrics = []string{
	"/cpu/classes/user:cpu-seconds",
	"/cpu/classes/gc/total:cpu-seconds",
	"/cpu/classes/scavenge/total:cpu-seconds",
}

// processCPUTime estimates the CPU time the process used from the Go
// runtime's accounting, which does not split out kernel time: system is 0.
func processCPUTime() (user, system time.Duration) {
	samples := make([]metrics.Sample, len(cpuMetrics))
	for i, name := range cpuMetrics {
		samples[i].Name = name
	}
	metrics.Read(samples)
	var secs float64
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindFloat64 {
			secs += s.Value.Float64()
		}
	}
	return time.Duration(secs * float64(time.Second)), 0
}
