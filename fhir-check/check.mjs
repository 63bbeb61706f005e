// Drives careteam's FHIR endpoint as an EHR integration would, with a FHIR
// client library (fhir-kit-client) and an R4 validator (FHIR.js, the npm
// package fhir: R4's StructureDefinitions and value sets), neither written
// for careteam:
// the CapabilityStatement, a conditional create and its retry, reads, a
// search walked page by page, $everything and a refusal. Every resource
// the endpoint answers with is validated.
//
//   CARETEAM_FHIR_BASE      the endpoint, http://127.0.0.1:50051/fhir/R4
//   CARETEAM_FHIR_TOKEN     a physician's bearer token
//   CARETEAM_FHIR_PRACTICE  the id of the massage practice to refer to
//
// It prints one line per step and exits 1 if any step failed.
import { Client } from "fhir-kit-client";
import fhirjs from "fhir";

const { CARETEAM_FHIR_BASE: base, CARETEAM_FHIR_TOKEN: token, CARETEAM_FHIR_PRACTICE: practice } = process.env;
if (!base || !token || !practice) {
  console.error("set CARETEAM_FHIR_BASE, CARETEAM_FHIR_TOKEN and CARETEAM_FHIR_PRACTICE");
  process.exit(2);
}

const client = new Client({ baseUrl: base, bearerToken: token });
const r4 = new fhirjs.Fhir();
let failed = 0;

function check(ok, step, detail = "") {
  console.log(`${ok ? "ok  " : "FAIL"} ${step}${detail ? ": " + detail : ""}`);
  if (!ok) failed++;
}

// valid checks a resource, and each resource a Bundle holds, against R4:
// structure, cardinality, required bindings, reference types, and no
// element R4 does not define.
function valid(step, resource) {
  const errors = r4.validate(resource, { errorOnUnexpected: true }).messages.filter((m) => m.severity === "error");
  check(errors.length === 0, `${step} is valid R4`, errors.length ? JSON.stringify(errors.slice(0, 3)) : "");
  for (const e of resource.entry ?? []) {
    if (e.resource) valid(`${step}: entry ${e.resource.resourceType}/${e.resource.id}`, e.resource);
  }
}

const status = (r) => Client.httpFor(r).response?.status;

const order = {
  resourceType: "ServiceRequest",
  contained: [{
    resourceType: "Patient", id: "p",
    identifier: [{ system: "urn:oid:2.16.840.1.113883.19.5", value: "MRN-4101" }],
    name: [{ family: "Okoye", given: ["Ife"] }], gender: "female", birthDate: "1979-09-30",
  }],
  identifier: [{ system: "urn:oid:2.16.840.1.113883.19.5.99.1", value: "EHR-ORDER-4101" }],
  status: "active", intent: "order", priority: "routine",
  subject: { reference: "#p" },
  performer: [{ reference: `Organization/${practice}` }],
  quantityQuantity: { value: 4, unit: "visits" },
  reasonCode: [{ coding: [{ system: "http://hl7.org/fhir/sid/icd-10-cm", code: "M54.50" }] }],
};
const condition = { "If-None-Exist": "identifier=urn:oid:2.16.840.1.113883.19.5.99.1|EHR-ORDER-4101" };

try {
  const cap = await client.capabilityStatement();
  valid("the CapabilityStatement", cap);
  const sr = cap.rest?.[0]?.resource?.find((r) => r.type === "ServiceRequest");
  check(sr?.interaction?.some((i) => i.code === "create") && sr.conditionalCreate === true,
    "the CapabilityStatement offers conditional create of ServiceRequest");

  for (const [resourceType, id] of [["CodeSystem", "technique"], ["CodeSystem", "red-flag"], ["StructureDefinition", "max-pressure"]]) {
    valid(`${resourceType}/${id}`, await client.read({ resourceType, id }));
  }

  const created = await client.create({ resourceType: "ServiceRequest", body: order, options: { headers: condition } });
  check(status(created) === 201, "a new order is created", `status ${status(created)}`);
  valid("the created ServiceRequest", created);
  const again = await client.create({ resourceType: "ServiceRequest", body: order, options: { headers: condition } });
  check(status(again) === 200 && again.id === created.id, "the same order again is found, not created twice",
    `status ${status(again)}, id ${again.id}`);

  for (const resourceType of ["ServiceRequest", "Task"]) {
    const r = await client.read({ resourceType, id: created.id });
    check(r.resourceType === resourceType && r.id === created.id, `read ${resourceType}/${created.id}`);
    valid(`${resourceType}/${created.id}`, r);
  }
  // Every reference from the Task on resolves, to valid R4.
  const seen = new Set();
  const queue = [`Task/${created.id}`];
  while (queue.length && seen.size < 50) {
    const ref = queue.shift();
    if (seen.has(ref)) continue;
    seen.add(ref);
    const [resourceType, id] = ref.split("/");
    const r = await client.read({ resourceType, id });
    check(r.resourceType === resourceType && r.id === id, `the reference ${ref} resolves`);
    valid(ref, r);
    JSON.stringify(r, (key, value) => {
      if (key === "reference" && typeof value === "string" && !value.startsWith("#")) queue.push(value);
      return value;
    });
  }
  check([...seen].some((r) => r.startsWith("Patient/")) && [...seen].some((r) => r.startsWith("Practitioner/")),
    "the Task leads to its patient and requester", [...seen].join(" "));

  let page = await client.search({ resourceType: "Task", searchParams: { owner: `Organization/${practice}`, _count: "1" } });
  const found = [];
  for (let n = 0; page && n < 20; n++) {
    valid(`search page ${n + 1}`, page);
    check(page.type === "searchset" && (page.entry ?? []).length <= 1, `search page ${n + 1} is a searchset of at most 1`);
    found.push(...(page.entry ?? []).map((e) => e.resource.id));
    page = await client.nextPage({ bundle: page });
  }
  check(found.includes(created.id) && new Set(found).size === found.length, "paging finds the order once",
    `${found.length} Tasks`);

  const everything = await client.operation({ name: "everything", resourceType: "ServiceRequest", id: created.id, method: "GET" });
  valid("$everything", everything);

  try {
    await client.read({ resourceType: "Task", id: "no-such-task" });
    check(false, "an unknown Task is refused");
  } catch (err) {
    check(err.response?.status === 404, "an unknown Task is refused with 404", `status ${err.response?.status}`);
    valid("the refusal's OperationOutcome", err.response?.data ?? {});
  }
} catch (err) {
  check(false, "the run", `${err.message} ${JSON.stringify(err.response?.data ?? "")}`);
}
process.exit(failed ? 1 : 0);
