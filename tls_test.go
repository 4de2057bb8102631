package emcache

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testPKI is a CA made for one test, with certificates it issues: no key
// or certificate is checked in.
type testPKI struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "emcache test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	p := &testPKI{cert: cert, key: key, pool: x509.NewCertPool()}
	p.pool.AddCert(cert)
	p.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return p
}

// issue returns a certificate for 127.0.0.1 (a server's) or for a client,
// named cn, with its PEM files' contents.
func (p *testPKI) issue(t testing.TB, cn string, client bool) (cert tls.Certificate, certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	return cert, certPEM, keyPEM
}

// serverTLS is a server configuration with a certificate from p.
func (p *testPKI) serverTLS(t testing.TB) *tls.Config {
	cert, _, _ := p.issue(t, "emcache test server", false)
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// clientTLS trusts p's certificates.
func (p *testPKI) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"}
}

// tlsDial connects to addr and completes the handshake.
func tlsDial(t testing.TB, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: protoIOTimeout}, "tcp", addr, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(protoIOTimeout)))
	return conn
}

// startTLSServer serves a fresh cache over TLS on a loopback port.
func startTLSServer(t testing.TB, scfg ServerConfig) (*Server, string) {
	t.Helper()
	c, err := New(Config{MaxBytes: 64 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	scfg.Addrs = []string{"127.0.0.1:0"}
	s, err := c.Serve(scfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, s.Addr().String()
}

// failedHandshake dials addr, expects the handshake (or, in TLS 1.3, the
// first read, which carries the server's verdict) to fail, and waits for
// the server to close the socket: by then it has counted the failure.
func failedHandshake(t *testing.T, addr string, cfg *tls.Config) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, protoIOTimeout)
	require.NoError(t, err)
	defer raw.Close()
	require.NoError(t, raw.SetDeadline(time.Now().Add(protoIOTimeout)))
	tc := tls.Client(raw, cfg)
	err = tc.Handshake()
	if err == nil {
		_, err = io.WriteString(tc, "version\r\n")
		if err == nil {
			_, err = tc.Read(make([]byte, 64))
		}
	}
	require.Error(t, err)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server should refuse, not stall: %v", err)
	_, err = io.Copy(io.Discard, raw)
	if err != nil && !isReset(err) {
		require.NoError(t, err)
	}
}

func TestTLSHandshakeVersions(t *testing.T) {
	pki := newTestPKI(t)
	_, addr := startTLSServer(t, ServerConfig{TLS: pki.serverTLS(t)})
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			cfg := pki.clientTLS()
			cfg.MinVersion, cfg.MaxVersion = v, v
			conn := tlsDial(t, addr, cfg)
			assert.Equal(t, v, conn.ConnectionState().Version)
			key := "k" + tls.VersionName(v)[4:]
			assert.Equal(t, "STORED\r\nVALUE "+key+" 0 5\r\nhello\r\nEND\r\n",
				protoRoundTrip(t, conn, "set "+key+" 0 0 5\r\nhello\r\nget "+key+"\r\n"))
		})
	}
}

func TestTLSMutualVerifyMode2(t *testing.T) {
	pki := newTestPKI(t)
	scfg := pki.serverTLS(t)
	scfg.ClientAuth = tls.RequireAndVerifyClientCert
	scfg.ClientCAs = pki.pool
	s, addr := startTLSServer(t, ServerConfig{TLS: scfg})

	clientCert, _, _ := pki.issue(t, "emcache test client", true)
	ccfg := pki.clientTLS()
	ccfg.Certificates = []tls.Certificate{clientCert}
	conn := tlsDial(t, addr, ccfg)
	assert.Equal(t, "VERSION "+Version+"\r\n", protoRoundTrip(t, conn, "version\r\n"))
	assert.Equal(t, "3", readProtoStats(t, conn, "stats settings")["ssl_verify_mode"])

	failedHandshake(t, addr, pki.clientTLS()) // no certificate
	stranger := newTestPKI(t)
	foreign, _, _ := stranger.issue(t, "someone else", true)
	bad := pki.clientTLS()
	bad.Certificates = []tls.Certificate{foreign}
	failedHandshake(t, addr, bad)
	assert.Equal(t, "2", readProtoStats(t, conn, "stats")["ssl_handshake_errors"])
	assert.EqualValues(t, 1, s.Stats().CurrConnections)
}

