package throughput

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/emcache/emcache/bench/caches"
)

var sharedKeyset = sync.OnceValue(NewKeyset)

// BenchmarkThroughput runs every workload against every cache, one cache at
// a time: BenchmarkThroughput/<cache>/<workload>/x<goroutines per core>.
func BenchmarkThroughput(b *testing.B) {
	ks := sharedKeyset()
	for _, lib := range caches.All {
		b.Run(lib.Name, func(b *testing.B) { benchmarkLib(b, lib, ks) })
		runtime.GC() // the next cache starts without this one's garbage
	}
}

func benchmarkLib(b *testing.B, lib caches.Lib, ks *Keyset) {
	c, err := lib.New(Budget)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	Prefill(c, ks)
	for _, w := range Workloads {
		for _, par := range Parallelisms {
			b.Run(fmt.Sprintf("%s/x%d", w.Name, par), func(b *testing.B) { Bench(b, c, ks, w, par) })
		}
	}
}

// BenchmarkInsert fills an empty cache of each library with distinct keys,
// reporting the time per insert: BenchmarkInsert/<cache>.
func BenchmarkInsert(b *testing.B) {
	const n = 1 << 20 // the report inserts InsertKeys; this keeps -bench short
	for _, lib := range caches.All {
		b.Run(lib.Name, func(b *testing.B) {
			var total InsertResult
			for range b.N {
				r, err := Insert(lib, n)
				if err != nil {
					b.Fatal(err)
				}
				total.NsPerOp += r.NsPerOp
				total.AllocsPerOp += r.AllocsPerOp
			}
			b.ReportMetric(total.NsPerOp/float64(b.N), "ns/insert")
			b.ReportMetric(total.AllocsPerOp/float64(b.N), "allocs/insert")
		})
		runtime.GC()
	}
}
