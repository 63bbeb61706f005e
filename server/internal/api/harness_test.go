package api_test

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/careteam/careteam/client"
	"github.com/careteam/careteam/devtoken"
	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/api"
	"github.com/careteam/careteam/server/internal/app"
	"github.com/careteam/careteam/server/internal/audit"
	"github.com/careteam/careteam/server/internal/auth"
	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/clock"
	"github.com/careteam/careteam/server/internal/config"
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
	// app is careteamd; its service does the work careteamd does on its
	// own, outside any call, when a test says when.
	app *app.App
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
	// flags are careteamd's flags, after the harness's own.
	flags []string
	// unaudited runs the server without its audit trail, which only the
	// benchmark of the trail's cost wants.
	unaudited bool
	// sweepEvery is how often the sweeps run (default: careteamd's minute).
	sweepEvery time.Duration
	// hubCatchUp is how often the hub reads the outbox unprompted
	// (default 50ms).
	hubCatchUp time.Duration
	// serverOptions are added to the gRPC server's.
	serverOptions []grpc.ServerOption
	// holdLoops starts the hub and the work beside it once closed.
	holdLoops <-chan struct{}
	// pool is the database, shared with other replicas (default: one of
	// the harness's own).
	pool *pgxpool.Pool
	// clock and key are the replicas' shared clock and signing key
	// (default: the harness's own).
	clock *clock.Manual
	key   *jose.JSONWebKey
}

// newHarnessWith starts careteamd (package app, as its main does) on a
// database of its own, with a clock the test sets, tokens of a key of its
// own, and a listener on loopback.
func newHarnessWith(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	if o.pool == nil {
		o.pool = testdb.New(t)
	}
	if o.clock == nil {
		o.clock = clock.NewManual(start)
	}
	if o.key == nil {
		o.key = newTestKey(t)
	}
	signer, err := devtoken.NewSigner(*o.key)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(auth.VerifierConfig{
		Issuer: testIssuer, Audience: devtoken.Audience, Keys: auth.StaticKeySet{o.key.Public()}, Clock: o.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	// careteamd's own flags, as an operator would give them: no rate limit
	// (tests call fast as a few subjects), and calls that wait for a
	// connection rather than being shed (tests race many goroutines).
	flags := append([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--bootstrap-admin", rootAdmin,
		"--rate-limit", "0", "--db-acquire-wait", "1m", "--event-buffer", "64", "--heartbeat", "1s"}, o.flags...)
	cfg, err := config.Parse(flags, func(string) string { return "" }, "", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.hubCatchUp == 0 {
		o.hubCatchUp = 50 * time.Millisecond
	}
	opts := app.Options{Clock: o.clock, Verifier: verifier, Pool: o.pool, HubCatchUp: o.hubCatchUp,
		SweepEvery: o.sweepEvery, ServerOptions: o.serverOptions, HoldLoops: o.holdLoops,
		API: func(c *api.Config) {
			for _, f := range o.configure {
				f(c)
			}
		}}
	if o.unaudited {
		opts.Storage = func(s *postgres.Store) (careteam.Store, api.AuditWriter) { return unaudited{s}, unaudited{s} }
	}
	a, err := app.New(t.Context(), cfg, log, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("careteamd: %v", err)
		}
	})
	select {
	case <-a.Serving():
	case err := <-done:
		done <- err // for the cleanup
		t.Fatalf("careteamd: %v", err)
	}
	return &harness{t: t, clock: o.clock, addr: a.Addr(), pool: o.pool, signer: signer, ctx: t.Context(), app: a}
}

// newTestKey makes a signing key for the tests' tokens.
func newTestKey(t testing.TB) *jose.JSONWebKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &jose.JSONWebKey{Key: priv, KeyID: "test", Algorithm: string(jose.EdDSA), Use: "sig"}
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

// wantCode fails the test unless err has code c, and an ErrorInfo whose
// reason is one of that code's.
func wantCode(t *testing.T, err error, c codes.Code) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != c {
		t.Fatalf("got %v (%s), want %v", st.Code(), st.Message(), c)
	}
	if c != codes.OK {
		if r := client.Reason(err); !slices.Contains(reasonsOf[c], r) {
			t.Fatalf("%v (%s) has reason %v, want one of %v", c, st.Message(), r, reasonsOf[c])
		}
	}
	return st
}

// reasonsOf lists the ErrorInfo reasons each code may carry.
var reasonsOf = map[codes.Code][]pb.ErrorReason{
	codes.InvalidArgument:    {pb.ErrorReason_ERROR_REASON_REQUEST_INVALID},
	codes.FailedPrecondition: {pb.ErrorReason_ERROR_REASON_PRECONDITION_FAILED},
	codes.Unauthenticated: {pb.ErrorReason_ERROR_REASON_TOKEN_MISSING, pb.ErrorReason_ERROR_REASON_TOKEN_MALFORMED,
		pb.ErrorReason_ERROR_REASON_TOKEN_INVALID, pb.ErrorReason_ERROR_REASON_CREDENTIAL_EXPIRED},
	codes.PermissionDenied: {pb.ErrorReason_ERROR_REASON_PERMISSION_DENIED, pb.ErrorReason_ERROR_REASON_ACCESS_ENDED},
	codes.NotFound:         {pb.ErrorReason_ERROR_REASON_NOT_FOUND},
	codes.AlreadyExists:    {pb.ErrorReason_ERROR_REASON_ALREADY_EXISTS},
	codes.Aborted:          {pb.ErrorReason_ERROR_REASON_ETAG_STALE, pb.ErrorReason_ERROR_REASON_CONCURRENT_CHANGE},
	codes.Unavailable: {pb.ErrorReason_ERROR_REASON_DATABASE_UNAVAILABLE, pb.ErrorReason_ERROR_REASON_SERVER_STARTING,
		pb.ErrorReason_ERROR_REASON_SERVER_STOPPING, pb.ErrorReason_ERROR_REASON_AUDIT_UNAVAILABLE, pb.ErrorReason_ERROR_REASON_KEYS_UNAVAILABLE},
	codes.ResourceExhausted: {pb.ErrorReason_ERROR_REASON_RATE_LIMITED, pb.ErrorReason_ERROR_REASON_AUTH_FAILURES_LIMITED,
		pb.ErrorReason_ERROR_REASON_STREAM_LIMIT_REACHED, pb.ErrorReason_ERROR_REASON_WATCHER_TOO_SLOW},
	codes.OutOfRange:       {pb.ErrorReason_ERROR_REASON_CURSOR_PRUNED},
	codes.DeadlineExceeded: {pb.ErrorReason_ERROR_REASON_DEADLINE_EXCEEDED},
	codes.Canceled:         {pb.ErrorReason_ERROR_REASON_CANCELLED},
	codes.Internal:         {pb.ErrorReason_ERROR_REASON_INTERNAL},
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
	if _, err := h.app.Store().SealAudit(h.ctx); err != nil {
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

// diff is what differs between two messages (-want +got), "" when
// nothing does.
func diff(want, got proto.Message) string { return cmp.Diff(want, got, protocmp.Transform()) }

func fieldMask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

// unaudited is the store with the audit trail switched off: transactions
// run without the call's audit entry, and records written on their own go
// nowhere.
type unaudited struct{ *postgres.Store }

func (u unaudited) InTx(ctx context.Context, fn func(careteam.Tx) error) error {
	return u.Store.InTx(audit.NewContext(ctx, nil), fn)
}

func (unaudited) AppendAudit(context.Context, audit.Record) error { return nil }
