package careteam

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/audit"
)

// Store is the database. InTx runs fn in one transaction and commits when fn
// returns nil; it retries fn from the start when the database reports a
// serialization failure or deadlock, so fn must do nothing but database work
// through tx.
//
// Read runs fn's reads without a transaction; fn must not write.
type Store interface {
	InTx(ctx context.Context, fn func(tx Tx) error) error
	Read(ctx context.Context, fn func(tx Tx) error) error
	// EventHorizon is a cursor at or below which no event can still be
	// committed: events are read up to it, so none is ever found behind a
	// cursor a reader has passed. It waits up to wait for the events
	// committed before the call to fall below it.
	EventHorizon(ctx context.Context, wait time.Duration) (int64, error)
	// SealAudit puts every audit record committed so far on its hash
	// chain, and reports how many it sealed.
	SealAudit(ctx context.Context) (int, error)
}

// Tx is the data access one transaction (or one read) offers: every
// aggregate's store, composed. Get methods return ErrNotFound (wrapped)
// for a missing row; forUpdate variants lock the row until the
// transaction ends. Scoped reads return only rows the scope lets the
// caller see, and ErrNotFound for the others.
type Tx interface {
	Requests
	DirectoryStore
	PatientStore
	ReferralStore
	ClinicalStore
	SessionStore
	AuditStore
	EventStore
	ImportStore
	WebhookStore
}

// Requests make writes idempotent (AIP-155). ClaimRequest claims a key,
// or returns the record of the request that claimed it first.
type Requests interface {
	ClaimRequest(ctx context.Context, key RequestKey) (RequestClaim, error)
	FinishRequest(ctx context.Context, key RequestKey, resource uuid.UUID) error
}

// DirectoryStore holds organizations and practitioners.
type DirectoryStore interface {
	InsertOrganization(ctx context.Context, o *Organization) error
	GetOrganization(ctx context.Context, id uuid.UUID, forUpdate bool) (*Organization, error)
	UpdateOrganization(ctx context.Context, o *Organization) error
	ListOrganizations(ctx context.Context, f OrganizationFilter, page Page) ([]*Organization, error)
	InsertPractitioner(ctx context.Context, p *Practitioner) error
	GetPractitioner(ctx context.Context, id uuid.UUID, forUpdate bool) (*Practitioner, error)
	GetPractitionerBySubject(ctx context.Context, subject string) (*Practitioner, error)
	ListPractitioners(ctx context.Context, f PractitionerFilter, page Page) ([]*Practitioner, error)
	UpdatePractitioner(ctx context.Context, p *Practitioner) error
}

// PatientStore holds patients.
type PatientStore interface {
	InsertPatient(ctx context.Context, p *Patient) error
	GetPatient(ctx context.Context, id uuid.UUID, scope PatientScope, forUpdate bool) (*Patient, error)
	ListPatients(ctx context.Context, scope PatientScope, f PatientFilter, page Page) ([]*Patient, error)
	FindPatientsByIdentifier(ctx context.Context, scope PatientScope, id Identifier) ([]*Patient, error)
	UpdatePatient(ctx context.Context, p *Patient) error
}

// ReferralStore holds referrals. UpdateReferral saves the row and any
// transitions and questions added since it was read. PatientReferrals
// returns every referral of a patient; LockPatientReferrals locks and
// returns those in the given states. ClaimExpiredReferrals marks up to
// limit referrals that expired by now and were not announced yet as
// announced, and returns them; rows another transaction holds are left
// for a later sweep.
type ReferralStore interface {
	InsertReferral(ctx context.Context, r *Referral) error
	GetReferral(ctx context.Context, id uuid.UUID, scope ReferralScope, forUpdate bool) (*Referral, error)
	ListReferrals(ctx context.Context, scope ReferralScope, f ReferralFilter, page Page) ([]*Referral, error)
	UpdateReferral(ctx context.Context, r *Referral) error
	PatientReferrals(ctx context.Context, patient uuid.UUID) ([]*Referral, error)
	LockPatientReferrals(ctx context.Context, patient uuid.UUID, states []ReferralState) ([]*Referral, error)
	ClaimExpiredReferrals(ctx context.Context, now time.Time, limit int) ([]*Referral, error)
}

