package emcachetest_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emcache/emcache"
	"github.com/emcache/emcache/emcachetest"
)

// exampleT stands in for the *testing.T that a test passes to NewServer and
// that examples do not get: it runs the cleanups when the example ends.
type exampleT struct{ cleanups []func() }

func (t *exampleT) Helper()                           {}
func (t *exampleT) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (t *exampleT) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// send writes req on conn and prints the reply's lines up to the last one,
// which starts with last.
func send(conn net.Conn, r *bufio.Reader, req, last string) {
	fmt.Fprint(conn, req)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(strings.TrimSuffix(line, "\r\n"))
		if strings.HasPrefix(line, last) {
			return
		}
	}
}

// A test gets its own server, seeds or inspects its cache directly, and
// points the code under test (here a raw connection) at its address.
func ExampleNewServer() {
	t := &exampleT{} // a test passes its *testing.T
	defer t.done()

	ts := emcachetest.NewServer(t) // stopped by t.Cleanup
	ts.Cache().Set([]byte("greeting"), []byte("hello"), 0)

	conn, err := net.Dial("tcp", ts.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	send(conn, r, "get greeting\r\n", "END")
	send(conn, r, "set visits 0 0 1\r\n1\r\nincr visits 41\r\n", "42")

	it, _ := ts.Cache().Get([]byte("visits"))
	fmt.Printf("the cache holds %s\n", it.Value)
	// Output:
	// VALUE greeting 0 5
	// hello
	// END
	// STORED
	// 42
	// the cache holds 42
}

// FastForward moves the server's clock: TTLs run out, touch and gat extend
// them, a delayed flush_all comes due, all without sleeping.
func ExampleServer_FastForward() {
	t := &exampleT{} // a test passes its *testing.T
	defer t.done()

	ts := emcachetest.NewServer(t)
	conn, err := net.Dial("tcp", ts.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)

	send(conn, r, "set session 0 60 5\r\nalice\r\n", "STORED")
	ts.FastForward(59 * time.Second)
	send(conn, r, "get session\r\n", "END")
	ts.FastForward(time.Second)
	send(conn, r, "get session\r\n", "END")
	// Output:
	// STORED
	// VALUE session 0 5
	// alice
	// END
	// END
}

// InjectFault makes the next requests fail as a troubled memcached would,
// to test a client's error handling.
func ExampleServer_InjectFault() {
	t := &exampleT{} // a test passes its *testing.T
	defer t.done()

	ts := emcachetest.NewServer(t)
	conn, err := net.Dial("tcp", ts.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)

	ts.InjectFault(1, emcache.Fault{Command: "set", Reply: "SERVER_ERROR out of memory storing object"})
	send(conn, r, "set k 0 0 1\r\nv\r\n", "")
	send(conn, r, "set k 0 0 1\r\nv\r\n", "STORED")

	ts.InjectFault(1, emcache.Fault{Close: true}) // the server hangs up
	send(conn, r, "get k\r\n", "END")
	// Output:
	// SERVER_ERROR out of memory storing object
	// STORED
	// EOF
}

// WithTLS serves over TLS; ClientTLS is what a client dials with.
func ExampleWithTLS() {
	t := &exampleT{} // a test passes its *testing.T
	defer t.done()

	ts := emcachetest.NewServer(t, emcachetest.WithTLS())
	conn, err := tls.Dial("tcp", ts.Addr(), ts.ClientTLS())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	send(conn, r, "set secret 0 0 6\r\nsesame\r\nget secret\r\n", "END")
	// Output:
	// STORED
	// VALUE secret 0 6
	// sesame
	// END
}

// A Clock also drives a cache used without a server.
func ExampleClock() {
	clock := emcachetest.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	c, err := emcache.New(emcache.Config{MaxBytes: 8 << 20, Now: clock.Now})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	c.Set([]byte("token"), []byte("secret"), time.Hour)
	clock.FastForward(time.Hour)
	_, err = c.Get([]byte("token"))
	fmt.Println(err)
	// Output: emcache: key not found
}
