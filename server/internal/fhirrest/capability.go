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
	paramType := map[string]string{"owner": "reference", "patient": "reference", "status": "token", "_lastUpdated": "date", "identifier": "token",
		"code": "token"}
	var resources []resource
	for _, typ := range served {
		res := resource{Type: typ, Interaction: []interaction{{"read"}}, Versioning: "versioned"}
		if names, ok := fhir.Searchable[typ]; ok {
			res.Interaction = append(res.Interaction, interaction{"search-type"})
			for _, n := range names {
				res.SearchParam = append(res.SearchParam, param{Name: n, Type: paramType[n]})
			}
		}
		if typ == "ServiceRequest" {
			res.Interaction = append(res.Interaction, interaction{"create"})
			res.ConditionalCreate = true
			res.Operation = []operation{{Name: "everything", Definition: e.base(r) + "/OperationDefinition/" + everythingID}}
		}
		resources = append(resources, res)
	}
	for _, typ := range conformanceTypes {
		resources = append(resources, resource{Type: typ, Interaction: []interaction{{"read"}, {"search-type"}}, Versioning: "no-version",
			SearchParam: []param{{Name: "url", Type: "uri"}}})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"resourceType": "CapabilityStatement",
		"status":       "active",
		"date":         "2026-12-06",
		"kind":         "instance",
		"software":     map[string]string{"name": "careteam"},
		"implementation": map[string]string{
			"description": "careteam: referrals, medical clearances and session notes between physicians and massage therapists",
			"url":         e.base(r),
		},
		"fhirVersion": "4.0.1",
		"format":      []string{"json"},
		"rest": []map[string]any{{
			"mode": "server",
			"security": map[string]any{
				"service": []map[string]any{{"coding": []map[string]string{{
					"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "OAuth"}}}},
				"description": "Bearer tokens (Authorization: Bearer <JWT>) from the identity provider careteamd trusts; every interaction is authorized and audited as the API's calls are",
			},
			"resource":    resources,
			"interaction": []interaction{{"transaction"}},
		}},
	})
}

// everythingID names the OperationDefinition of ServiceRequest/$everything.
const everythingID = "ServiceRequest-everything"

// everythingDefinition serves the OperationDefinition the
// CapabilityStatement names for $everything, so that its canonical
// resolves.
func (e *endpoint) everythingDefinition(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"resourceType": "OperationDefinition",
		"id":           everythingID,
		"url":          e.base(r) + "/OperationDefinition/" + everythingID,
		"name":         "ServiceRequestEverything",
		"status":       "active",
		"kind":         "operation",
		"code":         "everything",
		"description": "A referral's whole record as the caller may read it: a collection Bundle of the Patient, the ServiceRequest, " +
			"its Task, the Conditions, the clearance as a CarePlan, Encounters, Observations, the progress report and the directory entries they name",
		"resource":     []string{"ServiceRequest"},
		"system":       false,
		"type":         false,
		"instance":     true,
		"affectsState": false,
		"parameter":    []map[string]any{{"name": "return", "use": "out", "min": 1, "max": "1", "type": "Bundle"}},
	})
}
