// Warm restart: a cache with Config.MemoryFile keeps its shards' arenas in
// that file, mapped shared, so the records outlive the process; a graceful
// Close writes the shards' indexes after the arenas and, last, a metadata
// file saying how to resume. The next New with the same file and settings
// takes the arenas and indexes back as they were, without reading a record:
// a start costs a checksum pass over the bytes items use, not a rebuild.

package emcache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Errors saying why New started a Config.MemoryFile empty ([Cache.WarmStart]).
const (
	// ErrNoSavedState: the file has no state saved by a graceful Close:
	// it is new, or the last process using it crashed or was killed.
	ErrNoSavedState = Error("emcache: memory file has no saved state (new, or the last run did not stop gracefully)")
	// ErrStateIncompatible: the state was saved with other settings.
	ErrStateIncompatible = Error("emcache: memory file was saved with other settings")
	// ErrStateCorrupt: the saved state or the items it describes do not
	// check out against their checksums.
	ErrStateCorrupt = Error("emcache: memory file's saved state is damaged")
	// ErrMemoryFileUnsupported: the system cannot map files (no mmap).
	ErrMemoryFileUnsupported = Error("emcache: MemoryFile needs mmap, which this system lacks")
	// ErrMemoryFileFixed: SetMaxBytes on a cache in a memory file, whose
	// arenas are laid out in the file (memcached's -e also refuses
	// cache_memlimit).
	ErrMemoryFileFixed = Error("emcache: the memory limit of a cache in a memory file is fixed")
)

// MetaSuffix is appended to Config.MemoryFile to name the metadata file a
// graceful Close writes and the next New reads and removes.
const MetaSuffix = ".meta"

// stateMagic opens a metadata file; stateVersion changes with any change
// of the file's layout or of the record, index or ring formats.
const (
	stateMagic   = "emcache state\n\x00\x00"
	stateVersion = 3
)

// stateHeader and shardState are the metadata, each field a little-endian
// uint64 in this order, followed by an xxhash of everything before it.
type stateHeader struct {
	version, maxBytes, maxItemSize, noEvict, noCAS uint64
	shards, capacity, span, pageSize               uint64
	stopTime, flushAt, cmdFlush                    uint64
}

type shardState struct {
	smallHead, smallTail, mainHead, mainTail uint64
	count, bytes, casHigh, totalItems        uint64
	smallBytes                               uint64
	nslots, arenaSum, indexSum               uint64
}

const (
	headerWords = 12
	shardWords  = 12
)

// memFile is a cache's open memory file: shard i's arena is span bytes at
// i*span; the indexes follow the arenas while the cache is stopped.
type memFile struct {
	path string
	f    *os.File
	span int64
	// warm and why record how New found the file (WarmStart).
	warm bool
	why  error
}

// setting is one of the settings a saved state must match.
type setting struct {
	name       string
	saved, now uint64
}

// openMemoryFile opens and locks cfg.MemoryFile for a cache of n shards of
// capacity bytes each and maps their arenas. If the file holds a state a
// graceful Close saved with the same settings, and it checks out, it
// returns the shards that state describes; otherwise shards laid over a
// zeroed file, and the reason in mf.why. The metadata is removed before any
// shard is handed out, so a crash from then on leaves no state to resume.
func openMemoryFile(cfg *Config, n int, capacity uint64, shift uint) (*memFile, []*shard, stateHeader, error) {
	var hdr stateHeader
	if !canMapFiles {
		return nil, nil, hdr, ErrMemoryFileUnsupported
	}
	page := int64(os.Getpagesize())
	mf := &memFile{path: cfg.MemoryFile, span: (int64(capacity) + page - 1) &^ (page - 1)}
	f, err := os.OpenFile(cfg.MemoryFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, hdr, fmt.Errorf("emcache: open MemoryFile: %w", err)
	}
	mf.f = f
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, nil, hdr, fmt.Errorf("emcache: MemoryFile %s is in use by another cache: %w", cfg.MemoryFile, err)
	}
	meta, err := os.ReadFile(mf.metaPath())
	switch {
	case errors.Is(err, os.ErrNotExist):
		mf.why = ErrNoSavedState
	case err != nil:
		f.Close()
		return nil, nil, hdr, fmt.Errorf("emcache: read MemoryFile's metadata: %w", err)
	default:
		if err := mf.removeMeta(); err != nil {
			f.Close()
			return nil, nil, hdr, err
		}
	}
	want := stateHeader{
		version: stateVersion, maxBytes: uint64(cfg.MaxBytes), maxItemSize: uint64(cfg.MaxItemSize),
		noEvict: b2u(cfg.NoEvict), noCAS: b2u(cfg.NoCAS),
		shards: uint64(n), capacity: capacity, span: uint64(mf.span), pageSize: uint64(page),
	}
	var shards []*shard
	if mf.why == nil {
		var states []shardState
		if hdr, states, mf.why = parseState(meta, &want); mf.why == nil {
			shards, mf.why = mf.resume(states, &want, shift, cfg.NoEvict)
		}
	}
	if mf.why != nil {
		hdr = stateHeader{}
		if shards, err = mf.fresh(n, capacity, shift, cfg.NoEvict); err != nil {
			f.Close()
			return nil, nil, hdr, err
		}
	}
	// The indexes are in memory now; their copy after the arenas would
	// only hold the file's memory (tmpfs) while the cache runs.
	if err := f.Truncate(int64(n) * mf.span); err != nil {
		mf.unmap(shards)
		f.Close()
		return nil, nil, hdr, fmt.Errorf("emcache: truncate MemoryFile: %w", err)
	}
	mf.warm = mf.why == nil
	return mf, shards, hdr, nil
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func (mf *memFile) metaPath() string { return mf.path + MetaSuffix }

