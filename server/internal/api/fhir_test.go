package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/fhir"
)

// The identifiers the FHIR samples in server/internal/fhir/testdata name.
var (
	drNPI     = &pb.Identifier{System: "http://hl7.org/fhir/sid/us-npi", Value: "1234567893"}
	lmtNPI    = &pb.Identifier{System: "http://hl7.org/fhir/sid/us-npi", Value: "1902837461"}
	harborOID = &pb.Identifier{System: "urn:oid:2.16.840.1.113883.19.5.77", Value: "HMT-0042"}
)

// fhirTeam is the team with the identifiers the samples use: dr's and
// lmt's NPIs, and a practice known by its OID.
type fhirTeam struct {
	*team
	harbor string
}

func newFHIRTeam(t *testing.T) *fhirTeam {
	tm := newTeam(t)
	for _, p := range []struct {
		pr *pb.Practitioner
		id *pb.Identifier
	}{{tm.dr, drNPI}, {tm.lmt, lmtNPI}} {
		if _, err := tm.as(rootAdmin).Directory.UpdatePractitioner(tm.ctx, &pb.UpdatePractitionerRequest{
			Practitioner: &pb.Practitioner{Name: p.pr.GetName(), Identifiers: []*pb.Identifier{p.id}}, UpdateMask: fieldMask("identifiers"),
		}); err != nil {
			t.Fatalf("UpdatePractitioner: %v", err)
		}
	}
	resp, err := tm.as(rootAdmin).Directory.CreateOrganization(tm.ctx, &pb.CreateOrganizationRequest{Organization: &pb.Organization{
		DisplayName: "Harbor Massage Therapy", Kind: pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE, Identifiers: []*pb.Identifier{harborOID},
	}})
	if err != nil {
		t.Fatalf("CreateOrganization: %v", err)
	}
	return &fhirTeam{team: tm, harbor: resp.GetOrganization().GetName()}
}

// sample is a FHIR document of testdata, edited by dotted paths such as
// "entry.0.resource.status".
type sample map[string]any

func readSample(t testing.TB, name string) sample {
	t.Helper()
	b, err := os.ReadFile("../fhir/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var s sample
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s sample) set(t testing.TB, path string, v any) sample {
	t.Helper()
	parts := strings.Split(path, ".")
	var cur any = map[string]any(s)
	for _, p := range parts[:len(parts)-1] {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			i, _ := strconv.Atoi(p)
			cur = c[i]
		}
	}
	last := parts[len(parts)-1]
	switch c := cur.(type) {
	case map[string]any:
		if v == nil {
			delete(c, last)
		} else {
			c[last] = v
		}
	case []any:
		i, _ := strconv.Atoi(last)
		c[i] = v
	default:
		t.Fatalf("cannot set %s", path)
	}
	return s
}

