//go:build !unix

package main

import (
	"fmt"
	"io"
	"os"
)

func isDaemonChild() bool { return false }

func startDaemon(_ []string, _ bool, stderr io.Writer) int {
	fmt.Fprintln(stderr, "-d is not supported on this platform; run emcached under a service manager")
	return exitFail
}

func daemonReadyPipe() *os.File { return nil }

func detachDaemon(*os.File) error { return nil }
