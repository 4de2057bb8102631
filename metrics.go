package emcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The metrics endpoint, in Prometheus' text format. Its memcached_* families
// are memcached_exporter's (v0.15.0): the same names, types and labels,
// derived as the exporter derives them from the text of stats, stats
// settings, stats items and stats slabs, which the endpoint generates as
// the protocol does, so that dashboards built on the exporter read the same
// numbers without one. The emcache_* families are what only the server
// knows: latency per command, load per worker, memory beyond items.

// ErrMetricsAddr: ServerConfig.MetricsAddr is not host:port, or the server
// cannot listen there; the error says which.
const ErrMetricsAddr = Error("emcache: cannot serve metrics on ServerConfig.MetricsAddr")

// metricsContentType is the text exposition format's, version 0.0.4.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// MetricsHandler returns a handler that answers each request with the
// server's metrics in Prometheus' text exposition format, for a program
// that embeds the cache to mount on its own HTTP server;
// [ServerConfig.MetricsAddr] serves it at /metrics on an address of its
// own. A scrape reads what the stats commands report, holding each shard's
// lock only as briefly as `stats` does.
//
// The memcached_* families are memcached_exporter's, so that its
// dashboards work unchanged: memcached_up, memcached_version{version},
// memcached_commands_total{command,status}, memcached_slab_*{slab} and the
// rest, with their values computed as the exporter computes them. Beside
// them:
//   - emcache_command_duration_seconds{command}, a histogram of the time
//     from the wake-up that read a request to the write of its reply (see
//     [Server.CommandLatencies]);
//   - emcache_worker_connections{worker} and
//     emcache_worker_requests_total{worker}, each worker's open connections
//     and requests served (see [WorkerStats]);
//   - emcache_memory_bytes{area}, memory the process uses beyond the bytes
//     of items: "arena" (the item memory mapped, full or not), "index" (the
//     shards' hash indexes), "buffers" (the connection buffers the workers
//     keep for reuse) and "go_heap" (the Go heap's spans in use; on systems
//     without mmap the arena and index are part of it).
//
// Keys never appear in labels. Once the server has stopped, the handler
// reports memcached_up 0 and nothing else, as the exporter does for a
// memcached it cannot reach.
func (s *Server) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", metricsContentType)
		w.Write(s.appendMetrics(nil))
	})
}

// MetricsAddr returns the address the metrics endpoint listens on, or nil
// when ServerConfig.MetricsAddr is empty.
func (s *Server) MetricsAddr() net.Addr {
	if s.metrics == nil {
		return nil
	}
	return s.metrics.ln.Addr()
}

// appendMetrics appends a whole scrape.
func (s *Server) appendMetrics(out []byte) []byte {
	e := expo{out: out}
	select {
	case <-s.done:
		e.family("memcached_up", gauge, "Whether the server answered.")
		e.sample("", 0)
		return e.out
	default:
	}
	// The exporter reads stats and stats slabs into one map of
	// server-wide values, which is how total_malloced, a stats slabs line,
	// becomes memcached_malloced_bytes.
	general := map[string]string{}
	slabs := map[int]map[string]string{}
	items := map[int]map[string]string{}
	settings := map[string]string{}
	readStats(s.appendGeneralStats(nil), general, nil)
	readStats(s.appendSlabsStats(nil), general, slabs)
	readStats(s.appendItemsStats(nil), nil, items)
	readStats(s.appendSettingsStats(nil), settings, nil)

	e.family("memcached_up", gauge, "Whether the server answered.")
	e.sample("", 1)
	e.family("memcached_version", gauge, "The server's version, in its label.")
	e.sample("", 1, "version", general["version"])
	e.statFamilies(generalFamilies[:], general)
	appendCommands(&e, general)
	e.statFamilies(settingsFamilies[:], settings)
	// The exporter reads the crawler's settings only while it is enabled.
	if settings["lru_crawler"] == "yes" {
		e.statFamilies(crawlerFamilies[:], settings)
	}
	e.classFamilies(itemFamilies[:], items)
	appendLRUHits(&e, items)
	e.classFamilies(slabFamilies[:], slabs)
	appendSlabCommands(&e, slabs)
	s.appendServerMetrics(&e)
	return e.out
}