func (s sample) json(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (tm *fhirTeam) importJSON(as string, b []byte) (*pb.ImportServiceRequestResponse, error) {
	return tm.as(as).FHIR.ImportServiceRequest(tm.ctx, &pb.ImportServiceRequestRequest{ResourceJson: b})
}

func (tm *fhirTeam) mustImport(t *testing.T, as string, b []byte) *pb.ImportServiceRequestResponse {
	t.Helper()
	resp, err := tm.importJSON(as, b)
	if err != nil {
		t.Fatalf("ImportServiceRequest as %s: %v", as, err)
	}
	return resp
}

func (tm *fhirTeam) export(as, referral string) ([]byte, error) {
	resp, err := tm.as(as).FHIR.ExportReferralBundle(tm.ctx, &pb.ExportReferralBundleRequest{Referral: referral})
	return resp.GetBundleJson(), err
}

// mustExport exports a referral and fails unless the Bundle is valid R4
// whose references all resolve inside it.
func (tm *fhirTeam) mustExport(t *testing.T, as, referral string) []byte {
	t.Helper()
	b, err := tm.export(as, referral)
	if err != nil {
		t.Fatalf("ExportReferralBundle as %s: %v", as, err)
	}
	if err := fhir.Validate(b); err != nil {
		t.Fatalf("the Bundle is not valid R4: %v", err)
	}
	return b
}

// rows counts what an import may write.
func (h *harness) rows() map[string]int {
	h.t.Helper()
	out := map[string]int{}
	for _, table := range []string{"patients", "patient_identifiers", "diagnoses", "referrals", "referral_transitions", "fhir_imports", "events"} {
		out[table] = h.count(`SELECT count(*) FROM ` + table)
	}
	return out
}

// bundleResources indexes an exported Bundle's resources by type.
func bundleResources(t *testing.T, b []byte) map[string][]map[string]any {
	t.Helper()
	var bundle struct {
		Entry []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		t.Fatal(err)
	}
	out := map[string][]map[string]any{}
	for _, e := range bundle.Entry {
		typ := e.Resource["resourceType"].(string)
		out[typ] = append(out[typ], e.Resource)
	}
	return out
}

func TestImportServiceRequest(t *testing.T) {
	t.Parallel()
	tm := newFHIRTeam(t)
	tests := []struct {
		file      string
		state     pb.ReferralState
		family    string
		diagnoses []string
		therapist string
		org       string
		visits    int32
	}{
		{"transaction-bundle.json", pb.ReferralState_REFERRAL_STATE_SUBMITTED, "Smith", []string{"M54.50", "M81.0"}, tm.lmt.GetName(), tm.spa, 6},
		{"collection-bundle.json", pb.ReferralState_REFERRAL_STATE_DRAFT, "Moreno", []string{"M54.2"}, "", tm.harbor, 4},
		{"contained-service-request.json", pb.ReferralState_REFERRAL_STATE_SUBMITTED, "Nguyen", []string{"M79.7"}, tm.lmt.GetName(), tm.spa, 8},
	}
	for _, tc := range tests {
		before := tm.rows()
		resp := tm.mustImport(t, "dr", readSample(t, tc.file).json(t))
		r, pt := resp.GetReferral(), resp.GetPatient()
		if !resp.GetChanged() || r.GetState() != tc.state || r.GetReferringPhysician() != tm.dr.GetName() ||
			r.GetTargetTherapist() != tc.therapist || r.GetTargetOrganization() != tc.org || r.GetAuthorizedVisits() != tc.visits {
			t.Errorf("%s: referral %v", tc.file, r)
		}
		if pt.GetFamilyName() != tc.family || pt.GetRegisteringOrganization() != tm.clinic || r.GetPatient() != pt.GetName() {
			t.Errorf("%s: patient %v", tc.file, pt)
		}
		var got []string
		for _, d := range resp.GetDiagnoses() {
			got = append(got, d.GetIcd10Code())
			if d.GetPatient() != pt.GetName() || d.GetPhysician() != tm.dr.GetName() {
				t.Errorf("%s: diagnosis %v", tc.file, d)
			}
		}
		if !slices.Equal(got, tc.diagnoses) {
			t.Errorf("%s: diagnoses %v, want %v", tc.file, got, tc.diagnoses)
		}
		after := tm.rows()
		if after["patients"] != before["patients"]+1 || after["diagnoses"] != before["diagnoses"]+len(tc.diagnoses) ||
			after["referrals"] != before["referrals"]+1 || after["fhir_imports"] != before["fhir_imports"]+1 {
			t.Errorf("%s: rows %v -> %v", tc.file, before, after)
		}
		// The receiving therapist learns of it as of any referral.
		if r.GetState() == pb.ReferralState_REFERRAL_STATE_SUBMITTED {
			if _, err := tm.as("lmt").Referrals.GetReferral(tm.ctx, &pb.GetReferralRequest{Name: r.GetName()}); err != nil {
				t.Errorf("%s: the target therapist cannot read it: %v", tc.file, err)
			}
		}
	}

	t.Run("the red flags travel", func(t *testing.T) {
		resp := tm.mustImport(t, "dr", readSample(t, "collection-bundle.json").
			set(t, "entry.1.resource.identifier.0.value", "ORD-88214").json(t))
		if flags := resp.GetDiagnoses()[0].GetRedFlags(); !slices.Equal(flags, []pb.RedFlag{pb.RedFlag_RED_FLAG_SIGNIFICANT_TRAUMA}) {
			t.Errorf("red flags %v", flags)
		}
		// The patient was found by identifier, not registered again.
		if resp.GetPatient().GetFamilyName() != "Moreno" || tm.count(`SELECT count(*) FROM patients WHERE family_name = 'Moreno'`) != 1 {
			t.Errorf("patient %v", resp.GetPatient())
		}
		// A clearance must attest the red flag, as for a diagnosis recorded
		// through the API.
		_, err := tm.as("dr").Clinical.IssueClearance(tm.ctx, &pb.IssueClearanceRequest{Clearance: &pb.Clearance{
			Patient: resp.GetPatient().GetName(), Decision: pb.ClearanceDecision_CLEARANCE_DECISION_CLEARED,
		}})
		if got := preconditionTypes(t, err); !slices.Contains(got, "RED_FLAG_NOT_EVALUATED") {
			t.Errorf("violations %v", got)
		}
	})
}

func TestImportIsIdempotent(t *testing.T) {
	t.Parallel()
	tm := newFHIRTeam(t)
	bundle := readSample(t, "transaction-bundle.json")
	first := tm.mustImport(t, "dr", bundle.json(t))

	t.Run("a duplicate writes nothing new", func(t *testing.T) {
		before := tm.rows()
		again := tm.mustImport(t, "dr", bundle.json(t))
		if again.GetChanged() || again.GetReferral().GetName() != first.GetReferral().GetName() ||
			again.GetPatient().GetName() != first.GetPatient().GetName() || len(again.GetDiagnoses()) != 2 {
			t.Fatalf("re-import %v", again)
		}
		if after := tm.rows(); !mapsEqual(before, after) {
			t.Errorf("rows %v -> %v", before, after)
		}
	})

	t.Run("a retried request replays", func(t *testing.T) {
		req := &pb.ImportServiceRequestRequest{ResourceJson: bundle.json(t), RequestId: uuid.NewString()}
		for range 2 {
			resp, err := tm.as("dr").FHIR.ImportServiceRequest(tm.ctx, req)
			if err != nil || resp.GetReferral().GetName() != first.GetReferral().GetName() || resp.GetChanged() {
				t.Fatalf("ImportServiceRequest: %v, %v", resp, err)
			}
		}
	})

	t.Run("a changed import updates the order", func(t *testing.T) {
		changed := readSample(t, "transaction-bundle.json").
			set(t, "entry.0.resource.quantityQuantity.value", 8).
			set(t, "entry.0.resource.priority", "urgent").
			set(t, "entry.0.resource.note.0.text", "Now also upper back.").
			set(t, "entry.2.resource.bodySite.0.coding.0.code", "THORACIC")
		before := tm.rows()
		resp := tm.mustImport(t, "dr", changed.json(t))
		r := resp.GetReferral()
		if !resp.GetChanged() || r.GetName() != first.GetReferral().GetName() || r.GetAuthorizedVisits() != 8 ||
			r.GetPriority() != pb.ReferralPriority_REFERRAL_PRIORITY_URGENT || r.GetClinicalNotes() != "Now also upper back." ||
			r.GetState() != pb.ReferralState_REFERRAL_STATE_SUBMITTED {
			t.Fatalf("changed re-import %v", r)
		}
		if last := r.GetHistory()[len(r.GetHistory())-1]; last.GetActor() != tm.dr.GetName() || last.GetReason() == "" {
			t.Errorf("the change is not in the history: %v", last)
		}
		if sites := resp.GetDiagnoses()[0].GetBodySites(); !slices.Equal(sites, []pb.BodyRegion{pb.BodyRegion_BODY_REGION_THORACIC}) {
			t.Errorf("the diagnosis was not updated: %v", sites)
		}
		after := tm.rows()
		if after["referrals"] != before["referrals"] || after["diagnoses"] != before["diagnoses"] || after["patients"] != before["patients"] ||
			after["events"] <= before["events"] {
			t.Errorf("rows %v -> %v", before, after)
		}
	})

	t.Run("a draft re-imported as active is submitted", func(t *testing.T) {
		draft := readSample(t, "collection-bundle.json")
		r := tm.mustImport(t, "dr", draft.json(t)).GetReferral()
		if r.GetState() != pb.ReferralState_REFERRAL_STATE_DRAFT {
			t.Fatalf("state %v", r.GetState())
		}
		resp := tm.mustImport(t, "dr", draft.set(t, "entry.1.resource.status", "active").json(t))
		if !resp.GetChanged() || resp.GetReferral().GetState() != pb.ReferralState_REFERRAL_STATE_SUBMITTED || resp.GetReferral().GetName() != r.GetName() {
			t.Fatalf("re-import %v", resp.GetReferral())
		}
	})

	t.Run("once accepted only an unchanged import passes", func(t *testing.T) {
		if _, err := (&clientSet{tm.as("lmt"), first.GetReferral().GetName()}).accept(); err != nil {
			t.Fatal(err)
		}
		before := tm.rows()
		changed := readSample(t, "transaction-bundle.json").set(t, "entry.0.resource.quantityQuantity.value", 12)
		_, err := tm.importJSON("dr", changed.json(t))
		if got := preconditionTypes(t, err); !slices.Equal(got, []string{"REFERRAL_STATE"}) {
			t.Errorf("violations %v", got)
		}
		// A new Condition is a change too.
		withNew := readSample(t, "transaction-bundle.json").set(t, "entry.3.resource.code.coding.0.code", "M48.06")
		wantCode(t, func() error { _, err := tm.importJSON("dr", withNew.json(t)); return err }(), codes.FailedPrecondition)
		if after := tm.rows(); !mapsEqual(before, after) {
			t.Errorf("a refused import wrote: %v -> %v", before, after)
		}
		// What the referral already says passes: the last import.
		last := readSample(t, "transaction-bundle.json").
			set(t, "entry.0.resource.quantityQuantity.value", 8).
			set(t, "entry.0.resource.priority", "urgent").
			set(t, "entry.0.resource.note.0.text", "Now also upper back.").
			set(t, "entry.2.resource.bodySite.0.coding.0.code", "THORACIC")
		if resp := tm.mustImport(t, "dr", last.json(t)); resp.GetChanged() || resp.GetReferral().GetState() != pb.ReferralState_REFERRAL_STATE_ACCEPTED {
			t.Errorf("re-import %v", resp)
		}
	})
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestImportRejections(t *testing.T) {
	t.Parallel()
	tm := newFHIRTeam(t)
	const cpatient = "ServiceRequest.contained[0].ofType(Patient)"
	tests := []struct {
		name string
		doc  func(t *testing.T) sample
		want []string
	}{
		{"missing subject", func(t *testing.T) sample {
			return readSample(t, "contained-service-request.json").set(t, "subject", nil)
		},
			[]string{"ServiceRequest.subject"}},
		{"malformed birth date and status", func(t *testing.T) sample {
			return readSample(t, "contained-service-request.json").set(t, "contained.0.birthDate", "1985-02-30").set(t, "status", "started")
		}, []string{cpatient + ".birthDate", "ServiceRequest.status"}},
		// The domain's own rules, reported where the input said it.
		{"too many visits", func(t *testing.T) sample {
			return readSample(t, "contained-service-request.json").set(t, "quantityQuantity.value", 60)
		}, []string{"ServiceRequest.quantityQuantity"}},
		{"no family name, born in the future", func(t *testing.T) sample {
			return readSample(t, "contained-service-request.json").set(t, "contained.0.name.0.family", nil).set(t, "contained.0.birthDate", "2031-01-01")
		}, []string{cpatient + ".name[0].family", cpatient + ".birthDate"}},
		{"no patient identifier", func(t *testing.T) sample {
			return readSample(t, "contained-service-request.json").set(t, "contained.0.identifier", nil)
		}, []string{cpatient + ".identifier"}},
		{"validity past a year", func(t *testing.T) sample {
			return readSample(t, "contained-service-request.json").set(t, "occurrencePeriod", map[string]any{"end": "2028-01-01"})
		}, []string{"ServiceRequest.occurrencePeriod.end"}},
		{"ICD-10-CM code malformed", func(t *testing.T) sample {
			return readSample(t, "contained-service-request.json").set(t, "contained.1.code.coding.0.code", "fibro")
		}, []string{"ServiceRequest.contained[1].ofType(Condition).code.coding[0].code"}},
		{"no reason", func(t *testing.T) sample {
			return readSample(t, "contained-service-request.json").set(t, "reasonReference", nil)
		}, []string{"ServiceRequest.reasonCode"}},
		{"performer unknown to the directory", func(t *testing.T) sample {
			return readSample(t, "contained-service-request.json").set(t, "performer.0.identifier.value", "1111111111")
		}, []string{"ServiceRequest.performer[0]"}},
		{"a modifier extension", func(t *testing.T) sample {
			return readSample(t, "contained-service-request.json").set(t, "contained.1.modifierExtension",
				[]any{map[string]any{"url": "http://example.org/fhir/StructureDefinition/do-not-treat", "valueBoolean": true}})
		}, []string{"ServiceRequest.contained[1].ofType(Condition).modifierExtension[0]"}},
		{"no performer", func(t *testing.T) sample {
			return readSample(t, "contained-service-request.json").set(t, "performer", nil)
		},
			[]string{"ServiceRequest.performer"}},
	}
	before := tm.rows()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tm.importJSON("dr", tc.doc(t).json(t))
			got := fieldViolations(t, err)
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("violations %v lack %s", got, w)
				}
			}
		})
	}
	t.Run("a requester the directory does not know", func(t *testing.T) {
		_, err := tm.importJSON("dr", readSample(t, "transaction-bundle.json").set(t, "entry.4.resource.identifier.0.value", "1111111111").json(t))
		st := wantCode(t, err, codes.InvalidArgument)
		found := false
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					found = found || (v.GetField() == "Bundle.entry[0].resource.ofType(ServiceRequest).requester" &&
						strings.Contains(v.GetDescription(), "http://hl7.org/fhir/sid/us-npi|1111111111"))
				}
			}
		}
		if !found {
			t.Errorf("the requester and its identifier are not named: %v", st.Details())
		}
	})
	t.Run("a therapist lacking the required training", func(t *testing.T) {
		_, err := tm.importJSON("dr", readSample(t, "contained-service-request.json").
			set(t, "performerType", map[string]any{"coding": []any{map[string]any{"system": "urn:careteam:specialty", "code": "FIBROMYALGIA"}}}).json(t))
		if got := preconditionTypes(t, err); !slices.Equal(got, []string{"NOT_QUALIFIED"}) {
			t.Errorf("violations %v", got)
		}
	})
	if after := tm.rows(); !mapsEqual(before, after) {
		t.Errorf("a refused import wrote: %v -> %v", before, after)
	}
}

