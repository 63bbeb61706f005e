package main

import (
	"flag"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

func init() {
	register(
		command{path: "session start", args: "referrals/ID", summary: "start a session under the gate (the assigned therapist)", setup: sessionStart},
		command{path: "session get", args: "sessions/ID", summary: "show a session and its note", setup: sessionGet},
		command{path: "session list", summary: "list sessions", setup: sessionList},
		command{path: "session cancel", args: "sessions/ID", summary: "cancel an unsigned session (no-show keeps the visit)", setup: sessionCancel},
		command{path: "session note", args: "sessions/ID", summary: "edit the draft SOAP note (only the flags given change)", setup: sessionNote},
		command{path: "session sign", args: "sessions/ID", summary: "sign the note; it never changes again", setup: sessionSign},
		command{path: "session amend", args: "sessions/ID", summary: "append an amendment to a signed note", setup: sessionAmend},
	)
}

func sessionStart(fs *flag.FlagSet) action {
	at := fs.String("at", "", "scheduled start, RFC 3339 (default now)")
	var plan stringList
	fs.Var(&plan, "treatment", "planned technique@region/pressure, such as swedish@lumbar/medium (repeatable, required)")
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "referrals/ID")
		if err != nil {
			return nil, err
		}
		planned, err := parseTreatments(plan)
		if err != nil {
			return nil, err
		}
		req := &pb.StartSessionRequest{Referral: name, Planned: planned}
		if *at != "" {
			t, err := time.Parse(time.RFC3339, *at)
			if err != nil {
				return nil, usagef("--at: want RFC 3339, such as 2026-03-04T09:00:00Z")
			}
			req.ScheduledStartTime = timestamppb.New(t)
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Sessions.StartSession(e.ctx, req)
		return resp.GetSession(), err
	}
}

func sessionGet(fs *flag.FlagSet) action {
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "sessions/ID")
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Sessions.GetSession(e.ctx, &pb.GetSessionRequest{Name: name})
		return resp.GetSession(), err
	}
}

func sessionList(fs *flag.FlagSet) action {
	referral := fs.String("referral", "", "only under this referral")
	patient := fs.String("patient", "", "only this patient's")
	therapist := fs.String("therapist", "", "only this therapist's")
	state := fs.String("state", "", "only this state: started, completed, cancelled, no-show")
	size := fs.Int("page-size", 0, "results per page")
	token := fs.String("page-token", "", "page token from a previous page")
	return func(e *env, _ []string) (proto.Message, error) {
		st, err := enumValue[pb.SessionState]("state", *state)
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		return c.Sessions.ListSessions(e.ctx, &pb.ListSessionsRequest{
			Referral: *referral, Patient: *patient, Therapist: *therapist, State: st, PageSize: int32(*size), PageToken: *token,
		})
	}
}

func sessionCancel(fs *flag.FlagSet) action {
	reason := fs.String("reason", "", "patient-cancelled, therapist-cancelled, no-show, entered-in-error or other (required)")
	text := fs.String("text", "", "explanation")
	etag := fs.String("etag", "", "the etag you read")
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "sessions/ID")
		if err != nil {
			return nil, err
		}
		r, err := enumValue[pb.CancelReason]("reason", *reason)
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Sessions.CancelSession(e.ctx, &pb.CancelSessionRequest{Name: name, Reason: r, Text: *text, Etag: *etag})
		return resp.GetSession(), err
	}
}

func sessionNote(fs *flag.FlagSet) action {
	etag := fs.String("etag", "", "the session's etag as you read it (required)")
	subjective := fs.String("subjective", "", "S: what the patient reports")
	objective := fs.String("objective", "", "O: what you found")
	assessment := fs.String("assessment", "", "A: assessment")
	plan := fs.String("plan", "", "P: plan, including home care")
	painBefore := fs.Int("pain-before", 0, "pain before, 0-10")
	painAfter := fs.Int("pain-after", 0, "pain after, 0-10")
	odi := fs.Int("odi", 0, "Oswestry Disability Index, 0-100")
	ndi := fs.Int("ndi", 0, "Neck Disability Index, 0-100")
	rom := fs.String("range-of-motion", "", "range-of-motion findings")
	minutes := fs.Int("minutes", 0, "duration in minutes")
	adverse := fs.String("adverse-event", "", "an adverse event: what happened")
	severity := fs.String("adverse-severity", "mild", "its severity: mild, moderate, severe")
	var treated stringList
	fs.Var(&treated, "treatment", "treatment given, technique@region/pressure (repeatable)")
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "sessions/ID")
		if err != nil {
			return nil, err
		}
		note := &pb.SessionNote{
			Subjective: *subjective, Objective: *objective, Assessment: *assessment, Plan: *plan,
			RangeOfMotion: *rom, DurationMinutes: int32(*minutes),
		}
		if note.Treatments, err = parseTreatments(treated); err != nil {
			return nil, err
		}
		var paths []string
		var badSeverity error
		fs.Visit(func(f *flag.Flag) {
			field := map[string]string{
				"subjective": "subjective", "objective": "objective", "assessment": "assessment", "plan": "plan",
				"pain-before": "pain_before", "pain-after": "pain_after", "odi": "oswestry_disability_index",
				"ndi": "neck_disability_index", "range-of-motion": "range_of_motion", "minutes": "duration_minutes",
				"treatment": "treatments", "adverse-event": "adverse_event",
			}[f.Name]
			if field != "" {
				paths = append(paths, field)
			}
			switch f.Name {
			case "pain-before":
				note.PainBefore = proto.Int32(int32(*painBefore))
			case "pain-after":
				note.PainAfter = proto.Int32(int32(*painAfter))
			case "odi":
				note.OswestryDisabilityIndex = proto.Int32(int32(*odi))
			case "ndi":
				note.NeckDisabilityIndex = proto.Int32(int32(*ndi))
			case "adverse-event":
				sev, err := enumValue[pb.Severity]("adverse-severity", *severity)
				badSeverity = err
				note.AdverseEvent = &pb.AdverseEvent{Description: *adverse, Severity: sev}
			}
		})
		if badSeverity != nil {
			return nil, badSeverity
		}
		if len(paths) == 0 {
			return nil, usagef("nothing to update")
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Sessions.UpdateSessionNote(e.ctx, &pb.UpdateSessionNoteRequest{
			Name: name, Note: note, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}, Etag: *etag,
		})
		return resp.GetSession(), err
	}
}

func sessionSign(fs *flag.FlagSet) action {
	etag := fs.String("etag", "", "the session's etag as you read it (required)")
	deviation := fs.String("deviation-reason", "", "why treatments deviated from the clearance, if they did (flagged to the physician)")
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "sessions/ID")
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Sessions.SignSessionNote(e.ctx, &pb.SignSessionNoteRequest{Name: name, Etag: *etag, DeviationReason: *deviation})
		return resp.GetSignature(), err
	}
}

func sessionAmend(fs *flag.FlagSet) action {
	reason := fs.String("reason", "", "why the note is amended (required)")
	text := fs.String("text", "", "the amendment (required)")
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "sessions/ID")
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Sessions.AmendSessionNote(e.ctx, &pb.AmendSessionNoteRequest{Name: name, Reason: *reason, Text: *text})
		return resp.GetAmendment(), err
	}
}
