package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/careteam/careteam/server/internal/careteam"
)

// Domain enums are strings equal to the proto enum value names without the
// enum's prefix (ROLE_PHYSICIAN <-> "PHYSICIAN"), so one pair of functions
// converts them all.

// enumToDomain converts a proto enum value; the zero value becomes "".
func enumToDomain[T ~string](e protoreflect.Enum) T {
	if e.Number() == 0 {
		return ""
	}
	v := e.Descriptor().Values().ByNumber(e.Number())
	if v == nil {
		return ""
	}
	return T(strings.TrimPrefix(string(v.Name()), enumPrefix(e.Descriptor())))
}

// enumFromDomain converts a domain enum value to the proto enum E; "" or an
// unknown value becomes the zero value.
func enumFromDomain[E ~int32, T ~string](v T) E {
	var zero E
	d := any(zero).(protoreflect.Enum).Descriptor()
	if ev := d.Values().ByName(protoreflect.Name(enumPrefix(d) + string(v))); ev != nil && v != "" {
		return E(ev.Number())
	}
	return zero
}

// enumPrefix is the prefix buf's ENUM_VALUE_PREFIX rule gives every value:
// the enum's name in upper snake case and an underscore.
func enumPrefix(d protoreflect.EnumDescriptor) string {
	return strings.TrimSuffix(string(d.Values().ByNumber(0).Name()), "UNSPECIFIED")
}

func enumsToDomain[T ~string, E protoreflect.Enum](es []E) []T {
	out := make([]T, 0, len(es))
	for _, e := range es {
		out = append(out, enumToDomain[T](e))
	}
	return out
}

func enumsFromDomain[E ~int32, T ~string](vs []T) []E {
	out := make([]E, 0, len(vs))
	for _, v := range vs {
		out = append(out, enumFromDomain[E](v))
	}
	return out
}

// parseName returns the id of a resource name in c; field is the request
// path for the error.
func parseName(c careteam.Collection, field, name string) (uuid.UUID, error) {
	id, err := c.Parse(name)
	if err != nil {
		return uuid.Nil, invalid(field, err.Error())
	}
	return id, nil
}

// parseOptionalName is parseName for a reference that may be empty.
func parseOptionalName(c careteam.Collection, field, name string) (uuid.UUID, error) {
	if name == "" {
		return uuid.Nil, nil
	}
	return parseName(c, field, name)
}

func invalid(field, description string) error {
	return &careteam.InvalidError{Violations: []careteam.FieldViolation{{Field: field, Description: description}}}
}

const dateLayout = "2006-01-02"

// parseDate parses "YYYY-MM-DD"; "" is the zero time.
func parseDate(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		return time.Time{}, invalid(field, "must be a calendar date, YYYY-MM-DD")
	}
	return t, nil
}

func formatDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(dateLayout)
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// timeOf converts an optional timestamp; nil is the zero time.
func timeOf(field string, ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, invalid(field, "must be a valid timestamp")
	}
	return ts.AsTime(), nil
}

// idempotency makes the domain's idempotency key from a request: its
// request_id and a hash of its content, so a reused id with a different
// request is refused.
func idempotency(requestID string, req proto.Message) careteam.Idempotency {
	if requestID == "" {
		return careteam.Idempotency{}
	}
	// protovalidate has checked the format already.
	id, err := uuid.Parse(requestID)
	if err != nil {
		return careteam.Idempotency{}
	}
	return careteam.Idempotency{RequestID: id, Hash: requestHash(req)}
}

// requestHash hashes a request's deterministic encoding.
func requestHash(req proto.Message) []byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	h := sha256.Sum256(b)
	return h[:]
}

// pageToken is the opaque AIP-158 page token: where the next page starts
// (a row id, or a sequence), and a hash of the request's filters so a
// token is not used with others.
type pageToken struct {
	After  string `json:"a"`
	Filter []byte `json:"f"`
}