func TestImportIsForPhysiciansAsRequester(t *testing.T) {
	t.Parallel()
	tm := newFHIRTeam(t)
	tm.practitioner(tm.clinic, pb.Role_ROLE_AUDITOR, "auditor")
	bundle := readSample(t, "transaction-bundle.json").json(t)
	before := tm.rows()
	for _, who := range []string{"lmt", "coord", "spa-coord", "auditor", rootAdmin} {
		_, err := tm.importJSON(who, bundle)
		wantCode(t, err, codes.PermissionDenied)
	}
	// Another physician cannot import what dr requested...
	_, err := tm.importJSON("other-dr", bundle)
	wantCode(t, err, codes.PermissionDenied)
	if after := tm.rows(); !mapsEqual(before, after) {
		t.Errorf("a refused import wrote: %v -> %v", before, after)
	}
	// ...but without a requester they import as themselves.
	noRequester := readSample(t, "transaction-bundle.json").set(t, "entry.0.resource.requester", nil)
	resp := tm.mustImport(t, "other-dr", noRequester.json(t))
	if resp.GetReferral().GetReferringPhysician() != tm.otherDr.GetName() {
		t.Fatalf("referral %v", resp.GetReferral())
	}
	// The identifier now names other-dr's referral: dr may not change it.
	_, err = tm.importJSON("dr", bundle)
	wantCode(t, err, codes.PermissionDenied)
}

