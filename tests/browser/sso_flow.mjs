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
import { check, env, runStep, STEP_TIMEOUT_MS, watch } from './harness.mjs';

const BASE = env('BASE_URL');

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

await runStep('sso_flow.mjs', { login, device });
