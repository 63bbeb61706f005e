package careteam

import (
	"slices"
	"testing"
)

func TestCodeRedFlags(t *testing.T) {
	t.Parallel()
	for code, want := range map[string][]RedFlag{
		"M81.0":    {"OSTEOPOROSIS"},
		"M80.08XA": {"OSTEOPOROSIS", "SUSPECTED_FRACTURE"},
		"G83.4":    {"CAUDA_EQUINA_SYMPTOMS"},
		"g834":     {"CAUDA_EQUINA_SYMPTOMS"}, // normalized first
		"G83.41":   {"CAUDA_EQUINA_SYMPTOMS"},
		"G83.3":    nil,
		"C79.51":   {"MALIGNANCY_HISTORY"},
		"Z79.01":   {"ANTICOAGULANT_THERAPY"},
		"Z79.02":   nil,
		"M54.50":   nil,
		"S120":     {"SUSPECTED_FRACTURE", "SIGNIFICANT_TRAUMA"},
		"S13":      nil,
		"not-code": nil,
	} {
		if got := CodeRedFlags(code); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", code, got, want)
		}
	}
	for _, rc := range codeRedFlags {
		for _, f := range rc.flags {
			if !slices.Contains(RedFlags, f) {
				t.Errorf("%s lists an unknown red flag %s", rc.prefix, f)
			}
		}
	}
}