// TestImportFindsTheOrderByAnyIdentifier: every identifier of an imported
// order finds it again, in whatever order the EHR lists them; one new to
// it is recorded; identifiers naming different referrals are refused.
func TestImportFindsTheOrderByAnyIdentifier(t *testing.T) {
	t.Parallel()
	tm := newFHIRTeam(t)
	ids := func(vs ...string) []any {
		var out []any
		for _, v := range vs {
			out = append(out, map[string]any{"system": "urn:oid:2.16.840.1.113883.19.5.99.1", "value": v})
		}
		return out
	}
	withIDs := func(vs ...string) []byte {
		return readSample(t, "transaction-bundle.json").set(t, "entry.0.resource.identifier", ids(vs...)).json(t)
	}
	first := tm.mustImport(t, "dr", withIDs("A-1", "B-2")).GetReferral()

	before := tm.rows()
	again := tm.mustImport(t, "dr", withIDs("B-2", "A-1"))
	if again.GetReferral().GetName() != first.GetName() || again.GetChanged() {
		t.Fatalf("re-sent with its identifiers in another order: %v (changed %v), want %v", again.GetReferral().GetName(), again.GetChanged(), first.GetName())
	}
	if after := tm.rows(); !mapsEqual(before, after) {
		t.Errorf("rows %v -> %v", before, after)
	}

	// An identifier new to the order is recorded, and finds it alone.
	added := tm.mustImport(t, "dr", withIDs("B-2", "C-3"))
	if added.GetReferral().GetName() != first.GetName() || !added.GetChanged() {
		t.Fatalf("with a new identifier: %v (changed %v)", added.GetReferral().GetName(), added.GetChanged())
	}
	if after := tm.rows(); after["fhir_imports"] != before["fhir_imports"]+1 || after["referrals"] != before["referrals"] || after["events"] != before["events"] {
		t.Errorf("rows %v -> %v", before, after)
	}
	if r := tm.mustImport(t, "dr", withIDs("C-3")); r.GetReferral().GetName() != first.GetName() || r.GetChanged() {
		t.Fatalf("by the new identifier alone: %v (changed %v)", r.GetReferral().GetName(), r.GetChanged())
	}

	t.Run("identifiers naming different referrals", func(t *testing.T) {
		other := tm.mustImport(t, "dr", readSample(t, "collection-bundle.json").
			set(t, "entry.1.resource.identifier", ids("D-4")).json(t)).GetReferral()
		before := tm.rows()
		_, err := tm.importJSON("dr", withIDs("A-1", "D-4", "E-5"))
		st := wantCode(t, err, codes.FailedPrecondition)
		var subjects []string
		for _, d := range st.Details() {
			if pf, ok := d.(*errdetails.PreconditionFailure); ok {
				for _, v := range pf.GetViolations() {
					if v.GetType() != "IDENTIFIER_CONFLICT" {
						t.Errorf("violation %v", v)
					}
					subjects = append(subjects, v.GetSubject())
				}
			}
		}
		slices.Sort(subjects)
		want := []string{first.GetName(), other.GetName()}
		slices.Sort(want)
		if !slices.Equal(subjects, want) || !strings.Contains(st.Message(), "urn:oid:2.16.840.1.113883.19.5.99.1|D-4") {
			t.Errorf("subjects %v, want %v; message %q", subjects, want, st.Message())
		}
		if after := tm.rows(); !mapsEqual(before, after) {
			t.Errorf("a refused import wrote: %v -> %v", before, after)
		}
	})

	t.Run("careteam's own identifier beside the EHR's", func(t *testing.T) {
		b := readSample(t, "transaction-bundle.json").set(t, "entry.0.resource.identifier", append(ids("F-6"),
			map[string]any{"system": "urn:careteam:referral", "value": strings.TrimPrefix(first.GetName(), "referrals/")})).json(t)
		if r := tm.mustImport(t, "dr", b); r.GetReferral().GetName() != first.GetName() || !r.GetChanged() {
			t.Fatalf("%v (changed %v)", r.GetReferral().GetName(), r.GetChanged())
		}
		if r := tm.mustImport(t, "dr", withIDs("F-6")); r.GetReferral().GetName() != first.GetName() {
			t.Fatalf("by the identifier recorded with careteam's: %v", r.GetReferral().GetName())
		}
	})

	t.Run("a search by identifier shows what the caller may read", func(t *testing.T) {
		svc := tm.app.Service()
		find := func(as string, id careteam.Identifier) []string {
			t.Helper()
			p, err := svc.Authenticate(tm.ctx, as)
			if err != nil {
				t.Fatal(err)
			}
			rows, err := svc.FindReferralsByIdentifier(tm.ctx, p, id)
			if err != nil {
				t.Fatalf("FindReferralsByIdentifier as %s: %v", as, err)
			}
			var out []string
			for _, r := range rows {
				out = append(out, careteam.Referrals.Name(r.ID))
				if as == "coord" && (r.ClinicalNotes != "" || r.ReasonTexts != nil) {
					t.Errorf("the coordinator reads clinical text: %+v", r)
				}
			}
			return out
		}
		c3 := careteam.Identifier{System: "urn:oid:2.16.840.1.113883.19.5.99.1", Value: "C-3"}
		own := careteam.Identifier{System: careteam.ReferralSystem, Value: strings.TrimPrefix(first.GetName(), "referrals/")}
		for _, as := range []string{"dr", "lmt", "coord", "spa-coord"} {
			for _, id := range []careteam.Identifier{c3, own} {
				if got := find(as, id); !slices.Equal(got, []string{first.GetName()}) {
					t.Errorf("%s by %v: %v", as, id, got)
				}
			}
		}
		for _, as := range []string{"other-dr", "other-lmt"} {
			if got := find(as, c3); len(got) != 0 {
				t.Errorf("%s reads %v", as, got)
			}
			if got := find(as, own); len(got) != 0 {
				t.Errorf("%s reads %v", as, got)
			}
		}
		if got := find("dr", careteam.Identifier{System: c3.System, Value: "nothing"}); len(got) != 0 {
			t.Errorf("an unknown identifier finds %v", got)
		}
		if got := find("dr", careteam.Identifier{System: careteam.ReferralSystem, Value: "not-an-id"}); len(got) != 0 {
			t.Errorf("a malformed careteam id finds %v", got)
		}
	})
}

