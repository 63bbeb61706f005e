package main

import (
	"flag"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

func init() {
	register(
		command{path: "audit list", summary: "list audit records (auditors)", setup: auditList},
		command{path: "audit verify", summary: "verify the audit trail's hash chains (auditors)", setup: auditVerify},
	)
}

func auditList(fs *flag.FlagSet) action {
	patient := fs.String("patient", "", "only records touching this patient")
	subject := fs.String("subject", "", "only this caller's records")
	since := fs.String("since", "", "only records at or after this time, RFC 3339")
	until := fs.String("until", "", "only records before this time, RFC 3339")
	outcome := fs.String("outcome", "", "only this outcome, such as PERMISSION_DENIED")
	emergency := fs.Bool("emergency", false, "only emergency (break-the-glass) access")
	size := fs.Int("page-size", 0, "results per page")
	token := fs.String("page-token", "", "page token from a previous page")
	return func(e *env, _ []string) (proto.Message, error) {
		req := &pb.ListAuditEventsRequest{Patient: *patient, Subject: *subject, Outcome: *outcome,
			EmergencyOnly: *emergency, PageSize: int32(*size), PageToken: *token}
		for flagName, dst := range map[string]**timestamppb.Timestamp{*since: &req.StartTime, *until: &req.EndTime} {
			if flagName == "" {
				continue
			}
			t, err := time.Parse(time.RFC3339, flagName)
			if err != nil {
				return nil, usagef("--since and --until take RFC 3339 times, such as 2026-03-04T09:00:00Z")
			}
			*dst = timestamppb.New(t)
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		return c.Audit.ListAuditEvents(e.ctx, req)
	}
}

func auditVerify(fs *flag.FlagSet) action {
	from := fs.Int64("from", 0, "first sequence to check (default: the start)")
	to := fs.Int64("to", 0, "last sequence to check (default: the end)")
	return func(e *env, _ []string) (proto.Message, error) {
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.Audit.VerifyAuditLog(e.ctx, &pb.VerifyAuditLogRequest{FromSequence: *from, ToSequence: *to})
		if err != nil {
			return nil, err
		}
		if e.format == "json" {
			if err := printMessage(e, resp); err != nil {
				return nil, err
			}
		} else if resp.GetOk() {
			fmt.Fprintf(e.out, "ok: %d records verify\n", resp.GetChecked())
		} else {
			fmt.Fprintf(e.out, "BROKEN at sequence %d: %s (%d records checked)\n", resp.GetFirstBrokenSequence(), resp.GetProblem(), resp.GetChecked())
		}
		if !resp.GetOk() {
			return nil, errBroken
		}
		return nil, nil
	}
}
