package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

func init() {
	register(
		command{path: "referral create", summary: "create a draft referral (a physician, or a coordinator for one)", setup: referralCreate},
		command{path: "referral get", args: "referrals/ID", summary: "show a referral with its history", setup: referralGet},
		command{path: "referral list", summary: "list referrals (worklists: --overdue, --state)", setup: referralList},
		command{path: "referral submit", args: "referrals/ID", summary: "send a draft referral", setup: transition(submitReferral)},
		command{path: "referral assign", args: "referrals/ID", summary: "route or re-route a referral to a therapist", setup: referralAssign},
		command{path: "referral accept", args: "referrals/ID", summary: "accept a referral (its therapist)", setup: transition(acceptReferral)},
		command{path: "referral decline", args: "referrals/ID", summary: "decline a referral with a reason code", setup: referralDecline},
		command{path: "referral ask", args: "referrals/ID", summary: "ask the referrer a question", setup: referralAsk},
		command{path: "referral answer", args: "referrals/ID", summary: "answer the therapist's question", setup: referralAnswer},
		command{path: "referral cancel", args: "referrals/ID", summary: "cancel a referral (the referring side)", setup: referralCancel},
		command{path: "referral complete", args: "referrals/ID", summary: "complete a referral with a discharge note", setup: referralComplete},
		command{path: "referral progress", args: "referrals/ID", summary: "the progress report: visits, sessions, pain and outcome trends", setup: referralProgress},
	)
}

func referralCreate(fs *flag.FlagSet) action {
	patient := fs.String("patient", "", "patients/ID (required)")
	physician := fs.String("physician", "", "referring physician, practitioners/ID (default: you; required for a coordinator)")
	therapist := fs.String("therapist", "", "target therapist, practitioners/ID")
	org := fs.String("org", "", "target massage practice, organizations/ID")
	notes := fs.String("notes", "", "clinical notes for the therapist")
	priority := fs.String("priority", "", "routine or urgent")
	visits := fs.Int("visits", 0, "authorized visits, 1-52 (required)")
	validUntil := fs.String("valid-until", "", "end of validity, YYYY-MM-DD (default 90 days)")
	var codes, diagnoses, techniques, specialties stringList
	fs.Var(&codes, "reason-code", "ICD-10-CM code, such as M54.50 (repeatable)")
	fs.Var(&diagnoses, "reason-diagnosis", "diagnoses/ID (repeatable)")
	fs.Var(&techniques, "technique", "requested technique, such as swedish (repeatable)")
	fs.Var(&specialties, "specialty", "required training, such as arthritis (repeatable)")
	return func(e *env, _ []string) (proto.Message, error) {
		prio, err := enumValue[pb.ReferralPriority]("priority", *priority)
		if err != nil {
			return nil, err
		}
		techs, err := enumValues[pb.Technique]("technique", techniques)
		if err != nil {
			return nil, err
		}
		specs, err := enumValues[pb.Specialty]("specialty", specialties)
		if err != nil {
			return nil, err
		}
		r := &pb.Referral{
			Patient: *patient, ReferringPhysician: *physician, TargetTherapist: *therapist, TargetOrganization: *org,
			ReasonCodes: codes, ReasonDiagnoses: diagnoses, ClinicalNotes: *notes, Priority: prio,
			RequestedTechniques: techs, AuthorizedVisits: int32(*visits), RequiredSpecialties: specs,
		}
		if *validUntil != "" {
			t, err := time.Parse("2006-01-02", *validUntil)
			if err != nil {
				return nil, usagef("--valid-until: want YYYY-MM-DD")
			}
			r.ValidUntil = timestamppb.New(t)
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Referrals.CreateReferral(e.ctx, &pb.CreateReferralRequest{Referral: r})
		return resp.GetReferral(), err
	}
}

func referralGet(fs *flag.FlagSet) action {
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "referrals/ID")
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Referrals.GetReferral(e.ctx, &pb.GetReferralRequest{Name: name})
		return resp.GetReferral(), err
	}
}

