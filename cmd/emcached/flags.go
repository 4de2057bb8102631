package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Exit codes follow memcached, which uses the sysexits.h values for some
// failures and plain 1 for the rest; scripts that check them keep working.
const (
	exitFail   = 1
	exitUsage  = 64 // EX_USAGE
	exitNoUser = 67 // EX_NOUSER
	exitOSErr  = 71 // EX_OSERR
)

// Defaults and limits, as memcached 1.6 has them.
const (
	defaultPort         = 11211
	defaultMemoryMB     = 64
	defaultThreads      = 4
	defaultMaxConns     = 1024
	defaultReqsPerEvent = 20
	defaultBacklog      = 1024
	defaultItemSize     = 1 << 20
	defaultUnixMask     = 0o700
	minItemSize         = 1024    // ITEM_SIZE_MAX_LOWER_LIMIT
	maxItemSize         = 1 << 30 // ITEM_SIZE_MAX_UPPER_LIMIT
	// memcached warns past this many workers: lock contention outgrows the gain.
	threadsWarnAbove = 64
)

// exitError is a startup failure: the message memcached would print and the
// process exit code that goes with it.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func failf(code int, format string, args ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, args...)}
}

// mode is what the command line asks the process to do.
type mode uint8

const (
	modeServe mode = iota
	modeHelp
	modeVersion
	modeLicense
)

// options is the parsed command line. Field comments name the flag.
type options struct {
	mode mode

	port         int      // -p; 0 disables TCP, -1 asks the kernel for a port
	portSet      bool     // -p was given: memcached's -U otherwise sets the TCP port too
	udpPort      int      // -U; 0 (the default) disables UDP, -1 asks the kernel
	listen       []string // -l entries, lists already split
	unixSocket   string   // -s; disables TCP like memcached
	unixMask     os.FileMode
	threads      int
	maxBytes     int64 // -m, converted from megabytes
	noEvict      bool  // -M
	maxConns     int
	maxItemSize  int
	reqsPerEvent int
	backlog      int
	noCAS        bool // -C
	noFlush      bool // -F
	noDump       bool // -X
	delimiter    byte // -D
	noCrawler    bool // -o no_lru_crawler, no_modern
	noWatch      bool // -W
	watcherBuf   int  // -o watcher_logbuf_size, in bytes
	shutdownCmd  bool // -A
	verbosity    int
	user         string
	daemon       bool
	pidFile      string
	memoryFile   string        // -e; "" for none
	idleTimeout  time.Duration // -o idle_timeout
	metricsAddr  string        // -o metrics_addr; "" for none
	protocol     string        // -B; "" when not given
	sasl         bool          // -S
	authFile     string        // -Y

	// -o hotkeys_sample, hotkeys_k, hotkeys_window, as ServerConfig's
	// HotKeys fields take them: 0 for the default, a negative sample off.
	hotSample int
	hotK      int
	hotWindow time.Duration

	// -Z and its -o ssl_* options; plainListen are the -l entries that
	// said notls:, without it.
	tls         bool
	ssl         sslOptions
	plainListen []string
	// Settled from the above before serving: the notls addresses resolved
	// and -Z's configuration (nil without -Z).
	plainAddrs []string
	tlsBase    *tls.Config

	// warnings are printed before the server starts: options accepted for
	// compatibility that change nothing here.
	warnings []string
}

func defaultOptions() *options {
	return &options{
		port:         defaultPort,
		unixMask:     defaultUnixMask,
		threads:      defaultThreads,
		maxBytes:     defaultMemoryMB << 20,
		maxConns:     defaultMaxConns,
		maxItemSize:  defaultItemSize,
		reqsPerEvent: defaultReqsPerEvent,
		backlog:      defaultBacklog,
		ssl:          defaultSSLOptions(),
	}
}

func (o *options) warnf(format string, args ...any) {
	o.warnings = append(o.warnings, fmt.Sprintf(format, args...))
}

type argKind uint8

