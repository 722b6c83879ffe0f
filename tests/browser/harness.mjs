// What the browser scripts share: Debian's Chromium with the project's flags, input from the
// environment, checks, the watch for script errors and CSP violations, and running one step.
import { chromium } from 'playwright-core';

export const STEP_TIMEOUT_MS = 20000;

export function env(name, dflt) {
  const v = process.env[name] || dflt;
  if (!v) throw new Error(`missing environment variable ${name}`);
  return v;
}

export function check(cond, message) {
  if (!cond) throw new Error('check failed: ' + message);
}

// Script errors and console errors (CSP violations are reported there) go into `problems`. HTTP
// error statuses are logged by Chromium too; the pages handle those themselves (a 401 leads to
// a token refresh), so they are not problems.
export function watch(page, problems) {
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (msg) => {
    const text = msg.text();
    if (msg.type() === 'error' && !text.startsWith('Failed to load resource: the server responded with a status of')) {
      problems.push('console error: ' + text);
    }
  });
}

// Never a downloaded browser; no background traffic (this machine has no network).
export function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
}

// Runs the step named by the first argument and exits 0 when all its checks passed. With
// `withPage` the step gets a fresh page whose problems fail it; otherwise the browser itself.
// A hung browser must not hang the test suite: the script gives up after `giveUpMs`.
export async function runStep(script, steps, { withPage = true, giveUpMs = 120000 } = {}) {
  const name = process.argv[2];
  const step = steps[name];
  if (!step) {
    console.error(`usage: node ${script} ${Object.keys(steps).join('|')}`);
    process.exit(2);
  }
  setTimeout(() => {
    console.error(`${script}: gave up after ${giveUpMs / 1000} s`);
    process.exit(3);
  }, giveUpMs).unref();
  const browser = await launch();
  let failed = false;
  try {
    if (withPage) {
      const page = await browser.newPage();
      page.setDefaultTimeout(STEP_TIMEOUT_MS);
      const problems = [];
      watch(page, problems);
      await step(page);
      check(problems.length === 0, problems.join('; '));
    } else {
      await step(browser);
    }
    console.log(`${script} ${name}: ok`);
  } catch (e) {
    failed = true;
    console.error(`${script} ${name}: ${e.stack || e}`);
  } finally {
    await browser.close();
  }
  process.exit(failed ? 1 : 0);
}