func referralList(fs *flag.FlagSet) action {
	patient := fs.String("patient", "", "only this patient's")
	therapist := fs.String("therapist", "", "only for this therapist")
	org := fs.String("org", "", "only for this massage practice")
	physician := fs.String("physician", "", "only from this physician")
	priority := fs.String("priority", "", "only this priority")
	overdue := fs.Bool("overdue", false, "only submitted referrals waiting past the acknowledgement window")
	size := fs.Int("page-size", 0, "results per page")
	token := fs.String("page-token", "", "page token from a previous page")
	var states stringList
	fs.Var(&states, "state", "only this state, such as submitted (repeatable)")
	return func(e *env, _ []string) (proto.Message, error) {
		st, err := enumValues[pb.ReferralState]("state", states)
		if err != nil {
			return nil, err
		}
		prio, err := enumValue[pb.ReferralPriority]("priority", *priority)
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		return c.Referrals.ListReferrals(e.ctx, &pb.ListReferralsRequest{
			Patient: *patient, TargetTherapist: *therapist, TargetOrganization: *org, ReferringPhysician: *physician,
			Priority: prio, Overdue: *overdue, States: st, PageSize: int32(*size), PageToken: *token,
		})
	}
}

// referralCall is one lifecycle call on a named referral with an etag.
type referralCall func(e *env, name, etag string) (*pb.Referral, error)

// transition makes a command of a lifecycle call that needs nothing but
// the referral's name (and optionally its etag).
func transition(call referralCall) func(fs *flag.FlagSet) action {
	return func(fs *flag.FlagSet) action {
		etag := fs.String("etag", "", "the etag you read, to refuse the change if the referral changed since")
		return func(e *env, args []string) (proto.Message, error) {
			name, err := oneArg(args, "referrals/ID")
			if err != nil {
				return nil, err
			}
			return call(e, name, *etag)
		}
	}
}

func submitReferral(e *env, name, etag string) (*pb.Referral, error) {
	c, err := e.dial()
	if err != nil {
		return nil, err
	}
	resp, err := c.Referrals.SubmitReferral(e.ctx, &pb.SubmitReferralRequest{Name: name, Etag: etag})
	return resp.GetReferral(), err
}

func acceptReferral(e *env, name, etag string) (*pb.Referral, error) {
	c, err := e.dial()
	if err != nil {
		return nil, err
	}
	resp, err := c.Referrals.AcceptReferral(e.ctx, &pb.AcceptReferralRequest{Name: name, Etag: etag})
	return resp.GetReferral(), err
}

// withText makes a lifecycle command that takes one required text flag.
func withText(flagName, usage string, call func(e *env, name, text, etag string) (*pb.Referral, error)) func(fs *flag.FlagSet) action {
	return func(fs *flag.FlagSet) action {
		text := fs.String(flagName, "", usage+" (required)")
		return transition(func(e *env, name, etag string) (*pb.Referral, error) {
			if *text == "" {
				return nil, usagef("--%s is required", flagName)
			}
			return call(e, name, *text, etag)
		})(fs)
	}
}

var (
	referralAsk = withText("question", "the question for the referrer", func(e *env, name, q, etag string) (*pb.Referral, error) {
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Referrals.RequestInformation(e.ctx, &pb.RequestInformationRequest{Name: name, Question: q, Etag: etag})
		return resp.GetReferral(), err
	})
	referralAnswer = withText("answer", "the answer", func(e *env, name, a, etag string) (*pb.Referral, error) {
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Referrals.ProvideInformation(e.ctx, &pb.ProvideInformationRequest{Name: name, Answer: a, Etag: etag})
		return resp.GetReferral(), err
	})
	referralCancel = withText("reason", "why it is cancelled", func(e *env, name, reason, etag string) (*pb.Referral, error) {
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Referrals.CancelReferral(e.ctx, &pb.CancelReferralRequest{Name: name, Reason: reason, Etag: etag})
		return resp.GetReferral(), err
	})
	referralComplete = withText("note", "the discharge note", func(e *env, name, note, etag string) (*pb.Referral, error) {
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Referrals.CompleteReferral(e.ctx, &pb.CompleteReferralRequest{Name: name, DischargeNote: note, Etag: etag})
		return resp.GetReferral(), err
	})
)

