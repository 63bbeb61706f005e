package careteam

import (
	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/audit"
)

// Role is what a principal does; it decides what they may see and do.
type Role string

// The roles.
const (
	RolePhysician   Role = "PHYSICIAN"
	RoleTherapist   Role = "MASSAGE_THERAPIST"
	RoleCoordinator Role = "COORDINATOR"
	RoleAdmin       Role = "ADMIN"
	RoleAuditor     Role = "AUDITOR"
	// RoleIntegration is an EHR integration: it reads and writes nothing
	// as itself, and acts for the physicians of the organizations it is
	// granted (ActFor).
	RoleIntegration Role = "INTEGRATION"
)

func (r Role) valid() bool {
	switch r {
	case RolePhysician, RoleTherapist, RoleCoordinator, RoleAdmin, RoleAuditor, RoleIntegration:
		return true
	}
	return false
}

// Principal is an authenticated caller, as the directory knows them: role
// and organization come from the directory, never from token claims.
type Principal struct {
	// Subject is the token's subject.
	Subject string
	// PractitionerID is the caller's directory entry; zero for the bootstrap
	// administrator, who has none.
	PractitionerID uuid.UUID
	// OrganizationID is the caller's organization; zero for the bootstrap
	// administrator.
	OrganizationID uuid.UUID
	// Role is the caller's role.
	Role Role
	// Bootstrap is true for the administrator named by configuration.
	Bootstrap bool
	// Purpose is why the caller accesses data (TREATMENT by default);
	// EmergencyReason is given with purpose EMERGENCY ("break the glass").
	Purpose         string
	EmergencyReason string
	// Via is the integration acting for this physician; zero for a
	// caller acting as themselves. Subject stays the integration's.
	Via uuid.UUID
}

// emergency reports whether the caller broke the glass: a physician reading
// outside their care team for an emergency, with a reason.
func (p Principal) emergency() bool {
	return p.Role == RolePhysician && p.Purpose == audit.PurposeEmergency && p.EmergencyReason != ""
}

// Name returns the caller's resource name, or "" for the bootstrap
// administrator.
func (p Principal) Name() string { return Practitioners.NameOrEmpty(p.PractitionerID) }
