package emcache_test

import (
	"errors"
	"fmt"
	"log"

	"github.com/emcache/emcache"
)

// The README's "Embed it" example.
func ExampleCache() {
	c, err := emcache.New(emcache.Config{MaxBytes: 64 << 20}) // memcached's -m 64
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// flags 0, expires in 60 seconds
	if _, err := c.Set([]byte("greeting"), []byte("hello"), 0, 60); err != nil {
		log.Fatal(err)
	}
	it, err := c.Get([]byte("greeting"))
	if errors.Is(err, emcache.ErrNotFound) {
		fmt.Println("miss")
	} else if err == nil {
		fmt.Printf("%s\n", it.Value) // hello
	}
	// Output: hello
}