// TestReimportOfAnEndedReferral: the exported ServiceRequest of a
// completed or cancelled referral imports again as a no-op.
func TestReimportOfAnEndedReferral(t *testing.T) {
	t.Parallel()
	tm := newFHIRTeam(t)
	done, _ := tm.ready()
	tm.begin(done)
	completed, err := (&clientSet{tm.as("lmt"), done.GetName()}).complete()
	if err != nil {
		t.Fatalf("CompleteReferral: %v", err)
	}
	cancelled := tm.referralIn(pb.ReferralState_REFERRAL_STATE_CANCELLED)
	imported := tm.mustImport(t, "dr", readSample(t, "contained-service-request.json").json(t)).GetReferral()
	if _, err := (&clientSet{tm.as("dr"), imported.GetName()}).cancel(); err != nil {
		t.Fatalf("CancelReferral: %v", err)
	}
	for _, r := range []*pb.Referral{completed, cancelled, imported} {
		exported := tm.mustExport(t, "dr", r.GetName())
		before := tm.rows()
		again, err := tm.importJSON("dr", exported)
		if err != nil {
			t.Fatalf("re-importing the exported %v: %v", r.GetState(), err)
		}
		if again.GetChanged() || again.GetReferral().GetName() != r.GetName() {
			t.Errorf("re-importing the exported %v: %v (changed %v)", r.GetState(), again.GetReferral().GetName(), again.GetChanged())
		}
		if after := tm.rows(); !mapsEqual(before, after) {
			t.Errorf("rows %v -> %v", before, after)
		}
	}
	t.Run("a change is refused and a settled order creates nothing", func(t *testing.T) {
		changed := readSample(t, "contained-service-request.json").set(t, "status", "revoked").set(t, "quantityQuantity.value", 4)
		_, err := tm.importJSON("dr", changed.json(t))
		if got := preconditionTypes(t, err); !slices.Equal(got, []string{"REFERRAL_STATE"}) {
			t.Errorf("violations %v", got)
		}
		// The cancelled order said to be completed is not what it is.
		_, err = tm.importJSON("dr", readSample(t, "contained-service-request.json").set(t, "status", "completed").json(t))
		if got := preconditionTypes(t, err); !slices.Equal(got, []string{"REFERRAL_STATE"}) {
			t.Errorf("violations %v", got)
		}
		fresh := readSample(t, "contained-service-request.json").set(t, "status", "completed").set(t, "identifier.0.value", "SR-NEW")
		_, err = tm.importJSON("dr", fresh.json(t))
		if got := fieldViolations(t, err); !slices.Equal(got, []string{"ServiceRequest.status"}) {
			t.Errorf("violations %v", got)
		}
	})
}

