package emcache_test

import (
	"bufio"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/emcache/emcache"
)

// A program with an HTTP server of its own mounts the metrics beside its
// other handlers; Prometheus then scrapes it there.
func ExampleServer_MetricsHandler() {
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
	c.Set([]byte("greeting"), []byte("hello"), 0)

	mux := http.NewServeMux()
	mux.Handle("/metrics", srv.MetricsHandler())
	web := httptest.NewServer(mux) // the program's own server
	defer web.Close()

	resp, err := http.Get(web.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "memcached_up ") || strings.HasPrefix(sc.Text(), "memcached_current_items ") ||
			strings.HasPrefix(sc.Text(), `memcached_commands_total{command="set"`) {
			fmt.Println(sc.Text())
		}
	}
	// Output:
	// memcached_up 1
	// memcached_current_items 1
	// memcached_commands_total{command="set",status="hit"} 1
}

// MetricsAddr serves the metrics at /metrics on an address of their own,
// as emcached's -o metrics_addr does.
func ExampleServer_MetricsAddr() {
	c, err := emcache.New(emcache.Config{MaxBytes: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// Port 0 lets the kernel pick; MetricsAddr tells which.
	srv, err := c.Serve(emcache.ServerConfig{Addrs: []string{"127.0.0.1:0"}, MetricsAddr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	resp, err := http.Get("http://" + srv.MetricsAddr().String() + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status, resp.Header.Get("Content-Type"))
	// Output: 200 OK text/plain; version=0.0.4; charset=utf-8
}

// A MetricsAddr Serve cannot listen on fails Serve, which then serves
// nothing.
func ExampleCache_Serve_metricsAddrError() {
	c, err := emcache.New(emcache.Config{MaxBytes: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	_, err = c.Serve(emcache.ServerConfig{Addrs: []string{"127.0.0.1:0"}, MetricsAddr: "9150"})
	fmt.Println(errors.Is(err, emcache.ErrMetricsAddr))
	fmt.Println(err)
	// Output:
	// true
	// emcache: cannot serve metrics on ServerConfig.MetricsAddr: "9150" is not host:port: address 9150: missing port in address
}