func TestTLSMinVersionRefused(t *testing.T) {
	pki := newTestPKI(t)
	scfg := pki.serverTLS(t)
	scfg.MinVersion = tls.VersionTLS13
	_, addr := startTLSServer(t, ServerConfig{TLS: scfg})
	old := pki.clientTLS()
	old.MaxVersion = tls.VersionTLS12
	failedHandshake(t, addr, old)

	conn := tlsDial(t, addr, pki.clientTLS())
	stats := readProtoStats(t, conn, "stats")
	assert.Equal(t, "1", stats["ssl_handshake_errors"])
	assert.Equal(t, "1", stats["ssl_new_sessions"], "tickets are on: one full handshake")
	assert.Equal(t, "tlsv1.3", readProtoStats(t, conn, "stats settings")["ssl_min_version"])
}

// A client that speaks plaintext to a TLS port fails its handshake; one
// that says nothing does too, but only the Close that ends it waits.
func TestTLSNotTLSClient(t *testing.T) {
	pki := newTestPKI(t)
	s, addr := startTLSServer(t, ServerConfig{TLS: pki.serverTLS(t)})
	raw := protoDial(t, addr)
	_, err := io.WriteString(raw, "get foo\r\n")
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, raw)
	if err != nil && !isReset(err) {
		require.NoError(t, err)
	}
	conn := tlsDial(t, addr, pki.clientTLS())
	assert.Equal(t, "1", readProtoStats(t, conn, "stats")["ssl_handshake_errors"])

	protoDial(t, addr) // silent
	done := make(chan struct{})
	go func() {
		s.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(tlsHandshakeTimeout / 2):
		t.Fatal("Close waited for a silent client's handshake to time out")
	}
}

