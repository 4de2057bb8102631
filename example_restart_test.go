//go:build unix

package emcache_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/emcache/emcache"
)

// A cache in a memory file comes back after Close and New, as a server
// comes back after a restart. Production puts the file on tmpfs
// (/dev/shm).
func ExampleCache_WarmStart() {
	dir, err := os.MkdirTemp("", "emcache")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	cfg := emcache.Config{MaxBytes: 16 << 20, MemoryFile: filepath.Join(dir, "cache")}

	c, err := emcache.New(cfg)
	if err != nil {
		panic(err)
	}
	fmt.Println(c.WarmStart())
	if err := c.Set([]byte("greeting"), []byte("hello"), 0); err != nil {
		panic(err)
	}
	if err := c.Close(); err != nil { // saves
		panic(err)
	}

	c, err = emcache.New(cfg)
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Println(c.WarmStart())
	it, err := c.Get([]byte("greeting"))
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n", it.Value)
	// Output:
	// false emcache: memory file has no saved state (new, or the last run did not stop gracefully)
	// true <nil>
	// hello
}
