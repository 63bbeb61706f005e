package careteam

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/clock"
)

// Service runs the use cases. Each method is one transaction: it loads the
// facts it needs (locking what it will change), asks the policy and the
// rules, and writes.
type Service struct {
	store Store
	clock clock.Clock
	cfg   Config
}

// NewService returns a Service over store.
func NewService(store Store, clk clock.Clock, cfg Config) *Service {
	return &Service{store: store, clock: clk, cfg: cfg}
}

// page sizes (AIP-158).
const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// normalizePage applies the default and maximum page size.
func normalizePage(p Page) Page {
	if p.Size <= 0 {
		p.Size = defaultPageSize
	}
	if p.Size > maxPageSize {
		p.Size = maxPageSize
	}
	return p
}

// trimPage cuts the extra row the store returned to signal a next page and
// returns the id to continue after, or the zero id on the last page.
func trimPage[T any](rows []T, p Page, id func(T) uuid.UUID) ([]T, uuid.UUID) {
	if len(rows) <= p.Size {
		return rows, uuid.Nil
	}
	rows = rows[:p.Size]
	return rows, id(rows[len(rows)-1])
}

// read runs fn's reads outside a transaction, sparing the BEGIN and COMMIT
// round trips: under READ COMMITTED a transaction gives reads nothing more,
// since each statement sees the data as of its own start either way (a
// batch runs as one statement's transaction). The call's audit record is
// then written on its own, before the answer leaves.
func read[T any](ctx context.Context, s *Service, fn func(tx Tx) (T, error)) (T, error) {
	var out T
	err := s.store.Read(ctx, func(tx Tx) (err error) {
		out, err = fn(tx)
		return err
	})
	return out, err
}

// listPage reads one page, as read does. list returns up to
// page.Size+1 rows, the extra one saying that a next page exists; touch, when
// not nil, names each row kept for the call's audit record.
func listPage[T any](ctx context.Context, s *Service, page Page, list func(tx Tx, page Page) ([]T, error),
	id func(T) uuid.UUID, touch func(T),
) ([]T, uuid.UUID, error) {
	page = normalizePage(page)
	var rows []T
	var next uuid.UUID
	err := s.store.Read(ctx, func(tx Tx) (err error) {
		if rows, err = list(tx, page); err != nil {
			return err
		}
		rows, next = trimPage(rows, page, id)
		if touch != nil {
			for _, r := range rows {
				touch(r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, uuid.Nil, err
	}
	return rows, next, nil
}

// mutate runs fn, the change a caller asks for (refused under emergency
// access), in one transaction, at most once per idempotency key: a
// retry with the same request id gets load(id of the first result) instead,
// and writes nothing. fn returns its result and the id of the resource it
// produced or changed.
func mutate[T any](ctx context.Context, s *Service, p Principal, method string, idem Idempotency,
	fn func(tx Tx) (T, uuid.UUID, error), load func(tx Tx, id uuid.UUID) (T, error),
) (T, error) {
	var out T
	if err := authorizeWrite(p); err != nil {
		return out, err
	}
	// A request with bad fields that did not convert (see WithInvalid)
	// changes nothing, even where fn's validation did not report them: its
	// transaction rolls back.
	change := func(tx Tx) (T, uuid.UUID, error) {
		res, id, err := fn(tx)
		if f := fieldsFor(ctx); err == nil && f.err() != nil {
			var zero T
			return zero, uuid.Nil, f.err()
		}
		return res, id, err
	}
	err := s.store.InTx(ctx, func(tx Tx) error {
		if idem.RequestID == uuid.Nil {
			res, _, err := change(tx)
			out = res
			return err
		}
		key := RequestKey{Subject: p.Subject, Method: method, RequestID: idem.RequestID, Hash: idem.Hash}
		claim, err := tx.ClaimRequest(ctx, key)
		if err != nil {
			return err
		}
		if !claim.Claimed {
			// A retry of the same request replays its result; another
			// request under the same id is refused.
			if !bytes.Equal(claim.Hash, key.Hash) || claim.Resource == uuid.Nil {
				return &InvalidError{Violations: []FieldViolation{{Field: "request_id", Description: "already used for a different request"}}}
			}
			out, err = load(tx, claim.Resource)
			return err
		}
		res, id, err := change(tx)
		if err != nil {
			return err
		}
		if err := tx.FinishRequest(ctx, key, id); err != nil {
			return err
		}
		out = res
		return nil
	})
	return out, err
}

// Now is the service's clock, for the records of calls.
func (s *Service) Now() time.Time { return s.clock.Now() }

// Authenticate maps a verified token subject to a principal from the
// directory. An unknown or inactive subject, or one whose role does not fit
// their organization, is ErrPermissionDenied: the
// token is valid, the person is not allowed in.
func (s *Service) Authenticate(ctx context.Context, subject string) (Principal, error) {
	if s.cfg.BootstrapAdmin != "" && subject == s.cfg.BootstrapAdmin {
		return Principal{Subject: subject, Role: RoleAdmin, Bootstrap: true}, nil
	}
	var pr *Practitioner
	err := s.store.Read(ctx, func(tx Tx) error {
		var err error
		pr, err = tx.GetPractitionerBySubject(ctx, subject)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return Principal{}, fmt.Errorf("subject is not in the directory: %w", ErrPermissionDenied)
	}
	if err != nil {
		return Principal{}, err
	}
	if !pr.Active {
		return Principal{}, fmt.Errorf("%s is inactive: %w", Practitioners.Name(pr.ID), ErrPermissionDenied)
	}
	// An entry from before the directory checked roles against kinds acts
	// for nobody until an administrator sets it right.
	if !roleFits(pr.Role, pr.OrganizationKind) {
		return Principal{}, fmt.Errorf("%s holds a role its organization's kind does not admit: %w", Practitioners.Name(pr.ID), ErrPermissionDenied)
	}
	return Principal{Subject: subject, PractitionerID: pr.ID, OrganizationID: pr.OrganizationID, Role: pr.Role}, nil
}
