package emcache_test

import (
	"encoding/binary"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/emcache/emcache"
)

// A UDP client frames each request with memcached's 8-byte header and
// finds it, with the request id it chose, at the start of every datagram
// of the reply.
func ExampleServer_UDPAddrs() {
	c, err := emcache.New(emcache.Config{MaxBytes: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	srv, err := c.Serve(emcache.ServerConfig{UDPAddrs: []string{"127.0.0.1:0"}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	conn, err := net.Dial("udp", srv.UDPAddrs()[0].String())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	for id, req := range []string{"set greeting 0 0 5\r\nhello\r\n", "get greeting\r\n"} {
		// Request id, sequence number 0, one datagram, reserved.
		hdr := []byte{0, byte(id), 0, 0, 0, 1, 0, 0}
		if _, err := conn.Write(append(hdr, req...)); err != nil {
			log.Fatal(err)
		}
		n, err := conn.Read(buf)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("id %d, datagram %d of %d: %q\n", binary.BigEndian.Uint16(buf[0:]),
			binary.BigEndian.Uint16(buf[2:]), binary.BigEndian.Uint16(buf[4:]), buf[8:n])
	}
	// Output:
	// id 0, datagram 0 of 1: "STORED\r\n"
	// id 1, datagram 0 of 1: "VALUE greeting 0 5\r\nhello\r\nEND\r\n"
}
