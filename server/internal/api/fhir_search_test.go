package api_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// TestSearchObservations: the measures of a patient's sessions, by code
// (LOINC or careteam's), for those who may read them: the referring
// physician and the therapist; not another practice's therapist, nor a
// coordinator, to whom per-session measures are never shown.
func TestSearchObservations(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	r, _ := tm.ready()
	ss := tm.begin(r)
	if _, err := tm.as("lmt").Sessions.UpdateSessionNote(tm.ctx, &pb.UpdateSessionNoteRequest{Name: ss.GetName(), Etag: ss.GetEtag(),
		Note:       &pb.SessionNote{PainBefore: i32(6), PainAfter: i32(3), OswestryDisabilityIndex: i32(30)},
		UpdateMask: fieldMask("pain_before", "pain_after", "oswestry_disability_index")}); err != nil {
		t.Fatal(err)
	}
	patient := strings.Replace(tm.patient.GetName(), "patients/", "Patient/", 1)
	search := func(as string, params ...string) ([]string, error) {
		req := &pb.SearchFhirResourcesRequest{ResourceType: "Observation"}
		for i := 0; i+1 < len(params); i += 2 {
			req.Parameters = append(req.Parameters, &pb.FhirSearchParameter{Name: params[i], Value: params[i+1]})
		}
		resp, err := tm.as(as).FHIR.SearchFhirResources(tm.ctx, req)
		var ids []string
		for _, res := range resp.GetResources() {
			ids = append(ids, res.GetId())
		}
		return ids, err
	}
	session := strings.TrimPrefix(ss.GetName(), "sessions/")
	tests := []struct {
		as     string
		params []string
		want   []string
	}{
		{"dr", []string{"patient", patient}, []string{"pain-before-session", "pain-after-session", "oswestry-disability-index"}},
		{"lmt", []string{"patient", patient, "code", "http://loinc.org|72514-3"}, []string{"pain-before-session", "pain-after-session"}},
		{"lmt", []string{"code", "urn:careteam:measure|OSWESTRY_DISABILITY_INDEX"}, []string{"oswestry-disability-index"}},
		{"dr", []string{"patient", patient, "code", "NECK_DISABILITY_INDEX"}, nil},
		{"other-lmt", []string{"patient", patient}, nil},
		{"coord", []string{"patient", patient}, nil},
	}
	for _, tc := range tests {
		got, err := search(tc.as, tc.params...)
		if err != nil {
			if tc.want == nil && status.Code(err) == codes.PermissionDenied {
				continue
			}
			t.Errorf("as %s %v: %v", tc.as, tc.params, err)
			continue
		}
		var want []string
		for _, m := range tc.want {
			want = append(want, session+"-"+m)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("as %s %v: %v, want %v", tc.as, tc.params, got, want)
		}
	}
	_, err := search("dr", "code", "http://loinc.org|0000-0", "subject", patient)
	if v := fieldViolations(t, err); len(v) != 2 {
		t.Errorf("a code careteam does not record and an unknown parameter: %v", v)
	}
}
