// Benchmark (not a test): how long the dashboard takes from navigation until every panel is
// drawn, in Debian's Chromium, against a running server. Signs in once, then loads the overview
// RUNS times (after one untimed load) and prints the median and the spread of the time the page
// reports (`window.tokiReadyMs`, from navigation start to the last panel drawn).
//
//   BASE_URL=http://127.0.0.1:19191 USERNAME=seed-user-1 PASSWORD=seed-password \
//     [RANGE=7d] [RUNS=15] node page_ready.mjs
import { env, launch } from './harness.mjs';

const BASE = env('BASE_URL');
const RUNS = Number(env('RUNS', '15'));
const RANGE = env('RANGE', '7d');

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(30000);
  await page.goto(`${BASE}/login`);
  await page.fill('#username', env('USERNAME'));
  await page.fill('#password', env('PASSWORD'));
  await page.click('#signin-form button[type=submit]');
  await page.waitForURL(/\/dashboard/);
  const url = `${BASE}/dashboard?view=overview&range=${RANGE}&group=model&metric=tokens`;
  const times = [];
  for (let i = 0; i <= RUNS; i++) {
    await page.goto(url);
    await page.waitForFunction(() => document.body.dataset.ready === '1');
    const ms = await page.evaluate(() => window.tokiReadyMs);
    if (i > 0) times.push(ms);
  }
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
  console.log(`range ${RANGE}: page ready p50 ${at(0.5).toFixed(0)} ms, min ${times[0].toFixed(0)} ms, max ${times[times.length - 1].toFixed(0)} ms over ${RUNS} loads`);
} finally {
  await browser.close();
}
