package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseArgsDefaults(t *testing.T) {
	o, err := parseArgs(nil)
	require.NoError(t, err)
	assert.Equal(t, modeServe, o.mode)
	assert.Equal(t, 11211, o.port)
	assert.Equal(t, 4, o.threads)
	assert.Equal(t, int64(64<<20), o.maxBytes)
	assert.Equal(t, 1024, o.maxConns)
	assert.Equal(t, 1<<20, o.maxItemSize)
	assert.Equal(t, 20, o.reqsPerEvent)
	assert.Equal(t, 1024, o.backlog)
	assert.Equal(t, 0o700, int(o.unixMask))
	assert.Zero(t, o.verbosity)
	assert.Zero(t, o.idleTimeout)
	assert.False(t, o.noEvict || o.noCAS || o.noFlush || o.shutdownCmd || o.daemon)
	assert.Empty(t, o.warnings)
}

func TestParseArgsValid(t *testing.T) {
	tests := []struct {
		args     []string
		check    func(t *testing.T, o *options)
		warnings int
	}{
		{[]string{"-p11211"}, func(t *testing.T, o *options) { assert.Equal(t, 11211, o.port) }, 0},
		{[]string{"-p", "12345"}, func(t *testing.T, o *options) { assert.Equal(t, 12345, o.port) }, 0},
		{[]string{"--port=0"}, func(t *testing.T, o *options) { assert.Equal(t, 0, o.port) }, 0},
		{[]string{"--port", "-1"}, func(t *testing.T, o *options) { assert.Equal(t, -1, o.port) }, 0},
		{[]string{"--po", "99"}, func(t *testing.T, o *options) { assert.Equal(t, 99, o.port) }, 0},
		{[]string{"-U", "0", "--udp-port=0"}, func(t *testing.T, o *options) {
			assert.Zero(t, o.udpPort)
			assert.Equal(t, 11211, o.port)
		}, 0},
		// memcached serves TCP on -U's port unless -p names one.
		{[]string{"-U", "11222"}, func(t *testing.T, o *options) {
			assert.Equal(t, 11222, o.udpPort)
			assert.Equal(t, 11222, o.port)
		}, 0},
		{[]string{"--udp-port=-1"}, func(t *testing.T, o *options) {
			assert.Equal(t, -1, o.udpPort)
			assert.Equal(t, -1, o.port)
		}, 0},
		{[]string{"-U", "11233", "-p", "11232"}, func(t *testing.T, o *options) {
			assert.Equal(t, 11233, o.udpPort)
			assert.Equal(t, 11232, o.port)
		}, 0},
		{[]string{"-p", "0", "-U", "11252"}, func(t *testing.T, o *options) {
			assert.Equal(t, 11252, o.udpPort)
			assert.Zero(t, o.port)
		}, 0},
		{[]string{"-vv"}, func(t *testing.T, o *options) { assert.Equal(t, 2, o.verbosity) }, 0},
		{[]string{"-v", "-v", "-v"}, func(t *testing.T, o *options) { assert.Equal(t, 3, o.verbosity) }, 0},
		{[]string{"--verbose"}, func(t *testing.T, o *options) { assert.Equal(t, 1, o.verbosity) }, 0},
		{[]string{"--verbose=3"}, func(t *testing.T, o *options) { assert.Equal(t, 3, o.verbosity) }, 0},
		{[]string{"-vd"}, func(t *testing.T, o *options) {
			assert.Equal(t, 1, o.verbosity)
			assert.True(t, o.daemon)
		}, 0},
		{[]string{"-MCFAd"}, func(t *testing.T, o *options) {
			assert.True(t, o.noEvict && o.noCAS && o.noFlush && o.shutdownCmd && o.daemon)
		}, 0},
		{[]string{"--disable-evictions", "--disable-cas", "--disable-flush-all", "--enable-shutdown", "--daemon"}, func(t *testing.T, o *options) {
			assert.True(t, o.noEvict && o.noCAS && o.noFlush && o.shutdownCmd && o.daemon)
		}, 0},
		{[]string{"-vp0"}, func(t *testing.T, o *options) {
			assert.Equal(t, 1, o.verbosity)
			assert.Equal(t, 0, o.port)
		}, 0},
		{[]string{"-m", "128"}, func(t *testing.T, o *options) { assert.Equal(t, int64(128<<20), o.maxBytes) }, 0},
		{[]string{"-m", "64m"}, func(t *testing.T, o *options) { assert.Equal(t, int64(64<<20), o.maxBytes) }, 0},
		{[]string{"--memory-limit=2g"}, func(t *testing.T, o *options) { assert.Equal(t, int64(2<<30), o.maxBytes) }, 0},
		{[]string{"-m", "4096k"}, func(t *testing.T, o *options) { assert.Equal(t, int64(4<<20), o.maxBytes) }, 0},
		{[]string{"-I", "1024"}, func(t *testing.T, o *options) { assert.Equal(t, 1024, o.maxItemSize) }, 0},
		{[]string{"-I", "1k"}, func(t *testing.T, o *options) { assert.Equal(t, 1024, o.maxItemSize) }, 0},
		{[]string{"-I", "512K"}, func(t *testing.T, o *options) { assert.Equal(t, 512<<10, o.maxItemSize) }, 0},
		{[]string{"-I2m"}, func(t *testing.T, o *options) { assert.Equal(t, 2<<20, o.maxItemSize) }, 0},
		{[]string{"--max-item-size=32m"}, func(t *testing.T, o *options) { assert.Equal(t, 32<<20, o.maxItemSize) }, 0},
		{[]string{"-I", "512k", "-m", "1"}, func(t *testing.T, o *options) { assert.Equal(t, 512<<10, o.maxItemSize) }, 0},
		{[]string{"-m", "2048", "-I", "1024m"}, func(t *testing.T, o *options) { assert.Equal(t, 1<<30, o.maxItemSize) }, 0},
		{[]string{"-I", "1024m", "-m", "2048"}, func(t *testing.T, o *options) { assert.Equal(t, 1<<30, o.maxItemSize) }, 0},
		{[]string{"-Z", "-o", "ssl_chain_cert=c.pem,ssl_key=k.pem,ssl_ca_cert=ca.pem,ssl_verify_mode=2", "-o", "ssl_min_version=3,ssl_session_cache,ssl_wbuf_size=64,ssl_ciphers=AES128-SHA"}, func(t *testing.T, o *options) {
			assert.True(t, o.tls)
			assert.Equal(t, sslOptions{chainCert: "c.pem", key: "k.pem", caCert: "ca.pem", ciphers: "AES128-SHA",
				verifyMode: 2, minVersion: 3, wbufSize: 64 << 10, sessionCache: true}, o.ssl)
		}, 0},
		{[]string{"-Z", "-l", "notls:127.0.0.1:5000,127.0.0.1:6000"}, func(t *testing.T, o *options) {
			assert.Equal(t, []string{"127.0.0.1:6000"}, o.listen)
			assert.Equal(t, []string{"127.0.0.1:5000"}, o.plainListen)
		}, 0},
		{[]string{"-c", "10", "-t", "2", "-R", "5", "-b", "7"}, func(t *testing.T, o *options) {
			assert.Equal(t, 10, o.maxConns)
			assert.Equal(t, 2, o.threads)
			assert.Equal(t, 5, o.reqsPerEvent)
			assert.Equal(t, 7, o.backlog)
		}, 0},
		{[]string{"--conn-limit=10", "--threads=2", "--max-reqs-per-event=5", "--listen-backlog=7"}, func(t *testing.T, o *options) {
			assert.Equal(t, 10, o.maxConns)
			assert.Equal(t, 2, o.threads)
			assert.Equal(t, 5, o.reqsPerEvent)
			assert.Equal(t, 7, o.backlog)
		}, 0},
		{[]string{"-t", "65"}, func(t *testing.T, o *options) { assert.Equal(t, 65, o.threads) }, 1},
		{[]string{"-b", "0"}, func(t *testing.T, o *options) { assert.Equal(t, 1, o.backlog) }, 1},
		{[]string{"-B", "auto"}, func(t *testing.T, o *options) {}, 0},
		{[]string{"--protocol=ascii"}, func(t *testing.T, o *options) { assert.Equal(t, "ascii", o.protocol) }, 0},
		{[]string{"-B", "binary"}, func(t *testing.T, o *options) { assert.Equal(t, "binary", o.protocol) }, 0},
		{[]string{"-S"}, func(t *testing.T, o *options) { assert.True(t, o.sasl) }, 0},
		{[]string{"-S", "-B", "binary"}, func(t *testing.T, o *options) { assert.True(t, o.sasl) }, 0},
		{[]string{"--auth-file=/etc/auth", "-B", "ascii"}, func(t *testing.T, o *options) { assert.Equal(t, "/etc/auth", o.authFile) }, 0},
		{[]string{"-o", "idle_timeout=5"}, func(t *testing.T, o *options) { assert.Equal(t, 5*time.Second, o.idleTimeout) }, 0},
		{[]string{"--extended=modern,idle_timeout=0"}, func(t *testing.T, o *options) { assert.Zero(t, o.idleTimeout) }, 0},
		{[]string{"-o", "hashpower=20,lru_crawler,no_lru_maintainer", "-o", "slab_chunk_max=512"}, func(t *testing.T, o *options) {
			assert.False(t, o.noCrawler)
		}, 3},
		{[]string{"-o", "no_modern"}, func(t *testing.T, o *options) { assert.True(t, o.noCrawler) }, 0},
		{[]string{"-o", "no_modern,lru_crawler"}, func(t *testing.T, o *options) { assert.False(t, o.noCrawler) }, 0},
		{[]string{"-o", "ssl_chain_cert=/x,ext_path=/d/f:5G,slab_automove=2,maxconns_fast"}, func(t *testing.T, o *options) { assert.Equal(t, "/x", o.ssl.chainCert) }, 3},
		{[]string{"-l", "127.0.0.1,::1;10.0.0.1"}, func(t *testing.T, o *options) {
			assert.Equal(t, []string{"127.0.0.1", "::1", "10.0.0.1"}, o.listen)
		}, 0},
		{[]string{"-l", "127.0.0.1", "--listen=[::1]:5000"}, func(t *testing.T, o *options) {
			assert.Equal(t, []string{"127.0.0.1", "[::1]:5000"}, o.listen)
		}, 0},
		{[]string{"-s", "/tmp/mc.sock", "-a", "755"}, func(t *testing.T, o *options) {
			assert.Equal(t, "/tmp/mc.sock", o.unixSocket)
			assert.Equal(t, 0o755, int(o.unixMask))
		}, 0},
		{[]string{"--unix-socket=/tmp/mc.sock", "--unix-mask=0777"}, func(t *testing.T, o *options) {
			assert.Equal(t, 0o777, int(o.unixMask))
		}, 0},
		{[]string{"-s", "/tmp/mc.sock", "-l", "127.0.0.1"}, func(t *testing.T, o *options) {}, 1},
		{[]string{"-u", "nobody", "-P", "/run/mc.pid"}, func(t *testing.T, o *options) {
			assert.Equal(t, "nobody", o.user)
			assert.Equal(t, "/run/mc.pid", o.pidFile)
		}, 0},
		{[]string{"--user=nobody", "--pidfile=/run/mc.pid"}, func(t *testing.T, o *options) {
			assert.Equal(t, "nobody", o.user)
			assert.Equal(t, "/run/mc.pid", o.pidFile)
		}, 0},
		{[]string{"-f", "1.5", "-n", "48", "-D", "/", "-L", "-k", "-r", "-X", "-W", "-N", "2"}, func(t *testing.T, o *options) {
			assert.True(t, o.noDump && o.noWatch)
			assert.Equal(t, byte('/'), o.delimiter)
		}, 6},
		{[]string{"-o", "watcher_logbuf_size=8"}, func(t *testing.T, o *options) { assert.Equal(t, 8<<10, o.watcherBuf) }, 0},
		{[]string{"-o", "metrics_addr=127.0.0.1:9150"}, func(t *testing.T, o *options) { assert.Equal(t, "127.0.0.1:9150", o.metricsAddr) }, 0},
		{[]string{"-o", "idle_timeout=5,metrics_addr=[::1]:0"}, func(t *testing.T, o *options) { assert.Equal(t, "[::1]:0", o.metricsAddr) }, 0},
		{[]string{}, func(t *testing.T, o *options) { assert.Empty(t, o.metricsAddr) }, 0},
		{[]string{"-o", "hotkeys_sample=1000,hotkeys_k=50,hotkeys_window=60"}, func(t *testing.T, o *options) {
			assert.Equal(t, 1000, o.hotSample)
			assert.Equal(t, 50, o.hotK)
			assert.Equal(t, time.Minute, o.hotWindow)
		}, 0},
		{[]string{"-o", "hotkeys_sample=0"}, func(t *testing.T, o *options) { assert.Negative(t, o.hotSample) }, 0},
		{[]string{}, func(t *testing.T, o *options) { assert.Zero(t, o.hotSample+o.hotK+int(o.hotWindow)) }, 0},
		{[]string{"stray"}, func(t *testing.T, o *options) { assert.Equal(t, 11211, o.port) }, 1},
		{[]string{"-p", "1", "--", "-p", "2"}, func(t *testing.T, o *options) { assert.Equal(t, 1, o.port) }, 2},
		{[]string{"-h"}, func(t *testing.T, o *options) { assert.Equal(t, modeHelp, o.mode) }, 0},
		{[]string{"--help"}, func(t *testing.T, o *options) { assert.Equal(t, modeHelp, o.mode) }, 0},
		{[]string{"-V"}, func(t *testing.T, o *options) { assert.Equal(t, modeVersion, o.mode) }, 0},
		{[]string{"--version"}, func(t *testing.T, o *options) { assert.Equal(t, modeVersion, o.mode) }, 0},
		{[]string{"-i"}, func(t *testing.T, o *options) { assert.Equal(t, modeLicense, o.mode) }, 0},
		// memcached acts on the first of -h/-V and ignores what follows.
		{[]string{"-Vh"}, func(t *testing.T, o *options) { assert.Equal(t, modeVersion, o.mode) }, 0},
		{[]string{"-hV"}, func(t *testing.T, o *options) { assert.Equal(t, modeHelp, o.mode) }, 0},
		{[]string{"-h", "-t", "0"}, func(t *testing.T, o *options) { assert.Equal(t, modeHelp, o.mode) }, 0},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, err := parseArgs(tt.args)
			require.NoError(t, err)
			tt.check(t, o)
			assert.Len(t, o.warnings, tt.warnings, "warnings: %q", o.warnings)
		})
	}
}

