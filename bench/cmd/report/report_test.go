package main

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/emcache/emcache/bench/hitratio"
	"github.com/emcache/emcache/bench/memory"
)

func TestSplice(t *testing.T) {
	doc := "# title\nintro\n" + beginMarker + "\nold\ntable\n" + endMarker + "\nafter\n"
	out, err := splice([]byte(doc), "new\n")
	require.NoError(t, err)
	assert.Equal(t, "# title\nintro\n"+beginMarker+"\nnew\n"+endMarker+"\nafter\n", string(out))

	again, err := splice(out, "new\n")
	require.NoError(t, err)
	assert.Equal(t, string(out), string(again), "splicing is idempotent")

	_, err = splice([]byte("no markers"), "x")
	require.Error(t, err)
	_, err = splice([]byte(endMarker+beginMarker), "x")
	require.Error(t, err)
}

func TestMarkdown(t *testing.T) {
	r := &report{
		machine: "test machine", libs: []string{"emcache", "otter"}, started: time.Unix(0, 0),
		throughput: []benchResult{
			{Cache: "emcache", Workload: "get100", Par: 1, NsPerOp: 100, HitPerRead: 1},
			{Cache: "otter", Workload: "get100", Par: 1, NsPerOp: 50, AllocsPerOp: 0.5, HitPerRead: 0.9},
			{Cache: "emcache", Workload: insertWorkload, Par: 1, Keys: 10_000_000, NsPerOp: 1000, HitPerRead: -1},
			{Cache: "otter", Workload: insertWorkload, Par: 1, Keys: 10_000_000, NsPerOp: 2000, AllocsPerOp: 3, HitPerRead: -1},
		},
		hitRuns: []hitRun{{cfg: hitratio.Quick, results: []hitratio.Result{
			{Cache: "emcache", Trace: "zipf0.9", Requests: 100, Hits: 60, Held: 12_345},
			{Cache: "otter", Trace: "zipf0.9", Requests: 100, Hits: 50, Held: 999},
			{Cache: "fastcache", Trace: "zipf0.9", Requests: 100, Hits: 70, Held: 1_000_000},
			{Cache: "emcache", Trace: "loop", Requests: 100, Hits: 20},
			{Cache: "otter", Trace: "loop", Requests: 100, Hits: 30},
		}}},
		memCfg: memory.DefaultConfig(0),
		memory: []memory.Result{{Cache: "emcache", Items: 1_000_000, HeapObjects: 120, HeapBytes: 2e8,
			RSSBytes: 1.5e8, ForcedGC: 1500 * time.Microsecond, GCCPUFraction: 0.012, GCNanosPerRead: 3.25, GCCycles: 4, Resident: 1},
			{Cache: memory.None.Name, Items: 1_000_000}},
	}
	md := r.markdown()
	assert.Contains(t, md, "| get100 | ")
	assert.Contains(t, md, " 100 | 50 (0.50×) |", "otter at half the ns/op is twice emcache's throughput")
	assert.Contains(t, md, fmt.Sprintf("| insert 10M | %d | 1000 | 2000 (2.00×) |", runtime.GOMAXPROCS(0)))
	assert.Contains(t, md, fmt.Sprintf("| insert 10M | %d | 0 | 3 |", runtime.GOMAXPROCS(0)))
	assert.Contains(t, md, fmt.Sprintf("otter get100 with %d goroutines: 90.0%%", runtime.GOMAXPROCS(0)))
	assert.Contains(t, md, "| zipf0.9 | **60.00** | 50.00 | 70.00 | +10.00 |", "fastcache is over budget, so not the best")
	assert.Contains(t, md, "| loop | 20.00 | **30.00** | – | -10.00 |")
	assert.Contains(t, md, "| entries held after zipf0.9 | 12.3k | 999 | 1M (over budget) | |")
	assert.Contains(t, md, "| emcache | 1M | 120 | 1.5 ms | 1.20% (4) | 3.2 | 200 | 150 | 100.0% |")
	assert.Contains(t, md, "| *no cache* | 1M | 0 | 0 ms | 0.00% (0) | 0.0 | 0 | 0 | – |")
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "| ") {
			assert.True(t, strings.HasSuffix(line, " |"), "table row %q", line)
		}
	}
}

func TestCount(t *testing.T) {
	assert.Equal(t, "987", count(987))
	assert.Equal(t, "12.3k", count(12_345))
	assert.Equal(t, "10M", count(10_000_000))
	assert.Equal(t, "-2.5M", count(-2_500_000))
}
