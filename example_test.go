package emcache_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/emcache/emcache"
)

// The README's "Embed it" example.
func ExampleCache() {
	c, err := emcache.New(emcache.Config{MaxBytes: 64 << 20}) // memcached's -m 64
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// expires in a minute
	if err := c.Set([]byte("greeting"), []byte("hello"), time.Minute); err != nil {
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
