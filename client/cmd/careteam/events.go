package main

import (
	"flag"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/careteam/careteam/proto/careteam/v1"
)

func init() {
	register(
		command{path: "events watch", summary: "print events live, resuming after disconnects", setup: eventsWatch},
		command{path: "events list", summary: "page through past events", setup: eventsList},
	)
}

// eventFlags declares the filters both commands take.
func eventFlags(fs *flag.FlagSet) func() (*pb.WatchEventsRequest, error) {
	after := fs.Int64("after", 0, "start after this cursor (0: all retained history)")
	patient := fs.String("patient", "", "only events about this patient")
	referral := fs.String("referral", "", "only events about this referral")
	var types stringList
	fs.Var(&types, "type", "only this event type, such as referral-accepted (repeatable)")
	return func() (*pb.WatchEventsRequest, error) {
		ts, err := enumValues[pb.EventType]("type", types)
		if err != nil {
			return nil, err
		}
		return &pb.WatchEventsRequest{AfterCursor: *after, Types: ts, Patient: *patient, Referral: *referral}, nil
	}
}

func eventsWatch(fs *flag.FlagSet) action {
	request := eventFlags(fs)
	return func(e *env, _ []string) (proto.Message, error) {
		req, err := request()
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		err = c.Watch(e.ctx, req, func(ev *pb.Event) error {
			if e.format == "json" {
				b, err := protojson.Marshal(ev)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(e.out, string(b))
				return err
			}
			_, err := fmt.Fprintf(e.out, "%d\t%s\t%s\t%s\t%s\n", ev.GetCursor(), ev.GetTime().AsTime().Format("2006-01-02T15:04:05Z"),
				enumName(ev.GetType()), ev.GetResource(), ev.GetActor())
			return err
		})
		if e.ctx.Err() != nil {
			return nil, nil // interrupted: a normal end
		}
		return nil, err
	}
}

func eventsList(fs *flag.FlagSet) action {
	request := eventFlags(fs)
	size := fs.Int("page-size", 0, "results per page")
	token := fs.String("page-token", "", "page token from a previous page")
	return func(e *env, _ []string) (proto.Message, error) {
		req, err := request()
		if err != nil {
			return nil, err
		}
		c, err := e.dial()
		if err != nil {
			return nil, err
		}
		return c.Events.ListEvents(e.ctx, &pb.ListEventsRequest{
			AfterCursor: req.GetAfterCursor(), Types: req.GetTypes(), Patient: req.GetPatient(), Referral: req.GetReferral(),
			PageSize: int32(*size), PageToken: *token,
		})
	}
}
