// Fragment-token sign-in only at the end of a round trip this tab started (issue 16, item 4), in
// Debian's Chromium, for tests/browser_signin.rs:
//
//   node signin_state.mjs
//
// Input from the environment: BASE_URL, USERNAME and PASSWORD (the victim, signed in through the
// form), OTHER_ACCESS and OTHER_REFRESH (another account's tokens, as an attacker's link carries
// them). Exit status 0 means every check passed; otherwise the reason is on stderr.
import { check, env, launch, STEP_TIMEOUT_MS, watch } from './harness.mjs';

const BASE = env('BASE_URL');
const OTHER_ACCESS = env('OTHER_ACCESS');
const OTHER_REFRESH = env('OTHER_REFRESH');

const link = (extra) =>
  `${BASE}/dashboard#access_token=${encodeURIComponent(OTHER_ACCESS)}&refresh_token=${encodeURIComponent(OTHER_REFRESH)}&expires_in=3600${extra}`;

const stored = (page) => page.evaluate(() => ({
  access: localStorage.getItem('toki_access_token'),
  refresh: localStorage.getItem('toki_refresh_token'),
  state: sessionStorage.getItem('toki_signin_state'),
  hash: location.hash,
}));

// Opens the attacker's link and waits until the page has dealt with the fragment (and any
// redirect it made has settled).
async function open(page, url) {
  // Arriving from elsewhere (a link on another site): a real load, not a same-page hash change.
  await page.goto('about:blank');
  await page.goto(url);
  await page.waitForLoadState('networkidle');
  check((await stored(page)).hash === '', 'the fragment is removed from the address');
}

async function signedInVictim(page) {
  await page.goto(`${BASE}/login`);
  await page.locator('#signin-form').waitFor({ state: 'visible' });
  await page.fill('#username', env('USERNAME'));
  await page.fill('#password', env('PASSWORD'));
  await page.click('#signin-form button[type=submit]');
  await page.waitForURL(`${BASE}/dashboard`);
  const s = await stored(page);
  check(s.access && s.access !== OTHER_ACCESS, 'the victim is signed in with their own token');
  return s;
}

async function main() {
  const browser = await launch();
  const problems = [];
  try {
    // 1. A signed-in victim opens a link with someone else's tokens: the session stays theirs.
    let ctx = await browser.newContext();
    let page = await ctx.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    watch(page, problems);
    const own = await signedInVictim(page);
    await open(page, link(''));
    let s = await stored(page);
    check(s.access === own.access && s.refresh === own.refresh, 'a link without client_state replaced the session');
    // A guessed or stale state is no better.
    await open(page, link('&client_state=guessed-value'));
    s = await stored(page);
    check(s.access === own.access, 'a link with a wrong client_state replaced the session');
    console.log('signed-in session kept');
    await ctx.close();

    // 2. Nobody signed in: the link does not sign the browser in either.
    ctx = await browser.newContext();
    page = await ctx.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    watch(page, problems);
    await open(page, link(''));
    s = await stored(page);
    check(s.access === null && s.refresh === null, 'a link signed a fresh browser in');
    console.log('fresh browser not signed in by a link');

    // 3. The round trip this tab started: the SSO button stores a state and sends it along; the
    // server's answer carrying that state is taken, once.
    await page.goto(`${BASE}/login`);
    await page.locator('#signin-form').waitFor({ state: 'visible' });
    await page.evaluate(() => document.getElementById('sso').click());
    await page.waitForURL((u) => u.pathname === '/auth/oidc/authorize');
    const sent = new URL(page.url()).searchParams.get('client_state');
    s = await stored(page);
    check(s.state && sent === s.state, `the SSO button sends the stored state (${sent} vs ${s.state})`);
    check(/^[A-Za-z0-9_-]{43}$/.test(sent), 'the state is 256 random bits, base64url: ' + sent);
    await open(page, link(`&client_state=${encodeURIComponent(sent)}`));
    s = await stored(page);
    check(s.access === OTHER_ACCESS && s.refresh === OTHER_REFRESH, 'the round trip this tab started signs it in');
    check(s.state === null, 'the state is used up');
    console.log('own round trip accepted');
    await ctx.close();

    // 4. The same answer replayed into another tab (the state is per tab) is refused.
    ctx = await browser.newContext();
    page = await ctx.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    watch(page, problems);
    await open(page, link(`&client_state=${encodeURIComponent(sent)}`));
    s = await stored(page);
    check(s.access === null, 'a replayed answer signed another tab in');
    console.log('replay refused');
    await ctx.close();
    check(problems.length === 0, problems.join('\n'));
  } finally {
    await browser.close();
  }
}

main().then(() => console.log('ok'), (e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