const (
	noArg argKind = iota
	requiredArg
	optionalArg // long form only, as --verbose[=N]
)

// optSpec is one row of memcached's getopt_long table.
type optSpec struct {
	short byte
	long  string
	arg   argKind
	// set applies the option; hasVal tells an empty value from none for
	// optionalArg options.
	set func(o *options, val string, hasVal bool) error
}

// optSpecs mirrors memcached 1.6.18's short and long options one for one, so
// any command line memcached accepts is recognised here; the few features
// emcached lacks are refused or ignored with a warning, never silently.
var optSpecs = []optSpec{
	{'p', "port", requiredArg, func(o *options, v string, _ bool) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < -1 || n > 65535 {
			return failf(exitUsage, "ERROR: Invalid port number %s.", v)
		}
		o.port, o.portSet = n, true
		return nil
	}},
	{'U', "udp-port", requiredArg, func(o *options, v string, _ bool) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < -1 || n > 65535 {
			return failf(exitUsage, "ERROR: Invalid UDP port number %s.", v)
		}
		o.udpPort = n
		return nil
	}},
	{'s', "unix-socket", requiredArg, func(o *options, v string, _ bool) error {
		o.unixSocket = v
		return nil
	}},
	{'a', "unix-mask", requiredArg, func(o *options, v string, _ bool) error {
		n, err := strconv.ParseUint(v, 8, 32)
		if err != nil || n > 0o777 {
			return failf(exitUsage, "Invalid unix socket access mask %q: want octal, at most 777", v)
		}
		o.unixMask = os.FileMode(n)
		return nil
	}},
	{'A', "enable-shutdown", noArg, func(o *options, _ string, _ bool) error {
		o.shutdownCmd = true
		return nil
	}},
	{'l', "listen", requiredArg, func(o *options, v string, _ bool) error {
		// memcached splits on both separators (strtok_r with ";,").
		for _, a := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' }) {
			a = strings.TrimSpace(a)
			if rest, ok := strings.CutPrefix(a, "notls:"); ok {
				o.plainListen = append(o.plainListen, rest)
				continue
			}
			o.listen = append(o.listen, a)
		}
		return nil
	}},
	{'d', "daemon", noArg, func(o *options, _ string, _ bool) error {
		o.daemon = true
		return nil
	}},
	{'r', "enable-coredumps", noArg, ignoreFlag("-r")},
	{'u', "user", requiredArg, func(o *options, v string, _ bool) error {
		o.user = v
		return nil
	}},
	{'m', "memory-limit", requiredArg, func(o *options, v string, _ bool) error {
		n, err := parseSize(v, 1<<20)
		if err != nil || n <= 0 {
			return failf(exitUsage, "Invalid memory limit %q: want megabytes, optionally with a k, m or g suffix", v)
		}
		o.maxBytes = n
		return nil
	}},
	{'M', "disable-evictions", noArg, func(o *options, _ string, _ bool) error {
		o.noEvict = true
		return nil
	}},
	{'c', "conn-limit", requiredArg, func(o *options, v string, _ bool) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return failf(exitFail, "Maximum connections must be greater than 0")
		}
		o.maxConns = n
		return nil
	}},
	{'k', "lock-memory", noArg, ignoreFlag("-k")},
	{'v', "verbose", optionalArg, func(o *options, v string, hasVal bool) error {
		if !hasVal {
			o.verbosity++
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return failf(exitFail, "Invalid verbosity %q", v)
		}
		o.verbosity = n
		return nil
	}},
	{'h', "help", noArg, setMode(modeHelp)},
	{'i', "license", noArg, setMode(modeLicense)},
	{'V', "version", noArg, setMode(modeVersion)},
	{'P', "pidfile", requiredArg, func(o *options, v string, _ bool) error {
		o.pidFile = v
		return nil
	}},
	{'f', "slab-growth-factor", requiredArg, func(o *options, v string, _ bool) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 1 {
			return failf(exitFail, "Factor must be greater than 1")
		}
		o.warnf("-f has no effect: emcache does not use a slab allocator")
		return nil
	}},
	{'n', "slab-min-size", requiredArg, func(o *options, v string, _ bool) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return failf(exitFail, "Chunk size must be greater than 0")
		}
		o.warnf("-n has no effect: emcache does not use a slab allocator")
		return nil
	}},
	{'L', "enable-largepages", noArg, ignoreFlag("-L")},
	{'D', "delimiter", requiredArg, func(o *options, v string, _ bool) error {
		if len(v) != 1 {
			return failf(exitFail, "Invalid prefix delimiter %q: want one character", v)
		}
		o.delimiter = v[0]
		return nil
	}},
	{'t', "threads", requiredArg, func(o *options, v string, _ bool) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return failf(exitFail, "Number of threads must be greater than 0")
		}
		if n > threadsWarnAbove {
			o.warnf("Setting a high number of worker threads is not recommended. " +
				"Set this value to the number of cores in your machine or less.")
		}
		o.threads = n
		return nil
	}},
	{'X', "disable-dumping", noArg, func(o *options, _ string, _ bool) error {
		o.noDump = true
		return nil
	}},
	{'W', "disable-watch", noArg, func(o *options, _ string, _ bool) error {
		o.noWatch = true
		return nil
	}},
	{'R', "max-reqs-per-event", requiredArg, func(o *options, v string, _ bool) error {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return failf(exitFail, "Number of requests per event must be greater than 0")
		}
		o.reqsPerEvent = n
		return nil
	}},
	{'C', "disable-cas", noArg, func(o *options, _ string, _ bool) error {
		o.noCAS = true
		return nil
	}},
	{'b', "listen-backlog", requiredArg, func(o *options, v string, _ bool) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return failf(exitFail, "Invalid listen backlog %q", v)
		}
		if n <= 0 {
			// listen(2) clamps such values itself; memcached passes them on.
			o.warnf("-b %d: using the minimum backlog of 1", n)
			n = 1
		}
		o.backlog = n
		return nil
	}},
	{'B', "protocol", requiredArg, func(o *options, v string, _ bool) error {
		switch v {
		case "auto", "ascii", "binary":
			o.protocol = v
		default:
			return failf(exitUsage, "Invalid value for binding protocol: %s\n -- should be one of auto, binary, or ascii", v)
		}
		return nil
	}},
	{'I', "max-item-size", requiredArg, func(o *options, v string, _ bool) error {
		n, err := parseItemSize(v)
		if err != nil {
			return err
		}
		o.maxItemSize = n
		return nil
	}},
	{'S', "enable-sasl", noArg, func(o *options, _ string, _ bool) error {
		o.sasl = true
		return nil
	}},
	{'F', "disable-flush-all", noArg, func(o *options, _ string, _ bool) error {
		o.noFlush = true
		return nil
	}},
	{'e', "memory-file", requiredArg, func(o *options, v string, _ bool) error {
		o.memoryFile = v
		return nil
	}},
	{'Y', "auth-file", requiredArg, func(o *options, v string, _ bool) error {
		o.authFile = v
		return nil
	}},
	{'Z', "enable-ssl", noArg, func(o *options, _ string, _ bool) error {
		o.tls = true
		return nil
	}},
	{'o', "extended", requiredArg, func(o *options, v string, _ bool) error {
		return o.parseSubopts(v)
	}},
	{'N', "napi-ids", requiredArg, func(o *options, v string, _ bool) error {
		if n, err := strconv.Atoi(v); err != nil || n <= 0 {
			return failf(exitFail, "Invalid number of NAPI ids %q", v)
		}
		o.warnf("-N has no effect: emcached assigns connections to workers round-robin")
		return nil
	}},
}