func TestTLSPlainAddrs(t *testing.T) {
	pki := newTestPKI(t)
	c, err := New(Config{MaxBytes: 8 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	s, err := c.Serve(ServerConfig{TLS: pki.serverTLS(t), Addrs: []string{"127.0.0.1:0"}, PlainAddrs: []string{"127.0.0.1:0"}})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	addrs := s.Addrs()
	require.Len(t, addrs, 2)

	conn := tlsDial(t, addrs[0].String(), pki.clientTLS())
	assert.Equal(t, "STORED\r\n", protoRoundTrip(t, conn, "set foo:123 0 0 16\r\nfoo set over TLS\r\n"))
	plain := protoDial(t, addrs[1].String())
	assert.Equal(t, "VALUE foo:123 0 16\r\nfoo set over TLS\r\nEND\r\n", protoRoundTrip(t, plain, "get foo:123\r\n"))
	assert.Equal(t, "yes", readProtoStats(t, plain, "stats settings")["ssl_enabled"])
}

// 10,000 pipelined ms then mg, written as one stream: TLS records cut
// requests and values anywhere, and several records arrive per read. A
// transport that left decrypted records waiting for a poller event that
// never comes would stall here (memcached 1.6.18 did).
func TestTLSPipelinedMetaAcrossRecords(t *testing.T) {
	pki := newTestPKI(t)
	_, addr := startTLSServer(t, ServerConfig{TLS: pki.serverTLS(t)})
	conn := tlsDial(t, addr, pki.clientTLS())
	require.NoError(t, conn.SetDeadline(time.Now().Add(4*protoIOTimeout)))

	const n = 10000
	size := func(i int) int { return (i*7919)%3000 + 1 }
	var req, want bytes.Buffer
	for i := range n {
		fmt.Fprintf(&req, "ms key%d %d T0\r\n%s\r\n", i, size(i), bytes.Repeat([]byte{byte('a' + i%26)}, size(i)))
		want.WriteString("HD\r\n")
	}
	for i := range n {
		fmt.Fprintf(&req, "mg key%d v\r\n", i)
		fmt.Fprintf(&want, "VA %d\r\n%s\r\n", size(i), bytes.Repeat([]byte{byte('a' + i%26)}, size(i)))
	}
	req.WriteString(protoSentinel)
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Write(req.Bytes())
		errc <- err
	}()
	got := readUntilProtoSentinel(t, conn)
	require.NoError(t, <-errc)
	require.Equal(t, want.Len(), len(got))
	assert.True(t, want.String() == got, "replies differ")
}

// trickleConn writes one byte per write, 10 ms apart, once on: a client
// whose every TLS record arrives a byte at a time.
type trickleConn struct {
	net.Conn
	on bool
}

func (c *trickleConn) Write(p []byte) (int, error) {
	if !c.on {
		return c.Conn.Write(p)
	}
	for i := range p {
		time.Sleep(10 * time.Millisecond) // the client's pace, not synchronisation
		if _, err := c.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

func TestTLSTrickle(t *testing.T) {
	pki := newTestPKI(t)
	_, addr := startTLSServer(t, ServerConfig{TLS: pki.serverTLS(t)})
	raw, err := net.DialTimeout("tcp", addr, protoIOTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { raw.Close() })
	tr := &trickleConn{Conn: raw}
	conn := tls.Client(tr, pki.clientTLS())
	require.NoError(t, conn.SetDeadline(time.Now().Add(protoIOTimeout)))
	require.NoError(t, conn.Handshake())
	tr.on = true
	_, err = io.WriteString(conn, "set k 0 0 5\r\nhello\r\n") // one record, ~40 bytes
	require.NoError(t, err)
	tr.on = false
	assert.Equal(t, "STORED\r\nVALUE k 0 5\r\nhello\r\nEND\r\n", protoRoundTrip(t, conn, "get k\r\n"))
}

// Idle TLS connections cost no goroutine: once handshaken, they wait in
// their worker's poller like plaintext ones, and the handshakers are gone.
func TestTLSIdleConnsGoroutinesFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("5000 handshakes")
	}
	const n = 5000
	pki := newTestPKI(t)
	s, addr := startTLSServer(t, ServerConfig{TLS: pki.serverTLS(t), MaxConns: n + 100, Workers: 2})
	base := runtime.NumGoroutine()
	// Resumed handshakes, X25519 alone: the test is about what a
	// connection costs afterwards, not about the handshake's CPU.
	ccfg := pki.clientTLS()
	ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	ccfg.CurvePreferences = []tls.CurveID{tls.X25519}
	conns := make([]*tls.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: protoIOTimeout}, "tcp", addr, ccfg)
				if err == nil {
					c.SetDeadline(time.Now().Add(4 * protoIOTimeout))
					_, err = io.WriteString(c, "version\r\n")
				}
				if err == nil {
					_, err = bufio.NewReader(c).ReadString('\n')
				}
				if err != nil {
					errs <- err
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	close(errs)
	for _, c := range conns {
		if c != nil {
			defer c.Close()
		}
	}
	require.NoError(t, <-errs)
	s.tls.wg.Wait() // every handshaker has handed its last connection over
	assert.EqualValues(t, n, s.Stats().CurrConnections)
	assert.LessOrEqual(t, runtime.NumGoroutine(), base, "goroutines grew with idle TLS connections")
	assert.Equal(t, "VERSION "+Version+"\r\n", protoRoundTrip(t, conns[n/2], "version\r\n"))
}

// writeTLSFiles writes a fresh server certificate and key from p, and p's
// CA, as PEM files in dir, under fixed names.
func writeTLSFiles(t *testing.T, p *testPKI, dir, cn string) (certFile, keyFile, caFile string) {
	t.Helper()
	_, certPEM, keyPEM := p.issue(t, cn, false)
	certFile, keyFile, caFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	require.NoError(t, os.WriteFile(caFile, p.pem, 0o600))
	return certFile, keyFile, caFile
}

func peerCN(c *tls.Conn) string { return c.ConnectionState().PeerCertificates[0].Subject.CommonName }

func TestTLSRefreshCerts(t *testing.T) {
	pki := newTestPKI(t)
	dir := t.TempDir()
	certFile, keyFile, caFile := writeTLSFiles(t, pki, dir, "first")
	_, addr := startTLSServer(t, ServerConfig{TLSCertFile: certFile, TLSKeyFile: keyFile, TLSCAFile: caFile})

	old := tlsDial(t, addr, pki.clientTLS())
	assert.Equal(t, "first", peerCN(old))
	settings := readProtoStats(t, old, "stats settings")
	assert.Equal(t, certFile, settings["ssl_chain_cert"])
	assert.Equal(t, keyFile, settings["ssl_key"])
	assert.Equal(t, caFile, settings["ssl_ca_cert"])

	writeTLSFiles(t, pki, dir, "second")
	assert.Equal(t, "OK\r\n", protoRoundTrip(t, old, "refresh_certs\r\n"))
	fresh := tlsDial(t, addr, pki.clientTLS())
	assert.Equal(t, "second", peerCN(fresh))
	assert.Equal(t, "first", peerCN(old))
	assert.Equal(t, "VERSION "+Version+"\r\n", protoRoundTrip(t, old, "version\r\n"), "the old connection keeps working")
	since, err := strconv.Atoi(readProtoStats(t, old, "stats")["time_since_server_cert_refresh"])
	require.NoError(t, err)
	assert.LessOrEqual(t, since, 1, "seconds since the refresh")

	require.NoError(t, os.WriteFile(certFile, []byte("not a certificate\n"), 0o600))
	assert.Equal(t, "Error loading the certificate chain: "+certFile+" : no PEM certificate in it\r\n",
		protoRoundTrip(t, fresh, "refresh_certs\r\n"))
	writeTLSFiles(t, newTestPKI(t), dir, "mismatch")
	require.NoError(t, os.WriteFile(keyFile, func() []byte { _, _, k := pki.issue(t, "x", false); return k }(), 0o600))
	assert.Equal(t, "Error validating the certificate: the key does not match the certificate's public key\r\n",
		protoRoundTrip(t, fresh, "refresh_certs noreply\r\n"), "errors are answered under noreply, as memcached's are")
	assert.Equal(t, "second", peerCN(tlsDial(t, addr, pki.clientTLS())), "a failed refresh keeps the certificate in use")
}

func TestTLSRefreshCertsWithoutTLS(t *testing.T) {
	_, addr := startProtoServer(t, ServerConfig{}, Config{})
	conn := protoDial(t, addr)
	assert.Equal(t, "Error TLS not enabled\r\n", protoRoundTrip(t, conn, "refresh_certs\r\n"))
	settings := readProtoStats(t, conn, "stats settings")
	for k, v := range map[string]string{
		"ssl_enabled": "no", "ssl_chain_cert": "(null)", "ssl_key": "(null)", "ssl_verify_mode": "0",
		"ssl_keyformat": "1", "ssl_ciphers": "NULL", "ssl_ca_cert": "NULL", "ssl_wbuf_size": "16384",
		"ssl_session_cache": "no", "ssl_kernel_tls": "no", "ssl_min_version": "tlsv1.2",
	} {
		assert.Equal(t, v, settings[k], k)
	}
	_, ok := readProtoStats(t, conn, "stats")["ssl_handshake_errors"]
	assert.False(t, ok, "no TLS stats without TLS")
}

// A watcher on a TLS connection gets its log lines encrypted like any
// reply.
func TestTLSWatch(t *testing.T) {
	pki := newTestPKI(t)
	_, addr := startTLSServer(t, ServerConfig{TLS: pki.serverTLS(t)})
	w := tlsDial(t, addr, pki.clientTLS())
	_, err := io.WriteString(w, "watch fetchers\r\n")
	require.NoError(t, err)
	r := bufio.NewReader(w)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "OK\r\n", line)
	conn := tlsDial(t, addr, pki.clientTLS())
	assert.Equal(t, "END\r\n", protoRoundTrip(t, conn, "get watched\r\n"))
	line, err = r.ReadString('\n')
	require.NoError(t, err)
	assert.Contains(t, line, "key=watched")
}

