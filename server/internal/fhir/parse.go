package fhir

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/fhir/go/jsonformat"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/careteam/careteam/server/internal/careteam"

	c4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/codes_go_proto"
	d4pb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/datatypes_go_proto"
	bcrpb "github.com/google/fhir/go/proto/google/fhir/proto/r4/core/resources/bundle_and_contained_resource_go_proto"
)

// ParseServiceRequest maps FHIR R4 JSON, a Bundle of type transaction or
// collection or a ServiceRequest with contained resources, to the import
// the domain runs. The ServiceRequest brings with it the resources it
// references: its subject Patient, the Conditions of reasonReference (its
// reasons) and of supportingInfo, its requester and its performers; other
// entries are not read. A rejection is a *careteam.InvalidError whose
// fields are FHIRPath locations in the input, every problem at once.
func ParseServiceRequest(data []byte) (*careteam.ServiceRequestImport, error) {
	cr, violations := unmarshal(data)
	if len(violations) > 0 {
		return nil, &careteam.InvalidError{Violations: violations}
	}
	ps := &parser{where: map[string]string{}, byRef: map[string]*node{}, contained: map[string]*node{}, read: map[*node]bool{}}
	var in *careteam.ServiceRequestImport
	if sr := ps.findServiceRequest(cr); sr != nil {
		in = ps.serviceRequest(sr)
	}
	if len(ps.violations) > 0 {
		return nil, &careteam.InvalidError{Violations: ps.violations}
	}
	in.Locate = ps.locate
	return in, nil
}

// node is one resource of the input and where it sits: in a Bundle, its
// entry too.
type node struct {
	path  string
	typ   string
	cr    *bcrpb.ContainedResource
	entry *bcrpb.Bundle_Entry
}

// parser maps one input, collecting every problem and where each domain
// field came from.
type parser struct {
	violations []careteam.FieldViolation
	// where maps a domain field path to its FHIRPath in the input.
	where map[string]string
	// byRef finds a Bundle's entries by fullUrl and by "Type/id";
	// contained finds the ServiceRequest's contained resources by "#id".
	byRef, contained map[string]*node
	// read holds the resources the import reads, checked for modifier
	// extensions once each.
	read map[*node]bool
}