func setMode(m mode) func(*options, string, bool) error {
	return func(o *options, _ string, _ bool) error {
		o.mode = m
		return nil
	}
}

func ignoreFlag(name string) func(*options, string, bool) error {
	return func(o *options, _ string, _ bool) error {
		o.warnf("%s has no effect in emcached; ignored", name)
		return nil
	}
}

// refuse rejects memcached features whose absence would weaken security or
// durability if it went unnoticed.
func refuse(what string) func(*options, string, bool) error {
	return func(*options, string, bool) error {
		return failf(exitFail, "%s is not supported by emcached", what)
	}
}

// parseSize reads a non-negative decimal count of unit-sized blocks, or a
// count with a k, m or g suffix (any case) that overrides the unit.
func parseSize(s string, unit int64) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty size")
	}
	switch s[len(s)-1] {
	case 'k', 'K':
		unit, s = 1<<10, s[:len(s)-1]
	case 'm', 'M':
		unit, s = 1<<20, s[:len(s)-1]
	case 'g', 'G':
		unit, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	if n > (1<<62)/unit {
		return 0, fmt.Errorf("size %q overflows", s)
	}
	return n * unit, nil
}

// parseItemSize reads -I: bytes, or <n>k / <n>m as memcached documents.
func parseItemSize(s string) (int, error) {
	if strings.HasSuffix(s, "g") || strings.HasSuffix(s, "G") {
		return 0, failf(exitUsage, "Invalid item size %q: use bytes or a k or m suffix", s)
	}
	n, err := parseSize(s, 1)
	if err != nil {
		return 0, failf(exitUsage, "Invalid item size %q: use bytes or a k or m suffix", s)
	}
	if n < minItemSize {
		return 0, failf(exitUsage, "Item max size cannot be less than 1024 bytes.")
	}
	if n > maxItemSize {
		return 0, failf(exitUsage, "Cannot set item size limit higher than a gigabyte.")
	}
	return int(n), nil
}

