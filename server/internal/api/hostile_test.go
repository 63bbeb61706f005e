package api_test

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/careteam/careteam/client"
	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/api"
)

// rawCodec sends bytes as they are, so that a test can put on the wire
// what no well-behaved client would.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(*[]byte); ok {
		return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
	}
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}

func (rawCodec) Name() string { return "proto" }

// resetPeakResident starts this process's peak resident set (where the
// server under test runs) afresh from the current one.
func resetPeakResident(t *testing.T) {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatal(err)
	}
}

// residentBytes reads field (VmRSS, VmHWM: the peak) of this process.
func residentBytes(t *testing.T, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s", field)
	return 0
}

// TestHostileInputs sends a real server what attackers with valid
// accounts and without any sent: bytes that do not decode, NUL bytes,
// millions of repeated values, requests wrong in hundreds of places,
// oversized headers, floods of bad tokens and of streams. Each gets its
// status and its audit record, and the server's memory stays bounded:
// its peak within 512 MiB of where it started (the race detector's shadow
// memory included), where one of these calls grew it by over 4 GiB before.
func TestHostileInputs(t *testing.T) {
	tm := newTeam(t)
	h := tm.harness
	dr := h.as("dr")
	resetPeakResident(t)
	base := residentBytes(t, "VmRSS")
	audited := func(t *testing.T, outcome string) {
		t.Helper()
		if n := h.sealed().count(`SELECT count(*) FROM audit_events WHERE subject = 'dr' AND outcome = $1`, outcome); n == 0 {
			t.Errorf("no %s audit record", outcome)
		}
	}

	t.Run("invalid UTF-8 in a string names the field", func(t *testing.T) {
		// CreatePatientRequest{patient: {family_name: "\xff\xfe"}}.
		patient := protowire.AppendTag(nil, 3, protowire.BytesType) // family_name
		patient = protowire.AppendBytes(patient, []byte("Smi\xffth"))
		req := protowire.AppendTag(nil, 1, protowire.BytesType)
		req = protowire.AppendBytes(req, patient)
		var resp pb.CreatePatientResponse
		err := dr.Conn().Invoke(h.ctx, "/careteam.v1.PatientService/CreatePatient", &req, &resp, grpc.ForceCodecV2(rawCodec{}))
		if got := fieldViolations(t, err); !slices.Equal(got, []string{"patient.family_name"}) {
			t.Fatalf("violations %v", got)
		}
		audited(t, "INVALID_ARGUMENT")
	})

	t.Run("undecodable bytes without a login leave nothing behind", func(t *testing.T) {
		patient := protowire.AppendTag(nil, 3, protowire.BytesType)
		patient = protowire.AppendBytes(patient, []byte("\xff"))
		req := protowire.AppendTag(nil, 1, protowire.BytesType)
		req = protowire.AppendBytes(req, patient)
		for _, c := range []*client.Client{h.anonymous(), h.asToken("not-a-token")} {
			for range 50 {
				var resp pb.CreatePatientResponse
				err := c.Conn().Invoke(h.ctx, "/careteam.v1.PatientService/CreatePatient", &req, &resp, grpc.ForceCodecV2(rawCodec{}))
				wantCode(t, err, codes.Unauthenticated)
			}
		}
		if n := api.Undecodable(); n != 0 {
			t.Errorf("%d undecodable requests kept after their calls ended", n)
		}
		// Their failed authentications are counted in this minute's window:
		// let it end before the flood below counts its own.
		h.clock.Advance(2 * time.Minute)
	})

	t.Run("NUL bytes name the field", func(t *testing.T) {
		_, err := dr.Patients.CreatePatient(h.ctx, &pb.CreatePatientRequest{Patient: &pb.Patient{
			GivenName: "Jo\x00", FamilyName: "Doe", BirthDate: "1970-01-01"}})
		if got := fieldViolations(t, err); !slices.Equal(got, []string{"patient.given_name"}) {
			t.Fatalf("violations %v", got)
		}
	})

	t.Run("3 MB of repeated enum values", func(t *testing.T) {
		for range 10 {
			r := tm.newReferral()
			r.RequestedTechniques = make([]pb.Technique, 3<<20)
			_, err := dr.Referrals.CreateReferral(h.ctx, &pb.CreateReferralRequest{Referral: r})
			if got := fieldViolations(t, err); !slices.Equal(got, []string{"referral.requested_techniques"}) {
				t.Fatalf("violations %v", got)
			}
		}
	})

	t.Run("hundreds of bad fields: the first 50, and a count", func(t *testing.T) {
		r := tm.newReferral()
		r.RequestedTechniques = make([]pb.Technique, 900) // each is UNSPECIFIED, which is refused
		_, err := dr.Referrals.CreateReferral(h.ctx, &pb.CreateReferralRequest{Referral: r})
		st := wantCode(t, err, codes.InvalidArgument)
		got := fieldViolations(t, err)
		if len(got) != 51 || !strings.Contains(st.Message(), "and ") {
			t.Fatalf("%d violations listed; message %q", len(got), st.Message())
		}
	})

	t.Run("an oversized header is refused, and the server goes on", func(t *testing.T) {
		for range 30 {
			ctx := metadata.AppendToOutgoingContext(h.ctx, "x-padding", strings.Repeat("a", 1<<20))
			if _, err := h.anonymous().Directory.GetCaller(ctx, &pb.GetCallerRequest{}); err == nil {
				t.Fatal("a 1 MiB header was accepted")
			}
		}
		if _, err := dr.Directory.GetCaller(h.ctx, &pb.GetCallerRequest{}); err != nil {
			t.Fatalf("after oversized headers: %v", err)
		}
	})

	t.Run("a caller's open streams are capped", func(t *testing.T) {
		var cancels []func()
		defer func() {
			for _, c := range cancels {
				c()
			}
		}()
		open := func() error {
			ctx, cancel := context.WithCancel(h.ctx)
			cancels = append(cancels, cancel)
			s, err := dr.Events.WatchEvents(ctx, &pb.WatchEventsRequest{})
			if err != nil {
				return err
			}
			_, err = s.Recv() // the first event or heartbeat, or the refusal
			return err
		}
		tm.create(tm.newReferral())
		for i := range 16 {
			if err := open(); err != nil {
				t.Fatalf("stream %d: %v", i+1, err)
			}
		}
		wantCode(t, open(), codes.ResourceExhausted)
	})

	// Last: the address the flood came from is refused for a while, whoever
	// calls from it.
	t.Run("a flood of bad tokens is limited and recorded with a count", func(t *testing.T) {
		c := h.asToken("not-a-token")
		const calls = 400
		limited := 0
		for range calls {
			_, err := c.Directory.GetCaller(h.ctx, &pb.GetCallerRequest{})
			switch code := codeOf(err); code {
			case codes.Unauthenticated:
			case codes.ResourceExhausted:
				limited++
			default:
				t.Fatalf("bad token: %v", err)
			}
		}
		if limited == 0 {
			t.Errorf("%d calls with a bad token from one address were never limited", calls)
		}
		if n := h.sealed().count(`SELECT count(*) FROM audit_events WHERE subject = '' AND method = '/careteam.v1.DirectoryService/GetCaller'`); n != 1 {
			t.Errorf("%d records during the flood, want 1 (the rest counted)", n)
		}
		// Once the window has ended, the next failure brings the count.
		h.clock.Advance(2 * time.Minute)
		if _, err := c.Directory.GetCaller(h.ctx, &pb.GetCallerRequest{}); err == nil {
			t.Fatal("a bad token was accepted")
		}
		// The summary may also be written by the server's own sweep of
		// ended windows, a moment later.
		accounted := 0
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if accounted = h.sealed().count(`SELECT coalesce(sum(1 + suppressed), 0) FROM audit_events WHERE subject = '' AND method = '/careteam.v1.DirectoryService/GetCaller'`); accounted == calls+1 {
				break
			}
		}
		if accounted != calls+1 {
			t.Errorf("the trail accounts for %d calls, want %d", accounted, calls+1)
		}
	})

	// The peak, not what is left: a call that balloons and frees would
	// still be found.
	if peak := residentBytes(t, "VmHWM") - base; peak > 512<<20 {
		t.Errorf("resident memory peaked %d MiB above where it started", peak>>20)
	} else {
		t.Logf("resident memory peaked %d MiB above where it started", peak>>20)
	}
}

