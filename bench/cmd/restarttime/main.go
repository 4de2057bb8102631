// Command restarttime measures a warm restart with a memory file (-e): it
// starts a server (emcached, or memcached for comparison) with -e on a
// tmpfs file, fills it with small items, stops it with SIGUSR1 (the
// graceful stop both save on), starts it again and reports how long the
// stop took and the time from the new process's start to the first hit,
// then checks that every item came back.
//
//	go run ./cmd/restarttime -bin emcached -items 1000000 -m 2048
//	go run ./cmd/restarttime -bin /usr/bin/memcached -items 1000000 -m 2048
//
// memcached refuses to resume within the second it stopped in, so the tool
// waits a little over a second between stop and start for both servers.
// As root the servers run with -u nobody. Linux only.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "emcached", "server binary")
	items := flag.Int("items", 1_000_000, "items to store")
	mb := flag.Int("m", 2048, "memory limit in megabytes (-m)")
	file := flag.String("file", "/dev/shm/restarttime", "memory file (-e)")
	port := flag.Int("port", 22122, "TCP port on 127.0.0.1")
	threads := flag.Int("t", 2, "worker threads (-t)")
	flag.Parse()
	addr := "127.0.0.1:" + strconv.Itoa(*port)
	args := []string{"-p", strconv.Itoa(*port), "-l", "127.0.0.1", "-U", "0", "-m", strconv.Itoa(*mb),
		"-t", strconv.Itoa(*threads), "-e", *file}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	os.Remove(*file)
	os.Remove(*file + ".meta")
	defer os.Remove(*file)
	defer os.Remove(*file + ".meta")

	srv := start(*bin, args)
	conn := dialWait(addr, time.Now().Add(30*time.Second))
	t0 := time.Now()
	fill(conn, *items)
	fillTime := time.Since(t0)
	if n := currItems(conn); n != *items {
		log.Fatalf("%d items stored of %d: raise -m", n, *items)
	}
	conn.Close()

	t0 = time.Now()
	if err := srv.Process.Signal(syscall.SIGUSR1); err != nil {
		log.Fatal(err)
	}
	srv.Wait()
	stopTime := time.Since(t0)
	time.Sleep(1100 * time.Millisecond)

	t0 = time.Now()
	srv = start(*bin, args)
	defer func() {
		srv.Process.Signal(syscall.SIGKILL)
		srv.Wait()
	}()
	var firstHit time.Duration
	for deadline := t0.Add(5 * time.Minute); firstHit == 0; {
		c := dialWait(addr, deadline)
		hit, err := get(c, key(*items-1))
		c.Close()
		if err == nil && !hit {
			log.Fatal("the restarted server misses: it started cold")
		}
		if hit {
			firstHit = time.Since(t0)
		}
	}
	conn = dialWait(addr, time.Now().Add(time.Minute))
	n := currItems(conn)
	missing := verify(conn, *items)
	fmt.Printf("%s items=%d fill=%v stop=%v first_hit=%v curr_items_after=%d missing=%d\n",
		*bin, *items, fillTime.Round(time.Millisecond), stopTime.Round(time.Millisecond),
		firstHit.Round(time.Millisecond), n, missing)
}

func start(bin string, args []string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	return cmd
}

func dialWait(addr string, deadline time.Time) net.Conn {
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			log.Fatalf("no server at %s: %v", addr, err)
		}
		time.Sleep(time.Millisecond)
	}
}

func key(i int) string { return fmt.Sprintf("key:%08d", i) }

// fill stores n items with noreply, pipelined, and waits for a meta no-op
// so that every store has been executed.
func fill(c net.Conn, n int) {
	w := bufio.NewWriterSize(c, 1<<20)
	for i := range n {
		fmt.Fprintf(w, "set %s 0 0 10 noreply\r\n%010d\r\n", key(i), i)
	}
	io.WriteString(w, "mn\r\n")
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "MN\r\n" {
		log.Fatalf("fill: %q %v", line, err)
	}
}

func get(c net.Conn, k string) (bool, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "get "+k+"\r\n"); err != nil {
		return false, err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return false, err
	}
	return strings.HasPrefix(line, "VALUE "), nil
}

func currItems(c net.Conn) int {
	io.WriteString(c, "stats\r\n")
	r := bufio.NewReader(c)
	n := -1
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			log.Fatal(err)
		}
		if line == "END\r\n" {
			return n
		}
		if v, ok := strings.CutPrefix(line, "STAT curr_items "); ok {
			n, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
}

// verify reads every item back, pipelined, and counts those missing or
// with another value.
func verify(c net.Conn, n int) int {
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	go func() {
		w := bufio.NewWriterSize(c, 1<<20)
		for i := range n {
			fmt.Fprintf(w, "mg %s v\r\n", key(i))
		}
		io.WriteString(w, "mn\r\n")
		w.Flush()
	}()
	r := bufio.NewReaderSize(c, 1<<20)
	missing := 0
	for i := 0; ; i++ {
		line, err := r.ReadString('\n')
		if err != nil {
			log.Fatal(err)
		}
		switch {
		case line == "MN\r\n":
			return missing
		case strings.HasPrefix(line, "VA "):
			v, err := r.ReadString('\n')
			if err != nil {
				log.Fatal(err)
			}
			if v != fmt.Sprintf("%010d\r\n", i) {
				missing++
			}
		default:
			missing++
		}
	}
}
