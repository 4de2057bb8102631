//go:build unix

package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startWithMemoryFile runs emcached on a free port with -e mem and returns
// it with a connection, once it serves.
func startWithMemoryFile(t *testing.T, mem string, args ...string) (*emcachedProc, net.Conn) {
	t.Helper()
	port := freePort(t)
	p := startEmcached(t, append([]string{"-p", port, "-l", "127.0.0.1", "-v", "-A", "-e", mem}, args...)...)
	p.waitLine(t, "server listening")
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return p, conn
}

func TestBinaryRestartResumesAfterEveryGracefulStop(t *testing.T) {
	mem := filepath.Join(t.TempDir(), "mem")
	stops := []struct {
		name string
		stop func(*emcachedProc, net.Conn) error
	}{
		{"SIGTERM", func(p *emcachedProc, _ net.Conn) error { return p.cmd.Process.Signal(syscall.SIGTERM) }},
		{"SIGINT", func(p *emcachedProc, _ net.Conn) error { return p.cmd.Process.Signal(syscall.SIGINT) }},
		{"SIGUSR1", func(p *emcachedProc, _ net.Conn) error { return p.cmd.Process.Signal(syscall.SIGUSR1) }},
		{"shutdown graceful", func(_ *emcachedProc, c net.Conn) error {
			_, err := c.Write([]byte("shutdown graceful\r\n"))
			return err
		}},
	}
	for i, st := range stops {
		p, conn := startWithMemoryFile(t, mem)
		if i == 0 {
			assert.Contains(t, p.stderr(), "no saved state")
			assert.Contains(t, roundTrip(t, conn, "stats settings\r\n", "END\r\n"), "STAT memory_file "+mem+"\r\n")
		} else {
			assert.Contains(t, p.stderr(), "resumed from the memory file", "before %s", st.name)
		}
		for j := range i {
			k := "k" + strconv.Itoa(j)
			require.Equal(t, "VALUE "+k+" "+strconv.Itoa(j)+" 1\r\nv\r\nEND\r\n", roundTrip(t, conn, "get "+k+"\r\n", "END\r\n"), st.name)
		}
		k := "k" + strconv.Itoa(i)
		require.Equal(t, "STORED\r\n", roundTrip(t, conn, "set "+k+" "+strconv.Itoa(i)+" 0 1\r\nv\r\n", "\r\n"))
		require.NoError(t, st.stop(p, conn))
		require.Equal(t, 0, p.exitCode(t), p.stderr())
		require.NotContains(t, p.stderr(), "failed to save", st.name)
	}
}

func TestBinaryRestartAfterKillIsCold(t *testing.T) {
	mem := filepath.Join(t.TempDir(), "mem")
	p, conn := startWithMemoryFile(t, mem)
	require.Equal(t, "STORED\r\n", roundTrip(t, conn, "set saved 0 0 1\r\nv\r\n", "\r\n"))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.exitCode(t), p.stderr())

	p, conn = startWithMemoryFile(t, mem)
	require.Contains(t, p.stderr(), "resumed from the memory file")
	require.Equal(t, "DELETED\r\n", roundTrip(t, conn, "delete saved\r\n", "\r\n"))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	p.exitCode(t)

	p, conn = startWithMemoryFile(t, mem)
	assert.Contains(t, p.stderr(), "no saved state")
	assert.Equal(t, "END\r\n", roundTrip(t, conn, "get saved\r\n", "END\r\n"), "a delete before a kill stays done")
}

func TestBinaryRestartWithOtherSettingsSaysWhy(t *testing.T) {
	mem := filepath.Join(t.TempDir(), "mem")
	p, conn := startWithMemoryFile(t, mem)
	require.Equal(t, "STORED\r\n", roundTrip(t, conn, "set k 0 0 1\r\nv\r\n", "\r\n"))
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.exitCode(t), p.stderr())

	p, conn = startWithMemoryFile(t, mem, "-m", "128")
	assert.Contains(t, p.stderr(), "cannot resume from the memory file")
	assert.Contains(t, p.stderr(), "MaxBytes (-m) was 67108864, is 134217728")
	assert.Equal(t, "END\r\n", roundTrip(t, conn, "get k\r\n", "END\r\n"))
}

func TestBinaryRefusesEmptyMetadataFile(t *testing.T) {
	mem := filepath.Join(t.TempDir(), "mem")
	require.NoError(t, os.WriteFile(mem+".meta", nil, 0o600))
	p := startEmcached(t, "-p", freePort(t), "-l", "127.0.0.1", "-e", mem)
	require.Equal(t, exitFail, p.exitCode(t), p.stderr())
	require.Contains(t, p.stderr(), "is empty")
}
