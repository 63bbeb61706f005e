// careteam's web app: sign in, then the worklist (coordinators route
// referrals; physicians and therapists read their own).

import { connect, isUnauthenticated, problemOf } from "./api";
import { beginOIDC, devSignIn, devSubjects, finishOIDC, loadConfig, type AppConfig, type Session } from "./auth";
import { announce, h, replace } from "./dom";
import { roleLabels } from "./format";
import { Role } from "./gen/careteam/v1/directory_pb";
import { loadDirectory, worklist } from "./worklist";

const main = document.getElementById("main")!;
const who = document.getElementById("who")!;
const signOut = document.getElementById("signout") as HTMLButtonElement;

let session: Session | undefined;
let stop: (() => void) | undefined;
const api = connect(() => (session && session.expires > new Date() ? session.token : undefined));

function fail(message: string, err?: unknown): void {
  const p = err ? problemOf(err) : undefined;
  replace(main,
    h("h1", {}, "careteam"),
    h("div", { class: "problem", role: "alert" }, h("p", {}, message), p ? h("p", {}, p.headline) : null));
}

async function signInPage(cfg: AppConfig, note?: string): Promise<void> {
  stop?.();
  who.textContent = "";
  signOut.hidden = true;
  const parts: (HTMLElement | null)[] = [h("h1", {}, "Sign in to careteam")];
  if (note) parts.push(h("p", { class: "problem", role: "alert" }, note));
  if (cfg.oidc) {
    parts.push(h("p", {}, h("button", { type: "button", class: "primary", onclick: () => beginOIDC(cfg.oidc!) },
      "Sign in with your organization's account")));
  }
  if (cfg.devSignIn) {
    const list = h("select", { id: "dev-subject", required: true });
    const form = h("form", { class: "dev-signin", onsubmit: async (e: Event) => {
      e.preventDefault();
      try {
        session = await devSignIn(list.value);
        await start(cfg);
      } catch (err) {
        fail("The dev sign-in failed.", err);
      }
    } },
      h("h2", {}, "Dev sign-in"),
      h("p", {}, "careteamd runs in dev mode on this machine: sign in as anyone in its directory."),
      h("label", { for: "dev-subject" }, "Sign in as"), list,
      h("button", { type: "submit", class: "primary" }, "Sign in"));
    parts.push(form);
    try {
      const subjects = await devSubjects();
      replace(list, subjects.map((s) => h("option", { value: s.subject },
        `${s.displayName} — ${s.role}${s.organization ? ", " + s.organization : ""} (${s.subject})`)));
    } catch (err) {
      parts.push(h("p", { class: "problem", role: "alert" }, `The directory could not be read: ${String(err)}`));
    }
  }
  if (!cfg.oidc && !cfg.devSignIn) {
    parts.push(h("p", {}, "No sign-in is configured: careteamd needs --oidc-client-id for its identity provider."));
  }
  replace(main, parts);
  (main.querySelector("select, button") as HTMLElement | null)?.focus();
}

async function start(cfg: AppConfig): Promise<void> {
  try {
    const caller = await api.directory.getCaller({});
    const me = caller.practitioner ? (await api.directory.getPractitioner({ name: caller.practitioner })).practitioner : undefined;
    who.textContent = `${me?.displayName ?? caller.subject} · ${roleLabels[caller.role]}`;
    signOut.hidden = false;
    if (![Role.COORDINATOR, Role.PHYSICIAN, Role.MASSAGE_THERAPIST].includes(caller.role)) {
      replace(main, h("h1", {}, "careteam"), h("p", {}, `The web app serves coordinators, physicians and therapists; ${roleLabels[caller.role]}s use the API and the CLI.`));
      return;
    }
    const dir = await loadDirectory(api);
    stop = worklist(main, api, { role: caller.role, practitioner: caller.practitioner, organization: caller.organization }, dir, cfg.ackWindowSeconds);
    main.focus();
    announce(`Signed in as ${who.textContent}.`);
  } catch (err) {
    if (isUnauthenticated(err)) {
      session = undefined;
      await signInPage(cfg, "Your sign-in has ended. Sign in again.");
      return;
    }
    fail("careteam could not be read.", err);
  }
}

async function boot(): Promise<void> {
  let cfg: AppConfig;
  try {
    cfg = await loadConfig();
  } catch (err) {
    fail(`careteam cannot be reached: ${String(err)}`);
    return;
  }
  signOut.addEventListener("click", () => {
    session = undefined;
    signInPage(cfg, "You have signed out.");
  });
  try {
    session = await finishOIDC(cfg.oidc);
  } catch (err) {
    await signInPage(cfg, String(err instanceof Error ? err.message : err));
    return;
  }
  if (session) await start(cfg);
  else await signInPage(cfg);
}

boot();
