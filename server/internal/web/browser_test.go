package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/careteam/careteam/client"
	"github.com/careteam/careteam/devtoken"
	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/app"
	"github.com/careteam/careteam/server/internal/auth"
	"github.com/careteam/careteam/server/internal/clock"
	"github.com/careteam/careteam/server/internal/config"
	"github.com/careteam/careteam/server/internal/testdb"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

// The referral's clinical words, which a coordinator must never be shown.
const (
	clinicalNote = "Lumbar spondylosis with L4 radicular pain after a fall"
	question     = "Any imaging since the fall"
)

// browserNeeds finds Chromium and axe-core (web/node_modules, installed
// by .ci/tools.sh). Without them the browser tests cannot run: in CI
// that fails them; elsewhere they are skipped, saying how to get them.
func browserNeeds(t *testing.T) (chromium, axe string) {
	t.Helper()
	missing := func(what string) {
		msg := what + ": install Chromium (Debian: apt-get install chromium) and run .ci/tools.sh, which installs web/node_modules"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			chromium = p
			break
		}
	}
	if chromium == "" {
		missing("no Chromium on PATH")
	}
	axe = filepath.Join("..", "..", "..", "web", "node_modules", "axe-core", "axe.min.js")
	if _, err := os.Stat(axe); err != nil {
		missing("no axe-core in web/node_modules")
	}
	return chromium, axe
}

// artifacts is where a test's screenshots are kept: $CARETEAM_ARTIFACTS,
// or .artifacts/browser at the top of the tree (git-ignored), then name.
func artifacts(t *testing.T, name string) string {
	dir := os.Getenv("CARETEAM_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", ".artifacts", "browser")
	}
	dir = filepath.Join(dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// world is careteamd in dev mode on loopback (package app, as its main
// starts it), a clock of the test's for the domain, and the cast.
type world struct {
	t       *testing.T
	addr    string
	pool    *pgxpool.Pool
	dataDir string
	mint    func(subject string) (string, error)
	clock   *clock.Manual
	ids     map[string]string // subject -> practitioner name
	orgs    map[string]string
}

func (w *world) as(subject string) *client.Client {
	w.t.Helper()
	c, err := client.Dial(w.addr, client.WithPlaintext(), client.WithToken(func(context.Context) (string, error) {
		return w.mint(subject)
	}))
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { c.Close() })
	return c
}

