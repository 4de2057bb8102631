package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSSLOptionsTLSConfig(t *testing.T) {
	so := defaultSSLOptions()
	_, err := so.tlsConfig()
	var ee *exitError
	require.True(t, errors.As(err, &ee))
	assert.Equal(t, exitUsage, ee.code)
	assert.Contains(t, ee.msg, "Error loading the certificate chain: (null)")

	so.chainCert = "c.pem"
	c, err := so.tlsConfig()
	require.NoError(t, err)
	assert.Equal(t, uint16(tls.VersionTLS12), c.MinVersion)
	assert.Equal(t, tls.NoClientCert, c.ClientAuth)
	assert.True(t, c.SessionTicketsDisabled)

	for mode, want := range []tls.ClientAuthType{tls.NoClientCert, tls.VerifyClientCertIfGiven, tls.RequireAndVerifyClientCert, tls.RequireAndVerifyClientCert} {
		so.verifyMode = mode
		c, err := so.tlsConfig()
		require.NoError(t, err)
		assert.Equal(t, want, c.ClientAuth, "ssl_verify_mode=%d", mode)
	}
	so.minVersion, so.sessionCache = 3, true
	c, err = so.tlsConfig()
	require.NoError(t, err)
	assert.Equal(t, uint16(tls.VersionTLS13), c.MinVersion)
	assert.False(t, c.SessionTicketsDisabled)

	so.kernelTLS = true
	_, err = so.tlsConfig()
	require.True(t, errors.As(err, &ee))
	assert.Equal(t, "Kernel TLS offload is not available", ee.msg)
}

func TestPlainListeners(t *testing.T) {
	o, err := parseArgs([]string{"-Z", "-p", "7000", "-l", "notls:127.0.0.1:5000,127.0.0.1,notls:[::1]"})
	require.NoError(t, err)
	tcp, err := o.tcpListeners()
	require.NoError(t, err)
	assert.Equal(t, []listenAddr{{"127.0.0.1", 7000}}, tcp)
	plain, err := o.plainListeners()
	require.NoError(t, err)
	assert.Equal(t, []listenAddr{{"127.0.0.1", 5000}, {"::1", 7000}}, plain)

	o, err = parseArgs([]string{"-Z", "-l", "notls:127.0.0.1:5000"})
	require.NoError(t, err)
	tcp, err = o.tcpListeners()
	require.NoError(t, err)
	assert.Empty(t, tcp, "a notls entry alone is not the default listener plus one")
}

// writeServerFiles writes a self-signed certificate for 127.0.0.1 named
// cn and its key as PEM files in dir, and returns a pool trusting it.
func writeServerFiles(t *testing.T, dir, cn string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o644))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}

func TestBinaryServesTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, roots := writeServerFiles(t, dir, "first")
	tlsPort, plainPort := freePort(t), freePort(t)
	p := startEmcached(t, "-p", tlsPort, "-v", "-A", "-Z", "-o", "ssl_chain_cert="+certFile+",ssl_key="+keyFile,
		"-l", "notls:127.0.0.1:"+plainPort+",127.0.0.1:"+tlsPort)
	p.waitLine(t, "server listening")

	cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", tlsPort), cfg)
	require.NoError(t, err)
	defer conn.Close()
	assert.Equal(t, "STORED\r\n", roundTrip(t, conn, "set foo 0 0 3\r\nbar\r\n", "\r\n"))
	plain, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", plainPort))
	require.NoError(t, err)
	defer plain.Close()
	assert.Equal(t, "VALUE foo 0 3\r\nbar\r\nEND\r\n", roundTrip(t, plain, "get foo\r\n", "END\r\n"))
	settings := roundTrip(t, plain, "stats settings\r\n", "END\r\n")
	assert.Contains(t, settings, "STAT ssl_chain_cert "+certFile+"\r\n")
	assert.Contains(t, settings, "STAT ssl_session_cache no\r\n")

	_, _, roots = writeServerFiles(t, dir, "second")
	assert.Equal(t, "OK\r\n", roundTrip(t, plain, "refresh_certs\r\n", "\r\n"))
	cfg.RootCAs = roots
	again, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", tlsPort), cfg)
	require.NoError(t, err)
	defer again.Close()
	assert.Equal(t, "second", again.ConnectionState().PeerCertificates[0].Subject.CommonName)

	_, err = again.Write([]byte("shutdown\r\n"))
	require.NoError(t, err)
	require.Equal(t, 0, p.exitCode(t), p.stderr())
}

func TestBinaryRefusesBadTLSFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, _, _ := writeServerFiles(t, dir, "server")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing chain", []string{"-o", "ssl_chain_cert=" + filepath.Join(dir, "none.pem")}, "Error loading the certificate chain: " + filepath.Join(dir, "none.pem") + " : "},
		{"no key", []string{"-o", "ssl_chain_cert=" + certFile}, "Error loading the key: " + certFile + " : no PEM private key in it"},
		{"cipher keyword", []string{"-o", "ssl_chain_cert=" + certFile + ",ssl_key=" + filepath.Join(dir, "key.pem") + ",ssl_ciphers=HIGH"}, "Error setting the provided cipher(s): HIGH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startEmcached(t, append([]string{"-p", "-1", "-l", "127.0.0.1", "-Z"}, tc.args...)...)
			require.Equal(t, exitUsage, p.exitCode(t), p.stderr())
			assert.Contains(t, p.stderr(), tc.want)
		})
	}
}
