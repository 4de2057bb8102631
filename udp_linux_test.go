package emcache

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A reply the socket has no room for waits for room and is then sent
// whole, and the descriptor reads no datagram meanwhile. A Unix datagram
// socket stands in for the UDP one: its peer's full queue makes sendmsg
// say EAGAIN, which UDP on loopback never does (a full receiver drops
// instead). The worker is driven by hand, as its poller would drive it.
func TestUDPReplyWaitsForRoom(t *testing.T) {
	_, s := startServer(t, ServerConfig{Workers: 1})
	val := strings.Repeat("0123456789", 3000)
	want := tcpReply(t, s, fmt.Sprintf("set big 0 0 %d\r\n%s\r\nget big\r\n", len(val), val), "END\r\n")
	want = strings.TrimPrefix(want, "STORED\r\n")

	dir := t.TempDir()
	srvAddr := &unix.SockaddrUnix{Name: filepath.Join(dir, "srv")}
	unixgram := func(a *unix.SockaddrUnix) int {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		require.NoError(t, unix.Bind(fd, a))
		return fd
	}
	sfd := unixgram(srvAddr)
	cfd := unixgram(&unix.SockaddrUnix{Name: filepath.Join(dir, "cli")})
	t.Cleanup(func() { unix.Close(cfd) })

	w := &worker{s: s}
	p, err := newPoller()
	require.NoError(t, err)
	t.Cleanup(func() { p.close() })
	w.p = p
	require.NoError(t, p.add(sfd))
	c := w.addUDP(&udpSocket{name: "unixgram"}, sfd)
	t.Cleanup(func() { w.closeConn(c) })

	send := func(id uint16, req string) {
		require.NoError(t, unix.Sendto(cfd, udpFrame(id, 0, 1, 0, req), 0, srvAddr))
	}
	send(1, "get big\r\n")
	send(2, "version\r\n")
	w.serveUDP(c)
	require.Equal(t, wantWrite, c.interest, "the reply waits for room")

	// Drain what the socket queued, then let the worker go on, until the
	// reply to 1 and then the reply to 2 are out.
	var dgrams [][]byte
	buf := make([]byte, 64<<10)
	for range 100 {
		for {
			n, _, err := unix.Recvfrom(cfd, buf, unix.MSG_DONTWAIT)
			if err == unix.EAGAIN {
				break
			}
			require.NoError(t, err)
			require.LessOrEqual(t, n, udpMaxPayload)
			dgrams = append(dgrams, slices.Clone(buf[:n]))
		}
		if c.interest != wantWrite && len(dgrams) > 0 && binary.BigEndian.Uint16(dgrams[len(dgrams)-1]) == 2 {
			break
		}
		w.serveUDP(c) // as the poller reports the socket writable, then readable
	}
	total := (len(want) + udpDataSize - 1) / udpDataSize
	require.Len(t, dgrams, total+1)
	var got strings.Builder
	for seq, d := range dgrams[:total] {
		require.Equal(t, udpFrame(1, uint16(seq), uint16(total), 0, ""), d[:udpHeaderLen], "datagram %d", seq)
		got.Write(d[udpHeaderLen:])
	}
	assert.Equal(t, want, got.String())
	assert.Equal(t, string(udpFrame(2, 0, 1, 0, "VERSION "+Version+"\r\n")), string(dgrams[total]),
		"the next datagram is read once the reply is out")
}
