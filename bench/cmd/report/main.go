// Command report runs the comparative benchmarks (throughput, hit ratio, GC
// cost) and rewrites the results section of bench/README.md.
//
//	cd bench && go run ./cmd/report          # full run, a few minutes
//	cd bench && go run ./cmd/report -quick   # smoke run, prints to stdout
//
// Each cache's throughput and GC-cost measurements run in child processes
// (this binary re-executed with -child-throughput or -child-memory) so that
// every cache starts from a clean heap and RSS.
package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emcache/emcache/bench/caches"
	"github.com/emcache/emcache/bench/hitratio"
	"github.com/emcache/emcache/bench/memory"
	"github.com/emcache/emcache/bench/throughput"
)

// settings are what one run measures; the flags choose between the full and
// the quick ones and may override parts.
type settings struct {
	quick     bool
	benchtime time.Duration
	count     int
	// insertKeys is the size of the insert workload.
	insertKeys int
	hit        hitratio.Config
	memSizes   []int
	mem        func(items int) memory.Config
	libs       []caches.Lib
	traces     []string
	sections   map[string]bool
}

func main() {
	testing.Init() // registers -test.benchtime, which testing.Benchmark reads
	quick := flag.Bool("quick", false, "small sizes and short runs (for CI); prints to stdout unless -out is given")
	out := flag.String("out", "README.md", "markdown file whose results section is rewritten; - for stdout")
	benchtime := flag.Duration("benchtime", 0, "time per throughput benchmark (default 200ms, quick 20ms)")
	count := flag.Int("count", 0, "throughput rounds; the fastest is reported (default 5, quick 1)")
	only := flag.String("only", "throughput,hitratio,memory", "comma-separated sections to run")
	libsFlag := flag.String("caches", "", "comma-separated caches to run (default all)")
	tracesFlag := flag.String("traces", "", "comma-separated hit-ratio traces to run (default all)")
	sizes := flag.String("sizes", "", "comma-separated entry counts for the GC cost (default 1000000,10000000; quick 20000,200000)")
	childMem := flag.String("child-memory", "", "internal: measure one cache's GC cost and print JSON")
	childTput := flag.String("child-throughput", "", "internal: run one cache's throughput benchmarks and print JSON")
	childInsert := flag.String("child-insert", "", "internal: run one cache's insert workload and print JSON")
	childItems := flag.Int("items", 0, "internal: entries for -child-memory and -child-insert")
	flag.Parse()

	s := settings{quick: *quick, benchtime: 200 * time.Millisecond, count: 5, insertKeys: throughput.InsertKeys, hit: hitratio.Default,
		memSizes: []int{1_000_000, 10_000_000}, mem: memory.DefaultConfig, libs: caches.All,
		sections: map[string]bool{}}
	if s.quick {
		s.benchtime = 20 * time.Millisecond
		s.count = 1
		s.insertKeys = 200_000
		s.hit = hitratio.Quick
		s.memSizes = []int{20_000, 200_000}
		s.mem = quickMemConfig
		if !flagSet("out") {
			*out = "-"
		}
	}
	if *benchtime > 0 {
		s.benchtime = *benchtime
	}
	if *count > 0 {
		s.count = *count
	}
	if *sizes != "" {
		s.memSizes = nil
		for _, f := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				fatalf("bad -sizes entry %q", f)
			}
			s.memSizes = append(s.memSizes, n)
		}
	}
	if *libsFlag != "" {
		s.libs = nil
		for _, name := range strings.Split(*libsFlag, ",") {
			l, err := caches.ByName(strings.TrimSpace(name))
			if err != nil {
				fatalf("%v", err)
			}
			s.libs = append(s.libs, l)
		}
	}
	if *tracesFlag != "" {
		for _, name := range strings.Split(*tracesFlag, ",") {
			s.traces = append(s.traces, strings.TrimSpace(name))
		}
	}
	for _, sec := range strings.Split(*only, ",") {
		s.sections[strings.TrimSpace(sec)] = true
	}

	if err := flag.Set("test.benchtime", s.benchtime.String()); err != nil {
		fatalf("%v", err)
	}
	switch {
	case *childMem != "":
		printJSON(childMemory(*childMem, *childItems, s))
		return
	case *childTput != "":
		lib, err := caches.ByName(*childTput)
		if err != nil {
			fatalf("%v", err)
		}
		printJSON(childThroughput(lib))
		return
	case *childInsert != "":
		printJSON(childInsertRun(*childInsert, *childItems))
		return
	}

	rep := &report{machine: describeMachine(), quick: s.quick, libs: libNames(s.libs), started: time.Now()}
	if s.sections["throughput"] {
		rep.throughput = runThroughput(s)
	}
	if s.sections["hitratio"] {
		rep.hitRuns = runHitRatio(s)
	}
	if s.sections["memory"] {
		rep.memCfg = s.mem(0)
		rep.memory = runMemory(s)
	}
	rep.elapsed = time.Since(rep.started)

	md := rep.markdown()
	if *out == "-" {
		fmt.Print(md)
		return
	}
	if err := spliceFile(*out, md); err != nil {
		fatalf("%v", err)
	}
	logf("rewrote the results section of %s (%s)", *out, rep.elapsed.Round(time.Second))
}

