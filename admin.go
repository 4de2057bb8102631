package emcache

import (
	"bytes"
	"strconv"
	"sync"
	"sync/atomic"
)

// memcached's introspection and tuning commands, and the item walks behind
// them: `lru_crawler metadump` (streamed, any size), `stats cachedump`
// (bounded, like memcached's 2 MB) and `lru_crawler crawl` (an immediate
// pass of the reclaimer). emcache has no slab classes; every item is in class 1, as
// `stats items` and `stats slabs` report. The slab and LRU tuning commands
// (`slabs automove`, `lru tune|mode|temp_ttl`) are checked as memcached
// checks them and accepted, like the tuning options of -o: there is no
// slab mover or segmented LRU for them to tune.

// dumpEntry is what the dumps show of an item. key is valid only during the
// callback that receives it.
type dumpEntry struct {
	key     []byte
	exp     uint32 // absolute Unix second; 0 = never
	access  uint32 // Unix second of the last access
	cas     uint64
	fetched bool
	size    int // the record's bytes, as me's size=
	valLen  int
}

// dumpShard calls fn for the live items of shard i from slot *next on,
// without touching them, and reports whether it reached the shard's end:
// fn returning false stops the walk after that item, and a call visits at
// most holdSlots slots, with *next where the next call resumes. The lock is
// held only during a call: items that move between calls (the index shifts
// entries as others come and go) may be missed or shown twice, as
// memcached's crawler may while its LRU changes.
func (c *Cache) dumpShard(i int, next *uint64, fn func(*dumpEntry) bool) bool {
	s := c.shards[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed() {
		return true
	}
	now := c.clock()
	var e dumpEntry
	for end := min(*next+holdSlots, s.nslots); *next < end; *next++ {
		slot := s.slots[*next]
		if slot == 0 {
			continue
		}
		off := s.slotOff(slot)
		exp := s.expiry(off)
		if expired(exp, now) || len(s.dead) != 0 && s.prefixDead(off) {
			continue
		}
		vl, _ := s.layout(off)
		e = dumpEntry{
			key:     s.key(off),
			exp:     exp,
			access:  now - s.idle(off, now),
			cas:     c.casOut(s.cas(off)),
			fetched: s.bits(off)&bitFetched != 0,
			size:    int(s.size(off)),
			valLen:  int(vl),
		}
		if !fn(&e) {
			*next++
			return false
		}
	}
	return *next >= s.nslots
}

// holdSlots bounds the index slots a dump or an explicit crawl visits per
// hold of a shard's lock, and so how long other requests wait for it.
const holdSlots = 4096

// indexSize returns the index slots of all shards and the bytes of their
// indexes (ghost tables included): memcached's hash table figures.
func (c *Cache) indexSize() (slots, size uint64) {
	for _, s := range c.shards {
		s.mu.Lock()
		slots += s.nslots
		size += uint64(len(s.slots)*4 + len(s.ghost)*2)
		s.mu.Unlock()
	}
	return slots, size
}

// arenaSize returns the bytes of the shards' arenas: the item memory
// mapped, which items fill or not.
func (c *Cache) arenaSize() (size uint64) {
	for _, s := range c.shards {
		s.mu.Lock()
		size += uint64(len(s.buf))
		s.mu.Unlock()
	}
	return size
}

// reclaimAll runs the reclaimer over every shard's whole index at once,
// holdSlots slots per hold of the lock.
func (c *Cache) reclaimAll() {
	for _, s := range c.shards {
		s.mu.Lock()
		n := len(s.slots)
		s.mu.Unlock()
		for done := 0; done < n; done += holdSlots {
			s.mu.Lock()
			if s.closed() {
				s.mu.Unlock()
				return
			}
			s.crawl(min(holdSlots, n-done), c.clock())
			s.unlock()
		}
	}
}

// crawlerState is the server's side of `lru_crawler`: whether it is
// enabled (memcached's default, and what `stats settings` shows), the
// explicit passes started and running, and the pacing last asked for,
// which the reclaimer does not need but `stats settings` shows, as
// memcached does, so that dashboards see what was set.
type crawlerState struct {
	disabled atomic.Bool
	running  atomic.Bool
	starts   atomic.Uint64
	sleep    atomic.Uint32 // lru_crawler_sleep, microseconds
	tocrawl  atomic.Uint32 // lru_crawler_tocrawl, 0 for no limit
}

// memcached 1.6.18's defaults for the settings `lru_crawler` and `lru tune`
// change.
const (
	defaultCrawlerSleep = 100
	defaultHotLRUPct    = 20
	defaultWarmLRUPct   = 40
	defaultHotFactor    = 0.2
	defaultWarmFactor   = 2.0
)

// lruTuning is what `lru tune` last set. There is no segmented LRU for it
// to tune; it is kept, as `slabs automove` is, for `stats settings`.
type lruTuning struct {
	mu                    sync.Mutex
	hotPct, warmPct       uint64
	hotFactor, warmFactor float64
}

func (l *lruTuning) set(hotPct, warmPct uint64, hotFactor, warmFactor float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hotPct, l.warmPct, l.hotFactor, l.warmFactor = hotPct, warmPct, hotFactor, warmFactor
}

func (l *lruTuning) get() (hotPct, warmPct uint64, hotFactor, warmFactor float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hotPct, l.warmPct, l.hotFactor, l.warmFactor
}

const (
	rCrawlerBusy     = "BUSY currently processing crawler request\r\n"
	rBadClass        = "BADCLASS invalid class id\r\n"
	rBadCommandLine  = "CLIENT_ERROR bad command line format\r\n"
	rCrawlerSleep    = "CLIENT_ERROR sleep must be one second or less\r\n"
	rMetadumpPipe    = "ERROR cannot pipeline other commands before metadump\r\n"
	rMetadumpOff     = "ERROR metadump not allowed\r\n"
	rCachedumpBadID  = "CLIENT_ERROR Illegal slab id\r\n"
	rReassignSame    = "SAME src and dst class are identical\r\n"
	rReassignBadCls  = "BADCLASS invalid src or dst class id\r\n"
	rReassignNoSpare = "NOSPARE source class has no spare pages\r\n"
	rLRUPcts         = "ERROR hot and warm pcts must not exceed 80\r\n"
	rLRUFactors      = "ERROR hot/warm age factors must be greater than 0\r\n"
)

// maxSlabClass bounds the class ids memcached accepts (MAX_NUMBER_OF_SLAB_CLASSES).
const maxSlabClass = 64

// crawlClasses parses a crawler's class argument: "all", "hash" (a walk of
// the hash table in memcached; the same walk here) or comma-separated
// class ids. It reports whether class 1, the only one, is among them.
func crawlClasses(arg []byte) (hasItems, ok bool) {
	if string(arg) == "all" || string(arg) == "hash" {
		return true, true
	}
	for id := range bytes.SplitSeq(arg, []byte(",")) {
		n, err := strconv.ParseUint(string(id), 10, 32)
		if err != nil || n < 1 || n >= maxSlabClass {
			return false, false
		}
		hasItems = hasItems || n == 1
	}
	return hasItems, true
}

// lruCrawlerCmd serves `lru_crawler crawl|metadump|tocrawl|sleep|enable|disable`.
func (s *Server) lruCrawlerCmd(pc *protoConn, t *[maxTokens][]byte, nt int, out []byte) []byte {
	sub := ""
	if nt > 2 {
		sub = string(t[1])
	}
	switch {
	case nt == 4 && sub == "crawl":
		if s.crawler.disabled.Load() {
			return append(out, rCrawlerOff...)
		}
		if _, ok := crawlClasses(t[2]); !ok {
			return append(out, rBadClass...)
		}
		if !s.crawler.running.CompareAndSwap(false, true) {
			return append(out, rCrawlerBusy...)
		}
		s.crawler.starts.Add(1)
		go func() {
			defer s.crawler.running.Store(false)
			s.cache.reclaimAll()
		}()
		return append(out, rOK...)
	case nt == 4 && sub == "metadump":
		if s.crawler.disabled.Load() {
			return append(out, rCrawlerOff...)
		}
		if s.cfg.DisableDump {
			return append(out, rMetadumpOff...)
		}
		if len(out) > 0 {
			return append(out, rMetadumpPipe...)
		}
		hasItems, ok := crawlClasses(t[2])
		if !ok {
			return append(out, rBadClass...)
		}
		if pc.datagram {
			// memcached hands the socket to its crawler, whose writes to
			// an unconnected UDP socket go nowhere: nothing is answered.
			return out
		}
		pc.dump = dumpCursor{}
		if !hasItems {
			pc.dump.shard = len(s.cache.shards)
		}
		pc.state = streamDump
		return out
	case nt == 4 && (sub == "tocrawl" || sub == "sleep"):
		n, err := strconv.ParseUint(string(t[2]), 10, 32)
		switch {
		case err != nil:
			return append(out, rBadCommandLine...)
		case sub == "sleep" && n > 1000000:
			return append(out, rCrawlerSleep...)
		case sub == "sleep":
			s.crawler.sleep.Store(uint32(n))
		default:
			s.crawler.tocrawl.Store(uint32(n))
		}
		return append(out, rOK...) // the reclaimer paces itself
	case nt == 3 && sub == "enable":
		s.crawler.disabled.Store(false)
		return append(out, rOK...)
	case nt == 3 && sub == "disable":
		// The background reclaimer is part of the cache's upkeep and goes
		// on; what stops is what the command controls: explicit passes
		// and dumps.
		s.crawler.disabled.Store(true)
		return append(out, rOK...)
	}
	return append(out, rError...)
}

// dumpCursor is where a streamed metadump stands.
type dumpCursor struct {
	shard int
	slot  uint64
}

// metadumpStep appends metadump lines until the output bound or the end,
// which it reports with true after memcached's END.
func (s *Server) metadumpStep(pc *protoConn, out []byte) ([]byte, bool) {
	line := func(e *dumpEntry) bool {
		out = appendMetadumpLine(out, e)
		return len(out) <= s.cfg.MaxOutput
	}
	for d := &pc.dump; d.shard < len(s.cache.shards); d.shard, d.slot = d.shard+1, 0 {
		if !s.cache.dumpShard(d.shard, &d.slot, line) {
			return out, false
		}
	}
	return append(out, rEnd...), true
}

// appendMetadumpLine formats one item as memcached's metadump does (a bare
// newline ends each line; END\r\n the dump).
func appendMetadumpLine(out []byte, e *dumpEntry) []byte {
	out = append(out, "key="...)
	out = appendURIEncoded(out, e.key)
	out = append(out, " exp="...)
	if e.exp == 0 {
		out = append(out, "-1"...)
	} else {
		out = strconv.AppendUint(out, uint64(e.exp), 10)
	}
	out = append(out, " la="...)
	out = strconv.AppendUint(out, uint64(e.access), 10)
	out = append(out, " cas="...)
	out = strconv.AppendUint(out, e.cas, 10)
	out = append(out, " fetch="...)
	out = append(out, yesNo(e.fetched)...)
	out = append(out, " cls=1 size="...)
	out = strconv.AppendUint(out, uint64(e.size), 10)
	return append(out, '\n')
}

// appendURIEncoded percent-encodes every byte but letters, digits and
// -._~ (memcached's uriencode).
func appendURIEncoded(out, key []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, b := range key {
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9',
			b == '-', b == '.', b == '_', b == '~':
			out = append(out, b)
		default:
			out = append(out, '%', hex[b>>4], hex[b&15])
		}
	}
	return out
}

