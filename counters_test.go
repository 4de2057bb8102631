package emcache

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The store, delete, arithmetic and touch logic is one engine under the Go
// API and the three protocols. These cases pin what every path counts,
// step by step; on the wire they follow memcached 1.6.18, checked against
// it sequence by sequence, except where memcached lacks the feature (ms E,
// ms N with append or prepend, md x).

// counterStep is one exchange: on the text connection (send), on the
// binary connection (bin), or through the Go API (api). Its delta lists
// the counters it must move; every other counter must not move.
type counterStep struct {
	send    string
	bin     []binMsg
	api     func(c *Cache) string
	want    string
	wantBin []binMsg
	delta   Stats
}

type counterCase struct {
	name string
	cfg  Config
	// fill stores counterFillValue-byte values until the cache refuses one, so that the
	// steps meet a full cache (with Config.NoEvict).
	fill  bool
	setup []counterStep
	steps []counterStep
}

func tx(send, want string, d Stats) counterStep {
	return counterStep{send: send, want: want, delta: d}
}

func bx(req, want binMsg, d Stats) counterStep {
	return counterStep{bin: []binMsg{req}, wantBin: []binMsg{want}, delta: d}
}

func gx(call func(c *Cache) string, want string, d Stats) counterStep {
	return counterStep{api: call, want: want, delta: d}
}

// bNoMemory is the answer to a store the cache has no room for, which
// carries memcached's text rather than the status's own.
func bNoMemory(req binMsg) binMsg {
	r := bErr(req, binNoMemory)
	r.val = []byte(binNoMemoryStore)
	return r
}

// apiOutcome renders a Go API result as a step's reply.
func apiOutcome(err error) string {
	if err != nil {
		return err.Error()
	}
	return "ok"
}

func apiGet(key string) func(c *Cache) string {
	return func(c *Cache) string {
		it, err := c.Get([]byte(key))
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%q cas=%d", it.Value, it.CAS)
	}
}

func apiSet(key, val string, exptime int64) func(c *Cache) string {
	return func(c *Cache) string {
		cas, err := c.Store([]byte(key), []byte(val), StoreOptions{TTL: time.Duration(exptime) * time.Second})
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("cas=%d", cas)
	}
}

// counterFillValue is the size of the values a fill stores: the steps
// that must meet a full cache store one more of that size, which a cache
// refused the last of cannot take either.
const counterFillValue = 400

var (
	cBig    = strings.Repeat("b", 2000) // refused before its data is read
	cHalf   = strings.Repeat("h", 600)  // twice this is over the limit
	cFill   = strings.Repeat("f", counterFillValue)
	setHalf = "set k 0 0 600\r\n" + cHalf + "\r\n"
	setK    = "set k 0 0 2\r\nv1\r\n"
	msK     = "ms k 2\r\nv1\r\n"
	setTen  = "set k 0 0 2\r\n10\r\n"
	binSetK = bStore(binOpSet, "k", "v1", 0, 0)
)