// startWorld starts careteamd in dev mode: its dev sign-in and dev key.
func startWorld(t *testing.T, flags ...string) *world {
	t.Helper()
	dataDir := t.TempDir()
	cfg := parseConfig(t, append([]string{"--data-dir", dataDir}, flags...)...)
	// Tokens are minted and verified at the real time (the dev sign-in
	// mints them so); the domain runs at a clock the test moves, so that
	// a referral can wait days for acknowledgement.
	_, jwks, err := devtoken.EnsureKey(devtoken.KeyDir(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := auth.NewFileKeySet(jwks)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, Keys: keys, Clock: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	w := runWorld(t, cfg, verifier)
	w.dataDir = dataDir
	w.mint = func(subject string) (string, error) { return devtoken.Mint(dataDir, subject, time.Hour) }
	return w
}

func parseConfig(t *testing.T, flags ...string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(append([]string{"--listen", "127.0.0.1:0", "--rate-limit", "0"}, flags...),
		func(string) string { return "" }, "", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runWorld runs careteamd (package app, as its main does) with cfg, on a
// database of its own and a clock the test moves; verifier, when set,
// checks tokens at the real time.
func runWorld(t *testing.T, cfg *config.Config, verifier *auth.Verifier) *world {
	t.Helper()
	clk := clock.NewManual(lastFridayNoon(time.Now()))
	pool := testdb.New(t)
	a, err := app.New(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)),
		app.Options{Pool: pool, Clock: clk, Verifier: verifier, HubCatchUp: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	select {
	case <-a.Serving():
	case err := <-done:
		t.Fatal(err)
	}
	return &world{t: t, addr: a.Addr(), pool: pool, clock: clk, ids: map[string]string{}, orgs: map[string]string{}}
}

// lastFridayNoon is the world's start: a fixed point in the working week
// near today, so that the seed's referral of four days before has waited
// more than the 48 business hours of its window whatever day the tests
// run on (from the real time, a weekend in between left it short).
func lastFridayNoon(now time.Time) time.Time {
	now = now.UTC()
	d := time.Date(now.Year(), now.Month(), now.Day(), 12, 0, 0, 0, time.UTC)
	for d.Weekday() != time.Friday || d.After(now) {
		d = d.AddDate(0, 0, -1)
	}
	return d
}

// check returns v, failing t on err: check(call())(t).
func check[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// seed makes a clinic with a physician and a coordinator, two massage
// practices with therapists of different training, and two submitted
// referrals that need arthritis training: one four days ago, overdue,
// with a question and its answer, and one submitted now.
func (w *world) seed() (overdue, recent *pb.Referral) {
	t, ctx := w.t, w.t.Context()
	admin := w.as("admin")
	org := func(key, name string, kind pb.OrganizationKind) {
		o := check(admin.Directory.CreateOrganization(ctx, &pb.CreateOrganizationRequest{Organization: &pb.Organization{DisplayName: name, Kind: kind}}))(t)
		w.orgs[key] = o.GetOrganization().GetName()
	}
	org("clinic", "Lakeside Family Medicine", pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE)
	org("harbor", "Harbor Massage Therapy", pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE)
	org("bay", "Bay Bodywork", pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE)
	person := func(subject, name, org string, role pb.Role, specialties ...pb.Specialty) {
		pr := &pb.Practitioner{DisplayName: name, Role: role, Organization: w.orgs[org], Subject: subject, Specialties: specialties}
		if role == pb.Role_ROLE_PHYSICIAN { // the name in parts, as a FHIR export wants it
			parts := strings.Fields(name)
			pr.GivenName, pr.FamilyName = strings.Join(parts[1:len(parts)-1], " "), parts[len(parts)-1]
		}
		if role == pb.Role_ROLE_MASSAGE_THERAPIST {
			pr.Licence = &pb.Licence{Number: "LMT-" + subject, Jurisdiction: "US-WA", ExpireDate: w.clock.Now().AddDate(2, 0, 0).Format(time.DateOnly)}
		}
		p := check(admin.Directory.CreatePractitioner(ctx, &pb.CreatePractitionerRequest{Practitioner: pr}))(t)
		w.ids[subject] = p.GetPractitioner().GetName()
	}
	person("dr-ada", "Dr Ada Okafor", "clinic", pb.Role_ROLE_PHYSICIAN)
	person("coord-cy", "Cy Mendez", "clinic", pb.Role_ROLE_COORDINATOR)
	person("lmt-ben", "Ben Ito", "harbor", pb.Role_ROLE_MASSAGE_THERAPIST, pb.Specialty_SPECIALTY_ARTHRITIS)
	person("lmt-dee", "Dee Park", "bay", pb.Role_ROLE_MASSAGE_THERAPIST, pb.Specialty_SPECIALTY_SPORTS)
	person("lmt-eli", "Eli Novak", "bay", pb.Role_ROLE_MASSAGE_THERAPIST, pb.Specialty_SPECIALTY_ARTHRITIS)

	dr := w.as("dr-ada")
	patient := check(dr.Patients.CreatePatient(ctx, &pb.CreatePatientRequest{Patient: &pb.Patient{
		GivenName: "Jo", FamilyName: "Smith", BirthDate: "1968-04-12"}}))(t).GetPatient()
	refer := func() *pb.Referral {
		r := check(dr.Referrals.CreateReferral(ctx, &pb.CreateReferralRequest{Referral: &pb.Referral{
			Patient: patient.GetName(), TargetOrganization: w.orgs["harbor"], ReasonCodes: []string{"M47.816"},
			ClinicalNotes: clinicalNote, AuthorizedVisits: 6, Priority: pb.ReferralPriority_REFERRAL_PRIORITY_ROUTINE,
			RequiredSpecialties: []pb.Specialty{pb.Specialty_SPECIALTY_ARTHRITIS},
		}}))(t).GetReferral()
		return check(dr.Referrals.SubmitReferral(ctx, &pb.SubmitReferralRequest{Name: r.GetName()}))(t).GetReferral()
	}
	w.clock.Advance(-4 * 24 * time.Hour)
	overdue = refer()
	therapist := w.as("lmt-ben")
	check(therapist.Referrals.RequestInformation(ctx, &pb.RequestInformationRequest{Name: overdue.GetName(), Question: question + "?"}))(t)
	w.clock.Advance(time.Hour)
	check(dr.Referrals.ProvideInformation(ctx, &pb.ProvideInformationRequest{Name: overdue.GetName(), Answer: "None: X-ray before it only."}))(t)
	w.clock.Advance(4*24*time.Hour - time.Hour)
	recent = refer()
	return overdue, recent
}

// browser is headless Chromium, as the probe of this machine kind starts
// it, with steps that fail the test saying what the page showed.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string
	step  int
}

func openBrowser(t *testing.T, chromium, shots string) *browser {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1400, 1000))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "America/Los_Angeles"}); err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, ctx: ctx, shots: shots}
}

