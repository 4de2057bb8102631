package emcache

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// admit is the one admission every reactor applies, so loop_other.go's
// fallback counts ReservedFDs as the epoll and kqueue reactors do (the
// server tests run it with GOOS=js GOARCH=wasm, where Go's in-process
// network stands in for sockets).
func TestAdmit(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		maxConns, reserved    int
		listeners, wantAdmits int
	}{
		{"clients only", 3, 0, 2, 3},
		{"reserved fds", 10, 5, 1, 3}, // 10 - 1 listener - 5 - 1
		{"reserved fds, two listeners", 10, 5, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{
				cfg:       ServerConfig{MaxConns: tc.maxConns, ReservedFDs: tc.reserved},
				listeners: make([]*listener, tc.listeners),
			}
			for i := range tc.wantAdmits {
				assert.True(t, s.admit(), "connection %d", i)
			}
			assert.False(t, s.admit())
			assert.False(t, s.admit())
			assert.EqualValues(t, tc.wantAdmits, s.open.Load(), "slots taken")
			assert.EqualValues(t, 2, s.rejected.Load())

			s.open.Add(-1) // a client leaves
			assert.True(t, s.admit(), "the freed slot")
			assert.False(t, s.admit())
			assert.EqualValues(t, 3, s.rejected.Load())
		})
	}
}
