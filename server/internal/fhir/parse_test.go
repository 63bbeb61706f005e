package fhir_test

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/careteam"
	"github.com/careteam/careteam/server/internal/fhir"
)

// doc is a JSON document under test, edited by dotted paths such as
// "entry.0.resource.status".
type doc map[string]any

func load(t testing.TB, name string) doc {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var d doc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d doc) bytes(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// at walks to the container of the last path element.
func (d doc) at(t testing.TB, path string) (any, string) {
	t.Helper()
	parts := strings.Split(path, ".")
	var cur any = map[string]any(d)
	for _, p := range parts[:len(parts)-1] {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i >= len(c) {
				t.Fatalf("no %s in %s", p, path)
			}
			cur = c[i]
		default:
			t.Fatalf("cannot walk %s", path)
		}
	}
	return cur, parts[len(parts)-1]
}

func (d doc) set(t testing.TB, path string, v any) doc {
	t.Helper()
	c, last := d.at(t, path)
	switch c := c.(type) {
	case map[string]any:
		c[last] = v
	case []any:
		i, _ := strconv.Atoi(last)
		c[i] = v
	}
	return d
}

func (d doc) del(t testing.TB, path string) doc {
	t.Helper()
	c, last := d.at(t, path)
	m, ok := c.(map[string]any)
	if !ok {
		t.Fatalf("%s is not in an object", path)
	}
	delete(m, last)
	return d
}

// modifier is a modifier extension careteam does not understand.
func modifier() []any {
	return []any{map[string]any{"url": "http://example.org/fhir/StructureDefinition/do-not-treat", "valueBoolean": true}}
}

func parse(t *testing.T, b []byte) *careteam.ServiceRequestImport {
	t.Helper()
	in, err := fhir.ParseServiceRequest(b)
	if err != nil {
		t.Fatalf("ParseServiceRequest: %v", err)
	}
	return in
}

