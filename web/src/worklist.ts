// The worklist: referrals by state, overdue ones first with how long they
// have waited against the acknowledgement window, filters, keyset pages,
// and live updates. Coordinators route; physicians and therapists read.

import { Code, ConnectError } from "@connectrpc/connect";

import { problemOf, type Api } from "./api";
import { announce, h, replace } from "./dom";
import { hours, isoOf, priorityLabels, seconds, shortId, specialtyLabels, stateLabels, when } from "./format";
import { OrganizationKind, Role, type Organization, type Practitioner } from "./gen/careteam/v1/directory_pb";
import { ReferralPriority, ReferralState, type Referral } from "./gen/careteam/v1/referral_pb";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ListReferralsRequestSchema } from "./gen/careteam/v1/referral_pb";
import { Specialty } from "./gen/careteam/v1/types_pb";
import { openRouting } from "./routing";

export interface Viewer {
  role: Role;
  practitioner: string;
  organization: string;
}

interface Filters {
  state: ReferralState;
  practice: string;
  therapist: string;
  priority: ReferralPriority;
  specialty: Specialty;
}

const pageSize = 25;

// The states a coordinator acts on, offered first.
const stateChoices: ReferralState[] = [
  ReferralState.SUBMITTED, ReferralState.AWAITING_INFO, ReferralState.DECLINED, ReferralState.ACCEPTED,
  ReferralState.IN_PROGRESS, ReferralState.ON_HOLD, ReferralState.COMPLETED, ReferralState.CANCELLED,
  ReferralState.EXPIRED, ReferralState.DRAFT,
];

// The directory's names, read once: practices and therapists.
export interface Directory {
  organizations: Map<string, Organization>;
  therapists: Map<string, Practitioner>;
  practitioners: Map<string, Practitioner>;
}

export async function loadDirectory(api: Api): Promise<Directory> {
  const dir: Directory = { organizations: new Map(), therapists: new Map(), practitioners: new Map() };
  let token = "";
  do {
    const res = await api.directory.listOrganizations({ pageSize: 500, pageToken: token });
    for (const o of res.organizations) dir.organizations.set(o.name, o);
    token = res.nextPageToken;
  } while (token);
  do {
    const res = await api.directory.listPractitioners({ pageSize: 500, pageToken: token });
    for (const p of res.practitioners) {
      dir.practitioners.set(p.name, p);
      if (p.role === Role.MASSAGE_THERAPIST) dir.therapists.set(p.name, p);
    }
    token = res.nextPageToken;
  } while (token);
  return dir;
}

