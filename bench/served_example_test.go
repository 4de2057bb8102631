package bench_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/emcache/emcache"
)

// Product is what the served cache holds, as JSON.
type Product struct {
	Name  string  `json:"name"`
	Price float64 `json:"price"`
}

// The issue's third program: the cache a Go program fills through the
// typed layer, served to another process's gomemcache client, which reads
// the JSON and writes values the program reads back.
func Example_servedToGomemcache() {
	c, err := emcache.New(emcache.Config{MaxBytes: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	srv, err := c.Serve(emcache.ServerConfig{Addrs: []string{"127.0.0.1:0"}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	products := emcache.NewTyped(c, emcache.JSON[Product]())

	p, err := products.GetOrLoad(context.Background(), "product:1", func(context.Context, string) (Product, time.Duration, error) {
		return Product{Name: "tea", Price: 2.5}, time.Hour, nil // from the database
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("in process:", p.Name)

	mc := memcache.New(srv.Addr().String()) // another process, in real life
	defer mc.Close()
	it, err := mc.Get("product:1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("gomemcache: %s\n", it.Value)
	err = mc.Set(&memcache.Item{Key: "product:2", Value: []byte(`{"name":"coffee","price":3}`), Expiration: 60})
	if err != nil {
		log.Fatal(err)
	}
	p, ok, err := products.Get("product:2")
	fmt.Println("in process:", p.Name, ok, err)
	// Output:
	// in process: tea
	// gomemcache: {"name":"tea","price":2.5}
	// in process: coffee true <nil>
}
