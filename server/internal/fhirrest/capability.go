package fhirrest

import (
	"net/http"

	"github.com/careteam/careteam/server/internal/fhir"
)

// metadata answers with the CapabilityStatement: exactly the interactions
// and search parameters this endpoint serves. It needs no token, as FHIR
// clients read it before they authenticate.
func (e *endpoint) metadata(w http.ResponseWriter, r *http.Request) {
	type param struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	type interaction struct {
		Code string `json:"code"`
	}
	type operation struct {
		Name       string `json:"name"`
		Definition string `json:"definition"`
	}
	type resource struct {
		Type              string        `json:"type"`
		Interaction       []interaction `json:"interaction"`
		Versioning        string        `json:"versioning"`
		ConditionalCreate bool          `json:"conditionalCreate,omitempty"`
		SearchParam       []param       `json:"searchParam,omitempty"`
		Operation         []operation   `json:"operation,omitempty"`
	}
	paramType := map[string]string{"owner": "reference", "patient": "reference", "status": "token", "_lastUpdated": "date", "identifier": "token"}
	var resources []resource
	for _, typ := range []string{"ServiceRequest", "Task", "Patient", "Condition", "CarePlan", "Encounter", "Observation", "Composition",
		"Practitioner", "Organization"} {
		res := resource{Type: typ, Interaction: []interaction{{"read"}}, Versioning: "no-version"}
		if names, ok := fhir.Searchable[typ]; ok {
			res.Interaction = append(res.Interaction, interaction{"search-type"})
			for _, n := range names {
				res.SearchParam = append(res.SearchParam, param{Name: n, Type: paramType[n]})
			}
		}
		if typ == "ServiceRequest" {
			res.Interaction = append(res.Interaction, interaction{"create"})
			res.ConditionalCreate = true
			res.Operation = []operation{{Name: "everything", Definition: "http://hl7.org/fhir/OperationDefinition/Patient-everything"}}
		}
		resources = append(resources, res)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         "2026-12-06",
		"kind":         "instance",
		"software":     map[string]string{"name": "careteam"},
		"implementation": map[string]string{
			"description": "careteam: referrals, medical clearances and session notes between physicians and massage therapists",
			"url":         base(r),
		},
		"fhirVersion": "4.0.1",
		"format":      []string{"json"},
		"rest": []map[string]any{{
			"mode": "server",
			"security": map[string]any{
				"description": "Bearer tokens (Authorization: Bearer <JWT>) from the identity provider careteamd trusts; every interaction is authorized and audited as the API's calls are",
			},
			"resource":    resources,
			"interaction": []interaction{{"transaction"}},
		}},
	})
}