// subopt describes one name memcached knows after -o.
type subopt uint8

const (
	subFlag   subopt = iota // a switch; a value, if any, is ignored as memcached's getsubopt does
	subValued               // needs name=value
)

// ignoredSubopts are memcached 1.6.18's -o tuning knobs (including its
// extstore ones) that have no counterpart here: they are accepted so
// existing command lines keep starting, with a warning. Anything else is an
// illegal suboption, as in memcached.
var ignoredSubopts = map[string]subopt{
	"maxconns_fast": subFlag, "no_maxconns_fast": subFlag,
	"hashpower": subValued, "no_hashexpand": subFlag,
	"tail_repair_time": subValued, "hash_algorithm": subValued,
	"lru_crawler_sleep": subValued, "lru_crawler_tocrawl": subValued,
	"lru_maintainer": subFlag, "no_lru_maintainer": subFlag,
	"hot_lru_pct": subValued, "warm_lru_pct": subValued,
	"hot_max_factor": subValued, "warm_max_factor": subValued,
	"temporary_ttl":      subValued,
	"worker_logbuf_size": subValued,
	"read_buf_mem_limit": subValued, "resp_obj_mem_limit": subFlag,
	"slab_reassign": subFlag, "no_slab_reassign": subFlag,
	"slab_automove": subFlag, "no_slab_automove": subFlag,
	"slab_automove_ratio": subValued, "slab_automove_window": subValued,
	"slab_automove_freeratio": subValued,
	"slab_chunk_max":          subValued, "slab_sizes": subFlag, "track_sizes": subFlag,
	"inline_ascii_resp": subFlag, "no_inline_ascii_resp": subFlag,
	"no_chunked_items": subFlag,
	"drop_privileges":  subFlag, "no_drop_privileges": subFlag,
	"sock_cookie_id": subFlag,
	"ext_path":       subValued, "ext_page_size": subValued, "ext_wbuf_size": subValued,
	"ext_threads": subValued, "ext_io_depth": subValued, "ext_item_size": subValued,
	"ext_item_age": subValued, "ext_low_ttl": subValued, "ext_drop_unread": subFlag,
	"ext_recache_rate": subValued, "ext_compact_under": subValued,
	"ext_drop_under": subValued, "ext_max_frag": subValued, "ext_max_sleep": subValued,
}

