//go:build !unix

package emcache

// allocBytes returns n zeroed bytes from the Go heap on systems without
// mmap; the slices hold no pointers, so the GC does not scan them.
func allocBytes(n int) []byte { return make([]byte, n) }

func freeBytes([]byte) {}
