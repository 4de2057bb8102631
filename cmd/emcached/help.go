package main

import (
	"fmt"
	"io"

	"github.com/emcache/emcache"
)

// versionLine keeps the shape of `memcached -V` so scripts that parse it
// keep working; the version string itself says it is emcache.
func versionLine() string { return "memcached " + emcache.Version }

// usageText follows the layout of `memcached -h` option for option. Options
// that memcached has and emcached does not are listed too, marked, because
// they are still accepted (or refused) under the same names.
const usageText = `-p, --port=<num>          TCP port to listen on (default: 11211)
                          0 disables TCP, -1 lets the kernel pick a free port
-U, --udp-port=<num>      UDP port to listen on (default: 0, off)
                          -1 lets the kernel pick a free port
-s, --unix-socket=<file>  UNIX socket to listen on (disables network support)
-a, --unix-mask=<mask>    access mask for UNIX socket, in octal (default: 700)
-A, --enable-shutdown     enable ascii "shutdown" command
-l, --listen=<addr>       interface to listen on (default: INADDR_ANY)
                          comma separated or repeated; <addr> may be
                          <host>, <host>:<port>, [<ipv6>]:<port> or *
                          if TLS/SSL is enabled, 'notls' prefix can be used to
                          disable for specific listeners (-l notls:<ip>:<port>)
-d, --daemon              run as a daemon
-r, --enable-coredumps    maximize core file limit (ignored)
-u, --user=<user>         assume identity of <username> (only when run as root)
-m, --memory-limit=<num>  item memory in megabytes (default: 64)
                          a k, m or g suffix gives another unit
-M, --disable-evictions   return error on memory exhausted instead of evicting
-c, --conn-limit=<num>    max simultaneous connections (default: 1024)
-k, --lock-memory         lock down all paged memory (ignored)
-v, --verbose             verbose (print errors/warnings while in event loop)
-vv                       very verbose (also print client commands/responses)
-vvv                      extremely verbose (internal state transitions)
-h, --help                print this help and exit
-i, --license             print the license and exit
-V, --version             print version and exit
-P, --pidfile=<file>      save PID in <file>
-f, --slab-growth-factor=<num> chunk size growth factor (ignored: no slabs)
-n, --slab-min-size=<bytes> min space used for key+value+flags (ignored: no slabs)
-L, --enable-largepages   try to use large memory pages (ignored)
-D, --delimiter=<char>    use <char> as a delimiter between key prefixes and IDs.
                          This is used for per-prefix stats reporting. The
                          default is ":" (colon).
-t, --threads=<num>       number of threads to use (default: 4)
-R, --max-reqs-per-event  maximum number of requests per event, limits the
                          requests processed per connection to prevent
                          starvation (default: 20)
-C, --disable-cas         disable use of CAS
-b, --listen-backlog=<num> set the backlog queue limit (default: 1024)
-B, --protocol=<name>     protocol - one of ascii, binary, or auto (default: auto-negotiate)
-I, --max-item-size=<num> adjusts max item size
                          (default: 1m, min: 1k, max: 1024m, at most -m/2)
-S, --enable-sasl         turn on Sasl authentication (PLAIN; users from the
                          user:password file $MEMCACHED_SASL_PWDB names)
-F, --disable-flush-all   disable flush_all command
-X, --disable-dumping     disable stats cachedump and lru_crawler metadump
-W, --disable-watch       disable watch commands (live logging)
-Y, --auth-file=<file>    enable ASCII protocol authentication. format:
                          user:pass lines
-e, --memory-file=<file>  mmap a file for item memory, kept across restarts
                          (put it on tmpfs, e.g. /dev/shm)
-Z, --enable-ssl          enable TLS/SSL
-N, --napi-ids=<num>      number of napi ids (ignored)
-o, --extended            comma separated list of extended options
   - idle_timeout:        timeout in seconds for idle connections. (default: 0, no timeout)
   - metrics_addr:        HOST:PORT to serve Prometheus metrics at /metrics on
                          (default: none)
   - modern:              accepted; does nothing, as in memcached 1.6
   - no_lru_crawler:      start with lru_crawler commands disabled (also no_modern)
   - lru_crawler:         start with them enabled (default)
   - watcher_logbuf_size: KB of log lines a watch connection may have
                          waiting before lines are skipped (default: 256)
   - hotkeys_sample:      sample 1 keyed request in N for stats hotkeys
                          (default: 100, 1%; 0 turns hot and big keys off)
   - hotkeys_k:           keys stats hotkeys and stats bigkeys list
                          (default: 10, max: 1000)
   - hotkeys_window:      seconds hot keys are counted over; stats hotkeys
                          reports the last complete window (default: 10)
   - ssl_chain_cert:      certificate chain file in PEM format
   - ssl_key:             private key, if not part of the -ssl_chain_cert
   - ssl_keyformat:       private key format, 1 (PEM) or 2 (DER) (default: PEM;
                          the file says which: OpenSSL engines are not available)
   - ssl_verify_mode:     peer certificate verification mode, default is 0(None).
                          valid values are 0(None), 1(Request), 2(Require)
                          or 3(Once)
   - ssl_ciphers:         specify cipher list to be used: OpenSSL names of
                          TLS 1.2 suites, colon separated (no keywords)
   - ssl_ca_cert:         PEM format file of acceptable client CA's
   - ssl_wbuf_size:       size in kilobytes of per-connection SSL output buffer
                          (default: 16)
   - ssl_session_cache:   enable server-side SSL session cache, to support session
                          resumption (session tickets)
   - ssl_kernel_tls:      enable kernel TLS offload (not available)
   - ssl_min_version:     minimum protocol version to accept (default: tlsv1.2)
                          valid values are 0(tlsv1.0), 1(tlsv1.1), 2(tlsv1.2), or 3(tlsv1.3).
   memcached's other tuning options (hashpower, lru_*, slab_*, hash_algorithm,
   *_logbuf_size, read_buf_mem_limit, ext_*, ...) are accepted and
   ignored with a warning; an unknown one is an error.
`

func printUsage(w io.Writer) {
	fmt.Fprintln(w, versionLine())
	io.WriteString(w, usageText)
}

const licenseText = `emcache (emcached) is distributed under the BSD 3-Clause License.
Copyright (c) 2026, The emcache Authors. All rights reserved.
See the LICENSE file in the source distribution for the full text.
`
