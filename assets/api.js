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

// The sign-in round trip through the identity provider (AREAS.md's contract): before leaving,
// the page stores a fresh random value here and sends it as `client_state`; the server hands it
// back in the fragment with the tokens.
const SIGNIN_STATE = 'toki_signin_state';

// Creates and stores a fresh sign-in state (256 bits, base64url) and returns it.
export function newSignInState() {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const value = btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  sessionStorage.setItem(SIGNIN_STATE, value);
  return value;
}

// After an OIDC sign-in the server redirects to
// /dashboard#access_token=…&refresh_token=…&expires_in=…&client_state=…. The tokens are taken
// only when client_state is the one this browser tab stored before leaving (so a link with
// someone else's tokens cannot sign anyone in), and never replace a session already signed in.
// The fragment is removed from the address bar in every case.
export function adoptFragmentTokens() {
  const params = new URLSearchParams(location.hash.slice(1));
  const access = params.get('access_token');
  if (!access) return false;
  history.replaceState(null, '', location.pathname + location.search);
  const expected = sessionStorage.getItem(SIGNIN_STATE);
  if (!expected || params.get('client_state') !== expected) return false;
  sessionStorage.removeItem(SIGNIN_STATE);
  if (signedIn()) return false;
  storeTokens({ access_token: access, refresh_token: params.get('refresh_token') });
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
// provider. The SSO button stays hidden unless the server has OIDC configured; with password
// sign-in turned off the form is hidden too (the break-glass admin opens /login?password=1).
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
    location.assign('/auth/oidc/authorize?client_state=' + encodeURIComponent(newSignInState()));
  });
  send('GET', '/auth/info').then((r) => {
    const info = r.status === 200 && r.data ? r.data : {};
    sso.hidden = info.oidc_enabled !== true;
    if (typeof info.oidc_label === 'string' && info.oidc_label) sso.textContent = info.oidc_label;
    const passwordOff = info.oidc_enabled === true && info.password_login === false;
    if (passwordOff && !new URLSearchParams(location.search).has('password')) form.hidden = true;
  }).catch(() => {});
}
