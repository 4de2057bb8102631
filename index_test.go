package emcache

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIndexGrowthKeepsEveryItem grows the index many times over, once with
// a log of live records (rehashed in arena order) and once with a log mostly
// of dead ones, overwritten and deleted items (rehashed in table order), and
// checks that every live key, and no other, is found afterwards. The dead
// log is a memory file's: anonymous rings wrap early and compact their dead
// records away (growActive).
func TestIndexGrowthKeepsEveryItem(t *testing.T) {
	const keys = 250_000
	tests := []struct {
		name       string
		overwrites int // stores of each key before its last
		deleteEach int // every deleteEach-th key is deleted; 0 for none
		wantArena  bool
		memoryFile bool
	}{
		{name: "live log", wantArena: true},
		{name: "dead log", overwrites: 3, deleteEach: 3, memoryFile: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{MaxBytes: 64 << 20}
			if tt.memoryFile {
				cfg.MemoryFile = filepath.Join(t.TempDir(), "mem")
			}
			c := newTestCache(t, cfg)
			key := func(i int) []byte { return fmt.Appendf(nil, "grow:%06d", i) }
			slotsBefore := 0
			for _, s := range c.shards {
				slotsBefore += int(s.nslots)
			}
			for i := range keys {
				for v := range tt.overwrites + 1 {
					require.NoError(t, c.Set(key(i), fmt.Appendf(nil, "value %d of %d", v, i), 0))
				}
				if tt.deleteEach > 0 && i%tt.deleteEach == 0 {
					require.NoError(t, c.Delete(key(i)))
				}
			}
			slotsAfter, arena := 0, 0
			for _, s := range c.shards {
				slotsAfter += int(s.nslots)
				if s.bytes*2 >= s.small.used()+s.main.used() {
					arena++
				}
			}
			require.Greater(t, slotsAfter, 2*slotsBefore, "the index grew")
			if tt.wantArena {
				assert.Equal(t, len(c.shards), arena, "shards whose growth walked the arena")
			} else {
				assert.Zero(t, arena, "shards whose growth walked the arena")
			}
			live := 0
			for i := range keys {
				it, err := c.Get(key(i))
				if tt.deleteEach > 0 && i%tt.deleteEach == 0 {
					assert.ErrorIs(t, err, ErrNotFound, "deleted key %d", i)
					continue
				}
				live++
				require.NoError(t, err, "key %d", i)
				assert.Equal(t, fmt.Sprintf("value %d of %d", tt.overwrites, i), string(it.Value))
			}
			assert.Equal(t, live, c.Len())
			assert.Zero(t, c.Stats().Evictions)
		})
	}
}

// TestIndexGrowthSkipsUnindexedRecords plants a record the index does not
// point at (none should exist: the index turns what it drops into a hole)
// and grows the index past it: the growth, which first takes every record
// for live, must notice the extra record and leave it out.
func TestIndexGrowthSkipsUnindexedRecords(t *testing.T) {
	c := newTestCache(t, Config{MaxBytes: 64 << 20})
	ghost := []byte("planted")
	h := xxhash.Sum64(ghost)
	s := c.shardFor(h)
	s.mu.Lock()
	now := c.clock()
	dst, _, cas, ok := s.place(len(ghost), 5, 0, 0, 0, false, h, false, now)
	require.True(t, ok)
	copy(s.write(dst, ghost, 5, 0, 0, now, cas, 0, false), "stale")
	slots := s.nslots
	s.mu.Unlock()
	var keys [][]byte
	for i := 0; s.nslots == slots; i++ {
		require.Less(t, i, 1_000_000, "the index never grew")
		k := fmt.Appendf(nil, "k%d", i)
		require.NoError(t, c.Set(k, k, 0))
		keys = append(keys, k)
	}
	_, err := c.Get(ghost)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Equal(t, len(keys), c.Len())
	for _, k := range keys {
		it, err := c.Get(k)
		require.NoError(t, err)
		assert.Equal(t, k, it.Value)
	}
}