func TestParseRealisticServiceRequests(t *testing.T) {
	t.Parallel()
	npi := func(v string) []careteam.Identifier {
		return []careteam.Identifier{{System: "http://hl7.org/fhir/sid/us-npi", Value: v}}
	}
	t.Run("transaction Bundle", func(t *testing.T) {
		in := parse(t, load(t, "transaction-bundle.json").bytes(t))
		if !slices.Equal(in.Identifiers, []careteam.Identifier{{System: "urn:oid:2.16.840.1.113883.19.5.99.1", Value: "SR-2026-00042"}}) || !in.Submit {
			t.Errorf("identifiers %v, submit %v", in.Identifiers, in.Submit)
		}
		if !slices.Equal(in.Requester.Identifiers, npi("1234567893")) || !slices.Equal(in.Therapist.Identifiers, npi("1902837461")) {
			t.Errorf("requester %v, therapist %v", in.Requester, in.Therapist)
		}
		pt := in.Patient
		if pt.FamilyName != "Smith" || pt.GivenName != "Jo Ann" || pt.Gender != careteam.GenderFemale ||
			!pt.BirthDate.Equal(time.Date(1968, 4, 12, 0, 0, 0, 0, time.UTC)) || len(pt.Identifiers) != 1 {
			t.Errorf("patient %+v", pt)
		}
		if len(in.Diagnoses) != 2 {
			t.Fatalf("diagnoses %+v", in.Diagnoses)
		}
		lbp, osteo := in.Diagnoses[0], in.Diagnoses[1]
		if !lbp.Reason || lbp.Diagnosis.ICD10Code != "M54.50" || lbp.Diagnosis.Display != "Low back pain, unspecified" ||
			lbp.Diagnosis.Severity != "MODERATE" || !slices.Equal(lbp.Diagnosis.BodySites, []careteam.BodyRegion{"LUMBAR"}) ||
			len(lbp.Diagnosis.RedFlags) != 0 {
			t.Errorf("reason diagnosis %+v", lbp)
		}
		// M81.0 carries OSTEOPOROSIS by the domain's table, which the
		// import adds when it records the diagnosis, as every path does.
		if osteo.Reason || osteo.Diagnosis.ICD10Code != "M81.0" || len(osteo.Diagnosis.RedFlags) != 0 {
			t.Errorf("supporting diagnosis %+v", osteo)
		}
		o := in.Order
		if !slices.Equal(o.ReasonCodes, []string{"M47.816"}) || o.AuthorizedVisits != 6 || o.Priority != careteam.PriorityRoutine ||
			!slices.Equal(o.RequestedTechniques, []careteam.Technique{"SWEDISH", "MYOFASCIAL_RELEASE"}) ||
			!slices.Equal(o.RequiredSpecialties, []careteam.Specialty{careteam.SpecialtyArthritis}) ||
			!strings.HasPrefix(o.ClinicalNotes, "Chronic mechanical") {
			t.Errorf("order %+v", o)
		}
		// A period ending on a day includes that day.
		if want := time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC); !o.ValidUntil.Equal(want) {
			t.Errorf("valid until %v, want %v", o.ValidUntil, want)
		}
	})
	t.Run("collection Bundle with relative references", func(t *testing.T) {
		in := parse(t, load(t, "collection-bundle.json").bytes(t))
		if in.Submit || in.Order.Priority != careteam.PriorityUrgent || in.Order.AuthorizedVisits != 4 {
			t.Errorf("submit %v, order %+v", in.Submit, in.Order)
		}
		if len(in.Practice.Identifiers) != 1 || in.Practice.Identifiers[0].Value != "HMT-0042" || len(in.Therapist.Identifiers) != 0 {
			t.Errorf("performer: therapist %v, practice %v", in.Therapist, in.Practice)
		}
		if len(in.Patient.Identifiers) != 2 || len(in.Diagnoses) != 1 {
			t.Fatalf("patient %+v, diagnoses %+v", in.Patient, in.Diagnoses)
		}
		d := in.Diagnoses[0].Diagnosis
		if d.ICD10Code != "M542" || !slices.Equal(d.RedFlags, []careteam.RedFlag{"SIGNIFICANT_TRAUMA"}) {
			t.Errorf("diagnosis %+v: the red-flag extension was not read", d)
		}
		if want := time.Date(2026, 5, 1, 6, 59, 59, 0, time.UTC); !in.Order.ValidUntil.Equal(want) {
			t.Errorf("valid until %v, want %v", in.Order.ValidUntil, want)
		}
		if !strings.Contains(in.Order.ClinicalNotes, "\n\nPlease avoid") {
			t.Errorf("notes %q", in.Order.ClinicalNotes)
		}
	})
	t.Run("bare ServiceRequest with contained resources", func(t *testing.T) {
		in := parse(t, load(t, "contained-service-request.json").bytes(t))
		if in.Patient.FamilyName != "Nguyen" || len(in.Diagnoses) != 1 || in.Diagnoses[0].Diagnosis.ClinicalStatus != careteam.StatusRecurrence {
			t.Errorf("patient %+v, diagnoses %+v", in.Patient, in.Diagnoses)
		}
		// The performer is a logical reference by NPI; the orderDetail
		// without a technique coding is free text careteam does not map.
		if !slices.Equal(in.Therapist.Identifiers, npi("1902837461")) ||
			!slices.Equal(in.Order.RequestedTechniques, []careteam.Technique{"SWEDISH"}) || !in.Order.ValidUntil.IsZero() {
			t.Errorf("therapist %v, order %+v", in.Therapist, in.Order)
		}
	})
}

