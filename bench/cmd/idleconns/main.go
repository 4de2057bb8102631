// Command idleconns measures what mostly-idle connections cost a
// memcached-compatible server: it opens -n connections, has each one
// complete a request so the server holds it as a served connection, then
// reads the server's RSS from /proc and times -probes get round trips of
// one active client while every connection stays open.
//
//	idleconns -addr 127.0.0.1:11211 -pid $(pgrep -n emcached) -n 15000
//
// It prints one line: connections held, RSS before and after, RSS per
// idle connection, and the active client's p50/p99 latency. Linux only
// (/proc); the client needs RLIMIT_NOFILE above -n, which it raises to
// the hard limit.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:11211", "server address")
	pid := flag.Int("pid", 0, "server process id, for its RSS")
	n := flag.Int("n", 15000, "idle connections to hold")
	probes := flag.Int("probes", 2000, "round trips of the active client")
	flag.Parse()
	if err := run(*addr, *pid, *n, *probes); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
}

func run(addr string, pid, n, probes int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	active, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer active.Close()
	rd := bufio.NewReader(active)
	if _, err := fmt.Fprintf(active, "set probe 0 0 5\r\nhello\r\n"); err != nil {
		return err
	}
	if line, err := rd.ReadString('\n'); err != nil || line != "STORED\r\n" {
		return fmt.Errorf("set probe: %q %v", line, err)
	}
	before, err := rss(pid)
	if err != nil {
		return err
	}

	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buf := make([]byte, 64)
	for len(conns) < n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("after %d connections: %w", len(conns), err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte("version\r\n")); err != nil {
			return err
		}
		if _, err := c.Read(buf); err != nil || !strings.HasPrefix(string(buf), "VERSION") {
			return fmt.Errorf("connection %d: %q %v", len(conns), buf, err)
		}
	}
	after, err := rss(pid)
	if err != nil {
		return err
	}

	lat := make([]time.Duration, 0, probes)
	for range probes {
		start := time.Now()
		if _, err := active.Write([]byte("get probe\r\n")); err != nil {
			return err
		}
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return err
			}
			if line == "END\r\n" {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	fmt.Printf("conns %d  rss_before_kib %d  rss_after_kib %d  rss_per_idle_conn_b %.0f  active_p50_us %.1f  active_p99_us %.1f\n",
		len(conns), before, after, float64(after-before)*1024/float64(len(conns)),
		float64(lat[len(lat)/2].Microseconds()), float64(lat[len(lat)*99/100].Microseconds()))
	return nil
}

// rss returns VmRSS of pid in KiB.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