// parseSubopts handles one -o argument: a comma list of name[=value].
func (o *options) parseSubopts(list string) error {
	for _, item := range strings.Split(list, ",") {
		name, val, hasVal := strings.Cut(item, "=")
		switch name {
		case "idle_timeout":
			if !hasVal || val == "" {
				return failf(exitFail, "Missing numeric argument for idle_timeout")
			}
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n < 0 || n > int64(time.Duration(1<<62)/time.Second) {
				return failf(exitFail, "Invalid idle_timeout %q: want seconds, 0 for none", val)
			}
			o.idleTimeout = time.Duration(n) * time.Second
		case "metrics_addr":
			if _, _, err := net.SplitHostPort(val); !hasVal || err != nil {
				return failf(exitFail, "Invalid metrics_addr %q: want HOST:PORT", val)
			}
			o.metricsAddr = val
		case "modern":
			// A no-op in memcached 1.6 as well.
		case "watcher_logbuf_size":
			kib, err := strconv.Atoi(val)
			if !hasVal || err != nil || kib <= 0 || kib > 1<<20 {
				return failf(exitFail, "Invalid watcher_logbuf_size %q: want kilobytes", val)
			}
			o.watcherBuf = kib << 10
		case "lru_crawler", "no_lru_crawler":
			o.noCrawler = name == "no_lru_crawler"
		case "no_modern":
			// memcached's pre-1.5 defaults; of them only "no LRU crawler"
			// means something here.
			o.noCrawler = true
		case "hotkeys_sample":
			n, err := strconv.Atoi(val)
			if !hasVal || err != nil || n < 0 {
				return failf(exitFail, "Invalid hotkeys_sample %q: want N to sample 1 request in N, 0 for none", val)
			}
			o.hotSample = n
			if n == 0 {
				o.hotSample = -1
			}
		case "hotkeys_k":
			n, err := strconv.Atoi(val)
			if !hasVal || err != nil || n < 1 || n > 1000 {
				return failf(exitFail, "Invalid hotkeys_k %q: want 1 to 1000 keys", val)
			}
			o.hotK = n
		case "hotkeys_window":
			n, err := strconv.ParseInt(val, 10, 64)
			if !hasVal || err != nil || n < 1 || n > int64(time.Duration(1<<62)/time.Second) {
				return failf(exitFail, "Invalid hotkeys_window %q: want seconds", val)
			}
			o.hotWindow = time.Duration(n) * time.Second
		default:
			if strings.HasPrefix(name, "ssl_") {
				if err := o.ssl.parse(name, val, hasVal); err != errNotSSL {
					if err != nil {
						return err
					}
					continue
				}
			}
			kind, ok := ignoredSubopts[name]
			if !ok {
				return failf(exitFail, "Illegal suboption %q", item)
			}
			if kind == subValued && (!hasVal || val == "") {
				return failf(exitFail, "Missing %s argument", name)
			}
			o.warnf("-o %s has no effect in emcached; ignored", name)
		}
	}
	return nil
}

func findShort(c byte) *optSpec {
	for i := range optSpecs {
		if optSpecs[i].short == c {
			return &optSpecs[i]
		}
	}
	return nil
}

// findLong resolves a long option name as getopt_long does: an exact match,
// or else a prefix shared by exactly one option.
func findLong(name string) (*optSpec, error) {
	var matches []*optSpec
	for i := range optSpecs {
		s := &optSpecs[i]
		if s.long == name {
			return s, nil
		}
		if strings.HasPrefix(s.long, name) {
			matches = append(matches, s)
		}
	}
	switch len(matches) {
	case 0:
		return nil, failf(exitFail, "unrecognized option '--%s'", name)
	case 1:
		return matches[0], nil
	}
	names := make([]string, len(matches))
	for i, m := range matches {
		names[i] = "'--" + m.long + "'"
	}
	return nil, failf(exitFail, "option '--%s' is ambiguous; possibilities: %s", name, strings.Join(names, " "))
}

