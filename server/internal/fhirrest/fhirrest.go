// Package fhirrest is careteamd's FHIR R4 REST endpoint (/fhir/R4), as EHR
// integration engines expect one: the CapabilityStatement, reads, searches,
// the import of a ServiceRequest or transaction Bundle, and a referral's
// whole record.
//
// It holds no rules and reads no data of its own. Each interaction is one
// call of careteam's FhirService, made in-process through the same front
// door as every other call (the caller's token, request id, address and
// TLS state go with it), so authentication, policy, redaction, limits,
// audit and the log line are the API's own. It translates HTTP to those
// calls and their answers and errors back to FHIR.
package fhirrest

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	pb "github.com/careteam/careteam/proto/careteam/v1"
	"github.com/careteam/careteam/server/internal/fhir"
)

// Base is where the endpoint is mounted.
const Base = "/fhir/R4"

// maxBody bounds a request body: the largest import FhirService takes,
// with room for JSON's escapes.
const maxBody = 1 << 20

// mediaType is what every answer is.
const mediaType = "application/fhir+json; charset=utf-8"

// served are the resource types the endpoint reads.
var served = []string{"ServiceRequest", "Task", "Patient", "Condition", "CarePlan", "Encounter", "Observation", "Composition",
	"Practitioner", "Organization"}

// Handler serves the endpoint under Base, calling rpc (careteamd's own
// handler of the Connect protocol) for every interaction. publicURL, when
// set, is where clients reach careteamd, for the links it writes; naming
// names the definitions it serves, as the FHIR methods name them.
func Handler(rpc http.Handler, publicURL string, naming fhir.Naming) (http.Handler, error) {
	conformance, err := fhir.Conformance(naming)
	if err != nil {
		return nil, err
	}
	e := &endpoint{calls: newCalls(rpc), publicURL: publicURL, conformance: conformance}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Base+"/metadata", e.metadata)
	mux.HandleFunc("GET "+Base+"/OperationDefinition/"+everythingID, e.everythingDefinition)
	for _, typ := range conformanceTypes {
		mux.HandleFunc("GET "+Base+"/"+typ+"/{id}", func(w http.ResponseWriter, r *http.Request) { e.conformanceRead(w, r, typ) })
		mux.HandleFunc("GET "+Base+"/"+typ, func(w http.ResponseWriter, r *http.Request) { e.conformanceSearch(w, r, typ) })
	}
	mux.HandleFunc("GET "+Base+"/{type}/{id}", e.read)
	mux.HandleFunc("GET "+Base+"/ServiceRequest/{id}/$everything", e.everything)
	mux.HandleFunc("GET "+Base+"/{type}", e.search)
	mux.HandleFunc("POST "+Base+"/ServiceRequest", e.create)
	mux.HandleFunc("POST "+Base, e.transaction)
	mux.HandleFunc(Base+"/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusNotFound, issue{code: "not-supported",
			diagnostics: "careteam's FHIR endpoint does not serve this; GET " + Base + "/metadata says what it does"})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The request id the calls made for r carry, and the answer too.
		if r.Header.Get("X-Request-Id") == "" {
			r.Header.Set("X-Request-Id", uuid.NewString())
		}
		w.Header().Set("X-Request-Id", r.Header.Get("X-Request-Id"))
		// A query that does not parse is refused, not read in part: a
		// dropped filter would answer more than was asked.
		query, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			fail(w, http.StatusBadRequest, issue{code: "invalid", diagnostics: "the query string is malformed: encode each parameter's value"})
			return
		}
		if !acceptable(r, query) {
			fail(w, http.StatusNotAcceptable, issue{code: "not-supported", diagnostics: "careteam answers in application/fhir+json only"})
			return
		}
		// The calls made for r go as r's caller.
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, r)))
	}), nil
}

type endpoint struct {
	calls       *calls
	publicURL   string
	conformance []fhir.Resource
}

// conformanceTypes are the definitions careteam serves: its code systems
// and extensions, read by id or found by url, with no token, as the
// CapabilityStatement is.
var conformanceTypes = []string{"CodeSystem", "StructureDefinition"}

func (e *endpoint) conformanceRead(w http.ResponseWriter, r *http.Request, typ string) {
	for _, c := range e.conformance {
		if c.Type == typ && c.ID == r.PathValue("id") {
			write(w, http.StatusOK, c.JSON)
			return
		}
	}
	fail(w, http.StatusNotFound, issue{code: "not-found", diagnostics: typ + "/" + r.PathValue("id") + ": careteam defines none"})
}

