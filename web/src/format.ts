// Words for what the API returns: states, priorities, trainings, roles,
// times in the reader's own time zone, and business-time durations.

import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";

import { Role } from "./gen/careteam/v1/directory_pb";
import { ReferralPriority, ReferralState } from "./gen/careteam/v1/referral_pb";
import { Specialty } from "./gen/careteam/v1/types_pb";

export const stateLabels: Record<ReferralState, string> = {
  [ReferralState.UNSPECIFIED]: "Unknown",
  [ReferralState.DRAFT]: "Draft",
  [ReferralState.SUBMITTED]: "Submitted",
  [ReferralState.AWAITING_INFO]: "Awaiting information",
  [ReferralState.ACCEPTED]: "Accepted",
  [ReferralState.DECLINED]: "Declined",
  [ReferralState.IN_PROGRESS]: "In treatment",
  [ReferralState.ON_HOLD]: "On hold",
  [ReferralState.COMPLETED]: "Completed",
  [ReferralState.CANCELLED]: "Cancelled",
  [ReferralState.EXPIRED]: "Expired",
};

export const priorityLabels: Record<ReferralPriority, string> = {
  [ReferralPriority.UNSPECIFIED]: "—",
  [ReferralPriority.ROUTINE]: "Routine",
  [ReferralPriority.URGENT]: "Urgent",
};

export const specialtyLabels: Record<Specialty, string> = {
  [Specialty.UNSPECIFIED]: "—",
  [Specialty.ARTHRITIS]: "Arthritis",
  [Specialty.FIBROMYALGIA]: "Fibromyalgia",
  [Specialty.ORTHOPEDIC]: "Orthopedic",
  [Specialty.SPORTS]: "Sports",
  [Specialty.PRENATAL]: "Prenatal",
  [Specialty.ONCOLOGY]: "Oncology",
};

export const roleLabels: Record<Role, string> = {
  [Role.UNSPECIFIED]: "—",
  [Role.PHYSICIAN]: "Physician",
  [Role.MASSAGE_THERAPIST]: "Massage therapist",
  [Role.COORDINATOR]: "Referral coordinator",
  [Role.ADMIN]: "Administrator",
  [Role.AUDITOR]: "Auditor",
  [Role.INTEGRATION]: "Integration",
};

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

// when formats a time in the reader's time zone, "" when unset.
export function when(ts: Timestamp | undefined): string {
  return ts ? dateTime.format(timestampDate(ts)) : "";
}

// isoOf is a time for a <time datetime> attribute.
export function isoOf(ts: Timestamp | undefined): string | undefined {
  return ts ? timestampDate(ts).toISOString() : undefined;
}

export function seconds(d: Duration | undefined): number {
  return d ? Number(d.seconds) + d.nanos / 1e9 : 0;
}

// hours says a business-time duration (weekdays, UTC) in whole hours, or
// minutes under one.
export function hours(totalSeconds: number): string {
  const s = Math.abs(totalSeconds);
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h`;
}

// shortId is the last part of a resource name, shortened for a table.
export function shortId(name: string): string {
  const id = name.split("/").pop() ?? name;
  return id.slice(-8);
}
