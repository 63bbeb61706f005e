package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/careteam/careteam/devtoken"
	pb "github.com/careteam/careteam/proto/careteam/v1"
)

// tokenTTL outlives any run (tokens are minted once, at setup) and is the
// longest careteamd accepts by default.
const tokenTTL = 24 * time.Hour

// setup makes, on an empty server or beside earlier runs, everything the
// load acts on: practices, their people (with tokens from the dev key),
// patients cleared for massage, and accepted referrals to start sessions
// under. Names carry the run's prefix, so runs never collide. Given the
// prefix of an earlier run (--prefix), it takes up that run's people and
// patients instead, so that a database seeded once with --scale can be
// measured again.
func (l *load) setup(ctx context.Context) error {
	cfg, w := l.cfg, l.w
	w.admin = actor{subject: "admin"}
	if err := l.mint(&w.admin); err != nil {
		return err
	}
	if _, err := l.calls.pick().Directory.GetCaller(as(ctx, &w.admin), &pb.GetCallerRequest{}); err != nil {
		if code := status.Code(err); code == codes.Unauthenticated || code == codes.PermissionDenied {
			return fmt.Errorf("careteamd refused the dev token of %q: it must run in dev mode with --data-dir %s: %w", w.admin.subject, cfg.dataDir, err)
		}
		return fmt.Errorf("calling careteamd at %v: %w", cfg.targets, err)
	}
	people := l.plan()
	if first := w.physicians[0]; cfg.prefixGiven {
		if err := l.mint(&first.actor); err != nil {
			return err
		}
		if _, err := l.calls.pick().Directory.GetCaller(as(ctx, &first.actor), &pb.GetCallerRequest{}); err == nil {
			return l.reuse(ctx, people)
		}
	}
	return l.create(ctx, people)
}

func (l *load) mint(a *actor) error {
	tok, err := devtoken.Mint(l.cfg.dataDir, a.subject, tokenTTL)
	if err != nil {
		return fmt.Errorf("minting a dev token (is %s careteamd's data directory, in dev mode?): %w", l.cfg.dataDir, err)
	}
	a.token = tok
	return nil
}

// person is a practitioner of the plan: who, in which practice (an index
// into clinics, or spas for therapists and spa coordinators).
type person struct {
	a    *actor
	role pb.Role
	org  int
	spa  bool
}

// plan names the run's people and patients; patient i is registered by
// physician i/--patients and treated by therapist i mod the therapists,
// so that every practice receives referrals.
func (l *load) plan() []person {
	cfg, w := l.cfg, l.w
	var people []person
	for c := range cfg.clinics {
		for k := range cfg.physicians {
			ph := &physician{actor: actor{subject: fmt.Sprintf("%s-dr-%d-%d", cfg.prefix, c, k)}}
			w.physicians = append(w.physicians, ph)
			people = append(people, person{&ph.actor, pb.Role_ROLE_PHYSICIAN, c, false})
		}
		co := &actor{subject: fmt.Sprintf("%s-coord-clinic-%d", cfg.prefix, c)}
		w.coordinators = append(w.coordinators, co)
		people = append(people, person{co, pb.Role_ROLE_COORDINATOR, c, false})
	}
	for s := range cfg.spas {
		for k := range cfg.therapists {
			th := &therapist{actor: actor{subject: fmt.Sprintf("%s-lmt-%d-%d", cfg.prefix, s, k)}, spa: s}
			w.therapists = append(w.therapists, th)
			people = append(people, person{&th.actor, pb.Role_ROLE_MASSAGE_THERAPIST, s, true})
		}
		co := &actor{subject: fmt.Sprintf("%s-coord-spa-%d", cfg.prefix, s)}
		w.coordinators = append(w.coordinators, co)
		w.spaCoords = append(w.spaCoords, co)
		people = append(people, person{co, pb.Role_ROLE_COORDINATOR, s, true})
	}
	// careteamd lets one caller hold streamsPerCaller streams: more
	// watchers than the others can hold watch as coordinators of their
	// own, spread over the practices.
	others := len(w.physicians) + len(w.therapists) + len(w.coordinators)
	for i := range max(0, (cfg.watchers+streamsPerCaller-1)/streamsPerCaller-others) {
		co := &actor{subject: fmt.Sprintf("%s-watch-%d", cfg.prefix, i)}
		w.watchOnly = append(w.watchOnly, co)
		if org := i % (cfg.clinics + cfg.spas); org < cfg.clinics {
			people = append(people, person{co, pb.Role_ROLE_COORDINATOR, org, false})
		} else {
			people = append(people, person{co, pb.Role_ROLE_COORDINATOR, org - cfg.clinics, true})
		}
	}
	for _, ph := range w.physicians {
		for range cfg.patients {
			p := &patient{physician: ph, therapist: w.therapists[len(w.patients)%len(w.therapists)]}
			ph.patients = append(ph.patients, p)
			w.patients = append(w.patients, p)
		}
	}
	return people
}