func TestParseReadsWhatEHRsSend(t *testing.T) {
	t.Parallel()
	npi := []careteam.Identifier{{System: "http://hl7.org/fhir/sid/us-npi", Value: "1234567893"}}
	t.Run("a PractitionerRole requester, reasons in words and the order's details", func(t *testing.T) {
		in := parse(t, load(t, "practitioner-role-bundle.json").bytes(t))
		if !slices.Equal(in.Requester.Identifiers, npi) || in.Requester.ID != uuid.Nil {
			t.Errorf("requester %+v, want the role's practitioner", in.Requester)
		}
		ids := []careteam.Identifier{{System: "urn:oid:2.16.840.1.113883.19.5.99.2", Value: "ER-7731"}, {System: "urn:oid:2.16.840.1.113883.19.5.99.3", Value: "REQ-55120"}}
		if !slices.Equal(in.Identifiers, ids) {
			t.Errorf("identifiers %v", in.Identifiers)
		}
		o := in.Order
		if len(o.ReasonCodes) != 0 || !slices.Equal(o.ReasonTexts, []string{"Neck and shoulder tension after desk work"}) ||
			len(in.Diagnoses) != 1 || !in.Diagnoses[0].Reason {
			t.Errorf("reasons: codes %v, texts %v, diagnoses %+v", o.ReasonCodes, o.ReasonTexts, in.Diagnoses)
		}
		if o.PatientInstruction != "Wear loose clothing and drink water after each visit." || o.ServiceText != "Therapeutic massage, 15-minute units" ||
			!slices.Equal(o.ServiceCodes, []careteam.Coding{{System: "http://www.ama-assn.org/go/cpt", Code: "97124", Display: "Therapeutic procedure, massage"}}) {
			t.Errorf("instruction %q, service %v %q", o.PatientInstruction, o.ServiceCodes, o.ServiceText)
		}
		if want := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC); !o.ValidFrom.Equal(want) {
			t.Errorf("valid from %v, want %v", o.ValidFrom, want)
		}
		wantCat := []careteam.Coding{{System: "http://terminology.hl7.org/CodeSystem/condition-category", Code: "encounter-diagnosis", Display: "Encounter Diagnosis"},
			{System: "http://hl7.org/fhir/us/core/CodeSystem/condition-category", Code: "health-concern"}}
		if got := in.Diagnoses[0].Diagnosis.Categories; !slices.Equal(got, wantCat) {
			t.Errorf("categories %v", got)
		}
		if got := in.Locate("referral.reason_texts[0]"); got != "Bundle.entry[0].resource.ofType(ServiceRequest).reasonCode[0]" {
			t.Errorf("reason text located at %q", got)
		}
	})
	t.Run("a contained PractitionerRole", func(t *testing.T) {
		d := load(t, "contained-service-request.json")
		contained := d["contained"].([]any)
		d.set(t, "contained", append(contained, map[string]any{"resourceType": "PractitionerRole", "id": "role", "practitioner": map[string]any{"reference": "#requester"}}))
		in := parse(t, d.set(t, "requester.reference", "#role").bytes(t))
		if !slices.Equal(in.Requester.Identifiers, npi) {
			t.Errorf("requester %+v", in.Requester)
		}
	})
	t.Run("every identifier, careteam's own beside the EHR's", func(t *testing.T) {
		id := uuid.New()
		d := load(t, "transaction-bundle.json").set(t, "entry.0.resource.identifier", []any{
			map[string]any{"system": "urn:oid:1.2.3", "value": "B-2"},
			map[string]any{"system": "urn:careteam:referral", "value": id.String()},
			map[string]any{"value": "no system"},
			map[string]any{"system": "urn:oid:1.2.4", "value": "A-1"},
		})
		in := parse(t, d.bytes(t))
		if in.ReferralID != id || !slices.Equal(in.Identifiers, []careteam.Identifier{{System: "urn:oid:1.2.3", Value: "B-2"}, {System: "urn:oid:1.2.4", Value: "A-1"}}) {
			t.Errorf("referral %v, identifiers %v", in.ReferralID, in.Identifiers)
		}
	})
	t.Run("what careteam's export says of every referral is no detail", func(t *testing.T) {
		d := load(t, "transaction-bundle.json").
			set(t, "entry.0.resource.code", map[string]any{"text": "Massage therapy", "coding": []any{map[string]any{"system": "urn:careteam:service", "code": "MASSAGE_THERAPY"}}}).
			set(t, "entry.2.resource.category", []any{map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}}}})
		in := parse(t, d.bytes(t))
		if in.Order.ServiceCodes != nil || in.Order.ServiceText != "" || in.Diagnoses[0].Diagnosis.Categories != nil {
			t.Errorf("service %v %q, categories %v", in.Order.ServiceCodes, in.Order.ServiceText, in.Diagnoses[0].Diagnosis.Categories)
		}
	})
	t.Run("a modifier extension on a resource the import does not read", func(t *testing.T) {
		d := load(t, "transaction-bundle.json")
		entries := d["entry"].([]any)
		d.set(t, "entry", append(entries, map[string]any{"fullUrl": "urn:uuid:1d2c3b4a-5f6e-4d7c-8b9a-0f1e2d3c4b5a",
			"resource": map[string]any{"resourceType": "Organization", "name": "Elsewhere", "modifierExtension": modifier()},
			"request":  map[string]any{"method": "POST", "url": "Organization"}}))
		parse(t, d.bytes(t))
	})
	for _, status := range []string{"on-hold", "completed", "revoked"} {
		t.Run("status "+status, func(t *testing.T) {
			in := parse(t, load(t, "contained-service-request.json").set(t, "status", status).bytes(t))
			if in.Submit || len(in.Settled) == 0 {
				t.Errorf("submit %v, settled %v", in.Submit, in.Settled)
			}
		})
	}
}

