//go:build unix

package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBinaryStopsGracefullyOnSIGTERM(t *testing.T) {
	port := freePort(t)
	p := startEmcached(t, "-p", port, "-l", "127.0.0.1", "-v")
	p.waitLine(t, "server listening")

	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	require.NoError(t, err)
	defer conn.Close()
	require.Equal(t, "STORED\r\n", roundTrip(t, conn, "set k 0 0 1\r\nv\r\n", "\r\n"))

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.exitCode(t), p.stderr())
	require.Contains(t, p.stderr(), "Exiting normally")
}

func TestBinaryDaemon(t *testing.T) {
	port := freePort(t)
	pidFile := filepath.Join(t.TempDir(), "emcached.pid")
	if isRoot() {
		// The daemon writes its pidfile after switching to the -u user.
		require.NoError(t, os.Chmod(filepath.Dir(pidFile), 0o777))
	}
	p := startEmcached(t, "-d", "-P", pidFile, "-p", port, "-l", "127.0.0.1")
	// The parent returns once the daemon serves, so the port is open now.
	require.Equal(t, 0, p.exitCode(t), p.stderr())

	data, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	require.NoError(t, err)
	require.NotEqual(t, p.cmd.Process.Pid, pid, "the pidfile must name the daemon, not the parent")
	exited := false
	t.Cleanup(func() {
		if !exited { // only a daemon still running; its pid is not reused yet
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	require.NoError(t, err)
	defer conn.Close()
	require.Equal(t, "STORED\r\n", roundTrip(t, conn, "set k 0 0 1\r\nv\r\n", "\r\n"))

	require.NoError(t, syscall.Kill(pid, syscall.SIGTERM))
	// The daemon is not our child, so its exit shows as the pidfile it
	// removes on the way out.
	deadline := time.Now().Add(waitLimit)
	for {
		_, err := os.Stat(pidFile)
		if errors.Is(err, os.ErrNotExist) {
			exited = true
			break
		}
		require.True(t, time.Now().Before(deadline), "daemon %d did not exit after SIGTERM", pid)
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBinaryDaemonReportsStartupFailure(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	require.NoError(t, err)

	p := startEmcached(t, "-d", "-p", port, "-l", "127.0.0.1")
	require.Equal(t, exitOSErr, p.exitCode(t), p.stderr())
	require.Contains(t, p.stderr(), "failed to listen")
}
