package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/emcache/emcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	users := write("users", "alice:secret\nbob:pw:more\n")
	env := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}

	creds, err := loadCredentials(&options{}, env(nil))
	require.NoError(t, err)
	assert.Nil(t, creds, "no authentication, nothing read")

	// -Y: the password is the rest of the line.
	creds, err = loadCredentials(&options{authFile: users}, env(nil))
	require.NoError(t, err)
	assert.Equal(t, []emcache.Credential{{User: "alice", Password: "secret"}, {User: "bob", Password: "pw:more"}}, creds)

	// -S: the file MEMCACHED_SASL_PWDB names; fields after the password
	// are not part of it.
	creds, err = loadCredentials(&options{sasl: true}, env(map[string]string{saslPasswordsEnv: users}))
	require.NoError(t, err)
	assert.Equal(t, []emcache.Credential{{User: "alice", Password: "secret"}, {User: "bob", Password: "pw"}}, creds)

	for _, tt := range []struct {
		o    options
		env  map[string]string
		want string
	}{
		{options{sasl: true}, nil, saslPasswordsEnv},
		{options{authFile: filepath.Join(dir, "missing")}, nil, "Could not open the auth file"},
		{options{authFile: write("bad", "alice\n")}, nil, "malformed entry"},
		{options{authFile: write("empty", "\n")}, nil, "no user:password entries"},
	} {
		_, err := loadCredentials(&tt.o, env(tt.env))
		require.Error(t, err)
		assert.Contains(t, err.Error(), tt.want)
		var ee *exitError
		require.True(t, errors.As(err, &ee))
		assert.Equal(t, exitFail, ee.code)
	}
}
