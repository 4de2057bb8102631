package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWritePortFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ports")
	require.NoError(t, writePortFile(path, []net.Addr{
		&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 11211},
		&net.TCPAddr{IP: net.IPv6unspecified, Port: 11212},
		&net.TCPAddr{IP: net.IPv6loopback, Port: 11213},
		&net.UnixAddr{Name: "/tmp/mc.sock", Net: "unix"},
	}, []net.Addr{
		&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 11311},
		&net.UDPAddr{IP: net.IPv6unspecified, Port: 11312},
	}))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "TCP INET: 11211\nTCP INET: 11212\nTCP INET6: 11212\nTCP INET6: 11213\n"+
		"UDP INET: 11311\nUDP INET: 11312\nUDP INET6: 11312\n", string(got))
	assert.NoFileExists(t, path+".lck")
}

// With -p -1 the port file is how a script learns the port (memcached's
// t/issue_67.t).
func TestBinaryWritesPortFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ports")
	t.Setenv(portFileEnv, path)
	p := startEmcached(t, "-p", "-1", "-l", "127.0.0.1", "-v", "-t", "1")
	p.waitLine(t, "server listening")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	m := regexp.MustCompile(`^TCP INET: (\d+)\n$`).FindStringSubmatch(string(got))
	require.NotNil(t, m, "%q", got)
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", m[1]))
	require.NoError(t, err)
	defer conn.Close()
	assert.Equal(t, "END\r\n", roundTrip(t, conn, "get nothing\r\n", "END\r\n"))
}

// -U -1 serves UDP on a port the kernel picks, which the port file names
// after the TCP ones (memcached's t/issue_67.t), on the -l address.
func TestBinaryServesUDP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ports")
	t.Setenv(portFileEnv, path)
	p := startEmcached(t, "-p", "-1", "-U", "-1", "-l", "127.0.0.1", "-v", "-t", "2")
	p.waitLine(t, "server listening")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	m := regexp.MustCompile(`^TCP INET: (\d+)\nUDP INET: (\d+)\n$`).FindStringSubmatch(string(got))
	require.NotNil(t, m, "%q", got)

	conn, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", m[2]))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(waitLimit)))
	_, err = conn.Write([]byte("\x12\x34\x00\x00\x00\x01\x00\x00stats settings\r\n"))
	require.NoError(t, err)
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, []byte{0x12, 0x34, 0, 0}, buf[:4], "request id and first sequence number")
	assert.Contains(t, string(buf[8:n]), "STAT udpport "+m[2]+"\r\n")
	assert.Contains(t, string(buf[8:n]), "STAT num_threads_per_udp 2\r\n")
}
