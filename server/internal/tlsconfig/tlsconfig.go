// Package tlsconfig holds careteamd's transport security settings and a
// server certificate that can be replaced on disk without a restart.
//
// It exists because certificates are rotated by rewriting files (an ACME
// client, an internal CA's renewal job): a server that read them once would
// serve an expired certificate until restarted, and a restart cuts every
// call in flight. It also keeps the decisions HIPAA's transmission security
// rule asks about (the lowest TLS version, how client certificates are
// checked) in one place that can be reviewed.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// checkInterval bounds how often the certificate files are stat'ed, so that
// a burst of handshakes costs two stat calls, not two per handshake.
const checkInterval = time.Second

// Server returns careteamd's TLS configuration: TLS 1.2 or later (1.3 is
// negotiated whenever the client offers it) with cert's current
// certificate. With clientCAs, a client certificate is verified against
// them when the client presents one and the handshake fails when it does
// not verify; clients without one still connect and authenticate by token.
func Server(cert *Certificate, clientCAs *x509.CertPool) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// TLS 1.2 only with forward secrecy and AEAD, which HTTP/2 (RFC 9113
		// section 9.2.2) requires of gRPC's transport; Go's defaults also
		// offer CBC suites. TLS 1.3's suites all qualify and are not
		// configurable.
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		GetCertificate: cert.GetCertificate,
	}
	if clientCAs != nil {
		cfg.ClientCAs = clientCAs
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg
}

// LoadCertPool reads PEM CA certificates from file.
func LoadCertPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tlsconfig: no PEM certificate in %s", file)
	}
	return pool, nil
}

// Certificate is a certificate and key pair read from files and re-read
// when either file's modification time or size changes.
type Certificate struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time // replaced in tests to avoid sleeping

	mu        sync.Mutex
	cert      *tls.Certificate
	certStamp stamp // of the last version read, good or bad
	keyStamp  stamp
	lastCheck time.Time
}

// stamp identifies a version of a file without reading it.
type stamp struct {
	modTime time.Time
	size    int64
}

func (s stamp) same(o stamp) bool { return s.modTime.Equal(o.modTime) && s.size == o.size }

// missing stands for a file that could not be stat'ed, so that it counts as
// changed when it comes back, whatever its timestamp.
var missing = stamp{size: -1}

// LoadCertificate reads the PEM certificate chain and private key. Unlike
// later reloads, an unusable pair is an error here: there is no previous
// certificate to fall back on.
func LoadCertificate(certFile, keyFile string, log *slog.Logger) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	certStamp, keyStamp, err := c.stat()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: %w", err)
	}
	c.cert, c.certStamp, c.keyStamp, c.lastCheck = &cert, certStamp, keyStamp, c.now()
	log.Info("TLS certificate loaded", leafAttrs(certFile, &cert)...)
	return c, nil
}

// GetCertificate serves as tls.Config.GetCertificate. It never fails: when
// the files have become unusable the last good pair stays in force, so that
// a botched rotation does not take the service down.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.Sub(c.lastCheck) >= checkInterval {
		c.lastCheck = now
		c.reload()
	}
	return c.cert, nil
}

// reload re-reads the pair if either file changed. A bad version is
// remembered like a good one so that it is logged once, not on every check.
// The files are stat'ed before they are read, so a write that lands during
// the read shows as a change at the next check.
func (c *Certificate) reload() {
	certStamp, keyStamp, err := c.stat()
	if err != nil {
		if !c.certStamp.same(missing) || !c.keyStamp.same(missing) {
			c.log.Warn("TLS certificate files unreadable; keeping the previous certificate", "error", err.Error())
		}
		c.certStamp, c.keyStamp = missing, missing
		return
	}
	if certStamp.same(c.certStamp) && keyStamp.same(c.keyStamp) {
		return
	}
	c.certStamp, c.keyStamp = certStamp, keyStamp
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		// Replacing the two files is not atomic: a certificate written
		// before its key is refused here and picked up at the next check
		// once the key follows.
		c.log.Warn("TLS certificate files changed but are unusable; keeping the previous certificate",
			"cert_file", c.certFile, "key_file", c.keyFile, "error", err.Error())
		return
	}
	c.cert = &cert
	c.log.Info("TLS certificate reloaded", leafAttrs(c.certFile, &cert)...)
}

func (c *Certificate) stat() (certStamp, keyStamp stamp, err error) {
	cfi, err := os.Stat(c.certFile)
	if err != nil {
		return stamp{}, stamp{}, fmt.Errorf("tlsconfig: %w", err)
	}
	kfi, err := os.Stat(c.keyFile)
	if err != nil {
		return stamp{}, stamp{}, fmt.Errorf("tlsconfig: %w", err)
	}
	return stamp{cfi.ModTime(), cfi.Size()}, stamp{kfi.ModTime(), kfi.Size()}, nil
}

// leafAttrs describes a loaded certificate for the log, so that an operator
// can see that a rotation took. Leaf is absent under GODEBUG
// x509keypairleaf=0.
func leafAttrs(certFile string, cert *tls.Certificate) []any {
	attrs := []any{"cert_file", certFile}
	if cert.Leaf != nil {
		attrs = append(attrs, "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	}
	return attrs
}
