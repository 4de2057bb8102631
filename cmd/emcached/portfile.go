package main

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// portFileEnv names the file memcached writes its TCP ports to at start-up
// (one "TCP INET: <port>" or "TCP INET6: <port>" line per listener), so a
// script that started it with -p -1 learns the port the kernel picked.
const portFileEnv = "MEMCACHED_PORT_FILENAME"

// writePortFile writes the port lines of addrs to path as memcached does:
// into path.lck, renamed to path once complete, so a reader polling for
// path never sees half of it. A wildcard IPv6 listener also accepts IPv4
// and stands for the pair of sockets memcached opens, so it gets both
// lines.
func writePortFile(path string, addrs []net.Addr) error {
	var b strings.Builder
	for _, a := range addrs {
		ta, ok := a.(*net.TCPAddr)
		if !ok {
			continue
		}
		if ta.IP.To4() != nil || ta.IP.IsUnspecified() {
			fmt.Fprintf(&b, "TCP INET: %d\n", ta.Port)
		}
		if ta.IP.To4() == nil {
			fmt.Fprintf(&b, "TCP INET6: %d\n", ta.Port)
		}
	}
	tmp := path + ".lck"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
