package emcache

import (
	"bytes"
	"maps"
	"math/bits"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The stats command and its groups (general, settings, items, slabs, conns,
// sizes), and the per-prefix counters of `stats detail`, with memcached's
// names and formats, so that monitoring tools read them unchanged.

// statsCmd runs `stats [group]`. Every group a tool may send ends with END:
// memcached_exporter sends stats, stats settings, stats items and stats
// slabs on one connection and a reply without END stalls it.
func (s *Server) statsCmd(t *[maxTokens][]byte, nt int, out []byte) []byte {
	if nt == 2 {
		return append(s.appendGeneralStats(out), rEnd...)
	}
	switch string(t[1]) {
	case "reset":
		s.cache.ResetStats()
		s.prefixes.reset()
		s.authStats.cmds.Store(0)
		s.authStats.errors.Store(0)
		s.metaCmds.Store(0)
		return append(out, rReset...)
	case "detail":
		if nt < 4 {
			return append(out, rDetailUsage...)
		}
		switch string(t[2]) {
		case "on", "off":
			s.prefixes.on.Store(string(t[2]) == "on")
			return append(out, rOK...)
		case "dump":
			return s.prefixes.appendDump(out)
		}
		return append(out, rDetailUsage...)
	case "settings":
		return append(s.appendSettingsStats(out), rEnd...)
	case "items":
		return append(s.appendItemsStats(out), rEnd...)
	case "slabs":
		return append(s.appendSlabsStats(out), rEnd...)
	case "conns":
		return append(s.appendConnsStats(out), rEnd...)
	case "sizes":
		out = appendStatStr(out, "sizes_status", "disabled")
		return append(out, rEnd...)
	case "sizes_enable":
		out = appendStatStr(out, "sizes_status", "error")
		out = appendStatStr(out, "sizes_error", "not_supported")
		return append(out, rEnd...)
	case "sizes_disable":
		// memcached ends this one reply without END.
		return appendStatStr(out, "sizes_status", "disabled")
	case "extstore":
		// Debian's memcached is built with extstore and answers an empty
		// list when none is configured; there is none here either.
		return append(out, rEnd...)
	case "hotkeys":
		return s.appendHotKeys(out)
	case "bigkeys":
		return s.appendBigKeys(out)
	case "cachedump":
		if s.cfg.DisableDump {
			return append(out, rCachedumpOff...)
		}
		return s.cachedump(t, nt, out)
	}
	return append(out, rError...)
}

// appendStat appends one `STAT name value` line with a number.
func appendStat(out []byte, name string, v uint64) []byte {
	out = append(out, "STAT "...)
	out = append(out, name...)
	out = append(out, ' ')
	out = strconv.AppendUint(out, v, 10)
	return append(out, rCRLF...)
}

// appendStatStr appends one `STAT name value` line with text.
func appendStatStr(out []byte, name, v string) []byte {
	out = append(out, "STAT "...)
	out = append(out, name...)
	out = append(out, ' ')
	out = append(out, v...)
	return append(out, rCRLF...)
}

// appendStatDuration appends a CPU time as memcached prints rusage:
// seconds.microseconds.
func appendStatDuration(out []byte, name string, d time.Duration) []byte {
	us := d.Microseconds()
	out = append(out, "STAT "...)
	out = append(out, name...)
	out = append(out, ' ')
	out = strconv.AppendInt(out, us/1e6, 10)
	out = append(out, '.')
	frac := strconv.AppendInt(nil, us%1e6, 10)
	for range 6 - len(frac) {
		out = append(out, '0')
	}
	out = append(out, frac...)
	return append(out, rCRLF...)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func boolStat(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// appendGeneralStats appends the lines of a bare `stats`, in memcached
// 1.6.18's order. Counters memcached keeps for machinery emcache does not
// have (slab mover, LRU maintainer, extstore, logger) are left out, except
// those memcached_exporter reads, which are reported as the 0 they are.
func (s *Server) appendGeneralStats(out []byte) []byte {
	cs := s.cache.Stats()
	ss := s.Stats()
	now := time.Now()
	user, system := processCPUTime()

	out = appendStat(out, "pid", uint64(os.Getpid()))
	out = appendStat(out, "uptime", uint64(now.Sub(s.started)/time.Second))
	out = appendStat(out, "time", uint64(now.Unix()))
	out = appendStatStr(out, "version", Version)
	// There is no libevent: the event loop is emcache's own, on the Go
	// runtime; say which, in the field tools show as the event library.
	out = appendStatStr(out, "libevent", runtime.Version())
	out = appendStat(out, "pointer_size", strconv.IntSize)
	out = appendStatDuration(out, "rusage_user", user)
	out = appendStatDuration(out, "rusage_system", system)
	out = appendStat(out, "max_connections", uint64(ss.MaxConns))
	out = appendStat(out, "curr_connections", ss.CurrConnections)
	out = appendStat(out, "total_connections", ss.TotalConnections)
	out = appendStat(out, "rejected_connections", ss.RejectedConnections)
	out = appendStat(out, "connection_structures", ss.CurrConnections)
	out = appendStat(out, "reserved_fds", uint64(s.cfg.ReservedFDs))
	out = appendStat(out, "cmd_get", cs.CmdGet)
	out = appendStat(out, "cmd_set", cs.CmdSet)
	out = appendStat(out, "cmd_flush", cs.CmdFlush)
	out = appendStat(out, "cmd_flush_prefix", cs.CmdFlushPrefix)
	out = appendStat(out, "cmd_touch", cs.CmdTouch)
	out = appendStat(out, "cmd_meta", s.metaCmds.Load())
	out = appendStat(out, "get_hits", cs.GetHits)
	out = appendStat(out, "get_misses", cs.GetMisses)
	out = appendStat(out, "get_expired", cs.GetExpired)
	// memcached counts reads that find an item flush_all invalidated but
	// did not yet free; emcache's flush_all frees them at once, so only
	// flush_prefix leaves such items.
	out = appendStat(out, "get_flushed", cs.GetFlushed)
	out = appendStat(out, "delete_misses", cs.DeleteMisses)
	out = appendStat(out, "delete_hits", cs.DeleteHits)
	out = appendStat(out, "incr_misses", cs.IncrMisses)
	out = appendStat(out, "incr_hits", cs.IncrHits)
	out = appendStat(out, "decr_misses", cs.DecrMisses)
	out = appendStat(out, "decr_hits", cs.DecrHits)
	out = appendStat(out, "cas_misses", cs.CasMisses)
	out = appendStat(out, "cas_hits", cs.CasHits)
	out = appendStat(out, "cas_badval", cs.CasBadval)
	out = appendStat(out, "touch_hits", cs.TouchHits)
	out = appendStat(out, "touch_misses", cs.TouchMisses)
	out = appendStat(out, "store_too_large", cs.StoreTooLarge)
	out = appendStat(out, "store_no_memory", cs.StoreNoMemory)
	out = appendStat(out, "auth_cmds", s.authStats.cmds.Load())
	out = appendStat(out, "auth_errors", s.authStats.errors.Load())
	if s.cfg.IdleTimeout > 0 {
		out = appendStat(out, "idle_kicks", ss.IdleKicks)
	}
	out = appendStat(out, "bytes_read", ss.BytesRead)
	out = appendStat(out, "bytes_written", ss.BytesWritten)
	out = appendStat(out, "limit_maxbytes", cs.LimitMaxbytes)
	out = appendStat(out, "accepting_conns", 1)
	out = appendStat(out, "listen_disabled_num", 0)
	out = appendStat(out, "time_in_listen_disabled_us", 0)
	out = appendStat(out, "threads", uint64(ss.Threads))
	out = appendStat(out, "conn_yields", ss.ConnYields)
	slots, indexBytes := s.cache.indexSize()
	// The largest power of two the slots reach: memcached's table of
	// 2^hashpower buckets starts at 16 and doubles as it fills, and so
	// does this, an index starting at 2^16 slots and growing by quarters.
	out = appendStat(out, "hash_power_level", uint64(bits.Len64(slots)-1))
	out = appendStat(out, "hash_bytes", indexBytes)
	// An index grows inside its shard's lock: never seen expanding.
	out = appendStat(out, "hash_is_expanding", 0)
	out = appendStat(out, "lru_crawler_running", boolStat(s.crawler.running.Load()))
	out = appendStat(out, "lru_crawler_starts", s.crawler.starts.Load())
	// Lines are formatted straight into the watchers' buffers: none is
	// ever dropped before that.
	out = appendStat(out, "log_worker_dropped", 0)
	out = appendStat(out, "log_worker_written", s.watch.written.Load())
	out = appendStat(out, "log_watcher_skipped", s.watch.skipped.Load())
	out = appendStat(out, "log_watcher_sent", s.watch.sent.Load())
	out = appendStat(out, "log_watchers", uint64(s.watch.count.Load()))
	out = s.appendTLSStats(out)
	out = appendStat(out, "bytes", cs.Bytes)
	out = appendStat(out, "curr_items", cs.CurrItems)
	out = appendStat(out, "total_items", cs.TotalItems)
	out = appendStat(out, "expired_unfetched", cs.ExpiredUnfetched)
	out = appendStat(out, "evicted_unfetched", cs.EvictedUnfetched)
	out = appendStat(out, "evictions", cs.Evictions)
	out = appendStat(out, "reclaimed", cs.Reclaimed)
	out = appendStat(out, "crawler_reclaimed", cs.CrawlerReclaimed)
	out = appendStat(out, "crawler_items_checked", 0)
	out = appendStat(out, "moves_to_cold", 0)
	out = appendStat(out, "moves_to_warm", 0)
	out = appendStat(out, "moves_within_lru", 0)
	out = appendStat(out, "direct_reclaims", 0)
	return out
}

// appendSettingsStats appends `stats settings`: the configuration in force,
// under memcached's names, with the memcached values of knobs emcache does
// not have only where tools and memcached's own tests read them.
func (s *Server) appendSettingsStats(out []byte) []byte {
	cfg := &s.cfg
	tcpPort, inter := listenSettings(cfg.Addrs, s.Addr())
	domain := cfg.UnixSocket
	if domain == "" {
		domain = "NULL"
	}
	mode := cfg.UnixSocketMode
	if mode == 0 {
		mode = 0o700
	}
	evict := "on"
	if len(s.cache.shards) > 0 && s.cache.shards[0].noEvict {
		evict = "off"
	}
	binding := cfg.Protocol // memcached's prot_text names
	if binding == "auto" || binding == "" {
		binding = "auto-negotiate"
	}

	out = appendStat(out, "maxbytes", uint64(s.cache.MaxBytes()))
	out = appendStat(out, "maxconns", uint64(cfg.MaxConns))
	out = appendStat(out, "tcpport", uint64(tcpPort))
	out = appendStat(out, "udpport", uint64(s.udpPort()))
	out = appendStatStr(out, "inter", inter)
	out = appendStat(out, "verbosity", uint64(max(s.verbosity.Load(), 0)))
	out = appendStat(out, "oldest", 0)
	out = appendStatStr(out, "evictions", evict)
	out = appendStatStr(out, "domain_socket", domain)
	out = appendStatStr(out, "umask", strconv.FormatUint(uint64(mode.Perm()), 8))
	out = appendStat(out, "num_threads", uint64(cfg.Workers))
	out = appendStat(out, "num_threads_per_udp", uint64(s.udpWorkersPerSocket()))
	out = appendStatStr(out, "stat_key_prefix", string(s.prefixes.delim))
	out = appendStatStr(out, "detail_enabled", yesNo(s.prefixes.on.Load()))
	out = appendStat(out, "reqs_per_event", uint64(cfg.ReqsPerEvent))
	out = appendStatStr(out, "cas_enabled", yesNo(!s.cache.noCAS))
	out = appendStat(out, "tcp_backlog", uint64(cfg.Backlog))
	out = appendStatStr(out, "binding_protocol", binding)
	out = appendStatStr(out, "auth_enabled_sasl", yesNo(cfg.SASL))
	out = appendStatStr(out, "auth_enabled_ascii", yesNo(cfg.ASCIIAuth))
	out = appendStat(out, "item_size_max", uint64(s.maxItemSize()))
	out = appendStatStr(out, "maxconns_fast", "yes")
	out = appendStatStr(out, "slab_reassign", "yes")
	out = appendStat(out, "slab_automove", uint64(s.automove.Load()))
	out = appendStatStr(out, "lru_crawler", yesNo(!s.crawler.disabled.Load()))
	out = appendStat(out, "lru_crawler_sleep", uint64(s.crawler.sleep.Load()))
	out = appendStat(out, "lru_crawler_tocrawl", uint64(s.crawler.tocrawl.Load()))
	out = appendStatStr(out, "flush_enabled", yesNo(!cfg.DisableFlush))
	out = appendStatStr(out, "dump_enabled", yesNo(!cfg.DisableDump))
	out = appendStatStr(out, "lru_maintainer_thread", "yes")
	hotPct, warmPct, hotFactor, warmFactor := s.lru.get()
	out = appendStat(out, "hot_lru_pct", hotPct)
	out = appendStat(out, "warm_lru_pct", warmPct)
	out = appendStatStr(out, "hot_max_factor", strconv.FormatFloat(hotFactor, 'f', 2, 64))
	out = appendStatStr(out, "warm_max_factor", strconv.FormatFloat(warmFactor, 'f', 2, 64))
	out = appendStat(out, "idle_timeout", uint64(cfg.IdleTimeout/time.Second))
	out = appendStatStr(out, "track_sizes", "no")
	out = s.appendTLSSettings(out)
	out = appendStatStr(out, "shutdown_command", yesNo(cfg.AllowShutdown))
	out = appendStat(out, "client_flags_size", 4)
	memFile := "(null)" // memcached prints its unset memory_file so
	if s.cache.mf != nil {
		memFile = s.cache.mf.path
	}
	out = appendStatStr(out, "memory_file", memFile)
	// emcache's own, after memcached's, and NULL when off as memcached
	// shows a string setting that is not set.
	metrics := "NULL"
	if a := s.MetricsAddr(); a != nil {
		metrics = a.String()
	}
	out = appendStatStr(out, "metrics_addr", metrics)
	return out
}

// listenSettings derives memcached's tcpport and inter (the -l argument)
// from the configured addresses.
func listenSettings(addrs []string, first net.Addr) (port int, inter string) {
	if ta, ok := first.(*net.TCPAddr); ok {
		port = ta.Port
	}
	var hosts []string
	for _, a := range addrs {
		if h, _, err := net.SplitHostPort(a); err == nil && h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return port, "NULL"
	}
	return port, strings.Join(hosts, ",")
}

// appendItemsStats appends `stats items`. emcache has no slab classes: all
// items are reported as one class, 1, and only while there are items, as
// memcached lists only classes holding some.
func (s *Server) appendItemsStats(out []byte) []byte {
	cs := s.cache.Stats()
	if cs.CurrItems == 0 {
		return out
	}
	item := func(name string, v uint64) {
		out = appendStat(out, "items:1:"+name, v)
	}
	item("number", cs.CurrItems)
	item("number_hot", 0)
	item("number_warm", 0)
	item("number_cold", cs.CurrItems)
	item("age_hot", 0)
	item("age_warm", 0)
	item("age", 0)
	item("mem_requested", cs.Bytes)
	item("evicted", cs.Evictions)
	item("evicted_nonzero", 0)
	item("evicted_time", 0)
	item("outofmemory", cs.StoreNoMemory)
	item("tailrepairs", 0)
	item("reclaimed", cs.Reclaimed)
	item("expired_unfetched", cs.ExpiredUnfetched)
	item("evicted_unfetched", cs.EvictedUnfetched)
	item("evicted_active", 0)
	item("crawler_reclaimed", cs.CrawlerReclaimed)
	item("crawler_items_checked", 0)
	item("lrutail_reflocked", 0)
	item("moves_to_cold", 0)
	item("moves_to_warm", 0)
	item("moves_within_lru", 0)
	item("direct_reclaims", 0)
	item("hits_to_hot", 0)
	item("hits_to_warm", 0)
	item("hits_to_cold", cs.GetHits)
	item("hits_to_temp", 0)
	return out
}

// appendSlabsStats appends `stats slabs` with the same single class as
// `stats items`: one chunk per item, sized to the largest item.
func (s *Server) appendSlabsStats(out []byte) []byte {
	cs := s.cache.Stats()
	active := uint64(0)
	// memcached keeps a class's pages once it held items.
	if cs.CurrItems > 0 || cs.TotalItems > 0 {
		active = 1
		slab := func(name string, v uint64) {
			out = appendStat(out, "1:"+name, v)
		}
		slab("chunk_size", uint64(s.maxItemSize()))
		slab("chunks_per_page", 1)
		slab("total_pages", cs.CurrItems)
		slab("total_chunks", cs.CurrItems)
		slab("used_chunks", cs.CurrItems)
		slab("free_chunks", 0)
		slab("free_chunks_end", 0)
		slab("get_hits", cs.GetHits)
		slab("cmd_set", cs.CmdSet)
		slab("delete_hits", cs.DeleteHits)
		slab("incr_hits", cs.IncrHits)
		slab("decr_hits", cs.DecrHits)
		slab("cas_hits", cs.CasHits)
		slab("cas_badval", cs.CasBadval)
		slab("touch_hits", cs.TouchHits)
	}
	out = appendStat(out, "active_slabs", active)
	out = appendStat(out, "total_malloced", cs.Bytes)
	return out
}

// appendConnsStats appends `stats conns`: per open connection its address,
// the address it connected to, its state and idle time.
func (s *Server) appendConnsStats(out []byte) []byte {
	for _, ci := range s.connInfos() {
		prefix := strconv.Itoa(ci.fd) + ":"
		if ci.udp {
			out = appendStatStr(out, prefix+"UDP", "UDP")
		}
		out = appendStatStr(out, prefix+"addr", ci.addr)
		if ci.listenAddr != "" {
			out = appendStatStr(out, prefix+"listen_addr", ci.listenAddr)
		}
		out = appendStatStr(out, prefix+"state", ci.state)
		out = appendStat(out, prefix+"secs_since_last_cmd", uint64(max(ci.idle, 0)/time.Second))
	}
	return out
}

// maxPrefixes bounds the prefixes `stats detail` tracks, so that keys with
// ever new prefixes cannot grow the table without end; later prefixes go
// uncounted.
const maxPrefixes = 1 << 14

const (
	prefixGet prefixOp = iota
	prefixSet
	prefixDel
)

// prefixStats are memcached's per-prefix counters (`stats detail on`): for
// each key prefix before the delimiter (-D, default ':'), its gets, hits,
// sets and deletes. Keys without the delimiter are not counted.
type prefixStats struct {
	on    atomic.Bool
	delim byte
	mu    sync.Mutex
	m     map[string]*prefixCounts
}

type prefixCounts struct{ get, hit, set, del uint64 }

type prefixOp uint8

// record counts op on key's prefix while detail is on.
func (p *prefixStats) record(key []byte, op prefixOp, hit bool) {
	if !p.on.Load() {
		return
	}
	i := bytes.IndexByte(key, p.delim)
	if i < 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.m[string(key[:i])]
	if c == nil {
		if len(p.m) >= maxPrefixes {
			return
		}
		if p.m == nil {
			p.m = make(map[string]*prefixCounts)
		}
		c = new(prefixCounts)
		p.m[string(key[:i])] = c
	}
	switch op {
	case prefixGet:
		c.get++
		if hit {
			c.hit++
		}
	case prefixSet:
		c.set++
	case prefixDel:
		c.del++
	}
}

// appendDump appends memcached's `stats detail dump`, prefixes in order,
// ending with END.
func (p *prefixStats) appendDump(out []byte) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, prefix := range slices.Sorted(maps.Keys(p.m)) {
		c := p.m[prefix]
		out = append(out, "PREFIX "...)
		out = append(out, prefix...)
		out = append(out, " get "...)
		out = strconv.AppendUint(out, c.get, 10)
		out = append(out, " hit "...)
		out = strconv.AppendUint(out, c.hit, 10)
		out = append(out, " set "...)
		out = strconv.AppendUint(out, c.set, 10)
		out = append(out, " del "...)
		out = strconv.AppendUint(out, c.del, 10)
		out = append(out, rCRLF...)
	}
	return append(out, rEnd...)
}

func (p *prefixStats) reset() {
	p.mu.Lock()
	clear(p.m)
	p.mu.Unlock()
}