// filterHash hashes a list request without its paging fields.
func filterHash(req proto.Message) []byte {
	c := proto.Clone(req)
	r := c.ProtoReflect()
	for _, name := range []protoreflect.Name{"page_token", "page_size"} {
		if fd := r.Descriptor().Fields().ByName(name); fd != nil {
			r.Clear(fd)
		}
	}
	return requestHash(c)[:8]
}

// decodeToken returns where a page token says to continue, "" for none.
func decodeToken(req proto.Message, token string) (string, error) {
	if token == "" {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	var pt pageToken
	if err == nil {
		err = json.Unmarshal(raw, &pt)
	}
	if err != nil || pt.After == "" {
		return "", invalid("page_token", "malformed page token")
	}
	if string(pt.Filter) != string(filterHash(req)) {
		return "", invalid("page_token", "the request's filters changed since the page token was issued")
	}
	return pt.After, nil
}

func encodeToken(req proto.Message, after string) string {
	b, err := json.Marshal(pageToken{After: after, Filter: filterHash(req)})
	if err != nil {
		panic(fmt.Sprintf("encoding a page token: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodePage returns the domain page a list request asks for.
func decodePage(req proto.Message, token string, size int32) (careteam.Page, error) {
	page := careteam.Page{Size: int(size)}
	after, err := decodeToken(req, token)
	if err != nil || after == "" {
		return page, err
	}
	if page.After, err = uuid.Parse(after); err != nil {
		return page, invalid("page_token", "malformed page token")
	}
	return page, nil
}

// encodePage returns the next page token, or "" after the last page.
func encodePage(req proto.Message, next uuid.UUID) string {
	if next == uuid.Nil {
		return ""
	}
	return encodeToken(req, next.String())
}

// pageRequest is a List request with a keyset page.
type pageRequest interface {
	proto.Message
	GetPageToken() string
	GetPageSize() int32
}

// listed runs a List call: the caller and the page token it asks after,
// then list (which reads the request's filter and calls the use case),
// then each row converted and the next page's token.
func listed[Row, Out any](ctx context.Context, req pageRequest, list func(careteam.Principal, careteam.Page) ([]Row, uuid.UUID, error),
	conv func(Row) Out) ([]Out, string, error) {
	p, err := principalFrom(ctx)
	if err != nil {
		return nil, "", err
	}
	page, err := decodePage(req, req.GetPageToken(), req.GetPageSize())
	if err != nil {
		return nil, "", err
	}
	rows, next, err := list(p, page)
	if err != nil {
		return nil, "", err
	}
	out := make([]Out, len(rows))
	for i, r := range rows {
		out[i] = conv(r)
	}
	return out, encodePage(req, next), nil
}

// decodeSequence returns the sequence a page token continues after, 0 for
// the first page.
func decodeSequence(req proto.Message, token string) (int64, error) {
	after, err := decodeToken(req, token)
	if err != nil || after == "" {
		return 0, err
	}
	seq, err := strconv.ParseInt(after, 10, 64)
	if err != nil || seq < 0 {
		return 0, invalid("page_token", "malformed page token")
	}
	return seq, nil
}

// encodeSequence returns the token of the page after seq, or "" for none.
func encodeSequence(req proto.Message, seq int64) string {
	if seq == 0 {
		return ""
	}
	return encodeToken(req, strconv.FormatInt(seq, 10))
}

// maskPaths checks an update mask against the fields a method may change
// and returns the set of paths named.
func maskPaths(field string, paths []string, allowed ...string) (map[string]bool, error) {
	set := map[string]bool{}
	var bad []careteam.FieldViolation
	for _, p := range paths {
		ok := false
		for _, a := range allowed {
			if p == a {
				ok = true
				break
			}
		}
		if !ok {
			bad = append(bad, careteam.FieldViolation{Field: field, Description: fmt.Sprintf("%q cannot be updated; allowed: %s", p, strings.Join(allowed, ", "))})
		}
		set[p] = true
	}
	if len(paths) == 0 {
		bad = append(bad, careteam.FieldViolation{Field: field, Description: "name at least one field to update"})
	}
	if bad != nil {
		return nil, &careteam.InvalidError{Violations: bad}
	}
	return set, nil
}