func (ps *parser) bad(field, format string, args ...any) {
	ps.violations = append(ps.violations, careteam.FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// locate returns where a domain field came from: its own entry, else its
// nearest enclosing one.
func (ps *parser) locate(field string) string {
	for field != "" {
		if at, ok := ps.where[field]; ok {
			return at
		}
		field = field[:max(strings.LastIndexAny(field, ".["), 0)]
	}
	return ""
}

func (ps *parser) findServiceRequest(cr *bcrpb.ContainedResource) *node {
	_, typ := resourceOf(cr)
	switch typ {
	case "ServiceRequest":
		return &node{path: "ServiceRequest", typ: typ, cr: cr}
	case "Bundle":
	default:
		ps.bad("resourceType", "must be Bundle or ServiceRequest")
		return nil
	}
	b := cr.GetBundle()
	if t := b.GetType().GetValue(); t != c4pb.BundleTypeCode_TRANSACTION && t != c4pb.BundleTypeCode_COLLECTION {
		ps.bad("Bundle.type", "must be transaction or collection")
		return nil
	}
	var found *node
	for i, e := range b.GetEntry() {
		res, typ := resourceOf(e.GetResource())
		if res == nil {
			continue
		}
		n := &node{path: fmt.Sprintf("Bundle.entry[%d].resource.ofType(%s)", i, typ), typ: typ, cr: e.GetResource(), entry: e}
		if u := e.GetFullUrl().GetValue(); u != "" {
			ps.byRef[u] = n
		}
		if id := resourceID(res); id != "" {
			ps.byRef[typ+"/"+id] = n
		}
		if typ != "ServiceRequest" {
			continue
		}
		if found != nil {
			ps.bad(fmt.Sprintf("Bundle.entry[%d]", i), "a second ServiceRequest: import one at a time")
			continue
		}
		found = n
	}
	if found == nil {
		ps.bad("Bundle.entry", "holds no ServiceRequest")
	}
	return found
}

// literal returns a reference's literal reference: "#id", "Type/id", a
// URL or a URN; "" for a logical reference.
func literal(ref *d4pb.Reference) string {
	if ref.GetReference() == nil {
		return ""
	}
	lit := proto.Clone(ref).(*d4pb.Reference)
	if err := jsonformat.DenormalizeReference(lit); err != nil {
		return ""
	}
	return lit.GetUri().GetValue()
}

// careteamID returns the careteam id a reference "Type/{id}" names when
// the input carries no such resource: careteam's own record of it, such
// as a practitioner of its directory.
func (ps *parser) careteamID(ref *d4pb.Reference, typ string) (uuid.UUID, bool) {
	s := literal(ref)
	rest, ok := strings.CutPrefix(s, typ+"/")
	if !ok || ps.byRef[s] != nil {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(rest)
	return id, err == nil && id.String() == rest
}

// resolve finds the resource a reference names in the input: a contained
// one ("#id"), or a Bundle entry by fullUrl or "Type/id". It returns nil
// for a reference without a literal reference (a logical one).
func (ps *parser) resolve(ref *d4pb.Reference, at string) *node {
	if ref == nil || ref.GetReference() == nil {
		return nil
	}
	s := literal(ref)
	if s == "" {
		ps.bad(at, "not a reference this import understands")
		return nil
	}
	n := ps.byRef[s]
	if strings.HasPrefix(s, "#") {
		n = ps.contained[s]
	} else if n == nil {
		// An absolute URL resolves like its "Type/id" tail.
		if parts := strings.Split(s, "/"); len(parts) > 2 {
			n = ps.byRef[strings.Join(parts[len(parts)-2:], "/")]
		}
	}
	if n == nil {
		ps.bad(at, "does not resolve to a resource in the input")
		return nil
	}
	ps.understood(n)
	return n
}

// understood refuses a resource the import reads, or its Bundle entry,
// that carries a modifier extension: R4 says a system must not process a
// resource whose modifier extensions it does not understand, and careteam
// understands none.
func (ps *parser) understood(n *node) {
	if ps.read[n] {
		return
	}
	ps.read[n] = true
	check := func(m protoreflect.Message, at string) {
		walkElements(m, at, func(at string, m protoreflect.Message) bool {
			fd := m.Descriptor().Fields().ByName("modifier_extension")
			if fd == nil {
				return true
			}
			list := m.Get(fd).List()
			for k := 0; k < list.Len(); k++ {
				url := list.Get(k).Message().Interface().(*d4pb.Extension).GetUrl().GetValue()
				if len(url) > 200 {
					url = url[:200]
				}
				ps.bad(fmt.Sprintf("%s.modifierExtension[%d]", at, k), "a modifier extension careteam does not understand (%s): R4 requires refusing the resource", url)
			}
			return true
		})
	}
	if n.entry != nil {
		check(n.entry.ProtoReflect(), strings.TrimSuffix(n.path, fmt.Sprintf(".resource.ofType(%s)", n.typ)))
	}
	if res, _ := resourceOf(n.cr); res != nil {
		check(res, n.path)
	}
}

func (ps *parser) serviceRequest(n *node) *careteam.ServiceRequestImport {
	sr := n.cr.GetServiceRequest()
	at := func(element string) string { return n.path + "." + element }
	for j, a := range sr.GetContained() {
		cr := &bcrpb.ContainedResource{}
		if err := a.UnmarshalTo(cr); err != nil {
			ps.bad(at(fmt.Sprintf("contained[%d]", j)), "not an R4 resource")
			continue
		}
		res, typ := resourceOf(cr)
		if id := resourceID(res); id != "" {
			ps.contained["#"+id] = &node{path: at(fmt.Sprintf("contained[%d].ofType(%s)", j, typ)), typ: typ, cr: cr}
		}
	}
	ps.understood(n)
	in := &careteam.ServiceRequestImport{}
	for field, element := range map[string]string{
		"referral.patient": "subject", "referral.referring_physician": "requester",
		"referral.target_therapist": "performer", "referral.target_organization": "performer",
		"referral.reason_codes": "reasonCode", "referral.reason_diagnoses": "reasonReference",
		"referral.authorized_visits": "quantityQuantity", "referral.valid_until": "occurrencePeriod.end",
		"referral.clinical_notes": "note", "referral.priority": "priority",
		"referral.requested_techniques": "orderDetail", "referral.required_specialties": "performerType",
		"referral.state": "status", "referral.valid_from": "occurrencePeriod.start",
		"referral.patient_instruction": "patientInstruction", "referral.service_codes": "code", "referral.service_text": "code.text",
		"referral.reason_texts": "reasonCode",
	} {
		ps.where[field] = at(element)
	}
	ps.where["referral"] = n.path
	ps.key(sr.GetIdentifier(), at, in)

	switch sr.GetStatus().GetValue() {
	case c4pb.RequestStatusCode_DRAFT:
	case c4pb.RequestStatusCode_ACTIVE:
		in.Submit = true
	// The statuses the export gives a referral that has moved on: the
	// ServiceRequest of such a referral imports again as a no-op.
	case c4pb.RequestStatusCode_ON_HOLD:
		in.Settled = []careteam.ReferralState{careteam.ReferralOnHold}
	case c4pb.RequestStatusCode_COMPLETED:
		in.Settled = []careteam.ReferralState{careteam.ReferralCompleted}
	case c4pb.RequestStatusCode_REVOKED:
		in.Settled = []careteam.ReferralState{careteam.ReferralCancelled, careteam.ReferralExpired}
	default:
		ps.bad(at("status"), "a ServiceRequest %s is no referral", strings.ToLower(sr.GetStatus().GetValue().String()))
	}
	switch sr.GetIntent().GetValue() {
	case c4pb.RequestIntentCode_ORDER, c4pb.RequestIntentCode_ORIGINAL_ORDER, c4pb.RequestIntentCode_REFLEX_ORDER,
		c4pb.RequestIntentCode_FILLER_ORDER, c4pb.RequestIntentCode_INSTANCE_ORDER:
	default:
		ps.bad(at("intent"), "a referral is an order")
	}
	if sr.GetDoNotPerform().GetValue() {
		ps.bad(at("doNotPerform"), "a ServiceRequest not to perform is no referral")
	}
	switch sr.GetPriority().GetValue() {
	case c4pb.RequestPriorityCode_URGENT, c4pb.RequestPriorityCode_ASAP, c4pb.RequestPriorityCode_STAT:
		in.Order.Priority = careteam.PriorityUrgent
	default:
		in.Order.Priority = careteam.PriorityRoutine
	}

	subject := ps.subject(sr.GetSubject(), at("subject"), in)
	ps.requester(sr.GetRequester(), at("requester"), in)
	for k, ref := range sr.GetPerformer() {
		ps.performer(ref, at(fmt.Sprintf("performer[%d]", k)), in)
	}
	var uncoded []int
	for j, cc := range sr.GetReasonCode() {
		reason := at(fmt.Sprintf("reasonCode[%d]", j))
		if code, k := codeIn(cc, systemICD10); k >= 0 {
			ps.where[fmt.Sprintf("referral.reason_codes[%d]", len(in.Order.ReasonCodes))] = fmt.Sprintf("%s.coding[%d].code", reason, k)
			in.Order.ReasonCodes = append(in.Order.ReasonCodes, code)
			continue
		}
		// A reason in words (or in another system's displays) is kept as
		// words beside the coded reasons.
		text := strings.TrimSpace(cc.GetText().GetValue())
		if text == "" {
			var displays []string
			for _, c := range cc.GetCoding() {
				if d := strings.TrimSpace(c.GetDisplay().GetValue()); d != "" {
					displays = append(displays, d)
				}
			}
			text = strings.Join(displays, "; ")
		}
		if text == "" {
			ps.bad(reason, "needs a coding from %s, or text", systemICD10)
			continue
		}
		ps.where[fmt.Sprintf("referral.reason_texts[%d]", len(in.Order.ReasonTexts))] = reason
		in.Order.ReasonTexts = append(in.Order.ReasonTexts, text)
		uncoded = append(uncoded, j)
	}
	seen := map[*node]int{}
	for j, ref := range sr.GetReasonReference() {
		ps.cited(ref, at(fmt.Sprintf("reasonReference[%d]", j)), true, subject, seen, in)
	}
	for j, ref := range sr.GetSupportingInfo() {
		ps.cited(ref, at(fmt.Sprintf("supportingInfo[%d]", j)), false, subject, seen, in)
	}
	// Words alone are no reason careteam can route or check on: one
	// reason at least must be coded.
	if len(in.Order.ReasonCodes) == 0 && !slices.ContainsFunc(in.Diagnoses, func(d careteam.ImportedDiagnosis) bool { return d.Reason }) {
		for _, j := range uncoded {
			ps.bad(at(fmt.Sprintf("reasonCode[%d]", j)), "needs a coding from %s: no reason of this ServiceRequest is coded", systemICD10)
		}
	}
	in.Order.PatientInstruction = strings.TrimSpace(sr.GetPatientInstruction().GetValue())
	in.Order.ServiceCodes, in.Order.ServiceText = serviceCode(sr.GetCode())
	var notes []string
	for _, a := range sr.GetNote() {
		if t := strings.TrimSpace(a.GetText().GetValue()); t != "" {
			notes = append(notes, t)
		}
	}
	in.Order.ClinicalNotes = strings.Join(notes, "\n\n")
	for j, cc := range sr.GetOrderDetail() {
		in.Order.RequestedTechniques = appendCodes(ps, in.Order.RequestedTechniques, cc, systemTechnique, techniques, at(fmt.Sprintf("orderDetail[%d]", j)))
	}
	if cc := sr.GetPerformerType(); cc != nil {
		in.Order.RequiredSpecialties = appendCodes(ps, in.Order.RequiredSpecialties, cc, systemSpecialty, specialties, at("performerType"))
	}
	ps.quantity(sr.GetQuantity(), at, in)
	ps.occurrence(sr.GetOccurrence(), at, in)
	return in
}

// key takes the ServiceRequest's identifiers: careteam's own names the
// referral it was exported from; every other with a system and a value
// finds the order again, whichever the EHR lists first.
func (ps *parser) key(ids []*d4pb.Identifier, at func(string) string, in *careteam.ServiceRequestImport) {
	for i, id := range ids {
		sys, val := id.GetSystem().GetValue(), id.GetValue().GetValue()
		switch {
		case sys == systemReferral:
			rid, err := uuid.Parse(val)
			if err != nil {
				ps.bad(at(fmt.Sprintf("identifier[%d].value", i)), "not a careteam referral id")
				continue
			}
			in.ReferralID = rid
		case sys != "" && strings.TrimSpace(val) != "":
			x := careteam.Identifier{System: sys, Value: val}
			if !slices.Contains(in.Identifiers, x) {
				in.Identifiers = append(in.Identifiers, x)
			}
		}
	}
	if len(in.Identifiers) == 0 && in.ReferralID == uuid.Nil {
		ps.bad(at("identifier"), "required: an identifier with a system and a value, which makes the import idempotent")
	}
}

// serviceCode maps what is ordered: the codings with a system and a code,
// and the text. A code of careteam's own service alone is what careteam's
// export says of every referral, and no detail of the order.
func serviceCode(cc *d4pb.CodeableConcept) ([]careteam.Coding, string) {
	var out []careteam.Coding
	own := false
	for _, c := range cc.GetCoding() {
		sys, code := c.GetSystem().GetValue(), c.GetCode().GetValue()
		switch {
		case sys == systemService:
			own = true
		case sys != "" && code != "":
			x := careteam.Coding{System: sys, Code: code, Display: c.GetDisplay().GetValue()}
			if !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
	}
	if own && len(out) == 0 {
		return nil, ""
	}
	return out, strings.TrimSpace(cc.GetText().GetValue())
}

// subject maps the ServiceRequest's subject: a Patient resource, or a
// logical reference by identifier to a patient careteam already has.
func (ps *parser) subject(ref *d4pb.Reference, at string, in *careteam.ServiceRequestImport) *node {
	if ref == nil {
		ps.bad(at, "required")
		return nil
	}
	if id, ok := ps.careteamID(ref, "Patient"); ok {
		in.Patient.ID, in.PatientFindOnly = id, true
		ps.where["patient"] = at
		return nil
	}
	n := ps.resolve(ref, at)
	if n == nil {
		if ref.GetReference() == nil && ref.GetIdentifier() != nil {
			in.PatientFindOnly = true
			ps.where["patient"] = at
			ps.identifiers([]*d4pb.Identifier{ref.GetIdentifier()}, at+".identifier", systemPatient, &in.Patient.ID, &in.Patient.Identifiers, "patient.identifiers", func(int) string { return at + ".identifier" })
		} else if ref.GetReference() == nil {
			ps.bad(at, "must reference a Patient or name one by identifier")
		}
		return nil
	}
	if n.typ != "Patient" {
		ps.bad(at, "must reference a Patient")
		return nil
	}
	p := n.cr.GetPatient()
	pt := &in.Patient
	ps.where["patient"] = n.path
	ps.where["patient.birth_date"] = n.path + ".birthDate"
	ps.identifiers(p.GetIdentifier(), n.path+".identifier", systemPatient, &pt.ID, &pt.Identifiers, "patient.identifiers",
		func(i int) string { return fmt.Sprintf("%s.identifier[%d]", n.path, i) })
	ps.where["patient.family_name"] = n.path + ".name"
	names := p.GetName()
	if i := slices.IndexFunc(names, func(h *d4pb.HumanName) bool { return h.GetUse().GetValue() == c4pb.NameUseCode_OFFICIAL }); i >= 0 {
		names = names[i:]
	}
	if len(names) > 0 {
		var given []string
		for _, g := range names[0].GetGiven() {
			given = append(given, g.GetValue())
		}
		pt.GivenName, pt.FamilyName = strings.Join(given, " "), names[0].GetFamily().GetValue()
		ps.where["patient.family_name"] = fmt.Sprintf("%s.name[%d].family", n.path, len(p.GetName())-len(names))
	}
	if bd := p.GetBirthDate(); bd != nil {
		if bd.GetPrecision() != d4pb.Date_DAY {
			ps.bad(n.path+".birthDate", "a full date, YYYY-MM-DD, is required")
		} else {
			pt.BirthDate = day(time.UnixMicro(bd.GetValueUs()).In(location(bd.GetTimezone())))
		}
	}
	switch p.GetGender().GetValue() {
	case c4pb.AdministrativeGenderCode_MALE:
		pt.Gender = careteam.GenderMale
	case c4pb.AdministrativeGenderCode_FEMALE:
		pt.Gender = careteam.GenderFemale
	case c4pb.AdministrativeGenderCode_OTHER:
		pt.Gender = careteam.GenderOther
	}
	return n
}

// identifiers splits identifiers into careteam's own, whose value is the
// careteam id, and external ones, recording where each external one came
// from under field.
func (ps *parser) identifiers(ids []*d4pb.Identifier, at, own string, id *uuid.UUID, external *[]careteam.Identifier, field string, where func(i int) string) {
	ps.where[field] = at
	for i, x := range ids {
		sys, val := x.GetSystem().GetValue(), x.GetValue().GetValue()
		if sys == own {
			parsed, err := uuid.Parse(val)
			if err != nil {
				ps.bad(where(i)+".value", "not a careteam id")
				continue
			}
			*id = parsed
			continue
		}
		ps.where[fmt.Sprintf("%s[%d]", field, len(*external))] = where(i)
		*external = append(*external, careteam.Identifier{System: sys, Value: val})
	}
}

// ref maps a reference to a practitioner or an organization in the
// directory: the identifiers of the resource it resolves to, or of a
// logical reference of the given type.
func (ps *parser) ref(ref *d4pb.Reference, at string, types ...string) (careteam.ImportRef, string) {
	var out careteam.ImportRef
	for _, typ := range types {
		if typ == "PractitionerRole" {
			// careteam keeps no roles: "PractitionerRole/{id}" names none.
			continue
		}
		if id, ok := ps.careteamID(ref, typ); ok {
			out.ID = id
			return out, typ
		}
	}
	n := ps.resolve(ref, at)
	if n == nil {
		if ref.GetReference() != nil {
			return out, ""
		}
		typ := ref.GetType().GetValue()
		if typ == "" && len(types) == 1 {
			typ = types[0]
		}
		if ref.GetIdentifier() == nil || !slices.Contains(types, typ) || typ == "PractitionerRole" {
			ps.bad(at, "must reference a %s resource, or name a %s by identifier with type", strings.Join(types, " or "), types[0])
			return out, ""
		}
		ps.directoryIdentifiers([]*d4pb.Identifier{ref.GetIdentifier()}, typ, at+".identifier", &out)
		return out, typ
	}
	if !slices.Contains(types, n.typ) {
		ps.bad(at, "must reference a %s", strings.Join(types, " or "))
		return out, ""
	}
	switch n.typ {
	case "Practitioner":
		ps.directoryIdentifiers(n.cr.GetPractitioner().GetIdentifier(), n.typ, n.path+".identifier", &out)
	case "Organization":
		ps.directoryIdentifiers(n.cr.GetOrganization().GetIdentifier(), n.typ, n.path+".identifier", &out)
	case "PractitionerRole":
		// The role's own identifiers name the role; its practitioner is
		// who careteam knows.
		pr := n.cr.GetPractitionerRole().GetPractitioner()
		if pr == nil {
			ps.bad(n.path+".practitioner", "required: careteam knows the requester as a practitioner")
			return out, ""
		}
		out, _ = ps.ref(pr, n.path+".practitioner", "Practitioner")
		return out, n.typ
	}
	if out.ID == uuid.Nil && len(out.Identifiers) == 0 {
		ps.bad(n.path+".identifier", "required: careteam finds the %s in its directory by identifier", n.typ)
	}
	return out, n.typ
}

func (ps *parser) directoryIdentifiers(ids []*d4pb.Identifier, typ, at string, out *careteam.ImportRef) {
	own := systemPractitioner
	if typ == "Organization" {
		own = systemOrganization
	}
	for i, x := range ids {
		sys, val := x.GetSystem().GetValue(), x.GetValue().GetValue()
		if sys == own {
			id, err := uuid.Parse(val)
			if err != nil {
				ps.bad(fmt.Sprintf("%s[%d].value", at, i), "not a careteam id")
				continue
			}
			out.ID = id
			continue
		}
		if sys != "" && val != "" {
			out.Identifiers = append(out.Identifiers, careteam.Identifier{System: sys, Value: val})
		}
	}
}

// requester maps the requester: a Practitioner, or a PractitionerRole
// (as US Core and eReferral send it) whose practitioner is the requester.
func (ps *parser) requester(ref *d4pb.Reference, at string, in *careteam.ServiceRequestImport) {
	if ref == nil {
		return
	}
	in.Requester, _ = ps.ref(ref, at, "Practitioner", "PractitionerRole")
}

// performer maps one performer: the therapist or the practice, at most
// one of each.
func (ps *parser) performer(ref *d4pb.Reference, at string, in *careteam.ServiceRequestImport) {
	r, typ := ps.ref(ref, at, "Practitioner", "Organization")
	target, field := &in.Therapist, "referral.target_therapist"
	if typ == "Organization" {
		target, field = &in.Practice, "referral.target_organization"
	}
	switch {
	case typ == "":
	case target.ID != uuid.Nil || len(target.Identifiers) > 0:
		ps.bad(at, "a second %s performer: name one therapist and at most their practice", typ)
	default:
		*target = r
		ps.where[field] = at
	}
}

// cited maps a Condition the ServiceRequest cites; the same Condition cited
// twice is one diagnosis.
func (ps *parser) cited(ref *d4pb.Reference, at string, reason bool, subject *node, seen map[*node]int, in *careteam.ServiceRequestImport) {
	n := ps.resolve(ref, at)
	switch {
	case n == nil:
		if ref.GetReference() == nil {
			ps.bad(at, "must reference a Condition in the input")
		}
		return
	case n.typ != "Condition":
		if reason {
			ps.bad(at, "must reference a Condition")
		}
		return
	}
	if i, ok := seen[n]; ok {
		in.Diagnoses[i].Reason = in.Diagnoses[i].Reason || reason
		return
	}
	i := len(in.Diagnoses)
	seen[n] = i
	if reason {
		ps.where[fmt.Sprintf("referral.reason_diagnoses[%d]", i)] = at
	}
	in.Diagnoses = append(in.Diagnoses, careteam.ImportedDiagnosis{Diagnosis: ps.condition(n, i, subject), Reason: reason})
}

// condition maps a Condition to a diagnosis.
func (ps *parser) condition(n *node, i int, subject *node) careteam.Diagnosis {
	c := n.cr.GetCondition()
	at := func(element string) string { return n.path + "." + element }
	field := fmt.Sprintf("diagnoses[%d]", i)
	ps.where[field] = n.path
	ps.where[field+".icd10_code"] = at("code")
	ps.where[field+".display"] = at("code")
	ps.where[field+".onset_date"] = at("onsetDateTime")
	ps.where[field+".patient"] = at("subject")
	var d careteam.Diagnosis
	var external []careteam.Identifier
	ps.identifiers(c.GetIdentifier(), at("identifier"), systemDiagnosis, &d.ID, &external, field+".identifiers",
		func(j int) string { return fmt.Sprintf("%s[%d]", at("identifier"), j) })
	if _, named := ps.careteamID(c.GetSubject(), "Patient"); !named {
		if other := ps.resolve(c.GetSubject(), at("subject")); other != nil && subject != nil && other != subject {
			ps.bad(at("subject"), "not the ServiceRequest's subject")
		}
	}
	if vs := c.GetVerificationStatus(); vs != nil {
		if code, k := codeIn(vs, systemConditionVerStatus); k >= 0 && (code == "refuted" || code == "entered-in-error") {
			ps.bad(at(fmt.Sprintf("verificationStatus.coding[%d]", k)), "a %s Condition is no diagnosis", code)
		}
	}
	code, k := codeIn(c.GetCode(), systemICD10)
	switch {
	case c.GetCode() == nil:
		ps.bad(at("code"), "required: a coding from %s", systemICD10)
	case k < 0:
		ps.bad(at("code"), "needs a coding from %s", systemICD10)
	default:
		d.ICD10Code = code
		ps.where[field+".icd10_code"] = at(fmt.Sprintf("code.coding[%d].code", k))
		d.Display = c.GetCode().GetCoding()[k].GetDisplay().GetValue()
		if d.Display == "" {
			d.Display = c.GetCode().GetText().GetValue()
		}
	}
	if cs := c.GetClinicalStatus(); cs != nil {
		status, k := codeIn(cs, systemConditionClinical)
		switch status {
		case "active":
			d.ClinicalStatus = careteam.StatusActive
		case "recurrence", "relapse":
			d.ClinicalStatus = careteam.StatusRecurrence
		case "inactive", "remission":
			d.ClinicalStatus = careteam.StatusRemission
		case "resolved":
			d.ClinicalStatus = careteam.StatusResolved
		default:
			ps.bad(at(fmt.Sprintf("clinicalStatus.coding[%d]", max(k, 0))), "needs a code from %s", systemConditionClinical)
		}
	}
	if code, k := codeIn(c.GetSeverity(), systemSNOMED); k >= 0 {
		d.Severity = map[string]careteam.Severity{"255604002": "MILD", "6736007": "MODERATE", "24484000": "SEVERE"}[code]
	}
	for j, cc := range c.GetBodySite() {
		d.BodySites = appendCodes(ps, d.BodySites, cc, systemBodyRegion, bodyRegions, at(fmt.Sprintf("bodySite[%d]", j)))
	}
	if on := c.GetOnset(); on != nil {
		if dt := on.GetDateTime(); dt != nil {
			d.OnsetDate = day(time.UnixMicro(dt.GetValueUs()).In(location(dt.GetTimezone())))
		}
	}
	d.Categories = categories(c.GetCategory())
	var notes []string
	for _, a := range c.GetNote() {
		if t := strings.TrimSpace(a.GetText().GetValue()); t != "" {
			notes = append(notes, t)
		}
	}
	d.Notes = strings.Join(notes, "\n\n")
	for j, ext := range c.GetExtension() {
		if ext.GetUrl().GetValue() != extensionRedFlag {
			continue
		}
		v := ext.GetValue()
		code := v.GetCode().GetValue()
		if cd := v.GetCoding(); cd != nil && cd.GetSystem().GetValue() == systemRedFlag {
			code = cd.GetCode().GetValue()
		}
		if flag := careteam.RedFlag(code); slices.Contains(careteam.RedFlags, flag) {
			d.RedFlags = append(d.RedFlags, flag)
		} else {
			ps.bad(at(fmt.Sprintf("extension[%d]", j)), "needs a valueCoding from %s or a valueCode naming a red flag", systemRedFlag)
		}
	}
	// The code's own red flags are the domain's to add.
	return d
}

// categories maps a Condition's categories: their codings with a system
// and a code. The one category careteam's export gives every diagnosis
// when it knows none, problem-list-item, is no detail when alone.
func categories(ccs []*d4pb.CodeableConcept) []careteam.Coding {
	var out []careteam.Coding
	for _, cc := range ccs {
		for _, c := range cc.GetCoding() {
			x := careteam.Coding{System: c.GetSystem().GetValue(), Code: c.GetCode().GetValue(), Display: c.GetDisplay().GetValue()}
			if x.System != "" && x.Code != "" && !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
	}
	if len(out) == 1 && out[0].System == systemConditionCategory && out[0].Code == "problem-list-item" {
		return nil
	}
	return out
}

// quantity maps quantityQuantity to the authorized visits.
func (ps *parser) quantity(q interface {
	GetQuantity() *d4pb.Quantity
	GetRatio() *d4pb.Ratio
	GetRange() *d4pb.Range
}, at func(string) string, in *careteam.ServiceRequestImport) {
	switch {
	case q.GetRatio() != nil:
		ps.bad(at("quantityRatio"), "authorized visits are a quantityQuantity")
	case q.GetRange() != nil:
		ps.bad(at("quantityRange"), "authorized visits are a quantityQuantity")
	case q.GetQuantity() != nil:
		qq := q.GetQuantity()
		if qq.GetComparator() != nil {
			ps.bad(at("quantityQuantity.comparator"), "authorized visits are an exact number")
		}
		v, err := strconv.ParseFloat(qq.GetValue().GetValue(), 64)
		switch {
		case err != nil || v != math.Trunc(v):
			ps.bad(at("quantityQuantity.value"), "a whole number of visits")
		default:
			in.Order.AuthorizedVisits = int(max(min(v, math.MaxInt32), math.MinInt32))
		}
	}
}

// occurrence maps occurrencePeriod: its start to when the order becomes
// valid, its end to the validity's end; a day includes the whole day.
func (ps *parser) occurrence(o interface {
	GetDateTime() *d4pb.DateTime
	GetPeriod() *d4pb.Period
	GetTiming() *d4pb.Timing
}, at func(string) string, in *careteam.ServiceRequestImport) {
	switch {
	case o.GetDateTime() != nil:
		ps.bad(at("occurrenceDateTime"), "careteam reads occurrencePeriod, the referral's validity")
	case o.GetTiming() != nil:
		ps.bad(at("occurrenceTiming"), "careteam reads occurrencePeriod, the referral's validity")
	case o.GetPeriod() != nil:
		if start := o.GetPeriod().GetStart(); start != nil {
			t := time.UnixMicro(start.GetValueUs())
			switch start.GetPrecision() {
			case d4pb.DateTime_DAY:
				t = day(t.In(location(start.GetTimezone())))
			case d4pb.DateTime_MONTH, d4pb.DateTime_YEAR:
				ps.bad(at("occurrencePeriod.start"), "give at least the day")
				return
			}
			in.Order.ValidFrom = t.UTC()
		}
		end := o.GetPeriod().GetEnd()
		if end == nil {
			return
		}
		t := time.UnixMicro(end.GetValueUs())
		switch end.GetPrecision() {
		case d4pb.DateTime_DAY:
			t = day(t.In(location(end.GetTimezone()))).AddDate(0, 0, 1)
		case d4pb.DateTime_MONTH, d4pb.DateTime_YEAR:
			ps.bad(at("occurrencePeriod.end"), "give at least the day")
			return
		}
		in.Order.ValidUntil = t.UTC()
	}
}

// codeIn returns the code of cc's first coding in system and its index,
// or -1.
func codeIn(cc *d4pb.CodeableConcept, system string) (string, int) {
	for k, c := range cc.GetCoding() {
		if c.GetSystem().GetValue() == system {
			return c.GetCode().GetValue(), k
		}
	}
	return "", -1
}

// appendCodes adds the codes of cc's codings in system to out, each once.
// Codings of other systems are not careteam's to read; a code careteam's
// system does not define is an error.
func appendCodes[T ~string](ps *parser, out []T, cc *d4pb.CodeableConcept, system string, known []T, at string) []T {
	for k, c := range cc.GetCoding() {
		if c.GetSystem().GetValue() != system {
			continue
		}
		v := T(c.GetCode().GetValue())
		if !slices.Contains(known, v) {
			ps.bad(fmt.Sprintf("%s.coding[%d].code", at, k), "not a code of %s", system)
			continue
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// day truncates t to its calendar day, as a UTC date.
func day(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// location returns the time zone a date or dateTime was written in.
func location(tz string) *time.Location {
	if tz == "" || tz == "Z" || tz == "UTC" {
		return time.UTC
	}
	if l, err := time.LoadLocation(tz); err == nil {
		return l
	}
	if t, err := time.Parse("-07:00", tz); err == nil {
		return t.Location()
	}
	return time.UTC
}