// removeMeta deletes the metadata file and makes that durable: a state
// left behind would let a later start resume arenas changed since.
func (mf *memFile) removeMeta() error {
	if err := os.Remove(mf.metaPath()); err != nil {
		return fmt.Errorf("emcache: remove MemoryFile's metadata: %w", err)
	}
	return syncDir(filepath.Dir(mf.path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("emcache: sync MemoryFile's directory: %w", err)
	}
	defer d.Close()
	// Some systems cannot sync a directory; the rename or removal stands.
	_ = d.Sync()
	return nil
}

// parseState decodes and checks metadata against the settings in want.
func parseState(meta []byte, want *stateHeader) (stateHeader, []shardState, error) {
	var hdr stateHeader
	body := len(meta) - 8
	if body < len(stateMagic)+headerWords*8 || string(meta[:len(stateMagic)]) != stateMagic {
		return hdr, nil, fmt.Errorf("%w: not a metadata file", ErrStateCorrupt)
	}
	if xxhash.Sum64(meta[:body]) != le.Uint64(meta[body:]) {
		return hdr, nil, fmt.Errorf("%w: metadata checksum mismatch", ErrStateCorrupt)
	}
	r := wordReader{b: meta[len(stateMagic):body]}
	for _, p := range hdr.fields() {
		*p = r.next()
	}
	for _, s := range []setting{
		{"layout version", hdr.version, want.version},
		{"MaxBytes (-m)", hdr.maxBytes, want.maxBytes},
		{"MaxItemSize (-I)", hdr.maxItemSize, want.maxItemSize},
		{"NoEvict (-M)", hdr.noEvict, want.noEvict},
		{"NoCAS (-C)", hdr.noCAS, want.noCAS},
		{"shard count", hdr.shards, want.shards},
		{"shard capacity", hdr.capacity, want.capacity},
		{"shard span", hdr.span, want.span},
		{"page size", hdr.pageSize, want.pageSize},
	} {
		if s.saved != s.now {
			return hdr, nil, fmt.Errorf("%w: %s was %d, is %d", ErrStateIncompatible, s.name, s.saved, s.now)
		}
	}
	if len(r.b) != int(hdr.shards)*shardWords*8 {
		return hdr, nil, fmt.Errorf("%w: metadata length", ErrStateCorrupt)
	}
	states := make([]shardState, hdr.shards)
	for i := range states {
		for _, p := range states[i].fields() {
			*p = r.next()
		}
	}
	return hdr, states, nil
}

func (h *stateHeader) fields() []*uint64 {
	return []*uint64{&h.version, &h.maxBytes, &h.maxItemSize, &h.noEvict, &h.noCAS,
		&h.shards, &h.capacity, &h.span, &h.pageSize, &h.stopTime, &h.flushAt, &h.cmdFlush}
}

func (s *shardState) fields() []*uint64 {
	return []*uint64{&s.smallHead, &s.smallTail, &s.mainHead, &s.mainTail,
		&s.count, &s.bytes, &s.casHigh, &s.totalItems, &s.nslots, &s.arenaSum, &s.indexSum, &s.smallBytes}
}

type wordReader struct{ b []byte }

func (r *wordReader) next() uint64 {
	if len(r.b) < 8 {
		return 0
	}
	v := le.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// fresh zeroes the file and lays empty shards over it.
func (mf *memFile) fresh(n int, capacity uint64, shift uint, noEvict bool) ([]*shard, error) {
	if err := mf.f.Truncate(0); err != nil {
		return nil, fmt.Errorf("emcache: truncate MemoryFile: %w", err)
	}
	if err := mf.f.Truncate(int64(n) * mf.span); err != nil {
		return nil, fmt.Errorf("emcache: size MemoryFile: %w", err)
	}
	shards := make([]*shard, n)
	nslots := initialShardSlots(n)
	for i := range shards {
		buf, err := mapFile(mf.f, int64(i)*mf.span, int(capacity))
		if err != nil {
			mf.unmap(shards)
			return nil, fmt.Errorf("emcache: map MemoryFile: %w", err)
		}
		mem := &shardMem{buf: buf, file: true}
		mem.index(nslots)
		shards[i] = shardOver(uint64(i), shift, noEvict, mem, nslots)
	}
	return shards, nil
}

// unmap releases the shards made so far, for a start that fails.
func (mf *memFile) unmap(shards []*shard) {
	for _, s := range shards {
		if s != nil {
			s.release()
		}
	}
}

// resume lays the saved shards over the file: each arena mapped, each
// index read back from after the arenas, both checked against their sums.
func (mf *memFile) resume(states []shardState, hdr *stateHeader, shift uint, noEvict bool) ([]*shard, error) {
	fi, err := mf.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("emcache: stat MemoryFile: %w", err)
	}
	indexAt := int64(len(states)) * mf.span
	offs := make([]int64, len(states))
	end := indexAt
	for i, st := range states {
		if st.nslots < minSlots || st.nslots > hdr.capacity {
			return nil, fmt.Errorf("%w: shard %d's index size", ErrStateCorrupt, i)
		}
		offs[i] = end
		end += int64(indexBytes(int(st.nslots)))
	}
	if fi.Size() != end {
		return nil, fmt.Errorf("%w: file size %d, saved %d", ErrStateCorrupt, fi.Size(), end)
	}
	shards := make([]*shard, len(states))
	for i, st := range states {
		buf, err := mapFile(mf.f, int64(i)*mf.span, int(hdr.capacity))
		if err != nil {
			mf.unmap(shards)
			return nil, fmt.Errorf("emcache: map MemoryFile: %w", err)
		}
		mem := &shardMem{buf: buf, file: true}
		idx := mem.index(int(st.nslots))
		if _, err := mf.f.ReadAt(idx, offs[i]); err != nil {
			mem.free()
			mf.unmap(shards)
			return nil, fmt.Errorf("%w: read shard %d's index: %v", ErrStateCorrupt, i, err)
		}
		s := shardOver(uint64(i), shift, noEvict, mem, int(st.nslots))
		shards[i] = s
		if err := s.restore(&st); err != nil {
			mf.unmap(shards)
			return nil, fmt.Errorf("%w: shard %d: %v", ErrStateCorrupt, i, err)
		}
	}
	if err := checkSums(shards, states); err != nil {
		mf.unmap(shards)
		return nil, err
	}
	return shards, nil
}

// restore sets a shard laid over a saved arena back to the saved state.
func (s *shard) restore(st *shardState) error {
	for _, r := range []struct {
		ring       *ring
		head, tail uint64
	}{{&s.small, st.smallHead, st.smallTail}, {&s.main, st.mainHead, st.mainTail}} {
		if r.tail > r.head || r.head-r.tail > r.ring.size {
			return errors.New("ring bounds")
		}
		r.ring.head, r.ring.hp = r.head, r.head%r.ring.size
		r.ring.tail, r.ring.tp = r.tail, r.tail%r.ring.size
	}
	if st.bytes > uint64(len(s.buf)) || st.smallBytes > st.bytes || st.count > st.nslots {
		return errors.New("item counts")
	}
	s.count.Store(st.count)
	s.bytes, s.smallBytes, s.casHigh = st.bytes, st.smallBytes, st.casHigh
	s.st.totalItems = st.totalItems
	return nil
}

// checkSums verifies every shard's arena and index against the sums saved
// with them, the shards spread over the available CPUs.
func checkSums(shards []*shard, states []shardState) error {
	sums := shardSums(shards)
	for i, st := range states {
		if sums[i].arena != st.arenaSum || sums[i].index != st.indexSum {
			return fmt.Errorf("%w: shard %d's checksum mismatch", ErrStateCorrupt, i)
		}
	}
	return nil
}

type sums struct{ arena, index uint64 }

func shardSums(shards []*shard) []sums {
	out := make([]sums, len(shards))
	work := make(chan int, len(shards))
	for i := range shards {
		work <- i
	}
	close(work)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(shards)) {
		wg.Go(func() {
			for i := range work {
				out[i] = sums{shards[i].arenaSum(), xxhash.Sum64(shards[i].mem.slots)}
			}
		})
	}
	wg.Wait()
	return out
}

