package web_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/careteam/careteam/devtoken"
	pb "github.com/careteam/careteam/proto/careteam/v1"

	"github.com/careteam/careteam/server/internal/fhir"
)

// fhirCall is one HTTP exchange with the FHIR endpoint.
type fhirCall struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the answer's body.
func (c fhirCall) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(c.body, &m); err != nil {
		t.Fatalf("%d %s: not JSON: %v", c.status, c.body, err)
	}
	return m
}

// fhirDo calls the endpoint as subject ("" for no token); headers are
// name, value pairs.
func (w *world) fhirDo(subject, method, path string, body []byte, headers ...string) fhirCall {
	t := w.t
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+w.addr+"/fhir/R4"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	if subject != "" {
		tok, err := w.mint(subject)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusNotModified && !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	// Every answer is valid R4, errors included. fhir.Validate also holds
	// a Bundle's references to its own entries, as careteam's export does;
	// a searchset's and a transaction-response's resolve against the
	// endpoint, so their resources are checked one by one.
	validate := func(what string, b []byte) {
		if err := fhir.Validate(b); err != nil {
			t.Errorf("%s %s answered %s that is not valid R4: %v\n%s", method, path, what, err, b)
		}
	}
	var bundle struct {
		Type  string `json:"type"`
		Entry []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	switch _ = json.Unmarshal(raw, &bundle); {
	case len(raw) == 0:
	case bundle.Type == "searchset" || bundle.Type == "transaction-response":
		for i, e := range bundle.Entry {
			if e.Resource != nil {
				validate(fmt.Sprintf("entry %d", i), e.Resource)
			}
		}
	default:
		validate("a resource", raw)
	}
	return fhirCall{status: res.StatusCode, header: res.Header, body: raw}
}

// outcome is an OperationOutcome's issues as "code expression diagnostics".
func outcome(t *testing.T, c fhirCall) string {
	t.Helper()
	m := c.json(t)
	if m["resourceType"] != "OperationOutcome" {
		t.Fatalf("%d: a %v, want an OperationOutcome", c.status, m["resourceType"])
	}
	var out []string
	for _, is := range m["issue"].([]any) {
		is := is.(map[string]any)
		out = append(out, fmt.Sprint(is["code"], " ", is["expression"], " ", is["diagnostics"]))
	}
	return strings.Join(out, "; ")
}

// importable is a bare ServiceRequest as an EHR sends one: its patient
// contained, the practice named by careteam's id, the reason coded.
func importable(identifier, practice string) []byte {
	return fmt.Appendf(nil, `{
	  "resourceType": "ServiceRequest",
	  "contained": [{"resourceType": "Patient", "id": "p",
	    "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN-77"}],
	    "name": [{"family": "Nguyen", "given": ["Mai"]}], "gender": "female", "birthDate": "1985-02-14"}],
	  "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5.99.1", "value": %q}],
	  "status": "active", "intent": "order", "priority": "routine",
	  "subject": {"reference": "#p"},
	  "performer": [{"reference": "Organization/%s"}],
	  "quantityQuantity": {"value": 6, "unit": "visits"},
	  "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.50"}]}],
	  "note": [{"text": %q}]
	}`, identifier, strings.TrimPrefix(practice, "organizations/"), clinicalNote)
}

// TestFHIREndpoint drives /fhir/R4 as an EHR integration does: the
// CapabilityStatement, an import and its retry, reads that follow every
// reference, searches with paging, and the refusals, each an
// OperationOutcome with the right status; every answer is valid R4, and
// every interaction is audited as the API call it is.
func TestFHIREndpoint(t *testing.T) {
	w := startWorld(t)
	w.seed()

	t.Run("metadata", func(t *testing.T) {
		c := w.fhirDo("", "GET", "/metadata", nil)
		m := c.json(t)
		if c.status != http.StatusOK || m["resourceType"] != "CapabilityStatement" || m["fhirVersion"] != "4.0.1" {
			t.Fatalf("%d %v %v", c.status, m["resourceType"], m["fhirVersion"])
		}
		// Every careteam system and extension URL resolves, without a token.
		for _, u := range []string{"urn:careteam:technique", "urn:careteam:referral-state", "urn:careteam:measure"} {
			if m := w.fhirDo("", "GET", "/CodeSystem?url="+url.QueryEscape(u), nil).json(t); len(m["entry"].([]any)) != 1 {
				t.Errorf("CodeSystem?url=%s: %v", u, m["entry"])
			}
		}
		if c := w.fhirDo("", "GET", "/StructureDefinition/red-flag", nil); c.status != http.StatusOK || !bytes.Contains(c.body, []byte(`"urn:careteam:fhir:extension:red-flag"`)) {
			t.Errorf("the red flag extension: %d %s", c.status, c.body)
		}
		capable := string(c.body)
		for _, want := range []string{`"type":"Task"`, `"name":"owner"`, `"name":"_lastUpdated"`, `"code":"create"`, `"code":"transaction"`} {
			if !strings.Contains(capable, want) {
				t.Errorf("the CapabilityStatement does not say %s", want)
			}
		}
	})

	var location string
	t.Run("create, and its retry", func(t *testing.T) {
		body := importable("SR-77", w.orgs["harbor"])
		c := w.fhirDo("dr-ada", "POST", "/ServiceRequest", body, "X-Request-Id", "fhir-create-1")
		if c.status != http.StatusCreated {
			t.Fatalf("%d %s", c.status, c.body)
		}
		location = c.header.Get("Location")
		sr := c.json(t)
		if !strings.HasSuffix(location, "/fhir/R4/ServiceRequest/"+sr["id"].(string)) || c.header.Get("ETag") == "" {
			t.Errorf("Location %q, ETag %q, id %v", location, c.header.Get("ETag"), sr["id"])
		}
		again := w.fhirDo("dr-ada", "POST", "/ServiceRequest", body, "If-None-Exist", "identifier=urn:oid:2.16.840.1.113883.19.5.99.1|SR-77")
		if again.status != http.StatusOK || again.header.Get("Location") != location {
			t.Errorf("the retry: %d at %q, want 200 at %q", again.status, again.header.Get("Location"), location)
		}
		other := w.fhirDo("dr-ada", "POST", "/ServiceRequest", body, "If-None-Exist", "identifier=urn:x|not-this-order")
		if other.status != http.StatusBadRequest {
			t.Errorf("a condition careteam cannot honour: %d, want 400", other.status)
		}
		if again.header.Get("X-Request-Id") == "" {
			t.Error("the answer carries no X-Request-Id")
		}
		if n := w.audited("fhir-create-1", "/careteam.v1.FhirService/ImportServiceRequest"); n != 1 {
			t.Errorf("the create left %d audit records of its import, want 1", n)
		}
	})
	id := location[strings.LastIndex(location, "/")+1:]

	t.Run("read, and follow every reference", func(t *testing.T) {
		task := w.fhirDo("dr-ada", "GET", "/Task/"+id, nil, "X-Request-Id", "fhir-read-1")
		if task.status != http.StatusOK {
			t.Fatalf("%d %s", task.status, task.body)
		}
		tm := task.json(t)
		if tm["status"] != "requested" {
			t.Errorf("the Task is %v", tm["status"])
		}
		if n := w.audited("fhir-read-1", "/careteam.v1.FhirService/GetFhirResource"); n != 1 {
			t.Errorf("the read left %d audit records, want 1", n)
		}
		var touched []string
		if err := w.pool.QueryRow(t.Context(), `SELECT resources FROM audit_inbox WHERE request_id = $1
			UNION ALL SELECT resources FROM audit_events WHERE request_id = $1`, "fhir-read-1").Scan(&touched); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(touched, "referrals/"+id) {
			t.Errorf("the read's audit record names %v, not the referral it read", touched)
		}
		seen := map[string]bool{}
		queue := []string{"Task/" + id}
		for len(queue) > 0 {
			ref := queue[0]
			queue = queue[1:]
			if seen[ref] {
				continue
			}
			seen[ref] = true
			c := w.fhirDo("dr-ada", "GET", "/"+ref, nil)
			if c.status != http.StatusOK {
				t.Errorf("GET %s: %d %s", ref, c.status, c.body)
				continue
			}
			if m := c.json(t); m["resourceType"].(string)+"/"+m["id"].(string) != ref {
				t.Errorf("GET %s gave %v/%v", ref, m["resourceType"], m["id"])
			}
			queue = append(queue, references(c.body)...)
		}
		for _, typ := range []string{"ServiceRequest/", "Patient/", "Practitioner/", "Organization/", "Composition/"} {
			if !slices.ContainsFunc(slices.Collect(maps.Keys(seen)), func(r string) bool { return strings.HasPrefix(r, typ) }) {
				t.Errorf("no %s reached from the Task (reached %v)", typ, seen)
			}
		}
		etag := task.header.Get("ETag")
		if c := w.fhirDo("dr-ada", "GET", "/Task/"+id, nil, "If-None-Match", etag); c.status != http.StatusNotModified || len(c.body) != 0 {
			t.Errorf("If-None-Match %s: %d", etag, c.status)
		}
		everything := w.fhirDo("dr-ada", "GET", "/ServiceRequest/"+id+"/$everything", nil).json(t)
		if everything["resourceType"] != "Bundle" || len(everything["entry"].([]any)) < 5 {
			t.Errorf("$everything: a %v of %d entries", everything["resourceType"], len(everything["entry"].([]any)))
		}
	})

	t.Run("a coordinator reads no clinical text", func(t *testing.T) {
		for _, ref := range []string{"ServiceRequest/" + id, "Task/" + id, "Composition/" + id} {
			c := w.fhirDo("coord-cy", "GET", "/"+ref, nil)
			if c.status != http.StatusOK || bytes.Contains(c.body, []byte(clinicalNote)) {
				t.Errorf("GET %s as the coordinator: %d, clinical text %v", ref, c.status, bytes.Contains(c.body, []byte(clinicalNote)))
			}
		}
		if c := w.fhirDo("dr-ada", "GET", "/ServiceRequest/"+id, nil); !bytes.Contains(c.body, []byte(clinicalNote)) {
			t.Error("the referring physician does not read the order's note either: the check above proves nothing")
		}
	})

	t.Run("search, page by page", func(t *testing.T) {
		owner := "Organization/" + strings.TrimPrefix(w.orgs["harbor"], "organizations/")
		path := "/Task?owner=" + owner + "&status=requested,received&_count=2"
		var ids []string
		for pages := 0; path != ""; pages++ {
			if pages > 5 {
				t.Fatal("the next links do not end")
			}
			c := w.fhirDo("dr-ada", "GET", path, nil)
			m := c.json(t)
			if c.status != http.StatusOK || m["type"] != "searchset" {
				t.Fatalf("%d %s", c.status, c.body)
			}
			entries, _ := m["entry"].([]any)
			if len(entries) > 2 {
				t.Errorf("%d entries on a page of 2", len(entries))
			}
			for _, e := range entries {
				e := e.(map[string]any)
				res := e["resource"].(map[string]any)
				if !strings.HasSuffix(e["fullUrl"].(string), "/Task/"+res["id"].(string)) {
					t.Errorf("fullUrl %v of Task %v", e["fullUrl"], res["id"])
				}
				ids = append(ids, res["id"].(string))
			}
			path = ""
			for _, l := range m["link"].([]any) {
				if l := l.(map[string]any); l["relation"] == "next" {
					path = strings.TrimPrefix(l["url"].(string), "http://"+w.addr+"/fhir/R4")
				}
			}
		}
		// The seed's two referrals and the import, each once.
		if len(ids) != 3 || !slices.Contains(ids, id) || len(slices.Compact(slices.Sorted(slices.Values(ids)))) != 3 {
			t.Errorf("found %v", ids)
		}
		future := w.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		if m := w.fhirDo("dr-ada", "GET", "/ServiceRequest?_lastUpdated=gt"+future, nil).json(t); m["entry"] != nil {
			t.Errorf("changed after %s: %v", future, m["entry"])
		}
		// By the EHR's own identifier: the order, for those who may read it.
		byID := "/ServiceRequest?identifier=" + url.QueryEscape("urn:oid:2.16.840.1.113883.19.5.99.1|SR-77")
		if m := w.fhirDo("dr-ada", "GET", byID, nil).json(t); len(m["entry"].([]any)) != 1 ||
			m["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["id"] != id {
			t.Errorf("by identifier: %v", m["entry"])
		}
		if m := w.fhirDo("lmt-dee", "GET", byID, nil).json(t); m["entry"] != nil {
			t.Errorf("another practice's therapist found the order by its identifier: %v", m["entry"])
		}
		if c := w.fhirDo("dr-ada", "GET", byID+"&status=active", nil); c.status != http.StatusBadRequest {
			t.Errorf("identifier with another parameter: %d", c.status)
		}
		// Another practice's therapist finds none of it.
		if m := w.fhirDo("lmt-dee", "GET", "/Task?owner="+owner, nil).json(t); m["entry"] != nil {
			t.Errorf("another practice's therapist found %v", m["entry"])
		}
	})

	t.Run("refusals", func(t *testing.T) {
		tests := []struct {
			name, subject, method, path string
			body                        []byte
			headers                     []string
			status                      int
			says                        string
		}{
			{"no token", "", "GET", "/Task/" + id, nil, nil, http.StatusUnauthorized, "login"},
			{"another practice's therapist", "lmt-dee", "GET", "/ServiceRequest/" + id, nil, nil, http.StatusForbidden, "forbidden"},
			{"an id that cannot be", "dr-ada", "GET", "/Task/not-a-referral", nil, nil, http.StatusNotFound, "not-found"},
			{"a type careteam does not serve", "dr-ada", "GET", "/Medication/" + uuid.NewString(), nil, nil, http.StatusNotFound, "not-supported"},
			{"a search of a type careteam does not serve", "dr-ada", "GET", "/Medication?code=x", nil, nil, http.StatusNotFound, "not-supported"},
			{"a query that does not parse", "dr-ada", "GET", "/Task?patient=%ZZ&_count=1", nil, nil, http.StatusBadRequest, "malformed"},
			{"a Bundle posted as a ServiceRequest", "dr-ada", "POST", "/ServiceRequest",
				[]byte(`{"resourceType":"Bundle","type":"transaction"}`), nil, http.StatusBadRequest, "a transaction Bundle goes to the base"},
			{"a transaction that deletes", "dr-ada", "POST", "", fmt.Appendf(nil,
				`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":%s,"request":{"method":"POST","url":"ServiceRequest"}},`+
					`{"request":{"method":"DELETE","url":"Patient/1"}},{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"}},"request":{"method":"POST","url":"Observation"}}]}`,
				importable("SR-80", w.orgs["harbor"])), nil, http.StatusBadRequest, "Bundle.entry[1].request.method"},
			{"$everything of no referral", "dr-ada", "GET", "/ServiceRequest/not-a-referral/$everything", nil, nil, http.StatusNotFound, "not-found"},
			{"an unknown search parameter", "dr-ada", "GET", "/Task?code=xyz", nil, nil, http.StatusBadRequest, `search parameter "code"`},
			{"a bad status and a bad date at once", "dr-ada", "GET", "/Task?status=nonsense&_lastUpdated=gtyesterday", nil, nil,
				http.StatusBadRequest, "_lastUpdated"},
			{"a _count too large", "dr-ada", "GET", "/Task?_count=1000", nil, nil, http.StatusBadRequest, "_count"},
			{"XML", "dr-ada", "GET", "/Task/" + id, nil, []string{"Accept", "application/fhir+xml"}, http.StatusNotAcceptable, "not-supported"},
			{"an order without its subject", "dr-ada", "POST", "/ServiceRequest",
				[]byte(`{"resourceType":"ServiceRequest","status":"active","intent":"order"}`), nil, http.StatusBadRequest, "ServiceRequest.subject"},
			{"a therapist importing", "lmt-ben", "POST", "/ServiceRequest", importable("SR-78", w.orgs["harbor"]), nil, http.StatusForbidden, "forbidden"},
			{"a body too large", "dr-ada", "POST", "/ServiceRequest", bytes.Repeat([]byte(" "), 2<<20), nil, http.StatusRequestEntityTooLarge, "too-costly"},
			{"a Bundle that is no transaction", "dr-ada", "POST", "", []byte(`{"resourceType":"Bundle","type":"batch"}`), nil,
				http.StatusBadRequest, "Bundle.type"},
			{"an interaction careteam does not serve", "dr-ada", "DELETE", "/Task/" + id, nil, nil, http.StatusNotFound, "not-supported"},
		}
		for _, tc := range tests {
			c := w.fhirDo(tc.subject, tc.method, tc.path, tc.body, tc.headers...)
			if c.status != tc.status {
				t.Errorf("%s: %d, want %d: %s", tc.name, c.status, tc.status, c.body)
				continue
			}
			if got := outcome(t, c); !strings.Contains(got, tc.says) {
				t.Errorf("%s: the outcome says %q, not %q", tc.name, got, tc.says)
			}
		}
		// Every entry the transaction cannot do is named.
		del := w.fhirDo("dr-ada", "POST", "", fmt.Appendf(nil,
			`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":%s,"request":{"method":"POST","url":"ServiceRequest"}},`+
				`{"request":{"method":"DELETE","url":"Patient/1"}},{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"}},"request":{"method":"POST","url":"Observation"}}]}`,
			importable("SR-80", w.orgs["harbor"])))
		if got := outcome(t, del); !strings.Contains(got, "Bundle.entry[2].resource") {
			t.Errorf("the transaction's refusal: %s", got)
		}
		// Both bad parameters are reported at once.
		c := w.fhirDo("dr-ada", "GET", "/Task?status=nonsense&_lastUpdated=gtyesterday", nil)
		if got := outcome(t, c); !strings.Contains(got, "status") || !strings.Contains(got, "_lastUpdated") {
			t.Errorf("two bad parameters, the outcome says %q", got)
		}
		if c := w.fhirDo("", "GET", "/Task/"+id, nil); !strings.HasPrefix(c.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without WWW-Authenticate: %q", c.header.Get("WWW-Authenticate"))
		}
		// Nothing refused was written.
		var n int
		if err := w.pool.QueryRow(t.Context(), `SELECT count(*) FROM referrals`).Scan(&n); err != nil || n != 3 {
			t.Errorf("%d referrals after the refusals, want 3 (%v)", n, err)
		}
	})

	t.Run("transaction", func(t *testing.T) {
		var b map[string]any
		if err := json.Unmarshal(importable("SR-79", w.orgs["harbor"]), &b); err != nil {
			t.Fatal(err)
		}
		tx, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
			map[string]any{"fullUrl": "urn:uuid:" + uuid.NewString(), "resource": b,
				"request": map[string]any{"method": "POST", "url": "ServiceRequest"}},
		}})
		c := w.fhirDo("dr-ada", "POST", "", tx)
		m := c.json(t)
		if c.status != http.StatusOK || m["type"] != "transaction-response" || len(m["entry"].([]any)) != 1 {
			t.Fatalf("%d %s", c.status, c.body)
		}
		resp := m["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)
		if resp["status"] != "201 Created" || !strings.Contains(resp["location"].(string), "/ServiceRequest/") {
			t.Errorf("the entry's response: %v", resp)
		}
	})
}

