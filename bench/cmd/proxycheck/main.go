// Command proxycheck checks emcache instances behind a memcached proxy such
// as twemproxy: it writes keys through the proxy with gomemcache, reads every
// one back, then asks each instance directly for its curr_items and checks
// that each holds a fair share. .ci/nutcracker.sh runs it.
//
//	proxycheck -proxy 127.0.0.1:22121 -servers 127.0.0.1:11211,127.0.0.1:11212,127.0.0.1:11213
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

func main() {
	proxy := flag.String("proxy", "", "the proxy's address, host:port")
	servers := flag.String("servers", "", "the instances behind it, comma-separated host:port")
	keys := flag.Int("keys", 3000, "how many keys to write")
	minShare := flag.Float64("min-share", 0.20, "the smallest fair share of the keys for one instance")
	maxShare := flag.Float64("max-share", 0.47, "the largest fair share of the keys for one instance")
	flag.Parse()
	if *proxy == "" || *servers == "" || *keys <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*proxy, strings.Split(*servers, ","), *keys, *minShare, *maxShare); err != nil {
		fmt.Fprintln(os.Stderr, "proxycheck:", err)
		os.Exit(1)
	}
}

func run(proxy string, servers []string, n int, minShare, maxShare float64) error {
	mc := memcache.New(proxy)
	mc.Timeout = 5 * time.Second
	key := func(i int) string { return "proxycheck:" + strconv.Itoa(i) }
	value := func(i int) []byte { return []byte("value-" + strconv.Itoa(i*7919)) }

	for i := range n {
		if err := mc.Set(&memcache.Item{Key: key(i), Value: value(i), Flags: uint32(i)}); err != nil {
			return fmt.Errorf("set %s through %s: %w", key(i), proxy, err)
		}
	}
	// Half the keys one by one, half in multigets that the proxy splits
	// over the instances and merges.
	for i := range n / 2 {
		it, err := mc.Get(key(i))
		if err != nil {
			return fmt.Errorf("get %s: %w", key(i), err)
		}
		if !bytes.Equal(it.Value, value(i)) || it.Flags != uint32(i) {
			return fmt.Errorf("get %s: got %q flags %d, want %q flags %d", key(i), it.Value, it.Flags, value(i), i)
		}
	}
	const batch = 100
	for lo := n / 2; lo < n; lo += batch {
		var ks []string
		for i := lo; i < min(lo+batch, n); i++ {
			ks = append(ks, key(i))
		}
		got, err := mc.GetMulti(ks)
		if err != nil {
			return fmt.Errorf("get_multi from %s: %w", ks[0], err)
		}
		for i := lo; i < min(lo+batch, n); i++ {
			it, ok := got[key(i)]
			if !ok {
				return fmt.Errorf("get_multi: %s missing", key(i))
			}
			if !bytes.Equal(it.Value, value(i)) || it.Flags != uint32(i) {
				return fmt.Errorf("get_multi %s: got %q flags %d", key(i), it.Value, it.Flags)
			}
		}
	}
	fmt.Printf("%d keys written and read back through %s\n", n, proxy)

	total := 0
	var failed []string
	for _, s := range servers {
		items, err := currItems(s)
		if err != nil {
			return err
		}
		total += items
		share := float64(items) / float64(n)
		fmt.Printf("%s: %d keys (%.1f%%)\n", s, items, 100*share)
		if share < minShare || share > maxShare {
			failed = append(failed, fmt.Sprintf("%s holds %.1f%%", s, 100*share))
		}
	}
	if total != n {
		return fmt.Errorf("the instances hold %d keys in all, want %d", total, n)
	}
	if len(failed) > 0 {
		return fmt.Errorf("unfair shares, want %.0f%% to %.0f%% each: %s",
			100*minShare, 100*maxShare, strings.Join(failed, ", "))
	}
	return nil
}

// currItems reads an instance's curr_items with the stats command, which
// gomemcache does not send.
func currItems(addr string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("stats\r\n")); err != nil {
		return 0, err
	}
	items := -1
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 1 && f[0] == "END" {
			break
		}
		if len(f) == 3 && f[0] == "STAT" && f[1] == "curr_items" {
			items, err = strconv.Atoi(f[2])
			if err != nil {
				return 0, fmt.Errorf("%s: curr_items %q", addr, f[2])
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("stats from %s: %w", addr, err)
	}
	if items < 0 {
		return 0, fmt.Errorf("stats from %s: no curr_items", addr)
	}
	return items, nil
}
