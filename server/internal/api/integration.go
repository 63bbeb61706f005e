package api

import (
	"context"
	"fmt"
	"slices"
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

// access is what a method does, as SMART v2 spells it: c(reate),
// r(ead), u(pdate), d(elete) or s(earch).
func access(fullMethod string) byte {
	_, method, _ := strings.Cut(fullMethod[1:], "/")
	for _, v := range []struct {
		verb string
		perm byte
	}{{"List", 's'}, {"Search", 's'}, {"Get", 'r'}, {"Export", 'r'}, {"Lookup", 'r'}, {"Check", 'r'}, {"Watch", 'r'},
		{"Verify", 'r'}, {"Create", 'c'}, {"Import", 'c'}, {"Record", 'c'}, {"Issue", 'c'}, {"Request", 'c'}, {"Start", 'c'},
		{"Delete", 'd'}} {
		if strings.HasPrefix(method, v.verb) {
			return v.perm
		}
	}
	return 'u'
}

// granted reports whether a SMART system scope allows perm on resource:
// system/{type or *}.{read (r, s), write (c, u, d) or *}, or SMART v2's
// letters (system/Patient.rs).
func granted(scope, resource string, perm byte) bool {
	rest, ok := strings.CutPrefix(scope, "system/")
	if !ok {
		return false
	}
	typ, perms, ok := strings.Cut(rest, ".")
	if !ok || (typ != "*" && typ != resource) {
		return false
	}
	switch perms {
	case "*":
		return true
	case "read":
		return perm == 'r' || perm == 's'
	case "write":
		return perm == 'c' || perm == 'u' || perm == 'd'
	}
	return strings.Trim(perms, "cruds") == "" && strings.IndexByte(perms, perm) >= 0
}

// need is a permission on a resource type that a call needs a scope for.
type need struct {
	resource string
	perm     byte
}

// needs lists the scopes a call needs: its data's, and for a webhook, the
// events' it will deliver, since those then reach the receiver too.
func needs(fullMethod string, req any) []need {
	out := []need{{scopeResource(fullMethod, req), access(fullMethod)}}
	if fullMethod == "/careteam.v1.WebhookService/CreateWebhook" {
		out = append(out, need{"ServiceRequest", 'r'})
	}
	return out
}

// checkScope refuses an integration's call its token's scopes do not
// allow.
func checkScope(ctx context.Context, fullMethod string, req any) error {
	c := callFrom(ctx)
	if !c.scoped || !strings.HasPrefix(fullMethod, "/careteam.v1.") {
		return nil
	}
	for _, n := range needs(fullMethod, req) {
		if !slices.ContainsFunc(c.scopes, func(s string) bool { return granted(s, n.resource, n.perm) }) {
			return fmt.Errorf("the token's scopes do not allow system/%s.%c: %w", n.resource, n.perm, careteam.ErrPermissionDenied)
		}
	}
	return nil
}
