package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/careteam/careteam/client"
	"github.com/careteam/careteam/devtoken"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// authority is a test CA.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newAuthority(t *testing.T, name string) *authority {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serialNumber(t),
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
	return &authority{cert: cert, key: key}
}

// issue returns a certificate for cn, valid for 127.0.0.1, as PEM.
func (a *authority) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serialNumber(t),
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

// clientCert returns a client certificate for cn.
func (a *authority) clientCert(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	cert, err := tls.X509KeyPair(a.issue(t, cn, x509.ExtKeyUsageClientAuth))
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func (a *authority) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.cert)
	return p
}

func (a *authority) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.cert.Raw})
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serialNumber(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// newDataDir returns a data directory whose parents the postgres user, which
// runs PostgreSQL when careteamd is root, can traverse.
func newDataDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	for _, dir := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(base, "data")
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tlsDaemon starts careteamd with a server certificate for 127.0.0.1 from a
// CA of the test's own, plus extra flags, and returns it with that CA.
func tlsDaemon(t *testing.T, dataDir string, extra ...string) (*daemon, *authority) {
	t.Helper()
	ca := newAuthority(t, "careteam test server CA")
	certPEM, keyPEM := ca.issue(t, "careteamd", x509.ExtKeyUsageServerAuth)
	dir := t.TempDir()
	args := append([]string{
		"--tls-cert", writeFile(t, dir, "tls.crt", certPEM),
		"--tls-key", writeFile(t, dir, "tls.key", keyPEM),
	}, extra...)
	return startDaemon(t, dataDir, nil, launch{args: args, tls: &tls.Config{RootCAs: ca.pool()}}), ca
}

func wantCode(t *testing.T, err error, want ...codes.Code) {
	t.Helper()
	for _, w := range want {
		if status.Code(err) == w {
			return
		}
	}
	t.Fatalf("got %v, want %v", err, want)
}

func TestServesTLS(t *testing.T) {
	t.Parallel()
	dataDir := newDataDir(t)
	d, _ := tlsDaemon(t, dataDir)
	ctx := t.Context()

	t.Run("a token over TLS 1.3", func(t *testing.T) {
		var p peer.Peer
		if _, err := d.client(t, dataDir, "admin").Directory.ListOrganizations(ctx, &pb.ListOrganizationsRequest{}, grpc.Peer(&p)); err != nil {
			t.Fatal(err)
		}
		info, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok || info.State.Version != tls.VersionTLS13 {
			t.Fatalf("connection %#v, want TLS 1.3", p.AuthInfo)
		}
	})
	t.Run("plaintext is refused", func(t *testing.T) {
		tok, err := devtoken.Mint(dataDir, "admin", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(d.addr, client.WithPlaintext(), client.WithToken(client.StaticToken(tok)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err = c.Directory.ListOrganizations(cctx, &pb.ListOrganizationsRequest{})
		wantCode(t, err, codes.Unavailable)
	})
}

func TestClientCertificateAuthenticates(t *testing.T) {
	t.Parallel()
	clientCA := newAuthority(t, "careteam test client CA")
	dataDir := newDataDir(t)
	d, serverCA := tlsDaemon(t, dataDir, "--client-ca", writeFile(t, t.TempDir(), "client-ca.pem", clientCA.certPEM()))
	ctx := t.Context()

	// The bootstrap admin calls by token over the same listener.
	admin := d.client(t, dataDir, "admin")
	org, err := admin.Directory.CreateOrganization(ctx, &pb.CreateOrganizationRequest{
		Organization: &pb.Organization{DisplayName: "Lakeside", Kind: pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE},
	})
	if err != nil {
		t.Fatal(err)
	}
	orgName := org.GetOrganization().GetName()
	_, err = admin.Directory.CreatePractitioner(ctx, &pb.CreatePractitionerRequest{Practitioner: &pb.Practitioner{
		DisplayName: "Lakeside EHR", Role: pb.Role_ROLE_PHYSICIAN, Organization: orgName, Subject: "ehr-lakeside",
	}})
	if err != nil {
		t.Fatal(err)
	}

	dialCert := func(t *testing.T, cfg *tls.Config) *client.Client {
		t.Helper()
		cfg.RootCAs = serverCA.pool()
		c, err := client.Dial(d.addr, client.WithTLS(cfg))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	createPatient := func(c *client.Client) (*pb.CreatePatientResponse, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return c.Patients.CreatePatient(cctx, &pb.CreatePatientRequest{Patient: &pb.Patient{FamilyName: "Smith", BirthDate: "1968-04-12"}})
	}

	t.Run("the certificate's Common Name is the subject", func(t *testing.T) {
		c := dialCert(t, &tls.Config{Certificates: []tls.Certificate{clientCA.clientCert(t, "ehr-lakeside")}})
		created, err := createPatient(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := created.GetPatient().GetRegisteringOrganization(); got != orgName {
			t.Fatalf("registered by %q, want %q", got, orgName)
		}
	})
	t.Run("a Common Name not in the directory is denied", func(t *testing.T) {
		c := dialCert(t, &tls.Config{Certificates: []tls.Certificate{clientCA.clientCert(t, "stranger")}})
		_, err := createPatient(c)
		wantCode(t, err, codes.PermissionDenied)
	})
	rogue := newAuthority(t, "rogue CA").clientCert(t, "ehr-lakeside")
	t.Run("a certificate from another CA proves nothing", func(t *testing.T) {
		// Go's client withholds a certificate that the server's CA list
		// does not cover, so the call arrives without an identity.
		c := dialCert(t, &tls.Config{Certificates: []tls.Certificate{rogue}})
		_, err := createPatient(c)
		wantCode(t, err, codes.Unauthenticated)
	})
	t.Run("a certificate from another CA, sent anyway, fails the handshake", func(t *testing.T) {
		c := dialCert(t, &tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &rogue, nil }})
		_, err := createPatient(c)
		wantCode(t, err, codes.Unavailable)
	})
}

func TestPlaintextOffLoopbackNeedsInsecurePlaintext(t *testing.T) {
	t.Parallel()
	_, port, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	listen := net.JoinHostPort("0.0.0.0", port)
	dataDir := newDataDir(t)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--data-dir", dataDir, "--listen", listen)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dataDir}
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("started in plaintext on %s (%v):\n%s", listen, err, out)
	}
	if !strings.Contains(string(out), "--insecure-plaintext") {
		t.Fatalf("the refusal does not name --insecure-plaintext:\n%s", out)
	}

	d := startDaemon(t, dataDir, nil, launch{listen: listen, args: []string{"--insecure-plaintext"}})
	d.stop(t)
	if !strings.Contains(d.logs.String(), "level=WARN msg=\"INSECURE PLAINTEXT") {
		t.Fatalf("no warning logged:\n%s", d.logs)
	}
}
