// Drives Debian's Chromium through the device page and the dashboard, for tests/browser.rs.
//
//   node device_flow.mjs approve    open /device?device=CODE, sign in, wait for the device name
//                                   (prints `waiting for the device name` when the test must
//                                   send the CLI's first poll), check, approve
//   node device_flow.mjs dashboard  sign in at /login, rename the device, then delete it; then
//                                   submit the sign-in form with scripts disabled
//
// Input comes from the environment (BASE_URL, USER_CODE, USERNAME, PASSWORD, DEVICE_NAME,
// NEW_NAME). Exit status 0 means every check passed; otherwise the reason is on stderr.
import { check, env, runStep, STEP_TIMEOUT_MS, watch } from './harness.mjs';

const BASE = env('BASE_URL');

async function signIn(page) {
  await page.locator('#signin-form').waitFor({ state: 'visible' });
  check(await page.locator('#sso').isHidden(), 'the SSO button is hidden without OIDC');
  await page.fill('#username', env('USERNAME'));
  await page.fill('#password', env('PASSWORD'));
  await page.click('#signin-form button[type=submit]');
}

async function approve(page) {
  const code = env('USER_CODE');
  await page.goto(`${BASE}/device?device=${encodeURIComponent(code.toLowerCase())}`);
  await page.locator('#signin-form').waitFor({ state: 'visible' });
  check(await page.locator('#who').isHidden(), 'nobody is shown as signed in before signing in');
  check(await page.locator('#confirm').isHidden(), 'nothing to approve before signing in');
  await signIn(page);
  await page.locator('#confirm').waitFor({ state: 'visible' });
  check((await page.textContent('#code-text')) === code, 'the page shows the code');
  // The CLI has not polled yet, so the server does not know the name. Tell the test to send the
  // first poll (with the name), then wait for the page to pick it up on its own.
  check((await page.textContent('#device-name')) === 'unnamed device', 'no name before the first poll');
  console.log('waiting for the device name');
  await page.waitForFunction(
    (name) => document.getElementById('device-name').textContent === name,
    env('DEVICE_NAME'),
    { timeout: STEP_TIMEOUT_MS },
  );
  const shown = await page.textContent('#device-name');
  check(shown === env('DEVICE_NAME'), `the page shows the device name as text (got ${JSON.stringify(shown)})`);
  check((await page.locator('#device-name *').count()) === 0, 'the device name is not parsed as HTML');
  check((await page.textContent('#who-name')) === env('USERNAME'), 'the page shows who is signed in');
  check(await page.evaluate(() => localStorage.getItem('toki_access_token') !== null), 'tokens are kept in localStorage');
  await page.click('#approve');
  await page.locator('#done').waitFor({ state: 'visible' });
  check((await page.textContent('#done-title')) === 'Device connected', 'approval is confirmed');
}

async function dashboard(page) {
  await page.goto(`${BASE}/dashboard`);
  await page.waitForURL('**/login');
  await signIn(page);
  await page.waitForURL(/\/dashboard/);
  await page.click('nav.tabs a[data-view=devices]');
  const row = page.locator('#device-rows tr');
  await row.first().waitFor({ state: 'visible' });
  check((await row.count()) === 1, 'one device listed');
  check((await row.locator('.device-name').textContent()) === env('DEVICE_NAME'), 'the device is listed by name, as text');

  await row.getByRole('button', { name: 'Rename' }).click();
  await row.locator('input').fill(env('NEW_NAME'));
  await row.getByRole('button', { name: 'Save' }).click();
  await page.locator('#device-rows .device-name', { hasText: env('NEW_NAME') }).waitFor({ state: 'visible' });

  // An access token the server refuses is renewed with the refresh token, without a new sign-in.
  await page.evaluate(() => localStorage.setItem('toki_access_token', 'stale'));
  await page.reload();
  await page.locator('#device-rows .device-name', { hasText: env('NEW_NAME') }).waitFor({ state: 'visible' });
  const renewed = await page.evaluate(() => localStorage.getItem('toki_access_token'));
  check(renewed && renewed !== 'stale', 'the access token was refreshed');

  page.once('dialog', (d) => d.accept());
  await page.locator('#device-rows tr').getByRole('button', { name: 'Delete' }).click();
  await page.locator('#no-devices').waitFor({ state: 'visible' });
  check((await page.locator('#device-rows tr').count()) === 0, 'the deleted device is gone from the list');

  await page.click('#sign-out');
  await page.waitForURL('**/login');
  check(await page.evaluate(() => localStorage.getItem('toki_access_token') === null), 'signing out forgets the tokens');

  await withoutScript(page.context().browser());
}

// Should the script not run, submitting a sign-in form must not send the password anywhere (and
// never put it in a URL, where history and server logs would keep it).
async function withoutScript(browser) {
  const context = await browser.newContext({ javaScriptEnabled: false });
  try {
    const bare = await context.newPage();
    bare.setDefaultTimeout(STEP_TIMEOUT_MS);
    const sent = [];
    bare.on('request', (r) => sent.push({ url: r.url(), body: r.postData() || '' }));
    await bare.goto(`${BASE}/login`);
    await bare.fill('#username', env('USERNAME'));
    await bare.fill('#password', env('PASSWORD'));
    await Promise.all([bare.waitForNavigation(), bare.click('#signin-form button[type=submit]')]);
    const leaked = sent.filter((r) => r.url.includes(env('PASSWORD')) || r.body.includes(env('PASSWORD')));
    check(leaked.length === 0, `the password was sent by a script-less submit: ${JSON.stringify(leaked)}`);
    check(!bare.url().includes('?'), `a script-less submit puts nothing in the URL (${bare.url()})`);
    await bare.goto(`${BASE}/device?device=ABCD-EFGH`);
    check((await bare.getAttribute('#signin-form', 'method')) === 'post', 'the device page signs in with POST');
    for (const id of ['#username', '#password']) {
      check((await bare.getAttribute(id, 'name')) === null, `${id} has no name, so a plain submit carries no value`);
    }
  } finally {
    await context.close();
  }
}

await runStep('device_flow.mjs', { approve, dashboard });
