//go:build !unix

package emcache

import "os"

// allocBytes returns n zeroed bytes from the Go heap on systems without
// mmap; the slices hold no pointers, so the GC does not scan them.
func allocBytes(n int) []byte { return make([]byte, n) }

func freeBytes([]byte) {}

// Without mmap there is no memory file (Config.MemoryFile): New refuses
// one before opening it.
const canMapFiles = false

func mapFile(*os.File, int64, int) ([]byte, error) { return nil, ErrMemoryFileUnsupported }

func syncBytes([]byte) error { return nil }

func lockFile(*os.File) error { return nil }
