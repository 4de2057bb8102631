// Command emcached serves an emcache cache over the memcached protocols. It
// takes memcached's command-line options with memcached's meanings, defaults
// and start-up checks, so it can replace memcached in existing setups.
//
// Run emcached -h for the options.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emcache/emcache"
)

// shutdownTimeout bounds how long SIGTERM waits for in-flight replies to be
// flushed before connections are closed regardless.
const shutdownTimeout = 10 * time.Second

// lookupTimeout bounds name resolution for -l host names at start-up.
const lookupTimeout = 10 * time.Second

// extraFiles is the descriptor headroom asked for beyond -c: listeners,
// per-worker pollers and wake-up descriptors, the Go runtime's own.
const extraFiles = 64

// reservedFDsPerThread is what memcached sets aside per worker thread
// against -c (its event base and notify pipe), so that -c admits as many
// clients here as there.
const reservedFDsPerThread = 5

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole program; it returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args)
	if err != nil {
		return report(stderr, err)
	}
	switch o.mode {
	case modeHelp:
		printUsage(stdout)
		return 0
	case modeVersion:
		fmt.Fprintln(stdout, versionLine())
		return 0
	case modeLicense:
		fmt.Fprintln(stdout, versionLine())
		fmt.Fprintln(stdout)
		io.WriteString(stdout, licenseText)
		return 0
	}

	ready := daemonReadyPipe()
	out := &switchWriter{w: stderr}
	if ready != nil && o.verbosity == 0 {
		// The daemon's stderr is /dev/null: until it serves, messages go
		// to the waiting parent, which prints them.
		out.set(ready)
	}
	if ready == nil {
		// The daemon parent has printed these already.
		for _, w := range o.warnings {
			fmt.Fprintf(out, "WARNING: %s\n", w)
		}
	}

	var cred *credential
	if isRoot() && o.user == "" && ready == nil {
		// memcached refuses to start here; emcached warns instead, so that
		// `go run ./cmd/emcached` works on a fresh machine where the
		// developer is root (containers, CI).
		fmt.Fprintln(out, "WARNING: running as root without -u; pass -u <user> to drop privileges (memcached refuses to start)")
	}
	if isRoot() && o.user != "" {
		if cred, err = lookupUser(o.user); err != nil {
			return report(out, failf(exitNoUser, "can't find the user %s to switch to", o.user))
		}
	}
	users, err := loadCredentials(o, os.Getenv)
	if err != nil {
		return report(out, err)
	}
	listeners, err := o.tcpListeners()
	if err != nil {
		return report(out, err)
	}
	addrs, err := resolveListeners(listeners, lookupHost)
	if err != nil {
		return report(out, err)
	}
	udpListeners, err := o.udpListeners()
	if err != nil {
		return report(out, err)
	}
	udpAddrs, err := resolveListeners(udpListeners, lookupHost)
	if err != nil {
		return report(out, err)
	}
	plain, err := o.plainListeners()
	if err == nil {
		o.plainAddrs, err = resolveListeners(plain, lookupHost)
	}
	if err != nil {
		return report(out, err)
	}
	if o.tls {
		if o.tlsBase, err = o.ssl.tlsConfig(); err != nil {
			return report(out, err)
		}
	}
	if o.daemon && ready == nil {
		return startDaemon(args, o.verbosity > 0, stderr)
	}
	return serve(o, addrs, udpAddrs, users, cred, out, stderr, ready)
}

