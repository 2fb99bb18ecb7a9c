// The console's only way to the REST API. The session's token lives in this module's variable
// and nowhere else: never in localStorage, sessionStorage, a cookie or a URL, so it is gone
// when the tab closes. Every call after sign-in carries `Authorization: JWT <token>`.

const TOKEN_TTL = 900; // seconds; renewed before it runs out while the page is open
let token = null;
let tokenUser = null; // {uid, exp} read from the token's claims (no secret in them)
let renewTimer = null;
const sessionEndHandlers = [];

export class ApiError extends Error {
  constructor(status, body, fallback) {
    const description = body && (body.description || (body.error_details && body.error_details.message));
    super(description || fallback || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.code = body ? body.error_code : undefined;
  }
}

function basicHeader(username, password) {
  const bytes = new TextEncoder().encode(`${username}:${password}`);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return `Basic ${btoa(binary)}`;
}

function claimsOf(jwt) {
  try {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return {};
  }
}

export function onSessionEnd(handler) {
  sessionEndHandlers.push(handler);
}

export function signedIn() {
  return token !== null;
}

export function currentUserUid() {
  return tokenUser ? tokenUser.uid : null;
}

function endSession(reason) {
  const had = token !== null;
  token = null;
  tokenUser = null;
  clearTimeout(renewTimer);
  if (had) for (const handler of sessionEndHandlers) handler(reason);
}

export function signOut() {
  endSession("signed-out");
}

// One request. `basic: [user, password]` sends Basic credentials instead of the token; `anonymous`
// sends none. Answers the parsed JSON body (null for an empty one); throws ApiError otherwise,
// and a network failure as the browser's TypeError.
export async function call(method, path, { body, basic, anonymous } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const sentToken = !basic && !anonymous && token !== null;
  if (basic) headers.Authorization = basicHeader(basic[0], basic[1]);
  else if (sentToken) headers.Authorization = `JWT ${token}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { description: text.slice(0, 300) };
    }
  }
  if (!response.ok) {
    if (response.status === 401 && sentToken) endSession("expired");
    throw new ApiError(response.status, data);
  }
  return data;
}

function scheduleRenewal() {
  clearTimeout(renewTimer);
  const exp = tokenUser && tokenUser.exp;
  if (!exp) return;
  const inMs = Math.max(5, exp - Date.now() / 1000 - 60) * 1000;
  renewTimer = setTimeout(async () => {
    try {
      const answer = await call("POST", "/v1/users/refresh_jwt", { body: { ttl: TOKEN_TTL } });
      setToken(answer.access_token);
    } catch {
      endSession("expired");
    }
  }, inMs);
}

function setToken(jwt) {
  token = jwt;
  const claims = claimsOf(jwt);
  tokenUser = { uid: claims.sub === undefined ? null : Number(claims.sub), exp: claims.exp };
  scheduleRenewal();
}

// Basic credentials exchanged for a token; the password is not kept.
export async function signIn(username, password) {
  const answer = await call("POST", "/v1/users/authorize", {
    basic: [username, password],
    body: { ttl: TOKEN_TTL },
  });
  setToken(answer.access_token);
}