// create sets the plan up on the server.
func (l *load) create(ctx context.Context, people []person) error {
	cfg, w := l.cfg, l.w
	admin := as(ctx, &w.admin)
	orgs := make([]string, cfg.clinics+cfg.spas)
	err := l.parallel(ctx, "organizations", len(orgs), func(i int) error {
		kind, name := pb.OrganizationKind_ORGANIZATION_KIND_PHYSICIAN_PRACTICE, fmt.Sprintf("%s clinic %d", cfg.prefix, i)
		if i >= cfg.clinics {
			kind, name = pb.OrganizationKind_ORGANIZATION_KIND_MASSAGE_PRACTICE, fmt.Sprintf("%s massage practice %d", cfg.prefix, i-cfg.clinics)
		}
		resp, err := l.calls.pick().Directory.CreateOrganization(admin, &pb.CreateOrganizationRequest{
			Organization: &pb.Organization{DisplayName: name, Kind: kind}})
		if err == nil {
			orgs[i] = resp.GetOrganization().GetName()
		}
		return err
	})
	if err != nil {
		return err
	}
	w.clinics, w.spas = orgs[:cfg.clinics], orgs[cfg.clinics:]

	licenceEnd := time.Now().AddDate(2, 0, 0).Format(time.DateOnly)
	err = l.parallel(ctx, "practitioners and tokens", len(people), func(i int) error {
		p := people[i]
		org := w.clinics[p.org]
		if p.spa {
			org = w.spas[p.org]
		}
		pr := &pb.Practitioner{DisplayName: p.a.subject, Role: p.role, Organization: org, Subject: p.a.subject}
		if p.role == pb.Role_ROLE_MASSAGE_THERAPIST {
			pr.Licence = &pb.Licence{Number: fmt.Sprintf("LMT-%d", i), Jurisdiction: "US-WA", ExpireDate: licenceEnd}
			pr.Specialties = []pb.Specialty{pb.Specialty_SPECIALTY_ARTHRITIS, pb.Specialty_SPECIALTY_ORTHOPEDIC}
		}
		resp, err := l.calls.pick().Directory.CreatePractitioner(admin, &pb.CreatePractitionerRequest{Practitioner: pr})
		if err != nil {
			return err
		}
		p.a.name, p.a.org = resp.GetPractitioner().GetName(), org
		return l.mint(p.a)
	})
	if err != nil {
		return err
	}

	// Patients, cleared for massage by their physician. The family name
	// and the identifier carry the prefix and the index, so that a later
	// run can take them up.
	err = l.parallel(ctx, "patients", len(w.patients), func(i int) error {
		p := w.patients[i]
		resp, err := l.calls.pick().Patients.CreatePatient(as(ctx, &p.physician.actor), &pb.CreatePatientRequest{Patient: &pb.Patient{
			GivenName: fmt.Sprintf("Pat%d", i), FamilyName: cfg.prefix, BirthDate: fmt.Sprintf("19%02d-%02d-%02d", 40+i%60, 1+i%12, 1+i%28),
			Gender:      pb.AdministrativeGender(1 + i%2),
			Identifiers: []*pb.Identifier{{System: patientIDSystem, Value: fmt.Sprintf("%s-%d", cfg.prefix, i)}},
		}})
		if err == nil {
			p.name = resp.GetPatient().GetName()
		}
		return err
	})
	if err != nil {
		return err
	}
	return l.parallel(ctx, "clearances", len(w.patients), func(i int) error {
		return issueClearance(ctx, l.calls.pick(), w.patients[i])
	})
}

// patientIDSystem is the identifier system of the load's patients.
const patientIDSystem = "urn:careteam-load:mrn"

