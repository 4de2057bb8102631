package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emcache/emcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// libmemcached's command-line tools (Debian's libmemcached-tools, which CI
// installs) are a real binary-protocol client: these tests drive an
// in-process server with them in binary mode, plain and with SASL.

func libmemcachedTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install libmemcached-tools)", name)
	}
	return path
}

func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(libmemcachedTool(t, name), args...).CombinedOutput()
	return string(out), err
}

func startBinaryServer(t *testing.T, cfg emcache.ServerConfig) (*emcache.Cache, string) {
	t.Helper()
	c, err := emcache.New(emcache.Config{MaxBytes: 8 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	cfg.Addrs = []string{"127.0.0.1:0"}
	cfg.Workers = 1
	srv, err := c.Serve(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	return c, srv.Addr().String()
}

func TestLibmemcachedBinaryRoundTrip(t *testing.T) {
	c, addr := startBinaryServer(t, emcache.ServerConfig{})
	servers := "--servers=" + addr

	dir := t.TempDir()
	file := filepath.Join(dir, "greeting")
	require.NoError(t, os.WriteFile(file, []byte("hello over the binary protocol"), 0o600))

	out, err := runTool(t, "memccp", "--binary", servers, "--flags=7", "--expire=3600", file)
	require.NoError(t, err, out)
	it, err := c.Get([]byte("greeting"))
	require.NoError(t, err, "the binary SET reached the cache")
	assert.Equal(t, "hello over the binary protocol", string(it.Value))
	assert.Equal(t, uint32(7), it.Flags)
	assert.False(t, it.Expires.IsZero())

	out, err = runTool(t, "memccat", "--binary", servers, "greeting")
	require.NoError(t, err, out)
	assert.Equal(t, "hello over the binary protocol", strings.TrimSpace(out))

	out, err = runTool(t, "memcexist", "--binary", servers, "greeting")
	require.NoError(t, err, out)
	out, err = runTool(t, "memctouch", "--binary", servers, "--expire=60", "greeting")
	require.NoError(t, err, out)

	out, err = runTool(t, "memcrm", "--binary", servers, "greeting")
	require.NoError(t, err, out)
	_, err = c.Get([]byte("greeting"))
	require.ErrorIs(t, err, emcache.ErrNotFound, "the binary DELETE reached the cache")
	_, err = runTool(t, "memcexist", "--binary", servers, "greeting")
	require.Error(t, err, "memcexist reports the deleted key missing")

	err = c.Set([]byte("other"), []byte("x"), 0)
	require.NoError(t, err)
	out, err = runTool(t, "memcflush", "--binary", servers)
	require.NoError(t, err, out)
	_, err = c.Get([]byte("other"))
	require.ErrorIs(t, err, emcache.ErrNotFound, "the binary FLUSH reached the cache")

	out, err = runTool(t, "memcstat", "--binary", servers)
	require.NoError(t, err, out)
	assert.Contains(t, out, "curr_connections")
}

func TestLibmemcachedSASL(t *testing.T) {
	_, addr := startBinaryServer(t, emcache.ServerConfig{
		SASL:        true,
		Credentials: []emcache.Credential{{User: "app", Password: "s3cret"}},
	})
	servers := "--servers=" + addr
	file := filepath.Join(t.TempDir(), "k")
	require.NoError(t, os.WriteFile(file, []byte("v"), 0o600))

	out, err := runTool(t, "memccp", "--binary", servers, "--username=app", "--password=s3cret", file)
	require.NoError(t, err, out)
	out, err = runTool(t, "memccat", "--binary", servers, "--username=app", "--password=s3cret", "k")
	require.NoError(t, err, out)
	assert.Equal(t, "v", strings.TrimSpace(out))

	out, err = runTool(t, "memccat", "--binary", servers, "--username=app", "--password=wrong", "k")
	assert.Error(t, err, "a wrong password is refused: %s", out)
}
