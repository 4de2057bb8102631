package main

import (
	"crypto/tls"
	"errors"
	"strconv"
)

// sslOptions are memcached's -o ssl_* options, as given.
type sslOptions struct {
	chainCert, key, caCert string
	ciphers                string
	verifyMode             int // 0 none, 1 request, 2 require, 3 once
	minVersion             int // 0 TLS 1.0 ... 3 TLS 1.3
	wbufSize               int // bytes
	sessionCache           bool
	kernelTLS              bool
}

// memcached 1.6.18's defaults: no client certificates, TLS 1.2 at least,
// a 16 KB write buffer, no session cache.
func defaultSSLOptions() sslOptions {
	return sslOptions{minVersion: 2, wbufSize: 16 << 10}
}

// errNotSSL says parse does not know the name: one of ignoredSubopts.
var errNotSSL = errors.New("not an ssl option")

// parse applies one -o ssl_* option with memcached's messages for bad
// values. ssl_keyformat is checked only: the key's format is read from
// the file.
func (so *sslOptions) parse(name, val string, hasVal bool) error {
	str := func(dst *string) error {
		if !hasVal {
			return failf(exitFail, "Missing %s argument", name)
		}
		*dst = val
		return nil
	}
	num := func(lo, hi int, dst *int) error {
		if !hasVal {
			return failf(exitFail, "Missing %s argument", name)
		}
		n, err := strconv.Atoi(val)
		if err != nil {
			return failf(exitFail, "could not parse argument to %s", name)
		}
		if n < lo || n > hi {
			return failf(exitFail, "Invalid %s. Use help to see valid options.", name)
		}
		*dst = n
		return nil
	}
	switch name {
	case "ssl_chain_cert":
		return str(&so.chainCert)
	case "ssl_key":
		return str(&so.key)
	case "ssl_ca_cert":
		return str(&so.caCert)
	case "ssl_ciphers":
		return str(&so.ciphers)
	case "ssl_verify_mode":
		return num(0, 3, &so.verifyMode)
	case "ssl_min_version":
		return num(0, 3, &so.minVersion)
	case "ssl_keyformat":
		if !hasVal {
			return failf(exitFail, "Missing ssl_keyformat argument")
		}
		switch val {
		case "1", "2", "PEM", "DER":
		default:
			return failf(exitFail, "ssl_keyformat %s is not supported: emcached reads PEM (1) or DER (2) keys from files; OpenSSL engines are not available", val)
		}
		return nil
	case "ssl_wbuf_size":
		if !hasVal {
			return failf(exitFail, "Missing ssl_wbuf_size argument")
		}
		kb, err := strconv.ParseUint(val, 10, 32)
		if err != nil || kb == 0 || kb > 1<<20 {
			return failf(exitFail, "could not parse argument to ssl_wbuf_size")
		}
		so.wbufSize = int(kb) << 10
		return nil
	case "ssl_session_cache":
		so.sessionCache = true
		return nil
	case "ssl_kernel_tls":
		so.kernelTLS = true
		return nil
	}
	return errNotSSL
}

// tlsConfig is the configuration -Z serves with, less the files, which
// the server loads (and reloads on refresh_certs). It fails where
// memcached's ssl_init would, and where OpenSSL offers what crypto/tls
// does not.
func (so *sslOptions) tlsConfig() (*tls.Config, error) {
	if so.kernelTLS {
		return nil, failf(exitUsage, "Kernel TLS offload is not available")
	}
	if so.chainCert == "" {
		return nil, failf(exitUsage, "Error loading the certificate chain: (null) : no -o ssl_chain_cert given")
	}
	c := &tls.Config{
		MinVersion: []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13}[so.minVersion],
		// OpenSSL's session cache and tickets are both off unless
		// ssl_session_cache; crypto/tls resumes with tickets only.
		SessionTicketsDisabled: !so.sessionCache,
		// Full records from the first reply, as OpenSSL writes them: a
		// cache's clients are not browsers waiting for a first paint.
		DynamicRecordSizingDisabled: true,
	}
	switch so.verifyMode {
	case 1:
		c.ClientAuth = tls.VerifyClientCertIfGiven
	case 2, 3: // 3 adds "once", which concerns renegotiation: there is none
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}