func serve(o *options, addrs, udpAddrs []string, users []emcache.Credential, cred *credential, out *switchWriter, stderr io.Writer, ready *os.File) int {
	log := newLogger(out, o.verbosity)

	// Registered before listening so that a signal arriving as soon as the
	// port is open is already a graceful stop.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, stopSignals...)
	defer signal.Stop(sigs)
	ignoreSignals()

	if err := raiseFileLimit(uint64(o.maxConns + extraFiles)); err != nil {
		log.Warn("failed to raise the open file limit; connections may fail before -c is reached",
			"want", o.maxConns+extraFiles, "err", err)
	}

	if err := checkMetaFile(o.memoryFile); err != nil {
		return report(out, err)
	}
	c, err := emcache.New(emcache.Config{
		MaxBytes:    o.maxBytes,
		MaxItemSize: o.maxItemSize,
		NoEvict:     o.noEvict,
		NoCAS:       o.noCAS,
		MemoryFile:  o.memoryFile,
	})
	if err != nil {
		return report(out, failf(exitFail, "failed to create the cache: %v", err))
	}
	defer closeCache(c, log)
	if o.memoryFile != "" {
		logRestart(c, o.memoryFile, log)
	}

	var srv *emcache.Server
	var done <-chan struct{} // nil with no server: only a signal ends the wait
	if len(addrs) > 0 || len(o.plainAddrs) > 0 || o.unixSocket != "" || len(udpAddrs) > 0 {
		srv, err = c.Serve(emcache.ServerConfig{
			Addrs:           addrs,
			UDPAddrs:        udpAddrs,
			UnixSocket:      o.unixSocket,
			UnixSocketMode:  o.unixMask,
			Workers:         o.threads,
			MaxConns:        o.maxConns,
			ReservedFDs:     reservedFDsPerThread * o.threads,
			ReqsPerEvent:    o.reqsPerEvent,
			Backlog:         o.backlog,
			IdleTimeout:     o.idleTimeout,
			MaxItemSize:     o.maxItemSize,
			AllowShutdown:   o.shutdownCmd,
			DisableFlush:    o.noFlush,
			DisableDump:     o.noDump,
			PrefixDelimiter: o.delimiter,
			NoLRUCrawler:    o.noCrawler,
			DisableWatch:    o.noWatch,
			WatcherBufSize:  o.watcherBuf,
			Verbosity:       o.verbosity,
			Logger:          log,
			MetricsAddr:     o.metricsAddr,
			Protocol:        o.protocol,
			SASL:            o.sasl,
			ASCIIAuth:       o.authFile != "",
			Credentials:     users,
			HotKeysSample:   o.hotSample,
			HotKeysK:        o.hotK,
			HotKeysWindow:   o.hotWindow,
			TLS:             o.tlsBase,
			TLSCertFile:     o.ssl.chainCert,
			TLSKeyFile:      o.ssl.key,
			TLSCAFile:       o.ssl.caCert,
			TLSCiphers:      o.ssl.ciphers,
			TLSWriteBuffer:  o.ssl.wbufSize,
			PlainAddrs:      o.plainAddrs,
		})
		if errors.Is(err, emcache.ErrMaxConnsTooLow) {
			return report(out, failf(exitUsage, "maxconns setting is too low"))
		}
		if errors.Is(err, emcache.ErrTLSFiles) {
			// memcached's own words for the file, after the package's prefix.
			return report(out, failf(exitUsage, "%s", strings.TrimPrefix(err.Error(), "emcache: ")))
		}
		if errors.Is(err, emcache.ErrTLSCiphers) {
			return report(out, failf(exitUsage, "Error setting the provided cipher(s): %s (%v)", o.ssl.ciphers, err))
		}
		if err != nil {
			return report(out, failf(exitOSErr, "failed to listen: %v", err))
		}
		defer srv.Close()
		done = srv.Done()
		if path := os.Getenv(portFileEnv); path != "" && o.unixSocket == "" {
			if err := writePortFile(path, srv.Addrs(), srv.UDPAddrs()); err != nil {
				return report(out, failf(exitOSErr, "failed to write the port file %s: %v", path, err))
			}
		}
	} else {
		// memcached also runs with nothing to listen on, and writes its
		// port file empty.
		log.Warn("TCP is disabled (-p 0) and no UNIX socket is set (-s): serving nothing")
		if path := os.Getenv(portFileEnv); path != "" {
			if err := writePortFile(path, nil, nil); err != nil {
				return report(out, failf(exitOSErr, "failed to write the port file %s: %v", path, err))
			}
		}
	}

	// Privileges are dropped after binding, so ports below 1024 work.
	if cred != nil {
		if o.unixSocket != "" {
			if err := chownSocket(o.unixSocket, cred); err != nil {
				log.Warn("failed to hand the UNIX socket to the -u user", "path", o.unixSocket, "err", err)
			}
		}
		if err := dropPrivileges(cred); err != nil {
			return report(out, failf(exitOSErr, "failed to assume identity of user %s: %v", cred.name, err))
		}
	}

	// Written as the -u user, like memcached: a pidfile the server cannot
	// write is reported, not fatal.
	pidWritten := false
	if o.pidFile != "" {
		if err := os.WriteFile(o.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			log.Warn("could not write the pid file", "path", o.pidFile, "err", err)
		} else {
			pidWritten = true
		}
	}
	defer func() {
		if pidWritten {
			if err := os.Remove(o.pidFile); err != nil {
				log.Debug("could not remove the pid file", "path", o.pidFile, "err", err)
			}
		}
	}()

	if ready != nil {
		if err := detachDaemon(ready); err != nil {
			log.Warn("failed to finish daemon start-up", "err", err)
		}
		out.set(stderr)
	}
	if srv != nil {
		attrs := []any{"version", emcache.Version, "threads", o.threads}
		if o.unixSocket != "" {
			attrs = append(attrs, "unix", o.unixSocket)
		} else {
			attrs = append(attrs, "addr", srv.Addr().String())
		}
		if u := srv.UDPAddrs(); len(u) > 0 {
			attrs = append(attrs, "udp", u[0].String())
		}
		log.Info("server listening", attrs...)
	}

	select {
	case sig := <-sigs:
		log.Info("signal received; shutting down", "signal", sig.String())
		shutdown(srv, sigs, log)
	case <-done:
		log.Info("stopped by the shutdown command")
	}
	log.Info("Exiting normally")
	return 0
}

