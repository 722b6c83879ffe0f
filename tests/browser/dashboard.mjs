// Drives Debian's Chromium through the dashboard, for tests/browser.rs.
//
//   node dashboard.mjs user    sign in as a user: overview (cards, chart, breakdowns, calendar,
//                              blocks) equal to the usage API, controls and URL state, teams,
//                              devices (rename, delete), 375 px, dark, account, sign out
//                              everywhere; no admin section and 403 from the admin API
//   node dashboard.mjs admin   sign in as an admin: create a user, approve a pending one, change
//                              a role, see the server and live sessions
//
// Input comes from the environment (BASE_URL, USERNAME, PASSWORD, ADMIN_USERNAME,
// ADMIN_PASSWORD, SCREENSHOTS). Exit status 0 means every check passed; otherwise the reason is
// on stderr. Prints `page ready after N ms` for the first full render.
import { check, env, runStep, STEP_TIMEOUT_MS, watch } from './harness.mjs';

const BASE = env('BASE_URL');
const SHOTS = env('SCREENSHOTS');

function near(a, b) {
  return Math.abs(Number(a) - Number(b)) < 1e-9;
}

async function newPage(browser, options) {
  const context = await browser.newContext(options || {});
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
  });
  return page;
}

async function signIn(page, user, password) {
  await page.goto(`${BASE}/dashboard`);
  await page.waitForURL('**/login');
  await page.fill('#username', user);
  await page.fill('#password', password);
  await page.click('#signin-form button[type=submit]');
  await page.waitForURL(/\/dashboard/);
}

// Waits until the view has rendered (after the render that started last).
async function rendered(page, view) {
  await page.waitForFunction((v) => {
    const m = document.getElementById('view');
    return (m.dataset.rendered === v || document.getElementById('error').textContent) && m.getAttribute('aria-busy') === 'false';
  }, view);
  const error = await page.textContent('#error');
  check(!error, `the ${view} view failed: ${error}`);
}

// Calls the API from inside the page with the page's own token.
async function apiGet(page, path) {
  return page.evaluate(async (p) => {
    const r = await fetch(p, { headers: { Authorization: 'Bearer ' + localStorage.getItem('toki_access_token') } });
    return { status: r.status, body: await r.json() };
  }, path);
}

// The usage API for the window the page shows.
async function usageFor(page, extra) {
  const w = await page.evaluate(() => ({ ...document.body.dataset }));
  const q = new URLSearchParams({ start: String(Math.floor(w.start / 1000)), end: String(Math.ceil(w.end / 1000)), utc_offset: w.offset, ...extra });
  const r = await apiGet(page, '/api/v1/usage?' + q);
  check(r.status === 200, 'usage API: ' + JSON.stringify(r.body));
  return r.body;
}

const label = (key, g) => key === 'device' ? (g.device_name || 'unnamed device')
  : key === 'user' ? g.username : key === 'project' ? (g.project || '(no project)') : g[key];

// The page asks once per grouping; for the chart's grouping with the chart's step (a series'
// total is then summed over its points, which can differ in the last micro-dollar).
async function checkBreakdown(page, key, chartGroup, step) {
  const report = await usageFor(page, key === chartGroup ? { group_by: key, step } : { group_by: key });
  const rows = await page.$$eval(`#breakdown-${key} tbody tr`, (trs) => trs.map((tr) => ({
    key: tr.dataset.key,
    values: [...tr.querySelectorAll('td')].map((td) => td.dataset.value),
  })));
  check(rows.length === report.series.length, `${key}: ${rows.length} rows for ${report.series.length} groups`);
  for (const s of report.series) {
    const row = rows.find((r) => r.key === label(key, s.group));
    check(row, `${key}: a row for ${label(key, s.group)}`);
    const t = s.totals;
    const want = [t.tokens.input, t.tokens.output, t.tokens.cache_create, t.tokens.cache_read, t.total];
    check(want.every((v, i) => Number(row.values[i]) === v), `${key} ${row.key}: ${row.values} vs ${want}`);
    check(near(row.values[5], t.cost_usd), `${key} ${row.key}: cost ${row.values[5]} vs ${t.cost_usd}`);
  }
  if (key === 'model') {
    const marked = await page.$$eval('#breakdown-model tbody tr .badge', (b) => b.map((x) => x.closest('tr').dataset.key));
    check(JSON.stringify(marked.sort()) === JSON.stringify([...report.unpriced_models].sort()), `unpriced models marked: ${marked}`);
  }
}