func (e *endpoint) conformanceSearch(w http.ResponseWriter, r *http.Request, typ string) {
	query, _ := url.ParseQuery(r.URL.RawQuery) // parsed once already
	out := bundle{ResourceType: "Bundle", Type: "searchset", Link: []link{{Relation: "self", URL: e.base(r) + "/" + typ + "?" + r.URL.RawQuery}}}
	for name := range query {
		if name != "url" && name != "_format" {
			fail(w, http.StatusBadRequest, issue{code: "not-supported", diagnostics: typ + " is searched by url only"})
			return
		}
	}
	for _, c := range e.conformance {
		var m struct{ URL string }
		if c.Type != typ || json.Unmarshal(c.JSON, &m) != nil || query.Has("url") && m.URL != query.Get("url") {
			continue
		}
		out.Entry = append(out.Entry, entry{FullURL: e.base(r) + "/" + typ + "/" + c.ID, Resource: json.RawMessage(c.JSON),
			Search: &searchMode{Mode: "match"}})
	}
	writeJSON(w, http.StatusOK, out)
}

// acceptable reports whether the caller takes JSON (FHIR's _format or
// Accept), since careteam writes no XML.
func acceptable(r *http.Request, query url.Values) bool {
	if f := query.Get("_format"); f != "" {
		return f == "json" || strings.HasPrefix(f, "application/fhir+json") || strings.HasPrefix(f, "application/json")
	}
	accept := r.Header.Get("Accept")
	if accept == "" {
		return true
	}
	for _, a := range strings.Split(accept, ",") {
		a, _, _ = strings.Cut(strings.TrimSpace(a), ";")
		switch a {
		case "*/*", "application/*", "application/fhir+json", "application/json", "application/json+fhir":
			return true
		}
	}
	return false
}