func counterCases() []counterCase {
	hit := Stats{CmdGet: 1, GetHits: 1}
	miss := Stats{CmdGet: 1, GetMisses: 1}
	expired := Stats{CmdGet: 1, GetMisses: 1, GetExpired: 1}
	stored := Stats{CmdSet: 1, TotalItems: 1}
	refused := Stats{CmdSet: 1}
	return []counterCase{
		// The Go API.
		{name: "api/set-get", steps: []counterStep{
			gx(apiSet("k", "v1", 0), "cas=1", stored),
			gx(apiGet("k"), `"v1" cas=1`, hit),
			gx(apiGet("x"), ErrNotFound.Error(), miss),
		}},
		{name: "api/add-replace", steps: []counterStep{
			gx(func(c *Cache) string { err := c.Replace([]byte("k"), []byte("v"), 0); return apiOutcome(err) }, ErrNotStored.Error(), refused),
			gx(func(c *Cache) string { err := c.Add([]byte("k"), []byte("v"), 0); return apiOutcome(err) }, "ok", stored),
			gx(func(c *Cache) string { err := c.Add([]byte("k"), []byte("v"), 0); return apiOutcome(err) }, ErrNotStored.Error(), refused),
			gx(func(c *Cache) string { err := c.Replace([]byte("k"), []byte("w"), 0); return apiOutcome(err) }, "ok", stored),
		}},
		{name: "api/append-prepend", steps: []counterStep{
			gx(func(c *Cache) string { err := c.Append([]byte("k"), []byte("a")); return apiOutcome(err) }, ErrNotStored.Error(), refused),
			gx(func(c *Cache) string { err := c.Prepend([]byte("k"), []byte("p")); return apiOutcome(err) }, ErrNotStored.Error(), refused),
			gx(apiSet("k", "v1", 0), "cas=1", stored),
			gx(func(c *Cache) string { err := c.Append([]byte("k"), []byte("a")); return apiOutcome(err) }, "ok", stored),
			gx(func(c *Cache) string { err := c.Prepend([]byte("k"), []byte("p")); return apiOutcome(err) }, "ok", stored),
			gx(apiGet("k"), `"pv1a" cas=3`, hit),
		}},
		{name: "api/cas", steps: []counterStep{
			gx(func(c *Cache) string {
				err := c.CompareAndSwap([]byte("k"), []byte("v"), 1, 0)
				return apiOutcome(err)
			}, ErrNotFound.Error(), Stats{CmdSet: 1, CasMisses: 1}),
			gx(apiSet("k", "v1", 0), "cas=1", stored),
			gx(func(c *Cache) string {
				err := c.CompareAndSwap([]byte("k"), []byte("v"), 99, 0)
				return apiOutcome(err)
			}, ErrExists.Error(), Stats{CmdSet: 1, CasBadval: 1}),
			gx(func(c *Cache) string {
				err := c.CompareAndSwap([]byte("k"), []byte("v"), 1, 0)
				return apiOutcome(err)
			}, "ok", Stats{CmdSet: 1, CasHits: 1, TotalItems: 1}),
		}},
		{name: "api/delete-touch", steps: []counterStep{
			gx(func(c *Cache) string { return apiOutcome(c.Delete([]byte("k"))) }, ErrNotFound.Error(), Stats{DeleteMisses: 1}),
			gx(func(c *Cache) string { return apiOutcome(c.Touch([]byte("k"), 100*time.Second)) }, ErrNotFound.Error(), Stats{CmdTouch: 1, TouchMisses: 1}),
			gx(apiSet("k", "v1", 0), "cas=1", stored),
			gx(func(c *Cache) string { return apiOutcome(c.Touch([]byte("k"), 100*time.Second)) }, "ok", Stats{CmdTouch: 1, TouchHits: 1}),
			gx(func(c *Cache) string { return apiOutcome(c.Delete([]byte("k"))) }, "ok", Stats{DeleteHits: 1}),
		}},
		{name: "api/incr-decr", steps: []counterStep{
			gx(func(c *Cache) string { _, err := c.Incr([]byte("k"), 1); return apiOutcome(err) }, ErrNotFound.Error(), Stats{IncrMisses: 1}),
			gx(func(c *Cache) string { _, err := c.Decr([]byte("k"), 1); return apiOutcome(err) }, ErrNotFound.Error(), Stats{DecrMisses: 1}),
			gx(apiSet("k", "10", 0), "cas=1", stored),
			gx(func(c *Cache) string { n, err := c.Incr([]byte("k"), 5); return fmt.Sprint(n, err) }, "15 <nil>", Stats{IncrHits: 1}),
			gx(func(c *Cache) string { n, err := c.Decr([]byte("k"), 20); return fmt.Sprint(n, err) }, "0 <nil>", Stats{DecrHits: 1}),
			gx(func(c *Cache) string { n, err := c.Incr([]byte("k"), 123); return fmt.Sprint(n, err) }, "123 <nil>", Stats{IncrHits: 1, TotalItems: 1}),
			gx(apiSet("k", "v1", 0), "cas=5", stored),
			gx(func(c *Cache) string { _, err := c.Incr([]byte("k"), 1); return apiOutcome(err) }, ErrNotNumeric.Error(), Stats{}),
		}},
		{name: "api/get-and-touch", steps: []counterStep{
			gx(func(c *Cache) string { _, err := c.GetAndTouch([]byte("k"), 100*time.Second); return apiOutcome(err) }, ErrNotFound.Error(), Stats{CmdTouch: 1, TouchMisses: 1}),
			gx(apiSet("k", "v1", 0), "cas=1", stored),
			gx(func(c *Cache) string { _, err := c.GetAndTouch([]byte("k"), 100*time.Second); return apiOutcome(err) }, "ok", Stats{CmdTouch: 1, TouchHits: 1}),
		}},
		{name: "api/expired", steps: []counterStep{
			gx(apiSet("k", "v1", -1), "cas=1", stored),
			gx(apiGet("k"), ErrNotFound.Error(), expired),
			// A touch or gat of an expired item counts get_expired, as
			// memcached's do_item_get does for every lookup that finds one.
			gx(apiSet("k", "v1", -1), "cas=2", stored),
			gx(func(c *Cache) string { return apiOutcome(c.Touch([]byte("k"), 100*time.Second)) }, ErrNotFound.Error(), Stats{CmdTouch: 1, TouchMisses: 1, GetExpired: 1}),
			gx(apiSet("k", "v1", -1), "cas=3", stored),
			gx(func(c *Cache) string { _, err := c.GetAndTouch([]byte("k"), 100*time.Second); return apiOutcome(err) }, ErrNotFound.Error(), Stats{CmdTouch: 1, TouchMisses: 1, GetExpired: 1}),
		}},
		{name: "api/too-large", steps: []counterStep{
			gx(apiSet("k", cBig, 0), ErrTooLarge.Error(), Stats{StoreTooLarge: 1}),
			gx(apiSet("k", cHalf, 0), "cas=1", stored),
			// A join over the limit counts a set, not store_too_large, as the
			// text protocol's append does (memcached has no Go API to compare).
			gx(func(c *Cache) string { err := c.Append([]byte("k"), []byte(cHalf)); return apiOutcome(err) }, ErrTooLarge.Error(), refused),
			gx(apiGet("k"), `"`+cHalf+`" cas=1`, hit),
			gx(apiSet("k", cBig, 0), ErrTooLarge.Error(), Stats{StoreTooLarge: 1}),
			gx(apiGet("k"), ErrNotFound.Error(), miss),
		}},
		{name: "api/no-memory", cfg: Config{NoEvict: true}, fill: true, steps: []counterStep{
			gx(apiSet("k", cFill, 0), ErrNoMemory.Error(), Stats{StoreNoMemory: 1}),
		}},

		// The text protocol.
		{name: "text/set-get-gets", steps: []counterStep{
			tx(setK, "STORED\r\n", stored),
			tx("set k 0 0 2 noreply\r\nv2\r\n", "", stored),
			tx("get k\r\n", "VALUE k 0 2\r\nv2\r\nEND\r\n", hit),
			tx("gets k\r\n", "VALUE k 0 2 2\r\nv2\r\nEND\r\n", hit),
			tx("get x\r\n", "END\r\n", miss),
			tx("get k x k\r\n", "VALUE k 0 2\r\nv2\r\nVALUE k 0 2\r\nv2\r\nEND\r\n", Stats{CmdGet: 3, GetHits: 2, GetMisses: 1}),
		}},
		{name: "text/add-replace", steps: []counterStep{
			tx("replace k 0 0 2\r\nv1\r\n", "NOT_STORED\r\n", refused),
			tx("add k 0 0 2\r\nv1\r\n", "STORED\r\n", stored),
			tx("add k 0 0 2\r\nv2\r\n", "NOT_STORED\r\n", refused),
			tx("add k 0 0 2 noreply\r\nv2\r\n", "", refused),
			tx("replace k 0 0 2\r\nv3\r\n", "STORED\r\n", stored),
		}},
		{name: "text/append-prepend", steps: []counterStep{
			tx("append k 0 0 1\r\na\r\n", "NOT_STORED\r\n", refused),
			tx("prepend k 0 0 1\r\np\r\n", "NOT_STORED\r\n", refused),
			tx(setK, "STORED\r\n", stored),
			tx("append k 0 0 1\r\na\r\n", "STORED\r\n", stored),
			tx("prepend k 0 0 1 noreply\r\np\r\n", "", stored),
			tx("get k\r\n", "VALUE k 0 4\r\npv1a\r\nEND\r\n", hit),
		}},
		{name: "text/cas", steps: []counterStep{
			tx("cas k 0 0 2 1\r\nv1\r\n", "NOT_FOUND\r\n", Stats{CmdSet: 1, CasMisses: 1}),
			tx(setK, "STORED\r\n", stored),
			tx("cas k 0 0 2 99\r\nv2\r\n", "EXISTS\r\n", Stats{CmdSet: 1, CasBadval: 1}),
			tx("cas k 0 0 2 1\r\nv3\r\n", "STORED\r\n", Stats{CmdSet: 1, CasHits: 1, TotalItems: 1}),
			tx("cas k 0 0 2 2 noreply\r\nv4\r\n", "", Stats{CmdSet: 1, CasHits: 1, TotalItems: 1}),
			tx("cas x 0 0 2 1 noreply\r\nv4\r\n", "", Stats{CmdSet: 1, CasMisses: 1}),
		}},
		{name: "text/cas-nocas", cfg: Config{NoCAS: true}, steps: []counterStep{
			tx("cas k 0 0 2 1\r\nv1\r\n", "NOT_FOUND\r\n", Stats{CmdSet: 1, CasMisses: 1}),
			tx(setK, "STORED\r\n", stored),
			tx("gets k\r\n", "VALUE k 0 2 0\r\nv1\r\nEND\r\n", hit),
			// Without CAS values (-C) no cas matches, not even one of 0.
			tx("cas k 0 0 2 1\r\nv2\r\n", "EXISTS\r\n", Stats{CmdSet: 1, CasBadval: 1}),
			tx("cas k 0 0 2 0\r\nv3\r\n", "EXISTS\r\n", Stats{CmdSet: 1, CasBadval: 1}),
			tx("get k\r\n", "VALUE k 0 2\r\nv1\r\nEND\r\n", hit),
		}},
		{name: "text/delete", steps: []counterStep{
			tx("delete k\r\n", "NOT_FOUND\r\n", Stats{DeleteMisses: 1}),
			tx("delete k noreply\r\n", "", Stats{DeleteMisses: 1}),
			tx(setK, "STORED\r\n", stored),
			tx("delete k 0\r\n", "DELETED\r\n", Stats{DeleteHits: 1}),
			tx(setK, "STORED\r\n", stored),
			tx("delete k noreply\r\n", "", Stats{DeleteHits: 1}),
		}},
		{name: "text/incr-decr", steps: []counterStep{
			tx("incr k 1\r\n", "NOT_FOUND\r\n", Stats{IncrMisses: 1}),
			tx("decr k 1\r\n", "NOT_FOUND\r\n", Stats{DecrMisses: 1}),
			tx("incr k 1 noreply\r\n", "", Stats{IncrMisses: 1}),
			tx(setTen, "STORED\r\n", stored),
			tx("incr k 5\r\n", "15\r\n", Stats{IncrHits: 1}),
			tx("decr k 20\r\n", "0\r\n", Stats{DecrHits: 1}),
			tx("incr k 123 noreply\r\n", "", Stats{IncrHits: 1, TotalItems: 1}),
			tx("get k\r\n", "VALUE k 0 3\r\n123\r\nEND\r\n", hit),
			tx(setK, "STORED\r\n", stored),
			tx("incr k 1\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n", Stats{}),
			tx("decr k 1\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n", Stats{}),
		}},
		{name: "text/incr-lenient", steps: []counterStep{
			// memcached's strtoull takes the digits before a space, and
			// leading zeros past 20 digits; the result is written in place,
			// padded with spaces to the old length.
			tx("set k 0 0 6\r\n12 abc\r\n", "STORED\r\n", stored),
			tx("incr k 1\r\n", "13\r\n", Stats{IncrHits: 1}),
			tx("get k\r\n", "VALUE k 0 6\r\n13    \r\nEND\r\n", hit),
			tx("set k 0 0 24\r\n000000000000000000000012\r\n", "STORED\r\n", stored),
			tx("incr k 1\r\n", "13\r\n", Stats{IncrHits: 1}),
			tx("get k\r\n", "VALUE k 0 24\r\n13"+strings.Repeat(" ", 22)+"\r\nEND\r\n", hit),
			tx("set k 0 0 24\r\n000000000000000000000012\r\n", "STORED\r\n", stored),
			tx("decr k 1\r\n", "11\r\n", Stats{DecrHits: 1}),
			tx("set k 0 0 6\r\n12 abc\r\n", "STORED\r\n", stored),
			tx("decr k 1\r\n", "11\r\n", Stats{DecrHits: 1}),
			tx("set k 0 0 3\r\n12a\r\n", "STORED\r\n", stored),
			tx("incr k 1\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n", Stats{}),
		}},
		{name: "text/touch-gat-gats", steps: []counterStep{
			tx("touch k 100\r\n", "NOT_FOUND\r\n", Stats{CmdTouch: 1, TouchMisses: 1}),
			tx("gat 100 k\r\n", "END\r\n", Stats{CmdTouch: 1, TouchMisses: 1}),
			tx(setK, "STORED\r\n", stored),
			tx("touch k 100\r\n", "TOUCHED\r\n", Stats{CmdTouch: 1, TouchHits: 1}),
			tx("touch k 100 noreply\r\n", "", Stats{CmdTouch: 1, TouchHits: 1}),
			tx("gat 100 k\r\n", "VALUE k 0 2\r\nv1\r\nEND\r\n", Stats{CmdTouch: 1, TouchHits: 1}),
			tx("gats 100 k x\r\n", "VALUE k 0 2 1\r\nv1\r\nEND\r\n", Stats{CmdTouch: 2, TouchHits: 1, TouchMisses: 1}),
		}},
		{name: "text/expired", steps: []counterStep{
			tx("set k 0 -1 2\r\nv1\r\n", "STORED\r\n", stored),
			tx("get k\r\n", "END\r\n", expired),
			tx("set k 0 -1 2\r\nv1\r\n", "STORED\r\n", stored),
			// memcached counts get_expired for a gat or touch that finds the
			// item expired, as for a get.
			tx("gat 100 k\r\n", "END\r\n", Stats{CmdTouch: 1, TouchMisses: 1, GetExpired: 1}),
			tx("set k 0 -1 2\r\nv1\r\n", "STORED\r\n", stored),
			tx("touch k 100\r\n", "NOT_FOUND\r\n", Stats{CmdTouch: 1, TouchMisses: 1, GetExpired: 1}),
		}},
		{name: "text/too-large", steps: []counterStep{
			tx("set k 0 0 2000\r\n"+cBig+"\r\n", "SERVER_ERROR object too large for cache\r\n", Stats{StoreTooLarge: 1}),
			tx(setHalf, "STORED\r\n", stored),
			// memcached counts the joined append as a set and answers
			// NOT_STORED: its allocation fails inside do_store_item, after the
			// set is counted; store_too_large counts only a value refused
			// before its data is read.
			tx("append k 0 0 600\r\n"+cHalf+"\r\n", "NOT_STORED\r\n", refused),
			tx("append k 0 0 2000\r\n"+cBig+"\r\n", "SERVER_ERROR object too large for cache\r\n", Stats{StoreTooLarge: 1}),
			tx("add k 0 0 2000\r\n"+cBig+"\r\n", "SERVER_ERROR object too large for cache\r\n", Stats{StoreTooLarge: 1}),
			tx("get k\r\n", "VALUE k 0 600\r\n"+cHalf+"\r\nEND\r\n", hit),
			tx("set k 0 0 2000 noreply\r\n"+cBig+"\r\n", "", Stats{StoreTooLarge: 1}),
			tx("get k\r\n", "END\r\n", miss),
		}},
		{name: "text/bad-data-chunk", setup: []counterStep{tx(setK, "STORED\r\n", stored)}, steps: []counterStep{
			// A bad block still counts a set, and leaves the old value.
			tx("set k 0 0 1\r\nxyz", "CLIENT_ERROR bad data chunk\r\n", refused),
			tx("get k\r\n", "VALUE k 0 2\r\nv1\r\nEND\r\n", hit),
			tx("append k 0 0 1\r\nxyz", "CLIENT_ERROR bad data chunk\r\n", refused),
			tx("cas k 0 0 1 1\r\nxyz", "CLIENT_ERROR bad data chunk\r\n", refused),
		}},
		{name: "text/no-memory", cfg: Config{NoEvict: true}, fill: true, steps: []counterStep{
			tx(fmt.Sprintf("set k 0 0 %d\r\n%s\r\n", counterFillValue, cFill), "SERVER_ERROR out of memory storing object\r\n", Stats{StoreNoMemory: 1}),
		}},

		// The meta protocol.
		{name: "meta/ms-modes", steps: []counterStep{
			tx("ms k 2 MR\r\nv1\r\n", "NS\r\n", refused),
			tx("ms k 2 MA\r\nv1\r\n", "NS\r\n", refused),
			tx("ms k 2 MP\r\nv1\r\n", "NS\r\n", refused),
			tx("ms k 2 ME\r\nv1\r\n", "HD\r\n", stored),
			tx("ms k 2 ME\r\nv2\r\n", "NS\r\n", refused),
			tx("ms k 2 MS\r\nv3\r\n", "HD\r\n", stored),
			tx("ms k 1 MA\r\na\r\n", "HD\r\n", stored),
			tx("ms k 1 MP q\r\np\r\n", "", stored),
			tx("ms k 2 MR\r\nv4\r\n", "HD\r\n", stored),
			tx("mg k v\r\n", "VA 2\r\nv4\r\n", hit),
		}},
		{name: "meta/ms-cas", steps: []counterStep{
			tx("ms k 2 C1\r\nv1\r\n", "NF\r\n", Stats{CmdSet: 1, CasMisses: 1}),
			tx("ms k 2 MR C1\r\nv1\r\n", "NF\r\n", Stats{CmdSet: 1, CasMisses: 1}),
			tx("ms k 2 MA C1\r\nv1\r\n", "NS\r\n", refused),
			tx(msK, "HD\r\n", stored),
			tx("ms k 2 C99\r\nv2\r\n", "EX\r\n", Stats{CmdSet: 1, CasBadval: 1}),
			tx("ms k 2 C1 c\r\nv3\r\n", "HD c2\r\n", Stats{CmdSet: 1, CasHits: 1, TotalItems: 1}),
			tx("ms k 1 MA C99\r\na\r\n", "EX\r\n", refused),
			tx("ms k 1 MA C2\r\na\r\n", "HD\r\n", stored),
			tx("ms k 2 ME C3\r\nv4\r\n", "NS\r\n", refused),
			tx("ms k 2 I C1\r\nv5\r\n", "HD\r\n", Stats{CmdSet: 1, CasHits: 1, TotalItems: 1}),
			tx("ms k 2 I C99\r\nv6\r\n", "EX\r\n", Stats{CmdSet: 1, CasBadval: 1}),
			tx("ms k 2 E500\r\nv7\r\n", "HD\r\n", stored),
			tx("mg k c v\r\n", "VA 2 c500\r\nv7\r\n", hit),
		}},
		{name: "meta/ms-vivify", steps: []counterStep{
			tx("ms k 1 MA N100\r\na\r\n", "HD\r\n", stored),
			tx("ms k 1 MP N100\r\np\r\n", "HD\r\n", stored),
			tx("mg k v\r\n", "VA 2\r\npa\r\n", hit),
		}},
		{name: "meta/ms-too-large", steps: []counterStep{
			tx("ms k 2000\r\n"+cBig+"\r\n", "SERVER_ERROR object too large for cache\r\n", Stats{StoreTooLarge: 1}),
			tx("ms k 600\r\n"+cHalf+"\r\n", "HD\r\n", stored),
			// As append in the text protocol: NS, a set, no store_too_large.
			tx("ms k 600 MA\r\n"+cHalf+"\r\n", "NS\r\n", refused),
			tx("mg k s\r\n", "HD s600\r\n", hit),
			tx("ms k 2000 ME\r\n"+cBig+"\r\n", "SERVER_ERROR object too large for cache\r\n", Stats{StoreTooLarge: 1}),
			tx("mg k s\r\n", "EN\r\n", miss),
		}},
		{name: "meta/ms-bad-data-chunk", setup: []counterStep{tx(msK, "HD\r\n", stored)}, steps: []counterStep{
			tx("ms k 1\r\nxyz", "CLIENT_ERROR bad data chunk\r\n", refused),
			tx("mg k v\r\n", "VA 2\r\nv1\r\n", hit),
		}},
		{name: "meta/ms-no-memory", cfg: Config{NoEvict: true}, fill: true, steps: []counterStep{
			// As set: memcached's allocation fails before do_store_item, so
			// no set is counted.
			tx(fmt.Sprintf("ms k %d\r\n%s\r\n", counterFillValue, cFill), "SERVER_ERROR out of memory storing object\r\n", Stats{StoreNoMemory: 1}),
		}},
		{name: "meta/md", steps: []counterStep{
			tx("md k\r\n", "NF\r\n", Stats{DeleteMisses: 1}),
			tx("md k C1\r\n", "NF\r\n", Stats{DeleteMisses: 1}),
			tx("md k q\r\n", "NF\r\n", Stats{DeleteMisses: 1}),
			tx(msK, "HD\r\n", stored),
			tx("md k C99\r\n", "EX\r\n", Stats{DeleteMisses: 1}),
			// Invalidation keeps the item, so it is no delete hit.
			tx("md k I\r\n", "HD\r\n", Stats{}),
			tx("mg k v c\r\n", "VA 2 c2 X W\r\nv1\r\n", hit),
			tx("md k x\r\n", "HD\r\n", Stats{DeleteHits: 1, TotalItems: 1}),
			tx("mg k v\r\n", "VA 0\r\n\r\n", hit),
			tx("md k C2\r\n", "HD\r\n", Stats{DeleteHits: 1}),
			tx("mg k v\r\n", "EN\r\n", miss),
		}},
		{name: "meta/ma", steps: []counterStep{
			tx("ma k\r\n", "NF\r\n", Stats{IncrMisses: 1}),
			tx("ma k MD\r\n", "NF\r\n", Stats{DecrMisses: 1}),
			tx("ma k C1\r\n", "NF\r\n", Stats{IncrMisses: 1}),
			tx("ma k N0 J10 v\r\n", "VA 2\r\n10\r\n", Stats{TotalItems: 1}),
			tx("ma k v\r\n", "VA 2\r\n11\r\n", Stats{IncrHits: 1}),
			tx("ma k MD D20 v\r\n", "VA 1\r\n0\r\n", Stats{DecrHits: 1}),
			// A CAS mismatch in arithmetic has no counter of its own.
			tx("ma k C99\r\n", "EX\r\n", Stats{}),
			tx("ma k q D123\r\n", "", Stats{IncrHits: 1, TotalItems: 1}),
			tx("ma k N0 J5 v\r\n", "VA 3\r\n124\r\n", Stats{IncrHits: 1}),
			tx(msK, "HD\r\n", stored),
			tx("ma k\r\n", "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n", Stats{}),
		}},
		{name: "meta/mg", steps: []counterStep{
			tx("mg k v\r\n", "EN\r\n", miss),
			// mg with T counts a miss as a get, a hit as a touch.
			tx("mg k T100\r\n", "EN\r\n", miss),
			tx("mg k N100 v\r\n", "VA 0 W\r\n\r\n", Stats{CmdGet: 1, GetHits: 1, TotalItems: 1}),
			tx("mg k N100 v\r\n", "VA 0 Z\r\n\r\n", hit),
			tx(msK, "HD\r\n", stored),
			tx("mg k T100 v\r\n", "VA 2\r\nv1\r\n", Stats{CmdTouch: 1, TouchHits: 1}),
			tx("mg k u v\r\n", "VA 2\r\nv1\r\n", hit),
			tx("mg k\r\n", "HD\r\n", hit),
			tx("ms k 2 T-1\r\nv1\r\n", "HD\r\n", stored),
			tx("mg k v\r\n", "EN\r\n", expired),
		}},

		// The binary protocol.
		{name: "bin/set-add-replace", steps: []counterStep{
			bx(bStore(binOpReplace, "k", "v1", 0, 0), bErr(bStore(binOpReplace, "k", "v1", 0, 0), binNotFound), refused),
			bx(bStore(binOpAdd, "k", "v1", 0, 0), bOK(bStore(binOpAdd, "k", "v1", 0, 0)), stored),
			bx(bStore(binOpAdd, "k", "v1", 0, 0), bErr(bStore(binOpAdd, "k", "v1", 0, 0), binExists), refused),
			bx(binSetK, bOK(binSetK), stored),
			bx(bStore(binOpReplace, "k", "v1", 0, 0), bOK(bStore(binOpReplace, "k", "v1", 0, 0)), stored),
		}},
		{name: "bin/store-cas", steps: []counterStep{
			bx(binSetK.withCAS(1), bErr(binSetK, binNotFound), Stats{CmdSet: 1, CasMisses: 1}),
			bx(binSetK, bOK(binSetK), stored),
			bx(binSetK.withCAS(99), bErr(binSetK, binExists), Stats{CmdSet: 1, CasBadval: 1}),
			bx(binSetK.withCAS(1), bOK(binSetK), Stats{CmdSet: 1, CasHits: 1, TotalItems: 1}),
			bx(bStore(binOpAdd, "k", "v", 0, 0).withCAS(2), bOK(bStore(binOpAdd, "k", "v", 0, 0)), Stats{CmdSet: 1, CasHits: 1, TotalItems: 1}),
			bx(bStore(binOpReplace, "k", "v", 0, 0).withCAS(99), bErr(bStore(binOpReplace, "k", "v", 0, 0), binExists), Stats{CmdSet: 1, CasBadval: 1}),
		}},
		{name: "bin/append-prepend", steps: []counterStep{
			bx(bConcat(binOpAppend, "k", "a"), bErr(bConcat(binOpAppend, "k", "a"), binNotStored), refused),
			// The CAS forms of append and prepend count a set whatever the
			// outcome and never a cas counter: memcached's do_store_item
			// checks their CAS in its append branch, which has no cas stats.
			bx(bConcat(binOpAppend, "k", "a").withCAS(1), bErr(bConcat(binOpAppend, "k", "a"), binNotStored), refused),
			bx(binSetK, bOK(binSetK), stored),
			bx(bConcat(binOpAppend, "k", "a"), bOK(bConcat(binOpAppend, "k", "a")), stored),
			bx(bConcat(binOpPrepend, "k", "p"), bOK(bConcat(binOpPrepend, "k", "p")), stored),
			bx(bConcat(binOpAppend, "k", "a").withCAS(99), bErr(bConcat(binOpAppend, "k", "a"), binExists), refused),
			bx(bConcat(binOpPrepend, "k", "p").withCAS(3), bOK(bConcat(binOpPrepend, "k", "p")), stored),
			bx(bReq(binOpGet, "k"), bHit(bReq(binOpGet, "k"), 0, false, "ppv1a"), hit),
		}},
		{name: "bin/delete", steps: []counterStep{
			bx(bReq(binOpDelete, "k"), bErr(bReq(binOpDelete, "k"), binNotFound), Stats{DeleteMisses: 1}),
			bx(bReq(binOpDelete, "k").withCAS(1), bErr(bReq(binOpDelete, "k"), binNotFound), Stats{DeleteMisses: 1}),
			bx(binSetK, bOK(binSetK), stored),
			bx(bReq(binOpDelete, "k").withCAS(99), bErr(bReq(binOpDelete, "k"), binExists), Stats{}),
			bx(bReq(binOpDelete, "k").withCAS(1), bOKNoCAS(bReq(binOpDelete, "k")), Stats{DeleteHits: 1}),
			bx(binSetK, bOK(binSetK), stored),
			bx(bReq(binOpDelete, "k"), bOKNoCAS(bReq(binOpDelete, "k")), Stats{DeleteHits: 1}),
		}},
		{name: "bin/incr-decr", steps: []counterStep{
			bx(bDelta(binOpIncrement, "k", 1, 0, binNoCreate), bErr(bDelta(binOpIncrement, "k", 1, 0, binNoCreate), binNotFound), Stats{IncrMisses: 1}),
			bx(bDelta(binOpDecrement, "k", 1, 0, binNoCreate), bErr(bDelta(binOpDecrement, "k", 1, 0, binNoCreate), binNotFound), Stats{DecrMisses: 1}),
			// The initial value a miss creates is an item, not a set or a miss.
			bx(bDelta(binOpIncrement, "k", 1, 10, 0), bNumber(bDelta(binOpIncrement, "k", 1, 10, 0), 10), Stats{TotalItems: 1}),
			bx(bDelta(binOpIncrement, "k", 5, 10, 0), bNumber(bDelta(binOpIncrement, "k", 5, 10, 0), 15), Stats{IncrHits: 1}),
			bx(bDelta(binOpDecrement, "k", 20, 10, 0), bNumber(bDelta(binOpDecrement, "k", 20, 10, 0), 0), Stats{DecrHits: 1}),
			bx(bDelta(binOpIncrement, "k", 1, 0, 0).withCAS(99), bErr(bDelta(binOpIncrement, "k", 1, 0, 0), binExists), Stats{}),
			bx(bDelta(binOpIncrement, "k", 1, 0, 0).withCAS(3), bNumber(bDelta(binOpIncrement, "k", 1, 0, 0), 1), Stats{IncrHits: 1}),
			bx(bDelta(binOpDecrement, "x", 1, 7, 0), bNumber(bDelta(binOpDecrement, "x", 1, 7, 0), 7), Stats{TotalItems: 1}),
			bx(binSetK, bOK(binSetK), stored),
			bx(bDelta(binOpIncrement, "k", 1, 0, 0), bErr(bDelta(binOpIncrement, "k", 1, 0, 0), binNonNumeric), Stats{}),
		}},
		{name: "bin/get-touch-gat", steps: []counterStep{
			bx(bReq(binOpGet, "k"), bErr(bReq(binOpGet, "k"), binNotFound), miss),
			bx(bReq(binOpGetK, "k"), bKeyMiss(bReq(binOpGetK, "k")), miss),
			bx(bExp(binOpTouch, "k", 100), bErr(bExp(binOpTouch, "k", 100), binNotFound), Stats{CmdTouch: 1, TouchMisses: 1}),
			bx(bExp(binOpGAT, "k", 100), bErr(bExp(binOpGAT, "k", 100), binNotFound), Stats{CmdTouch: 1, TouchMisses: 1}),
			bx(binSetK, bOK(binSetK), stored),
			bx(bReq(binOpGet, "k"), bHit(bReq(binOpGet, "k"), 0, false, "v1"), hit),
			bx(bReq(binOpGetK, "k"), bHit(bReq(binOpGetK, "k"), 0, true, "v1"), hit),
			bx(bExp(binOpTouch, "k", 100), bHit(bExp(binOpTouch, "k", 100), 0, false, ""), Stats{CmdTouch: 1, TouchHits: 1}),
			bx(bExp(binOpGAT, "k", 100), bHit(bExp(binOpGAT, "k", 100), 0, false, "v1"), Stats{CmdTouch: 1, TouchHits: 1}),
		}},
		{name: "bin/expired", steps: []counterStep{
			tx("set k 0 -1 2\r\nv1\r\n", "STORED\r\n", stored),
			bx(bReq(binOpGet, "k"), bErr(bReq(binOpGet, "k"), binNotFound), expired),
			tx("set k 0 -1 2\r\nv1\r\n", "STORED\r\n", stored),
			bx(bExp(binOpTouch, "k", 100), bErr(bExp(binOpTouch, "k", 100), binNotFound), Stats{CmdTouch: 1, TouchMisses: 1, GetExpired: 1}),
			tx("set k 0 -1 2\r\nv1\r\n", "STORED\r\n", stored),
			bx(bExp(binOpGAT, "k", 100), bErr(bExp(binOpGAT, "k", 100), binNotFound), Stats{CmdTouch: 1, TouchMisses: 1, GetExpired: 1}),
		}},
		{name: "bin/too-large", steps: []counterStep{
			// memcached's binary protocol counts no store_too_large: a value
			// refused before its data is read counts nothing at all.
			bx(bStore(binOpSet, "k", cBig, 0, 0), bErr(bStore(binOpSet, "k", cBig, 0, 0), binTooLarge), Stats{}),
			bx(bStore(binOpSet, "k", cHalf, 0, 0), bOK(bStore(binOpSet, "k", cHalf, 0, 0)), stored),
			// A join over the limit fails inside do_store_item: a set, with
			// or without a CAS, and no cas counter.
			bx(bConcat(binOpAppend, "k", cHalf), bErr(bConcat(binOpAppend, "k", cHalf), binNotStored), refused),
			bx(bConcat(binOpAppend, "k", cHalf).withCAS(1), bErr(bConcat(binOpAppend, "k", cHalf), binNotStored), refused),
			bx(bConcat(binOpAppend, "k", cBig), bErr(bConcat(binOpAppend, "k", cBig), binTooLarge), Stats{}),
			bx(bStore(binOpAdd, "k", cBig, 0, 0), bErr(bStore(binOpAdd, "k", cBig, 0, 0), binTooLarge), Stats{}),
			bx(bReq(binOpGet, "k"), bHit(bReq(binOpGet, "k"), 0, false, cHalf), hit),
			bx(bStore(binOpSet, "k", cBig, 0, 0), bErr(bStore(binOpSet, "k", cBig, 0, 0), binTooLarge), Stats{}),
			bx(bReq(binOpGet, "k"), bErr(bReq(binOpGet, "k"), binNotFound), miss),
		}},
		{name: "bin/no-memory", cfg: Config{NoEvict: true}, fill: true, steps: []counterStep{
			// No store_no_memory either: memcached's binary protocol never
			// counts it.
			bx(bStore(binOpSet, "k", cFill, 0, 0), bNoMemory(bStore(binOpSet, "k", cFill, 0, 0)), Stats{}),
		}},
	}
}