// parseArgs turns the command line (without the program name) into options,
// with GNU getopt_long's syntax as memcached uses it: -p11211, -p 11211,
// bundled flags (-vvd), --port=11211, --port 11211, unambiguous long
// prefixes, and "--" to end options. Like memcached it stops at -h, -V or -i
// and applies the options before them only. Arguments that are not options
// are ignored with a warning (memcached ignores them silently).
func parseArgs(args []string) (*options, error) {
	o := defaultOptions()
	for i := 0; i < len(args) && o.mode == modeServe; i++ {
		arg := args[i]
		switch {
		case arg == "--":
			for _, a := range args[i+1:] {
				o.warnf("ignoring non-option argument %q", a)
			}
			i = len(args)
		case strings.HasPrefix(arg, "--"):
			name, val, hasVal := strings.Cut(arg[2:], "=")
			spec, err := findLong(name)
			if err != nil {
				return nil, err
			}
			switch spec.arg {
			case noArg:
				if hasVal {
					return nil, failf(exitFail, "option '--%s' doesn't allow an argument", spec.long)
				}
			case requiredArg:
				if !hasVal {
					if i+1 >= len(args) {
						return nil, failf(exitFail, "option '--%s' requires an argument", spec.long)
					}
					i++
					val = args[i]
				}
			}
			if err := spec.set(o, val, hasVal); err != nil {
				return nil, err
			}
		case len(arg) > 1 && arg[0] == '-':
			for j := 1; j < len(arg) && o.mode == modeServe; j++ {
				spec := findShort(arg[j])
				if spec == nil {
					return nil, failf(exitFail, "invalid option -- '%c'", arg[j])
				}
				if spec.arg != requiredArg {
					if err := spec.set(o, "", false); err != nil {
						return nil, err
					}
					continue
				}
				val := arg[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return nil, failf(exitFail, "option requires an argument -- '%c'", arg[j])
					}
					i++
					val = args[i]
				}
				if err := spec.set(o, val, true); err != nil {
					return nil, err
				}
				break
			}
		default:
			o.warnf("ignoring non-option argument %q", arg)
		}
	}
	if o.mode != modeServe {
		return o, nil
	}
	// memcached checks these after reading every option, so -I and -m may
	// come in either order.
	if int64(o.maxItemSize) > o.maxBytes/2 {
		return nil, failf(exitUsage, "Cannot set item size limit higher than 1/2 of memory max.")
	}
	// SASL is binary-only and the -Y token text-only: each picks the
	// protocol, and memcached refuses a -B naming another.
	switch {
	case o.sasl && o.authFile != "":
		return nil, failf(exitUsage, "ERROR: You cannot use SASL (-S) and ascii authentication tokens (-Y) together.")
	case o.sasl && o.protocol != "" && o.protocol != "binary":
		return nil, failf(exitUsage, "ERROR: You cannot allow the ASCII protocol while using SASL.")
	case o.authFile != "" && o.protocol != "" && o.protocol != "ascii":
		return nil, failf(exitUsage, "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.")
	case o.sasl && o.udpPort != 0:
		return nil, failf(exitUsage, "ERROR: Cannot enable UDP while using binary SASL authentication.")
	case o.authFile != "" && o.udpPort != 0:
		return nil, failf(exitUsage, "Cannot use UDP with ascii authentication enabled (-U 0 to disable)")
	}
	if o.udpPort != 0 && !o.portSet {
		// memcached serves TCP on the UDP port when only -U is given.
		o.port = o.udpPort
	}
	if o.unixSocket != "" && len(o.listen)+len(o.plainListen) > 0 {
		o.warnf("-l has no effect with -s: a UNIX socket disables TCP")
	}
	if len(o.plainListen) > 0 && !o.tls {
		return nil, failf(exitFail, "'notls' option is valid only when SSL is enabled")
	}
	if o.tls && o.port == 0 {
		return nil, failf(exitUsage, "ERROR: You cannot enable SSL without a TCP port.")
	}
	return o, nil
}

