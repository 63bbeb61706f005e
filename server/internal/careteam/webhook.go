package careteam

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Webhook is where careteam pushes the events its subject may receive.
// Delivery is at least once, in cursor order: Cursor advances only past
// what the receiver took.
type Webhook struct {
	ID             uuid.UUID
	Subject        string
	PractitionerID uuid.UUID
	URL            string
	Types          []EventType
	// Secret keys each delivery's signature.
	Secret []byte
	Cursor int64
	// Delivery state, which the owner reads to see why events wait.
	LastDelivery, LastAttempt, NextAttempt time.Time
	LastError                              string
	Failures                               int
	CreateTime                             time.Time
	// Lease is when the claim of the replica delivering it ends; only
	// that claim may record the attempt.
	Lease time.Time
}

// maxWebhooks bounds the webhooks one subject may hold, so that one
// caller's receivers cannot take the deliveries' time from everyone's.
const maxWebhooks = 10

// ViolationWebhookLimit: the subject holds as many webhooks as it may.
const ViolationWebhookLimit = "WEBHOOK_LIMIT"

// WebhookStore holds webhooks and their delivery state. ClaimWebhooks
// leases up to limit webhooks due at now until lease ends, skipping those
// another replica holds, so each is delivered by one replica at a time.
type WebhookStore interface {
	InsertWebhook(ctx context.Context, w *Webhook) error
	GetWebhook(ctx context.Context, id uuid.UUID) (*Webhook, error)
	ListWebhooks(ctx context.Context, subject string, page Page) ([]*Webhook, error)
	DeleteWebhook(ctx context.Context, id uuid.UUID) error
	ClaimWebhooks(ctx context.Context, now, lease time.Time, limit int) ([]*Webhook, error)
	// FinishWebhookAttempt records an attempt's outcome and ends the
	// lease, if w.Lease is still the webhook's: a claim that outlived its
	// lease records nothing, and reports false.
	FinishWebhookAttempt(ctx context.Context, w *Webhook) (bool, error)
}

// WebhookPolicy is what careteamd allows of webhook URLs.
type WebhookPolicy struct {
	// AllowHTTP lets a webhook use plain http to a loopback address (for
	// a receiver on the same host, and tests).
	AllowHTTP bool
}

// checkWebhookURL takes https URLs, and http ones to loopback where
// allowed: events carry patient ids, which never cross a network in the
// clear. Credentials in the URL would be stored and shown; a fragment is
// never sent.
func checkWebhookURL(raw string, policy WebhookPolicy) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "":
		return "must be an absolute https URL"
	case u.User != nil:
		return "must not carry credentials; verify deliveries by their signature"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not have a fragment"
	case u.Scheme == "https":
		return ""
	case u.Scheme == "http" && policy.AllowHTTP && loopbackHost(u.Hostname()):
		return ""
	case u.Scheme == "http":
		return "must be https (plain http only to a loopback address, where careteamd allows it)"
	}
	return "must be an https URL"
}

func loopbackHost(h string) bool {
	ip := net.ParseIP(h)
	return h == "localhost" || ip != nil && ip.IsLoopback()
}

// CreateWebhook registers a webhook of the caller, delivering from the
// newest committed event on.
func (s *Service) CreateWebhook(ctx context.Context, p Principal, w Webhook, idem Idempotency) (*Webhook, error) {
	if err := authorizeWatch(p); err != nil {
		return nil, err
	}
	// The subscriber check is the one a stream makes: who may receive
	// events at all.
	if _, err := NewSubscriber(p, EventFilter{}); err != nil {
		return nil, err
	}
	f := fieldsFor(ctx)
	if msg := checkWebhookURL(w.URL, s.cfg.Webhooks); msg != "" {
		f.add("url", "%s", msg)
	}
	if err := f.err(); err != nil {
		return nil, err
	}
	from, err := s.store.EventHorizon(ctx, horizonWait)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	w.ID, w.Subject, w.PractitionerID, w.Cursor, w.CreateTime, w.NextAttempt = newID(), p.Subject, p.PractitionerID, from, now, now
	w.Secret = make([]byte, 32)
	_, _ = rand.Read(w.Secret)
	return mutate(ctx, s, p, "CreateWebhook", idem,
		func(tx Tx) (*Webhook, uuid.UUID, error) {
			held, err := tx.ListWebhooks(ctx, p.Subject, Page{Size: maxWebhooks})
			if err != nil {
				return nil, uuid.Nil, err
			}
			if len(held) >= maxWebhooks {
				return nil, uuid.Nil, &PreconditionError{Violations: []Violation{{Type: ViolationWebhookLimit, Subject: p.Subject,
					Description: fmt.Sprintf("a caller holds at most %d webhooks; delete one first", maxWebhooks)}}}
			}
			return &w, w.ID, tx.InsertWebhook(ctx, &w)
		},
		func(tx Tx, id uuid.UUID) (*Webhook, error) { return tx.GetWebhook(ctx, id) })
}

// GetWebhook returns one of the caller's webhooks.
func (s *Service) GetWebhook(ctx context.Context, p Principal, id uuid.UUID) (*Webhook, error) {
	return read(ctx, s, func(tx Tx) (*Webhook, error) { return s.ownWebhook(ctx, tx, p, id) })
}

