package fhir

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/careteam"
)

// Param is one search parameter as a URL's query gives it.
type Param struct{ Name, Value string }

// Searchable lists the resource types careteam searches and, for each,
// the parameters it takes (the CapabilityStatement says the same).
var Searchable = map[string][]string{
	typeTask:           {"owner", "status", "patient", "_lastUpdated"},
	typeServiceRequest: {"patient", "status", "_lastUpdated", "identifier"},
	typeObservation:    {"patient", "code"},
}

// ObservationSearch turns a search of Observations (the pain scores and
// outcome measures of sessions) into the sessions to read and the ids of
// the measures wanted of each: every measure when code is not given.
func ObservationSearch(params []Param) (careteam.SessionFilter, func(session uuid.UUID) []string, error) {
	var f careteam.SessionFilter
	var bad []careteam.FieldViolation
	fail := func(i int, format string, args ...any) {
		bad = append(bad, careteam.FieldViolation{Field: fmt.Sprintf("parameters[%d]", i), Description: fmt.Sprintf(format, args...)})
	}
	keys := map[string]bool{}
	seen := map[string]bool{}
	for i, p := range params {
		if !slices.Contains(Searchable[typeObservation], p.Name) {
			fail(i, "Observation does not take the search parameter %q; it takes patient and code", p.Name)
			continue
		}
		if seen[p.Name] {
			fail(i, "%s is given twice; separate alternatives with commas", p.Name)
			continue
		}
		seen[p.Name] = true
		switch p.Name {
		case "patient":
			if f.PatientID = reference(p.Value, typePatient); f.PatientID == uuid.Nil {
				fail(i, "patient: want Patient/{id}")
			}
		case "code":
			for _, token := range strings.Split(p.Value, ",") {
				matched := measuresOf(token)
				if len(matched) == 0 {
					fail(i, "code: %q is no measure careteam records (LOINC %s, %s, or %s codes)", token, loincPainNRS, loincOswestry, systemMeasure)
				}
				for _, k := range matched {
					keys[k] = true
				}
			}
		}
	}
	if len(bad) > 0 {
		return f, nil, &careteam.InvalidError{Violations: bad}
	}
	return f, func(session uuid.UUID) []string {
		var ids []string
		for _, m := range measures {
			if len(keys) == 0 || keys[m.key] {
				ids = append(ids, observationID(session, m.key))
			}
		}
		return ids
	}, nil
}

// measuresOf lists the measures a token search (system|code, |code or
// code) names.
func measuresOf(token string) []string {
	system, code, hasSystem := strings.Cut(token, "|")
	if !hasSystem {
		system, code = "", token
	}
	var out []string
	for _, m := range measures {
		switch {
		case (system == systemLOINC || !hasSystem) && m.loinc != "" && code == m.loinc,
			(system == systemMeasure || !hasSystem) && code == m.key:
			out = append(out, m.key)
		}
	}
	return out
}

// ReferralSearch turns a search of Tasks or ServiceRequests into the
// referral filter that finds them, or the identifier that names them (an
// identifier is searched alone). Every bad parameter is reported, as
// parameters[i]; an unknown one is refused rather than ignored, so a
// caller never receives more than it asked for.
func ReferralSearch(typ string, params []Param) (careteam.ReferralFilter, *careteam.Identifier, error) {
	var f careteam.ReferralFilter
	var ident *careteam.Identifier
	var bad []careteam.FieldViolation
	fail := func(i int, format string, args ...any) {
		bad = append(bad, careteam.FieldViolation{Field: fmt.Sprintf("parameters[%d]", i), Description: fmt.Sprintf(format, args...)})
	}
	known, ok := Searchable[typ]
	if !ok {
		return f, nil, &careteam.InvalidError{Violations: []careteam.FieldViolation{{Field: "resource_type",
			Description: "careteam searches Task and ServiceRequest"}}}
	}
	seen := map[string]bool{}
	for i, p := range params {
		name := p.Name
		switch {
		case !slices.Contains(known, name):
			fail(i, "%s does not take the search parameter %q; it takes %s", typ, name, strings.Join(known, ", "))
			continue
		case seen[name] && name != "_lastUpdated":
			fail(i, "%s is given twice; separate alternatives with commas", name)
			continue
		}
		seen[name] = true
		switch name {
		case "patient":
			if f.PatientID = reference(p.Value, typePatient); f.PatientID == uuid.Nil {
				fail(i, "patient: want Patient/{id}")
			}
		case "owner":
			switch kind, id, _ := strings.Cut(p.Value, "/"); kind {
			case typePractitioner:
				f.TargetTherapistID, _ = uuid.Parse(id)
			case typeOrganization:
				f.TargetOrgID, _ = uuid.Parse(id)
			}
			if f.TargetTherapistID == uuid.Nil && f.TargetOrgID == uuid.Nil {
				fail(i, "owner: want Practitioner/{id} or Organization/{id}")
			}
		case "status":
			for _, code := range strings.Split(p.Value, ",") {
				states, ok := statesOf(typ, code)
				if !ok {
					fail(i, "status: %q is not a %s status careteam uses", code, typ)
				}
				f.States = append(f.States, states...)
			}
		case "_lastUpdated":
			if err := lastUpdated(&f, p.Value); err != nil {
				fail(i, "_lastUpdated: %v", err)
			}
		case "identifier":
			system, value, ok := strings.Cut(p.Value, "|")
			switch {
			case !ok || system == "" || value == "" || strings.Contains(value, ","):
				fail(i, "identifier: want one system|value")
			case len(params) > 1:
				fail(i, "identifier is searched alone")
			default:
				ident = &careteam.Identifier{System: system, Value: value}
			}
		}
	}
	if len(bad) > 0 {
		return f, nil, &careteam.InvalidError{Violations: bad}
	}
	return f, ident, nil
}

