package main

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

func init() {
	register(
		command{path: "diagnosis record", summary: "record a diagnosis (physicians)", setup: diagnosisRecord},
		command{path: "diagnosis get", args: "diagnoses/ID", summary: "show a diagnosis", setup: diagnosisGet},
		command{path: "diagnosis update", args: "diagnoses/ID", summary: "change a diagnosis's status, severity, notes, red flags or body sites (physicians)", setup: diagnosisUpdate},
		command{path: "diagnosis list", summary: "list a patient's diagnoses", setup: diagnosisList},
		command{path: "consent record", summary: "record the patient's consent to massage (the therapist's practice)", setup: consentRecord},
		command{path: "consent list", summary: "list a patient's consents", setup: consentList},
		command{path: "clearance request", summary: "ask a physician for clearance", setup: clearanceRequest},
		command{path: "clearance issue", summary: "issue a clearance (physicians)", setup: clearanceIssue},
		command{path: "clearance suspend", args: "clearances/ID", summary: "suspend a clearance: a new red flag was found", setup: clearanceSuspend},
		command{path: "clearance revoke", args: "clearances/ID", summary: "revoke a clearance (physicians)", setup: clearanceRevoke},
		command{path: "clearance get", args: "clearances/ID", summary: "show a clearance", setup: clearanceGet},
		command{path: "clearance list", summary: "list clearances and open requests", setup: clearanceList},
		command{path: "clearance check", args: "referrals/ID", summary: "dry run of the gate: could a session start?", setup: clearanceCheck},
	)
}

// enumName is an enum value's name without its prefix.
func enumName(e protoreflect.Enum) string {
	d := e.Descriptor()
	prefix := strings.TrimSuffix(string(d.Values().ByNumber(0).Name()), "UNSPECIFIED")
	if v := d.Values().ByNumber(e.Number()); v != nil {
		return strings.TrimPrefix(string(v.Name()), prefix)
	}
	return fmt.Sprint(e.Number())
}

// parseTreatments parses "technique@region/pressure", such as
// "swedish@lumbar/medium".
func parseTreatments(vs []string) ([]*pb.Treatment, error) {
	var out []*pb.Treatment
	for _, v := range vs {
		tech, rest, ok1 := strings.Cut(v, "@")
		region, pressure, ok2 := strings.Cut(rest, "/")
		if !ok1 || !ok2 {
			return nil, usagef("--treatment %q: want technique@region/pressure, such as swedish@lumbar/medium", v)
		}
		t, err := enumValue[pb.Technique]("treatment", tech)
		if err != nil {
			return nil, err
		}
		r, err := enumValue[pb.BodyRegion]("treatment", region)
		if err != nil {
			return nil, err
		}
		p, err := enumValue[pb.Pressure]("treatment", pressure)
		if err != nil {
			return nil, err
		}
		out = append(out, &pb.Treatment{Technique: t, Region: r, Pressure: p})
	}
	return out, nil
}

// diagnosisFlags are the flags of a diagnosis's fields, shared by record
// and update.
type diagnosisFlags struct {
	display, status, severity, notes *string
	shareable                        *bool
	sites, flags                     stringList
}

func declareDiagnosis(fs *flag.FlagSet) *diagnosisFlags {
	d := &diagnosisFlags{
		display:   fs.String("display", "", "the code's display text (required to record)"),
		status:    fs.String("status", "", "active (the default when recording), recurrence, remission or resolved"),
		severity:  fs.String("severity", "", "mild, moderate or severe"),
		notes:     fs.String("notes", "", "your notes"),
		shareable: fs.Bool("notes-shareable", false, "let the treating therapist read the notes"),
	}
	fs.Var(&d.sites, "body-site", "body region, such as lumbar (repeatable)")
	fs.Var(&d.flags, "red-flag", "red flag, such as suspected-fracture (repeatable)")
	return d
}

// proto returns the diagnosis the flags describe.
func (d *diagnosisFlags) proto() (*pb.Diagnosis, error) {
	st, err := enumValue[pb.ClinicalStatus]("status", *d.status)
	if err != nil {
		return nil, err
	}
	sev, err := enumValue[pb.Severity]("severity", *d.severity)
	if err != nil {
		return nil, err
	}
	bs, err := enumValues[pb.BodyRegion]("body-site", d.sites)
	if err != nil {
		return nil, err
	}
	rf, err := enumValues[pb.RedFlag]("red-flag", d.flags)
	if err != nil {
		return nil, err
	}
	return &pb.Diagnosis{Display: *d.display, ClinicalStatus: st, Severity: sev, BodySites: bs, RedFlags: rf,
		Notes: *d.notes, NotesShareable: *d.shareable}, nil
}

func diagnosisRecord(fs *flag.FlagSet) action {
	patient := fs.String("patient", "", "patients/ID (required)")
	code := fs.String("code", "", "ICD-10-CM code, such as M54.50 (required)")
	onset := fs.String("onset", "", "onset date, YYYY-MM-DD")
	df := declareDiagnosis(fs)
	return func(e *env, _ []string) (proto.Message, error) {
		d, err := df.proto()
		if err != nil {
			return nil, err
		}
		d.Patient, d.Icd10Code, d.OnsetDate = *patient, *code, *onset
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Clinical.RecordDiagnosis(e.ctx, &pb.RecordDiagnosisRequest{Diagnosis: d})
		return resp.GetDiagnosis(), err
	}
}

