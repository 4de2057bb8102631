package emcache

import (
	"fmt"
	"path/filepath"
	"testing"

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
