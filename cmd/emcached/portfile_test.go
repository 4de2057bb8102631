package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"

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