// TestValidateLocatesTheLibrarysProblems: Validate names an entry's
// resource by its type too.
func TestValidateLocatesTheLibrarysProblems(t *testing.T) {
	t.Parallel()
	d := load(t, "transaction-bundle.json")
	entries := d["entry"].([]any)
	entries[0], entries[4] = entries[4], entries[0]
	err := fhir.Validate(d.del(t, "entry.4.resource.subject").bytes(t))
	var inv *careteam.InvalidError
	if !errors.As(err, &inv) || len(inv.Violations) != 1 || inv.Violations[0].Field != "Bundle.entry[4].resource.ofType(ServiceRequest).subject" {
		t.Fatalf("got %v", err)
	}
}

func TestParseLocatesEveryProblem(t *testing.T) {
	t.Parallel()
	const sr = "Bundle.entry[0].resource.ofType(ServiceRequest)"
	tests := []struct {
		name string
		file string
		edit func(t *testing.T, d doc) doc
		want []string
	}{
		{"missing subject", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.del(t, "subject") }, []string{"ServiceRequest.subject"}},
		{"missing status and intent", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.del(t, "status").del(t, "intent") }, []string{"ServiceRequest.status", "ServiceRequest.intent"}},
		{"status not a request status", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.set(t, "status", "pending") }, []string{"ServiceRequest.status"}},
		{"status entered in error", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.set(t, "status", "entered-in-error") }, []string{"ServiceRequest.status"}},
		{"no identifier", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.del(t, "identifier") }, []string{"ServiceRequest.identifier"}},
		{"malformed birth date", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.set(t, "contained.0.birthDate", "14/02/1985") },
			[]string{"ServiceRequest.contained[0].ofType(Patient).birthDate"}},
		{"birth year only", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.set(t, "contained.0.birthDate", "1985") },
			[]string{"ServiceRequest.contained[0].ofType(Patient).birthDate"}},
		{"unknown element", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.set(t, "visits", 8) }, []string{"ServiceRequest.visits"}},
		{"fractional visits", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.set(t, "quantityQuantity.value", 2.5) }, []string{"ServiceRequest.quantityQuantity.value"}},
		{"visits as a string", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.set(t, "quantityQuantity.value", "eight") }, []string{"ServiceRequest.quantityQuantity.value"}},
		{"dangling contained reference", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.set(t, "reasonReference.0.reference", "#nothing") }, []string{"ServiceRequest.reasonReference[0]"}},
		{"condition without an ICD-10-CM coding", "contained-service-request.json",
			func(t *testing.T, d doc) doc {
				return d.set(t, "contained.1.code.coding.0", map[string]any{"system": "http://snomed.info/sct", "code": "203082005"})
			},
			[]string{"ServiceRequest.contained[1].ofType(Condition).code"}},
		{"refuted condition", "contained-service-request.json",
			func(t *testing.T, d doc) doc {
				return d.set(t, "contained.1.verificationStatus", map[string]any{"coding": []any{map[string]any{
					"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}}})
			},
			[]string{"ServiceRequest.contained[1].ofType(Condition).verificationStatus.coding[0]"}},
		{"unknown technique", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.set(t, "orderDetail.0.coding.0.code", "REIKI") },
			[]string{"ServiceRequest.orderDetail[0].coding[0].code"}},
		{"occurrence as a dateTime", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.set(t, "occurrenceDateTime", "2026-05-01") },
			[]string{"ServiceRequest.occurrenceDateTime"}},
		{"performer a role", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.set(t, "performer.0.type", "PractitionerRole") },
			[]string{"ServiceRequest.performer[0]"}},
		{"reason code without ICD-10-CM", "transaction-bundle.json",
			func(t *testing.T, d doc) doc {
				return d.set(t, "entry.0.resource.reasonCode.0.coding", []any{map[string]any{"system": "http://snomed.info/sct", "code": "279039007"}})
			},
			[]string{sr + ".reasonCode[0]"}},
		{"subject is a Condition", "transaction-bundle.json",
			func(t *testing.T, d doc) doc {
				return d.set(t, "entry.0.resource.subject.reference", "urn:uuid:7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c95")
			},
			[]string{sr + ".subject"}},
		{"subject outside the Bundle", "transaction-bundle.json",
			func(t *testing.T, d doc) doc {
				return d.set(t, "entry.0.resource.subject.reference", "Patient/elsewhere")
			},
			[]string{sr + ".subject"}},
		{"malformed entry", "transaction-bundle.json",
			func(t *testing.T, d doc) doc { return d.set(t, "entry.3.resource.onsetDateTime", "last autumn") },
			[]string{"Bundle.entry[3].resource.ofType(Condition).onsetDateTime"}},
		{"condition of another patient", "transaction-bundle.json",
			func(t *testing.T, d doc) doc {
				return d.set(t, "entry.2.resource.subject.reference", "urn:uuid:9c8b7a69-5e4d-4c3b-8a29-1f0e9d8c7b73")
			},
			[]string{"Bundle.entry[2].resource.ofType(Condition).subject"}},
		{"unknown red flag", "collection-bundle.json",
			func(t *testing.T, d doc) doc {
				return d.set(t, "entry.2.resource.extension.0.valueCoding.code", "BAD_VIBES")
			},
			[]string{"Bundle.entry[2].resource.ofType(Condition).extension[0]"}},
		{"search set", "collection-bundle.json",
			func(t *testing.T, d doc) doc { return d.set(t, "type", "searchset") }, []string{"Bundle.type"}},
		{"two ServiceRequests", "collection-bundle.json",
			func(t *testing.T, d doc) doc {
				entries := d["entry"].([]any)
				return d.set(t, "entry", append(entries, entries[1]))
			},
			[]string{"Bundle.entry[6]"}},
		{"no ServiceRequest", "collection-bundle.json",
			func(t *testing.T, d doc) doc { return d.set(t, "entry.1", d["entry"].([]any)[0]) }, []string{"Bundle.entry"}},
		// The library's own checks name the resource of an entry by its
		// type, wherever the ServiceRequest sits.
		{"a bad ServiceRequest in the fifth entry", "transaction-bundle.json",
			func(t *testing.T, d doc) doc {
				entries := d["entry"].([]any)
				entries[0], entries[4] = entries[4], entries[0]
				return d.del(t, "entry.4.resource.subject")
			},
			[]string{"Bundle.entry[4].resource.ofType(ServiceRequest).subject"}},
		{"modifier extension on the ServiceRequest", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.set(t, "modifierExtension", modifier()) },
			[]string{"ServiceRequest.modifierExtension[0]"}},
		{"modifier extension on a contained Patient and its contact", "contained-service-request.json",
			func(t *testing.T, d doc) doc {
				return d.set(t, "contained.0.modifierExtension", modifier()).
					set(t, "contained.0.contact", []any{map[string]any{"modifierExtension": modifier(), "gender": "male"}})
			},
			[]string{"ServiceRequest.contained[0].ofType(Patient).modifierExtension[0]", "ServiceRequest.contained[0].ofType(Patient).contact[0].modifierExtension[0]"}},
		{"modifier extension on a Condition entry and on an entry", "transaction-bundle.json",
			func(t *testing.T, d doc) doc {
				return d.set(t, "entry.3.resource.modifierExtension", modifier()).set(t, "entry.1.modifierExtension", modifier())
			},
			[]string{"Bundle.entry[3].resource.ofType(Condition).modifierExtension[0]", "Bundle.entry[1].modifierExtension[0]"}},
		{"modifier extension on the requester's role", "practitioner-role-bundle.json",
			func(t *testing.T, d doc) doc { return d.set(t, "entry.3.resource.modifierExtension", modifier()) },
			[]string{"Bundle.entry[3].resource.ofType(PractitionerRole).modifierExtension[0]"}},
		{"a role without its practitioner", "practitioner-role-bundle.json",
			func(t *testing.T, d doc) doc { return d.del(t, "entry.3.resource.practitioner") },
			[]string{"Bundle.entry[3].resource.ofType(PractitionerRole).practitioner"}},
		{"a role named by identifier", "practitioner-role-bundle.json",
			func(t *testing.T, d doc) doc {
				return d.set(t, "entry.0.resource.requester", map[string]any{"type": "PractitionerRole",
					"identifier": map[string]any{"system": "urn:oid:2.16.840.1.113883.19.5.99.4", "value": "ROLE-12"}})
			},
			[]string{"Bundle.entry[0].resource.ofType(ServiceRequest).requester"}},
		{"reasons in words only", "contained-service-request.json",
			func(t *testing.T, d doc) doc {
				return d.del(t, "reasonReference").set(t, "reasonCode", []any{map[string]any{"text": "widespread pain"}})
			},
			[]string{"ServiceRequest.reasonCode[0]"}},
		{"a start without its day", "practitioner-role-bundle.json",
			func(t *testing.T, d doc) doc { return d.set(t, "entry.0.resource.occurrencePeriod.start", "2026-03") },
			[]string{"Bundle.entry[0].resource.ofType(ServiceRequest).occurrencePeriod.start"}},
		{"neither Bundle nor ServiceRequest", "contained-service-request.json",
			func(t *testing.T, d doc) doc { return d.set(t, "resourceType", "Patient") }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := fhir.ParseServiceRequest(tc.edit(t, load(t, tc.file)).bytes(t))
			var inv *careteam.InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("got %v, want an InvalidError", err)
			}
			var got []string
			for _, v := range inv.Violations {
				got = append(got, v.Field)
				if v.Description == "" {
					t.Errorf("%s has no description", v.Field)
				}
			}
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("violations %v lack %s", got, w)
				}
			}
		})
	}
	t.Run("not JSON", func(t *testing.T) {
		_, err := fhir.ParseServiceRequest([]byte(`{"resourceType": "ServiceRequest",`))
		var inv *careteam.InvalidError
		if !errors.As(err, &inv) || inv.Violations[0].Field != "resource_json" {
			t.Fatalf("got %v", err)
		}
	})
}

