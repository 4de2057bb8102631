// Package metrics_test checks emcache's metrics endpoint with Prometheus'
// own text parser, and against the families memcached_exporter shows,
// which testdata records for memcached 1.6.18 and for emcached.
package metrics_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/emcache/emcache"
)

// readFamilies reads a testdata list of "name type" lines.
func readFamilies(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	fams := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			name, typ, ok := strings.Cut(line, " ")
			require.True(t, ok, line)
			fams[name] = typ
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, fams, path)
	return fams
}

// scrape serves a cache with a metrics endpoint, runs known traffic
// through a memcached client and returns the parsed scrape.
func scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	c, err := emcache.New(emcache.Config{MaxBytes: 8 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	srv, err := c.Serve(emcache.ServerConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 2, MetricsAddr: "127.0.0.1:0"})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })

	mc := memcache.New(srv.Addr().String())
	mc.MaxIdleConns = 1 // one connection, so that its requests run in order
	for i := range 3 {
		require.NoError(t, mc.Set(&memcache.Item{Key: fmt.Sprintf("k%d", i), Value: []byte("v")}))
	}
	for range 2 {
		_, err := mc.Get("k0")
		require.NoError(t, err)
	}
	// A worker files a request's latency after sending its reply: the
	// reply to a later request on the same connection shows it filed.
	require.NoError(t, mc.Ping())

	resp, err := http.Get("http://" + srv.MetricsAddr().String() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	format := expfmt.ResponseFormat(resp.Header)
	require.Equal(t, expfmt.TypeTextPlain, format.FormatType(), "content type %q", resp.Header.Get("Content-Type"))
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

func TestEndpointCoversExporterFamilies(t *testing.T) {
	memcached := readFamilies(t, "testdata/exporter-memcached.txt")
	emcached := readFamilies(t, "testdata/exporter-emcached.txt")
	require.Equal(t, memcached, emcached, "the exporter shows the same families for emcached as for memcached")

	fams := scrape(t)
	for name, typ := range memcached {
		f, ok := fams[name]
		if assert.True(t, ok, "the endpoint lacks %s", name) {
			assert.Equal(t, typ, strings.ToLower(f.GetType().String()), name)
		}
	}
	for name := range fams {
		assert.True(t, strings.HasPrefix(name, "memcached_") || strings.HasPrefix(name, "emcache_"), name)
	}
	t.Logf("exporter families: %d for memcached, %d for emcached; endpoint families: %d", len(memcached), len(emcached), len(fams))
}

func TestEndpointValues(t *testing.T) {
	fams := scrape(t)
	label := func(m *dto.Metric, name string) string {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	}
	find := func(family string, labels ...string) *dto.Metric {
		t.Helper()
		f := fams[family]
		require.NotNil(t, f, family)
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if label(m, labels[i]) != labels[i+1] {
					continue next
				}
			}
			return m
		}
		require.Failf(t, "no sample", "%s%v", family, labels)
		return nil
	}

	for _, tt := range []struct {
		family string
		labels []string
		want   float64
	}{
		{"memcached_up", nil, 1},
		{"memcached_commands_total", []string{"command", "set", "status", "hit"}, 3},
		{"memcached_commands_total", []string{"command", "get", "status", "hit"}, 2},
		{"memcached_current_items", nil, 3},
		{"memcached_current_connections", nil, 1},
		{"memcached_slab_current_items", []string{"slab", "1"}, 3},
		{"memcached_version", []string{"version", emcache.Version}, 1},
	} {
		t.Run(fmt.Sprint(tt.family, tt.labels), func(t *testing.T) {
			m := find(tt.family, tt.labels...)
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			assert.Equal(t, tt.want, v)
		})
	}

	// gomemcache reads with gets.
	h := find("emcache_command_duration_seconds", "command", "gets").GetHistogram()
	require.NotNil(t, h)
	assert.Equal(t, uint64(2), h.GetSampleCount())
	assert.Positive(t, h.GetSampleSum())
	var prev uint64
	for _, b := range h.GetBucket() {
		assert.GreaterOrEqual(t, b.GetCumulativeCount(), prev, "le=%g", b.GetUpperBound())
		prev = b.GetCumulativeCount()
	}
	assert.LessOrEqual(t, prev, uint64(2))

	var conns float64
	for _, m := range fams["emcache_worker_connections"].GetMetric() {
		conns += m.GetGauge().GetValue()
	}
	assert.Equal(t, 1.0, conns)
	for _, area := range []string{"arena", "index", "buffers", "go_heap"} {
		find("emcache_memory_bytes", "area", area)
	}
}