// ClinicalStore holds what physicians and practices record about a
// patient: diagnoses, clearances, red-flag findings and consents, and the
// facts the session gate decides on.
//
// DiagnosesOfPatient returns those of ids that are diagnoses of patient.
// ScopeClearances locks and returns the clearances in force (ACTIVE or
// SUSPENDED) or SCHEDULED for a patient and scope (zero referral: every
// referral); ClearancesInForce those of every scope of the patient.
// ReferralsCoveredBy locks and returns the patient's referrals in the
// given states that the clearance governs. GateClearances returns the
// clearances that may govern a session under a referral.
// ClaimScheduledPatients locks up to limit patients with a SCHEDULED
// clearance whose window opened by now, skipping those another
// transaction holds. GateSnapshot loads in one round trip what the
// session gate decides on for a referral the scope lets the caller see,
// locking the patient, the referral and the clearances when lock is set.
// OpenRedFlagFindings returns the findings standing on a patient's
// record, each with the clearances that evaluated it;
// EvaluateRedFlagFindings records that a clearance evaluated findings;
// CloseRedFlagFindings ends them.
type ClinicalStore interface {
	InsertDiagnosis(ctx context.Context, d *Diagnosis) error
	GetDiagnosis(ctx context.Context, id uuid.UUID, scope PatientScope, forUpdate bool) (*Diagnosis, error)
	ListDiagnoses(ctx context.Context, patient uuid.UUID, page Page) ([]*Diagnosis, error)
	UpdateDiagnosis(ctx context.Context, d *Diagnosis) error
	DiagnosesOfPatient(ctx context.Context, patient uuid.UUID, ids []uuid.UUID) ([]uuid.UUID, error)

	InsertClearance(ctx context.Context, c *Clearance) error
	GetClearance(ctx context.Context, id uuid.UUID, scope PatientScope, forUpdate bool) (*Clearance, error)
	ListClearances(ctx context.Context, scope PatientScope, f ClearanceFilter, page Page) ([]*Clearance, error)
	UpdateClearance(ctx context.Context, c *Clearance) error
	ScopeClearances(ctx context.Context, patient, referral uuid.UUID) ([]*Clearance, error)
	ClearancesInForce(ctx context.Context, patient uuid.UUID) ([]*Clearance, error)
	ReferralsCoveredBy(ctx context.Context, c *Clearance, states []ReferralState) ([]*Referral, error)
	GateClearances(ctx context.Context, patient, referral uuid.UUID) ([]*Clearance, error)
	ClaimScheduledPatients(ctx context.Context, now time.Time, limit int) ([]uuid.UUID, error)
	GateSnapshot(ctx context.Context, referral uuid.UUID, scope ReferralScope, therapist uuid.UUID, day time.Time, lock bool) (*GateSnapshot, error)

	InsertRedFlagFindings(ctx context.Context, fs []*RedFlagFinding) error
	OpenRedFlagFindings(ctx context.Context, patient uuid.UUID) ([]*RedFlagFinding, error)
	EvaluateRedFlagFindings(ctx context.Context, clearance uuid.UUID, findings []uuid.UUID) error
	CloseRedFlagFindings(ctx context.Context, findings []uuid.UUID, now time.Time) error

	InsertConsent(ctx context.Context, c *Consent) error
	GetConsent(ctx context.Context, id uuid.UUID) (*Consent, error)
	ListConsents(ctx context.Context, patient uuid.UUID, page Page) ([]*Consent, error)
}

// SessionStore holds massage sessions and their notes. ReferralSessions
// returns a referral's sessions, oldest first.
type SessionStore interface {
	InsertSession(ctx context.Context, s *Session) error
	GetSession(ctx context.Context, id uuid.UUID, scope SessionScope, forUpdate bool) (*Session, error)
	ListSessions(ctx context.Context, scope SessionScope, f SessionFilter, page Page) ([]*Session, error)
	UpdateSession(ctx context.Context, s *Session) error
	ReferralSessions(ctx context.Context, referral uuid.UUID) ([]*Session, error)
}