// audited counts the audit records of method under a request id.
func (w *world) audited(requestID, method string) int {
	var n int
	for deadline := time.Now().Add(5 * time.Second); n == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err := w.pool.QueryRow(w.t.Context(), `SELECT (SELECT count(*) FROM audit_inbox WHERE request_id = $1 AND method = $2)
			+ (SELECT count(*) FROM audit_events WHERE request_id = $1 AND method = $2)`, requestID, method).Scan(&n); err != nil {
			w.t.Fatal(err)
		}
	}
	return n
}

// references lists the relative references in a resource.
func references(body []byte) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["reference"].(string); ok && !strings.HasPrefix(s, "#") {
				out = append(out, s)
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	var m any
	_ = json.Unmarshal(body, &m)
	walk(m)
	return out
}

// TestFHIREndpointWithAnEHRsTools runs fhir-check: careteam's endpoint
// driven by a FHIR client library from npm, every answer validated against
// HL7's R4 JSON schema, neither written here.
func TestFHIREndpointWithAnEHRsTools(t *testing.T) {
	node, err := exec.LookPath("node")
	dir := filepath.Join("..", "..", "..", "fhir-check")
	if _, serr := os.Stat(filepath.Join(dir, "node_modules", "fhir-kit-client")); err != nil || serr != nil {
		msg := "fhir-check needs Node.js and its npm modules: run .ci/tools.sh"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	w := startWorld(t)
	w.seed()
	token, err := w.mint("dr-ada")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), node, "check.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CARETEAM_FHIR_BASE=http://"+w.addr+"/fhir/R4", "CARETEAM_FHIR_TOKEN="+token,
		"CARETEAM_FHIR_PRACTICE="+strings.TrimPrefix(w.orgs["harbor"], "organizations/"))
	out, err := cmd.CombinedOutput()
	t.Logf("fhir-check:\n%s", out)
	if err != nil {
		t.Fatalf("fhir-check: %v", err)
	}
	if n := strings.Count(string(out), "\nok  ") + strings.Count(string(out[:min(len(out), 4)]), "ok  "); n < 20 {
		t.Errorf("fhir-check passed only %d checks", n)
	}
}

