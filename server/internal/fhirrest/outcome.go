package fhirrest

import (
	"errors"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// issue is one OperationOutcome issue.
type issue struct {
	code        string
	diagnostics string
	expression  []string
}

// statusOf is the HTTP status FHIR gives each outcome of a call.
var statusOf = map[connect.Code]int{
	connect.CodeInvalidArgument:    http.StatusBadRequest,
	connect.CodeUnauthenticated:    http.StatusUnauthorized,
	connect.CodePermissionDenied:   http.StatusForbidden,
	connect.CodeNotFound:           http.StatusNotFound,
	connect.CodeAlreadyExists:      http.StatusConflict,
	connect.CodeAborted:            http.StatusConflict,
	connect.CodeFailedPrecondition: http.StatusUnprocessableEntity,
	connect.CodeOutOfRange:         http.StatusBadRequest,
	connect.CodeResourceExhausted:  http.StatusTooManyRequests,
	connect.CodeUnavailable:        http.StatusServiceUnavailable,
	connect.CodeDeadlineExceeded:   http.StatusGatewayTimeout,
	connect.CodeCanceled:           499,
	connect.CodeUnimplemented:      http.StatusNotImplemented,
}

// issueType is the OperationOutcome issue type of each outcome.
var issueType = map[connect.Code]string{
	connect.CodeInvalidArgument:    "invalid",
	connect.CodeUnauthenticated:    "login",
	connect.CodePermissionDenied:   "forbidden",
	connect.CodeNotFound:           "not-found",
	connect.CodeAlreadyExists:      "duplicate",
	connect.CodeAborted:            "conflict",
	connect.CodeFailedPrecondition: "business-rule",
	connect.CodeOutOfRange:         "invalid",
	connect.CodeResourceExhausted:  "throttled",
	connect.CodeUnavailable:        "transient",
	connect.CodeDeadlineExceeded:   "timeout",
	connect.CodeCanceled:           "incomplete",
	connect.CodeUnimplemented:      "not-supported",
}

// failCall answers with what a call's error says: its code as an HTTP
// status, and its details (each bad field at its FHIRPath location, each
// unmet rule) as OperationOutcome issues. The API's messages carry ids
// only, never patient data, and never SQL.
func failCall(w http.ResponseWriter, err error) {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		fail(w, http.StatusInternalServerError, issue{code: "exception", diagnostics: "internal error"})
		return
	}
	status, ok := statusOf[ce.Code()]
	if !ok {
		status = http.StatusInternalServerError
	}
	code := issueType[ce.Code()]
	if code == "" {
		code = "exception"
	}
	var issues []issue
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			continue
		}
		switch v := v.(type) {
		case *errdetails.BadRequest:
			for _, f := range v.GetFieldViolations() {
				is := issue{code: code, diagnostics: f.GetDescription()}
				if fhirPath(f.GetField()) {
					is.expression = []string{f.GetField()}
				} else {
					is.diagnostics = f.GetField() + ": " + f.GetDescription()
				}
				issues = append(issues, is)
			}
		case *errdetails.PreconditionFailure:
			for _, pv := range v.GetViolations() {
				issues = append(issues, issue{code: code, diagnostics: pv.GetType() + ": " + pv.GetDescription()})
				// The order's identifiers name several referrals: FHIR's
				// answer to a create whose condition matches more than one.
				if pv.GetType() == "IDENTIFIER_CONFLICT" {
					status = http.StatusPreconditionFailed
				}
			}
		}
	}
	if len(issues) == 0 {
		issues = []issue{{code: code, diagnostics: ce.Message()}}
	}
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="careteam"`)
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	}
	fail(w, status, issues...)
}

// fhirPath reports whether a field names an element of FHIR input (the
// import's locations, "ServiceRequest.subject",
// "Bundle.entry[1].resource.ofType(Patient).birthDate") rather than a
// field of the API's request.
func fhirPath(field string) bool {
	return field != "" && field[0] >= 'A' && field[0] <= 'Z' && !strings.ContainsAny(field, " ")
}

// fail answers with an OperationOutcome of issues.
func fail(w http.ResponseWriter, status int, issues ...issue) {
	type outIssue struct {
		Severity    string   `json:"severity"`
		Code        string   `json:"code"`
		Diagnostics string   `json:"diagnostics,omitempty"`
		Expression  []string `json:"expression,omitempty"`
	}
	out := struct {
		ResourceType string     `json:"resourceType"`
		Issue        []outIssue `json:"issue"`
	}{ResourceType: "OperationOutcome"}
	for _, is := range issues {
		out.Issue = append(out.Issue, outIssue{Severity: "error", Code: is.code, Diagnostics: is.diagnostics, Expression: is.expression})
	}
	writeJSON(w, status, out)
}
