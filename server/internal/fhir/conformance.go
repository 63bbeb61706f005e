package fhir

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/careteam/careteam/server/internal/careteam"
)

// More of the domain's code lists, for the code systems careteam serves;
// a test holds those the API contract enumerates to it.
var (
	pressures          = []string{"LIGHT", "MEDIUM", "FIRM"}
	clearanceDecisions = []string{"CLEARED", "CLEARED_WITH_PRECAUTIONS", "NOT_CLEARED"}
	declineReasons     = []string{"NOT_TRAINED", "NO_CAPACITY", "OUT_OF_SCOPE", "PATIENT_UNREACHABLE", "CLINICALLY_INAPPROPRIATE", "OTHER"}
	referralStates     = []string{"DRAFT", "SUBMITTED", "AWAITING_INFO", "ACCEPTED", "DECLINED", "IN_PROGRESS", "ON_HOLD", "COMPLETED",
		"CANCELLED", "EXPIRED"}
	results = []string{"clearance", "session", "measure", "progress-report"}
)

// codeSystems are careteam's code systems, each with its title and codes.
func codeSystems() []struct {
	url, title string
	codes      []string
} {
	measureKeys := make([]string, len(measures))
	for i, m := range measures {
		measureKeys[i] = m.key
	}
	return []struct {
		url, title string
		codes      []string
	}{
		{systemTechnique, "Massage techniques", asStrings(techniques)},
		{systemBodyRegion, "Body regions", asStrings(bodyRegions)},
		{systemRedFlag, "Red flags for massage therapy", asStrings(careteam.RedFlags)},
		{systemSpecialty, "Massage therapists' specialties", asStrings(specialties)},
		{systemPressure, "Massage pressure", pressures},
		{systemReferralState, "Referral states", referralStates},
		{systemDeclineReason, "Reasons a referral is declined", declineReasons},
		{systemClearanceDecision, "Medical clearance decisions", clearanceDecisions},
		{systemMeasure, "Pain scores and outcome measures", measureKeys},
		{systemService, "Services careteam refers for", []string{"MASSAGE_THERAPY"}},
		{systemResult, "What a referral's Task reports", results},
	}
}

// extensions are careteam's extensions: where each may appear and the
// code system of its value.
var extensions = []struct{ url, title, context, system string }{
	{extensionRedFlag, "A red flag the diagnosis raises", "Condition", systemRedFlag},
	{extensionEvaluatedRedFlag, "A red flag the physician evaluated before clearing", "CarePlan", systemRedFlag},
	{extensionBodyRegion, "The body region a precaution applies to", "CarePlan.activity.detail", systemBodyRegion},
	{extensionMaxPressure, "The most pressure a precaution allows", "CarePlan.activity.detail", systemPressure},
}

// conformanceID is a resource's id from the last part of its URN.
func conformanceID(url string) string { return url[strings.LastIndex(url, ":")+1:] }

// Conformance lists careteam's code systems (CodeSystem) and extensions
// (StructureDefinition) as the FHIR endpoint serves them, under the names
// n gives them, so that every system and extension URL careteam writes can
// be looked up.
func Conformance(n Naming) ([]Resource, error) {
	var out []Resource
	add := func(typ, urn string, v map[string]any) error {
		id := conformanceID(urn)
		v["resourceType"], v["id"], v["url"], v["status"] = typ, id, n.URL(urn), "active"
		v["publisher"] = "careteam"
		js, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("fhir: writing %s/%s: %w", typ, id, err)
		}
		out = append(out, Resource{Type: typ, ID: id, JSON: js})
		return nil
	}
	for _, cs := range codeSystems() {
		concepts := make([]map[string]string, len(cs.codes))
		for i, c := range cs.codes {
			concepts[i] = map[string]string{"code": c, "display": display(c)}
		}
		if err := add("CodeSystem", cs.url, map[string]any{
			"name": name(cs.url), "title": cs.title, "content": "complete", "caseSensitive": true,
			"count": len(concepts), "concept": concepts,
		}); err != nil {
			return nil, err
		}
	}
	for _, ext := range extensions {
		if err := add("StructureDefinition", ext.url, map[string]any{
			"name": name(ext.url), "title": ext.title, "fhirVersion": "4.0.1", "kind": "complex-type", "abstract": false,
			"context": []map[string]string{{"type": "element", "expression": ext.context}},
			"type":    "Extension", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension", "derivation": "constraint",
			"differential": map[string]any{"element": []map[string]any{
				{"id": "Extension", "path": "Extension", "short": ext.title},
				{"id": "Extension.extension", "path": "Extension.extension", "max": "0"},
				{"id": "Extension.url", "path": "Extension.url", "fixedUri": n.URL(ext.url)},
				{"id": "Extension.value[x]", "path": "Extension.value[x]", "min": 1,
					"type": []map[string]string{{"code": "Coding"}, {"code": "code"}}},
			}},
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// name is a computer-friendly name from a URN: body-region -> BodyRegion.
func name(url string) string {
	var b strings.Builder
	for _, part := range strings.Split(conformanceID(url), "-") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// display says a code in words: CLEARED_WITH_PRECAUTIONS -> Cleared with
// precautions.
func display(code string) string {
	s := strings.ToLower(strings.NewReplacer("_", " ", "-", " ").Replace(code))
	return strings.ToUpper(s[:1]) + s[1:]
}

func asStrings[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}
