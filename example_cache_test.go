package emcache_test

import (
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/emcache/emcache"
)

func ExampleNew() {
	c, err := emcache.New(emcache.Config{MaxBytes: 16 << 20})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	if err := c.Set([]byte("greeting"), []byte("hello"), 0); err != nil {
		panic(err)
	}
	it, err := c.Get([]byte("greeting"))
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n", it.Value)
	// Output: hello
}

func ExampleNew_invalidConfig() {
	_, err := emcache.New(emcache.Config{MaxBytes: 1 << 20, MaxItemSize: 100})
	fmt.Println(err)
	// Output: emcache: MaxItemSize 100 is below the minimum of 1024
}

func ExampleCache_Get() {
	c, err := emcache.New(emcache.Config{MaxBytes: 16 << 20})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	c.Store([]byte("user:1"), []byte("ada"), emcache.StoreOptions{Flags: 42})
	for _, k := range []string{"user:1", "user:2"} {
		it, err := c.Get([]byte(k))
		switch {
		case errors.Is(err, emcache.ErrNotFound):
			fmt.Println(k, "miss")
		case err != nil:
			panic(err)
		default:
			fmt.Printf("%s hit %s flags=%d\n", k, it.Value, it.Flags)
		}
	}
	// Output:
	// user:1 hit ada flags=42
	// user:2 miss
}

// A TTL is a time.Duration, counted on the cache's clock to the second
// (a positive TTL below a second rounds up to one). The example drives a
// fake clock through Config.Now so expiry is exact.
func ExampleCache_Set_ttl() {
	var now atomic.Int64 // Unix seconds; the cache reads it from its own goroutine too
	now.Store(1_800_000_000)
	c, err := emcache.New(emcache.Config{
		MaxBytes: 16 << 20,
		Now:      func() time.Time { return time.Unix(now.Load(), 0) },
	})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	c.Set([]byte("login"), []byte("token"), 60*time.Second)
	it, _ := c.Get([]byte("login"))
	fmt.Printf("%s expires at %d\n", it.Value, it.Expires.Unix())

	now.Add(59)
	_, err = c.Get([]byte("login"))
	fmt.Println("after 59s:", err)

	now.Add(1)
	_, err = c.Get([]byte("login"))
	fmt.Println("after 60s:", err)
	// Output:
	// token expires at 1800000060
	// after 59s: <nil>
	// after 60s: emcache: key not found
}

func ExampleCache_CompareAndSwap() {
	c, err := emcache.New(emcache.Config{MaxBytes: 16 << 20})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	key := []byte("visits")
	c.Set(key, []byte("10"), 0)
	// Read, modify, write back only if nobody changed it meanwhile; retry
	// on ErrExists.
	for {
		it, err := c.Get(key)
		if err != nil {
			panic(err)
		}
		n, _ := strconv.Atoi(string(it.Value))
		err = c.CompareAndSwap(key, strconv.AppendInt(nil, int64(n*2), 10), it.CAS, 0)
		if errors.Is(err, emcache.ErrExists) {
			continue
		}
		if err != nil {
			panic(err)
		}
		break
	}
	it, _ := c.Get(key)
	fmt.Printf("%s\n", it.Value)
	// Output: 20
}

// Store is the full-control store, for items shared with network clients
// that read the client flags and CAS; it returns the new CAS.
func ExampleCache_Store() {
	c, err := emcache.New(emcache.Config{MaxBytes: 16 << 20})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	key := []byte("profile:7")
	cas, err := c.Store(key, []byte(`{"name":"ada"}`), emcache.StoreOptions{Flags: 2, TTL: time.Hour})
	if err != nil {
		panic(err)
	}
	// Only one of two writers holding the same CAS succeeds.
	_, err = c.Store(key, []byte(`{"name":"grace"}`), emcache.StoreOptions{Flags: 2, CAS: cas})
	fmt.Println("first:", err)
	_, err = c.Store(key, []byte(`{"name":"alan"}`), emcache.StoreOptions{Flags: 2, CAS: cas})
	fmt.Println("second:", err)
	_, err = c.Store(key, []byte("!"), emcache.StoreOptions{Mode: emcache.ModeAdd})
	fmt.Println("add:", err)
	it, _ := c.Get(key)
	fmt.Printf("%s flags=%d\n", it.Value, it.Flags)
	// Output:
	// first: <nil>
	// second: emcache: item modified since it was read (CAS mismatch)
	// add: emcache: item not stored
	// {"name":"grace"} flags=2
}

func ExampleCache_Incr() {
	c, err := emcache.New(emcache.Config{MaxBytes: 16 << 20})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	c.Set([]byte("hits"), []byte("10"), 0)
	n, _ := c.Incr([]byte("hits"), 5)
	fmt.Println(n)
	n, _ = c.Decr([]byte("hits"), 100) // stops at zero
	fmt.Println(n)
	it, _ := c.Get([]byte("hits"))
	fmt.Printf("%q\n", it.Value) // shorter numbers keep memcached's padding
	_, err = c.Incr([]byte("missing"), 1)
	fmt.Println(err)
	// Output:
	// 15
	// 0
	// "0 "
	// emcache: key not found
}

func ExampleCache_GetAppend() {
	c, err := emcache.New(emcache.Config{MaxBytes: 16 << 20})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	c.Set([]byte("a"), []byte("alpha"), 0)
	c.Set([]byte("b"), []byte("beta"), 0)
	// One buffer serves every read; hits allocate nothing once it is
	// large enough.
	buf := make([]byte, 0, 1024)
	for _, k := range []string{"a", "b", "c"} {
		var it emcache.Item
		buf, it, err = c.GetAppend(buf[:0], []byte(k))
		if err != nil {
			fmt.Println(k, err)
			continue
		}
		fmt.Printf("%s=%s\n", k, it.Value)
	}
	// Output:
	// a=alpha
	// b=beta
	// c emcache: key not found
}

func ExampleCache_FlushAll() {
	c, err := emcache.New(emcache.Config{MaxBytes: 16 << 20})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	c.Set([]byte("a"), []byte("1"), 0)
	c.Set([]byte("b"), []byte("2"), 0)
	c.FlushAll(0)
	_, err = c.Get([]byte("a"))
	fmt.Println(err, c.Stats().CurrItems)
	// Output: emcache: key not found 0
}

func ExampleCache_Stats() {
	c, err := emcache.New(emcache.Config{MaxBytes: 16 << 20})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	c.Set([]byte("k"), []byte("value"), 0)
	c.Get([]byte("k"))
	c.Get([]byte("other"))
	st := c.Stats()
	fmt.Println("cmd_get", st.CmdGet, "get_hits", st.GetHits, "get_misses", st.GetMisses)
	fmt.Println("curr_items", st.CurrItems, "limit_maxbytes", st.LimitMaxbytes, "hit ratio", st.HitRatio())
	fmt.Println("bytes at most ItemOverhead+len(key)+len(value):", st.Bytes <= uint64(emcache.ItemOverhead+len("k")+len("value")))
	c.ResetStats()
	fmt.Println("after reset: cmd_get", c.Stats().CmdGet, "curr_items", c.Stats().CurrItems)
	// Output:
	// cmd_get 2 get_hits 1 get_misses 1
	// curr_items 1 limit_maxbytes 16777216 hit ratio 0.5
	// bytes at most ItemOverhead+len(key)+len(value): true
	// after reset: cmd_get 0 curr_items 1
}
