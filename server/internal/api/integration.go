package api

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/metadata"

	"github.com/careteam/careteam/server/internal/careteam"
)

// actForHeader names the physician an integration's call acts for,
// "practitioners/{id}".
const actForHeader = "x-act-for"

// actFor makes an integration's call the call of the physician its
// x-act-for header names (the domain decides whether it may), and notes
// the scopes its token was granted; a call of anyone else naming one is
// refused rather than ignored.
func (in *interceptors) actFor(ctx context.Context, p careteam.Principal, cred credential) (careteam.Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	header := md.Get(actForHeader)
	if p.Role != careteam.RoleIntegration {
		if len(header) > 0 {
			return p, invalid(actForHeader, "only an integration acts for another")
		}
		return p, nil
	}
	// A token restricts what an integration may do by its scopes (none
	// without a scope claim); a client certificate by the grant alone.
	c := callFrom(ctx)
	c.scoped, c.scopes = cred.token, cred.scopes
	if len(header) == 0 {
		return p, nil
	}
	if len(header) > 1 {
		return p, invalid(actForHeader, "name one physician")
	}
	id, err := parseName(careteam.Practitioners, actForHeader, header[0])
	if err != nil {
		return p, err
	}
	return in.service.ActFor(ctx, p, id)
}

// scopeResource is the FHIR resource type a method's data is, for SMART
// scopes such as system/ServiceRequest.read: by service, or for the FHIR
// service's reads and searches, the type asked for.
func scopeResource(fullMethod string, req any) string {
	service, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/careteam.v1."), "/")
	switch service {
	case "DirectoryService":
		if strings.Contains(method, "Organization") {
			return "Organization"
		}
		return "Practitioner"
	case "PatientService":
		return "Patient"
	case "ReferralService", "EventService":
		return "ServiceRequest"
	case "ClinicalService":
		switch {
		case strings.Contains(method, "Clearance"):
			return "CarePlan"
		case strings.Contains(method, "Consent"):
			return "Consent"
		}
		return "Condition"
	case "SessionService":
		return "Encounter"
	case "AuditService":
		return "AuditEvent"
	case "WebhookService":
		return "Subscription"
	case "FhirService":
		if r, ok := req.(interface{ GetResourceType() string }); ok && r.GetResourceType() != "" {
			return r.GetResourceType()
		}
		return "ServiceRequest"
	}
	return "*"
}

// reads reports whether a method only reads.
func reads(fullMethod string) bool {
	_, method, _ := strings.Cut(fullMethod[1:], "/")
	for _, verb := range []string{"Get", "List", "Search", "Export", "Lookup", "Check", "Watch", "Verify"} {
		if strings.HasPrefix(method, verb) {
			return true
		}
	}
	return false
}

// granted reports whether a SMART system scope allows access (read or
// write) to resource: system/{type or *}.{read, write or *}, or SMART
// v2's permissions (c, r, u, d, s).
func granted(scope, resource string, read bool) bool {
	rest, ok := strings.CutPrefix(scope, "system/")
	if !ok {
		return false
	}
	typ, perm, ok := strings.Cut(rest, ".")
	if !ok || (typ != "*" && typ != resource) {
		return false
	}
	switch perm {
	case "*":
		return true
	case "read":
		return read
	case "write":
		return !read
	}
	if strings.Trim(perm, "cruds") != "" {
		return false
	}
	if read {
		return strings.ContainsAny(perm, "rs")
	}
	return strings.ContainsAny(perm, "cud")
}

// checkScope refuses an integration's call its token's scopes do not
// allow.
func checkScope(ctx context.Context, fullMethod string, req any) error {
	c := callFrom(ctx)
	if !c.scoped || !strings.HasPrefix(fullMethod, "/careteam.v1.") {
		return nil
	}
	resource, read := scopeResource(fullMethod, req), reads(fullMethod)
	for _, s := range c.scopes {
		if granted(s, resource, read) {
			return nil
		}
	}
	access := "write"
	if read {
		access = "read"
	}
	return fmt.Errorf("the token's scopes do not allow system/%s.%s: %w", resource, access, careteam.ErrPermissionDenied)
}