// readStats files the `STAT name value` lines of text: server-wide names
// in global, "<class>:<name>" and "items:<class>:<name>" under their class
// in classes.
func readStats(text []byte, global map[string]string, classes map[int]map[string]string) {
	for line := range strings.SplitSeq(strings.TrimSuffix(string(text), "\r\n"), "\r\n") {
		name, value, ok := strings.Cut(strings.TrimPrefix(line, "STAT "), " ")
		if !ok {
			continue
		}
		name = strings.TrimPrefix(name, "items:")
		cls, field, perClass := strings.Cut(name, ":")
		if !perClass {
			if global != nil {
				global[name] = value
			}
			continue
		}
		id, err := strconv.Atoi(cls)
		if err != nil || classes == nil {
			continue
		}
		if classes[id] == nil {
			classes[id] = map[string]string{}
		}
		classes[id][field] = value
	}
}

// statValue parses a stats value as the exporter does: a number (rusage's
// seconds.microseconds included), or yes and no as 1 and 0.
func statValue(m map[string]string, name string) (float64, bool) {
	v, ok := m[name]
	switch {
	case !ok:
		return 0, false
	case v == "yes":
		return 1, true
	case v == "no":
		return 0, true
	}
	f, err := strconv.ParseFloat(v, 64)
	return f, err == nil
}

// Metric types, as # TYPE names them.
const (
	counter   = "counter"
	gauge     = "gauge"
	histogram = "histogram"
)

// statFamily is a family with one sample (per class, for the per-class
// ones) read from the stats line named stat.
type statFamily struct {
	name, typ, stat, help string
}

var generalFamilies = [...]statFamily{
	{"memcached_uptime_seconds", counter, "uptime", "Seconds since the server started."},
	{"memcached_time_seconds", gauge, "time", "The server's Unix time."},
	{"memcached_process_user_cpu_seconds_total", counter, "rusage_user", "User CPU time of the server process."},
	{"memcached_process_system_cpu_seconds_total", counter, "rusage_system", "System CPU time of the server process."},
	{"memcached_read_bytes_total", counter, "bytes_read", "Bytes read from clients."},
	{"memcached_written_bytes_total", counter, "bytes_written", "Bytes written to clients."},
	{"memcached_current_connections", gauge, "curr_connections", "Open client connections."},
	{"memcached_connections_total", counter, "total_connections", "Connections accepted."},
	{"memcached_connections_rejected_total", counter, "rejected_connections", "Connections refused for the connection limit."},
	{"memcached_connections_yielded_total", counter, "conn_yields", "Times a connection gave way to others after its requests per event."},
	{"memcached_connections_listener_disabled_total", counter, "listen_disabled_num", "Times the listener stopped accepting at the connection limit."},
	{"memcached_accepting_connections", gauge, "accepting_conns", "Whether the server accepts connections."},
	{"memcached_current_bytes", gauge, "bytes", "Bytes the items take."},
	{"memcached_limit_bytes", gauge, "limit_maxbytes", "The item memory limit."},
	{"memcached_malloced_bytes", gauge, "total_malloced", "Item memory in use, as stats slabs counts it."},
	{"memcached_current_items", gauge, "curr_items", "Items stored."},
	{"memcached_items_total", counter, "total_items", "Items stored since start."},
	{"memcached_items_evicted_total", counter, "evictions", "Live items evicted to make room."},
	{"memcached_items_reclaimed_total", counter, "reclaimed", "Stores that reused an expired item's memory."},
	{"memcached_item_too_large_total", counter, "store_too_large", "Stores refused for exceeding the item size limit."},
	{"memcached_item_no_memory_total", counter, "store_no_memory", "Stores refused for want of memory."},
	{"memcached_direct_reclaims_total", counter, "direct_reclaims", "Times a worker reclaimed memory itself."},
	{"memcached_lru_crawler_starts_total", counter, "lru_crawler_starts", "Crawls started."},
	{"memcached_lru_crawler_reclaimed_total", counter, "crawler_reclaimed", "Expired items the crawler freed."},
	{"memcached_lru_crawler_items_checked_total", counter, "crawler_items_checked", "Items the crawler examined."},
	{"memcached_lru_crawler_moves_to_cold_total", counter, "moves_to_cold", "Items moved to the cold LRU."},
	{"memcached_lru_crawler_moves_to_warm_total", counter, "moves_to_warm", "Items moved to the warm LRU."},
	{"memcached_lru_crawler_moves_within_lru_total", counter, "moves_within_lru", "Items bumped within the hot or warm LRU."},
}