func TestTLSConfigErrors(t *testing.T) {
	pki := newTestPKI(t)
	dir := t.TempDir()
	certFile, keyFile, _ := writeTLSFiles(t, pki, dir, "server")
	missing := filepath.Join(dir, "missing.pem")
	c, err := New(Config{MaxBytes: 8 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	for _, tc := range []struct {
		name string
		cfg  ServerConfig
		is   error
		want string
	}{
		{"plain without TLS", ServerConfig{PlainAddrs: []string{"127.0.0.1:0"}}, nil, "PlainAddrs needs TLS"},
		{"no certificate", ServerConfig{TLS: &tls.Config{}}, nil, "has no certificate"},
		{"key without chain", ServerConfig{TLSKeyFile: keyFile}, nil, "need TLSCertFile"},
		{"missing chain", ServerConfig{TLSCertFile: missing}, ErrTLSFiles, "Error loading the certificate chain: " + missing + " : "},
		{"missing key", ServerConfig{TLSCertFile: certFile, TLSKeyFile: missing}, ErrTLSFiles, "Error loading the key: " + missing + " : "},
		{"key in neither", ServerConfig{TLSCertFile: certFile}, ErrTLSFiles, "Error loading the key: " + certFile + " : no PEM private key in it"},
		{"missing CA", ServerConfig{TLSCertFile: certFile, TLSKeyFile: keyFile, TLSCAFile: missing}, ErrTLSFiles, "Error loading the CA certificate: " + missing + " : "},
		{"OpenSSL keyword", ServerConfig{TLSCertFile: certFile, TLSKeyFile: keyFile, TLSCiphers: "HIGH:!aNULL"}, ErrTLSCiphers, `"HIGH"`},
		{"TLS 1.3 suite", ServerConfig{TLSCertFile: certFile, TLSKeyFile: keyFile, TLSCiphers: "TLS_AES_128_GCM_SHA256"}, ErrTLSCiphers, `"TLS_AES_128_GCM_SHA256"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Addrs = []string{"127.0.0.1:0"}
			_, err := c.Serve(tc.cfg)
			require.Error(t, err)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// The key may sit in the chain's file, or be DER; ciphers take OpenSSL's
// names, and stats settings shows what was given.
func TestTLSFilesAndCiphers(t *testing.T) {
	pki := newTestPKI(t)
	dir := t.TempDir()
	certFile, keyFile, _ := writeTLSFiles(t, pki, dir, "server")
	certPEM, err := os.ReadFile(certFile)
	require.NoError(t, err)
	keyPEM, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	both := filepath.Join(dir, "both.pem")
	require.NoError(t, os.WriteFile(both, append(certPEM, keyPEM...), 0o600))
	block, _ := pem.Decode(keyPEM)
	der := filepath.Join(dir, "key.der")
	require.NoError(t, os.WriteFile(der, block.Bytes, 0o600))

	const ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305"
	for _, tc := range []struct {
		name, key, format string
	}{{"key in the chain's file", "", "1"}, {"DER key", der, "2"}} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startTLSServer(t, ServerConfig{TLSCertFile: both, TLSKeyFile: tc.key, TLSCiphers: ciphers})
			cfg := pki.clientTLS()
			cfg.MaxVersion = tls.VersionTLS12
			conn := tlsDial(t, addr, cfg)
			assert.Contains(t, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
				conn.ConnectionState().CipherSuite)
			settings := readProtoStats(t, conn, "stats settings")
			assert.Equal(t, tc.format, settings["ssl_keyformat"])
			assert.Equal(t, ciphers, settings["ssl_ciphers"])
		})
	}
}

func TestParseCipherList(t *testing.T) {
	ids, err := parseCipherList("ECDHE-RSA-AES256-GCM-SHA384 AES128-SHA,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
	require.NoError(t, err)
	assert.Equal(t, []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, ids)
	for name, id := range openSSLSuites {
		assert.NotEqual(t, "", tls.CipherSuiteName(id), name)
		assert.False(t, strings.HasPrefix(tls.CipherSuiteName(id), "0x"), "%s maps to a suite crypto/tls does not know", name)
	}
	_, err = parseCipherList(":")
	assert.ErrorIs(t, err, ErrTLSCiphers)
}
