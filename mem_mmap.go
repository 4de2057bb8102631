//go:build unix

package emcache

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// allocBytes returns n zeroed bytes mapped straight from the OS, outside the
// Go heap: the GC neither scans nor paces on them, untouched pages cost no
// RSS, and freeBytes hands them back at once instead of leaving them to the
// scavenger.
func allocBytes(n int) []byte {
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		// Like a failed make: the process cannot continue usefully.
		panic("emcache: mmap of " + strconv.Itoa(n) + " bytes failed: " + err.Error())
	}
	return b
}

func freeBytes(b []byte) {
	if len(b) > 0 {
		_ = unix.Munmap(b)
	}
}
