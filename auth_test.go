package emcache

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var testUsers = []Credential{{User: "alice", Password: "secret"}, {User: "bob", Password: "pa:ss"}}

func TestParseCredentials(t *testing.T) {
	creds, err := ParseCredentials(strings.NewReader("alice:secret\r\n\nbob:pa:ss word\ncarol:\n  \ndave:x\x00y"))
	require.NoError(t, err)
	assert.Equal(t, []Credential{
		{User: "alice", Password: "secret"},
		{User: "bob", Password: "pa:ss word"},
		{User: "carol", Password: ""},
		{User: "dave", Password: "x"},
	}, creds)

	for _, bad := range []string{"alice\n", ":secret\n", "ok:1\nnocolon\n"} {
		_, err := ParseCredentials(strings.NewReader(bad))
		assert.Error(t, err, "%q", bad)
	}
	creds, err = ParseCredentials(strings.NewReader(""))
	require.NoError(t, err)
	assert.Empty(t, creds)
}

func TestAuthenticate(t *testing.T) {
	for _, tt := range []struct {
		user, pass string
		ok         bool
	}{
		{"alice", "secret", true},
		{"bob", "pa:ss", true},
		{"alice", "pa:ss", false},
		{"alice", "secre", false},
		{"alice", "secret2", false},
		{"alic", "secret", false},
		{"", "", false},
	} {
		assert.Equal(t, tt.ok, authenticate(testUsers, []byte(tt.user), []byte(tt.pass)), "%q %q", tt.user, tt.pass)
	}
	assert.False(t, authenticate(nil, []byte("alice"), []byte("secret")))
}

func TestServerConfigAuth(t *testing.T) {
	c := newProtoCache(t, Config{})
	for _, tt := range []struct {
		cfg  ServerConfig
		want string
	}{
		{ServerConfig{SASL: true, ASCIIAuth: true, Credentials: testUsers}, "exclude each other"},
		{ServerConfig{SASL: true, Protocol: "auto", Credentials: testUsers}, "binary protocol only"},
		{ServerConfig{SASL: true, Protocol: "ascii", Credentials: testUsers}, "binary protocol only"},
		{ServerConfig{ASCIIAuth: true, Protocol: "binary", Credentials: testUsers}, "text protocol only"},
		{ServerConfig{SASL: true}, "need Credentials"},
		{ServerConfig{ASCIIAuth: true, Credentials: []Credential{{Password: "x"}}}, "no User"},
		{ServerConfig{Protocol: "http"}, "not auto, ascii or binary"},
	} {
		tt.cfg.Addrs = []string{"127.0.0.1:0"}
		_, err := c.Serve(tt.cfg)
		assert.ErrorContains(t, err, tt.want, "%+v", tt.cfg)
	}
	users := []Credential{{User: "u", Password: "p"}}
	s, err := c.Serve(ServerConfig{Addrs: []string{"127.0.0.1:0"}, SASL: true, Credentials: users})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	users[0].Password = "changed"
	assert.Equal(t, "p", s.cfg.Credentials[0].Password, "the server keeps its own copy")
	assert.Equal(t, "binary", s.cfg.Protocol)
}

func saslAuth(mech, data string) binMsg { return bConcat(binOpSASLAuth, mech, data) }