var settingsFamilies = [...]statFamily{
	{"memcached_max_connections", gauge, "maxconns", "The connection limit."},
}

var crawlerFamilies = [...]statFamily{
	{"memcached_lru_crawler_enabled", gauge, "lru_crawler", "Whether lru_crawler is enabled."},
	{"memcached_lru_crawler_sleep", gauge, "lru_crawler_sleep", "Microseconds the crawler sleeps between items."},
	{"memcached_lru_crawler_to_crawl", gauge, "lru_crawler_tocrawl", "Items the crawler checks per class per run; 0 for all."},
	{"memcached_lru_crawler_maintainer_thread", gauge, "lru_maintainer_thread", "Whether the LRU is maintained in the background."},
	{"memcached_lru_crawler_hot_percent", gauge, "hot_lru_pct", "Percent of a class's memory for the hot LRU."},
	{"memcached_lru_crawler_warm_percent", gauge, "warm_lru_pct", "Percent of a class's memory for the warm LRU."},
	{"memcached_lru_crawler_hot_max_factor", gauge, "hot_max_factor", "Hot LRU idle age limit, as a factor of the cold LRU's age."},
	{"memcached_lru_crawler_warm_max_factor", gauge, "warm_max_factor", "Warm LRU idle age limit, as a factor of the cold LRU's age."},
}

var itemFamilies = [...]statFamily{
	{"memcached_slab_current_items", gauge, "number", "Items in the class."},
	{"memcached_slab_items_age_seconds", gauge, "age", "Age of the class's oldest item."},
	{"memcached_slab_hot_items", gauge, "number_hot", "Items in the class's hot LRU."},
	{"memcached_slab_warm_items", gauge, "number_warm", "Items in the class's warm LRU."},
	{"memcached_slab_cold_items", gauge, "number_cold", "Items in the class's cold LRU."},
	{"memcached_slab_temporary_items", gauge, "number_temp", "Items in the class's temporary LRU."},
	{"memcached_slab_hot_age_seconds", gauge, "age_hot", "Age of the oldest item in the class's hot LRU."},
	{"memcached_slab_warm_age_seconds", gauge, "age_warm", "Age of the oldest item in the class's warm LRU."},
	{"memcached_slab_mem_requested_bytes", counter, "mem_requested", "Bytes the class's items take."},
	{"memcached_slab_items_crawler_reclaimed_total", counter, "crawler_reclaimed", "Expired items of the class the crawler freed."},
	{"memcached_slab_items_evicted_total", counter, "evicted", "Live items of the class evicted."},
	{"memcached_slab_items_evicted_nonzero_total", counter, "evicted_nonzero", "Live items with an expiry time evicted from the class."},
	{"memcached_slab_items_evicted_time_seconds", counter, "evicted_time", "Idle time of the class's last evicted item."},
	{"memcached_slab_items_evicted_unfetched_total", counter, "evicted_unfetched", "Items of the class evicted without having been read."},
	{"memcached_slab_items_expired_unfetched_total", counter, "expired_unfetched", "Items of the class that expired without having been read."},
	{"memcached_slab_items_outofmemory_total", counter, "outofmemory", "Stores in the class refused for want of memory."},
	{"memcached_slab_items_reclaimed_total", counter, "reclaimed", "Stores in the class that reused an expired item's memory."},
	{"memcached_slab_items_tailrepairs_total", counter, "tailrepairs", "Repairs of the class's LRU tail."},
	{"memcached_slab_items_moves_to_cold", counter, "moves_to_cold", "Items of the class moved to the cold LRU."},
	{"memcached_slab_items_moves_to_warm", counter, "moves_to_warm", "Items of the class moved to the warm LRU."},
	{"memcached_slab_items_moves_within_lru", counter, "moves_within_lru", "Items of the class bumped within the hot or warm LRU."},
}