async function checkOverview(page, group) {
  await rendered(page, 'overview');
  const value = (id) => page.$eval(id, (e) => Number(e.dataset.value));
  const w = await page.evaluate(() => ({ ...document.body.dataset }));
  const step = await page.evaluate(() => document.body.dataset.step);
  const main = await usageFor(page, { group_by: group, step });
  check((await value('#card-tokens')) === main.totals.total, 'tokens card equals the API');
  check(near(await value('#card-cost'), main.totals.cost_usd), 'cost card equals the API');
  check((await value('#card-events')) === main.totals.events, 'events card equals the API');
  const byDevice = await usageFor(page, { group_by: 'device' });
  check((await value('#card-devices')) === byDevice.series.length, 'active devices card equals the API');
  for (const key of ['model', 'project', 'device', 'provider']) await checkBreakdown(page, key, group, step);
  // One chart series per group (top 8, then one "other").
  const want = Math.min(main.series.length, 9);
  const count = await page.$eval('#usage-chart', (e) => Number(e.dataset.seriesCount));
  check(count === want, `chart has ${count} series for ${main.series.length} groups`);
  check((await page.locator('#usage-chart .legend-item').count()) === want, 'one legend entry per series');
  // The calendar: 365 days; its values add up to the year's usage.
  const cells = await page.$$eval('#calendar rect.day', (r) => r.map((x) => Number(x.dataset.value)));
  check(cells.length === 365, `calendar has ${cells.length} days`);
  // Blocks: one panel per provider the blocks endpoint reports.
  const blocks = await apiGet(page, '/api/v1/usage/blocks?' + new URLSearchParams({ start: String(Math.floor(Date.now() / 1000) - 2 * 86400), utc_offset: w.offset }));
  check(blocks.status === 200, 'blocks API');
  check((await page.locator('#blocks-list .block-provider').count()) === blocks.body.providers.length, 'one blocks panel per provider');
  for (const p of blocks.body.providers.filter((p) => p.current)) {
    const shown = await page.$eval(`#blocks-list .block-current[data-provider="${p.provider}"]`, (e) => Number(e.dataset.total));
    check(shown === p.current.total, `current ${p.provider} block: ${shown} vs ${p.current.total}`);
  }
  return main;
}

async function noProblems(page, problems) {
  const csp = await page.evaluate(() => window.__csp || []);
  check(csp.length === 0, 'CSP violations: ' + csp.join('; '));
  check(problems.length === 0, problems.join('; '));
}

