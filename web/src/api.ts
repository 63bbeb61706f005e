// The API through Connect's web transport: the same services, the same
// authentication, policy, limits and audit as native gRPC.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { BinaryReader } from "@bufbuild/protobuf/wire";

import { DirectoryService } from "./gen/careteam/v1/directory_pb";
import { EventService } from "./gen/careteam/v1/event_pb";
import { PatientService } from "./gen/careteam/v1/patient_pb";
import { ReferralService } from "./gen/careteam/v1/referral_pb";

export interface Api {
  directory: Client<typeof DirectoryService>;
  referrals: Client<typeof ReferralService>;
  patients: Client<typeof PatientService>;
  events: Client<typeof EventService>;
}

// connect returns the API's clients, each call carrying the bearer token
// token() gives at that moment (kept in memory only).
export function connect(token: () => string | undefined): Api {
  const bearer: Interceptor = (next) => async (req) => {
    const t = token();
    if (t) req.header.set("Authorization", `Bearer ${t}`);
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: window.location.origin,
    useBinaryFormat: true,
    interceptors: [bearer],
  });
  return {
    directory: createClient(DirectoryService, transport),
    referrals: createClient(ReferralService, transport),
    patients: createClient(PatientService, transport),
    events: createClient(EventService, transport),
  };
}

// Problem is an error of the API in words: a headline, and the unmet
// conditions or bad fields it listed.
export interface Problem {
  headline: string;
  reason: string;
  items: string[];
}

// The google.rpc details careteamd attaches, decoded from their wire form
// (see proto/careteam/v1/errors.proto for the reasons).
const PRECONDITION_FAILURE = "google.rpc.PreconditionFailure";
const BAD_REQUEST = "google.rpc.BadRequest";
const ERROR_INFO = "google.rpc.ErrorInfo";

function strings(bytes: Uint8Array, fields: number[]): string[] {
  const out = fields.map(() => "");
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    const i = fields.indexOf(no);
    if (i >= 0 && wt === 2) out[i] = r.string();
    else r.skip(wt);
  }
  return out;
}

function repeated(bytes: Uint8Array, field: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === field && wt === 2) out.push(r.bytes());
    else r.skip(wt);
  }
  return out;
}

const headlines: Partial<Record<Code, string>> = {
  [Code.FailedPrecondition]: "careteam refused this: a rule is not met.",
  [Code.InvalidArgument]: "careteam refused this: some of it is not valid.",
  [Code.PermissionDenied]: "You may not do this, or see this.",
  [Code.NotFound]: "It no longer exists.",
  [Code.Aborted]: "Someone changed it meanwhile. Look again, and try again.",
  [Code.Unauthenticated]: "Your sign-in has ended. Sign in again.",
  [Code.Unavailable]: "careteam cannot be reached just now. Try again in a moment.",
  [Code.ResourceExhausted]: "Too many requests just now. Try again in a moment.",
  [Code.DeadlineExceeded]: "careteam took too long to answer. Try again.",
};

// problemOf turns an error into words for the person who caused it.
export function problemOf(err: unknown): Problem {
  const e = ConnectError.from(err);
  const problem: Problem = { headline: headlines[e.code] ?? "Something went wrong.", reason: "", items: [] };
  for (const d of e.details) {
    if (!("type" in d) || !(d.value instanceof Uint8Array)) continue;
    if (d.type === ERROR_INFO) {
      problem.reason = strings(d.value, [1])[0];
    } else if (d.type === PRECONDITION_FAILURE) {
      for (const v of repeated(d.value, 1)) {
        const [, , description] = strings(v, [1, 2, 3]);
        problem.items.push(sentence(description));
      }
    } else if (d.type === BAD_REQUEST) {
      for (const v of repeated(d.value, 1)) {
        const [field, description] = strings(v, [1, 2]);
        problem.items.push(`${field}: ${description}`);
      }
    }
  }
  return problem;
}

function sentence(s: string): string {
  const t = s.trim();
  if (!t) return t;
  const first = t[0].toUpperCase() + t.slice(1);
  return /[.!?]$/.test(first) ? first : first + ".";
}

export function isUnauthenticated(err: unknown): boolean {
  return ConnectError.from(err).code === Code.Unauthenticated;
}
