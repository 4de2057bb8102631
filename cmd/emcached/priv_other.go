//go:build !unix

package main

import "errors"

type credential struct {
	name     string
	uid, gid int
}

func isRoot() bool { return false }

var errNoUsers = errors.New("switching user is not supported on this platform")

func lookupUser(string) (*credential, error) { return nil, errNoUsers }
func dropPrivileges(*credential) error       { return errNoUsers }
func chownSocket(string, *credential) error  { return errNoUsers }
func raiseFileLimit(uint64) error            { return nil }