// base is the endpoint's absolute address: the configured public one, else
// the one the request came to.
func (e *endpoint) base(r *http.Request) string {
	if e.publicURL != "" {
		return e.publicURL + Base
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + Base
}

func (e *endpoint) read(w http.ResponseWriter, r *http.Request) {
	if !slices.Contains(served, r.PathValue("type")) {
		fail(w, http.StatusNotFound, issue{code: "not-supported", diagnostics: "careteam serves " + strings.Join(served, ", ")})
		return
	}
	resp, err := e.calls.get.CallUnary(r.Context(), connect.NewRequest(&pb.GetFhirResourceRequest{
		ResourceType: r.PathValue("type"), Id: r.PathValue("id"),
	}))
	if err != nil {
		failCall(w, err)
		return
	}
	res := resp.Msg.GetResource()
	w.Header().Set("ETag", etag(res))
	if t := res.GetUpdateTime(); t != nil {
		w.Header().Set("Last-Modified", t.AsTime().UTC().Format(http.TimeFormat))
	}
	if matches(r.Header.Get("If-None-Match"), etag(res)) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	write(w, http.StatusOK, res.GetResourceJson())
}

// matches reports whether an If-None-Match header names etag (weakly, as
// GET allows) or is "*".
func matches(header, tag string) bool {
	for _, h := range strings.Split(header, ",") {
		h = strings.TrimSpace(h)
		if h == "*" || strings.TrimPrefix(h, "W/") == strings.TrimPrefix(tag, "W/") {
			return true
		}
	}
	return false
}

func (e *endpoint) everything(w http.ResponseWriter, r *http.Request) {
	if _, err := uuid.Parse(r.PathValue("id")); err != nil {
		fail(w, http.StatusNotFound, issue{code: "not-found", diagnostics: "ServiceRequest/" + r.PathValue("id") + ": not found"})
		return
	}
	resp, err := e.calls.export.CallUnary(r.Context(), connect.NewRequest(&pb.ExportReferralBundleRequest{
		Referral: "referrals/" + r.PathValue("id"),
	}))
	if err != nil {
		failCall(w, err)
		return
	}
	write(w, http.StatusOK, resp.Msg.GetBundleJson())
}

// Paging parameters of careteam's own: _count is FHIR's; _cursor carries
// the page token of the next link.
const cursorParam = "_cursor"

func (e *endpoint) search(w http.ResponseWriter, r *http.Request) {
	typ := r.PathValue("type")
	if !slices.Contains(served, typ) {
		fail(w, http.StatusNotFound, issue{code: "not-supported", diagnostics: "careteam serves " + strings.Join(served, ", ")})
		return
	}
	req := &pb.SearchFhirResourcesRequest{ResourceType: typ}
	query, _ := url.ParseQuery(r.URL.RawQuery) // parsed once already
	var bad []issue
	for name, values := range query {
		for _, v := range values {
			switch name {
			case "_format":
			case "_count":
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > 100 {
					bad = append(bad, issue{code: "invalid", diagnostics: "_count: want a whole number from 1 to 100"})
				}
				req.PageSize = int32(n)
			case cursorParam:
				req.PageToken = v
			case "_lastUpdated":
				// A zone's "+" sent unencoded arrives as a space.
				req.Parameters = append(req.Parameters, &pb.FhirSearchParameter{Name: name, Value: strings.ReplaceAll(v, " ", "+")})
			default:
				req.Parameters = append(req.Parameters, &pb.FhirSearchParameter{Name: name, Value: v})
			}
		}
	}
	if len(bad) > 0 {
		fail(w, http.StatusBadRequest, bad...)
		return
	}
	// In one order whatever the query's, so that a next link's page token
	// (bound to the search it continues) holds for the same search.
	slices.SortFunc(req.Parameters, func(a, b *pb.FhirSearchParameter) int {
		return cmp.Or(strings.Compare(a.GetName(), b.GetName()), strings.Compare(a.GetValue(), b.GetValue()))
	})
	resp, err := e.calls.search.CallUnary(r.Context(), connect.NewRequest(req))
	if err != nil {
		failCall(w, err)
		return
	}
	self := e.base(r) + "/" + typ + "?" + r.URL.RawQuery
	out := bundle{ResourceType: "Bundle", Type: "searchset", Link: []link{{Relation: "self", URL: self}}}
	if next := resp.Msg.GetNextPageToken(); next != "" {
		q := url.Values{}
		for name, values := range query {
			if name != cursorParam {
				q[name] = values
			}
		}
		q.Set(cursorParam, next)
		out.Link = append(out.Link, link{Relation: "next", URL: e.base(r) + "/" + typ + "?" + q.Encode()})
	}
	for _, res := range resp.Msg.GetResources() {
		out.Entry = append(out.Entry, entry{
			FullURL:  e.base(r) + "/" + res.GetResourceType() + "/" + res.GetId(),
			Resource: json.RawMessage(res.GetResourceJson()),
			Search:   &searchMode{Mode: "match"},
		})
	}
	writeJSON(w, http.StatusOK, out)
}

// create imports a ServiceRequest (with contained resources): 201 with
// its Location when the order is new; 200 with the order as careteam holds
// it, unchanged, when one of its identifiers names it already (a create
// never updates, so a repeated or late copy cannot undo what happened to
// the referral since). If-None-Exist is honoured as FHIR's conditional
// create, through those identifiers: a condition naming none of them is
// refused rather than half-honoured.
func (e *endpoint) create(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var head struct {
		ResourceType string `json:"resourceType"`
	}
	if json.Unmarshal(body, &head) != nil || head.ResourceType != "ServiceRequest" {
		fail(w, http.StatusBadRequest, issue{code: "invalid", diagnostics: "POST /ServiceRequest takes a ServiceRequest; a transaction Bundle goes to the base"})
		return
	}
	if cond := r.Header.Get("If-None-Exist"); cond != "" && !conditionNamesOrder(cond, body) {
		fail(w, http.StatusBadRequest, issue{code: "not-supported", expression: []string{"ServiceRequest.identifier"},
			diagnostics: "If-None-Exist: careteam finds an order by its identifiers; give identifier=system|value of one of the ServiceRequest's own"})
		return
	}
	imp, res, ok := e.imported(w, r, body)
	if !ok {
		return
	}
	w.Header().Set("Location", e.base(r)+"/ServiceRequest/"+res.GetId())
	w.Header().Set("ETag", etag(res))
	write(w, importStatus(imp), res.GetResourceJson())
}

// transaction imports a transaction Bundle holding one ServiceRequest and
// the resources it references, all or nothing, and answers with a
// transaction-response: an entry per entry of the request, in its order.
func (e *endpoint) transaction(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var in struct {
		ResourceType string `json:"resourceType"`
		Type         string `json:"type"`
		Entry        []struct {
			Request struct {
				Method string `json:"method"`
			} `json:"request"`
			Resource struct {
				ResourceType string `json:"resourceType"`
				Code         struct {
					Coding []struct {
						System string `json:"system"`
						Code   string `json:"code"`
					} `json:"coding"`
				} `json:"code"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.ResourceType != "Bundle" || in.Type != "transaction" {
		fail(w, http.StatusBadRequest, issue{code: "invalid", expression: []string{"Bundle.type"},
			diagnostics: "POST to the base takes a Bundle of type transaction"})
		return
	}
	// The import reads the order and what it references, and writes
	// nothing else: an entry asking for anything more is refused, not
	// answered as if done.
	var bad []issue
	orders := 0
	for i, en := range in.Entry {
		at := fmt.Sprintf("Bundle.entry[%d]", i)
		if m := en.Request.Method; m != "POST" && m != "PUT" {
			bad = append(bad, issue{code: "not-supported", expression: []string{at + ".request.method"},
				diagnostics: "careteam's transaction creates an order and what it references (POST or PUT)"})
		}
		switch t := en.Resource.ResourceType; t {
		case "ServiceRequest":
			orders++
		case "Patient", "Condition", "Practitioner", "PractitionerRole", "Organization":
		default:
			bad = append(bad, issue{code: "not-supported", expression: []string{at + ".resource"},
				diagnostics: fmt.Sprintf("careteam's transaction does not take a %q", t)})
		}
	}
	if orders != 1 {
		bad = append(bad, issue{code: "invalid", expression: []string{"Bundle.entry"}, diagnostics: "a transaction holds exactly one ServiceRequest"})
	}
	if len(bad) > 0 {
		fail(w, http.StatusBadRequest, bad...)
		return
	}
	imp, res, ok := e.imported(w, r, body)
	if !ok {
		return
	}
	conditions := map[string]string{}
	for _, d := range imp.GetDiagnoses() {
		conditions[d.GetIcd10Code()] = e.base(r) + "/Condition/" + strings.TrimPrefix(d.GetName(), "diagnoses/")
	}
	out := bundle{ResourceType: "Bundle", Type: "transaction-response"}
	for _, en := range in.Entry {
		// Directory entries and what the order does not cite are read, not
		// written: 200 with no location.
		resp := &entryResponse{Status: "200 OK"}
		switch en.Resource.ResourceType {
		case "ServiceRequest":
			resp = &entryResponse{Status: fmt.Sprintf("%d %s", importStatus(imp), http.StatusText(importStatus(imp))), Location: e.base(r) + "/ServiceRequest/" + res.GetId(), Etag: etag(res)}
		case "Patient":
			resp.Location = e.base(r) + "/Patient/" + strings.TrimPrefix(imp.GetPatient().GetName(), "patients/")
		case "Condition":
			for _, c := range en.Resource.Code.Coding {
				if l, ok := conditions[c.Code]; ok && c.System == "http://hl7.org/fhir/sid/icd-10-cm" {
					resp.Location = l
				}
			}
		}
		out.Entry = append(out.Entry, entry{Response: resp})
	}
	writeJSON(w, http.StatusOK, out)
}

// imported imports body and reads back the ServiceRequest it became.
func (e *endpoint) imported(w http.ResponseWriter, r *http.Request, body []byte) (*pb.ImportServiceRequestResponse, *pb.FhirResource, bool) {
	resp, err := e.calls.imp.CallUnary(r.Context(), connect.NewRequest(&pb.ImportServiceRequestRequest{ResourceJson: body, CreateOnly: true}))
	if err != nil {
		failCall(w, err)
		return nil, nil, false
	}
	id := strings.TrimPrefix(resp.Msg.GetReferral().GetName(), "referrals/")
	read, err := e.calls.get.CallUnary(r.Context(), connect.NewRequest(&pb.GetFhirResourceRequest{ResourceType: "ServiceRequest", Id: id}))
	if err != nil {
		failCall(w, err)
		return nil, nil, false
	}
	return resp.Msg, read.Msg.GetResource(), true
}

// importStatus is 201 for an order imported now, 200 for one found.
func importStatus(imp *pb.ImportServiceRequestResponse) int {
	if imp.GetCreated() {
		return http.StatusCreated
	}
	return http.StatusOK
}

func etag(res *pb.FhirResource) string { return `W/"` + res.GetVersion() + `"` }

// conditionNamesOrder reports whether an If-None-Exist query is
// identifier=system|value naming one of the order's own identifiers, the
// only condition careteam's import key can honour.
func conditionNamesOrder(cond string, body []byte) bool {
	q, err := url.ParseQuery(cond)
	if err != nil || len(q) != 1 || len(q["identifier"]) != 1 {
		return false
	}
	system, value, ok := strings.Cut(q.Get("identifier"), "|")
	if !ok {
		return false
	}
	var sr struct {
		Identifier []struct {
			System string `json:"system"`
			Value  string `json:"value"`
		} `json:"identifier"`
	}
	if json.Unmarshal(body, &sr) != nil {
		return false
	}
	for _, id := range sr.Identifier {
		if id.System == system && id.Value == value {
			return true
		}
	}
	return false
}

// readBody reads a bounded FHIR JSON body.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/fhir+json" && ct != "application/json" && ct != "application/json+fhir" {
		fail(w, http.StatusUnsupportedMediaType, issue{code: "not-supported", diagnostics: "send application/fhir+json"})
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		fail(w, http.StatusRequestEntityTooLarge, issue{code: "too-costly", diagnostics: fmt.Sprintf("a body may hold at most %d bytes", maxBody)})
		return nil, false
	case err != nil:
		fail(w, http.StatusBadRequest, issue{code: "invalid", diagnostics: "the body could not be read"})
		return nil, false
	}
	return body, true
}

func write(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", mediaType)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own types of strings and raw JSON the API wrote.
		status, body = http.StatusInternalServerError, []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`)
	}
	write(w, status, body)
}

type bundle struct {
	ResourceType string  `json:"resourceType"`
	Type         string  `json:"type"`
	Timestamp    string  `json:"timestamp,omitempty"`
	Link         []link  `json:"link,omitempty"`
	Entry        []entry `json:"entry,omitempty"`
}

type link struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

type entry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Search   *searchMode     `json:"search,omitempty"`
	Response *entryResponse  `json:"response,omitempty"`
}

type searchMode struct {
	Mode string `json:"mode"`
}

type entryResponse struct {
	Status   string `json:"status"`
	Location string `json:"location,omitempty"`
	Etag     string `json:"etag,omitempty"`
}

// calls are the FhirService methods the endpoint makes.
type calls struct {
	get    *connect.Client[pb.GetFhirResourceRequest, pb.GetFhirResourceResponse]
	search *connect.Client[pb.SearchFhirResourcesRequest, pb.SearchFhirResourcesResponse]
	export *connect.Client[pb.ExportReferralBundleRequest, pb.ExportReferralBundleResponse]
	imp    *connect.Client[pb.ImportServiceRequestRequest, pb.ImportServiceRequestResponse]
}

func newCalls(rpc http.Handler) *calls {
	hc := &http.Client{Transport: inProcess{rpc}}
	const host = "http://careteamd"
	return &calls{
		get:    connect.NewClient[pb.GetFhirResourceRequest, pb.GetFhirResourceResponse](hc, host+pb.FhirService_GetFhirResource_FullMethodName),
		search: connect.NewClient[pb.SearchFhirResourcesRequest, pb.SearchFhirResourcesResponse](hc, host+pb.FhirService_SearchFhirResources_FullMethodName),
		export: connect.NewClient[pb.ExportReferralBundleRequest, pb.ExportReferralBundleResponse](hc, host+pb.FhirService_ExportReferralBundle_FullMethodName),
		imp:    connect.NewClient[pb.ImportServiceRequestRequest, pb.ImportServiceRequestResponse](hc, host+pb.FhirService_ImportServiceRequest_FullMethodName),
	}
}

// forwarded are the caller's headers a call carries on: its credentials,
// request id, purpose of use, and the physician an integration acts for.
var forwarded = []string{"Authorization", "X-Request-Id", "X-Purpose-Of-Use", "X-Emergency-Reason", "X-Act-For"}

// inProcess hands a call to careteamd's own handler as if the FHIR
// request's caller had made it: from its address, over its TLS connection,
// with its headers.
type inProcess struct{ rpc http.Handler }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	from, ok := req.Context().Value(callerKey{}).(*http.Request)
	if !ok {
		return nil, errors.New("fhirrest: a call without the request it is made for")
	}
	req.RemoteAddr, req.TLS = from.RemoteAddr, from.TLS
	for _, h := range forwarded {
		if v := from.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	t.rpc.ServeHTTP(rec, req)
	return &http.Response{
		Status: http.StatusText(rec.status), StatusCode: rec.status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Request: req,
	}, nil
}

type callerKey struct{}

// recorder keeps a unary answer; FhirService's answers are bounded by the
// API's message size.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}
func (r *recorder) Write(p []byte) (int, error) { r.wrote = true; return r.body.Write(p) }
func (r *recorder) Flush()                      {}