// counterDelta is what moved between two readings of the pinned counters;
// the others read as 0.
func counterDelta(a, b Stats) Stats {
	return Stats{
		CmdGet: b.CmdGet - a.CmdGet, CmdSet: b.CmdSet - a.CmdSet, CmdTouch: b.CmdTouch - a.CmdTouch,
		GetHits: b.GetHits - a.GetHits, GetMisses: b.GetMisses - a.GetMisses, GetExpired: b.GetExpired - a.GetExpired,
		TouchHits: b.TouchHits - a.TouchHits, TouchMisses: b.TouchMisses - a.TouchMisses,
		CasHits: b.CasHits - a.CasHits, CasMisses: b.CasMisses - a.CasMisses, CasBadval: b.CasBadval - a.CasBadval,
		IncrHits: b.IncrHits - a.IncrHits, IncrMisses: b.IncrMisses - a.IncrMisses,
		DecrHits: b.DecrHits - a.DecrHits, DecrMisses: b.DecrMisses - a.DecrMisses,
		DeleteHits: b.DeleteHits - a.DeleteHits, DeleteMisses: b.DeleteMisses - a.DeleteMisses,
		StoreTooLarge: b.StoreTooLarge - a.StoreTooLarge, StoreNoMemory: b.StoreNoMemory - a.StoreNoMemory,
		TotalItems: b.TotalItems - a.TotalItems,
	}
}

