package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"google.golang.org/protobuf/proto"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

func init() {
	register(
		command{path: "fhir import", args: "FILE", summary: "import a FHIR R4 ServiceRequest (bare or in a Bundle) as a referral (a physician)", setup: fhirImport},
		command{path: "fhir export", args: "referrals/ID", summary: "write a referral as a FHIR R4 Bundle (JSON) to standard output", setup: fhirExport},
	)
}

func fhirImport(fs *flag.FlagSet) action {
	return func(e *env, args []string) (proto.Message, error) {
		file, err := oneArg(args, "FILE")
		if err != nil {
			return nil, err
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		return c.FHIR.ImportServiceRequest(e.ctx, &pb.ImportServiceRequestRequest{ResourceJson: data})
	}
}

// fhirExport writes the Bundle itself, indented, whatever -o says: its
// output is FHIR, not a careteam message.
func fhirExport(fs *flag.FlagSet) action {
	return func(e *env, args []string) (proto.Message, error) {
		name, err := oneArg(args, "referrals/ID")
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		resp, err := c.FHIR.ExportReferralBundle(e.ctx, &pb.ExportReferralBundleRequest{Referral: name})
		if err != nil {
			return nil, err
		}
		var out bytes.Buffer
		if err := json.Indent(&out, resp.GetBundleJson(), "", "  "); err != nil {
			return nil, fmt.Errorf("the server's Bundle is not JSON: %w", err)
		}
		out.WriteByte('\n')
		_, err = out.WriteTo(e.out)
		return nil, err
	}
}