// shot keeps a screenshot of the page, numbered in order.
func (b *browser) shot(name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		b.step++
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.step, name)), png, 0o644)
	})
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		// What the page showed when the step failed, for the log and as
		// a screenshot.
		text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body.innerText`))
		_ = chromedp.Do(b.ctx, b.shot("failed"))
		b.t.Fatalf("%s: %v\nthe page reads:\n%s", what, err, text)
	}
}

func (b *browser) read(what string, a chromedp.Action[string]) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// TestCoordinatorRoutesAReferralInTheBrowser drives the built app in
// headless Chromium: a coordinator signs in (dev sign-in), finds the
// overdue referral first, sees an unqualified therapist left out with the
// reason and a refusal from careteamd in words, routes it to a qualified
// therapist, sees another caller's change arrive live, and no clinical
// words of the referral reach the page; axe-core finds no serious
// accessibility violation. Screenshots of each step are kept.
func TestCoordinatorRoutesAReferralInTheBrowser(t *testing.T) {
	chromium, axePath := browserNeeds(t)
	axe := string(check(os.ReadFile(axePath))(t))
	shots := artifacts(t, "routing")
	w := startWorld(t)
	overdue, recent := w.seed()

	b := openBrowser(t, chromium, shots)
	ctx, do, read, shot := b.ctx, b.do, b.read, b.shot
	row := func(table string, r *pb.Referral) string {
		return fmt.Sprintf(`#%s tr[data-referral="%s"]`, table, r.GetName())
	}
	label := func(name string) string { return fmt.Sprintf(`//dialog//label[contains(., %q)]`, name) }

	do("sign in as the coordinator",
		chromedp.Navigate("http://"+w.addr+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#dev-subject`)),
		shot("sign-in"),
		chromedp.SetValue(chromedp.CSS(`#dev-subject`), "coord-cy"),
		chromedp.Click(chromedp.CSS(`.dev-signin button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(row("overdue", overdue))),
		chromedp.WaitVisible(chromedp.CSS(row("all", recent))),
		chromedp.WaitVisible(chromedp.CSS(`.live[data-state="live"]`)),
		shot("worklist"))

	first, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`#overdue tbody tr`), "data-referral"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Value != overdue.GetName() {
		t.Errorf("the first overdue row is %q, want %q", first.Value, overdue.GetName())
	}
	if text := read("the overdue row", chromedp.Text(chromedp.CSS(row("overdue", overdue)))); !strings.Contains(text, "Overdue") || !strings.Contains(text, "Smith, Jo") {
		t.Errorf("the overdue row reads %q", text)
	}

	// By keyboard: the Route button takes focus and opens the dialog with
	// Enter, focus moves into it, and Escape closes it and returns focus.
	do("open and close the dialog by keyboard",
		chromedp.Focus(chromedp.CSS(row("overdue", overdue)+` button.route`)),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.CSS(`dialog.route-dialog`)))
	if in := read("focus in the dialog", chromedp.Evaluate[string](`String(document.querySelector("dialog.route-dialog").contains(document.activeElement))`)); in != "true" {
		t.Error("focus did not move into the dialog")
	}
	do("close the dialog by keyboard", chromedp.KeyEvent("\u001b"), chromedp.WaitNotPresent(chromedp.CSS(`dialog.route-dialog`)))
	if back := read("focus after the dialog", chromedp.Evaluate[string](`document.activeElement.className`)); back != "route" {
		t.Errorf("focus after closing the dialog is on %q, not the Route button", back)
	}

	// The dialog offers Ben and Eli (arthritis training), leaves Dee out.
	do("open the routing dialog",
		chromedp.Click(chromedp.CSS(row("overdue", overdue)+` button.route`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog.route-dialog`)),
		chromedp.Click(chromedp.CSS(`dialog .left-out summary`)),
		shot("route-dialog"))
	offered := read("the therapists offered", chromedp.Text(chromedp.CSS(`dialog fieldset`)))
	leftOut := read("the therapists left out", chromedp.Text(chromedp.CSS(`dialog .left-out`)))
	if !strings.Contains(offered, "Ben Ito") || !strings.Contains(offered, "Eli Novak") || strings.Contains(offered, "Dee Park") {
		t.Errorf("offered: %q", offered)
	}
	if !strings.Contains(leftOut, "Dee Park") || !strings.Contains(leftOut, "lacks Arthritis training") {
		t.Errorf("left out: %q", leftOut)
	}

	// Eli stops practising while the dialog is open: careteamd refuses,
	// and the dialog says why in words.
	admin := w.as("admin")
	eli := check(admin.Directory.GetPractitioner(t.Context(), &pb.GetPractitionerRequest{Name: w.ids["lmt-eli"]}))(t).GetPractitioner()
	eli.Active = false
	check(admin.Directory.UpdatePractitioner(t.Context(), &pb.UpdatePractitionerRequest{
		Practitioner: eli, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"active"}}}))(t)
	do("route to a therapist who stopped practising",
		chromedp.Click(label("Eli Novak")),
		chromedp.Click(chromedp.CSS(`dialog button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`dialog .problem`)),
		shot("refused"))
	if refusal := read("the refusal", chromedp.Text(chromedp.CSS(`dialog .problem`))); !strings.Contains(refusal, "a rule is not met") ||
		!strings.Contains(refusal, "not an active massage therapist") {
		t.Errorf("the refusal reads %q", refusal)
	}

	do("route to a qualified therapist",
		chromedp.Click(label("Ben Ito")),
		chromedp.Click(chromedp.CSS(`dialog button.primary`)),
		chromedp.WaitNotPresent(chromedp.CSS(`dialog.route-dialog`)),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`document.querySelector('%s td:nth-child(7)')?.textContent === "Ben Ito"`,
				row("overdue", overdue)), chromedp.WithPollingTimeout(10*time.Second)))
			return err
		}),
		shot("routed"))

	// Another caller's change arrives without a reload.
	check(w.as("dr-ada").Referrals.CancelReferral(t.Context(), &pb.CancelReferralRequest{Name: recent.GetName(), Reason: "Patient moved away."}))(t)
	do("see a change made elsewhere",
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(`document.querySelector('%s td:nth-child(3)')?.textContent === "Cancelled"`,
				row("all", recent)), chromedp.WithPollingTimeout(10*time.Second)))
			return err
		}),
		shot("live-update"))

	html := read("the page", chromedp.OuterHTML(chromedp.CSS("html")))
	for _, words := range []string{clinicalNote, question, "X-ray before it only", "Patient moved away"} {
		if strings.Contains(html, words) {
			t.Errorf("the coordinator's page holds clinical or free text: %q", words)
		}
	}

	var result struct {
		Violations []struct {
			ID     string `json:"id"`
			Impact string `json:"impact"`
			Help   string `json:"help"`
			Nodes  []struct {
				Target []any `json:"target"`
			} `json:"nodes"`
		} `json:"violations"`
	}
	// At 200 % zoom (half the width, twice the size) nothing needs a
	// sideways scroll.
	do("zoom to 200 %", chromedp.EmulateViewport(700, 500, chromedp.EmulateScale(2)), shot("zoom-200"))
	if fits := read("the zoomed layout", chromedp.Evaluate[string](`String(document.documentElement.scrollWidth <= document.documentElement.clientWidth)`)); fits != "true" {
		t.Error("at 200 % zoom the page scrolls sideways")
	}
	do("back to 100 %", chromedp.ResetViewport())

	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](axe)); err != nil {
		t.Fatalf("loading axe-core: %v", err)
	}
	raw := read("run axe-core", chromedp.Evaluate[string](`axe.run(document, {resultTypes: ["violations"]}).then(r => JSON.stringify(r))`,
		chromedp.EvalAwaitPromise))
	if err := json.Unmarshal([]byte(raw), &result); err != nil {
		t.Fatal(err)
	}
	for _, v := range result.Violations {
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Errorf("accessibility: %s (%s): %s at %v", v.ID, v.Impact, v.Help, v.Nodes)
		} else {
			t.Logf("accessibility (%s): %s: %s", v.Impact, v.ID, v.Help)
		}
	}
}
