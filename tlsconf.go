package emcache

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// ServerConfig's TLS settings: the files memcached's ssl_* options name,
// loaded into the tls.Config connections are handshaken with, and the
// names stats settings shows them by.

// ErrTLSFiles is wrapped by the errors of certificate, key and CA files
// that do not load, whose text is memcached's for the same failure.
var ErrTLSFiles = errors.New("emcache: TLS files do not load")

// ErrTLSCiphers is wrapped by the error of a ServerConfig.TLSCiphers that
// names what crypto/tls cannot choose.
var ErrTLSCiphers = errors.New("emcache: TLS cipher list not supported")

// tlsFileError is a file of ServerConfig's TLS files that did not load;
// msg is what memcached says of it.
type tlsFileError struct{ msg string }

func (e *tlsFileError) Error() string { return "emcache: " + e.msg }
func (e *tlsFileError) Unwrap() error { return ErrTLSFiles }

// loadTLS settles TLS: a clone of cfg.TLS (or a default one when only
// files are named) with the files loaded and TLSCiphers mapped onto it.
// It returns the clone as given, before the files, which refresh_certs
// loads them into again.
func (cfg *ServerConfig) loadTLS() (base *tls.Config, keyFormat int, err error) {
	files := cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" || cfg.TLSCAFile != ""
	if cfg.TLS == nil && !files {
		if len(cfg.PlainAddrs) > 0 {
			return nil, 0, errors.New("emcache: ServerConfig.PlainAddrs needs TLS: without it every address is plain")
		}
		return nil, 0, nil
	}
	base = &tls.Config{}
	if cfg.TLS != nil {
		base = cfg.TLS.Clone()
	}
	if files && cfg.TLSCertFile == "" {
		return nil, 0, errors.New("emcache: ServerConfig.TLSKeyFile and TLSCAFile need TLSCertFile")
	}
	c, keyFormat, err := loadTLSFiles(base, cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSCAFile)
	if err != nil {
		return nil, 0, err
	}
	if cfg.TLSCiphers != "" {
		if base.CipherSuites, err = parseCipherList(cfg.TLSCiphers); err != nil {
			return nil, 0, err
		}
		c.CipherSuites = base.CipherSuites
	}
	if len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil {
		return nil, 0, errors.New("emcache: ServerConfig.TLS has no certificate: set Certificates, GetCertificate or TLSCertFile")
	}
	cfg.TLS = c
	return base, keyFormat, nil
}

// loadTLSFiles returns a clone of base with the certificate chain and key
// loaded (the key from the chain's file when keyFile is empty) and CA
// file as its ClientCAs; base itself when certFile is empty. Errors say
// what memcached says of the same failure.
func loadTLSFiles(base *tls.Config, certFile, keyFile, caFile string) (*tls.Config, int, error) {
	if certFile == "" {
		return base, 1, nil
	}
	chainPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, 0, tlsFileErrorf("Error loading the certificate chain: %s : %v", certFile, err)
	}
	var cert tls.Certificate
	for rest := chainPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			cert.Certificate = append(cert.Certificate, b.Bytes)
		}
	}
	if len(cert.Certificate) == 0 {
		return nil, 0, tlsFileErrorf("Error loading the certificate chain: %s : no PEM certificate in it", certFile)
	}
	if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
		return nil, 0, tlsFileErrorf("Error loading the certificate chain: %s : %v", certFile, err)
	}
	keyPath, keyData := keyFile, chainPEM
	if keyFile == "" {
		keyPath = certFile
	} else if keyData, err = os.ReadFile(keyFile); err != nil {
		return nil, 0, tlsFileErrorf("Error loading the key: %s : %v", keyPath, err)
	}
	key, format, err := parseKey(keyData)
	if err != nil {
		return nil, 0, tlsFileErrorf("Error loading the key: %s : %v", keyPath, err)
	}
	pub, ok := key.(crypto.Signer)
	eq, ok2 := cert.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !ok2 || !eq.Equal(pub.Public()) {
		return nil, 0, tlsFileErrorf("Error validating the certificate: the key does not match the certificate's public key")
	}
	cert.PrivateKey = key
	c := base.Clone()
	c.Certificates = []tls.Certificate{cert}
	if caFile != "" {
		caPEM, err := os.ReadFile(caFile)
		if err != nil {
			return nil, 0, tlsFileErrorf("Error loading the CA certificate: %s : %v", caFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, 0, tlsFileErrorf("Error loading the CA certificate: %s : no PEM certificate in it", caFile)
		}
		c.ClientCAs = pool
	}
	return c, format, nil
}

func tlsFileErrorf(format string, args ...any) error {
	return &tlsFileError{msg: fmt.Sprintf(format, args...)}
}

// parseKey reads the first private key of a PEM file, or a DER key (a
// file without PEM blocks), and says which (ssl_keyformat: 1 or 2).
func parseKey(data []byte) (crypto.PrivateKey, int, error) {
	der, format := data, 2
	for rest := data; ; {
		b, r := pem.Decode(rest)
		if b == nil {
			break
		}
		rest, format, der = r, 1, nil
		if b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY") {
			der = b.Bytes
			break
		}
	}
	if der == nil {
		return nil, 0, errors.New("no PEM private key in it")
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return k, format, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, format, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, format, nil
	}
	return nil, 0, errors.New("not a PKCS #8, PKCS #1 or SEC 1 private key")
}