// arenaSum hashes the bytes of both rings between tail and head: the only
// bytes anything reads before writing them.
func (s *shard) arenaSum() uint64 {
	d := xxhash.New()
	for _, r := range []*ring{&s.small, &s.main} {
		n := r.head - r.tail
		if end := r.tp + n; end <= r.size {
			d.Write(s.buf[r.base+r.tp : r.base+end])
		} else {
			d.Write(s.buf[r.base+r.tp : r.base+r.size])
			d.Write(s.buf[r.base : r.base+end-r.size])
		}
	}
	return d.Sum64()
}

// save writes what resume needs: each shard's index after the arenas, the
// arenas synced, then the metadata, written aside and renamed into place
// so it is whole or absent. The caller holds every shard's lock.
func (mf *memFile) save(c *Cache) error {
	shards := c.shards
	hdr := stateHeader{
		version: stateVersion, maxBytes: uint64(c.maxBytes.Load()), maxItemSize: uint64(c.maxItemSize),
		noEvict: b2u(shards[0].noEvict), noCAS: b2u(c.noCAS),
		shards: uint64(len(shards)), capacity: uint64(len(shards[0].buf)), span: uint64(mf.span),
		pageSize: uint64(os.Getpagesize()), stopTime: uint64(c.unixNow()),
		flushAt: uint64(c.flushAt.Load()), cmdFlush: c.cmdFlush.Load(),
	}
	// Prefix deletions are watermarks in memory, not in the file: finish
	// reclaiming what they cover, or the next start would serve it again.
	for _, s := range shards {
		for len(s.dead) != 0 {
			s.sweepDead(math.MaxInt)
		}
	}
	off := int64(len(shards)) * mf.span
	sum := shardSums(shards)
	meta := append([]byte(nil), stateMagic...)
	for _, p := range hdr.fields() {
		meta = le.AppendUint64(meta, *p)
	}
	for i, s := range shards {
		if _, err := mf.f.WriteAt(s.mem.slots, off); err != nil {
			return fmt.Errorf("emcache: save shard %d's index: %w", i, err)
		}
		off += int64(len(s.mem.slots))
		if err := syncBytes(s.buf); err != nil {
			return fmt.Errorf("emcache: sync shard %d's arena: %w", i, err)
		}
		st := shardState{
			smallHead: s.small.head, smallTail: s.small.tail, mainHead: s.main.head, mainTail: s.main.tail,
			count: s.count.Load(), bytes: s.bytes, smallBytes: s.smallBytes, casHigh: s.casHigh, totalItems: s.st.totalItems,
			nslots: s.nslots, arenaSum: sum[i].arena, indexSum: sum[i].index,
		}
		for _, p := range st.fields() {
			meta = le.AppendUint64(meta, *p)
		}
	}
	meta = binary.LittleEndian.AppendUint64(meta, xxhash.Sum64(meta))
	if err := mf.f.Sync(); err != nil {
		return fmt.Errorf("emcache: sync MemoryFile: %w", err)
	}
	tmp := mf.metaPath() + ".tmp"
	if err := writeSynced(tmp, meta); err != nil {
		return err
	}
	if err := os.Rename(tmp, mf.metaPath()); err != nil {
		return fmt.Errorf("emcache: save MemoryFile's metadata: %w", err)
	}
	return syncDir(filepath.Dir(mf.path))
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("emcache: save MemoryFile's metadata: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("emcache: save MemoryFile's metadata: %w", err)
	}
	return nil
}

// WarmStart reports whether New resumed from the state a graceful Close
// saved in Config.MemoryFile. If it did not, the error says why the cache
// started empty: ErrNoSavedState, ErrStateIncompatible or ErrStateCorrupt,
// wrapped with details. A cache without a memory file reports false, nil.
func (c *Cache) WarmStart() (bool, error) {
	if c.mf == nil {
		return false, nil
	}
	return c.mf.warm, c.mf.why
}
