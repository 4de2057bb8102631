package emcache

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Regression: 64 keys appended 200 times in a 32 MiB cache evicted 94 live
// items while live bytes were 4.4% of MaxBytes; the log must reclaim the
// dead copies the appends leave before it evicts.
func TestAppendGrowthEvictsNothing(t *testing.T) {
	for _, chunk := range []int{115, 1024} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			c, err := New(Config{MaxBytes: 32 << 20})
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
			value := make([]byte, chunk)
			for round := range 200 {
				for k := range 64 {
					key := fmt.Appendf(nil, "append:%d", k)
					if round == 0 {
						require.NoError(t, c.Set(key, value, 0))
					} else if err := c.Append(key, value); !errors.Is(err, ErrNotStored) {
						require.NoError(t, err)
					}
				}
			}
			s := c.Stats()
			assert.Zero(t, s.Evictions)
			assert.EqualValues(t, 64, s.CurrItems)
		})
	}
}
