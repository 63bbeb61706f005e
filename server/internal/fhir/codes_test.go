package fhir

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/careteam"
)

// contractCodes lists an enum's values as the domain spells them.
func contractCodes(e protoreflect.EnumDescriptor) []string {
	var out []string
	prefix := strings.TrimSuffix(string(e.Values().ByNumber(0).Name()), "UNSPECIFIED")
	for i := 1; i < e.Values().Len(); i++ {
		out = append(out, strings.TrimPrefix(string(e.Values().Get(i).Name()), prefix))
	}
	return out
}

// TestCodeListsMatchTheContract keeps careteam's FHIR code systems equal to
// the enums of the API contract they mirror.
func TestCodeListsMatchTheContract(t *testing.T) {
	for name, pair := range map[string][2][]string{
		"technique":   {asStrings(techniques), contractCodes(pb.Technique(0).Descriptor())},
		"body region": {asStrings(bodyRegions), contractCodes(pb.BodyRegion(0).Descriptor())},
		"red flag":    {asStrings(careteam.RedFlags), contractCodes(pb.RedFlag(0).Descriptor())},
		"specialty":   {asStrings(specialties), contractCodes(pb.Specialty(0).Descriptor())},
		"pressure":    {pressures, contractCodes(pb.Pressure(0).Descriptor())},
		"decision":    {clearanceDecisions, contractCodes(pb.ClearanceDecision(0).Descriptor())},
		"decline":     {declineReasons, contractCodes(pb.DeclineReason(0).Descriptor())},
		"state":       {referralStates, contractCodes(pb.ReferralState(0).Descriptor())},
	} {
		if !slices.Equal(pair[0], pair[1]) {
			t.Errorf("%s codes %v, the contract's %v", name, pair[0], pair[1])
		}
	}
}

// TestConformanceResourcesAreValid: every code system and extension
// careteam writes is served as a valid R4 resource, under the URL it is
// written with.
func TestConformanceResourcesAreValid(t *testing.T) {
	res, err := Conformance(Naming{})
	if err != nil {
		t.Fatal(err)
	}
	urls := map[string]bool{}
	for _, r := range res {
		if err := Validate(r.JSON); err != nil {
			t.Errorf("%s/%s: %v", r.Type, r.ID, err)
		}
		var m struct{ URL string }
		if err := json.Unmarshal(r.JSON, &m); err != nil {
			t.Fatal(err)
		}
		urls[m.URL] = true
	}
	for _, u := range []string{systemTechnique, systemBodyRegion, systemRedFlag, systemSpecialty, systemPressure, systemReferralState,
		systemDeclineReason, systemClearanceDecision, systemMeasure, systemService, systemResult,
		extensionRedFlag, extensionEvaluatedRedFlag, extensionBodyRegion, extensionMaxPressure} {
		if !urls[u] {
			t.Errorf("%s is not served", u)
		}
	}
}
