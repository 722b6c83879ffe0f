// Drives Debian's Chromium through the device page and the dashboard, for tests/browser.rs.
//
//   node device_flow.mjs approve    open /device?device=CODE, sign in, check, approve
//   node device_flow.mjs dashboard  sign in at /login, rename the device, then delete it
//
// Input comes from the environment (BASE_URL, USER_CODE, USERNAME, PASSWORD, DEVICE_NAME,
// NEW_NAME). Exit status 0 means every check passed; otherwise the reason is on stderr.
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

// Fail the run on any script error or CSP violation the page reports. HTTP error statuses are
// logged by Chromium too; the page handles those itself (a 401 leads to a token refresh).
function watch(page, problems) {
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (msg) => {
    const text = msg.text();
    if (msg.type() === 'error' && !text.startsWith('Failed to load resource: the server responded with a status of')) {
      problems.push('console error: ' + text);
    }
  });
}

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
  await page.waitForURL('**/dashboard');
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
}

const steps = { approve, dashboard };
const step = steps[process.argv[2]];
if (!step) {
  console.error(`usage: node device_flow.mjs ${Object.keys(steps).join('|')}`);
  process.exit(2);
}
// A hung browser must not hang the test suite.
setTimeout(() => {
  console.error('device_flow.mjs: gave up after 120 s');
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
  console.log(`device_flow.mjs ${process.argv[2]}: ok`);
} catch (e) {
  failed = true;
  console.error(`device_flow.mjs ${process.argv[2]}: ${e.stack || e}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