// TestImportTakesWhatEHRsSend: a PractitionerRole requester, reasons in
// words beside a coded Condition, the patient's instruction, the code of
// what is ordered, when it becomes valid and the Condition's categories
// are taken and kept; the gate starts no session before the order is
// valid.
func TestImportTakesWhatEHRsSend(t *testing.T) {
	t.Parallel()
	tm := newFHIRTeam(t)
	b := readSample(t, "practitioner-role-bundle.json").json(t)
	resp := tm.mustImport(t, "dr", b)
	r := resp.GetReferral()
	if r.GetReferringPhysician() != tm.dr.GetName() || len(r.GetReasonCodes()) != 0 || len(r.GetReasonDiagnoses()) != 1 ||
		!slices.Equal(r.GetReasonTexts(), []string{"Neck and shoulder tension after desk work"}) {
		t.Errorf("referral %v", r)
	}
	if r.GetPatientInstruction() != "Wear loose clothing and drink water after each visit." ||
		r.GetServiceText() != "Therapeutic massage, 15-minute units" || len(r.GetServiceCodes()) != 1 ||
		r.GetServiceCodes()[0].GetCode() != "97124" || r.GetServiceCodes()[0].GetSystem() != "http://www.ama-assn.org/go/cpt" ||
		!r.GetValidFrom().AsTime().Equal(time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("order details %v", r)
	}
	if cats := resp.GetDiagnoses()[0].GetCategories(); len(cats) != 2 || cats[0].GetCode() != "encounter-diagnosis" || cats[1].GetCode() != "health-concern" {
		t.Errorf("categories %v", cats)
	}
	// Read back, the same; a coordinator reads no clinical text.
	if got := tm.referral(r.GetName()); diff(r, got) != "" {
		t.Errorf("read back: %s", diff(r, got))
	}
	coord, err := tm.as("coord").Referrals.GetReferral(tm.ctx, &pb.GetReferralRequest{Name: r.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if c := coord.GetReferral(); c.GetReasonTexts() != nil || c.GetPatientInstruction() != "" || c.GetServiceText() != "" || len(c.GetServiceCodes()) != 1 {
		t.Errorf("the coordinator reads %v", c)
	}
	if again := tm.mustImport(t, "dr", b); again.GetChanged() || again.GetReferral().GetName() != r.GetName() {
		t.Errorf("re-import %v", again)
	}

	t.Run("the requester's role names another physician", func(t *testing.T) {
		_, err := tm.importJSON("other-dr", readSample(t, "practitioner-role-bundle.json").set(t, "entry.0.resource.identifier.0.value", "ER-9").
			set(t, "entry.0.resource.identifier.1.value", "REQ-9").json(t))
		wantCode(t, err, codes.PermissionDenied)
	})

	t.Run("no session before the order is valid", func(t *testing.T) {
		if _, err := (&clientSet{tm.as("lmt"), r.GetName()}).accept(); err != nil {
			t.Fatal(err)
		}
		tm.consentOf(resp.GetPatient().GetName())
		tm.clear(&pb.Clearance{Patient: resp.GetPatient().GetName()})
		_, err := tm.start("lmt", r, swedishLumbar)
		if got := preconditionTypes(t, err); !slices.Equal(got, []string{"REFERRAL_NOT_YET_VALID"}) {
			t.Errorf("violations %v", got)
		}
		tm.clock.Advance(6 * 24 * time.Hour)
		if _, err := tm.start("lmt", r, swedishLumbar); err != nil {
			t.Errorf("StartSession once valid: %v", err)
		}
	})
}

// exportStages moves referrals of the team through the lifecycle and
// returns them by stage: an in-progress one with a signed and a draft
// session.
func (tm *fhirTeam) exportStages() map[string]*pb.Referral {
	tm.t.Helper()
	out := map[string]*pb.Referral{
		"draft":     tm.referralIn(pb.ReferralState_REFERRAL_STATE_DRAFT),
		"submitted": tm.referralIn(pb.ReferralState_REFERRAL_STATE_SUBMITTED),
		"declined":  tm.referralIn(pb.ReferralState_REFERRAL_STATE_DECLINED),
		"accepted":  tm.referralIn(pb.ReferralState_REFERRAL_STATE_ACCEPTED),
	}
	r, _ := tm.ready()
	ss := tm.begin(r)
	ss = tm.mustEdit(ss, &pb.SessionNote{
		PainBefore: i32(7), PainAfter: i32(4), OswestryDisabilityIndex: i32(38), NeckDisabilityIndex: i32(12),
		Treatments: swedishLumbar, DurationMinutes: 60, Assessment: "Tolerated well.", Plan: "Daily stretches.",
	}, "pain_before", "pain_after", "oswestry_disability_index", "neck_disability_index", "treatments", "duration_minutes", "assessment", "plan")
	tm.mustSign(ss)
	second := tm.begin(r)
	tm.mustEdit(second, &pb.SessionNote{PainBefore: i32(5)}, "pain_before")
	out["in progress"] = tm.referral(r.GetName())
	done, _ := tm.ready()
	tm.begin(done)
	completed, err := (&clientSet{tm.as("lmt"), done.GetName()}).complete()
	if err != nil {
		tm.t.Fatalf("CompleteReferral: %v", err)
	}
	out["completed"] = completed
	return out
}

func TestExportEachStage(t *testing.T) {
	t.Parallel()
	tm := newFHIRTeam(t)
	stages := tm.exportStages()
	tests := []struct {
		stage, task, business string
		encounters            int
		observations          int
	}{
		{"draft", "draft", "DRAFT", 0, 0},
		{"submitted", "requested", "SUBMITTED", 0, 0},
		{"declined", "rejected", "DECLINED", 0, 0},
		{"accepted", "accepted", "ACCEPTED", 0, 0},
		{"in progress", "in-progress", "IN_PROGRESS", 2, 5},
		{"completed", "completed", "COMPLETED", 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.stage, func(t *testing.T) {
			res := bundleResources(t, tm.mustExport(t, "dr", stages[tc.stage].GetName()))
			task := res["Task"][0]
			business := task["businessStatus"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"]
			if task["status"] != tc.task || business != tc.business {
				t.Errorf("Task %v, business status %v", task["status"], business)
			}
			if len(res["Encounter"]) != tc.encounters || len(res["Observation"]) != tc.observations ||
				len(res["Patient"]) != 1 || len(res["ServiceRequest"]) != 1 || len(res["Composition"]) != 1 {
				t.Errorf("%d Encounters, %d Observations", len(res["Encounter"]), len(res["Observation"]))
			}
			// The patient's clearance governs each of their referrals.
			if len(res["CarePlan"]) != 1 {
				t.Errorf("%d CarePlans", len(res["CarePlan"]))
			}
		})
	}
	t.Run("the signed measures are final, the draft's preliminary", func(t *testing.T) {
		res := bundleResources(t, tm.mustExport(t, "dr", stages["in progress"].GetName()))
		var statuses []string
		for _, o := range res["Observation"] {
			statuses = append(statuses, o["status"].(string))
		}
		slices.Sort(statuses)
		if !slices.Equal(statuses, []string{"final", "final", "final", "final", "preliminary"}) {
			t.Errorf("observation statuses %v", statuses)
		}
	})
}

func TestExportFollowsTheReadRules(t *testing.T) {
	t.Parallel()
	tm := newFHIRTeam(t)
	tm.practitioner(tm.clinic, pb.Role_ROLE_AUDITOR, "auditor")
	r := tm.exportStages()["in progress"]
	for _, who := range []string{"dr", "lmt", "coord", "spa-coord"} {
		tm.mustExport(t, who, r.GetName())
	}
	for _, who := range []string{"other-dr", "other-lmt", "auditor", rootAdmin} {
		_, err := tm.export(who, r.GetName())
		wantCode(t, err, codes.PermissionDenied)
	}
	_, err := tm.export("dr", "referrals/"+uuid.NewString())
	wantCode(t, err, codes.PermissionDenied)

	t.Run("a coordinator gets no clinical text", func(t *testing.T) {
		b := tm.mustExport(t, "coord", r.GetName())
		res := bundleResources(t, b)
		for _, text := range []string{"Lumbar spondylosis", "Tolerated well", "Daily stretches"} {
			if strings.Contains(string(b), text) {
				t.Errorf("the coordinator's Bundle holds %q", text)
			}
		}
		if len(res["Observation"]) != 0 || len(res["Encounter"]) != 2 || res["ServiceRequest"][0]["note"] != nil {
			t.Errorf("%d Observations, %d Encounters, note %v", len(res["Observation"]), len(res["Encounter"]), res["ServiceRequest"][0]["note"])
		}
		if doc := string(tm.mustExport(t, "dr", r.GetName())); !strings.Contains(doc, "Lumbar spondylosis") || !strings.Contains(doc, "Tolerated well") {
			t.Error("the physician's Bundle lacks the clinical text")
		}
	})
	t.Run("every export is audited with the patient", func(t *testing.T) {
		rows := tm.auditRows("/careteam.v1.FhirService/ExportReferralBundle")
		last := rows[len(rows)-1]
		if last.outcome != "OK" || len(last.patients) != 1 || !slices.Contains(last.resources, r.GetName()) {
			t.Errorf("audit record %+v", last)
		}
	})
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	tm := newFHIRTeam(t)
	t.Run("an imported referral", func(t *testing.T) {
		first := tm.mustImport(t, "dr", readSample(t, "transaction-bundle.json").json(t))
		exported := tm.mustExport(t, "dr", first.GetReferral().GetName())
		before := tm.rows()
		again := tm.mustImport(t, "dr", exported)
		if again.GetReferral().GetName() != first.GetReferral().GetName() || again.GetChanged() {
			t.Fatalf("the exported ServiceRequest imported as %v (changed %v)", again.GetReferral().GetName(), again.GetChanged())
		}
		if after := tm.rows(); !mapsEqual(before, after) {
			t.Errorf("rows %v -> %v", before, after)
		}
	})
	t.Run("a referral made in careteam", func(t *testing.T) {
		r := tm.referralIn(pb.ReferralState_REFERRAL_STATE_SUBMITTED)
		again := tm.mustImport(t, "dr", tm.mustExport(t, "dr", r.GetName()))
		if again.GetReferral().GetName() != r.GetName() || again.GetChanged() || again.GetPatient().GetName() != tm.patient.GetName() {
			t.Fatalf("the exported ServiceRequest imported as %v (changed %v)", again.GetReferral(), again.GetChanged())
		}
	})
}

// FuzzImport feeds arbitrary JSON to the import: the mapping never panics,
// and a refused import writes nothing. It runs the service on a database
// of its own, as one physician of a small directory.
func FuzzImport(f *testing.F) {
	for _, name := range []string{"transaction-bundle.json", "collection-bundle.json", "contained-service-request.json"} {
		b, err := os.ReadFile("../fhir/testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/x"}}`))
	f.Add([]byte(`{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"ServiceRequest"}}]}`))
	f.Add([]byte(`[]`))

	// A run of the instrumented FHIR library costs milliseconds, so
	// minimizing each new sample-sized input for the default minute would
	// spend the whole fuzz time; unless the command line says otherwise,
	// two seconds leave it to fuzzing.
	explicit := false
	flag.Visit(func(fl *flag.Flag) { explicit = explicit || fl.Name == "test.fuzzminimizetime" })
	if !explicit {
		if err := flag.Set("test.fuzzminimizetime", "2s"); err != nil {
			f.Fatal(err)
		}
	}
	svc, p, pool := fuzzService(f)
	ctx := context.Background()
	count := func() int {
		var n int
		err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM patients) + (SELECT count(*) FROM diagnoses) +
			(SELECT count(*) FROM referrals) + (SELECT count(*) FROM referral_transitions) + (SELECT count(*) FROM events) +
			(SELECT count(*) FROM fhir_imports)`).Scan(&n)
		if err != nil {
			f.Fatal(err)
		}
		return n
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := fhir.ParseServiceRequest(data)
		if err != nil {
			var inv *careteam.InvalidError
			if !errors.As(err, &inv) || len(inv.Violations) == 0 {
				t.Fatalf("a rejection without field violations: %v", err)
			}
			return
		}
		before := count()
		if _, err := svc.ImportServiceRequest(ctx, p, *in, careteam.Idempotency{}); err != nil {
			var inv *careteam.InvalidError
			var pre *careteam.PreconditionError
			if !errors.As(err, &inv) && !errors.As(err, &pre) && !errors.Is(err, careteam.ErrPermissionDenied) && !errors.Is(err, careteam.ErrAlreadyExists) {
				t.Fatalf("import: %v", err)
			}
			if after := count(); after != before {
				t.Fatalf("a refused import (%v) wrote %d rows", err, after-before)
			}
		}
	})
}

