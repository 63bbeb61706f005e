package api

import (
	"context"
	"encoding/hex"
	"encoding/json"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/careteam"
)

type webhookServer struct {
	pb.UnimplementedWebhookServiceServer
	svc *careteam.Service
}

func webhookToProto(w *careteam.Webhook) *pb.Webhook {
	return &pb.Webhook{
		Name:                careteam.Webhooks.Name(w.ID),
		Url:                 w.URL,
		Types:               enumsFromDomain[pb.EventType](w.Types),
		Subject:             w.Subject,
		DeliveredCursor:     w.Cursor,
		LastDeliveryTime:    timestamp(w.LastDelivery),
		LastAttemptTime:     timestamp(w.LastAttempt),
		LastError:           w.LastError,
		ConsecutiveFailures: int32(w.Failures),
		NextAttemptTime:     timestamp(w.NextAttempt),
		CreateTime:          timestamp(w.CreateTime),
	}
}

func (s *webhookServer) CreateWebhook(ctx context.Context, req *pb.CreateWebhookRequest) (*pb.CreateWebhookResponse, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, err
	}
	w, err := s.svc.CreateWebhook(ctx, p, careteam.Webhook{URL: req.GetUrl(), Types: enumsToDomain[careteam.EventType](req.GetTypes())},
		idempotency(req.GetRequestId(), req))
	if err != nil {
		return nil, err
	}
	return &pb.CreateWebhookResponse{Webhook: webhookToProto(w), SigningSecret: hex.EncodeToString(w.Secret)}, nil
}

func (s *webhookServer) GetWebhook(ctx context.Context, req *pb.GetWebhookRequest) (*pb.GetWebhookResponse, error) {
	w, err := onNamed(ctx, careteam.Webhooks, req.GetName(), s.svc.GetWebhook)
	if err != nil {
		return nil, err
	}
	return &pb.GetWebhookResponse{Webhook: webhookToProto(w)}, nil
}

func (s *webhookServer) ListWebhooks(ctx context.Context, req *pb.ListWebhooksRequest) (*pb.ListWebhooksResponse, error) {
	rows, next, err := listed(ctx, req, func(p careteam.Principal, page careteam.Page) ([]*careteam.Webhook, uuid.UUID, error) {
		return s.svc.ListWebhooks(ctx, p, page)
	}, webhookToProto)
	if err != nil {
		return nil, err
	}
	return &pb.ListWebhooksResponse{Webhooks: rows, NextPageToken: next}, nil
}

func (s *webhookServer) DeleteWebhook(ctx context.Context, req *pb.DeleteWebhookRequest) (*pb.DeleteWebhookResponse, error) {
	_, err := onNamed(ctx, careteam.Webhooks, req.GetName(), func(ctx context.Context, p careteam.Principal, id uuid.UUID) (struct{}, error) {
		return struct{}{}, s.svc.DeleteWebhook(ctx, p, id, idempotency(req.GetRequestId(), req))
	})
	if err != nil {
		return nil, err
	}
	return &pb.DeleteWebhookResponse{}, nil
}

// EventJSON writes an event as the API's JSON, as a webhook delivers it.
func EventJSON(e *careteam.Event) (json.RawMessage, error) {
	return protojson.Marshal(eventToProto(e))
}
