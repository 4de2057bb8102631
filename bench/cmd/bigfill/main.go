// Command bigfill counts how many large values a memcached-compatible
// server holds: it stores distinct keys with values of -size bytes until
// the server's evictions counter moves (or -max keys), then as many again,
// and prints curr_items at the first eviction and at the end (a sharded
// cache may evict in one shard before the others are full), with the
// items stored and the limit_maxbytes the server reports.
//
//	bigfill -addr 127.0.0.1:11211 -size 1000000
//
// Run it on a fresh server started with the same -m for each one compared
// (memcached -m 64, emcached -m 64).
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:11211", "server address")
	size := flag.Int("size", 1000000, "value size in bytes")
	max := flag.Int("max", 10000, "stop after this many stores")
	flag.Parse()
	if err := run(*addr, *size, *max); err != nil {
		fmt.Fprintln(os.Stderr, "bigfill:", err)
		os.Exit(1)
	}
}

func run(addr string, size, max int) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	value := bytes.Repeat([]byte{'v'}, size)
	stored, refused, first, stop := 0, 0, "", max
	for i := 0; i < stop; i++ {
		if _, err := fmt.Fprintf(conn, "set bigfill:%08d 0 0 %d\r\n%s\r\n", i, size, value); err != nil {
			return err
		}
		line, err := rd.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "STORED\r\n" {
			stored++
		} else {
			refused++
		}
		st, err := stats(conn, rd)
		if err != nil {
			return err
		}
		if st["evictions"] != "0" && first == "" {
			first = st["curr_items"]
			stop = min(max, 2*(i+1))
		}
	}
	st, err := stats(conn, rd)
	if err != nil {
		return err
	}
	fmt.Printf("size %d stored %d refused %d curr_items_at_first_eviction %s curr_items %s evictions %s limit_maxbytes %s\n",
		size, stored, refused, first, st["curr_items"], st["evictions"], st["limit_maxbytes"])
	return nil
}

// stats reads the general stats into a map.
func stats(conn net.Conn, rd *bufio.Reader) (map[string]string, error) {
	if _, err := conn.Write([]byte("stats\r\n")); err != nil {
		return nil, err
	}
	st := map[string]string{}
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "END" {
			return st, nil
		}
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "STAT" {
			return nil, fmt.Errorf("stats: unexpected %q", line)
		}
		st[f[1]] = f[2]
	}
}
