//go:build unix

package emcache

import (
	"syscall"
	"time"
)

// processCPUTime returns the CPU time the process used in user and kernel
// mode, as memcached's rusage_user and rusage_system report it.
func processCPUTime() (user, system time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