// cachedumpLimit bounds a cachedump reply, as memcached's 2 MB buffer does.
const cachedumpLimit = 2 << 20

// cachedump serves `stats cachedump <class> <limit>`: up to limit items
// (0: as many as fit) of class 1, the only class.
func (s *Server) cachedump(t *[maxTokens][]byte, nt int, out []byte) []byte {
	if nt < 5 {
		return append(out, rBadCommandLine...)
	}
	id, err1 := strconv.ParseUint(string(t[2]), 10, 32)
	limit, err2 := strconv.ParseUint(string(t[3]), 10, 32)
	switch {
	case err1 != nil || err2 != nil:
		return append(out, rBadCommandLine...)
	case id >= maxSlabClass:
		return append(out, rCachedumpBadID...)
	}
	if id == 1 {
		start, shown, stop := len(out), uint64(0), false
		line := func(e *dumpEntry) bool {
			n := len(out)
			out = append(out, "ITEM "...)
			out = append(out, e.key...)
			out = append(out, " ["...)
			out = strconv.AppendInt(out, int64(e.valLen), 10)
			out = append(out, " b; "...)
			out = strconv.AppendUint(out, uint64(e.exp), 10)
			out = append(out, " s]\r\n"...)
			if len(out)-start > cachedumpLimit-len(rEnd) {
				out, stop = out[:n], true
				return false
			}
			shown++
			stop = limit != 0 && shown >= limit
			return !stop
		}
		for i := 0; i < len(s.cache.shards) && !stop; i++ {
			for slot := uint64(0); !s.cache.dumpShard(i, &slot, line) && !stop; {
			}
		}
	}
	return append(out, rEnd...)
}