export function worklist(container: HTMLElement, api: Api, viewer: Viewer, dir: Directory, ackWindowSeconds: number): () => void {
  const routes = viewer.role === Role.COORDINATOR;
  const filters: Filters = {
    state: ReferralState.UNSPECIFIED, practice: "", therapist: "",
    priority: ReferralPriority.UNSPECIFIED, specialty: Specialty.UNSPECIFIED,
  };
  const pages: string[] = [""]; // page tokens: pages[i] reads page i
  let page = 0;
  let nextToken = "";
  const patients = new Map<string, string>();
  const rows = new Map<string, HTMLTableRowElement>();

  const status = h("p", { class: "live", role: "status", "aria-live": "polite" }, "Connecting…");
  const overdueBody = h("tbody");
  const listBody = h("tbody");
  const overdueCaption = h("caption");
  const listCaption = h("caption");
  const pager = h("nav", { class: "pager", "aria-label": "Pages of referrals" });
  const problemBox = h("div", { class: "problem", role: "alert", hidden: true });

  const select = <T extends string | number>(label: string, id: string, options: [T, string][], onChange: (v: string) => void) =>
    h("label", { for: id }, label,
      h("select", { id, onchange: (e: Event) => onChange((e.target as HTMLSelectElement).value) },
        options.map(([v, text]) => h("option", { value: String(v) }, text))));

  const form = h("form", { class: "filters", "aria-label": "Filter referrals", onsubmit: (e: Event) => e.preventDefault() },
    select("State", "f-state", [[ReferralState.UNSPECIFIED, "Any"], ...stateChoices.map((s) => [s, stateLabels[s]] as [number, string])],
      (v) => { filters.state = Number(v); reload(); }),
    select("Practice", "f-practice",
      [["", "Any"], ...[...dir.organizations.values()].filter((o) => o.kind === OrganizationKind.MASSAGE_PRACTICE).map((o) => [o.name, o.displayName] as [string, string])],
      (v) => { filters.practice = v; reload(); }),
    select("Therapist", "f-therapist", [["", "Any"], ...[...dir.therapists.values()].map((t) => [t.name, t.displayName] as [string, string])],
      (v) => { filters.therapist = v; reload(); }),
    select("Priority", "f-priority", [[ReferralPriority.UNSPECIFIED, "Any"], [ReferralPriority.URGENT, "Urgent"], [ReferralPriority.ROUTINE, "Routine"]],
      (v) => { filters.priority = Number(v); reload(); }),
    select("Required training", "f-specialty",
      [[Specialty.UNSPECIFIED, "Any"], ...[Specialty.ARTHRITIS, Specialty.FIBROMYALGIA, Specialty.ORTHOPEDIC, Specialty.SPORTS, Specialty.PRENATAL, Specialty.ONCOLOGY]
        .map((s) => [s, specialtyLabels[s]] as [number, string])],
      (v) => { filters.specialty = Number(v); reload(); }),
  );

  const head = () => h("thead", {}, h("tr", {},
    ["Referral", "Patient", "State", "Priority", "Training required", "Practice", "Therapist", "Submitted", "Acknowledgement"]
      .map((c) => h("th", { scope: "col" }, c)),
    routes ? h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")) : null));

  replace(container,
    h("h1", {}, routes ? "Referral worklist" : "My referrals"),
    status, form, problemBox,
    h("section", { "aria-labelledby": "overdue-h" },
      h("h2", { id: "overdue-h" }, "Overdue for acknowledgement"),
      h("table", { class: "referrals", id: "overdue" }, overdueCaption, head(), overdueBody)),
    h("section", { "aria-labelledby": "all-h" },
      h("h2", { id: "all-h" }, "Referrals"),
      h("table", { class: "referrals", id: "all" }, listCaption, head(), listBody),
      pager));

  function request(token: string, overdue: boolean): MessageInitShape<typeof ListReferralsRequestSchema> {
    return {
      pageSize: overdue ? 100 : pageSize, pageToken: token, overdue,
      states: filters.state ? [filters.state] : [],
      targetOrganization: filters.practice, targetTherapist: filters.therapist,
      priority: filters.priority, requiredSpecialty: filters.specialty,
    };
  }

  function showProblem(err: unknown): void {
    const p = problemOf(err);
    replace(problemBox, h("p", {}, p.headline), p.items.length ? h("ul", {}, p.items.map((i) => h("li", {}, i))) : null);
    problemBox.hidden = false;
  }

  function acknowledgement(r: Referral): HTMLElement | string {
    if (!r.acknowledgementDueTime) return "";
    const remaining = seconds(r.acknowledgementRemaining);
    const waited = ackWindowSeconds - remaining;
    const due = h("time", { datetime: isoOf(r.acknowledgementDueTime) }, when(r.acknowledgementDueTime));
    const of = `of the ${hours(ackWindowSeconds)} allowed (business hours, awaiting information not counted); due `;
    if (remaining <= 0) {
      return h("span", { class: "overdue" }, h("strong", {}, "Overdue"),
        ` by ${hours(-remaining)}: waited ${hours(waited)} ${of}`, due);
    }
    return h("span", {}, `Waited ${hours(waited)} ${of}`, due);
  }

  function patientCell(r: Referral): HTMLTableCellElement {
    const cell = h("td", { "data-label": "Patient" }, patients.get(r.patient) ?? "…");
    if (!patients.has(r.patient)) {
      api.patients.getPatient({ name: r.patient }).then(
        (res) => {
          const p = res.patient!;
          patients.set(r.patient, `${p.familyName}, ${p.givenName}`.replace(/, $/, ""));
          for (const c of document.querySelectorAll(`[data-patient="${CSS.escape(r.patient)}"]`)) c.textContent = patients.get(r.patient)!;
        },
        () => { patients.set(r.patient, "—"); cell.textContent = "—"; });
    }
    cell.dataset.patient = r.patient;
    return cell;
  }

  function row(r: Referral): HTMLTableRowElement {
    const org = dir.organizations.get(r.targetOrganization);
    const therapist = dir.therapists.get(r.targetTherapist);
    const routable = routes && [ReferralState.SUBMITTED, ReferralState.DECLINED, ReferralState.DRAFT].includes(r.state);
    // Each cell names its column too, for the narrow (stacked) layout.
    const cell = (label: string, ...content: (Node | string)[]) => h("td", { "data-label": label }, ...content);
    const tr = h("tr", { "data-referral": r.name, class: r.overdue ? "is-overdue" : undefined },
      h("th", { scope: "row", "data-label": "Referral" }, h("span", { class: "mono", title: r.name }, shortId(r.name))),
      patientCell(r),
      cell("State", stateLabels[r.state]),
      cell("Priority", priorityLabels[r.priority]),
      cell("Training required", r.requiredSpecialties.map((s) => specialtyLabels[s]).join(", ") || "—"),
      cell("Practice", org?.displayName ?? "—"),
      cell("Therapist", therapist?.displayName ?? (r.targetTherapist ? "—" : "Unassigned")),
      cell("Submitted", h("time", { datetime: isoOf(r.submitTime) }, when(r.submitTime))),
      cell("Acknowledgement", acknowledgement(r)),
      routes ? h("td", {}, routable
        ? h("button", { type: "button", class: "route", "aria-label": `Route referral ${shortId(r.name)}`,
            onclick: () => openRouting(api, dir, r, (updated) => { update(updated); announce(`Referral ${shortId(r.name)} routed.`); }) },
            r.state === ReferralState.DECLINED ? "Re-route" : "Route")
        : "") : null);
    rows.set(r.name, tr);
    return tr;
  }

  function update(r: Referral): void {
    const old = rows.get(r.name);
    if (old) old.replaceWith(row(r));
  }

  async function reload(): Promise<void> {
    pages.length = 1;
    page = 0;
    await show();
  }

  async function show(): Promise<void> {
    problemBox.hidden = true;
    rows.clear();
    try {
      const [overdue, list] = await Promise.all([
        api.referrals.listReferrals(request("", true)),
        api.referrals.listReferrals(request(pages[page], false)),
      ]);
      overdue.referrals.sort((a, b) => seconds(a.acknowledgementRemaining) - seconds(b.acknowledgementRemaining));
      replace(overdueBody, overdue.referrals.map(row));
      replace(overdueCaption, overdue.referrals.length ? `${overdue.referrals.length} overdue, longest waiting first` : "None overdue");
      const seen = new Set(overdue.referrals.map((r) => r.name));
      replace(listBody, list.referrals.filter((r) => !seen.has(r.name)).map(row));
      const shownAbove = list.referrals.length - listBody.rows.length;
      replace(listCaption, `Page ${page + 1}: ${list.referrals.length} referrals, newest first` +
        (shownAbove ? ` (${shownAbove} overdue, shown above)` : ""));
      nextToken = list.nextPageToken;
      replace(pager,
        h("button", { type: "button", disabled: page === 0, onclick: () => { page--; show(); } }, "Previous page"),
        h("button", { type: "button", disabled: !nextToken, onclick: () => { pages[page + 1] = nextToken; page++; show(); } }, "Next page"));
    } catch (err) {
      showProblem(err);
    }
  }

  // Live: every referral event the caller may see updates its row, or
  // refreshes the page when it concerns one not shown.
  const abort = new AbortController();
  let refresh: number | undefined;
  async function watch(): Promise<void> {
    let cursor = 0n;
    let backoff = 500;
    while (!abort.signal.aborted) {
      try {
        if (cursor === 0n) {
          // Start from now (the lists were just read): asked after every
          // cursor, a list says the newest final one.
          const latest = await api.events.listEvents({ pageSize: 1, afterCursor: 1n << 62n });
          cursor = latest.throughCursor;
        }
        for await (const msg of api.events.watchEvents({ afterCursor: cursor }, { signal: abort.signal })) {
          status.textContent = "Live: changes appear as they happen.";
          status.dataset.state = "live";
          backoff = 500;
          if (msg.message.case === "heartbeat") {
            cursor = msg.message.value.cursor > cursor ? msg.message.value.cursor : cursor;
            continue;
          }
          if (msg.message.case !== "event") continue;
          const e = msg.message.value;
          cursor = e.cursor;
          if (e.resourceState.case !== "referralState") continue;
          const r = e.resourceState.value;
          if (rows.has(r.name)) {
            update(r);
          } else {
            window.clearTimeout(refresh);
            refresh = window.setTimeout(show, 300);
          }
        }
      } catch (err) {
        if (abort.signal.aborted) return;
        const e = ConnectError.from(err);
        if (e.code === Code.Unauthenticated || e.code === Code.PermissionDenied) {
          status.textContent = "Live updates stopped: sign in again.";
          status.dataset.state = "stopped";
          return;
        }
      }
      status.textContent = "Reconnecting to live updates…";
      status.dataset.state = "reconnecting";
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10_000);
    }
  }

  show();
  watch();
  return () => abort.abort();
}