// reference reads "Type/{id}" (or a bare id) naming a careteam row.
func reference(v, kind string) uuid.UUID {
	v = strings.TrimPrefix(v, kind+"/")
	id, err := uuid.Parse(v)
	if err != nil || strings.Contains(v, "/") {
		return uuid.Nil
	}
	return id
}

// statesOf is the inverse of the status maps the export writes.
func statesOf(typ, code string) ([]careteam.ReferralState, bool) {
	var out []careteam.ReferralState
	if typ == typeTask {
		for s, v := range taskStatus {
			if strings.EqualFold(statusCode(v.String()), code) {
				out = append(out, s)
			}
		}
	} else {
		for s, v := range requestStatus {
			if strings.EqualFold(statusCode(v.String()), code) {
				out = append(out, s)
			}
		}
	}
	return out, len(out) > 0
}

// statusCode is FHIR's code for a generated enum value's name
// (IN_PROGRESS -> in-progress).
func statusCode(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// lastUpdated applies one _lastUpdated bound: a prefix (gt, ge, lt, le;
// eq or none) and a date or dateTime, which FHIR reads as the range its
// precision spans (a day; a second; a millisecond with three decimals).
func lastUpdated(f *careteam.ReferralFilter, v string) error {
	prefix := "eq"
	if len(v) > 2 && v[0] >= 'a' && v[0] <= 'z' {
		prefix, v = v[:2], v[2:]
	}
	var from, to time.Time
	var err error
	switch len(v) {
	case len("2006"):
		from, err = time.Parse("2006", v)
		to = from.AddDate(1, 0, 0)
	case len("2006-01"):
		from, err = time.Parse("2006-01", v)
		to = from.AddDate(0, 1, 0)
	case len("2006-01-02"):
		from, err = time.Parse("2006-01-02", v)
		to = from.AddDate(0, 0, 1)
	default:
		precision := time.Second
		if from, err = time.Parse(time.RFC3339Nano, v); err != nil {
			from, err = time.Parse("2006-01-02T15:04Z07:00", v)
			precision = time.Minute
		} else if _, frac, ok := strings.Cut(v, "."); ok {
			digits := min(len(frac)-len(strings.TrimLeft(frac, "0123456789")), 9)
			precision = time.Duration(math.Pow10(9 - digits))
		}
		to = from.Add(precision)
	}
	if err != nil {
		return fmt.Errorf("want a date (2026, 2026-12, 2026-12-01) or a dateTime with its zone (2026-12-01T09:00Z, 2026-12-01T09:00:00.5+01:00), after gt, ge, lt or le")
	}
	tick := time.Microsecond // PostgreSQL's resolution: ge t is gt t-1µs
	switch prefix {
	case "gt":
		f.ChangedAfter = later(f.ChangedAfter, to.Add(-tick))
	case "ge":
		f.ChangedAfter = later(f.ChangedAfter, from.Add(-tick))
	case "lt":
		f.ChangedBefore = earlier(f.ChangedBefore, from)
	case "le":
		f.ChangedBefore = earlier(f.ChangedBefore, to)
	case "eq":
		f.ChangedAfter, f.ChangedBefore = later(f.ChangedAfter, from.Add(-tick)), earlier(f.ChangedBefore, to)
	default:
		return fmt.Errorf("the prefix %q is not one careteam takes (gt, ge, lt, le, eq)", prefix)
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.IsZero() || b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}
