package careteam

import (
	"strings"
	"testing"
)

// FuzzNormalizeICD10 feeds arbitrary strings to the ICD-10-CM validator:
// it never panics, what it accepts has the dotted form, and normalizing is
// idempotent.
func FuzzNormalizeICD10(f *testing.F) {
	for _, seed := range []string{"M54.50", "M5450", "m47.816", "S39.012A", "M79.7", "", "Z", "U07.1", "A00.0000", "M54.", "12.3"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, code string) {
		got, ok := NormalizeICD10(code)
		if !ok {
			return
		}
		if !icd10Pattern.MatchString(got) || (len(got) > 3 && got[3] != '.') {
			t.Fatalf("%q normalized to %q", code, got)
		}
		again, ok := NormalizeICD10(got)
		if !ok || again != got {
			t.Fatalf("normalizing %q again gave %q, %v", got, again, ok)
		}
	})
}

// FuzzParseName feeds arbitrary strings to the resource-name parser: it
// never panics, and a name it accepts is exactly the name of its id.
func FuzzParseName(f *testing.F) {
	for _, seed := range []string{"patients/01a218b8-c370-7cda-baa4-a25e014d2140", "patients/", "patients/x", "referrals/01A218B8-C370-7CDA-BAA4-A25E014D2140", "patients/01a218b8-c370-7cda-baa4-a25e014d2140/x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		id, err := Patients.Parse(name)
		if err != nil {
			return
		}
		if Patients.Name(id) != name {
			t.Fatalf("%q parsed to %s", name, id)
		}
	})
}

// FuzzValidateIdentifiers throws arbitrary identifiers at their
// validation: it never panics and refuses blank parts and duplicates.
func FuzzValidateIdentifiers(f *testing.F) {
	f.Add("urn:mrn", "42", "urn:mrn", "42")
	f.Add(" ", "x", "a", "")
	f.Fuzz(func(t *testing.T, s1, v1, s2, v2 string) {
		var fs fields
		ids := []Identifier{{System: s1, Value: v1}, {System: s2, Value: v2}}
		validateIdentifiers(&fs, "ids", ids)
		blank := func(s string) bool { return strings.TrimSpace(s) == "" }
		bad := blank(s1) || blank(v1) || blank(s2) || blank(v2) || ids[0] == ids[1]
		if bad && fs.err() == nil {
			t.Fatalf("accepted %+v", ids)
		}
	})
}
