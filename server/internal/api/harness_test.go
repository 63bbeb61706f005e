package api_test

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/careteam/careteam/client"
	"github.com/careteam/careteam/client/devtoken"
	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/api"
	"github.com/careteam/careteam/server/internal/audit"
	"github.com/careteam/careteam/server/internal/auth"
	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/clock"
	"github.com/careteam/careteam/server/internal/events"
	"github.com/careteam/careteam/server/internal/store/postgres"
	"github.com/careteam/careteam/server/internal/testdb"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

const (
	testIssuer = "https://idp.test"
	rootAdmin  = "root"
)

// harness is a real careteamd API on loopback over a database of its own,
// with a clock the test sets and a key to mint tokens for any subject.
type harness struct {
	t      testing.TB
	clock  *clock.Manual
	addr   string
	pool   *pgxpool.Pool
	signer *devtoken.Signer
	ctx    context.Context
	// svc is the service behind the server, for the work careteamd does
	// on its own, outside any call.
	svc   *careteam.Service
	store *postgres.Store
}

// start is a fixed instant in the middle of a working week (a Wednesday),
// so tests of business-time rules read naturally.
var start = time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)

func newHarness(t testing.TB, configure ...func(*api.Config)) *harness {
	t.Helper()
	return newHarnessWith(t, harnessOptions{configure: configure})
}

// harnessOptions are the rarer ways to build a harness.
type harnessOptions struct {
	configure []func(*api.Config)
	// unaudited runs the server without its audit trail, which only the
	// benchmark of the trail's cost wants.
	unaudited bool
}

func newHarnessWith(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	pool := testdb.New(t)
	clk := clock.NewManual(start)
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	key := jose.JSONWebKey{Key: priv, KeyID: "test", Algorithm: string(jose.EdDSA), Use: "sig"}
	signer, err := devtoken.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(auth.VerifierConfig{
		Issuer: testIssuer, Audience: devtoken.Audience, Keys: auth.StaticKeySet{key.Public()}, Clock: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	store := postgres.New(pool, log)
	var svcStore careteam.Store = store
	var auditWriter api.AuditWriter = store
	if o.unaudited {
		svcStore, auditWriter = unaudited{store}, unaudited{store}
	}
	svc := careteam.NewService(svcStore, clk, careteam.Config{
		BootstrapAdmin: rootAdmin,
		AckWindow:      48 * time.Hour,
	})
	hubCtx, stopHub := context.WithCancel(context.Background())
	hub := events.NewHub(svc, events.Config{Buffer: 64, CatchUp: 50 * time.Millisecond}, log)
	go hub.Run(hubCtx)
	go store.Listen(hubCtx, hub.Wake)
	go store.Seal(hubCtx)
	t.Cleanup(stopHub)
	cfg := api.Config{Service: svc, Audit: auditWriter, Verifier: verifier, Health: health.NewServer(), Log: log, Events: hub, Heartbeat: time.Second}
	for _, c := range o.configure {
		c(&cfg)
	}
	srv, err := api.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return &harness{t: t, clock: clk, addr: lis.Addr().String(), pool: pool, signer: signer, ctx: t.Context(), svc: svc,
		store: store}
}

// token mints a token for subject, valid from the harness clock's now.
func (h *harness) token(subject string) string {
	tok, err := h.signer.Sign(devtoken.Claims{Issuer: testIssuer, Subject: subject, Audience: devtoken.Audience, IssuedAt: h.clock.Now(), TTL: 24 * time.Hour})
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// as returns a client that calls as subject, with a fresh token per call.
func (h *harness) as(subject string) *client.Client {
	h.t.Helper()
	c, err := client.Dial(h.addr, client.WithPlaintext(), client.WithToken(func(context.Context) (string, error) {
		return h.token(subject), nil
	}))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// anonymous returns a client that sends no token.
func (h *harness) anonymous() *client.Client {
	h.t.Helper()
	c, err := client.Dial(h.addr, client.WithPlaintext())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

func (h *harness) org(name string, kind pb.OrganizationKind) string {
	h.t.Helper()
	resp, err := h.as(rootAdmin).Directory.CreateOrganization(h.ctx, &pb.CreateOrganizationRequest{
		Organization: &pb.Organization{DisplayName: name, Kind: kind},
	})
	if err != nil {
		h.t.Fatalf("CreateOrganization: %v", err)
	}
	return resp.GetOrganization().GetName()
}

// practitioner adds a practitioner whose token subject is subject; a
// therapist gets a licence valid for a year and the given specialties.
func (h *harness) practitioner(org string, role pb.Role, subject string, specialties ...pb.Specialty) *pb.Practitioner {
	h.t.Helper()
	pr := &pb.Practitioner{DisplayName: subject, Role: role, Organization: org, Subject: subject, Specialties: specialties}
	if role == pb.Role_ROLE_MASSAGE_THERAPIST {
		pr.Licence = &pb.Licence{Number: "LMT 1001", Jurisdiction: "US-WA", ExpireDate: h.clock.Now().AddDate(1, 0, 0).Format("2006-01-02")}
	}
	resp, err := h.as(rootAdmin).Directory.CreatePractitioner(h.ctx, &pb.CreatePractitionerRequest{Practitioner: pr})
	if err != nil {
		h.t.Fatalf("CreatePractitioner(%s): %v", subject, err)
	}
	return resp.GetPractitioner()
}

// lapse lets the licence of therapist pr run out: it is recorded to end
// today, which the directory accepts, and the clock moves on to the next
// day's midnight. It returns the practitioner as updated.
func (h *harness) lapse(pr *pb.Practitioner) *pb.Practitioner {
	h.t.Helper()
	pr = proto.CloneOf(pr)
	now := h.clock.Now()
	pr.Licence.ExpireDate = now.Format("2006-01-02")
	resp, err := h.as(rootAdmin).Directory.UpdatePractitioner(h.ctx, &pb.UpdatePractitionerRequest{
		Practitioner: pr, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"licence"}},
	})
	if err != nil {
		h.t.Fatalf("UpdatePractitioner(%s): %v", pr.GetName(), err)
	}
	y, m, d := now.Date()
	h.clock.Set(time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC))
	return resp.GetPractitioner()
}

func (h *harness) patient(as, mrn string) *pb.Patient {
	h.t.Helper()
	pt := &pb.Patient{GivenName: "Given", FamilyName: "Family", BirthDate: "1970-01-01"}
	if mrn != "" {
		pt.Identifiers = []*pb.Identifier{{System: "urn:test:mrn", Value: mrn}}
	}
	resp, err := h.as(as).Patients.CreatePatient(h.ctx, &pb.CreatePatientRequest{Patient: pt})
	if err != nil {
		h.t.Fatalf("CreatePatient: %v", err)
	}
	return resp.GetPatient()
}

// wantCode fails the test unless err has code c.
func wantCode(t *testing.T, err error, c codes.Code) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != c {
		t.Fatalf("got %v (%s), want %v", st.Code(), st.Message(), c)
	}
	return st
}

// fieldViolations returns the BadRequest field paths of err.
func fieldViolations(t *testing.T, err error) []string {
	t.Helper()
	st := wantCode(t, err, codes.InvalidArgument)
	var out []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("INVALID_ARGUMENT without field violations: %s", st.Message())
	}
	return out
}

