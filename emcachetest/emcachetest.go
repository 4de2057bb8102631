// Package emcachetest starts emcache servers for the tests of programs that
// talk to memcached. A test gets the production engine and server, with
// their protocols, on a loopback port of its own, plus what an external
// memcached cannot offer: direct access to the cache, a clock the test
// moves, and injected failures.
//
//	ts := emcachetest.NewServer(t)
//	client := memcache.New(ts.Addr()) // any memcached client
//	...
//	ts.FastForward(time.Hour)         // every one-hour TTL has now run out
//
// A server is cheap: it starts in well under a millisecond with one worker,
// three goroutines and a handful of file descriptors, and t.Cleanup stops
// it, so each test, or each subtest, can have its own.
package emcachetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/emcache/emcache"
)

// DefaultMaxBytes is a test server's cache size unless [WithConfig] sets
// one: small, because a cache maps and unmaps its memory as it starts and
// stops, which costs more the larger it is.
const DefaultMaxBytes = 8 << 20

// TB is the part of [testing.TB] that a [Server] uses: pass the test's
// *testing.T, *testing.B or *testing.F.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// Server is an emcache server running for one test.
type Server struct {
	tb    TB
	cache *emcache.Cache
	srv   *emcache.Server
	addr  string
	clock *Clock
	once  sync.Once
	// clientTLS trusts the certificate WithTLS made; nil without it.
	clientTLS *tls.Config
}

// Option changes how [NewServer] configures the cache or the server.
type Option func(*options)

type options struct {
	cache  emcache.Config
	server emcache.ServerConfig
	tls    bool
}

// WithConfig configures the cache. Its Now is replaced by the server's
// clock, and a zero MaxBytes means [DefaultMaxBytes].
func WithConfig(cfg emcache.Config) Option {
	return func(o *options) { o.cache = cfg }
}

// WithServerConfig configures the server, for instance with a Logger to see
// its log or with AllowShutdown. Empty Addrs mean 127.0.0.1:0, a zero
// Workers means one.
func WithServerConfig(cfg emcache.ServerConfig) Option {
	return func(o *options) { o.server = cfg }
}

// WithTLS serves over TLS, with a certificate for 127.0.0.1 and
// localhost made for the server (an ECDSA P-256 key, valid for a day) that
// [Server.ClientTLS] trusts. It replaces the TLS settings of
// [WithServerConfig], whichever comes first; for client certificates
// (mTLS) or other versions, give WithServerConfig a TLS of its own
// instead.
func WithTLS() Option {
	return func(o *options) { o.tls = true }
}

// NewServer starts a cache and a server for it on a kernel-chosen loopback
// port, with a [Clock] set to the current time, and registers their stop
// with tb.Cleanup. It fails the test if they cannot start.
func NewServer(tb TB, opts ...Option) *Server {
	tb.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.cache.MaxBytes == 0 {
		o.cache.MaxBytes = DefaultMaxBytes
	}
	if len(o.server.Addrs) == 0 && o.server.UnixSocket == "" {
		o.server.Addrs = []string{"127.0.0.1:0"}
	}
	if o.server.Workers == 0 {
		// One worker is one goroutine and one poller: what a test needs,
		// and what lets thousands of test servers coexist.
		o.server.Workers = 1
	}
	var clientTLS *tls.Config
	if o.tls {
		var err error
		if o.server.TLS, clientTLS, err = selfSigned(); err != nil {
			tb.Fatalf("emcachetest: %v", err)
		}
		o.server.TLSCertFile, o.server.TLSKeyFile, o.server.TLSCAFile = "", "", ""
	}
	clock := NewClock(time.Now())
	o.cache.Now = clock.Now
	c, err := emcache.New(o.cache)
	if err != nil {
		tb.Fatalf("emcachetest: %v", err)
	}
	srv, err := c.Serve(o.server)
	if err != nil {
		c.Close()
		tb.Fatalf("emcachetest: %v", err)
	}
	s := &Server{tb: tb, cache: c, srv: srv, addr: srv.Addr().String(), clock: clock, clientTLS: clientTLS}
	tb.Cleanup(s.Close)
	return s
}

// Addr returns the address clients dial: "127.0.0.1:port" (or the Unix
// socket's path when [WithServerConfig] asked for one only).
func (s *Server) Addr() string { return s.addr }

// ClientTLS returns a client configuration that trusts the server's
// certificate of [WithTLS], for tls.Dial or a client's TLS option; nil
// without WithTLS. Each call returns a new one, for the test to change.
func (s *Server) ClientTLS() *tls.Config {
	if s.clientTLS == nil {
		return nil
	}
	return s.clientTLS.Clone()
}

// selfSigned makes WithTLS's certificate and the client configuration that
// trusts it.
func selfSigned() (server, client *tls.Config, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "emcachetest"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	return server, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}, nil
}

// Cache returns the served cache, to seed it before the code under test runs
// or to inspect it afterwards, without going through the network.
func (s *Server) Cache() *emcache.Cache { return s.cache }

// Server returns the running server, for its connection statistics or a
// graceful Shutdown.
func (s *Server) Server() *emcache.Server { return s.srv }

// Now returns the time the cache sees.
func (s *Server) Now() time.Time { return s.clock.Now() }

// SetTime sets the time the cache sees; see [Clock.SetTime].
func (s *Server) SetTime(t time.Time) { s.clock.SetTime(t) }

// FastForward moves the cache's time forward by d: items whose TTL ran out
// meanwhile are gone, a delayed flush_all that came due has happened.
func (s *Server) FastForward(d time.Duration) { s.clock.FastForward(d) }

// InjectFault makes the next n requests that f matches fail as f says (see
// [emcache.Fault]); n <= 0 cancels a pending fault. Call it from the test's
// goroutine: an invalid fault fails the test.
//
//	ts.InjectFault(1, emcache.Fault{Command: "set", Reply: "SERVER_ERROR out of memory storing object"})
//	ts.InjectFault(1, emcache.Fault{Close: true})                 // hang up on the next request
//	ts.InjectFault(1, emcache.Fault{Delay: 2 * time.Second}) // a slow server, for client timeouts
func (s *Server) InjectFault(n int, f emcache.Fault) {
	s.tb.Helper()
	if err := s.srv.InjectFault(n, f); err != nil {
		s.tb.Fatalf("emcachetest: %v", err)
	}
}

// Close stops the server, closing its connections, and then the cache. The
// test's cleanup calls it; calling it earlier shows the code under test a
// memcached that went away. It is safe to call more than once.
func (s *Server) Close() {
	s.once.Do(func() {
		s.srv.Close()
		s.cache.Close()
	})
}