// TestFHIRCreateNeverUpdates: a create whose order careteam holds already
// answers with the order as it is now: a copy sent again after the
// coordinator re-routed the referral, or one with other content, changes
// nothing. Reads carry their version and time in meta, matching the ETag;
// ids are read in any case; a public URL makes the links.
func TestFHIRCreateNeverUpdates(t *testing.T) {
	w := startWorld(t, "--public-url", "https://careteam.example.org")
	w.seed()
	body := importable("SR-90", w.orgs["harbor"])
	c := w.fhirDo("dr-ada", "POST", "/ServiceRequest", body, "Content-Type", "Application/FHIR+JSON ; charset=utf-8")
	if c.status != http.StatusCreated || !strings.HasPrefix(c.header.Get("Location"), "https://careteam.example.org/fhir/R4/ServiceRequest/") {
		t.Fatalf("%d at %q: %s", c.status, c.header.Get("Location"), c.body)
	}
	id := c.json(t)["id"].(string)
	eli := w.ids["lmt-eli"]
	if _, err := w.as("coord-cy").Referrals.AssignReferral(t.Context(), &pb.AssignReferralRequest{Name: "referrals/" + id, Therapist: eli,
		Reason: "Harbor is full"}); err != nil {
		t.Fatal(err)
	}
	changed := bytes.Replace(body, []byte(`"value": 6`), []byte(`"value": 12`), 1)
	for _, b := range [][]byte{body, changed} {
		again := w.fhirDo("dr-ada", "POST", "/ServiceRequest", b, "If-None-Exist", "identifier=urn:oid:2.16.840.1.113883.19.5.99.1|SR-90")
		if again.status != http.StatusOK {
			t.Fatalf("the order again: %d %s", again.status, again.body)
		}
	}
	task := w.fhirDo("dr-ada", "GET", "/Task/"+strings.ToUpper(id), nil)
	m := task.json(t)
	owner := m["owner"].(map[string]any)["reference"]
	visits := m["restriction"].(map[string]any)["repetitions"]
	if owner != "Practitioner/"+strings.TrimPrefix(eli, "practitioners/") || fmt.Sprint(visits) != "6" {
		t.Errorf("after the copies: owner %v, visits %v; want the coordinator's routing and 6 visits", owner, visits)
	}
	meta, _ := m["meta"].(map[string]any)
	if meta == nil || task.header.Get("ETag") != `W/"`+fmt.Sprint(meta["versionId"])+`"` || meta["lastUpdated"] == nil {
		t.Errorf("meta %v with ETag %s", meta, task.header.Get("ETag"))
	}
	// careteam's systems go by canonical URLs under the public base, which
	// resolve there, and an order naming a technique by one is read.
	const referralState = "https://careteam.example.org/fhir/R4/CodeSystem/referral-state"
	if !bytes.Contains(task.body, []byte(`"`+referralState+`"`)) || bytes.Contains(task.body, []byte("urn:careteam:referral-state")) {
		t.Errorf("the Task names its state's system otherwise: %s", task.body)
	}
	if m := w.fhirDo("", "GET", "/CodeSystem?url="+url.QueryEscape(referralState), nil).json(t); len(m["entry"].([]any)) != 1 {
		t.Errorf("CodeSystem?url=%s: %v", referralState, m["entry"])
	}
	withTechnique := bytes.Replace(importable("SR-91", w.orgs["harbor"]), []byte(`"status": "active"`),
		[]byte(`"orderDetail": [{"coding": [{"system": "https://careteam.example.org/fhir/R4/CodeSystem/technique", "code": "SHIATSU"}]}], "status": "active"`), 1)
	if c := w.fhirDo("dr-ada", "POST", "/ServiceRequest", withTechnique); c.status != http.StatusCreated || !bytes.Contains(c.body, []byte(`"SHIATSU"`)) {
		t.Errorf("an order naming its technique by the canonical URL: %d %s", c.status, c.body)
	}
	page := w.fhirDo("dr-ada", "GET", "/Task?_count=1", nil).json(t)
	for _, l := range page["link"].([]any) {
		if u := l.(map[string]any)["url"].(string); !strings.HasPrefix(u, "https://careteam.example.org/fhir/R4/Task?") {
			t.Errorf("a link to %s", u)
		}
	}
}

