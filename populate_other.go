//go:build !linux

package emcache

// osPageSize is the granule populate would map.
const osPageSize = 4096

// populate leaves pages to be faulted in where the system has no
// MADV_POPULATE_WRITE.
func populate([]byte) {}
