package emcache

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCommandLatencies(t *testing.T) {
	s, addr := startProtoServer(t, ServerConfig{Workers: 2}, Config{})
	text := protoDial(t, addr)
	require.Equal(t, "STORED\r\nSTORED\r\nVALUE a 0 1\r\nx\r\nEND\r\nHD\r\nEN\r\n",
		protoRoundTrip(t, text, "set a 0 0 1\r\nx\r\nset b 0 0 1 noreply\r\ny\r\nset c 0 0 1\r\nz\r\nget a\r\nms d 1\r\nw\r\nmg nope v\r\n"))
	bin := protoDial(t, addr)
	get := bReq(binOpGetQ, "nope") // quiet: a miss answers nothing, yet it is a request
	binRoundTrip(t, bin, []binMsg{get, get}, nil)

	counts := map[string]uint64{}
	var total uint64
	for _, cl := range s.CommandLatencies() {
		require.Len(t, cl.Counts, len(cl.Bounds)+1, cl.Command)
		var sum uint64
		for _, n := range cl.Counts {
			sum += n
		}
		assert.Equal(t, cl.Count, sum, "%s: buckets add up to the count", cl.Command)
		assert.Positive(t, cl.Sum, cl.Command)
		counts[cl.Command] = cl.Count
		total += cl.Count
	}
	// Each connection's closing version counts as other; the binary
	// quiet gets count as get, beside the text get.
	assert.Equal(t, map[string]uint64{"set": 3, "get": 3, "ms": 1, "mg": 1, "other": 2}, counts)

	var perWorker uint64
	for _, ws := range s.Stats().Workers {
		perWorker += ws.Requests
	}
	assert.Equal(t, total, perWorker, "the workers' request counts add up to the histograms'")
}
