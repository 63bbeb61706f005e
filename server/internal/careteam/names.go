package careteam

import (
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Collection is the first segment of a resource name (AIP-122).
type Collection string

// The collections.
const (
	Organizations Collection = "organizations"
	Practitioners Collection = "practitioners"
	Patients      Collection = "patients"
	Referrals     Collection = "referrals"
	Diagnoses     Collection = "diagnoses"
	Clearances    Collection = "clearances"
	Consents      Collection = "consents"
	Sessions      Collection = "sessions"
	Webhooks      Collection = "webhooks"
)

// Name returns the resource name of id in c, such as "patients/{id}".
func (c Collection) Name(id uuid.UUID) string { return string(c) + "/" + id.String() }

// NameOrEmpty is Name, or "" for the zero id (an unset reference).
func (c Collection) NameOrEmpty(id uuid.UUID) string {
	if id == uuid.Nil {
		return ""
	}
	return c.Name(id)
}

// Parse returns the id in a resource name of c.
func (c Collection) Parse(name string) (uuid.UUID, error) {
	rest, ok := strings.CutPrefix(name, string(c)+"/")
	if !ok {
		return uuid.Nil, fmt.Errorf("must be %s/{id}", c)
	}
	id, err := uuid.Parse(rest)
	if err != nil || rest != id.String() {
		return uuid.Nil, fmt.Errorf("must be %s/{id} with a lower-case UUID id", c)
	}
	return id, nil
}

// newID returns a new time-ordered id, so that ordering by id is ordering by
// creation, which keyset pagination relies on.
func newID() uuid.UUID { return uuid.Must(uuid.NewV7()) }