// asToken returns a client that presents tok as it is.
func (h *harness) asToken(tok string) *client.Client {
	h.t.Helper()
	c, err := client.Dial(h.addr, client.WithPlaintext(), client.WithToken(client.StaticToken(tok)))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// TestEveryBadFieldInOneAnswer is the finding: a request with several bad
// fields listed only those of the first failing step (a bad date hid a
// missing family name). Each answer lists them all, and nothing is written.
func TestEveryBadFieldInOneAnswer(t *testing.T) {
	t.Parallel()
	tm := newTeam(t)
	h := tm.harness
	dr, root := h.as("dr"), h.as(rootAdmin)
	for _, tc := range []struct {
		name string
		call func() error
		want []string
	}{
		{"CreatePatient: a date that is no date, and no family name", func() error {
			_, err := dr.Patients.CreatePatient(h.ctx, &pb.CreatePatientRequest{Patient: &pb.Patient{GivenName: "Jo", BirthDate: "1970-02-30"}})
			return err
		}, []string{"patient.birth_date", "patient.family_name"}},
		{"UpdatePatient: the same", func() error {
			in := proto.CloneOf(tm.patient)
			in.BirthDate, in.FamilyName = "1970-02-30", ""
			_, err := dr.Patients.UpdatePatient(h.ctx, &pb.UpdatePatientRequest{Patient: in, UpdateMask: fieldMask("birth_date", "family_name")})
			return err
		}, []string{"patient.birth_date", "patient.family_name"}},
		{"CreatePractitioner: a bad organization name, expiry and NPI, no display name", func() error {
			_, err := root.Directory.CreatePractitioner(h.ctx, &pb.CreatePractitionerRequest{Practitioner: &pb.Practitioner{
				Role: pb.Role_ROLE_MASSAGE_THERAPIST, Organization: "organizations/not-a-uuid", Subject: "x",
				Identifiers: []*pb.Identifier{{System: "http://hl7.org/fhir/sid/us-npi", Value: "1234567890"}},
				Licence:     &pb.Licence{Number: "LMT-1", Jurisdiction: "US-WA", ExpireDate: "2027-13-01"}}})
			return err
		}, []string{"practitioner.organization", "practitioner.licence.expire_date", "practitioner.display_name", "practitioner.identifiers[0].value"}},
		{"RecordDiagnosis: a bad onset date, and no code", func() error {
			_, err := dr.Clinical.RecordDiagnosis(h.ctx, &pb.RecordDiagnosisRequest{Diagnosis: &pb.Diagnosis{
				Patient: tm.patient.GetName(), Display: "x", OnsetDate: "2026-02-30"}})
			return err
		}, []string{"diagnosis.onset_date", "diagnosis.icd10_code"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fieldViolations(t, tc.call())
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("violations %v, want %v", got, want)
			}
		})
	}
	if n := h.count(`SELECT count(*) FROM patients`); n != 1 {
		t.Errorf("%d patients, want the team's 1", n)
	}
	if n := h.count(`SELECT count(*) FROM diagnoses`); n != 0 {
		t.Errorf("%d diagnoses written", n)
	}
}