func TestSASL(t *testing.T) {
	s, addr := startBinServer(t, ServerConfig{SASL: true, Credentials: testUsers}, Config{})
	get := bReq(binOpGet, "k")
	authed := func(req binMsg) binMsg {
		r := bOKNoCAS(req)
		r.val = []byte("Authenticated")
		return r
	}

	t.Run("list mechanisms and version need no authentication", func(t *testing.T) {
		list, ver := bReq(binOpSASLList, ""), bReq(binOpVersion, "")
		mechs, version := bOKNoCAS(list), bOKNoCAS(ver)
		mechs.val, version.val = []byte("PLAIN"), []byte(Version)
		binRoundTrip(t, protoDial(t, addr), []binMsg{list, ver}, []binMsg{mechs, version})
	})
	t.Run("unauthenticated command closes", func(t *testing.T) {
		conn := protoDial(t, addr)
		_, err := conn.Write(append(get.encode(), bReq(binOpNoop, "").encode()...))
		require.NoError(t, err)
		requireBinClosed(t, conn, bErr(get, binAuthError))
	})
	t.Run("success", func(t *testing.T) {
		conn := protoDial(t, addr)
		for _, data := range []string{"\x00alice\x00secret", "alice\x00alice\x00secret", "\x00bob\x00pa:ss"} {
			auth := saslAuth("PLAIN", data)
			binRoundTrip(t, conn, []binMsg{auth, get}, []binMsg{authed(auth), bErr(get, binNotFound)})
		}
	})
	t.Run("credentials in a step", func(t *testing.T) {
		start, step := saslAuth("plain", ""), bConcat(binOpSASLStep, "PLAIN", "\x00alice\x00secret")
		cont := bOKNoCAS(start)
		cont.status = binAuthContinue
		binRoundTrip(t, protoDial(t, addr), []binMsg{start, step, get}, []binMsg{cont, authed(step), bErr(get, binNotFound)})
	})
	t.Run("failure leaves the connection open for another try", func(t *testing.T) {
		conn := protoDial(t, addr)
		for _, bad := range []binMsg{
			saslAuth("PLAIN", "\x00alice\x00wrong"), saslAuth("PLAIN", "\x00alice\x00secret\x00"),
			saslAuth("PLAIN", "bob\x00alice\x00secret"), saslAuth("PLAIN", "alice"),
			saslAuth("CRAM-MD5", "\x00alice\x00secret"), bConcat(binOpSASLStep, "PLAIN", "\x00alice\x00secret"),
		} {
			binRoundTrip(t, conn, []binMsg{bad}, []binMsg{bErr(bad, binAuthError)})
		}
		long := saslAuth(strings.Repeat("P", binMaxMechLen+1), "x")
		binRoundTrip(t, conn, []binMsg{long}, []binMsg{bErr(long, binInvalid)})
		auth := saslAuth("PLAIN", "\x00alice\x00secret")
		binRoundTrip(t, conn, []binMsg{auth, get}, []binMsg{authed(auth), bErr(get, binNotFound)})
	})
	t.Run("a new exchange drops the authentication", func(t *testing.T) {
		conn := protoDial(t, addr)
		auth, bad := saslAuth("PLAIN", "\x00alice\x00secret"), saslAuth("PLAIN", "\x00alice\x00nope")
		_, err := conn.Write(append(append(auth.encode(), bad.encode()...), get.encode()...))
		require.NoError(t, err)
		requireBinClosed(t, conn, authed(auth), bErr(bad, binAuthError), bErr(get, binAuthError))
	})
	t.Run("text connections are closed", func(t *testing.T) {
		conn := protoDial(t, addr)
		_, err := io.WriteString(conn, "get k\r\nget k\r\nget k\r\nget k\r\n")
		require.NoError(t, err)
		requireProtoClosed(t, conn, "")
	})

	general := readBinStatsGroup(t, addr, "")
	assert.Equal(t, s.authStats.cmds.Load(), parseStatUint(t, general["auth_cmds"]))
	assert.Equal(t, s.authStats.errors.Load(), parseStatUint(t, general["auth_errors"]))
	assert.NotZero(t, s.authStats.errors.Load())
	assert.Less(t, s.authStats.errors.Load(), s.authStats.cmds.Load())
	settings := readBinStatsGroup(t, addr, "settings")
	assert.Equal(t, "yes", settings["auth_enabled_sasl"])
	assert.Equal(t, "binary", settings["binding_protocol"])
}

func readBinStatsGroup(t *testing.T, addr, group string) map[string]string {
	t.Helper()
	conn := protoDial(t, addr)
	auth := saslAuth("PLAIN", "\x00alice\x00secret")
	_, err := conn.Write(auth.encode())
	require.NoError(t, err)
	require.Equal(t, binOK, readBin(t, conn).status)
	return readBinStats(t, conn, group)
}

func parseStatUint(t *testing.T, v string) uint64 {
	t.Helper()
	var n uint64
	for _, c := range []byte(v) {
		require.True(t, c >= '0' && c <= '9', "%q", v)
		n = n*10 + uint64(c-'0')
	}
	return n
}

