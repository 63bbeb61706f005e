package web

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"sync"
)

// The OpenAPI (Swagger 2.0) description of the JSON API, generated from
// proto/ by protoc-gen-openapiv2 (buf.gen.yaml): every method is a POST of
// its request message's JSON to /package.Service/Method, which is the
// Connect protocol's unary call.
//
//go:embed openapi/careteam.swagger.json
var generatedOpenAPI []byte

// openAPI serves the generated description with what the generator
// cannot know from the contract: its title, the bearer token every call
// needs, the shape of errors (Connect's), and that WatchEvents streams
// (Connect's enveloped JSON, not one JSON answer).
func openAPI() http.Handler {
	var once sync.Once
	var body []byte
	var err error
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { body, err = completeOpenAPI(generatedOpenAPI) })
		if err != nil {
			http.Error(w, "the OpenAPI description is unavailable", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	})
}

const openAPIDescription = `careteam's JSON API: the Connect protocol's unary calls over HTTP/1.1 or HTTP/2.
Send POST /package.Service/Method with Content-Type: application/json, the
request message as its JSON body (proto3 JSON: lowerCamelCase names, enums
as their names, timestamps in RFC 3339), and Authorization: Bearer TOKEN.
The answer is the response message's JSON. An error is a non-2xx status
with {"code", "message", "details"}: code is the gRPC code in snake case,
details carry google.rpc.ErrorInfo (the reason a program keys off, see
ErrorReason), BadRequest and PreconditionFailure. The same services speak
gRPC and gRPC-web on the same address. WatchEvents is server streaming:
call it with a Connect or gRPC-web streaming client.`

func completeOpenAPI(generated []byte) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(generated, &doc); err != nil {
		return nil, err
	}
	doc["info"] = map[string]any{"title": "careteam", "version": "v1", "description": openAPIDescription}
	doc["securityDefinitions"] = map[string]any{
		"bearer": map[string]any{"type": "apiKey", "name": "Authorization", "in": "header",
			"description": `"Bearer " followed by a token of the configured identity provider`},
	}
	doc["security"] = []any{map[string]any{"bearer": []any{}}}
	defs, _ := doc["definitions"].(map[string]any)
	if defs != nil {
		defs["connectError"] = map[string]any{
			"type": "object",
			"properties": map[string]any{
				"code":    map[string]any{"type": "string", "description": "the gRPC code in snake case, such as invalid_argument"},
				"message": map[string]any{"type": "string"},
				"details": map[string]any{"type": "array", "items": map[string]any{"type": "object", "properties": map[string]any{
					"type":  map[string]any{"type": "string", "description": "the detail's message type, such as google.rpc.ErrorInfo"},
					"value": map[string]any{"type": "string", "format": "byte", "description": "the detail, binary protobuf"},
					"debug": map[string]any{"type": "object", "description": "the detail as JSON"},
				}}},
			},
		}
	}
	paths, _ := doc["paths"].(map[string]any)
	for name, p := range paths {
		ops, _ := p.(map[string]any)
		for _, op := range ops {
			o, _ := op.(map[string]any)
			if responses, ok := o["responses"].(map[string]any); ok {
				responses["default"] = map[string]any{"description": "An error.", "schema": map[string]any{"$ref": "#/definitions/connectError"}}
			}
			if name == "/careteam.v1.EventService/WatchEvents" {
				o["description"] = "Server streaming: use a Connect or gRPC-web streaming client (application/connect+json)."
			}
		}
	}
	return json.MarshalIndent(doc, "", "  ")
}
