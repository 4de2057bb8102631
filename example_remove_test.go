package emcache_test

import (
	"fmt"

	"github.com/emcache/emcache"
)

func ExampleConfig_onRemove() {
	c, err := emcache.New(emcache.Config{
		// Called after the cache let go of its locks: it may use the
		// cache. The key is valid during the call only.
		OnRemove: func(key []byte, cause emcache.RemoveCause) {
			fmt.Printf("%s: %s\n", key, cause)
		},
	})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	if err := c.Set([]byte("session"), []byte("v1"), 0); err != nil {
		panic(err)
	}
	if err := c.Set([]byte("session"), []byte("v2"), 0); err != nil {
		panic(err)
	}
	if err := c.Delete([]byte("session")); err != nil {
		panic(err)
	}
	// Output:
	// session: replaced
	// session: deleted
}