func TestASCIIAuth(t *testing.T) {
	s, addr := startProtoServer(t, ServerConfig{ASCIIAuth: true, Credentials: testUsers}, Config{})

	t.Run("unauthenticated", func(t *testing.T) {
		conn := protoDial(t, addr)
		// The version sentinel is refused too.
		_, err := io.WriteString(conn, "get a\r\nversion\r\nquit\r\nset a 0 0\r\n")
		require.NoError(t, err)
		want := strings.Repeat(rUnauthenticated, 4)
		got := make([]byte, len(want))
		_, err = io.ReadFull(conn, got)
		require.NoError(t, err)
		require.Equal(t, want, string(got))
	})
	t.Run("success", func(t *testing.T) {
		conn := protoDial(t, addr)
		require.Equal(t, "STORED\r\nSTORED\r\nVALUE a 0 1\r\nx\r\nEND\r\n",
			protoRoundTrip(t, conn, "set auth 0 0 12\r\nalice secret\r\nset a 0 0 1\r\nx\r\nget a\r\n"))
		conn = protoDial(t, addr)
		require.Equal(t, "STORED\r\n", protoRoundTrip(t, conn, "set anything 5 5 15 noreply\r\nbob pa:ss extra\r\n"))
	})
	t.Run("failures", func(t *testing.T) {
		conn := protoDial(t, addr)
		for _, tt := range []struct{ req, want string }{
			{"set auth 0 0 11\r\nalice wrong\r\n", rAuthFailure},
			{"set auth 0 0 5\r\nalice\r\n", rAuthBadFormat},
			{"set auth 0 0 12\r\nalice secretXX", rAuthBadEnd},
			{"set auth 0 0 x\r\n", rUnauthenticated},
			{"add auth 0 0 12\r\n", rUnauthenticated},
		} {
			_, err := io.WriteString(conn, tt.req)
			require.NoError(t, err)
			got := make([]byte, len(tt.want))
			_, err = io.ReadFull(conn, got)
			require.NoError(t, err)
			require.Equal(t, tt.want, string(got), "%q", tt.req)
		}
		// Still allowed to try again.
		require.Equal(t, "STORED\r\n"+protoSentinelReply,
			protoRoundTrip(t, conn, "set auth 0 0 12\r\nalice secret\r\nversion\r\n"))
	})
	t.Run("split reads", func(t *testing.T) {
		f := newProtoFeeder(s)
		req := "set auth 0 0 12\r\nalice secret\r\nversion\r\n"
		for i := range len(req) {
			f.write(t, []byte(req[i:i+1]))
		}
		require.Equal(t, "STORED\r\n"+protoSentinelReply, string(f.out))
	})
	t.Run("bounded", func(t *testing.T) {
		conn := protoDial(t, addr)
		_, err := io.WriteString(conn, strings.Repeat("x", asciiAuthMaxLine+1))
		require.NoError(t, err)
		requireProtoClosed(t, conn, "")
		conn = protoDial(t, addr)
		_, err = io.WriteString(conn, "set auth 0 0 4000000000\r\n")
		require.NoError(t, err)
		requireProtoClosed(t, conn, rAuthFailure)
	})
	t.Run("binary magic is text", func(t *testing.T) {
		conn := protoDial(t, addr)
		_, err := io.WriteString(conn, "\x80\x0b\r\n")
		require.NoError(t, err)
		got := make([]byte, len(rUnauthenticated))
		_, err = io.ReadFull(conn, got)
		require.NoError(t, err)
		require.Equal(t, rUnauthenticated, string(got))
	})

	conn := protoDial(t, addr)
	require.Equal(t, "STORED\r\n", protoRoundTrip(t, conn, "set auth 0 0 12\r\nalice secret\r\n"))
	stats := readProtoStats(t, conn, "stats")
	assert.Equal(t, s.authStats.cmds.Load(), parseStatUint(t, stats["auth_cmds"]))
	assert.Equal(t, s.authStats.errors.Load(), parseStatUint(t, stats["auth_errors"]))
	assert.NotZero(t, s.authStats.errors.Load())
	settings := readProtoStats(t, conn, "stats settings")
	assert.Equal(t, "yes", settings["auth_enabled_ascii"])
	assert.Equal(t, "ascii", settings["binding_protocol"])
}
