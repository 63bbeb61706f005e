// Signing in: OpenID Connect authorization code with PKCE against the
// issuer careteamd trusts, or in dev mode on this machine a dev sign-in
// that picks someone from the directory. The token lives in memory only:
// a reload signs in again. Only the PKCE verifier and state wait in
// sessionStorage across the issuer's redirect, and are removed on return.

export interface AppConfig {
  oidc?: { issuer: string; clientId: string; scopes: string[] };
  devSignIn: boolean;
  ackWindowSeconds: number;
}

export interface Session {
  token: string;
  expires: Date;
}

export async function loadConfig(): Promise<AppConfig> {
  const res = await fetch("/app-config.json", { headers: { Accept: "application/json" } });
  if (!res.ok) throw new Error(`app configuration: HTTP ${res.status}`);
  return (await res.json()) as AppConfig;
}

// ---- dev sign-in

export interface DevSubject {
  subject: string;
  displayName: string;
  role: string;
  organization: string;
}

export async function devSubjects(): Promise<DevSubject[]> {
  const res = await fetch("/dev/subjects");
  if (!res.ok) throw new Error(`the directory: HTTP ${res.status}`);
  return (await res.json()) as DevSubject[];
}

export async function devSignIn(subject: string): Promise<Session> {
  const res = await fetch("/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ subject }),
  });
  if (!res.ok) throw new Error(`dev sign-in: HTTP ${res.status}`);
  const body = (await res.json()) as { token: string; expireTime: string };
  return { token: body.token, expires: new Date(body.expireTime) };
}

// ---- OpenID Connect, authorization code with PKCE

interface Discovery {
  authorization_endpoint: string;
  token_endpoint: string;
}

const pendingKey = "careteam.oidc.pending";

async function discover(issuer: string): Promise<Discovery> {
  const res = await fetch(issuer.replace(/\/$/, "") + "/.well-known/openid-configuration");
  if (!res.ok) throw new Error(`the identity provider's discovery document: HTTP ${res.status}`);
  return (await res.json()) as Discovery;
}

function base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(): string {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

function redirectURI(): string {
  return window.location.origin + "/";
}

// beginOIDC sends the browser to the issuer to sign in.
export async function beginOIDC(cfg: NonNullable<AppConfig["oidc"]>): Promise<void> {
  const d = await discover(cfg.issuer);
  const verifier = randomString();
  const state = randomString();
  const challenge = base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
  sessionStorage.setItem(pendingKey, JSON.stringify({ verifier, state }));
  const url = new URL(d.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: cfg.clientId,
    redirect_uri: redirectURI(),
    scope: cfg.scopes.join(" "),
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  }).toString();
  window.location.assign(url.toString());
}

// finishOIDC completes a sign-in the issuer redirected back from, or
// returns undefined when the page was not such a return.
export async function finishOIDC(cfg: AppConfig["oidc"]): Promise<Session | undefined> {
  const params = new URLSearchParams(window.location.search);
  const code = params.get("code");
  const state = params.get("state");
  const error = params.get("error");
  if (!code && !error) return undefined;
  const pending = sessionStorage.getItem(pendingKey);
  sessionStorage.removeItem(pendingKey);
  window.history.replaceState(null, "", "/");
  if (error) throw new Error(`the identity provider refused the sign-in: ${error}`);
  if (!cfg || !pending) throw new Error("the sign-in was not started here; sign in again");
  const { verifier, state: sent } = JSON.parse(pending) as { verifier: string; state: string };
  if (state !== sent) throw new Error("the sign-in's state does not match; sign in again");
  const d = await discover(cfg.issuer);
  const res = await fetch(d.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: code!,
      redirect_uri: redirectURI(),
      client_id: cfg.clientId,
      code_verifier: verifier,
    }),
  });
  if (!res.ok) throw new Error(`the identity provider's token endpoint: HTTP ${res.status}`);
  const body = (await res.json()) as { access_token: string; expires_in?: number };
  return { token: body.access_token, expires: new Date(Date.now() + (body.expires_in ?? 3600) * 1000) };
}