// runHitRatio replays the traces at the default budget and at a tenth of the
// working set, on the chosen caches and the exact-LRU reference.
func runHitRatio(s settings) []hitRun {
	libs := append(slices.Clone(s.libs), hitratio.LRU)
	var runs []hitRun
	for _, cfg := range []hitratio.Config{s.hit, s.hit.WorkingSetShare(10)} {
		cfg.Only = s.traces
		res, err := hitratio.Run(cfg, libs, func(r hitratio.Result) {
			logf("hit ratio %5.1f MiB %-10s %-13s %.4f", float64(cfg.Budget)/(1<<20), r.Cache, r.Trace, r.Ratio())
		})
		if err != nil {
			fatalf("hit ratio: %v", err)
		}
		runs = append(runs, hitRun{cfg, res})
	}
	return runs
}

func quickMemConfig(items int) memory.Config {
	c := memory.DefaultConfig(items)
	c.ForcedGCs = 3
	c.ReadMin, c.ReadMax, c.ReadCycles = 100*time.Millisecond, 3*time.Second, 2
	return c
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func libNames(libs []caches.Lib) []string {
	names := make([]string, len(libs))
	for i, l := range libs {
		names[i] = l.Name
	}
	return names
}

// benchResult is one throughput measurement.
type benchResult struct {
	Cache, Workload string
	Par             int
	NsPerOp         float64
	AllocsPerOp     float64
	HitPerRead      float64 // -1 for write-only mixes
	Keys            int     // distinct keys inserted (the insert workload)
}

// runThroughput runs each cache's benchmarks in a child process, s.count
// rounds of all caches in turn, so that each cache starts from a clean heap
// and a burst of other work on the machine hits one round of every cache
// rather than all rounds of one; it keeps each benchmark's fastest round.
func runThroughput(s settings) []benchResult {
	runs := map[string][]benchResult{}
	var order []string
	for round := range s.count {
		for _, lib := range s.libs {
			var rs []benchResult
			runChildJSON(s, &rs, "-child-throughput", lib.Name, "-benchtime", s.benchtime.String())
			var ins benchResult
			runChildJSON(s, &ins, "-child-insert", lib.Name, "-items", strconv.Itoa(s.insertKeys))
			rs = append(rs, ins)
			for _, r := range rs {
				k := fmt.Sprintf("%s/%s/%d", r.Cache, r.Workload, r.Par)
				if round == 0 {
					order = append(order, k)
				}
				runs[k] = append(runs[k], r)
				logf("throughput round %d %-10s %-6s x%d %8.1f ns/op %5.2f allocs/op",
					round+1, r.Cache, r.Workload, r.Par, r.NsPerOp, r.AllocsPerOp)
			}
		}
	}
	out := make([]benchResult, 0, len(order))
	for _, k := range order {
		out = append(out, fastest(runs[k]))
	}
	return out
}

// childThroughput runs every workload once on a prefilled cache.
func childThroughput(lib caches.Lib) []benchResult {
	ks := throughput.NewKeyset()
	c, err := lib.New(throughput.Budget)
	if err != nil {
		fatalf("%s: %v", lib.Name, err)
	}
	throughput.Prefill(c, ks)
	runtime.GC()
	var out []benchResult
	for _, w := range throughput.Workloads {
		for _, par := range throughput.Parallelisms {
			r := testing.Benchmark(func(b *testing.B) { throughput.Bench(b, c, ks, w, par) })
			if r.N == 0 {
				fatalf("%s %s x%d: benchmark failed", lib.Name, w.Name, par)
			}
			br := benchResult{Cache: lib.Name, Workload: w.Name, Par: par,
				NsPerOp:     float64(r.T.Nanoseconds()) / float64(r.N),
				AllocsPerOp: float64(r.MemAllocs) / float64(r.N), HitPerRead: -1}
			if h, ok := r.Extra["hit/read"]; ok {
				br.HitPerRead = h
			}
			out = append(out, br)
		}
	}
	c.Close()
	return out
}

// childInsertRun runs the insert workload once on a new cache of name.
func childInsertRun(name string, keys int) benchResult {
	lib, err := caches.ByName(name)
	if err != nil {
		fatalf("%v", err)
	}
	if keys <= 0 {
		fatalf("-child-insert needs -items > 0")
	}
	r, err := throughput.Insert(lib, keys)
	if err != nil {
		fatalf("%s: %v", name, err)
	}
	return benchResult{Cache: name, Workload: insertWorkload, Par: 1, Keys: keys,
		NsPerOp: r.NsPerOp, AllocsPerOp: r.AllocsPerOp, HitPerRead: -1}
}

// insertWorkload names the insert workload's results.
const insertWorkload = "insert"

// fastest returns the run with the lowest ns/op. Other work on the machine
// only ever slows a run down, so the fastest round is the best estimate of
// the cache's own speed.
func fastest(rs []benchResult) benchResult {
	return slices.MinFunc(rs, func(a, b benchResult) int { return cmp.Compare(a.NsPerOp, b.NsPerOp) })
}

func runMemory(s settings) []memory.Result {
	var out []memory.Result
	for _, items := range s.memSizes {
		for _, name := range append(libNames(s.libs), memory.None.Name) {
			var r memory.Result
			runChildJSON(s, &r, "-child-memory", name, "-items", strconv.Itoa(items))
			logf("GC cost %-10s %9d items: fill %s, %d heap objects, forced GC %s, GC CPU %.2f%% (%.1f ns/read, %d cycles), %.0f heap B/entry, %.0f RSS B/entry",
				r.Cache, r.Items, r.FillTime.Round(time.Millisecond), r.HeapObjects, r.ForcedGC.Round(10*time.Microsecond),
				100*r.GCCPUFraction, r.GCNanosPerRead, r.GCCycles, r.HeapPerEntry(), r.RSSPerEntry())
			out = append(out, r)
		}
	}
	return out
}

// runChildJSON re-executes this binary with args (and -quick if set) and
// decodes the JSON it prints into v.
func runChildJSON(s settings, v any, args ...string) {
	exe, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	if s.quick {
		args = append(args, "-quick")
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.Output()
	if err != nil {
		fatalf("%s: %v", strings.Join(args, " "), err)
	}
	if err := json.Unmarshal(bytes.TrimSpace(stdout), v); err != nil {
		fatalf("%s: bad child output %q: %v", strings.Join(args, " "), stdout, err)
	}
}

func printJSON(v any) {
	if err := json.NewEncoder(os.Stdout).Encode(v); err != nil {
		fatalf("%v", err)
	}
}

func childMemory(name string, items int, s settings) memory.Result {
	lib := memory.None
	if name != memory.None.Name {
		var err error
		if lib, err = caches.ByName(name); err != nil {
			fatalf("%v", err)
		}
	}
	if items <= 0 {
		fatalf("-child-memory needs -items > 0")
	}
	r, err := memory.Measure(lib, s.mem(items))
	if err != nil {
		fatalf("%s: %v", name, err)
	}
	return r
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "report: "+format+"\n", args...)
	os.Exit(1)
}
