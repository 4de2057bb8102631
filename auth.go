package emcache

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
)

// This file holds memcached's two ways of making clients authenticate:
// SASL over the binary protocol (-S; memcached's sasl_defs.c and the SASL
// part of proto_bin.c), of which emcache serves the PLAIN mechanism, and the
// text protocol's token (-Y; memcached's authfile.c and
// try_read_command_asciiauth).

// Credential is a user name and password that SASL or ASCII authentication
// accepts (see [ServerConfig]).
type Credential struct {
	User     string
	Password string
}

// ParseCredentials reads credentials in the format of memcached's -Y file
// and of the file MEMCACHED_SASL_PWDB names: one user:password per line.
// The password is the rest of the line, colons included; blank lines are
// skipped and a line without a colon is an error.
func ParseCredentials(r io.Reader) ([]Credential, error) {
	var creds []Credential
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		l := sc.Text()
		if strings.TrimSpace(l) == "" {
			continue
		}
		user, pass, ok := strings.Cut(l, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("emcache: credentials line %d: want user:password", line)
		}
		// memcached ends the password at a CR (DOS line ends) or NUL.
		if i := strings.IndexAny(pass, "\r\x00"); i >= 0 {
			pass = pass[:i]
		}
		creds = append(creds, Credential{User: user, Password: pass})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("emcache: read credentials: %w", err)
	}
	return creds, nil
}

// authenticate reports whether user and pass are one of creds. Every entry
// is compared in full, in constant time, so the reply's timing does not tell
// how much of a guess was right.
func authenticate(creds []Credential, user, pass []byte) bool {
	match := 0
	for i := range creds {
		u := subtle.ConstantTimeCompare(user, []byte(creds[i].User))
		p := subtle.ConstantTimeCompare(pass, []byte(creds[i].Password))
		match |= u & p
	}
	return match == 1
}

// authConn is a connection's authentication state.
type authConn struct {
	authed bool
	// saslStep is set when a PLAIN exchange started without credentials
	// and awaits them in a SASL_STEP.
	saslStep bool
	// token is the size, CRLF included, of the -Y token data block the
	// connection announced and has yet to send; 0 while none is due.
	token int
}

// authStats are memcached's auth_cmds and auth_errors.
type authStats struct {
	cmds, errors atomic.Uint64
}

func (s *Server) countAuth(ok bool) {
	s.authStats.cmds.Add(1)
	if !ok {
		s.authStats.errors.Add(1)
	}
}

// Replies of the text protocol's authentication.
const (
	rUnauthenticated = "CLIENT_ERROR unauthenticated\r\n"
	rAuthBadEnd      = "CLIENT_ERROR bad command line termination\r\n"
	rAuthBadFormat   = "CLIENT_ERROR bad authentication token format\r\n"
	rAuthFailure     = "CLIENT_ERROR authentication failure\r\n"
)

const (
	// asciiAuthMaxLine is how much memcached buffers looking for the line
	// end of an unauthenticated connection before it hangs up.
	asciiAuthMaxLine = 1024
	// asciiAuthMaxToken bounds the token data block: memcached keeps
	// credentials in lines of at most 256 bytes, so a larger block cannot
	// match and is refused rather than buffered.
	asciiAuthMaxToken = 1024
)

// asciiAuth serves a text connection that has not authenticated: its
// command must be `set <key> <flags> <exptime> <bytes>` whose data block is
// "user password"; anything else is refused. It returns the bytes of b it
// consumed and whether it answered a request; neither means it needs more
// input.
func (s *Server) asciiAuth(pc *protoConn, b, out []byte) (int, []byte, bool, action) {
	a := &pc.auth
	n := 0
	if a.token == 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			if len(b) > asciiAuthMaxLine {
				return len(b), out, true, actClose
			}
			return 0, out, false, actNone
		}
		n = nl + 1
		line := b[:nl]
		if z := bytes.IndexByte(line, 0); z >= 0 {
			line = line[:z]
		}
		var t [maxTokens][]byte
		nt := tokenize(line, &t)
		var size uint64
		ok := false
		if nt >= 6 && string(t[0]) == "set" {
			size, ok = safeStrtoul(t[4]) // the CR, if any, ends the number
		}
		if !ok {
			return n, append(out, rUnauthenticated...), true, actNone
		}
		if uint32(size) > asciiAuthMaxToken {
			s.countAuth(false)
			return n, append(out, rAuthFailure...), true, actClose
		}
		a.token = int(uint32(size)) + 2
	}
	if len(b)-n < a.token {
		return n, out, false, actNone
	}
	data := b[n : n+a.token]
	n += a.token
	a.token = 0
	if !bytes.HasSuffix(data, []byte(rCRLF)) {
		return n, append(out, rAuthBadEnd...), true, actNone
	}
	data = data[:len(data)-2]
	if z := bytes.IndexByte(data, 0); z >= 0 {
		data = data[:z]
	}
	var t [maxTokens][]byte
	if tokenize(data, &t) < 3 {
		return n, append(out, rAuthBadFormat...), true, actNone
	}
	if !authenticate(s.cfg.Credentials, t[0], t[1]) {
		s.countAuth(false)
		return n, append(out, rAuthFailure...), true, actNone
	}
	a.authed = true
	s.countAuth(true)
	return n, append(out, rStored...), true, actNone
}

// binSASL serves SASL_LIST_MECHS, SASL_AUTH and SASL_STEP once SASL is on.
// The only mechanism is PLAIN: authzid NUL authcid NUL password, with no
// authorization of one user as another. Like memcached, every SASL request
// first drops the connection's authentication, and a failed attempt leaves
// the connection open for another.
func (s *Server) binSASL(pc *protoConn, out []byte, h *binHeader, base uint8, mech, data []byte) []byte {
	a := &pc.auth
	a.authed = false
	switch base {
	case binOpSASLList:
		return appendBinText(out, h, binOK, "PLAIN")
	case binOpSASLAuth:
		a.saslStep = false
		if !strings.EqualFold(string(mech), "PLAIN") {
			s.countAuth(false)
			return appendBinError(out, h, binAuthError)
		}
		if len(data) == 0 {
			// The client sends its credentials in the next step.
			a.saslStep = true
			return appendBinHeader(out, h, binAuthContinue, 0, 0, 0, 0)
		}
	case binOpSASLStep:
		if !a.saslStep {
			s.countAuth(false)
			return appendBinError(out, h, binAuthError)
		}
		a.saslStep = false
	}
	user, pass, ok := plainCredentials(data)
	if !ok || !authenticate(s.cfg.Credentials, user, pass) {
		s.countAuth(false)
		return appendBinError(out, h, binAuthError)
	}
	a.authed = true
	s.countAuth(true)
	return appendBinText(out, h, binOK, "Authenticated")
}

// plainCredentials splits a SASL PLAIN message. An authorization identity
// other than the user's own is refused, as Cyrus SASL does by default.
func plainCredentials(msg []byte) (user, pass []byte, ok bool) {
	authz, rest, ok1 := bytes.Cut(msg, []byte{0})
	user, pass, ok2 := bytes.Cut(rest, []byte{0})
	if !ok1 || !ok2 || len(user) == 0 || (len(authz) > 0 && !bytes.Equal(authz, user)) {
		return nil, nil, false
	}
	return user, pass, true
}