func TestParseArgsInvalid(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		// memcached's t/00-startup.t cases.
		{[]string{"-B", "http"}, exitUsage, "Invalid value for binding protocol: http"},
		{[]string{"-c", "0"}, exitFail, "Maximum connections must be greater than 0"},
		{[]string{"-c", "-1"}, exitFail, "Maximum connections must be greater than 0"},
		{[]string{"-t", "0"}, exitFail, "Number of threads must be greater than 0"},
		{[]string{"-R", "0"}, exitFail, "Number of requests per event must be greater than 0"},
		// Values memcached's atoi would misread.
		{[]string{"-c", "abc"}, exitFail, "Maximum connections must be greater than 0"},
		{[]string{"-t", "-1"}, exitFail, "Number of threads must be greater than 0"},
		{[]string{"--threads=x"}, exitFail, "Number of threads must be greater than 0"},
		{[]string{"-R", "abc"}, exitFail, "Number of requests per event must be greater than 0"},
		{[]string{"-p", "99999"}, exitUsage, "Invalid port number 99999"},
		{[]string{"-p", "abc"}, exitUsage, "Invalid port number abc"},
		{[]string{"-p", "-5"}, exitUsage, "Invalid port number -5"},
		{[]string{"-b", "abc"}, exitFail, "Invalid listen backlog"},
		{[]string{"-a", "888"}, exitUsage, "access mask"},
		{[]string{"-a", "1777"}, exitUsage, "access mask"},
		// UDP.
		{[]string{"-U", "x"}, exitUsage, "ERROR: Invalid UDP port number x."},
		{[]string{"-U", "-2"}, exitUsage, "ERROR: Invalid UDP port number -2."},
		{[]string{"-U", "65536"}, exitUsage, "ERROR: Invalid UDP port number 65536."},
		{[]string{"-S", "-U", "11211"}, exitUsage, "ERROR: Cannot enable UDP while using binary SASL authentication."},
		{[]string{"-U", "-1", "-S"}, exitUsage, "ERROR: Cannot enable UDP while using binary SASL authentication."},
		{[]string{"-Y", "/etc/auth", "-U", "11211"}, exitUsage, "Cannot use UDP with ascii authentication enabled (-U 0 to disable)"},
		// -I and -m.
		{[]string{"-I", "1000"}, exitUsage, "Item max size cannot be less than 1024 bytes."},
		{[]string{"-I", "1023"}, exitUsage, "Item max size cannot be less than 1024 bytes."},
		{[]string{"-I", "0"}, exitUsage, "Item max size cannot be less than 1024 bytes."},
		{[]string{"-I", "33m"}, exitUsage, "Cannot set item size limit higher than 1/2 of memory max."},
		{[]string{"-m", "1", "-I", "513k"}, exitUsage, "Cannot set item size limit higher than 1/2 of memory max."},
		{[]string{"-I", "1025m", "-m", "4096"}, exitUsage, "Cannot set item size limit higher than a gigabyte."},
		{[]string{"-I", "2g"}, exitUsage, "Invalid item size"},
		{[]string{"-I", "1x"}, exitUsage, "Invalid item size"},
		{[]string{"-I", ""}, exitUsage, "Invalid item size"},
		{[]string{"-I", "m"}, exitUsage, "Invalid item size"},
		{[]string{"-m", "0"}, exitUsage, "Invalid memory limit"},
		{[]string{"-m", "foo"}, exitUsage, "Invalid memory limit"},
		{[]string{"-m", "-5"}, exitUsage, "Invalid memory limit"},
		{[]string{"-m", "99999999999g"}, exitUsage, "Invalid memory limit"},
		// -o.
		{[]string{"-o", "fooble"}, exitFail, `Illegal suboption "fooble"`},
		{[]string{"-o", "idle_timeout=5,fooble=1"}, exitFail, `Illegal suboption "fooble=1"`},
		{[]string{"-o", ""}, exitFail, `Illegal suboption ""`},
		{[]string{"-o", "relaxed_privileges"}, exitFail, `Illegal suboption "relaxed_privileges"`},
		{[]string{"-o", "proxy_config=x"}, exitFail, `Illegal suboption "proxy_config=x"`},
		{[]string{"-o", "idle_timeout"}, exitFail, "Missing numeric argument for idle_timeout"},
		{[]string{"-o", "idle_timeout="}, exitFail, "Missing numeric argument for idle_timeout"},
		{[]string{"-o", "idle_timeout=abc"}, exitFail, "Invalid idle_timeout"},
		{[]string{"-o", "idle_timeout=-3"}, exitFail, "Invalid idle_timeout"},
		{[]string{"-o", "hashpower"}, exitFail, "Missing hashpower argument"},
		{[]string{"-o", "metrics_addr"}, exitFail, `Invalid metrics_addr "": want HOST:PORT`},
		{[]string{"-o", "metrics_addr=9150"}, exitFail, `Invalid metrics_addr "9150": want HOST:PORT`},
		{[]string{"-o", "hotkeys_sample"}, exitFail, "Invalid hotkeys_sample"},
		{[]string{"-o", "hotkeys_sample=-1"}, exitFail, "Invalid hotkeys_sample"},
		{[]string{"-o", "hotkeys_sample=1%"}, exitFail, "Invalid hotkeys_sample"},
		{[]string{"-o", "hotkeys_k=0"}, exitFail, "Invalid hotkeys_k"},
		{[]string{"-o", "hotkeys_k=1001"}, exitFail, "Invalid hotkeys_k"},
		{[]string{"-o", "hotkeys_window=0"}, exitFail, "Invalid hotkeys_window"},
		{[]string{"-o", "hotkeys_window=1s"}, exitFail, "Invalid hotkeys_window"},
		// getopt errors.
		{[]string{"-x"}, exitFail, "invalid option -- 'x'"},
		{[]string{"-vx"}, exitFail, "invalid option -- 'x'"},
		{[]string{"--bogus"}, exitFail, "unrecognized option '--bogus'"},
		{[]string{"--d"}, exitFail, "option '--d' is ambiguous"},
		{[]string{"--daemon=x"}, exitFail, "option '--daemon' doesn't allow an argument"},
		{[]string{"--port"}, exitFail, "option '--port' requires an argument"},
		{[]string{"-t"}, exitFail, "option requires an argument -- 't'"},
		{[]string{"--verbose=x"}, exitFail, "Invalid verbosity"},
		// TLS, with memcached's messages.
		{[]string{"-l", "notls:127.0.0.1:5000"}, exitFail, "'notls' option is valid only when SSL is enabled"},
		{[]string{"-Z", "-p", "0"}, exitUsage, "ERROR: You cannot enable SSL without a TCP port."},
		{[]string{"-o", "ssl_chain_cert"}, exitFail, "Missing ssl_chain_cert argument"},
		{[]string{"-o", "ssl_verify_mode=4"}, exitFail, "Invalid ssl_verify_mode. Use help to see valid options."},
		{[]string{"-o", "ssl_verify_mode=x"}, exitFail, "could not parse argument to ssl_verify_mode"},
		{[]string{"-o", "ssl_min_version=-1"}, exitFail, "Invalid ssl_min_version. Use help to see valid options."},
		{[]string{"-o", "ssl_min_version"}, exitFail, "Missing ssl_min_version argument"},
		{[]string{"-o", "ssl_wbuf_size=x"}, exitFail, "could not parse argument to ssl_wbuf_size"},
		{[]string{"-o", "ssl_keyformat=ENGINE"}, exitFail, "OpenSSL engines are not available"},
		// memcached features emcached refuses rather than ignores.
		// Authentication picks the protocol.
		{[]string{"-S", "-B", "auto"}, exitUsage, "You cannot allow the ASCII protocol while using SASL."},
		{[]string{"-B", "ascii", "-S"}, exitUsage, "You cannot allow the ASCII protocol while using SASL."},
		{[]string{"-Y", "/etc/auth", "-B", "binary"}, exitUsage, "You cannot allow the BINARY protocol while using ascii authentication tokens."},
		{[]string{"-S", "-Y", "/etc/auth"}, exitUsage, "together"},
		// Checks on ignored options still hold.
		{[]string{"-f", "1"}, exitFail, "Factor must be greater than 1"},
		{[]string{"-n", "0"}, exitFail, "Chunk size must be greater than 0"},
		{[]string{"-D", "ab"}, exitFail, "prefix delimiter"},
		{[]string{"-N", "0"}, exitFail, "NAPI"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, err := parseArgs(tt.args)
			require.Error(t, err)
			assert.Nil(t, o)
			var ee *exitError
			require.True(t, errors.As(err, &ee), "error %v is not an exitError", err)
			assert.Equal(t, tt.code, ee.code)
			assert.Contains(t, ee.msg, tt.msg)
		})
	}
}

