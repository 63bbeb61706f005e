package fhir

import (
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

func asStrings[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
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
	} {
		if !slices.Equal(pair[0], pair[1]) {
			t.Errorf("%s codes %v, the contract's %v", name, pair[0], pair[1])
		}
	}
}