func diagnosisGet(fs *flag.FlagSet) action {
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "diagnoses/ID")
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Clinical.GetDiagnosis(e.ctx, &pb.GetDiagnosisRequest{Name: name})
		return resp.GetDiagnosis(), err
	}
}

// diagnosisUpdate changes the fields whose flags are given, and only those.
func diagnosisUpdate(fs *flag.FlagSet) action {
	df := declareDiagnosis(fs)
	etag := fs.String("etag", "", "the etag you read, to refuse the update if it changed since")
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "diagnoses/ID")
		if err != nil {
			return nil, err
		}
		d, err := df.proto()
		if err != nil {
			return nil, err
		}
		d.Name, d.Etag = name, *etag
		mask, err := updateMask(fs, map[string]string{"display": "display", "status": "clinical_status", "severity": "severity",
			"notes": "notes", "notes-shareable": "notes_shareable", "body-site": "body_sites", "red-flag": "red_flags"})
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Clinical.UpdateDiagnosis(e.ctx, &pb.UpdateDiagnosisRequest{
			Diagnosis: d, UpdateMask: &fieldmaskpb.FieldMask{Paths: mask},
		})
		return resp.GetDiagnosis(), err
	}
}

func diagnosisList(fs *flag.FlagSet) action {
	patient := fs.String("patient", "", "patients/ID (required)")
	return func(e *env, _ []string) (proto.Message, error) {
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		return c.Clinical.ListDiagnoses(e.ctx, &pb.ListDiagnosesRequest{Patient: *patient})
	}
}

func consentList(fs *flag.FlagSet) action {
	patient := fs.String("patient", "", "patients/ID (required)")
	return func(e *env, _ []string) (proto.Message, error) {
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		return c.Clinical.ListConsents(e.ctx, &pb.ListConsentsRequest{Patient: *patient})
	}
}

func consentRecord(fs *flag.FlagSet) action {
	patient := fs.String("patient", "", "patients/ID (required)")
	form := fs.String("form-version", "", "version of the consent form (required)")
	signed := fs.String("signed", "", "date signed, YYYY-MM-DD (required)")
	signer := fs.String("signer", "patient", "patient or guardian")
	guardian := fs.String("guardian-name", "", "the guardian's name, when a guardian signed")
	return func(e *env, _ []string) (proto.Message, error) {
		s, err := enumValue[pb.ConsentSigner]("signer", *signer)
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Clinical.RecordConsent(e.ctx, &pb.RecordConsentRequest{Consent: &pb.Consent{
			Patient: *patient, FormVersion: *form, SignedDate: *signed, Signer: s, GuardianName: *guardian,
		}})
		return resp.GetConsent(), err
	}
}

func clearanceRequest(fs *flag.FlagSet) action {
	patient := fs.String("patient", "", "patients/ID (required)")
	referral := fs.String("referral", "", "referrals/ID, when there is one")
	physician := fs.String("physician", "", "practitioners/ID (default: the referring physician)")
	question := fs.String("question", "", "the question for the physician (required)")
	return func(e *env, _ []string) (proto.Message, error) {
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Clinical.RequestClearance(e.ctx, &pb.RequestClearanceRequest{
			Patient: *patient, Referral: *referral, Physician: *physician, Question: *question,
		})
		return resp.GetClearance(), err
	}
}

