package main

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// portFileEnv names the file memcached writes its ports to at start-up (one
// "TCP INET: <port>" or "TCP INET6: <port>" line per listener, then "UDP
// INET: <port>" or "UDP INET6: <port>" per UDP socket), so a script that
// started it with -p -1 or -U -1 learns the ports the kernel picked.
const portFileEnv = "MEMCACHED_PORT_FILENAME"

// writePortFile writes the port lines of the TCP listeners' and the UDP
// sockets' addresses to path as memcached does: into path.lck, renamed to
// path once complete, so a reader polling for path never sees half of it.
// A wildcard IPv6 socket also serves IPv4 and stands for the pair of
// sockets memcached opens, so it gets both lines.
func writePortFile(path string, tcp, udp []net.Addr) error {
	var b strings.Builder
	line := func(proto string, ip net.IP, port int) {
		if ip.To4() != nil || ip.IsUnspecified() {
			fmt.Fprintf(&b, "%s INET: %d\n", proto, port)
		}
		if ip.To4() == nil {
			fmt.Fprintf(&b, "%s INET6: %d\n", proto, port)
		}
	}
	for _, a := range tcp {
		if ta, ok := a.(*net.TCPAddr); ok {
			line("TCP", ta.IP, ta.Port)
		}
	}
	for _, a := range udp {
		if ua, ok := a.(*net.UDPAddr); ok {
			line("UDP", ua.IP, ua.Port)
		}
	}
	tmp := path + ".lck"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