// checkMetaFile refuses an empty metadata file beside the memory file, as
// memcached does (t/restart.t): nothing emcache writes is ever empty, so
// something else made it, and the operator should look. Any other damage
// to it starts the cache cold.
func checkMetaFile(memoryFile string) error {
	if memoryFile == "" {
		return nil
	}
	path := memoryFile + emcache.MetaSuffix
	if fi, err := os.Stat(path); err == nil && fi.Size() == 0 {
		return failf(exitFail, "[restart] the metadata file %s is empty: remove it to start with a clean cache", path)
	}
	return nil
}

// logRestart says whether the memory file's items came back, and if not,
// why the cache starts empty: always at warning level for settings that
// differ from those the file was saved with, as an operator will want to
// know.
func logRestart(c *emcache.Cache, path string, log *slog.Logger) {
	warm, why := c.WarmStart()
	switch {
	case warm:
		log.Info("[restart] resumed from the memory file", "path", path, "items", c.Stats().CurrItems)
	case errors.Is(why, emcache.ErrNoSavedState):
		log.Info("[restart] no saved state in the memory file, starting with a clean cache", "path", path)
	default:
		log.Warn("[restart] cannot resume from the memory file, starting with a clean cache", "path", path, "reason", why)
	}
}

// closeCache closes the cache, which saves its memory file (-e).
func closeCache(c *emcache.Cache, log *slog.Logger) {
	if err := c.Close(); err != nil {
		log.Error("[restart] failed to save the memory file; the next start will be clean", "err", err)
	}
}

// saslPasswordsEnv names the file of user:password lines -S checks, as
// memcached's does.
const saslPasswordsEnv = "MEMCACHED_SASL_PWDB"

// loadCredentials reads the users of -Y's file or, with -S, of the file
// MEMCACHED_SASL_PWDB names. They are read once, at start-up, before
// privileges are dropped.
func loadCredentials(o *options, getenv func(string) string) ([]emcache.Credential, error) {
	path := o.authFile
	if o.sasl {
		if path = getenv(saslPasswordsEnv); path == "" {
			return nil, failf(exitFail, "-S needs the %s environment variable: the path of a file of user:password lines", saslPasswordsEnv)
		}
	}
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, failf(exitFail, "Could not open the auth file: %v", err)
	}
	defer f.Close()
	users, err := emcache.ParseCredentials(f)
	if err != nil {
		return nil, failf(exitFail, "Auth file %s has a malformed entry. Should be 'user:password': %v", path, err)
	}
	if len(users) == 0 {
		return nil, failf(exitFail, "Auth file %s has no user:password entries", path)
	}
	if o.sasl {
		// memcached's SASL password file may add fields after the
		// password, separated by another colon.
		for i := range users {
			users[i].Password, _, _ = strings.Cut(users[i].Password, ":")
		}
	}
	return users, nil
}

// shutdown stops srv gracefully within shutdownTimeout; a second signal
// ends the grace period at once.
func shutdown(srv *emcache.Server, sigs <-chan os.Signal, log *slog.Logger) {
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("graceful shutdown cut short; closing connections", "err", err)
		srv.Close()
	}
}

// report prints a start-up failure the way memcached does (the bare message
// on stderr) and returns its exit code.
func report(w io.Writer, err error) int {
	fmt.Fprintln(w, err)
	if ee, ok := errors.AsType[*exitError](err); ok {
		return ee.code
	}
	return exitFail
}

// newLogger maps memcached's verbosity onto slog levels: warnings and errors
// by default, -v adds informational messages, -vv and more add debug ones.
func newLogger(w io.Writer, verbosity int) *slog.Logger {
	level := slog.LevelWarn
	switch {
	case verbosity >= 2:
		level = slog.LevelDebug
	case verbosity == 1:
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// lookupHost resolves -l host names; a variable so tests need no DNS.
var lookupHost = func(host string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	return net.DefaultResolver.LookupHost(ctx, host)
}

// switchWriter lets the daemon move its log from the start-up pipe to its
// final stderr while the logger keeps writing.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
