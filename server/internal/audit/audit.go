// Package audit is careteam's audit trail: one record per call, allowed or
// denied, naming who touched which resources and patients and why. A call
// carries its Entry in its context; the domain notes what it touches, and
// the store appends the entry in the transaction that did the work, so a
// change and its audit record commit together. Records are hash-chained, so
// an edit made behind the application's back is found by Verify.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Purposes of use (the x-purpose-of-use header).
const (
	PurposeTreatment  = "TREATMENT"
	PurposePayment    = "PAYMENT"
	PurposeOperations = "OPERATIONS"
	PurposeEmergency  = "EMERGENCY"
)

// Chains is the number of hash chains. Writers spread over them so that
// concurrent calls do not queue on one chain head; each chain is still
// written one record at a time, so it never forks.
const Chains = 16

// Record is one audit record as stored.
type Record struct {
	Sequence        int64
	Chain           int
	Position        int64
	Time            time.Time
	Subject         string
	PractitionerID  uuid.UUID
	Role            string
	OrganizationID  uuid.UUID
	Method          string
	Resources       []string
	Patients        []uuid.UUID
	Outcome         string
	Purpose         string
	EmergencyReason string
	RequestID       string
	Peer            string
	// Suppressed counts the like calls after this one, within its
	// interval, that were not recorded one by one.
	Suppressed int
	Hash       []byte
}

// Canonical is the byte string a record's hash covers (with the previous
// record's hash of its chain before it): JSON of the fields in a fixed
// order, time in RFC 3339 with nanoseconds, UTC.
func (r *Record) Canonical() []byte {
	b, err := json.Marshal(struct {
		Time            string      `json:"time"`
		Subject         string      `json:"subject"`
		PractitionerID  uuid.UUID   `json:"practitioner"`
		Role            string      `json:"role"`
		OrganizationID  uuid.UUID   `json:"organization"`
		Method          string      `json:"method"`
		Resources       []string    `json:"resources"`
		Patients        []uuid.UUID `json:"patients"`
		Outcome         string      `json:"outcome"`
		Purpose         string      `json:"purpose"`
		EmergencyReason string      `json:"emergency_reason"`
		RequestID       string      `json:"request_id"`
		Peer            string      `json:"peer"`
		// Omitted when zero, so records from before it hash as they did.
		Suppressed int `json:"suppressed,omitempty"`
	}{
		r.Time.UTC().Format(time.RFC3339Nano), r.Subject, r.PractitionerID, r.Role, r.OrganizationID, r.Method,
		nonNil(r.Resources), nonNil(r.Patients), r.Outcome, r.Purpose, r.EmergencyReason, r.RequestID, r.Peer,
		r.Suppressed,
	})
	if err != nil {
		panic(fmt.Sprintf("audit: encoding a record: %v", err))
	}
	return b
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// ChainHash returns SHA-256(prev || canonical), the hash a record carries.
func ChainHash(prev, canonical []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(canonical)
	return h.Sum(nil)
}

// Entry is the audit record of the call in progress. It is safe for
// concurrent use: a call's goroutines may touch resources at once.
type Entry struct {
	mu      sync.Mutex
	record  Record
	written bool
	// held keeps a stream's record back until the stream ends, so that it
	// lists every patient the stream delivered.
	held bool
}

// Hold keeps the entry from being written until Release.
func (e *Entry) Hold() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.held = true
}

// Release lets the entry be written.
func (e *Entry) Release() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.held = false
}

// NewEntry starts the entry of a call.
func NewEntry(r Record) *Entry { return &Entry{record: r} }

type ctxKey struct{}

// NewContext returns ctx carrying e.
func NewContext(ctx context.Context, e *Entry) context.Context {
	return context.WithValue(ctx, ctxKey{}, e)
}

// FromContext returns the entry of the call in ctx, or nil.
func FromContext(ctx context.Context) *Entry {
	e, _ := ctx.Value(ctxKey{}).(*Entry)
	return e
}

// Touch notes that the call in ctx touched resource (a resource name; may
// be empty) of patient (may be zero). A call without an entry touches
// nothing.
func Touch(ctx context.Context, resource string, patient uuid.UUID) {
	e := FromContext(ctx)
	if e == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if resource != "" && !slices.Contains(e.record.Resources, resource) {
		e.record.Resources = append(e.record.Resources, resource)
	}
	if patient != uuid.Nil && !slices.Contains(e.record.Patients, patient) {
		e.record.Patients = append(e.record.Patients, patient)
	}
}

// Identify records who is calling, as far as it is known.
func (e *Entry) Identify(subject string, practitioner uuid.UUID, role string, org uuid.UUID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.record.Subject, e.record.PractitionerID, e.record.Role, e.record.OrganizationID = storable(subject), practitioner, role, org
}

// storable makes text from a caller (a certificate's name, a header) fit
// a text column, so that a record is written whatever bytes were sent:
// invalid UTF-8 becomes U+FFFD and NUL bytes are dropped.
func storable(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// SetPurpose records why the caller accesses data.
func (e *Entry) SetPurpose(purpose, emergencyReason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.record.Purpose, e.record.EmergencyReason = storable(purpose), storable(emergencyReason)
}

// Take returns the record to write with outcome and marks the entry
// written, or reports false if it was written already: each call is
// recorded once.
func (e *Entry) Take(outcome string) (Record, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.written || e.held {
		return Record{}, false
	}
	e.written = true
	r := e.record
	r.Outcome = outcome
	r.Time = r.Time.UTC().Truncate(time.Microsecond)
	r.Resources = slices.Clone(r.Resources)
	r.Patients = slices.Clone(r.Patients)
	return r, true
}

// Drain returns a record of what a held entry touched since it was last
// drained, stamped at now, and forgets those resources, so that a stream
// can put what it delivers on the trail as it goes; the record written
// when the stream ends lists only the rest. ok is false when nothing new
// was touched.
func (e *Entry) Drain(now time.Time) (r Record, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.written || (len(e.record.Resources) == 0 && len(e.record.Patients) == 0) {
		return Record{}, false
	}
	r = e.record
	r.Outcome = "OK"
	r.Time = now.UTC().Truncate(time.Microsecond)
	e.record.Resources, e.record.Patients = nil, nil
	return r, true
}

// Undrain gives a held entry back what Drain took, when its record could
// not be written, so that the stream's last record lists it.
func (e *Entry) Undrain(r Record) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, res := range r.Resources {
		if !slices.Contains(e.record.Resources, res) {
			e.record.Resources = append(e.record.Resources, res)
		}
	}
	for _, pt := range r.Patients {
		if !slices.Contains(e.record.Patients, pt) {
			e.record.Patients = append(e.record.Patients, pt)
		}
	}
}

// Untake undoes Take when the transaction that was to write the record
// rolled back, so the call's outcome is recorded afterwards instead.
func (e *Entry) Untake() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.written = false
}

// PickChain picks the chain a record is written to, spreading calls by
// their request id.
func (r *Record) PickChain() int {
	h := sha256.Sum256([]byte(r.RequestID))
	return int(h[0]) % Chains
}
