package emcache_test

import (
	"context"
	"fmt"
	"log"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emcache/emcache"
)

// GetOrLoad loads a missing key once, however many goroutines ask for it at
// the same time, and serves the stored value afterwards.
func ExampleCache_GetOrLoad() {
	c, err := emcache.New(emcache.Config{MaxBytes: 16 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	var queries atomic.Int64
	load := func(ctx context.Context, key []byte) ([]byte, time.Duration, error) {
		queries.Add(1) // the expensive part: a query, an RPC
		return []byte("row of " + string(key)), 5 * time.Minute, nil
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := c.GetOrLoad(context.Background(), []byte("user:42"), load); err != nil {
				log.Fatal(err)
			}
		})
	}
	wg.Wait()
	it, err := c.GetOrLoad(context.Background(), []byte("user:42"), load)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, loaded %d time(s)\n", it.Value, queries.Load())
	// Output: row of user:42, loaded 1 time(s)
}

// Update runs a read-modify-write under the item's lock: no CAS retry loop
// however many goroutines change the key at once.
func ExampleCache_Update() {
	c, err := emcache.New(emcache.Config{MaxBytes: 16 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	addOne := func(old []byte, found bool) ([]byte, time.Duration, emcache.UpdateOp) {
		n := 0
		if found {
			n, _ = strconv.Atoi(string(old))
		}
		return strconv.AppendInt(nil, int64(n+1), 10), time.Hour, emcache.UpdateKeepTTL
	}
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if _, err := c.Update([]byte("visits"), addOne); err != nil {
				log.Fatal(err)
			}
		})
	}
	wg.Wait()
	it, _ := c.Get([]byte("visits"))
	fmt.Printf("%s\n", it.Value)
	// Output: 100
}

func ExampleCache_Len() {
	c, err := emcache.New(emcache.Config{MaxBytes: 16 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	for i := range 3 {
		c.Set([]byte(strconv.Itoa(i)), []byte("v"), 0)
	}
	fmt.Println(c.Len())
	// Output: 3
}

// GetMulti returns what it found; a miss is no error, a bad key is.
func ExampleCache_GetMulti() {
	c, err := emcache.New(emcache.Config{MaxBytes: 16 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	c.Set([]byte("a"), []byte("1"), 0)
	found, err := c.GetMulti([][]byte{[]byte("a"), []byte("missing"), nil})
	fmt.Println(len(found), string(found["a"].Value))
	fmt.Println(err)
	// Output:
	// 1 1
	// emcache: key "": emcache: key must be 1 to 250 bytes
}

// User is what the typed examples cache.
type User struct {
	Name string `json:"name"`
}

// loadUser stands for a database query.
func loadUser(ctx context.Context, id string) (User, error) {
	return User{Name: "Ada (" + id + ")"}, nil
}

// The README's typed example: values of a Go type through a codec, string
// keys, a miss that is no error, and a loader for misses.
func ExampleNewTyped() {
	c, err := emcache.New(emcache.Config{MaxBytes: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	users := emcache.NewTyped(c, emcache.JSON[User]())
	u, err := users.GetOrLoad(ctx, "user:42", func(ctx context.Context, key string) (User, time.Duration, error) {
		u, err := loadUser(ctx, key) // runs once, however many goroutines miss
		return u, 5 * time.Minute, err
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(u.Name)

	if _, ok, err := users.Get("user:7"); err == nil && !ok {
		fmt.Println("user:7 not cached")
	}
	// Output:
	// Ada (user:42)
	// user:7 not cached
}

func ExampleJSON() {
	c, err := emcache.New(emcache.Config{MaxBytes: 16 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	prices := emcache.NewTyped(c, emcache.JSON[map[string]float64]())
	prices.Set("prices", map[string]float64{"tea": 2.5}, time.Minute)
	it, _ := c.Get([]byte("prices")) // network clients read the JSON
	fmt.Printf("%s\n", it.Value)
	// Output: {"tea":2.5}
}

func ExampleTyped_Get() {
	c, err := emcache.New(emcache.Config{MaxBytes: 16 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	users := emcache.NewTyped(c, emcache.JSON[User]())
	users.Set("user:1", User{Name: "Grace"}, time.Hour)
	for _, k := range []string{"user:1", "user:2"} {
		u, ok, err := users.Get(k)
		fmt.Println(k, u.Name, ok, err)
	}
	users.Delete("user:1")
	_, ok, _ := users.Get("user:1")
	fmt.Println("after Delete:", ok)
	// Output:
	// user:1 Grace true <nil>
	// user:2  false <nil>
	// after Delete: false
}

// Session is what the session store keeps.
type Session struct {
	User  string `json:"user"`
	Views int    `json:"views"`
}

// The issue's session store shared by goroutines: sessions with a TTL that
// every request extends, changed atomically by concurrent requests.
func ExampleTyped_Update() {
	c, err := emcache.New(emcache.Config{MaxBytes: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	sessions := emcache.NewTyped(c, emcache.JSON[Session]())
	const idle = 30 * time.Minute

	sessions.Set("sess:9f2c", Session{User: "ada"}, idle) // login
	var wg sync.WaitGroup
	for range 50 { // concurrent requests of the same session
		wg.Go(func() {
			err := sessions.Update("sess:9f2c", func(s Session, found bool) (Session, time.Duration, emcache.UpdateOp) {
				if !found {
					return s, 0, emcache.UpdateAbort // expired or logged out
				}
				s.Views++
				return s, idle, emcache.UpdateSet // and the TTL starts again
			})
			if err != nil {
				log.Fatal(err)
			}
		})
	}
	wg.Wait()
	s, ok, _ := sessions.Get("sess:9f2c")
	fmt.Println(s.User, s.Views, ok)
	sessions.Delete("sess:9f2c") // logout
	_, ok, _ = sessions.Get("sess:9f2c")
	fmt.Println(ok)
	// Output:
	// ada 50 true
	// false
}
