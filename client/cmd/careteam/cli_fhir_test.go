package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// TestFHIRImportAndExport imports a ServiceRequest from a file, exports its
// referral as a Bundle to standard output, and imports that back: the same
// referral, unchanged.
func TestFHIRImportAndExport(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	sr := `{
		"resourceType": "ServiceRequest",
		"identifier": [{"system": "urn:test:orders", "value": "` + unique("ORD") + `"}],
		"status": "active", "intent": "order",
		"contained": [{"resourceType": "Patient", "id": "p",
			"identifier": [{"system": "urn:test:mrn", "value": "` + unique("MRN") + `"}],
			"name": [{"family": "Okoro", "given": ["Ife"]}], "birthDate": "1977-07-07"}],
		"subject": {"reference": "#p"},
		"performer": [{"reference": "` + strings.Replace(tm.therapist, "practitioners/", "Practitioner/", 1) + `"}],
		"reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50"}]}],
		"quantityQuantity": {"value": 5}
	}`
	file := filepath.Join(t.TempDir(), "service-request.json")
	if err := os.WriteFile(file, []byte(sr), 0o600); err != nil {
		t.Fatal(err)
	}
	imported := jsonAs[pb.ImportServiceRequestResponse](t, tm.drSubject, "fhir", "import", file)
	r := imported.GetReferral()
	if !imported.GetChanged() || r.GetState() != pb.ReferralState_REFERRAL_STATE_SUBMITTED || r.GetTargetTherapist() != tm.therapist {
		t.Fatalf("imported %v", imported)
	}

	exported := as(t, tm.lmtSubject, "fhir", "export", r.GetName())
	var bundle struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if exported.code != exitOK || json.Unmarshal([]byte(exported.stdout), &bundle) != nil || bundle.ResourceType != "Bundle" {
		t.Fatalf("fhir export: exit %d\n%s%s", exported.code, exported.stdout, exported.stderr)
	}
	if bundle.Entry[1].Resource.ResourceType != "ServiceRequest" {
		t.Errorf("the Bundle's second entry is a %s", bundle.Entry[1].Resource.ResourceType)
	}
	back := filepath.Join(t.TempDir(), "bundle.json")
	if err := os.WriteFile(back, []byte(exported.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	again := jsonAs[pb.ImportServiceRequestResponse](t, tm.drSubject, "fhir", "import", back)
	if again.GetChanged() || again.GetReferral().GetName() != r.GetName() {
		t.Fatalf("re-imported %v", again)
	}

	if res := as(t, tm.lmtSubject, "fhir", "import", file); res.code != exitDenied {
		t.Errorf("a therapist imports: exit %d, want %d\n%s", res.code, exitDenied, res.stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(strings.Replace(sr, `"birthDate": "1977-07-07"`, `"birthDate": "07/07/1977"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	res := as(t, tm.drSubject, "fhir", "import", bad)
	if res.code != exitInvalid || !strings.Contains(res.stderr, "field ServiceRequest.contained[0].ofType(Patient).birthDate: ") {
		t.Errorf("a malformed birth date: exit %d\n%s", res.code, res.stderr)
	}
}