async function user(browser) {
  const page = await newPage(browser, { viewport: { width: 1280, height: 900 } });
  const problems = [];
  watch(page, problems);
  await signIn(page, env('USERNAME'), env('PASSWORD'));
  await rendered(page, 'overview');
  const ready = await page.evaluate(() => window.tokiReadyMs);
  console.log(`page ready after ${Math.round(ready)} ms`);
  check(new URL(page.url()).search === '', 'the default view is the bare /dashboard');
  check(await page.locator('#range-control [data-range="7d"][aria-pressed=true]').count() === 1, 'the default range is 7 days');
  check(await page.locator('#nav-admin').isHidden(), 'a user sees no admin section');
  await checkOverview(page, 'model');
  await page.screenshot({ path: `${SHOTS}/overview.png`, fullPage: true });

  // Tooltip on hover and on keyboard focus; a legend entry hides its series.
  await page.locator('#usage-chart g.bar').last().hover();
  await page.locator('.chart-tip').waitFor({ state: 'visible' });
  await page.locator('#usage-chart g.bar').first().focus();
  check(await page.locator('.chart-tip').isVisible(), 'a focused bar shows its tooltip');
  const item = page.locator('#usage-chart .legend-item').first();
  await item.click();
  check((await item.getAttribute('aria-pressed')) === 'false', 'a legend entry toggles its series');

  // Controls change the URL; the URL restores the view.
  await page.click('#range-control [data-range="30d"]');
  await page.waitForURL(/range=30d/);
  await page.selectOption('#group-by', 'project');
  await page.waitForURL(/group=project/);
  await page.check('input[name=metric][value=cost]');
  await page.waitForURL(/metric=cost/);
  await checkOverview(page, 'project');
  await page.reload();
  await rendered(page, 'overview');
  check(await page.$eval('#group-by', (s) => s.value) === 'project', 'the grouping comes back from the URL');
  check(await page.locator('#range-control [data-range="30d"][aria-pressed=true]').count() === 1, 'the range comes back from the URL');
  await page.click('#range-control [data-range="today"]');
  await checkOverview(page, 'project');
  await page.click('#range-control [data-range="1y"]');
  await checkOverview(page, 'project');
  await page.click('#range-control [data-range="custom"]');
  await page.fill('#custom-from', '2026-01-01');
  await page.click('#custom-range button[type=submit]');
  await page.waitForURL(/from=2026-01-01/);
  await checkOverview(page, 'project');

  // Teams: the team's totals are the team scope's.
  await page.click('nav.tabs a[data-view=teams]');
  await rendered(page, 'teams');
  const team = page.locator('section.team').first();
  const teamId = await team.getAttribute('data-team-id');
  const teamUsage = await usageFor(page, { team: teamId, group_by: 'user' });
  check(Number(await team.locator('.stat').first().getAttribute('data-value')) === teamUsage.totals.total, 'team total equals the API');
  check(await team.locator('table.breakdown tbody tr').count() === teamUsage.series.length, 'one row per member with usage');
  check(Number(await team.locator('.team-chart').getAttribute('data-series-count')) === teamUsage.series.length, 'team chart: one series per member');
  await page.screenshot({ path: `${SHOTS}/teams.png`, fullPage: true });

  // Devices: live sessions, rename, delete.
  await page.click('nav.tabs a[data-view=devices]');
  await rendered(page, 'devices');
  check(await page.locator('#device-rows tr').count() === 3, 'three devices');
  const laptop = page.locator('#device-rows tr', { has: page.locator('.device-name', { hasText: 'laptop' }) });
  check((await laptop.locator('.live').textContent()) === 'claude_code', 'the laptop is connected now');
  const serverId = await page.locator('#device-rows tr', { has: page.locator('.device-name', { hasText: 'build server' }) }).getAttribute('data-device-id');
  const server = page.locator(`#device-rows tr[data-device-id="${serverId}"]`);
  await server.getByRole('button', { name: 'Rename' }).click();
  await server.locator('input').fill('renamed server');
  await server.locator('input').press('Enter');
  await page.locator('#device-rows .device-name', { hasText: 'renamed server' }).waitFor();
  let dialog = '';
  page.once('dialog', (d) => { dialog = d.message(); d.accept(); });
  const desktop = page.locator('#device-rows tr', { has: page.locator('.device-name', { hasText: 'desktop' }) });
  await desktop.getByRole('button', { name: 'Delete' }).click();
  await page.waitForFunction(() => document.querySelectorAll('#device-rows tr').length === 2);
  check(dialog.includes('removes all usage it synced'), 'the confirmation says what deletion removes: ' + dialog);
  await page.screenshot({ path: `${SHOTS}/devices.png`, fullPage: true });

  // A 375 px phone, light and dark: nothing wider than the screen.
  await page.setViewportSize({ width: 375, height: 800 });
  await page.click('nav.tabs a[data-view=overview]');
  await rendered(page, 'overview');
  await page.reload();
  await rendered(page, 'overview');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  check(overflow <= 375, `the page fits 375 px (scroll width ${overflow})`);
  await page.screenshot({ path: `${SHOTS}/overview-375.png`, fullPage: true });
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.screenshot({ path: `${SHOTS}/overview-375-dark.png`, fullPage: true });
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(bg !== 'rgb(245, 246, 248)', 'dark mode changes the background');
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1280, height: 900 });

  // The admin API refuses a user; the admin view says so.
  check((await apiGet(page, '/admin/users')).status === 403, 'a user gets 403 from the admin API');
  await page.goto(`${BASE}/dashboard?view=admin`);
  await page.waitForFunction(() => document.getElementById('view').dataset.rendered === 'admin');
  check((await page.locator('#admin-users').count()) === 0, 'no admin panel for a user');

  // Account: an API error is shown as the API's message; then a real change.
  await page.click('nav.tabs a[data-view=account]');
  await rendered(page, 'account');
  await page.fill('#current-password', 'not-my-password');
  await page.fill('#new-password', 'new-password-456');
  await page.fill('#new-password-again', 'new-password-456');
  await page.click('#password-form button[type=submit]');
  await page.locator('#password-message', { hasText: 'current password is incorrect' }).waitFor();
  await page.fill('#current-password', env('PASSWORD'));
  await page.fill('#new-password', 'new-password-456');
  await page.fill('#new-password-again', 'new-password-456');
  await page.click('#password-form button[type=submit]');
  await page.locator('#password-message.success').waitFor();
  await page.screenshot({ path: `${SHOTS}/account.png`, fullPage: true });

  // Sign out everywhere: the refresh token is dead afterwards.
  const refresh = await page.evaluate(() => localStorage.getItem('toki_refresh_token'));
  page.once('dialog', (d) => d.accept());
  await page.click('#sign-out-everywhere');
  await page.waitForURL('**/login');
  const again = await page.evaluate(async (t) => (await fetch('/token/refresh', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: t }),
  })).status, refresh);
  check(again === 401, `the refresh token is revoked (got ${again})`);
  await noProblems(page, problems);
}