// TestLocateNamesTheInputElement checks that what the domain's validation
// reports by domain field is moved to where it sat in the input.
func TestLocateNamesTheInputElement(t *testing.T) {
	t.Parallel()
	in := parse(t, load(t, "transaction-bundle.json").bytes(t))
	for field, want := range map[string]string{
		"patient.family_name":        "Bundle.entry[1].resource.ofType(Patient).name[1].family",
		"patient.birth_date":         "Bundle.entry[1].resource.ofType(Patient).birthDate",
		"patient.identifiers[0]":     "Bundle.entry[1].resource.ofType(Patient).identifier[0]",
		"diagnoses[1].icd10_code":    "Bundle.entry[3].resource.ofType(Condition).code.coding[0].code",
		"diagnoses[0].onset_date":    "Bundle.entry[2].resource.ofType(Condition).onsetDateTime",
		"referral.valid_until":       "Bundle.entry[0].resource.ofType(ServiceRequest).occurrencePeriod.end",
		"referral.authorized_visits": "Bundle.entry[0].resource.ofType(ServiceRequest).quantityQuantity",
		"referral.reason_codes[0]":   "Bundle.entry[0].resource.ofType(ServiceRequest).reasonCode[0].coding[1].code",
		"referral.target_therapist":  "Bundle.entry[0].resource.ofType(ServiceRequest).performer[0]",
		"request_id":                 "",
	} {
		if got := in.Locate(field); got != want {
			t.Errorf("Locate(%q) = %q, want %q", field, got, want)
		}
	}
}