func referralAssign(fs *flag.FlagSet) action {
	therapist := fs.String("therapist", "", "practitioners/ID (required)")
	reason := fs.String("reason", "", "why (for instance, a re-routing note)")
	return transition(func(e *env, name, etag string) (*pb.Referral, error) {
		if *therapist == "" {
			return nil, usagef("--therapist is required")
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Referrals.AssignReferral(e.ctx, &pb.AssignReferralRequest{Name: name, Therapist: *therapist, Reason: *reason, Etag: etag})
		return resp.GetReferral(), err
	})(fs)
}

func referralDecline(fs *flag.FlagSet) action {
	reason := fs.String("reason", "", "not-trained, no-capacity, out-of-scope, patient-unreachable, clinically-inappropriate or other (required)")
	text := fs.String("text", "", "explanation (required)")
	return transition(func(e *env, name, etag string) (*pb.Referral, error) {
		code, err := enumValue[pb.DeclineReason]("reason", *reason)
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Referrals.DeclineReferral(e.ctx, &pb.DeclineReferralRequest{Name: name, Reason: code, Text: *text, Etag: etag})
		return resp.GetReferral(), err
	})(fs)
}

func referralProgress(fs *flag.FlagSet) action {
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "referrals/ID")
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Referrals.GetReferralProgress(e.ctx, &pb.GetReferralProgressRequest{Name: name})
		if err != nil {
			return nil, err
		}
		if e.format == "json" {
			return resp.GetProgress(), nil
		}
		return nil, printProgress(e.out, resp.GetProgress())
	}
}

// printProgress renders the report as a physician reads it: the figures
// first, then one row per session.
func printProgress(w io.Writer, p *pb.ReferralProgress) error {
	fmt.Fprintf(w, "Referral %s: %s\n", p.GetReferral(), enumName(p.GetState()))
	fmt.Fprintf(w, "Visits: %d of %d used, %d left\n", p.GetUsedVisits(), p.GetAuthorizedVisits(), p.GetRemainingVisits())
	trendLine(w, "Pain (NRS 0-10, before treatment)", p.GetPain())
	trendLine(w, "Oswestry Disability Index", p.GetOswestryDisabilityIndex())
	trendLine(w, "Neck Disability Index", p.GetNeckDisabilityIndex())
	if p.GetMeanSessionPainRelief() != 0 {
		fmt.Fprintf(w, "Mean relief within a session: %.1f points\n", p.GetMeanSessionPainRelief())
	}
	if len(p.GetSessions()) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DATE\tMIN\tPAIN\tODI\tNDI\tTREATMENTS\tSIGNED\tFLAGS")
		for _, s := range p.GetSessions() {
			var flags []string
			if s.GetAdverseEvent() {
				flags = append(flags, "adverse-event")
			}
			if s.GetDeviation() {
				flags = append(flags, "deviation")
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%v\t%s\n", s.GetStartTime().AsTime().Format("2006-01-02"), s.GetDurationMinutes(),
				painText(s), optText(s.OswestryDisabilityIndex), optText(s.NeckDisabilityIndex), treatmentsText(s.GetTreatments()),
				s.GetSigned(), strings.Join(flags, ","))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, a := range p.GetAdverseEvents() {
		fmt.Fprintf(w, "\nAdverse event (%s) in %s: %s\n", enumName(a.GetSeverity()), a.GetSession(), a.GetDescription())
	}
	for _, d := range p.GetDeviations() {
		fmt.Fprintf(w, "\nDeviation in %s: %s\n", d.GetSession(), d.GetReason())
	}
	if p.GetLatestAssessment() != "" {
		fmt.Fprintf(w, "\nLatest assessment: %s\n", p.GetLatestAssessment())
	}
	if p.GetLatestPlan() != "" {
		fmt.Fprintf(w, "Latest plan: %s\n", p.GetLatestPlan())
	}
	return nil
}

func trendLine(w io.Writer, label string, t *pb.MeasureTrend) {
	if t == nil {
		return
	}
	fmt.Fprintf(w, "%s: %d -> %d (%+d over %d sessions, %+.1f per session)\n", label, t.GetFirst(), t.GetLatest(), t.GetChange(), t.GetSessions(), t.GetMeanChangePerSession())
}

func painText(s *pb.SessionSummary) string {
	return optText(s.PainBefore) + "->" + optText(s.PainAfter)
}

func optText(v *int32) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprint(*v)
}

func treatmentsText(ts []*pb.Treatment) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = strings.ToLower(enumName(t.GetTechnique()) + "@" + enumName(t.GetRegion()) + "/" + enumName(t.GetPressure()))
	}
	return strings.Join(parts, " ")
}
