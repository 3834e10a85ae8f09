// The server's API as the dashboard uses it: one fetch wrapper that sends the key, turns every
// error into an ApiError carrying the server's {"error": {"code", "message"}}, and asks for a
// key when the server answers 401. Also who the key is (/v1/whoami) and what its grants allow,
// so that the pages can disable what the server would refuse anyway.

const TOKEN_KEY = 'redrive.token';

export class ApiError extends Error {
  constructor(status, code, message, path) {
    super(message);
    this.status = status;
    this.code = code;
    this.path = path;
  }

  /**
   * The route does not exist on this server (an older binary): the feature is missing. A path
   * that exists for another method only (GET of the enqueue route) answers 405.
   */
  get missingRoute() {
    return (this.status === 404 && this.code === 'route_not_found') || this.status === 405;
  }
}

export const enc = encodeURIComponent;

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Set by the app: shows the key prompt and resolves to true once a key was given.
let askForKey = async () => false;
export function onUnauthorized(fn) {
  askForKey = fn;
}

// One prompt at a time: every request that meets a 401 meanwhile waits for the same answer.
let prompting = null;

async function errorOf(res, path) {
  const text = await res.text();
  try {
    const e = JSON.parse(text).error;
    if (e && e.code) return new ApiError(res.status, e.code, e.message || e.code, path);
  } catch {
    // not the error envelope: fall through
  }
  const why = text.trim().slice(0, 200) || res.statusText || 'no message';
  return new ApiError(res.status, `http_${res.status}`, why, path);
}

async function send(method, path, body, as) {
  for (;;) {
    const headers = {};
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, 'network', `cannot reach the server (${e.message})`, path);
    }
    if (res.status === 401) {
      const err = await errorOf(res, path);
      if (!prompting) prompting = askForKey(err).finally(() => (prompting = null));
      if (await prompting) continue;
      throw err;
    }
    if (!res.ok) throw await errorOf(res, path);
    if (res.status === 204) return null;
    const text = await res.text();
    if (as === 'text') return text;
    try {
      return text ? JSON.parse(text) : null;
    } catch {
      throw new ApiError(res.status, 'bad_response', `the server's answer is not JSON`, path);
    }
  }
}

export const get = (path) => send('GET', path);
export const getText = (path) => send('GET', path, undefined, 'text');
export const post = (path, body) => send('POST', path, body === undefined ? {} : body);
export const del = (path) => send('DELETE', path);

/** A query string from an object; arrays repeat the name, empty values are left out. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    for (const one of Array.isArray(v) ? v : [v]) if (one !== '') q.append(k, one);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

// Who we are. `known` is false until /v1/whoami answered (an older server has no such route:
// then nothing is hidden and the server's 403s speak for themselves).
export const session = { known: false, auth: false, keyId: null, name: null, grants: [] };

export async function loadWhoami() {
  try {
    const w = await get('/v1/whoami');
    Object.assign(session, {
      known: true,
      auth: !!w.auth,
      keyId: w.key_id || null,
      name: w.name || null,
      grants: w.grants || [],
    });
  } catch (e) {
    if (!e.missingRoute) throw e;
    Object.assign(session, { known: false, auth: false, keyId: null, name: null, grants: [] });
  }
  return session;
}

function globMatches(glob, name) {
  const re = glob.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${re}$`).test(name);
}

/**
 * Whether the key may do `action` (send, receive, read, manage, triage, admin) on `queue`, or on
 * some queue when `queue` is left out. `admin` implies every action. True when unknown.
 */
export function can(action, queue) {
  if (!session.known || !session.auth) return true;
  return session.grants.some((g) => {
    const i = g.indexOf(':');
    const a = g.slice(0, i);
    const glob = g.slice(i + 1);
    if (a !== action && a !== 'admin') return false;
    return queue === undefined || globMatches(glob, queue);
  });
}
