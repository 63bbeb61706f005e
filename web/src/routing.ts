// Routing a referral: a dialog that offers the therapists who may take it
// (an active licence and every training the referral requires), says why
// each other therapist is left out, and shows careteam's answer in words.

import { problemOf, type Api } from "./api";
import { announce, h, replace } from "./dom";
import { shortId, specialtyLabels } from "./format";
import type { Practitioner } from "./gen/careteam/v1/directory_pb";
import { ReferralState, type Referral } from "./gen/careteam/v1/referral_pb";
import type { Directory } from "./worklist";

// whyNot says why a therapist may not take the referral, or "" when they
// may; the server judges again when the referral is routed.
export function whyNot(r: Referral, t: Practitioner, today: string): string {
  if (!t.active) return "no longer active";
  const expires = t.licence?.expireDate ?? "";
  const reasons: string[] = [];
  if (!expires || expires < today) reasons.push(expires ? `licence expired on ${expires}` : "no licence on record");
  const missing = r.requiredSpecialties.filter((s) => !t.specialties.includes(s));
  if (missing.length) reasons.push(`lacks ${missing.map((s) => specialtyLabels[s]).join(" and ")} training`);
  return reasons.join("; ");
}

function localToday(): string {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

export function openRouting(api: Api, dir: Directory, r: Referral, routed: (r: Referral) => void): void {
  const opener = document.activeElement as HTMLElement | null;
  const today = localToday();
  const therapists = [...dir.therapists.values()].sort((a, b) => a.displayName.localeCompare(b.displayName));
  const eligible = therapists.filter((t) => t.name !== r.targetTherapist && whyNot(r, t, today) === "");
  const left = therapists.filter((t) => t.name !== r.targetTherapist && whyNot(r, t, today) !== "");
  const practice = (t: Practitioner) => dir.organizations.get(t.organization)?.displayName ?? "";

  const problem = h("div", { class: "problem", role: "alert", hidden: true });
  const reason = h("textarea", { id: "route-reason", rows: 2, maxlength: 2000 });
  const choices = h("fieldset", {},
    h("legend", {}, "Therapists who may take it"),
    eligible.length
      ? eligible.map((t, i) => h("div", { class: "choice" },
          h("input", { type: "radio", name: "therapist", id: `t-${i}`, value: t.name, required: true }),
          h("label", { for: `t-${i}` }, `${t.displayName} — ${practice(t)}`)))
      : h("p", {}, "No therapist may take it: see who is left out, and why."));
  const leftOut = h("details", { class: "left-out" },
    h("summary", {}, `Left out: ${left.length} therapist${left.length === 1 ? "" : "s"}`),
    h("ul", {}, left.map((t) => h("li", {}, `${t.displayName} (${practice(t)}): ${whyNot(r, t, today)}`))));

  const submit = h("button", { type: "submit", class: "primary" }, r.state === ReferralState.DECLINED ? "Re-route" : "Route");
  const form = h("form", { method: "dialog" },
    h("h2", { id: "route-title" }, `Route referral ${shortId(r.name)}`),
    h("p", {}, r.requiredSpecialties.length
      ? `It requires ${r.requiredSpecialties.map((s) => specialtyLabels[s]).join(" and ")} training.`
      : "It requires no particular training."),
    choices, leftOut,
    h("label", { for: "route-reason" }, "Note for the history (optional; coded notes only, no clinical detail)"), reason,
    problem,
    h("div", { class: "actions" },
      submit,
      h("button", { type: "button", onclick: () => close() }, "Cancel")));

  const dialog = h("dialog", { "aria-labelledby": "route-title", class: "route-dialog" }, form);
  document.body.append(dialog);

  function close(): void {
    dialog.close();
    dialog.remove();
    opener?.focus();
  }
  dialog.addEventListener("cancel", (e) => { e.preventDefault(); close(); });

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const chosen = form.querySelector<HTMLInputElement>("input[name=therapist]:checked");
    if (!chosen) {
      replace(problem, h("p", {}, "Choose a therapist."));
      problem.hidden = false;
      choices.querySelector<HTMLInputElement>("input")?.focus();
      return;
    }
    submit.disabled = true;
    problem.hidden = true;
    try {
      const res = await api.referrals.assignReferral({
        name: r.name, therapist: chosen.value, reason: reason.value.trim(), etag: r.etag, requestId: crypto.randomUUID(),
      });
      close();
      routed(res.referral!);
    } catch (err) {
      const p = problemOf(err);
      replace(problem, h("p", {}, p.headline), p.items.length ? h("ul", {}, p.items.map((i) => h("li", {}, i))) : null);
      problem.hidden = false;
      announce(p.headline);
      problem.setAttribute("tabindex", "-1");
      problem.focus();
    } finally {
      submit.disabled = false;
    }
  });

  dialog.showModal();
  (choices.querySelector<HTMLInputElement>("input") ?? submit).focus();
}
