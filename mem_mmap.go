//go:build unix

package emcache

import (
	"os"
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

const canMapFiles = true

// mapFile maps n bytes of f from off, shared: stores reach the file, so a
// later process mapping it sees them (Config.MemoryFile).
func mapFile(f *os.File, off int64, n int) ([]byte, error) {
	return unix.Mmap(int(f.Fd()), off, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

// syncBytes writes a file mapping's dirty pages back to the file.
func syncBytes(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return unix.Msync(b, unix.MS_SYNC)
}

// lockFile takes an exclusive lock on f without waiting, so two caches
// never share a memory file.
func lockFile(f *os.File) error {
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
}