func TestEveryMemcachedSuboptionIsKnown(t *testing.T) {
	// The -o names memcached 1.6.18 accepts, as its -h lists them.
	for _, name := range []string{
		"maxconns_fast", "hashpower=16", "tail_repair_time=30", "hash_algorithm=murmur3",
		"no_lru_crawler", "lru_crawler_sleep=100", "lru_crawler_tocrawl=0", "read_buf_mem_limit=0",
		"no_lru_maintainer", "hot_lru_pct=20", "warm_lru_pct=40", "hot_max_factor=0.2",
		"warm_max_factor=2.0", "temporary_ttl=61", "idle_timeout=0", "slab_chunk_max=512",
		"watcher_logbuf_size=256", "worker_logbuf_size=64", "track_sizes", "no_hashexpand",
		"modern", "no_modern", "sock_cookie_id", "ext_path=/d/f:1G", "ext_page_size=64",
		"ext_wbuf_size=4", "ext_threads=1", "ext_item_size=512", "ext_item_age=10",
		"ext_low_ttl=0", "ext_drop_unread", "ext_recache_rate=2000", "ext_compact_under=1",
		"ext_drop_under=1", "ext_max_frag=0.8", "ext_max_sleep=1000000",
		"slab_automove_freeratio=0.01", "ssl_chain_cert=c", "ssl_key=k", "ssl_keyformat=PEM",
		"ssl_verify_mode=0", "ssl_ciphers=x", "ssl_ca_cert=c", "ssl_wbuf_size=16",
		"ssl_session_cache", "ssl_kernel_tls", "ssl_min_version=2",
		"slab_reassign", "slab_automove=1", "slab_automove_ratio=0.8", "slab_automove_window=30",
		"lru_crawler", "lru_maintainer", "drop_privileges", "no_drop_privileges",
	} {
		_, err := parseArgs([]string{"-o", name})
		assert.NoError(t, err, name)
	}
}

