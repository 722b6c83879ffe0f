// Drives Debian's Chromium through SSO sign-in with a real OpenID provider, for
// tests/browser_sso.rs.
//
//   node sso_flow.mjs login    /login → "SSO" button → the provider's page → back on the
//                              dashboard, signed in; then tokens in a fragment this tab did not
//                              ask for are refused
//   node sso_flow.mjs device   /device?device=CODE → SSO → back on the device page with the code,
//                              approve
//
// Input from the environment: BASE_URL, LOGIN (the provider login), USERNAME (the account it
// signs in to), LABEL (the button's label), USER_CODE (device), FOREIGN_TOKEN (login). Exit
// status 0 means every check passed; otherwise the reason is on stderr.
import { chromium } from 'playwright-core';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`missing environment variable ${name}`);
  return v;
};
const BASE = env('BASE_URL');
const STEP_TIMEOUT_MS = 20000;

function check(cond, message) {
  if (!cond) throw new Error('check failed: ' + message);
}

function watch(page, problems) {
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (msg) => {
    const text = msg.text();
    if (msg.type() === 'error' && !text.startsWith('Failed to load resource: the server responded with a status of')) {
      problems.push('console error: ' + text);
    }
  });
}

// On the provider's own page: sign in as LOGIN.
async function atProvider(page) {
  await page.locator('#provider-login').waitFor({ state: 'visible' });
  check(page.url().startsWith('http://127.0.0.1:') && !page.url().startsWith(BASE), `at the provider (${page.url()})`);
  await page.fill('#provider-login', env('LOGIN'));
  await page.click('#provider-submit');
}

async function clickSso(page) {
  const sso = page.locator('#sso');
  await sso.waitFor({ state: 'visible' });
  check((await sso.textContent()) === env('LABEL'), 'the button has the configured label');
  await sso.click();
}

async function whoAmI(page) {
  return page.evaluate(async () => {
    const r = await fetch('/me', { headers: { Authorization: 'Bearer ' + localStorage.getItem('toki_access_token') } });
    return r.status === 200 ? (await r.json()).username : `HTTP ${r.status}`;
  });
}

async function login(page) {
  await page.goto(`${BASE}/login`);
  await clickSso(page);
  await atProvider(page);
  await page.waitForURL(`${BASE}/dashboard`);
  check(!page.url().includes('#'), 'the tokens are gone from the address bar');
  check((await whoAmI(page)) === env('USERNAME'), 'signed in as the account the provider identity maps to');
  check(await page.evaluate(() => sessionStorage.getItem('toki_signin_state') === null), 'the sign-in state is used up');

  // A link carrying someone's tokens, in a tab that started no sign-in, signs nobody in.
  const context = await page.context().browser().newContext();
  try {
    const other = await context.newPage();
    other.setDefaultTimeout(STEP_TIMEOUT_MS);
    await other.goto(`${BASE}/dashboard#access_token=${encodeURIComponent(env('FOREIGN_TOKEN'))}&refresh_token=x&expires_in=3600&client_state=guessed-state-value`);
    await other.waitForURL(`${BASE}/login`);
    check(await other.evaluate(() => localStorage.getItem('toki_access_token') === null), 'foreign fragment tokens are refused');
  } finally {
    await context.close();
  }
}

async function device(page) {
  const code = env('USER_CODE');
  await page.goto(`${BASE}/device?device=${encodeURIComponent(code)}`);
  await page.locator('#signin-form').waitFor({ state: 'visible' });
  await clickSso(page);
  await atProvider(page);
  // Back through the dashboard to the device page, with the code kept across the round trip.
  await page.waitForURL(`${BASE}/device?device=*`);
  await page.locator('#confirm').waitFor({ state: 'visible' });
  check((await page.textContent('#code-text')) === code, 'the page shows the pending code again');
  check((await page.textContent('#who-name')) === env('USERNAME'), 'signed in through SSO');
  await page.click('#approve');
  await page.locator('#done').waitFor({ state: 'visible' });
  check((await page.textContent('#done-title')) === 'Device connected', 'approval is confirmed');
}

const steps = { login, device };
const step = steps[process.argv[2]];
if (!step) {
  console.error(`usage: node sso_flow.mjs ${Object.keys(steps).join('|')}`);
  process.exit(2);
}
setTimeout(() => {
  console.error('sso_flow.mjs: gave up after 120 s');
  process.exit(3);
}, 120000).unref();

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
});
let failed = false;
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  const problems = [];
  watch(page, problems);
  await step(page);
  check(problems.length === 0, problems.join('; '));
  console.log(`sso_flow.mjs ${process.argv[2]}: ok`);
} catch (e) {
  failed = true;
  console.error(`sso_flow.mjs ${process.argv[2]}: ${e.stack || e}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
