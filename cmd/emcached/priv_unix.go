//go:build unix

package main

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// credential is the identity -u switches to.
type credential struct {
	name     string
	uid, gid int
}

func isRoot() bool { return os.Getuid() == 0 || os.Geteuid() == 0 }

func lookupUser(name string) (*credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q is not numeric", name, u.Uid)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q is not numeric", name, u.Gid)
	}
	return &credential{name: name, uid: uid, gid: gid}, nil
}

// dropPrivileges switches the whole process to c. Supplementary groups go
// first (root's would otherwise survive), then the group, then the user,
// since after setuid the process may no longer change its groups. Go applies
// each call to every OS thread of the process.
func dropPrivileges(c *credential) error {
	if err := syscall.Setgroups(nil); err != nil && err != syscall.EPERM {
		// EPERM: already unprivileged, as memcached reasons too.
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(c.gid); err != nil {
		return fmt.Errorf("setgid %d: %w", c.gid, err)
	}
	if err := syscall.Setuid(c.uid); err != nil {
		return fmt.Errorf("setuid %d: %w", c.uid, err)
	}
	return nil
}

// chownSocket gives the UNIX socket file to the user the server runs as, so
// that with the default 0700 mask that user's clients can still connect, as
// they can with memcached, which creates the socket after switching user.
func chownSocket(path string, c *credential) error {
	return os.Chown(path, c.uid, c.gid)
}

// raiseFileLimit makes room for n descriptors. memcached sets RLIMIT_NOFILE to
// exactly -c; emcached only raises it, because the Go runtime holds
// descriptors of its own.
func raiseFileLimit(n uint64) error {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return err
	}
	if uint64(r.Cur) >= n {
		return nil
	}
	if uint64(r.Max) < n {
		setRlim(&r.Max, n) // only root may do this; Setrlimit reports otherwise
	}
	setRlim(&r.Cur, n)
	return unix.Setrlimit(unix.RLIMIT_NOFILE, &r)
}

// setRlim stores v whatever the platform's integer type for limits is.
func setRlim[T int64 | uint64](p *T, v uint64) { *p = T(v) }