// ownWebhook reads a webhook its caller registered; another's is denied
// as one that does not exist would be, so ids cannot be probed.
func (s *Service) ownWebhook(ctx context.Context, tx Tx, p Principal, id uuid.UUID) (*Webhook, error) {
	w, err := tx.GetWebhook(ctx, id)
	if errors.Is(err, ErrNotFound) || err == nil && w.Subject != p.Subject {
		return nil, fmt.Errorf("%s: %w", Webhooks.Name(id), ErrPermissionDenied)
	}
	return w, err
}

// ListWebhooks lists the caller's webhooks.
func (s *Service) ListWebhooks(ctx context.Context, p Principal, page Page) ([]*Webhook, uuid.UUID, error) {
	return listPage(ctx, s, page,
		func(tx Tx, page Page) ([]*Webhook, error) { return tx.ListWebhooks(ctx, p.Subject, page) },
		func(w *Webhook) uuid.UUID { return w.ID }, nil)
}

// DeleteWebhook removes one of the caller's webhooks.
func (s *Service) DeleteWebhook(ctx context.Context, p Principal, id uuid.UUID, idem Idempotency) error {
	_, err := mutate(ctx, s, p, "DeleteWebhook", idem,
		func(tx Tx) (*Webhook, uuid.UUID, error) {
			w, err := s.ownWebhook(ctx, tx, p, id)
			if err != nil {
				return nil, uuid.Nil, err
			}
			return w, id, tx.DeleteWebhook(ctx, id)
		},
		func(tx Tx, id uuid.UUID) (*Webhook, error) { return &Webhook{ID: id}, nil })
	return err
}

// WebhookBatch is what one delivery attempt sends: the events after the
// webhook's cursor that its subject may receive, each as they may see it,
// and the cursor the webhook reaches if the receiver takes them (past
// events it does not receive, too).
type WebhookBatch struct {
	Webhook *Webhook
	// Principal is who the webhook delivers as.
	Principal Principal
	Events    []*Event
	Through   int64
}

// DueWebhooks leases the webhooks due now and reads each one's next batch
// as its subject: whoever no longer may receive events (deactivated,
// moved) gets no batch but the reason, which Attempted records. The read
// is the one a WatchEvents stream makes, so a webhook receives exactly
// what its subject could watch.
func (s *Service) DueWebhooks(ctx context.Context, limit, size int, lease time.Duration) ([]WebhookBatch, []error, error) {
	now := s.clock.Now()
	var hooks []*Webhook
	err := s.store.InTx(ctx, func(tx Tx) (err error) {
		hooks, err = tx.ClaimWebhooks(ctx, now, now.Add(lease), limit)
		return err
	})
	if err != nil || len(hooks) == 0 {
		return nil, nil, err
	}
	through, err := s.store.EventHorizon(ctx, horizonWait)
	if err != nil {
		return nil, nil, err
	}
	batches, errs := make([]WebhookBatch, len(hooks)), make([]error, len(hooks))
	for i, w := range hooks {
		batches[i] = WebhookBatch{Webhook: w, Through: w.Cursor}
		p, err := s.Authenticate(ctx, w.Subject)
		switch {
		case err == nil && p.Role == RoleIntegration:
			// Registered while acting for a physician: it delivers as
			// that physician for as long as the grant holds.
			p, err = s.ActFor(ctx, p, w.PractitionerID)
		case err == nil && p.PractitionerID != w.PractitionerID:
			err = fmt.Errorf("%s is now another practitioner: %w", w.Subject, ErrPermissionDenied)
		}
		if err != nil {
			errs[i] = err
			continue
		}
		sub, err := NewSubscriber(p, EventFilter{Types: w.Types})
		if err != nil {
			errs[i] = err
			continue
		}
		events, err := s.ReplayEvents(ctx, sub, w.Cursor, size)
		if err != nil {
			errs[i] = err
			continue
		}
		batches[i].Principal, batches[i].Events = p, events
		// A full batch may have more behind it; a short one is all the
		// subject receives up to the horizon (read before the replay, whose
		// own may lie beyond: then the last event delivered is further).
		last := w.Cursor
		if len(events) > 0 {
			last = events[len(events)-1].Cursor
		}
		if len(events) == size {
			batches[i].Through = last
		} else {
			batches[i].Through = max(last, through)
		}
	}
	return batches, errs, nil
}

// Attempted records how a batch's delivery went: on success the cursor
// moves to the batch's end; on failure it stays, and the next attempt
// waits longer each time (1 s doubling, at most 5 minutes), so a receiver
// that was down gets everything, in order, once it is back.
func (s *Service) Attempted(ctx context.Context, b WebhookBatch, failure string) error {
	w, now := b.Webhook, s.clock.Now()
	w.LastAttempt = now
	if failure == "" {
		if len(b.Events) > 0 {
			w.LastDelivery = now
		}
		w.Cursor, w.Failures, w.LastError, w.NextAttempt = max(w.Cursor, b.Through), 0, "", now
	} else {
		w.Failures++
		w.LastError = failure
		w.NextAttempt = now.Add(webhookBackoff(w.Failures))
	}
	return s.store.InTx(ctx, func(tx Tx) error {
		_, err := tx.FinishWebhookAttempt(ctx, w)
		return err
	})
}

func webhookBackoff(failures int) time.Duration {
	d := time.Duration(math.Pow(2, float64(min(failures-1, 10)))) * time.Second
	return min(d, 5*time.Minute)
}