// reuse takes up an earlier run's people and patients (same --prefix and
// the same counts): their names come from GetCaller and ListPatients.
// Consents are recorded again as referrals reach the practices, which
// changes nothing.
func (l *load) reuse(ctx context.Context, people []person) error {
	cfg, w := l.cfg, l.w
	err := l.parallel(ctx, "taking up "+cfg.prefix+"'s people", len(people), func(i int) error {
		a := people[i].a
		if err := l.mint(a); err != nil {
			return err
		}
		resp, err := l.calls.pick().Directory.GetCaller(as(ctx, a), &pb.GetCallerRequest{})
		if err != nil {
			return fmt.Errorf("%s (give the counts of the run that made them): %w", a.subject, err)
		}
		a.name, a.org = resp.GetPractitioner(), resp.GetOrganization()
		return nil
	})
	if err != nil {
		return err
	}
	for c := range cfg.clinics {
		w.clinics = append(w.clinics, w.physicians[c*cfg.physicians].org)
	}
	for s := range cfg.spas {
		w.spas = append(w.spas, w.therapists[s*cfg.therapists].org)
	}
	index := map[string]int{}
	for i := range w.patients {
		index[fmt.Sprintf("%s-%d", cfg.prefix, i)] = i
	}
	err = l.parallel(ctx, "taking up "+cfg.prefix+"'s patients", cfg.clinics, func(c int) error {
		req := &pb.ListPatientsRequest{FamilyNamePrefix: cfg.prefix, PageSize: 500}
		for {
			resp, err := l.calls.pick().Patients.ListPatients(as(ctx, &w.physicians[c*cfg.physicians].actor), req)
			if err != nil {
				return err
			}
			for _, p := range resp.GetPatients() {
				for _, id := range p.GetIdentifiers() {
					if i, ok := index[id.GetValue()]; ok && id.GetSystem() == patientIDSystem {
						w.patients[i].name = p.GetName()
					}
				}
			}
			if resp.GetNextPageToken() == "" {
				return nil
			}
			req.PageToken = resp.GetNextPageToken()
		}
	})
	if err != nil {
		return err
	}
	for i, p := range w.patients {
		if p.name == "" {
			return fmt.Errorf("patient %s-%d of the earlier run was not found (give the counts of the run that made them)", cfg.prefix, i)
		}
	}
	return nil
}

// prime fills the flows' queues so that the mix's first arrivals have
// drafts to submit and submissions to accept, and makes sure the pool of
// accepted referrals has at least visits unused visits and enough free
// referrals for every caller to hold one.
func (l *load) prime(ctx context.Context, visits int64) error {
	w, width := l.w, l.cfg.concurrency
	free, have := w.startable.size()
	need := max(int((visits-have+maxVisits-1)/maxVisits), 2*width-free, 0)
	if need > 0 {
		err := l.parallel(ctx, fmt.Sprintf("accepted referrals (%d visits)", int64(need)*maxVisits), need, func(i int) error {
			c := l.calls.pick()
			r, err := createReferral(ctx, c, w.patients[(i+int(have))%len(w.patients)])
			if err != nil {
				return err
			}
			if err := submitReferral(ctx, c, r); err != nil {
				return err
			}
			if err := acceptReferral(ctx, c, r); err != nil {
				return err
			}
			if !r.patient.consented.Load() {
				if err := recordConsent(ctx, c, r.patient); err != nil {
					return err
				}
				r.patient.consented.Store(true)
			}
			w.known.add(r)
			w.startable.add(r)
			return nil
		})
		if err != nil {
			return err
		}
	}
	drafts, submitted := max(width-w.drafts.len(), 0), max(width-w.submitted.len(), 0)
	if drafts+submitted == 0 {
		return nil
	}
	return l.parallel(ctx, "drafts and submitted referrals", drafts+submitted, func(i int) error {
		c := l.calls.pick()
		r, err := createReferral(ctx, c, w.patients[i%len(w.patients)])
		if err != nil {
			return err
		}
		if i < drafts {
			w.drafts.push(r)
			return nil
		}
		if err := submitReferral(ctx, c, r); err != nil {
			return err
		}
		w.submitted.push(r)
		return nil
	})
}

// parallel runs fn(0..n-1) on up to --concurrency goroutines, showing
// progress, and returns the first error (the rest stop starting).
func (l *load) parallel(ctx context.Context, what string, n int, fn func(i int) error) error {
	began := time.Now()
	var next, done atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(l.cfg.concurrency, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
				d := done.Add(1)
				l.prog.update("setup: %-34s %s %d/%d", what, bar(d, int64(n)), d, n)
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	if first != nil {
		l.prog.done("setup: %-34s failed", what)
		return fmt.Errorf("setup: %s: %w", what, first)
	}
	l.prog.done("setup: %-34s %s %d in %v", what, bar(int64(n), int64(n)), n, time.Since(began).Round(time.Millisecond))
	return nil
}
