// A real OpenID provider (npm oidc-provider) on loopback, for tests/oidc.rs and the browser SSO
// tests. It registers one confidential client for the toki-sync server under test, signs with a
// fresh key (new key id) at every start, and has a minimal sign-in page:
//
//   GET  /interaction/:uid         a form: login name, "Sign in" and "Cancel"
//   POST /interaction/:uid/login   login=<name>: signs in as subject <name>
//   POST /interaction/:uid/abort   ends with error=access_denied (the provider's own error)
//
// Consent is granted automatically (a first-party client). Test controls, loopback only:
//
//   POST /__test/account  {sub, preferred_username?, email?, groups?}  claims of an account
//   POST /__test/mode     {mode: "" | "wrong-aud" | "wrong-nonce"}  re-sign the next ID tokens
//                          with the provider's own key but another audience or nonce
//
// Environment: PORT (0: any free port), CLIENT_ID, CLIENT_SECRET, REDIRECT_URI,
// CLAIMS_IN_USERINFO (1: profile and group claims only from userinfo), SIGNING_ALG (RS256 or
// ES256). Prints
// `listening http://127.0.0.1:PORT` once it serves.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import { SignJWT, importJWK, decodeJwt } from 'jose';

const env = (name) => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`missing environment variable ${name}`);
  return v;
};

const accounts = new Map();
let mode = '';

function claimsOf(sub) {
  const a = accounts.get(sub) || {};
  return {
    sub,
    preferred_username: a.preferred_username ?? sub,
    email: a.email ?? `${sub}@example.test`,
    email_verified: true,
    groups: a.groups ?? [],
  };
}

const ALG = process.env.SIGNING_ALG || 'RS256';
const { privateKey } = ALG === 'ES256'
  ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
  : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: ALG, use: 'sig' };

const server = http.createServer();
await new Promise((resolve) => server.listen(Number(env('PORT')), '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: env('CLIENT_ID'),
    client_secret: env('CLIENT_SECRET'),
    redirect_uris: [env('REDIRECT_URI')],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: ALG,
  }],
  jwks: { keys: [signingJwk] },
  cookies: { keys: ['toki-sync-test-cookie-key'] },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  // The claims go into the ID token (as Keycloak does), or with CLAIMS_IN_USERINFO=1 only into
  // userinfo (as Authelia does by default).
  conformIdTokenClaims: process.env.CLAIMS_IN_USERINFO === '1',
  features: { devInteractions: { enabled: false } },
  pkce: { required: () => true },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => claimsOf(sub) }),
  // A first-party client: consent is implied.
  loadExistingGrant: async (ctx) => {
    const existing = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (existing) return ctx.oidc.provider.Grant.find(existing);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid profile email groups');
    grant.addOIDCClaims(['preferred_username', 'email', 'email_verified', 'groups']);
    await grant.save();
    ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId, grant.jti);
    return grant;
  },
});

// Test modes: the provider's answer is re-signed with its own key, so only the changed claim is
// wrong, and the server under test must notice exactly that.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/token' && mode && ctx.body && ctx.body.id_token) {
    const claims = decodeJwt(ctx.body.id_token);
    if (mode === 'wrong-aud') claims.aud = 'another-client';
    if (mode === 'wrong-nonce') claims.nonce = 'not-the-nonce-that-was-sent';
    const key = await importJWK(signingJwk, ALG);
    ctx.body = { ...ctx.body, id_token: await new SignJWT(claims).setProtectedHeader({ alg: ALG, kid: signingJwk.kid }).sign(key) };
  }
});

const providerHandler = provider.callback();

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (c) => { data += c; if (data.length > 65536) reject(new Error('body too large')); });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

async function handle(req, res) {
  const url = new URL(req.url, issuer);
  const path = url.pathname;
  if (req.method === 'POST' && path === '/__test/account') {
    const a = JSON.parse(await readBody(req));
    accounts.set(a.sub, a);
    res.writeHead(204).end();
    return;
  }
  if (req.method === 'POST' && path === '/__test/mode') {
    mode = JSON.parse(await readBody(req)).mode || '';
    res.writeHead(204).end();
    return;
  }
  const m = path.match(/^\/interaction\/([^/]+)(\/login|\/abort)?$/);
  if (m) {
    const details = await provider.interactionDetails(req, res);
    if (req.method === 'GET' && !m[2]) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><html><head><title>Test provider sign-in</title></head><body>
<h1>Test provider</h1><p>Signing in to ${escapeHtml(details.params.client_id)}</p>
<form method="post" action="/interaction/${escapeHtml(details.uid)}/login">
<label>Login <input name="login" id="provider-login" autofocus></label>
<button type="submit" id="provider-submit">Sign in</button></form>
<form method="post" action="/interaction/${escapeHtml(details.uid)}/abort"><button type="submit" id="provider-cancel">Cancel</button></form>
</body></html>`);
      return;
    }
    if (req.method === 'POST' && m[2] === '/login') {
      const login = new URLSearchParams(await readBody(req)).get('login');
      if (!login) {
        res.writeHead(400).end('login is required');
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
      return;
    }
    if (req.method === 'POST' && m[2] === '/abort') {
      await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user cancelled the sign-in' }, { mergeWithLastSubmission: false });
      return;
    }
  }
  providerHandler(req, res);
}

server.on('request', (req, res) => {
  handle(req, res).catch((e) => {
    console.error('provider error:', e);
    if (!res.headersSent) res.writeHead(500);
    res.end(String(e && e.message));
  });
});

console.log(`listening ${issuer}`);