// listenAddr is one TCP or UDP listen address from -l (or the default),
// before host names are resolved.
type listenAddr struct {
	host string // "" = every interface
	port int    // 0 = ask the kernel
}

// tcpListeners applies memcached's -l syntax to the parsed options: each
// entry is host, host:port, [ipv6] or [ipv6]:port, or a bare IPv6 address;
// "*" means every interface; entries without a port use -p. -p 0 or -s
// disable TCP entirely, as in memcached.
func (o *options) tcpListeners() ([]listenAddr, error) { return o.listeners(o.port) }

// udpListeners are the UDP sockets' addresses: memcached binds UDP on the
// -l entries as it binds TCP, with -U as the port of entries that name
// none. -U 0 or -s disable UDP.
func (o *options) udpListeners() ([]listenAddr, error) { return o.listeners(o.udpPort) }

// listeners applies -l to a TCP or UDP port (0 disables, -1 asks the
// kernel for one).
func (o *options) listeners(port int) ([]listenAddr, error) {
	if port == 0 || o.unixSocket != "" {
		return nil, nil
	}
	port = max(port, 0) // -1: the kernel picks
	if len(o.listen) == 0 && len(o.plainListen) == 0 {
		return []listenAddr{{host: "", port: port}}, nil
	}
	return o.parseListen(o.listen, port)
}

// plainListeners are the -l notls: listeners, in tcpListeners' terms.
func (o *options) plainListeners() ([]listenAddr, error) {
	if o.port == 0 || o.unixSocket != "" {
		return nil, nil
	}
	return o.parseListen(o.plainListen, max(o.port, 0))
}

// parseListen reads -l entries; port is for those that name none.
func (o *options) parseListen(entries []string, port int) ([]listenAddr, error) {
	var out []listenAddr
	for _, entry := range entries {
		host, p := entry, port
		if strings.HasPrefix(entry, "[") {
			end := strings.IndexByte(entry, ']')
			if end < 0 {
				return nil, failf(exitFail, "Invalid IPV6 address: %q", entry)
			}
			host = entry[1:end]
			rest := entry[end+1:]
			if rest != "" {
				if rest[0] != ':' {
					return nil, failf(exitFail, "Invalid IPV6 address: %q", entry)
				}
				n, err := strconv.Atoi(rest[1:])
				if err != nil || n < 0 || n > 65535 {
					return nil, failf(exitFail, "Invalid port number: %q", rest[1:])
				}
				p = n
			}
		} else if h, ps, ok := strings.Cut(entry, ":"); ok && !strings.Contains(ps, ":") {
			n, err := strconv.Atoi(ps)
			if err != nil || n < 0 || n > 65535 {
				return nil, failf(exitFail, "Invalid port number: %q", ps)
			}
			host, p = h, n
		}
		switch host {
		case "":
			return nil, failf(exitOSErr, "failed to listen on one of interface(s) %s: empty address", entry)
		case "*":
			host = ""
		}
		out = append(out, listenAddr{host: host, port: p})
	}
	return out, nil
}

// resolveListeners turns listen addresses into "ip:port" strings. A host name
// binds every address it resolves to, as memcached's getaddrinfo loop does;
// a name that does not resolve is a startup failure, before any listening.
func resolveListeners(addrs []listenAddr, lookup func(host string) ([]string, error)) ([]string, error) {
	var out []string
	seen := make(map[string]bool)
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, la := range addrs {
		port := strconv.Itoa(la.port)
		if la.host == "" || net.ParseIP(la.host) != nil {
			add(net.JoinHostPort(la.host, port))
			continue
		}
		ips, err := lookup(la.host)
		if err != nil || len(ips) == 0 {
			if err == nil {
				err = fmt.Errorf("no addresses")
			}
			return nil, failf(exitOSErr, "failed to listen on one of interface(s) %s: %v", la.host, err)
		}
		for _, ip := range ips {
			add(net.JoinHostPort(ip, port))
		}
	}
	return out, nil
}
