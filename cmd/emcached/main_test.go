package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runMainEnv makes the test binary act as emcached, so these tests run the
// real program (exit codes, signals, the -d re-exec) without a build step.
const runMainEnv = "EMCACHED_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// waitLimit bounds every wait on the child process; the tests fail, rather
// than hang, if it is exceeded.
const waitLimit = 30 * time.Second

type emcachedProc struct {
	cmd   *exec.Cmd
	lines chan string // stderr, line by line; closed at EOF
	mu    sync.Mutex
	log   strings.Builder // all of stderr, for failure messages
	done  chan struct{}   // closed once the process has exited
	err   error           // cmd.Wait's result, valid after done
}

// startEmcached runs emcached with args. As root it adds -u for the current
// user, since emcached, like memcached, refuses to run as root without it.
func startEmcached(t *testing.T, args ...string) *emcachedProc {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, append(userArgs(t), args...)...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &emcachedProc{cmd: cmd, lines: make(chan string, 1024), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default: // nobody is waiting for lines any more
			}
		}
		close(p.lines)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func userArgs(t *testing.T) []string {
	if !isRoot() {
		return nil
	}
	u, err := user.Current()
	require.NoError(t, err)
	return []string{"-u", u.Username}
}

func (p *emcachedProc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// waitLine waits for a stderr line containing s.
func (p *emcachedProc) waitLine(t *testing.T, s string) {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("emcached exited before logging %q; stderr:\n%s", s, p.stderr())
			}
			if strings.Contains(line, s) {
				return
			}
		case <-timeout:
			t.Fatalf("emcached did not log %q within %v; stderr:\n%s", s, waitLimit, p.stderr())
		}
	}
}

// exitCode waits for the process to end and returns its exit code.
func (p *emcachedProc) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitLimit):
		t.Fatalf("emcached did not exit within %v; stderr:\n%s", waitLimit, p.stderr())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	require.NoError(t, p.err)
	return 0
}

// freePort asks the kernel for a port that is free right now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, port, err := net.SplitHostPort(l.Addr().String())
	require.NoError(t, err)
	require.NoError(t, l.Close())
	return port
}

// roundTrip sends req and reads until the reply ends with end.
func roundTrip(t *testing.T, conn net.Conn, req, end string) string {
	t.Helper()
	require.NoError(t, conn.SetDeadline(time.Now().Add(waitLimit)))
	_, err := io.WriteString(conn, req)
	require.NoError(t, err)
	var got []byte
	buf := make([]byte, 4096)
	for !strings.HasSuffix(string(got), end) {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		require.NoError(t, err, "reply so far: %q", got)
	}
	return string(got)
}

func TestBinaryServesAndStopsOnShutdownCommand(t *testing.T) {
	port := freePort(t)
	p := startEmcached(t, "-p", port, "-l", "127.0.0.1", "-v", "-A", "-t", "2")
	p.waitLine(t, "server listening")

	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	require.NoError(t, err)
	defer conn.Close()
	got := roundTrip(t, conn, "set greeting 0 0 5\r\nhello\r\nget greeting\r\n", "END\r\n")
	require.Equal(t, "STORED\r\nVALUE greeting 0 5\r\nhello\r\nEND\r\n", got)

	_, err = io.WriteString(conn, "shutdown\r\n")
	require.NoError(t, err)
	require.Equal(t, 0, p.exitCode(t), p.stderr())
}

func TestBinaryFailsOnBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	require.NoError(t, err)

	p := startEmcached(t, "-p", port, "-l", "127.0.0.1")
	require.Equal(t, exitOSErr, p.exitCode(t), p.stderr())
	require.Contains(t, p.stderr(), "failed to listen")
}

func TestBinaryServesMetrics(t *testing.T) {
	port, metricsAddr := freePort(t), net.JoinHostPort("127.0.0.1", freePort(t))
	p := startEmcached(t, "-p", port, "-l", "127.0.0.1", "-v", "-A", "-o", "metrics_addr="+metricsAddr)
	p.waitLine(t, "server listening")

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Contains(t, string(body), "\nmemcached_up 1\n")
	require.Contains(t, string(body), "\n# TYPE emcache_memory_bytes gauge\n")

	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	require.NoError(t, err)
	defer conn.Close()
	require.Contains(t, roundTrip(t, conn, "stats settings\r\n", "END\r\n"), "STAT metrics_addr "+metricsAddr+"\r\n")
	_, err = io.WriteString(conn, "shutdown\r\n")
	require.NoError(t, err)
	require.Equal(t, 0, p.exitCode(t), p.stderr())
}

// memcached's -c counts its listeners and 5 descriptors per thread: a limit
// that leaves no client stops start-up, as there.
func TestBinaryRefusesMaxConnsTooLow(t *testing.T) {
	p := startEmcached(t, "-p", "-1", "-l", "127.0.0.1", "-c", "21", "-t", "4")
	require.Equal(t, exitUsage, p.exitCode(t))
	require.Contains(t, p.stderr(), "maxconns setting is too low")
}