// counterFill stores values of counterFillValue bytes until the cache
// refuses one for lack of memory.
func counterFill(t *testing.T, conn net.Conn) {
	t.Helper()
	for i := range 1000 {
		got := protoRoundTrip(t, conn, fmt.Sprintf("set fill%d 0 0 %d\r\n%s\r\n", i, counterFillValue, cFill))
		if got != rStored {
			require.Equal(t, rNoMemory, got)
			return
		}
	}
	t.Fatal("the cache never filled up")
}

func TestCounters(t *testing.T) {
	for _, tc := range counterCases() {
		t.Run(tc.name, func(t *testing.T) {
			// One shard with a CAS in every record: CAS values are 1, 2,
			// 3... in the order items change, so steps can name them.
			s, conn, _ := startMetaServer(t, tc.cfg)
			c := s.cache
			var bconn net.Conn
			run := func(i int, st counterStep, checkDelta bool) {
				t.Helper()
				before := c.Stats()
				switch {
				case st.api != nil:
					assert.Equal(t, st.want, st.api(c), "step %d", i)
				case st.bin != nil:
					if bconn == nil {
						bconn = protoDial(t, s.Addr().String())
					}
					binRoundTrip(t, bconn, st.bin, st.wantBin)
				default:
					assert.Equal(t, st.want, protoRoundTrip(t, conn, st.send), "step %d: %.60q", i, st.send)
				}
				if checkDelta {
					assert.Equal(t, st.delta, counterDelta(before, c.Stats()), "step %d: %.60q", i, st.send)
				}
			}
			for i, st := range tc.setup {
				run(i, st, false)
			}
			if tc.fill {
				counterFill(t, conn)
			}
			for i, st := range tc.steps {
				run(i, st, true)
			}
		})
	}
}
