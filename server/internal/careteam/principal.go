package careteam

import "github.com/google/uuid"

// Role is what a principal does; it decides what they may see and do.
type Role string

// The roles.
const (
	RolePhysician   Role = "PHYSICIAN"
	RoleTherapist   Role = "MASSAGE_THERAPIST"
	RoleCoordinator Role = "COORDINATOR"
	RoleAdmin       Role = "ADMIN"
	RoleAuditor     Role = "AUDITOR"
)

func (r Role) valid() bool {
	switch r {
	case RolePhysician, RoleTherapist, RoleCoordinator, RoleAdmin, RoleAuditor:
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
}

// Name returns the caller's resource name, or "" for the bootstrap
// administrator.
func (p Principal) Name() string { return Practitioners.NameOrEmpty(p.PractitionerID) }
