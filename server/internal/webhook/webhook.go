// Package webhook delivers webhooks: the events each webhook's subject may
// receive, POSTed in cursor order to its URL, signed with its secret. The
// domain decides what a webhook receives (the read a WatchEvents stream
// makes) and when it is due; this package sends, records each disclosure
// on the audit trail before it is made, and reports how it went.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/server/internal/audit"
	"github.com/careteam/careteam/server/internal/careteam"
)

// Headers of a delivery.
const (
	// HeaderSignature is "t={unix seconds},v1={hex HMAC-SHA256 of
	// t.body}", keyed by the webhook's secret.
	HeaderSignature = "Careteam-Signature"
	// HeaderDelivery names a delivery: the webhook and the cursors of its
	// first and last event. A retry carries the same name, so a receiver
	// that took it already can drop it.
	HeaderDelivery = "Careteam-Delivery"
)

// AuditWriter appends a record to the audit trail, durably.
type AuditWriter interface {
	AppendAudit(ctx context.Context, r audit.Record) error
}

// Config is what a Deliverer needs.
type Config struct {
	Service *careteam.Service
	Audit   AuditWriter
	// Encode writes an event as the API's JSON (careteam.v1.Event).
	Encode func(*careteam.Event) (json.RawMessage, error)
	// Every is how often due webhooks are looked for.
	Every time.Duration
	// Timeout bounds one delivery, connection included.
	Timeout time.Duration
	Log     *slog.Logger
}

// Deliverer sends due webhooks' events.
type Deliverer struct {
	cfg    Config
	client *http.Client
}

// batchSize is the most events one delivery carries.
const batchSize = 100

// New returns a Deliverer. Its HTTP client follows no redirects (a
// receiver's redirect could point deliveries elsewhere) and bounds every
// attempt.
func New(cfg Config) *Deliverer {
	return &Deliverer{cfg: cfg, client: &http.Client{
		Timeout:       cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Run delivers until ctx ends.
func (d *Deliverer) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.Every)
	defer t.Stop()
	for {
		if _, err := d.deliverDue(ctx); err != nil && ctx.Err() == nil {
			d.cfg.Log.Warn("webhook deliveries", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// A round claims up to claimed webhooks and sends to up to senders of
// them at once, so that receivers that do not answer hold up few others.
const (
	claimed = 20
	senders = 4
)

// deliverDue makes one attempt for every webhook due now and reports how
// many events receivers took.
func (d *Deliverer) deliverDue(ctx context.Context) (int, error) {
	// The lease outlasts the round: each sender's share, one timeout each.
	lease := time.Duration(claimed/senders+1)*d.cfg.Timeout + 10*time.Second
	batches, errs, err := d.cfg.Service.DueWebhooks(ctx, claimed, batchSize, lease)
	if err != nil {
		return 0, err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		taken int
		first error
	)
	slots := make(chan struct{}, senders)
	for i, b := range batches {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			failure := ""
			switch {
			case errs[i] != nil:
				failure = "its subject may no longer receive events"
				if !errors.Is(errs[i], careteam.ErrPermissionDenied) {
					failure = "careteamd could not read its events; retrying"
					d.cfg.Log.Warn("webhook events", "webhook", careteam.Webhooks.Name(b.Webhook.ID), "err", errs[i])
				}
			case len(b.Events) > 0:
				failure = d.send(ctx, b)
			}
			err := d.cfg.Service.Attempted(ctx, b, failure)
			mu.Lock()
			defer mu.Unlock()
			if failure == "" && err == nil {
				taken += len(b.Events)
			}
			if err != nil && first == nil {
				first = err
			}
		})
	}
	wg.Wait()
	return taken, first
}

// send records the disclosure, then POSTs the batch; it returns why the
// receiver did not take it, or "".
func (d *Deliverer) send(ctx context.Context, b careteam.WebhookBatch) string {
	w := b.Webhook
	name := careteam.Webhooks.Name(w.ID)
	delivery := fmt.Sprintf("%s/%d-%d", name, b.Events[0].Cursor, b.Events[len(b.Events)-1].Cursor)
	body := struct {
		Webhook string            `json:"webhook"`
		Events  []json.RawMessage `json:"events"`
	}{Webhook: name}
	rec := audit.Record{
		Time: d.cfg.Service.Now(), Subject: w.Subject, PractitionerID: w.PractitionerID, Role: string(b.Principal.Role),
		OrganizationID: b.Principal.OrganizationID, Method: "WebhookDelivery", Outcome: "OK", RequestID: delivery, Peer: host(w.URL),
	}
	for _, e := range b.Events {
		js, err := d.cfg.Encode(e)
		if err != nil {
			return "careteamd could not encode an event; retrying"
		}
		body.Events = append(body.Events, js)
		if e.Resource != "" && !slices.Contains(rec.Resources, e.Resource) {
			rec.Resources = append(rec.Resources, e.Resource)
		}
		if e.PatientID != uuid.Nil && !slices.Contains(rec.Patients, e.PatientID) {
			rec.Patients = append(rec.Patients, e.PatientID)
		}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return "careteamd could not encode the delivery; retrying"
	}
	// No event leaves before the record of its leaving is durable.
	if err := d.cfg.Audit.AppendAudit(ctx, rec); err != nil {
		return "the audit trail is unavailable; retrying"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(raw))
	if err != nil {
		return "the URL cannot be requested"
	}
	now := d.cfg.Service.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "careteamd-webhook")
	req.Header.Set(HeaderDelivery, delivery)
	req.Header.Set(HeaderSignature, Sign(w.Secret, now, raw))
	res, err := d.client.Do(req)
	if err != nil {
		// One word for a refused connection and a silent one, so that
		// last_error does not map the network behind a URL.
		return "no answer"
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return "HTTP " + strconv.Itoa(res.StatusCode)
	}
	return ""
}

// Sign is a delivery's Careteam-Signature: the time it was signed and the
// HMAC-SHA256 of "{time}.{body}" under secret, so that a receiver can
// check both who sent it and that it is not an old one replayed.
func Sign(secret []byte, unix int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "%d.", unix)
	m.Write(body)
	return fmt.Sprintf("t=%d,v1=%s", unix, hex.EncodeToString(m.Sum(nil)))
}

func host(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}
