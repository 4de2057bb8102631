//go:build unix

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
)

// daemonEnv marks the re-executed daemon process. Go cannot fork, so -d runs
// the same binary again with the same arguments in a new session instead.
const daemonEnv = "EMCACHED_DAEMON_CHILD"

// daemonReadyFD is where the daemon finds the pipe on which it reports that
// it is serving (the first of cmd.ExtraFiles).
const daemonReadyFD = 3

// readyToken ends a successful start; any other line the daemon sends before
// it is a startup message for the operator.
const readyToken = "\x00emcached ready"

func isDaemonChild() bool { return os.Getenv(daemonEnv) == "1" }

// startDaemon starts the daemon and waits until it serves or fails. Unlike
// memcached, whose parent exits right after fork, the caller learns of a
// failed start (a busy port, say) from this process's exit code and stderr.
func startDaemon(args []string, verbose bool, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "failed to daemonize: %v\n", err)
		return exitOSErr
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "failed to daemonize: %v\n", err)
		return exitOSErr
	}
	defer r.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		w.Close()
		fmt.Fprintf(stderr, "failed to daemonize: %v\n", err)
		return exitOSErr
	}
	defer devnull.Close()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	if verbose {
		// memcached keeps its stdio open with -v so the log stays visible.
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	}
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close() // the daemon holds the only write end now, so EOF means it is gone
	if err != nil {
		fmt.Fprintf(stderr, "failed to daemonize: %v\n", err)
		return exitOSErr
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if sc.Text() == readyToken {
			cmd.Process.Release()
			return 0
		}
		fmt.Fprintln(stderr, sc.Text())
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		return ee.ExitCode()
	}
	fmt.Fprintln(stderr, "daemon exited before it started serving")
	return exitFail
}

// daemonReadyPipe returns the pipe to the waiting parent, or nil when this
// process is not a daemon child.
func daemonReadyPipe() *os.File {
	if !isDaemonChild() {
		return nil
	}
	os.Unsetenv(daemonEnv)
	return os.NewFile(daemonReadyFD, "daemon-ready")
}

// detachDaemon finishes daemon start-up: the working directory is left so it
// cannot pin a mount (after the pidfile and socket paths, which may be
// relative, have been used), then the parent is told to exit.
func detachDaemon(ready *os.File) error {
	if err := os.Chdir("/"); err != nil {
		return err
	}
	_, err := io.WriteString(ready, readyToken+"\n")
	ready.Close()
	return err
}