// AuditStore reads the audit trail. ListAudit returns at most limit
// records after sequence after; AuditRange the records of a sequence
// range ordered by chain and position; AuditHashAt the hash of a chain's
// record at a position (the empty hash before the first); AuditHeads,
// for every chain, its head checkpoint and its last record.
type AuditStore interface {
	ListAudit(ctx context.Context, f AuditFilter, after int64, limit int) ([]*audit.Record, error)
	AuditRange(ctx context.Context, from, to int64) ([]*audit.Record, error)
	UnsealedAudit(ctx context.Context) (int64, error)
	AuditHashAt(ctx context.Context, chain int, position int64) ([]byte, error)
	AuditHeads(ctx context.Context) ([]*AuditHead, error)
}

// EventStore is the outbox. AppendEvent queues an event that the
// transaction writes, with its cursor, just before it commits.
// ListEvents returns events after a cursor and up to through that share
// a token with audience (nil: all).
type EventStore interface {
	AppendEvent(e Event)
	ListEvents(ctx context.Context, audience []string, f EventFilter, after, through int64, limit int) ([]*Event, error)
	OldestEventCursor(ctx context.Context) (int64, error)
	PruneEvents(ctx context.Context, before time.Time) (int64, error)
}

// ImportStore is what FHIR imports need. FindPractitionerByIdentifier
// and FindOrganizationsByIdentifier look the directory up by an external
// identifier. ClaimImport records that each identifier of an imported
// order names referral within org; when another transaction holds one it
// waits for it, and an identifier already taken keeps the referral that
// holds it: it returns, parallel to ids, the referral each names.
// MoveImportIdentifiers hands the identifiers recorded for one referral
// of org to another. ImportIdentifiersOf returns the identifiers a
// referral was imported under, in the order they were recorded;
// FindImportedReferrals the referrals the scope shows that were imported
// under an identifier, in any organization. UpdateReferralOrder saves
// what a re-import may change in a referral's order: reasons, notes,
// instruction, service, priority, techniques, visits, validity,
// specialties.
type ImportStore interface {
	FindPractitionerByIdentifier(ctx context.Context, id Identifier) (*Practitioner, error)
	FindOrganizationsByIdentifier(ctx context.Context, id Identifier) ([]*Organization, error)
	ClaimImport(ctx context.Context, org uuid.UUID, ids []Identifier, referral uuid.UUID) (holders []uuid.UUID, err error)
	MoveImportIdentifiers(ctx context.Context, org, from, to uuid.UUID) error
	ImportIdentifiersOf(ctx context.Context, referral uuid.UUID) ([]Identifier, error)
	FindImportedReferrals(ctx context.Context, scope ReferralScope, id Identifier) ([]*Referral, error)
	UpdateReferralOrder(ctx context.Context, r *Referral) error
}

// RequestKey identifies one idempotent request: the caller, the use case
// and the caller's request id, with a hash of the request's content so that
// a reused id with different content is refused.
type RequestKey struct {
	Subject   string
	Method    string
	RequestID uuid.UUID
	Hash      []byte
}

// RequestClaim is what claiming a request key found: the key was free
// (Claimed), or the hash of the request that claimed it and the resource
// that request produced (zero while it has produced none).
type RequestClaim struct {
	Claimed  bool
	Hash     []byte
	Resource uuid.UUID
}

// Page is a keyset page: rows after the row with id After (in the listing's
// order), at most Size of them. The store returns Size+1 rows when there are
// more, so the caller can tell.
type Page struct {
	After uuid.UUID
	Size  int
}

// Idempotency is what a caller sends to make a write safe to retry: a
// request id and a hash of the request.
type Idempotency struct {
	RequestID uuid.UUID
	Hash      []byte
}

// Config holds the domain's tunable rules.
type Config struct {
	// BootstrapAdmin is the token subject that administers the directory
	// without a directory entry; empty for none.
	BootstrapAdmin string
	// AckWindow is how long a SUBMITTED referral may wait for acceptance or
	// decline before it is overdue, counted in business hours (Monday to
	// Friday, UTC).
	AckWindow time.Duration
	// Webhooks is what webhook URLs may be.
	Webhooks WebhookPolicy
}