// fuzzService is the service on a database of its own with a physician
// and a therapist known by the samples' NPIs, and a practice by its OID.
func fuzzService(f *testing.F) (*careteam.Service, careteam.Principal, *pgxpool.Pool) {
	h := newHarness(f)
	svc, pool := h.app.Service(), h.pool
	ctx := context.Background()
	root := careteam.Principal{Subject: rootAdmin, Role: careteam.RoleAdmin, Bootstrap: true}
	must := func(err error) {
		f.Helper()
		if err != nil {
			f.Fatal(err)
		}
	}
	clinic, err := svc.CreateOrganization(ctx, root, careteam.Organization{DisplayName: "Clinic", Kind: careteam.PhysicianPractice}, careteam.Idempotency{})
	must(err)
	spa, err := svc.CreateOrganization(ctx, root, careteam.Organization{DisplayName: "Spa", Kind: careteam.MassagePractice,
		Identifiers: []careteam.Identifier{{System: harborOID.GetSystem(), Value: harborOID.GetValue()}}}, careteam.Idempotency{})
	must(err)
	_, err = svc.CreatePractitioner(ctx, root, careteam.Practitioner{OrganizationID: clinic.ID, Role: careteam.RolePhysician, Subject: "dr",
		DisplayName: "Dr", Identifiers: []careteam.Identifier{{System: drNPI.GetSystem(), Value: drNPI.GetValue()}},
		// The store writes a nil list as NULL, which the column refuses.
		Specialties: []careteam.Specialty{}}, careteam.Idempotency{})
	must(err)
	_, err = svc.CreatePractitioner(ctx, root, careteam.Practitioner{OrganizationID: spa.ID, Role: careteam.RoleTherapist, Subject: "lmt",
		DisplayName: "LMT", Identifiers: []careteam.Identifier{{System: lmtNPI.GetSystem(), Value: lmtNPI.GetValue()}},
		Licence:     &careteam.Licence{Number: "LMT-1", Jurisdiction: "US-WA", ExpireDate: start.AddDate(1, 0, 0)},
		Specialties: []careteam.Specialty{careteam.SpecialtyArthritis}}, careteam.Idempotency{})
	must(err)
	p, err := svc.Authenticate(ctx, "dr")
	must(err)
	return svc, p, pool
}
