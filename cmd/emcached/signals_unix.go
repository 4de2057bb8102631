//go:build unix

package main

import (
	"os"
	"os/signal"
	"syscall"
)

// stopSignals end the server gracefully, saving a memory file (-e) for the
// next start. SIGUSR1 is memcached's graceful stop; memcached saves on no
// other, but SIGTERM is what service managers send.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGUSR1}

// ignoreSignals ignores SIGHUP, which memcached catches and ignores outside
// its proxy build, so a closed terminal does not end the server.
func ignoreSignals() { signal.Ignore(syscall.SIGHUP) }
