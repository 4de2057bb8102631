package emcache_test

import (
	"fmt"
	"slices"

	"github.com/emcache/emcache"
)

func ExampleCache_Scan() {
	c, err := emcache.New(emcache.Config{})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	for _, k := range []string{"user:1:name", "user:1:email", "user:2:name"} {
		if err := c.Set([]byte(k), []byte("x"), 0); err != nil {
			panic(err)
		}
	}

	// The key and value are valid during one step: keep copies.
	var keys []string
	for key := range c.Scan([]byte("user:1:")) {
		keys = append(keys, string(key))
	}
	slices.Sort(keys) // Scan's order is unspecified
	fmt.Println(keys)
	// Output: [user:1:email user:1:name]
}
