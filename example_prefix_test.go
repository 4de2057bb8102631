package emcache_test

import (
	"errors"
	"fmt"

	"github.com/emcache/emcache"
)

func ExampleCache_DeletePrefix() {
	c, err := emcache.New(emcache.Config{})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	for _, k := range []string{"user:1:name", "user:1:cart", "user:2:name"} {
		if err := c.Set([]byte(k), []byte("x"), 0); err != nil {
			panic(err)
		}
	}

	// Everything cached for user 1 goes at once; its memory comes back
	// in the background.
	if err := c.DeletePrefix([]byte("user:1:")); err != nil {
		panic(err)
	}
	_, err = c.Get([]byte("user:1:cart"))
	fmt.Println(errors.Is(err, emcache.ErrNotFound))
	_, err = c.Get([]byte("user:2:name"))
	fmt.Println(err)
	// Output:
	// true
	// <nil>
}