// TestAnEHRIntegrationEndToEnd is the integration engineer's day, all over
// documented HTTP: one system client, granted the clinic, reads the
// CapabilityStatement, registers a webhook for its physician, creates a
// referral for her with a transaction Bundle, is told by a push that the
// therapist accepted it, and finds the accepted Task by searching.
func TestAnEHRIntegrationEndToEnd(t *testing.T) {
	w := startWorld(t, "--webhook-allow-http", "--webhook-interval", "50ms")
	w.seed()
	ctx := t.Context()
	if _, err := w.as("admin").Directory.CreatePractitioner(ctx, &pb.CreatePractitionerRequest{Practitioner: &pb.Practitioner{
		Organization: w.orgs["clinic"], Role: pb.Role_ROLE_INTEGRATION, Subject: "lakeside-ehr", DisplayName: "Lakeside EHR",
		ActsFor: []string{w.orgs["clinic"]}}}); err != nil {
		t.Fatal(err)
	}
	keyPath, _, err := devtoken.EnsureKey(devtoken.KeyDir(w.dataDir))
	if err != nil {
		t.Fatal(err)
	}
	token, err := devtoken.MintToken(keyPath, devtoken.Claims{Issuer: devtoken.Issuer, Subject: "lakeside-ehr", Audience: devtoken.Audience,
		TTL: time.Hour, Scope: "system/*.read system/ServiceRequest.write system/Subscription.write"})
	if err != nil {
		t.Fatal(err)
	}
	dr := w.ids["dr-ada"]
	call := func(method, url, contentType string, body []byte) (int, []byte) {
		req, _ := http.NewRequestWithContext(ctx, method, "http://"+w.addr+url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Act-For", dr)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		return res.StatusCode, raw
	}

	if status, _ := call("GET", "/fhir/R4/metadata", "", nil); status != http.StatusOK {
		t.Fatalf("metadata: %d", status)
	}
	// The endpoint it is told at.
	pushed := make(chan []byte, 16)
	receiver := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		pushed <- b
	}))
	t.Cleanup(receiver.Close)
	status, raw := call("POST", "/careteam.v1.WebhookService/CreateWebhook", "application/json",
		fmt.Appendf(nil, `{"url": %q, "types": ["EVENT_TYPE_REFERRAL_ACCEPTED"]}`, receiver.URL+"/careteam"))
	if status != http.StatusOK {
		t.Fatalf("CreateWebhook: %d %s", status, raw)
	}

	var order map[string]any
	if err := json.Unmarshal(importable("LAKESIDE-4711", w.orgs["harbor"]), &order); err != nil {
		t.Fatal(err)
	}
	order["requester"] = map[string]any{"reference": "Practitioner/" + strings.TrimPrefix(dr, "practitioners/")}
	bundle, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
		map[string]any{"fullUrl": "urn:uuid:" + uuid.NewString(), "resource": order, "request": map[string]any{"method": "POST", "url": "ServiceRequest"}},
	}})
	status, raw = call("POST", "/fhir/R4", "application/fhir+json", bundle)
	if status != http.StatusOK || !bytes.Contains(raw, []byte("201 Created")) {
		t.Fatalf("the transaction: %d %s", status, raw)
	}
	var resp struct {
		Entry []struct {
			Response struct{ Location string } `json:"response"`
		} `json:"entry"`
	}
	_ = json.Unmarshal(raw, &resp)
	id := resp.Entry[0].Response.Location[strings.LastIndex(resp.Entry[0].Response.Location, "/")+1:]

	if _, err := w.as("lmt-ben").Referrals.AcceptReferral(ctx, &pb.AcceptReferralRequest{Name: "referrals/" + id}); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-pushed:
		if !bytes.Contains(b, []byte("EVENT_TYPE_REFERRAL_ACCEPTED")) || !bytes.Contains(b, []byte("referrals/"+id)) {
			t.Errorf("the push: %s", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no push of the acceptance within 10 s")
	}

	status, raw = call("GET", "/fhir/R4/Task?status=accepted&owner=Organization/"+strings.TrimPrefix(w.orgs["harbor"], "organizations/"), "", nil)
	if status != http.StatusOK || !bytes.Contains(raw, []byte(`"id":"`+id+`"`)) {
		t.Errorf("the accepted Task is not found: %d %s", status, raw)
	}
	var n int
	if err := w.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_inbox WHERE subject = 'lakeside-ehr' AND practitioner_id::text = $1)
		+ (SELECT count(*) FROM audit_events WHERE subject = 'lakeside-ehr' AND practitioner_id::text = $1)`,
		strings.TrimPrefix(dr, "practitioners/")).Scan(&n); err != nil || n < 4 {
		t.Errorf("%d audit records name the integration and the physician (%v)", n, err)
	}
}