var slabFamilies = [...]statFamily{
	{"memcached_slab_chunk_size_bytes", gauge, "chunk_size", "Bytes of each of the class's chunks."},
	{"memcached_slab_chunks_per_page", gauge, "chunks_per_page", "Chunks in each of the class's pages."},
	{"memcached_slab_current_pages", gauge, "total_pages", "Pages of the class."},
	{"memcached_slab_current_chunks", gauge, "total_chunks", "Chunks of the class."},
	{"memcached_slab_chunks_used", gauge, "used_chunks", "Chunks of the class holding an item."},
	{"memcached_slab_chunks_free", gauge, "free_chunks", "Chunks of the class holding none."},
	{"memcached_slab_chunks_free_end", gauge, "free_chunks_end", "Free chunks at the end of the class's last page."},
}

// statFamilies appends each family whose stat is in m.
func (e *expo) statFamilies(fs []statFamily, m map[string]string) {
	for _, f := range fs {
		if v, ok := statValue(m, f.stat); ok {
			e.family(f.name, f.typ, f.help)
			e.sample("", v)
		}
	}
}

// classFamilies appends each family with one sample per class that has
// its stat, labelled with the class.
func (e *expo) classFamilies(fs []statFamily, classes map[int]map[string]string) {
	ids := sortedClasses(classes)
	for _, f := range fs {
		e.family(f.name, f.typ, f.help)
		for _, id := range ids {
			if v, ok := statValue(classes[id], f.stat); ok {
				e.sample("", v, "slab", strconv.Itoa(id))
			}
		}
	}
}

