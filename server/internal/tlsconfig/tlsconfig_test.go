package tlsconfig

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// authority is a test CA that issues certificates.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newAuthority(t *testing.T, name string) *authority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &authority{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for cn, valid for 127.0.0.1.
func (a *authority) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pairFiles is a certificate and key on disk whose versions the test
// stamps with explicit modification times.
type pairFiles struct {
	t                 *testing.T
	certFile, keyFile string
	mtime             time.Time
}

func newPairFiles(t *testing.T) *pairFiles {
	dir := t.TempDir()
	return &pairFiles{t: t, certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"), mtime: time.Now().Add(-time.Hour)}
}

// write replaces the files and gives them a modification time of their
// own: two certificates from one template have the same size, and the
// filesystem's clock may not tick between writes.
func (p *pairFiles) write(certPEM, keyPEM []byte) {
	p.t.Helper()
	p.mtime = p.mtime.Add(time.Minute)
	for _, f := range []struct {
		path string
		data []byte
	}{{p.certFile, certPEM}, {p.keyFile, keyPEM}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			p.t.Fatal(err)
		}
		if err := os.Chtimes(f.path, p.mtime, p.mtime); err != nil {
			p.t.Fatal(err)
		}
	}
}

// syncBuffer is a log destination safe to write from handshakes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// loaded is a Certificate on a clock the test moves.
type loaded struct {
	*Certificate
	clock time.Time
	logs  *syncBuffer
}

func load(t *testing.T, p *pairFiles) *loaded {
	t.Helper()
	logs := &syncBuffer{}
	c, err := LoadCertificate(p.certFile, p.keyFile, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l := &loaded{Certificate: c, clock: time.Now(), logs: logs}
	c.now = func() time.Time { return l.clock }
	return l
}

// served returns the Common Name of the certificate a handshake would get
// after d has passed.
func (l *loaded) served(t *testing.T, d time.Duration) string {
	t.Helper()
	l.clock = l.clock.Add(d)
	cert, err := l.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

func TestReloadsWhenTheFilesChange(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "ca")
	files := newPairFiles(t)
	files.write(ca.issue(t, "first", x509.ExtKeyUsageServerAuth))
	c := load(t, files)
	if got := c.served(t, time.Second); got != "first" {
		t.Fatalf("served %q, want first", got)
	}

	files.write(ca.issue(t, "second", x509.ExtKeyUsageServerAuth))
	if got := c.served(t, 500*time.Millisecond); got != "first" {
		t.Fatalf("checked the files again within a second: served %q", got)
	}
	if got := c.served(t, 500*time.Millisecond); got != "second" {
		t.Fatalf("after the files changed: served %q, want second", got)
	}
	if !strings.Contains(c.logs.String(), "TLS certificate reloaded") {
		t.Errorf("the reload was not logged:\n%s", c.logs)
	}
}

func TestUnusableReplacementKeepsThePreviousCertificate(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "ca")
	files := newPairFiles(t)
	goodCert, goodKey := ca.issue(t, "good", x509.ExtKeyUsageServerAuth)
	files.write(goodCert, goodKey)
	c := load(t, files)
	otherCert, _ := ca.issue(t, "other", x509.ExtKeyUsageServerAuth)

	for _, tc := range []struct {
		name          string
		certPEM, key  []byte
		wantLogsAfter int
	}{
		{name: "malformed certificate", certPEM: []byte("-----BEGIN CERTIFICATE-----\nnot base64\n"), key: goodKey},
		{name: "certificate without its key", certPEM: otherCert, key: goodKey},
		{name: "empty key", certPEM: goodCert, key: nil},
	} {
		before := strings.Count(c.logs.String(), "are unusable")
		files.write(tc.certPEM, tc.key)
		if got := c.served(t, time.Second); got != "good" {
			t.Fatalf("%s: served %q, want the previous certificate", tc.name, got)
		}
		if got := c.served(t, time.Second); got != "good" {
			t.Fatalf("%s, checked again: served %q", tc.name, got)
		}
		if n := strings.Count(c.logs.String(), "are unusable") - before; n != 1 {
			t.Errorf("%s: logged %d times, want once:\n%s", tc.name, n, c.logs)
		}
	}

	files.write(ca.issue(t, "fixed", x509.ExtKeyUsageServerAuth))
	if got := c.served(t, time.Second); got != "fixed" {
		t.Fatalf("after a good pair replaced the bad one: served %q", got)
	}
}

func TestMissingFilesKeepThePreviousCertificate(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "ca")
	files := newPairFiles(t)
	certPEM, keyPEM := ca.issue(t, "first", x509.ExtKeyUsageServerAuth)
	files.write(certPEM, keyPEM)
	c := load(t, files)
	if err := os.Remove(files.keyFile); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := c.served(t, time.Second); got != "first" {
			t.Fatalf("served %q while the key was missing", got)
		}
	}
	if n := strings.Count(c.logs.String(), "unreadable"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, c.logs)
	}
	files.write(ca.issue(t, "second", x509.ExtKeyUsageServerAuth))
	if got := c.served(t, time.Second); got != "second" {
		t.Fatalf("after the files came back: served %q", got)
	}
}

