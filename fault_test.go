package emcache

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newFaultServer returns a server value that handle can run on without
// listening: fault injection lives entirely in the request path.
func newFaultServer(t *testing.T) *Server {
	t.Helper()
	c, err := New(Config{MaxBytes: 8 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	s := &Server{cache: c, cfg: ServerConfig{Addrs: []string{"127.0.0.1:0"}}, quit: make(chan struct{})}
	require.NoError(t, s.cfg.fill(c))
	return s
}

// feed runs handle over the chunks as a connection receiving them would,
// keeping unconsumed input, and returns all replies.
func feed(s *Server, pc *protoConn, chunks ...string) string {
	var in, out []byte
	for _, c := range chunks {
		in = append(in, c...)
		n, o, _, _ := s.handle(pc, in, out, 0)
		out = o
		in = append(in[:0], in[n:]...)
	}
	return string(out)
}

func TestFaultUsedUpRestoresFastPath(t *testing.T) {
	s := newFaultServer(t)
	require.NoError(t, s.InjectFault(2, Fault{Reply: "SERVER_ERROR x"}))
	var pc protoConn
	assert.Equal(t, "SERVER_ERROR x\r\nSERVER_ERROR x\r\nEND\r\n", feed(s, &pc, "get a\r\nget a\r\nget a\r\n"))
	assert.Nil(t, s.fault.Load(), "a used-up fault must leave the one-load path")

	require.NoError(t, s.InjectFault(3, Fault{Reply: "SERVER_ERROR x"}))
	require.NoError(t, s.InjectFault(0, Fault{}))
	assert.Nil(t, s.fault.Load())
}

func TestFaultCommandFilterKeepsCount(t *testing.T) {
	s := newFaultServer(t)
	require.NoError(t, s.InjectFault(1, Fault{Command: "delete", Reply: "SERVER_ERROR x"}))
	var pc protoConn
	assert.Equal(t, "END\r\nSTORED\r\nSERVER_ERROR x\r\nDELETED\r\n",
		feed(s, &pc, "get a\r\nset a 0 0 1\r\nv\r\ndelete a\r\ndelete a\r\n"))
}

// TestFaultSwallowsSplitBlock checks that a failed store's data block is
// dropped even when it arrives in pieces, and that what follows it runs.
func TestFaultSwallowsSplitBlock(t *testing.T) {
	s := newFaultServer(t)
	require.NoError(t, s.InjectFault(1, Fault{Command: "set", Reply: "SERVER_ERROR x"}))
	var pc protoConn
	got := feed(s, &pc, "set a 0 0 10\r\n", "01234", "56789\r", "\nget a\r\n")
	assert.Equal(t, "SERVER_ERROR x\r\nEND\r\n", got)
}

func TestFaultBadLengthLeavesBlock(t *testing.T) {
	s := newFaultServer(t)
	require.NoError(t, s.InjectFault(1, Fault{Command: "set", Reply: "SERVER_ERROR x"}))
	var pc protoConn
	// Without a valid length there is no block to drop: the next line is
	// parsed as a command, as memcached does after a bad command line.
	assert.Equal(t, "SERVER_ERROR x\r\nEND\r\n", feed(s, &pc, "set a 0 0 big\r\nget a\r\n"))
}

func TestFaultClose(t *testing.T) {
	s := newFaultServer(t)
	require.NoError(t, s.InjectFault(1, Fault{Command: "get", Close: true}))
	var pc protoConn
	in := []byte("version\r\nget a\r\nversion\r\n")
	n, out, _, act := s.handle(&pc, in, nil, 0)
	assert.Equal(t, actClose, act)
	assert.Equal(t, len("version\r\nget a\r\n"), n)
	assert.Equal(t, "VERSION "+Version+"\r\n", string(out))
}

func TestFaultDelayStopsWithServer(t *testing.T) {
	s := newFaultServer(t)
	require.NoError(t, s.InjectFault(1, Fault{Delay: maxFaultDelay}))
	close(s.quit) // as Close and Shutdown do first
	var pc protoConn
	n, out, _, act := s.handle(&pc, []byte("get a\r\n"), nil, 0)
	assert.Equal(t, actClose, act)
	assert.Equal(t, 7, n)
	assert.Empty(t, out)
}

func TestFaultDataLen(t *testing.T) {
	for line, want := range map[string]int{
		"set k 0 0 5":           5,
		"cas k 0 0 7 99":        7,
		"append k 0 0 0":        0,
		"ms k 12 T10":           12,
		"ms k":                  -1,
		"set k 0 0":             -1,
		"set k 0 0 -1":          -1,
		"get k":                 -1,
		"incr k 5":              -1,
		"set k 0 0 99999999999": -1,
	} {
		var tok [maxTokens][]byte
		nt := tokenize([]byte(line), &tok)
		assert.Equal(t, want, faultDataLen(&tok, nt), line)
	}
}
