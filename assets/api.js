// Shared by every page: token storage, API calls that refresh the access token when it has
// expired, and the sign-in form. User-provided strings are only ever set as textContent.

const ACCESS = 'toki_access_token';
const REFRESH = 'toki_refresh_token';
// The device code a sign-in round trip through the identity provider must come back to.
export const PENDING_DEVICE = 'toki_pending_device';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function signedIn() {
  return localStorage.getItem(ACCESS) !== null;
}

function storeTokens(pair) {
  localStorage.setItem(ACCESS, pair.access_token);
  if (pair.refresh_token) localStorage.setItem(REFRESH, pair.refresh_token);
}

export function signOut() {
  localStorage.removeItem(ACCESS);
  localStorage.removeItem(REFRESH);
}

// After an OIDC sign-in the server redirects to /dashboard#access_token=…&refresh_token=….
export function adoptFragmentTokens() {
  const params = new URLSearchParams(location.hash.slice(1));
  const access = params.get('access_token');
  if (!access) return false;
  storeTokens({ access_token: access, refresh_token: params.get('refresh_token') });
  history.replaceState(null, '', location.pathname + location.search);
  return true;
}

async function send(method, path, body, token) {
  const headers = {};
  if (token) headers['Authorization'] = 'Bearer ' + token;
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  let data = null;
  const text = await resp.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  return { status: resp.status, data };
}

// One refresh at a time: parallel calls that all got 401 share it.
let refreshing = null;

async function refreshTokens() {
  const refresh = localStorage.getItem(REFRESH);
  if (!refresh) return false;
  if (!refreshing) {
    refreshing = send('POST', '/token/refresh', { refresh_token: refresh })
      .then((r) => {
        if (r.status === 200 && r.data && r.data.access_token) {
          storeTokens(r.data);
          return true;
        }
        signOut();
        return false;
      })
      .catch(() => false)
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

// Calls the API with the stored access token; on 401 refreshes once and retries. Resolves with
// the JSON body, rejects with an ApiError (status 401 means: sign in again).
export async function api(method, path, body) {
  let r = await send(method, path, body, localStorage.getItem(ACCESS));
  if (r.status === 401 && await refreshTokens()) {
    r = await send(method, path, body, localStorage.getItem(ACCESS));
  }
  if (r.status === 401) signOut();
  if (r.status >= 200 && r.status < 300) return r.data;
  const message = r.data && typeof r.data.error === 'string' ? r.data.error : 'request failed (HTTP ' + r.status + ')';
  throw new ApiError(r.status, message);
}

export function byId(id) {
  return document.getElementById(id);
}

export function showOnly(ids, visible) {
  for (const id of ids) byId(id).hidden = id !== visible;
}

// Wires the sign-in form (ids signin-form, username, password, signin-error, sso). `onSignedIn`
// runs after a successful password sign-in. `beforeSso` runs before leaving for the identity
// provider. The SSO button stays hidden unless the server has OIDC configured.
export function setupSignIn(onSignedIn, beforeSso) {
  const form = byId('signin-form');
  const error = byId('signin-error');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    const submit = form.querySelector('button[type=submit]');
    submit.disabled = true;
    try {
      const r = await send('POST', '/login', { username: byId('username').value, password: byId('password').value });
      if (r.status === 200 && r.data && r.data.access_token) {
        storeTokens(r.data);
        byId('password').value = '';
        await onSignedIn();
      } else {
        error.textContent = r.data && r.data.error ? r.data.error : 'sign-in failed (HTTP ' + r.status + ')';
      }
    } catch (e) {
      error.textContent = 'cannot reach the server: ' + e.message;
    } finally {
      submit.disabled = false;
    }
  });
  const sso = byId('sso');
  sso.addEventListener('click', () => {
    if (beforeSso) beforeSso();
    location.assign('/auth/oidc/authorize');
  });
  send('GET', '/auth/info').then((r) => {
    sso.hidden = !(r.status === 200 && r.data && r.data.oidc_enabled === true);
  }).catch(() => {});
}