// hasNoreply reports a trailing noreply, which the tuning commands honour
// (memcached's set_noreply_maybe).
func hasNoreply(t *[maxTokens][]byte, nt int) bool {
	return nt >= 2 && string(t[nt-2]) == "noreply"
}

// slabsCmd serves `slabs reassign` and `slabs automove`, as a memcached
// with one slab class, 1, and no spare pages would.
func (s *Server) slabsCmd(t *[maxTokens][]byte, nt int, out []byte) []byte {
	switch {
	case nt == 5 && string(t[1]) == "reassign":
		src, err1 := strconv.ParseInt(string(t[2]), 10, 32)
		dst, err2 := strconv.ParseInt(string(t[3]), 10, 32)
		switch {
		case err1 != nil || err2 != nil:
			return append(out, rBadCommandLine...)
		case src == dst:
			return append(out, rReassignSame...)
		case src < -1 || src > 1 || dst < 0 || dst > 1:
			// -1 asks memcached to pick a source; 0 is its global page pool.
			return append(out, rReassignBadCls...)
		}
		return append(out, rReassignNoSpare...)
	case nt >= 4 && string(t[1]) == "automove":
		noreply := hasNoreply(t, nt)
		if string(t[2]) == "ratio" {
			if nt < 5 {
				return reply(out, noreply, rError)
			}
			if _, err := strconv.ParseFloat(string(t[3]), 64); err != nil {
				return reply(out, noreply, rError)
			}
			return reply(out, noreply, rOK)
		}
		level, err := strconv.ParseUint(string(t[2]), 10, 32)
		switch {
		case err != nil:
			return reply(out, noreply, rBadCommandLine)
		case level > 2:
			return reply(out, noreply, rError)
		}
		s.automove.Store(int32(level))
		return reply(out, noreply, rOK)
	}
	return append(out, rError...)
}