func TestTCPListeners(t *testing.T) {
	tests := []struct {
		args []string
		want []listenAddr
	}{
		{nil, []listenAddr{{"", 11211}}},
		{[]string{"-p", "0"}, nil},
		{[]string{"-p", "0", "-l", "127.0.0.1:5000"}, nil},
		{[]string{"-s", "/tmp/s", "-l", "127.0.0.1"}, nil},
		{[]string{"-p", "-1", "-l", "127.0.0.1"}, []listenAddr{{"127.0.0.1", 0}}},
		{[]string{"-p", "7000", "-l", "127.0.0.1"}, []listenAddr{{"127.0.0.1", 7000}}},
		{[]string{"-l", "127.0.0.1:5000,localhost"}, []listenAddr{{"127.0.0.1", 5000}, {"localhost", 11211}}},
		{[]string{"-l", "[::1]:6000", "-l", "[::1]", "-l", "::1"}, []listenAddr{{"::1", 6000}, {"::1", 11211}, {"::1", 11211}}},
		{[]string{"-l", "*"}, []listenAddr{{"", 11211}}},
		{[]string{"-l", "*:5000"}, []listenAddr{{"", 5000}}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, err := parseArgs(tt.args)
			require.NoError(t, err)
			got, err := o.tcpListeners()
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	for _, bad := range []string{":5000", "localhost:x", "127.0.0.1:70000", "[::1", "[::1]x", "[::1]:y"} {
		t.Run(bad, func(t *testing.T) {
			o, err := parseArgs([]string{"-l", bad})
			require.NoError(t, err)
			_, err = o.tcpListeners()
			assert.Error(t, err)
		})
	}
}

func TestUDPListeners(t *testing.T) {
	tests := []struct {
		args []string
		want []listenAddr
	}{
		{nil, nil},
		{[]string{"-U", "0", "-l", "127.0.0.1"}, nil},
		{[]string{"-U", "11311"}, []listenAddr{{"", 11311}}},
		{[]string{"-U", "-1", "-l", "127.0.0.1"}, []listenAddr{{"127.0.0.1", 0}}},
		{[]string{"-U", "11311", "-s", "/tmp/s"}, nil},
		// An entry's own port is the UDP socket's too, as in memcached.
		{[]string{"-U", "11311", "-l", "127.0.0.1:5000,[::1]"}, []listenAddr{{"127.0.0.1", 5000}, {"::1", 11311}}},
		{[]string{"-p", "0", "-U", "11311", "-l", "127.0.0.1"}, []listenAddr{{"127.0.0.1", 11311}}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, err := parseArgs(tt.args)
			require.NoError(t, err)
			got, err := o.udpListeners()
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestResolveListeners(t *testing.T) {
	lookup := func(host string) ([]string, error) {
		switch host {
		case "localhost":
			return []string{"127.0.0.1", "::1"}, nil
		case "empty":
			return nil, nil
		}
		return nil, fmt.Errorf("lookup %s: no such host", host)
	}
	got, err := resolveListeners([]listenAddr{
		{"", 11211}, {"127.0.0.1", 0}, {"localhost", 5000}, {"127.0.0.1", 5000}, {"::1", 7},
	}, lookup)
	require.NoError(t, err)
	assert.Equal(t, []string{":11211", "127.0.0.1:0", "127.0.0.1:5000", "[::1]:5000", "[::1]:7"}, got)

	// t/00-startup.t: an interface that does not exist must stop start-up.
	for _, host := range []string{"fooble", "empty"} {
		_, err = resolveListeners([]listenAddr{{host, 11211}}, lookup)
		var ee *exitError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, exitOSErr, ee.code)
		assert.Contains(t, ee.msg, "failed to listen on one of interface(s) "+host)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		unit int64
		want int64
		ok   bool
	}{
		{"0", 1, 0, true},
		{"1024", 1, 1024, true},
		{"64", 1 << 20, 64 << 20, true},
		{"1k", 1 << 20, 1 << 10, true},
		{"3M", 1, 3 << 20, true},
		{"2G", 1, 2 << 30, true},
		{"", 1, 0, false},
		{"k", 1, 0, false},
		{"-1", 1, 0, false},
		{"1.5m", 1, 0, false},
		{"1t", 1, 0, false},
		{" 1", 1, 0, false},
		{"9999999999g", 1, 0, false},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in, tt.unit)
		if !tt.ok {
			assert.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
}

func TestHelpListsEveryOption(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run([]string{"-h"}, &out, &errOut))
	help := out.String()
	assert.True(t, strings.HasPrefix(help, "memcached 1.6.18"), help)
	for _, s := range optSpecs {
		assert.Contains(t, help, "-"+string(s.short)+",", "short form of --%s", s.long)
		assert.Contains(t, help, "--"+s.long, "long form of -%c", s.short)
	}
	assert.Contains(t, help, "idle_timeout")
	assert.Contains(t, help, "metrics_addr")
	assert.Contains(t, help, "hotkeys_sample")
	assert.Empty(t, errOut.String())
}

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run([]string{"-V"}, &out, &errOut))
	assert.Regexp(t, `^memcached 1\.6\.\d+\S*\n$`, out.String())

	out.Reset()
	require.Equal(t, 0, run([]string{"--license"}, &out, &errOut))
	assert.Contains(t, out.String(), "BSD 3-Clause")
}

func TestRunRejectsBadCommandLines(t *testing.T) {
	for _, args := range [][]string{
		{"-B", "http"}, {"-c", "0"}, {"-c", "-1"}, {"-t", "0"}, {"-R", "0"}, {"-I", "100"},
		{"-U", "x"}, {"-S", "-U", "1"}, {"-o", "bogus"}, {"--no-such-option"},
	} {
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		assert.NotZero(t, code, "%q", args)
		assert.NotEmpty(t, errOut.String(), "%q", args)
		assert.Empty(t, out.String(), "%q", args)
	}
}

func TestRunRootUserChecks(t *testing.T) {
	if !isRoot() {
		t.Skip("only root switches user")
	}
	var out, errOut bytes.Buffer
	assert.Equal(t, exitNoUser, run([]string{"-p", "0", "-u", "no-such-user-emcached"}, &out, &errOut))
	assert.Contains(t, errOut.String(), "can't find the user no-such-user-emcached to switch to")
}

func TestRunRejectsUnknownInterface(t *testing.T) {
	saved := lookupHost
	t.Cleanup(func() { lookupHost = saved })
	lookupHost = func(host string) ([]string, error) {
		return nil, fmt.Errorf("lookup %s: no such host", host)
	}
	var out, errOut bytes.Buffer
	args := []string{"-l", "fooble.invalid", "-p", "11211"}
	if isRoot() {
		args = append(args, "-u", "root")
	}
	assert.Equal(t, exitOSErr, run(args, &out, &errOut))
	assert.Contains(t, errOut.String(), "failed to listen on one of interface(s) fooble.invalid")
}
