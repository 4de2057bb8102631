package emcache_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"time"

	"github.com/emcache/emcache"
)

// roundTrip sends a request on conn and returns the reply's lines, with
// "\n" line ends, up to the one that starts with last.
func roundTrip(conn net.Conn, r *bufio.Reader, req, last string) string {
	if _, err := io.WriteString(conn, req); err != nil {
		log.Fatal(err)
	}
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			log.Fatal(err)
		}
		b.WriteString(strings.TrimSuffix(line, "\r\n") + "\n")
		if strings.HasPrefix(line, last) {
			return b.String()
		}
	}
}

// A program can serve its cache to other processes while it keeps using
// the cache directly.
func ExampleCache_Serve() {
	c, err := emcache.New(emcache.Config{MaxBytes: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// Port 0 lets the kernel pick a free port; Addr tells which.
	srv, err := c.Serve(emcache.ServerConfig{Addrs: []string{"127.0.0.1:0"}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	c.Set([]byte("greeting"), []byte("hello"), 0)

	conn, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "get greeting\r\n")
	r := bufio.NewReader(conn)
	for range 3 {
		line, _ := r.ReadString('\n')
		fmt.Println(strings.TrimSuffix(line, "\r\n"))
	}
	// Output:
	// VALUE greeting 0 5
	// hello
	// END
}

// A server listening on several addresses, each on a port the kernel picks,
// tells them all.
func ExampleServer_Addrs() {
	c, err := emcache.New(emcache.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	srv, err := c.Serve(emcache.ServerConfig{Addrs: []string{"127.0.0.1:0", "127.0.0.1:0"}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	addrs := srv.Addrs()
	fmt.Println(len(addrs), addrs[0].String() == srv.Addr().String(), addrs[0].String() != addrs[1].String())
	// Output:
	// 2 true true
}

// Shutdown stops a server gracefully, as emcached does on SIGTERM: it
// accepts no more connections, sends the replies already due, then closes
// every connection.
func ExampleServer_Shutdown() {
	c, err := emcache.New(emcache.Config{MaxBytes: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	srv, err := c.Serve(emcache.ServerConfig{Addrs: []string{"127.0.0.1:0"}})
	if err != nil {
		log.Fatal(err)
	}
	conn, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	fmt.Print(roundTrip(conn, r, "set k 0 0 1\r\nv\r\n", "STORED"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Print("shutdown cut short: ", err)
	}
	<-srv.Done() // closed once every goroutine and connection is gone
	_, err = r.ReadByte()
	fmt.Println("client sees:", err)
	// Output:
	// STORED
	// client sees: EOF
}

// InjectFault lets a client's tests see the failures a real memcached can
// return, on demand.
func ExampleServer_InjectFault() {
	c, err := emcache.New(emcache.Config{MaxBytes: 8 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	srv, err := c.Serve(emcache.ServerConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 1})
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

	// The next store fails as memcached's do when memory runs out.
	err = srv.InjectFault(1, emcache.Fault{Command: "set", Reply: "SERVER_ERROR out of memory storing object"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(roundTrip(conn, r, "set k 0 0 1\r\nv\r\n", ""))
	fmt.Print(roundTrip(conn, r, "set k 0 0 1\r\nv\r\n", ""))
	// Output:
	// SERVER_ERROR out of memory storing object
	// STORED
}

// CommandLatencies tells how long the server took over each kind of
// command, from reading a request to writing its reply.
func ExampleServer_CommandLatencies() {
	c, err := emcache.New(emcache.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	srv, err := c.Serve(emcache.ServerConfig{Addrs: []string{"127.0.0.1:0"}})
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
	roundTrip(conn, r, "set k 0 0 1\r\nv\r\n", "STORED")
	for range 3 {
		roundTrip(conn, r, "get k\r\n", "END")
	}
	// A request counts once its reply is written.

	for _, cl := range srv.CommandLatencies() {
		fmt.Printf("%s: %d requests, %d bucket counts\n", cl.Command, cl.Count, len(cl.Counts))
	}
	// Output:
	// get: 3 requests, 17 bucket counts
	// set: 1 requests, 17 bucket counts
}
