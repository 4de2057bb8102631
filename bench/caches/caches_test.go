package caches

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRoundTrip checks every adapter stores and returns values through both
// key forms, and reports misses as misses.
func TestRoundTrip(t *testing.T) {
	for _, lib := range All {
		t.Run(lib.Name, func(t *testing.T) {
			c, err := lib.New(32 << 20)
			require.NoError(t, err)
			t.Cleanup(c.Close)
			for i := range 100 {
				k := []byte(fmt.Sprintf("key:%012d", i))
				c.Set(Key{B: k}, []byte(fmt.Sprintf("value-%d", i)))
			}
			c.Sync()
			buf := make([]byte, 0, 64)
			for i := range 100 {
				k := []byte(fmt.Sprintf("key:%012d", i))
				v, ok := c.Get(buf[:0], Key{B: k})
				require.True(t, ok, "key %d", i)
				require.Equal(t, fmt.Sprintf("value-%d", i), string(v))
				v, ok = c.Get(buf[:0], Key{B: k, S: string(k)})
				require.True(t, ok, "key %d as string", i)
				require.Equal(t, fmt.Sprintf("value-%d", i), string(v))
			}
			_, ok := c.Get(buf[:0], Key{B: []byte("key:missing")})
			require.False(t, ok)
		})
	}
}

func TestByName(t *testing.T) {
	l, err := ByName("otter")
	require.NoError(t, err)
	require.Equal(t, "otter", l.Name)
	_, err = ByName("nope")
	require.Error(t, err)
}