func sortedClasses(classes map[int]map[string]string) []int {
	ids := make([]int, 0, len(classes))
	for id := range classes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// hitMissCommands are the commands stats counts as <cmd>_hits and
// <cmd>_misses.
var hitMissCommands = [...]string{"get", "delete", "incr", "decr", "cas", "touch"}

// appendCommands appends memcached_commands_total. Sets are cmd_set less
// the cas commands, which memcached counts in cmd_set too.
func appendCommands(e *expo, m map[string]string) {
	e.family("memcached_commands_total", counter, "Commands by command and outcome.")
	for _, cmd := range hitMissCommands {
		if v, ok := statValue(m, cmd+"_hits"); ok {
			e.sample("", v, "command", cmd, "status", "hit")
		}
		if v, ok := statValue(m, cmd+"_misses"); ok {
			e.sample("", v, "command", cmd, "status", "miss")
		}
	}
	if v, ok := statValue(m, "cas_badval"); ok {
		e.sample("", v, "command", "cas", "status", "badval")
	}
	if v, ok := statValue(m, "cmd_flush"); ok {
		e.sample("", v, "command", "flush", "status", "hit")
	}
	if v, ok := statValue(m, "cmd_flush_prefix"); ok {
		e.sample("", v, "command", "flush_prefix", "status", "hit")
	}
	if v, ok := minusStats(m, "cmd_set", "cas_misses", "cas_hits", "cas_badval"); ok {
		e.sample("", v, "command", "set", "status", "hit")
	}
}

// appendSlabCommands appends memcached_slab_commands_total, whose sets are
// the class's cmd_set less its cas hits and bad values.
func appendSlabCommands(e *expo, classes map[int]map[string]string) {
	e.family("memcached_slab_commands_total", counter, "Commands on the class's items by command and outcome.")
	for _, id := range sortedClasses(classes) {
		m, slab := classes[id], strconv.Itoa(id)
		for _, cmd := range hitMissCommands {
			if v, ok := statValue(m, cmd+"_hits"); ok {
				e.sample("", v, "command", cmd, "slab", slab, "status", "hit")
			}
		}
		if v, ok := statValue(m, "cas_badval"); ok {
			e.sample("", v, "command", "cas", "slab", slab, "status", "badval")
		}
		if v, ok := minusStats(m, "cmd_set", "cas_hits", "cas_badval"); ok {
			e.sample("", v, "command", "set", "slab", slab, "status", "hit")
		}
	}
}

// minusStats is stat from less the stats subtracted, when all are there.
func minusStats(m map[string]string, from string, subtracted ...string) (float64, bool) {
	v, ok := statValue(m, from)
	for _, name := range subtracted {
		w, found := statValue(m, name)
		v, ok = v-w, ok && found
	}
	return v, ok
}

// lruNames are the lru labels of memcached_slab_lru_hits_total, by the
// stats items line each is read from.
var lruNames = [...][2]string{
	{"hits_to_hot", "hot"}, {"hits_to_warm", "warm"}, {"hits_to_cold", "cold"}, {"hits_to_temp", "temporary"},
}

func appendLRUHits(e *expo, classes map[int]map[string]string) {
	e.family("memcached_slab_lru_hits_total", counter, "Hits on the class's items by the LRU they were in.")
	for _, id := range sortedClasses(classes) {
		for _, l := range lruNames {
			if v, ok := statValue(classes[id], l[0]); ok {
				e.sample("", v, "lru", l[1], "slab", strconv.Itoa(id))
			}
		}
	}
}

// appendServerMetrics appends the emcache_* families.
func (s *Server) appendServerMetrics(e *expo) {
	e.family("emcache_command_duration_seconds", histogram,
		"Time from the wake-up that read a request to the write of its reply, by command.")
	for _, cl := range s.CommandLatencies() {
		var n uint64
		for i, bound := range cl.Bounds {
			n += cl.Counts[i]
			e.sample("_bucket", float64(n), "command", cl.Command, "le", string(appendFloat(nil, bound.Seconds())))
		}
		e.sample("_bucket", float64(cl.Count), "command", cl.Command, "le", "+Inf")
		e.sample("_sum", cl.Sum.Seconds(), "command", cl.Command)
		e.sample("_count", float64(cl.Count), "command", cl.Command)
	}

	ws := s.Stats().Workers
	e.family("emcache_worker_connections", gauge, "Open client connections by worker.")
	for i, w := range ws {
		e.sample("", float64(w.CurrConnections), "worker", strconv.Itoa(i))
	}
	e.family("emcache_worker_requests_total", counter, "Requests served by worker.")
	for i, w := range ws {
		e.sample("", float64(w.Requests), "worker", strconv.Itoa(i))
	}

	_, index := s.cache.indexSize()
	e.family("emcache_memory_bytes", gauge, "Memory the process uses beyond the items' bytes, by area.")
	e.sample("", float64(s.cache.arenaSize()), "area", "arena")
	e.sample("", float64(index), "area", "index")
	e.sample("", float64(s.pooledBufBytes()), "area", "buffers")
	e.sample("", float64(goHeapBytes()), "area", "go_heap")
}

// goHeapMetrics add up to the Go heap's spans in use: live and not yet
// swept objects, and the free room inside their spans.
var goHeapMetrics = [...]string{"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes"}

func goHeapBytes() uint64 {
	var samples [len(goHeapMetrics)]metrics.Sample
	for i, name := range goHeapMetrics {
		samples[i].Name = name
	}
	metrics.Read(samples[:])
	var n uint64
	for _, sm := range samples {
		if sm.Value.Kind() == metrics.KindUint64 {
			n += sm.Value.Uint64()
		}
	}
	return n
}

// expo writes the text exposition format: a family's # HELP and # TYPE
// lines go out with its first sample, so a family without samples (a
// command never run, a stat absent) leaves no trace, as in the exporter's
// output.
type expo struct {
	out             []byte
	name, typ, help string
	started         bool
}

// family starts the family name; its samples follow.
func (e *expo) family(name, typ, help string) {
	e.name, e.typ, e.help, e.started = name, typ, help, false
}

// sample appends a sample of the current family, its name followed by
// suffix (a histogram's _bucket, _sum, _count), labels as name, value
// pairs. Callers give labels sorted by name, as the exporter's client
// library writes them, so that the same series read the same.
func (e *expo) sample(suffix string, v float64, labels ...string) {
	if !e.started {
		e.started = true
		e.out = append(e.out, "# HELP "...)
		e.out = append(e.out, e.name...)
		e.out = append(e.out, ' ')
		e.out = appendEscaped(e.out, e.help, false)
		e.out = append(e.out, "\n# TYPE "...)
		e.out = append(e.out, e.name...)
		e.out = append(e.out, ' ')
		e.out = append(e.out, e.typ...)
		e.out = append(e.out, '\n')
	}
	e.out = append(e.out, e.name...)
	e.out = append(e.out, suffix...)
	for i := 0; i+1 < len(labels); i += 2 {
		if i == 0 {
			e.out = append(e.out, '{')
		} else {
			e.out = append(e.out, ',')
		}
		e.out = append(e.out, labels[i]...)
		e.out = append(e.out, `="`...)
		e.out = appendEscaped(e.out, labels[i+1], true)
		e.out = append(e.out, '"')
	}
	if len(labels) > 0 {
		e.out = append(e.out, '}')
	}
	e.out = append(e.out, ' ')
	e.out = appendFloat(e.out, v)
	e.out = append(e.out, '\n')
}

// appendEscaped escapes as the format requires: backslash and newline in
// help text, and double quotes too in label values.
func appendEscaped(out []byte, s string, quote bool) []byte {
	for i := range len(s) {
		switch c := s[i]; {
		case c == '\\':
			out = append(out, `\\`...)
		case c == '\n':
			out = append(out, `\n`...)
		case c == '"' && quote:
			out = append(out, `\"`...)
		default:
			out = append(out, c)
		}
	}
	return out
}

// appendFloat formats a value as Go's parser, which Prometheus uses, reads
// it back exactly.
func appendFloat(out []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(out, "+Inf"...)
	case math.IsInf(v, -1):
		return append(out, "-Inf"...)
	case math.IsNaN(v):
		return append(out, "NaN"...)
	}
	return strconv.AppendFloat(out, v, 'g', -1, 64)
}