async function admin(browser) {
  const page = await newPage(browser, { viewport: { width: 1280, height: 900 } });
  const problems = [];
  watch(page, problems);
  await signIn(page, env('ADMIN_USERNAME'), env('ADMIN_PASSWORD'));
  await rendered(page, 'overview');
  await page.locator('#nav-admin').waitFor({ state: 'visible' });
  // A new admin without devices is told how to connect one.
  const cmd = await page.textContent('#enable-command');
  check(cmd === 'toki settings sync enable --server ' + new URL(BASE).host, 'the empty state gives the exact command: ' + cmd);
  await page.click('#nav-admin');
  await rendered(page, 'admin');
  check((await page.locator('#server-facts').textContent()).includes('Version'), 'server facts shown');
  check(await page.locator('#admin-live tbody tr').count() >= 1, 'the live sync session is listed');

  await page.fill('#create-user-username', 'created-in-browser');
  await page.fill('#create-user-password', 'created-password-1');
  await page.click('#create-user button[type=submit]');
  await page.locator('#admin-users tr[data-username="created-in-browser"]').waitFor();

  // An API error is shown as the API's message.
  await page.fill('#create-user-username', 'x');
  await page.fill('#create-user-password', 'created-password-1');
  await page.click('#create-user button[type=submit]');
  await page.locator('#users-error', { hasText: 'username must be 3-32 characters' }).waitFor();

  await page.locator('#admin-pending tr[data-username="waiting-user"]').getByRole('button', { name: 'Approve' }).click();
  await page.locator('#admin-users tr[data-username="waiting-user"]').waitFor();
  check(await page.locator('#admin-pending tr[data-username="waiting-user"]').count() === 0, 'approved: no longer pending');

  // The change re-renders the panel from the API: wait for that render.
  const before = await page.evaluate(() => Number(document.getElementById('view').dataset.generation));
  await page.locator('#admin-users tr[data-username="teammate"] select').selectOption('admin');
  await page.waitForFunction((g) => {
    const m = document.getElementById('view');
    return Number(m.dataset.generation) > g && m.getAttribute('aria-busy') === 'false';
  }, before);
  check(await page.$eval('#admin-users tr[data-username="teammate"] select', (s) => s.value) === 'admin', 'the page shows the new role');
  const users = await apiGet(page, '/admin/users');
  check(users.body.users.find((u) => u.username === 'teammate').role === 'admin', 'the role changed');
  check(await page.locator('#admin-usage tbody tr').count() >= 2, 'usage by user lists the users with usage');
  await page.screenshot({ path: `${SHOTS}/admin.png`, fullPage: true });
  await noProblems(page, problems);
}

await runStep('dashboard.mjs', { user, admin }, { withPage: false, giveUpMs: 150000 });