func clearanceIssue(fs *flag.FlagSet) action {
	patient := fs.String("patient", "", "patients/ID (required unless --answering)")
	referral := fs.String("referral", "", "limit the clearance to this referral")
	answering := fs.String("answering", "", "the request this answers, clearances/ID")
	decision := fs.String("decision", "", "cleared, cleared-with-precautions or not-cleared (required)")
	days := fs.Int("days", 0, "days of validity (default 90, at most 365)")
	notes := fs.String("notes", "", "your notes")
	var avoid, limit, contra, evaluated stringList
	fs.Var(&avoid, "avoid", "technique@region to avoid; '*' for every technique or region, such as deep-tissue@lumbar (repeatable)")
	fs.Var(&limit, "limit", "technique@region/pressure maximum, such as *@cervical/light (repeatable)")
	fs.Var(&contra, "contraindicated", "technique never to use, such as hot-stone (repeatable)")
	fs.Var(&evaluated, "evaluated-red-flag", "a red flag of the patient's diagnoses you evaluated (repeatable)")
	return func(e *env, _ []string) (proto.Message, error) {
		d, err := enumValue[pb.ClearanceDecision]("decision", *decision)
		if err != nil {
			return nil, err
		}
		cl := &pb.Clearance{Patient: *patient, Referral: *referral, Decision: d, Notes: *notes}
		for _, a := range avoid {
			pc, err := parsePrecaution(a + "/")
			if err != nil {
				return nil, err
			}
			pc.Action = pb.PrecautionAction_PRECAUTION_ACTION_AVOID
			cl.Precautions = append(cl.Precautions, pc)
		}
		for _, l := range limit {
			pc, err := parsePrecaution(l)
			if err != nil {
				return nil, err
			}
			pc.Action = pb.PrecautionAction_PRECAUTION_ACTION_LIMIT_PRESSURE
			cl.Precautions = append(cl.Precautions, pc)
		}
		if cl.ContraindicatedTechniques, err = enumValues[pb.Technique]("contraindicated", contra); err != nil {
			return nil, err
		}
		if cl.EvaluatedRedFlags, err = enumValues[pb.RedFlag]("evaluated-red-flag", evaluated); err != nil {
			return nil, err
		}
		if *days > 0 {
			cl.ValidUntil = timestamppb.New(time.Now().Add(time.Duration(*days) * 24 * time.Hour))
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Clinical.IssueClearance(e.ctx, &pb.IssueClearanceRequest{Clearance: cl, RequestedClearance: *answering})
		return resp.GetClearance(), err
	}
}

// parsePrecaution parses "technique@region/pressure" where '*' stands for
// every technique or region and the pressure may be empty.
func parsePrecaution(v string) (*pb.Precaution, error) {
	tech, rest, ok1 := strings.Cut(v, "@")
	region, pressure, ok2 := strings.Cut(rest, "/")
	if !ok1 || !ok2 {
		return nil, usagef("precaution %q: want technique@region or technique@region/pressure", strings.TrimSuffix(v, "/"))
	}
	pc := &pb.Precaution{}
	var err error
	if tech != "*" {
		if pc.Technique, err = enumValue[pb.Technique]("precaution", tech); err != nil {
			return nil, err
		}
	}
	if region != "*" {
		if pc.Region, err = enumValue[pb.BodyRegion]("precaution", region); err != nil {
			return nil, err
		}
	}
	if pc.MaxPressure, err = enumValue[pb.Pressure]("precaution", pressure); err != nil {
		return nil, err
	}
	return pc, nil
}

func clearanceSuspend(fs *flag.FlagSet) action {
	flagName := fs.String("red-flag", "", "the red flag found, such as cauda-equina-symptoms (required)")
	observation := fs.String("observation", "", "what you observed (required)")
	etag := fs.String("etag", "", "the etag you read")
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "clearances/ID")
		if err != nil {
			return nil, err
		}
		rf, err := enumValue[pb.RedFlag]("red-flag", *flagName)
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Clinical.SuspendClearance(e.ctx, &pb.SuspendClearanceRequest{Name: name, RedFlag: rf, Observation: *observation, Etag: *etag})
		return resp.GetClearance(), err
	}
}

func clearanceRevoke(fs *flag.FlagSet) action {
	reason := fs.String("reason", "", "why (required)")
	etag := fs.String("etag", "", "the etag you read")
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "clearances/ID")
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Clinical.RevokeClearance(e.ctx, &pb.RevokeClearanceRequest{Name: name, Reason: *reason, Etag: *etag})
		return resp.GetClearance(), err
	}
}

func clearanceGet(fs *flag.FlagSet) action {
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "clearances/ID")
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Clinical.GetClearance(e.ctx, &pb.GetClearanceRequest{Name: name})
		return resp.GetClearance(), err
	}
}

func clearanceList(fs *flag.FlagSet) action {
	patient := fs.String("patient", "", "only this patient's")
	referral := fs.String("referral", "", "only those limited to this referral")
	status := fs.String("status", "", "only this status, such as requested or active")
	return func(e *env, _ []string) (proto.Message, error) {
		st, err := enumValue[pb.ClearanceStatus]("status", *status)
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		return c.Clinical.ListClearances(e.ctx, &pb.ListClearancesRequest{Patient: *patient, Referral: *referral, Status: st})
	}
}

func clearanceCheck(fs *flag.FlagSet) action {
	therapist := fs.String("therapist", "", "the therapist, practitioners/ID (default: you)")
	var plan stringList
	fs.Var(&plan, "treatment", "planned technique@region/pressure, such as swedish@lumbar/medium (repeatable)")
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "referrals/ID")
		if err != nil {
			return nil, err
		}
		planned, err := parseTreatments(plan)
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Clinical.CheckClearance(e.ctx, &pb.CheckClearanceRequest{Referral: name, Therapist: *therapist, Planned: planned})
		if err != nil {
			return nil, err
		}
		switch {
		case e.format == "json":
			if err := printMessage(e, resp); err != nil {
				return nil, err
			}
		case resp.GetAllowed():
			fmt.Fprintf(e.out, "allowed under %s\n", resp.GetClearance())
		default:
			fmt.Fprintln(e.out, "refused:")
			for _, v := range resp.GetViolations() {
				fmt.Fprintf(e.out, "  %s (%s): %s\n", v.GetType(), v.GetSubject(), v.GetDescription())
			}
		}
		if !resp.GetAllowed() {
			return nil, errRefused
		}
		return nil, nil
	}
}