// metricsServer serves MetricsHandler at /metrics on MetricsAddr, on its own
// goroutines: scrapes never run on a worker.
type metricsServer struct {
	ln   net.Listener
	http *http.Server
	done chan struct{} // closed once Serve has returned
}

// metricsStopGrace bounds how long a stopping server waits for scrapes in
// progress before it closes their connections.
const metricsStopGrace = time.Second

// metricsReadHeaderTimeout keeps a client that never finishes its request
// from holding a connection.
const metricsReadHeaderTimeout = 10 * time.Second

// checkMetricsAddr checks MetricsAddr before Serve listens anywhere.
func checkMetricsAddr(addr string) error {
	if addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%w: %q is not host:port: %w", ErrMetricsAddr, addr, err)
	}
	return nil
}

// listenMetrics listens on MetricsAddr, when set; serveMetrics then serves.
func (s *Server) listenMetrics() error {
	addr := s.cfg.MetricsAddr
	if addr == "" {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.MetricsHandler())
	s.metrics = &metricsServer{
		ln: ln,
		http: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: metricsReadHeaderTimeout,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		},
		done: make(chan struct{}),
	}
	return nil
}

func (s *Server) serveMetrics() {
	m := s.metrics
	if m == nil {
		return
	}
	go func() {
		defer close(m.done)
		if err := m.http.Serve(m.ln); !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics endpoint stopped", "addr", m.ln.Addr().String(), "err", err)
		}
	}()
}

// closeMetrics closes the listener of a metrics endpoint Serve did not get
// to start.
func (s *Server) closeMetrics() {
	if s.metrics != nil {
		s.metrics.ln.Close()
	}
}

// stopMetrics lets scrapes in progress finish, briefly, then closes the
// endpoint and waits for it to be gone.
func (s *Server) stopMetrics() {
	m := s.metrics
	if m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), metricsStopGrace)
	defer cancel()
	if m.http.Shutdown(ctx) != nil {
		m.http.Close()
	}
	<-m.done
}
