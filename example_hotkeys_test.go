package emcache_test

import (
	"bufio"
	"fmt"
	"log"
	"net"
	"strings"
	"time"

	"github.com/emcache/emcache"
)

// Every store through the server is offered to the big keys, so a large
// value shows however rarely it is written; `stats bigkeys` answers the
// same list.
func ExampleServer_BigKeys() {
	c, err := emcache.New(emcache.Config{MaxBytes: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	srv, err := c.Serve(emcache.ServerConfig{Addrs: []string{"127.0.0.1:0"}, HotKeysK: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for key, size := range map[string]int{"small": 10, "medium": 1000, "large": 500_000} {
		roundTrip(conn, r, fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", key, size, strings.Repeat("x", size)), "STORED")
	}
	for _, ks := range srv.BigKeys() {
		fmt.Println(ks.Key, ks.Size)
	}
	fmt.Print(roundTrip(conn, r, "stats bigkeys\r\n", "END"))
	// Output:
	// large 500000
	// medium 1000
	// STAT large 500000
	// STAT medium 1000
	// END
}

// Hot keys are counted over windows (10 s by default) from a sample of the
// keyed requests (1 in 100 by default); once a window is complete its
// hottest keys are reported with their estimated request rates.
func ExampleServer_HotKeys() {
	c, err := emcache.New(emcache.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	srv, err := c.Serve(emcache.ServerConfig{
		Addrs:         []string{"127.0.0.1:0"},
		HotKeysSample: 1000,
		HotKeysWindow: time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	for range time.Tick(time.Minute) {
		for _, kr := range srv.HotKeys() {
			log.Printf("hot key %q: %d requests/s", kr.Key, kr.PerSecond)
		}
	}
}
