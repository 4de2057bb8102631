package emcache_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log"
	"math/big"
	"net"
	"time"

	"github.com/emcache/emcache"
)

// issue makes a certificate named cn signed by parent (self-signed when
// parent is nil), valid for 127.0.0.1: in production they come from files
// (ServerConfig.TLSCertFile...) or a tls.Config built elsewhere.
func issue(cn string, parent *tls.Certificate) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:         parent == nil, BasicConstraintsValid: true,
	}
	signer, signKey := tmpl, any(key)
	if parent != nil {
		signer, signKey = parent.Leaf, parent.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		log.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// Serving over TLS with client certificates (mTLS) is the tls.Config's
// business; PlainAddrs keeps a plaintext listener beside it, say for a
// sidecar on the loopback interface.
func ExampleCache_Serve_tls() {
	ca := issue("example CA", nil)
	cas := x509.NewCertPool()
	cas.AddCert(ca.Leaf)

	c, err := emcache.New(emcache.Config{MaxBytes: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	srv, err := c.Serve(emcache.ServerConfig{
		Addrs:      []string{"127.0.0.1:0"},
		PlainAddrs: []string{"127.0.0.1:0"},
		TLS: &tls.Config{
			Certificates: []tls.Certificate{issue("server", &ca)},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    cas,
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	tlsAddr, plainAddr := srv.Addrs()[0].String(), srv.Addrs()[1].String()

	conn, err := tls.Dial("tcp", tlsAddr, &tls.Config{
		RootCAs:      cas,
		Certificates: []tls.Certificate{issue("client", &ca)},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Print(roundTrip(conn, bufio.NewReader(conn), "set greeting 0 0 5\r\nhello\r\n", "STORED"))

	plain, err := net.Dial("tcp", plainAddr)
	if err != nil {
		log.Fatal(err)
	}
	defer plain.Close()
	fmt.Print(roundTrip(plain, bufio.NewReader(plain), "get greeting\r\n", "END"))
	// Output:
	// STORED
	// VALUE greeting 0 5
	// hello
	// END
}