func TestLoadCertificateRefusesAnUnusablePair(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "ca")
	certPEM, keyPEM := ca.issue(t, "x", x509.ExtKeyUsageServerAuth)
	otherCert, _ := ca.issue(t, "y", x509.ExtKeyUsageServerAuth)
	log := slog.New(slog.DiscardHandler)

	files := newPairFiles(t)
	if _, err := LoadCertificate(files.certFile, files.keyFile, log); err == nil {
		t.Error("loaded missing files")
	}
	files.write(otherCert, keyPEM)
	if _, err := LoadCertificate(files.certFile, files.keyFile, log); err == nil {
		t.Error("loaded a certificate with another's key")
	}
	files.write(certPEM, []byte("garbage"))
	_, err := LoadCertificate(files.certFile, files.keyFile, log)
	if err == nil {
		t.Error("loaded a malformed key")
	}
}

// handshake runs a real TLS handshake over loopback TCP and returns what the
// server saw.
func handshake(t *testing.T, server, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	type result struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		tc := tls.Server(conn, server)
		err = tc.HandshakeContext(t.Context())
		done <- result{tc.ConnectionState(), err}
	}()
	conn, err := tls.Dial("tcp", lis.Addr().String(), client)
	if err == nil {
		conn.Close()
	}
	r := <-done
	return r.state, r.err
}

func serverFixture(t *testing.T, clientCAs *x509.CertPool) (*tls.Config, *x509.CertPool) {
	t.Helper()
	ca := newAuthority(t, "server ca")
	files := newPairFiles(t)
	files.write(ca.issue(t, "careteamd", x509.ExtKeyUsageServerAuth))
	cert, err := LoadCertificate(files.certFile, files.keyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	return Server(cert, clientCAs), roots
}

func TestServerNeedsTLS12OrLater(t *testing.T) {
	t.Parallel()
	server, roots := serverFixture(t, nil)
	cbc := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	for _, tc := range []struct {
		name     string
		max      uint16
		suites   []uint16
		want     uint16
		wantFail bool
	}{
		{name: "TLS 1.1 is refused", max: tls.VersionTLS11, wantFail: true},
		{name: "TLS 1.2 is accepted", max: tls.VersionTLS12, want: tls.VersionTLS12},
		{name: "TLS 1.2 without an AEAD suite is refused", max: tls.VersionTLS12, suites: cbc, wantFail: true},
		{name: "TLS 1.3 is preferred", want: tls.VersionTLS13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, err := handshake(t, server, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tc.max, CipherSuites: tc.suites})
			if tc.wantFail {
				if err == nil {
					t.Fatalf("negotiated %s", tls.VersionName(state.Version))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if state.Version != tc.want {
				t.Fatalf("negotiated %s, want %s", tls.VersionName(state.Version), tls.VersionName(tc.want))
			}
		})
	}
}

func TestServerVerifiesClientCertificatesWhenGiven(t *testing.T) {
	t.Parallel()
	clientCA := newAuthority(t, "client ca")
	caFile := filepath.Join(t.TempDir(), "client-ca.pem")
	if err := os.WriteFile(caFile, clientCA.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	clientCAs, err := LoadCertPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	server, roots := serverFixture(t, clientCAs)
	withCert := func(a *authority, cn string) *tls.Config {
		cert, err := tls.X509KeyPair(a.issue(t, cn, x509.ExtKeyUsageClientAuth))
		if err != nil {
			t.Fatal(err)
		}
		return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}
	}

	t.Run("a client without a certificate connects", func(t *testing.T) {
		state, err := handshake(t, server, &tls.Config{RootCAs: roots})
		if err != nil {
			t.Fatal(err)
		}
		if len(state.VerifiedChains) != 0 {
			t.Fatal("verified chains without a client certificate")
		}
	})
	t.Run("a certificate from the client CA is verified", func(t *testing.T) {
		state, err := handshake(t, server, withCert(clientCA, "ehr-lakeside"))
		if err != nil {
			t.Fatal(err)
		}
		if len(state.VerifiedChains) == 0 || state.VerifiedChains[0][0].Subject.CommonName != "ehr-lakeside" {
			t.Fatalf("verified chains %v", state.VerifiedChains)
		}
	})
	rogue := withCert(newAuthority(t, "rogue ca"), "ehr-lakeside")
	t.Run("a certificate from another CA proves nothing", func(t *testing.T) {
		// Go's client withholds a certificate the server's CA list does
		// not cover, so the connection carries no identity.
		state, err := handshake(t, server, rogue)
		if err == nil && len(state.VerifiedChains) != 0 {
			t.Fatalf("verified chains %v", state.VerifiedChains)
		}
	})
	t.Run("a certificate from another CA, sent anyway, is refused", func(t *testing.T) {
		forced := rogue.Clone()
		forced.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &rogue.Certificates[0], nil }
		if _, err := handshake(t, server, forced); err == nil {
			t.Fatal("handshake succeeded")
		}
	})
}

func TestLoadCertPoolRefusesAFileWithoutCertificates(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, []byte("no PEM here"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCertPool(file); err == nil {
		t.Fatal("loaded a pool from a file without certificates")
	}
}