// preconditionTypes returns the PreconditionFailure violation types of err.
func preconditionTypes(t *testing.T, err error) []string {
	t.Helper()
	st := wantCode(t, err, codes.FailedPrecondition)
	var out []string
	for _, d := range st.Details() {
		if pf, ok := d.(*errdetails.PreconditionFailure); ok {
			for _, v := range pf.GetViolations() {
				out = append(out, v.GetType())
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("FAILED_PRECONDITION without violations: %s", st.Message())
	}
	return out
}

// sealed puts every audit record committed so far on its chain, for a
// test that reads audit_events behind the API.
func (h *harness) sealed() *harness {
	h.t.Helper()
	if _, err := h.store.SealAudit(h.ctx); err != nil {
		h.t.Fatal(err)
	}
	return h
}

// count returns the number of rows of a query, read behind the API.
func (h *harness) count(sql string, args ...any) int {
	h.t.Helper()
	var n int
	if err := h.pool.QueryRow(h.ctx, sql, args...).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

// grpcHeader captures the response header of a call.
func grpcHeader(md *metadata.MD) grpc.CallOption { return grpc.Header(md) }

// careteamMethods lists every RPC of the careteam.v1 services, from the
// descriptors, so a new RPC cannot be left out of a test that must cover
// them all.
func careteamMethods(t testing.TB) []protoreflect.MethodDescriptor {
	t.Helper()
	var out []protoreflect.MethodDescriptor
	protoregistry.GlobalFiles.RangeFilesByPackage("careteam.v1", func(f protoreflect.FileDescriptor) bool {
		for i := 0; i < f.Services().Len(); i++ {
			ms := f.Services().Get(i).Methods()
			for j := 0; j < ms.Len(); j++ {
				out = append(out, ms.Get(j))
			}
		}
		return true
	})
	if len(out) < 50 {
		t.Fatalf("found only %d careteam methods", len(out))
	}
	return out
}

// invoke calls m with an empty request and returns the call's error; for a
// server-streaming method, the error of the first receive.
func invoke(ctx context.Context, c *client.Client, m protoreflect.MethodDescriptor) error {
	name := "/" + string(m.Parent().FullName()) + "/" + string(m.Name())
	req := dynamicpb.NewMessage(m.Input())
	resp := dynamicpb.NewMessage(m.Output())
	if !m.IsStreamingServer() {
		return c.Conn().Invoke(ctx, name, req, resp)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Conn().NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, name)
	if err != nil {
		return err
	}
	if err := stream.SendMsg(req); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	return stream.RecvMsg(resp)
}

func fieldMask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

// unaudited is the store with the audit trail switched off: transactions
// run without the call's audit entry, and records written on their own go
// nowhere.
type unaudited struct{ *postgres.Store }

func (u unaudited) InTx(ctx context.Context, fn func(careteam.Tx) error) error {
	return u.Store.InTx(audit.NewContext(ctx, nil), fn)
}

func (unaudited) AppendAudit(context.Context, audit.Record) error { return nil }