// lruCmd serves `lru tune|mode|temp_ttl`.
func (s *Server) lruCmd(t *[maxTokens][]byte, nt int, out []byte) []byte {
	if nt < 3 {
		return append(out, rError...)
	}
	noreply := hasNoreply(t, nt)
	switch sub := string(t[1]); {
	case sub == "tune" && nt >= 7:
		hot, err1 := strconv.ParseUint(string(t[2]), 10, 32)
		warm, err2 := strconv.ParseUint(string(t[3]), 10, 32)
		hotFactor, err3 := strconv.ParseFloat(string(t[4]), 64)
		factor, err4 := strconv.ParseFloat(string(t[5]), 64)
		switch {
		case err1 != nil || err2 != nil || err3 != nil || err4 != nil:
			return reply(out, noreply, rError)
		case hot+warm > 80:
			return reply(out, noreply, rLRUPcts)
		case factor <= 0 || hotFactor <= 0:
			return reply(out, noreply, rLRUFactors)
		}
		s.lru.set(hot, warm, hotFactor, factor)
		return reply(out, noreply, rOK)
	case sub == "mode" && nt >= 4:
		if m := string(t[2]); m == "flat" || m == "segmented" {
			return reply(out, noreply, rOK)
		}
	case sub == "temp_ttl" && nt >= 4:
		if _, err := strconv.ParseInt(string(t[2]), 10, 32); err == nil {
			return reply(out, noreply, rOK)
		}
	}
	return reply(out, noreply, rError)
}
