package careteam

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// SystemNPI is the naming system of the US National Provider Identifier,
// which identifies physicians, therapists and their organizations.
const SystemNPI = "http://hl7.org/fhir/sid/us-npi"

// maxLicenceTerm bounds how far ahead a licence may be recorded to expire:
// no jurisdiction issues a licence to practise for longer.
const maxLicenceTerm = 10

var (
	// licenceNumber is what boards print: letters and digits, with spaces,
	// dots, slashes and hyphens inside.
	licenceNumber = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9 ./-]{0,38}[A-Za-z0-9])?$`)
	// jurisdiction is an ISO 3166-1 country code with an optional ISO 3166-2
	// subdivision, such as "US-WA" or "CA-ON".
	jurisdiction = regexp.MustCompile(`^[A-Z]{2}(?:-[A-Z0-9]{1,3})?$`)
)

// validNPI reports whether v is a well-formed NPI: ten digits, the last a
// Luhn check digit over the number prefixed with 80840, the prefix the NPI
// standard fixes for the check.
func validNPI(v string) bool {
	if len(v) != 10 || strings.Trim(v, "0123456789") != "" {
		return false
	}
	digits := "80840" + v
	sum := 0
	for i := range len(digits) {
		d := int(digits[len(digits)-1-i] - '0')
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// validateIdentifiers checks that identifiers are complete, not repeated,
// and that an NPI carries its check digit.
func validateIdentifiers(f *fields, path string, ids []Identifier) {
	seen := map[Identifier]bool{}
	for i, id := range ids {
		at := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case strings.TrimSpace(id.System) == "" || strings.TrimSpace(id.Value) == "":
			f.add(at, "system and value are required")
		case id.System == SystemNPI && !validNPI(id.Value):
			f.add(at+".value", "an NPI is ten digits ending in its check digit")
		}
		if seen[id] {
			f.add(at, "duplicate identifier")
		}
		seen[id] = true
	}
}

// validateLicence checks a licence being recorded: its number and
// jurisdiction are well formed, and it has not expired and does not run
// longer than any licence is issued for, on the day of now. A recorded
// licence that lapses later is the gate's business, not a bad request.
func validateLicence(f *fields, l *Licence, now time.Time) {
	if !licenceNumber.MatchString(l.Number) {
		f.add("practitioner.licence.number", "1 to 40 letters, digits, spaces, dots, slashes or hyphens, starting and ending with a letter or digit")
	}
	if !jurisdiction.MatchString(l.Jurisdiction) {
		f.add("practitioner.licence.jurisdiction", `an ISO 3166 code such as "US" or "US-WA"`)
	}
	today := dateOf(now)
	switch {
	case l.ExpireDate.IsZero():
		f.add("practitioner.licence.expire_date", "required")
	case l.ExpireDate.Before(today):
		f.add("practitioner.licence.expire_date", "the licence has expired")
	case l.ExpireDate.After(today.AddDate(maxLicenceTerm, 0, 0)):
		f.add("practitioner.licence.expire_date", "more than %d years ahead", maxLicenceTerm)
	}
}

// roleFits reports whether a practitioner of role may belong to an
// organization of kind: physicians practise in physician practices,
// therapists in massage practices; coordinators, administrators and
// auditors work in either.
func roleFits(role Role, kind OrganizationKind) bool {
	switch role {
	case RolePhysician:
		return kind == PhysicianPractice
	case RoleTherapist:
		return kind == MassagePractice
	}
	return true
}

// credentialed reports whether role is one whose holders the directory's
// administrator vouches for: clinicians, who clear and treat, auditors,
// who read the whole audit trail, and integrations, which act for
// physicians.
func credentialed(role Role) bool {
	return role == RolePhysician || role == RoleTherapist || role == RoleAuditor || role == RoleIntegration
}
