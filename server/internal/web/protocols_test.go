package web_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/careteam/careteam/devtoken"
)

// methods lists every RPC of the careteam.v1 services, from the
// descriptors, so that a new RPC cannot be left out.
func methods(t *testing.T) []protoreflect.MethodDescriptor {
	var out []protoreflect.MethodDescriptor
	protoregistry.GlobalFiles.RangeFilesByPackage("careteam.v1", func(f protoreflect.FileDescriptor) bool {
		for i := range f.Services().Len() {
			ms := f.Services().Get(i).Methods()
			for j := range ms.Len() {
				out = append(out, ms.Get(j))
			}
		}
		return true
	})
	if len(out) < 50 {
		t.Fatalf("found only %d careteam methods", len(out))
	}
	return out
}

func path(m protoreflect.MethodDescriptor) string {
	return "/" + string(m.Parent().FullName()) + "/" + string(m.Name())
}

// request is what each method is called with: empty, which every method
// refuses for a reason of its own (a name missing, a role that may not),
// but WatchEvents, which is given a patient that is no resource name.
func request(m protoreflect.MethodDescriptor) proto.Message {
	msg := dynamicpb.NewMessage(m.Input())
	if m.Name() == "WatchEvents" {
		msg.Set(m.Input().Fields().ByName("patient"), protoreflect.ValueOfString("no-such-thing"))
	}
	return msg
}

// grpcCode calls m natively and returns the code.
func grpcCode(ctx context.Context, cc *grpc.ClientConn, m protoreflect.MethodDescriptor, requestID string) string {
	ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", requestID)
	resp := dynamicpb.NewMessage(m.Output())
	if !m.IsStreamingServer() {
		return status.Code(cc.Invoke(ctx, path(m), request(m), resp)).String()
	}
	stream, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, path(m))
	if err == nil {
		err = stream.SendMsg(request(m))
	}
	if err == nil {
		err = stream.RecvMsg(resp)
	}
	return status.Code(err).String()
}

// connectCode calls m with the Connect protocol in JSON over HTTP/1.1,
// as a browser does, and returns the code (in gRPC's spelling).
func connectCode(t *testing.T, addr, token string, m protoreflect.MethodDescriptor, requestID string) string {
	body, err := protojsonOf(request(m))
	if err != nil {
		t.Fatal(err)
	}
	contentType := "application/json"
	if m.IsStreamingServer() {
		contentType = "application/connect+json"
		body = envelope(0, body)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path(m), bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Connect-Protocol-Version", "1")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Request-Id", requestID)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var e struct {
		Code  string `json:"code"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if m.IsStreamingServer() {
		// The end-of-stream message, flagged 0x02, carries the error.
		for len(raw) >= 5 {
			n := binary.BigEndian.Uint32(raw[1:5])
			if raw[0]&0x02 != 0 && int(n) <= len(raw)-5 {
				_ = json.Unmarshal(raw[5:5+n], &e)
				e.Code = e.Error.Code
			}
			raw = raw[min(len(raw), 5+int(n)):]
		}
	} else if res.StatusCode != http.StatusOK {
		_ = json.Unmarshal(raw, &e)
	}
	if e.Code == "" {
		return "OK"
	}
	return connectToGRPC(e.Code)
}

// grpcWebCode calls m with gRPC-web (binary) over HTTP/1.1 and returns the
// code from the trailers.
func grpcWebCode(t *testing.T, addr, token string, m protoreflect.MethodDescriptor, requestID string) string {
	msg, err := proto.Marshal(request(m))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path(m), bytes.NewReader(envelope(0, msg)))
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	req.Header.Set("X-Grpc-Web", "1")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Request-Id", requestID)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if c := res.Header.Get("Grpc-Status"); c != "" { // trailers-only answer
		return codeName(c)
	}
	raw, _ := io.ReadAll(res.Body)
	for len(raw) >= 5 {
		n := int(binary.BigEndian.Uint32(raw[1:5]))
		if raw[0]&0x80 != 0 && n <= len(raw)-5 {
			for _, line := range strings.Split(string(raw[5:5+n]), "\r\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "grpc-status") {
					return codeName(strings.TrimSpace(v))
				}
			}
		}
		raw = raw[min(len(raw), 5+n):]
	}
	return "no status"
}

func envelope(flags byte, msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

func codeName(numeric string) string {
	n, err := strconv.Atoi(numeric)
	if err != nil {
		return "bad status " + numeric
	}
	return status.New(grpcCodeOf(n), "").Code().String()
}

// TestEveryMethodTakesOnePipelineWhateverTheProtocol calls every careteam
// method as a physician, natively and through Connect (JSON) and gRPC-web
// on HTTP/1.1: each protocol gets the same answer (the same
// authentication, policy and validation decide it), and each call is on
// the audit trail under its request id.
func TestEveryMethodTakesOnePipelineWhateverTheProtocol(t *testing.T) {
	t.Parallel()
	w := startWorld(t)
	w.seed()
	ctx := t.Context()
	token, err := devtoken.Mint(w.dataDir, "dr-ada", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	native := w.as("dr-ada")
	for _, m := range methods(t) {
		ids := map[string]string{"grpc": uuid.NewString(), "connect": uuid.NewString(), "grpc-web": uuid.NewString()}
		got := map[string]string{
			"grpc":     grpcCode(ctx, native.Conn(), m, ids["grpc"]),
			"connect":  connectCode(t, w.addr, token, m, ids["connect"]),
			"grpc-web": grpcWebCode(t, w.addr, token, m, ids["grpc-web"]),
		}
		if got["connect"] != got["grpc"] || got["grpc-web"] != got["grpc"] {
			t.Errorf("%s: gRPC %s, Connect %s, gRPC-web %s", path(m), got["grpc"], got["connect"], got["grpc-web"])
		}
		for protocol, id := range ids {
			var n int
			for deadline := time.Now().Add(5 * time.Second); n == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if err := w.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_inbox WHERE request_id = $1 AND method = $2)
					+ (SELECT count(*) FROM audit_events WHERE request_id = $1 AND method = $2)`, id, path(m)).Scan(&n); err != nil {
					t.Fatal(err)
				}
			}
			if n != 1 {
				t.Errorf("%s over %s: %d audit records under its request id, want 1", path(m), protocol, n)
			}
		}
	}
}

func protojsonOf(m proto.Message) ([]byte, error) { return protojson.Marshal(m) }

func grpcCodeOf(n int) codes.Code { return codes.Code(n) }

// connectToGRPC spells a Connect code ("invalid_argument") as gRPC does
// ("InvalidArgument").
func connectToGRPC(code string) string {
	var b strings.Builder
	for _, word := range strings.Split(code, "_") {
		if word != "" {
			b.WriteString(strings.ToUpper(word[:1]) + word[1:])
		}
	}
	return b.String()
}