// openSSLSuites maps the OpenSSL names of the TLS 1.2 (and older) suites
// crypto/tls implements to their IDs: what -o ssl_ciphers lists. TLS 1.3's
// suites are not configurable in crypto/tls (nor in OpenSSL's cipher
// list).
var openSSLSuites = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-ECDSA-AES128-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"ECDHE-RSA-AES128-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-ECDSA-AES256-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-AES256-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	"ECDHE-ECDSA-AES128-SHA256":     tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	"ECDHE-RSA-AES128-SHA256":       tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	"AES128-GCM-SHA256":             tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	"AES256-GCM-SHA384":             tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	"AES128-SHA":                    tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	"AES256-SHA":                    tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	"AES128-SHA256":                 tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
	"ECDHE-RSA-DES-CBC3-SHA":        tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
	"DES-CBC3-SHA":                  tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
	"ECDHE-ECDSA-RC4-SHA":           tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA,
	"ECDHE-RSA-RC4-SHA":             tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA,
	"RC4-SHA":                       tls.TLS_RSA_WITH_RC4_128_SHA,
}

// parseCipherList maps an OpenSSL cipher list of suite names (separated
// by colons, commas or spaces) onto crypto/tls suites. OpenSSL's keywords
// and operators (HIGH, !aNULL, @STRENGTH...) select from its own tables
// and have no meaning here: they are refused by name, as are suites
// crypto/tls lacks. IANA names (crypto/tls's) are accepted as well.
func parseCipherList(list string) ([]uint16, error) {
	iana := make(map[string]uint16)
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
			iana[cs.Name] = cs.ID
		}
	}
	var ids []uint16
	for _, name := range strings.FieldsFunc(list, func(r rune) bool { return r == ':' || r == ',' || r == ' ' }) {
		id, ok := openSSLSuites[name]
		if !ok {
			id, ok = iana[name]
		}
		if !ok {
			return nil, fmt.Errorf("%w: %q: want the OpenSSL names of suites crypto/tls implements (such as ECDHE-RSA-AES128-GCM-SHA256); OpenSSL's keywords and TLS 1.3 suites cannot be chosen", ErrTLSCiphers, name)
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: %q names no suite", ErrTLSCiphers, list)
	}
	return ids, nil
}

// openSSLVersions are memcached's names of the protocol versions
// (ssl_proto_text), by crypto/tls's numbers.
var openSSLVersions = map[uint16]string{
	tls.VersionTLS10: "tlsv1.0",
	tls.VersionTLS11: "tlsv1.1",
	tls.VersionTLS12: "tlsv1.2",
	tls.VersionTLS13: "tlsv1.3",
}

// appendTLSSettings appends the ssl_* lines of stats settings as
// memcached 1.6.18 built with TLS prints them, from the configuration in
// force: OpenSSL's verify flags for ClientAuth (0 none, 1 peer, 3 peer
// and fail without a certificate), the key's format, the unset files and
// ciphers as memcached's NULL pointers print.
func (s *Server) appendTLSSettings(out []byte) []byte {
	cfg := &s.cfg
	c := s.tls.config.Load()
	null := func(v, none string) string {
		if v == "" {
			return none
		}
		return v
	}
	verify, keyFormat, session, minVersion := 0, 1, false, "tlsv1.2"
	if c != nil {
		switch c.ClientAuth {
		case tls.RequestClientCert, tls.VerifyClientCertIfGiven:
			verify = 1
		case tls.RequireAnyClientCert, tls.RequireAndVerifyClientCert:
			verify = 3
		}
		keyFormat = int(s.tls.keyFormat.Load())
		session = !c.SessionTicketsDisabled
		if v, ok := openSSLVersions[c.MinVersion]; ok {
			minVersion = v
		}
	}
	out = appendStatStr(out, "ssl_enabled", yesNo(c != nil))
	out = appendStatStr(out, "ssl_chain_cert", null(cfg.TLSCertFile, "(null)"))
	out = appendStatStr(out, "ssl_key", null(cfg.TLSKeyFile, "(null)"))
	out = appendStat(out, "ssl_verify_mode", uint64(verify))
	out = appendStat(out, "ssl_keyformat", uint64(keyFormat))
	out = appendStatStr(out, "ssl_ciphers", null(cfg.TLSCiphers, "NULL"))
	out = appendStatStr(out, "ssl_ca_cert", null(cfg.TLSCAFile, "NULL"))
	out = appendStat(out, "ssl_wbuf_size", uint64(cfg.TLSWriteBuffer))
	out = appendStatStr(out, "ssl_session_cache", yesNo(session))
	out = appendStatStr(out, "ssl_kernel_tls", "no")
	return appendStatStr(out, "ssl_min_version", minVersion)
}

// appendTLSStats appends the TLS lines of stats, with TLS only.
func (s *Server) appendTLSStats(out []byte) []byte {
	t := &s.tls
	if !t.enabled() {
		return out
	}
	if t.sessions {
		out = appendStat(out, "ssl_new_sessions", t.newSessions.Load())
	}
	out = appendStat(out, "ssl_handshake_errors", t.hsFailures.Load())
	since := time.Duration(s.clock() - t.refreshed.Load())
	return appendStat(out, "time_since_server_cert_refresh", uint64(since/time.Second))
}
