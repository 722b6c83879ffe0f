// The dashboard's shell: sign-in check, the views (one module each), the range and grouping
// controls, the state in the URL, and the refresh every 60 s while the range includes now.
import { adoptFragmentTokens, api, byId, signedIn, signOut, PENDING_DEVICE } from './api.js';
import { el, utcOffset } from './format.js';
import { RANGES, readState, toDateInput, windowOf, writeState } from './state.js';
import * as overview from './view-overview.js';
import * as devicesView from './view-devices.js';
import * as teams from './view-teams.js';
import * as account from './view-account.js';
import * as admin from './view-admin.js';
import { stopLive } from './admin-server.js';

const VIEWS = { overview, devices: devicesView, teams, account, admin };
const REFRESH_MS = 60000;
// Which controls each view uses.
const CONTROLS = {
  overview: { range: true, group: true, metric: true },
  devices: { range: true },
  teams: { range: true, metric: true },
  admin: { range: true, metric: true },
  account: {},
};

let state = readState();
let me = null;
let meLoading = null;
let devices = [];
let generation = 0;

function toLogin() {
  location.replace('/login');
}

// A 401 means the session is over (the API client already tried the refresh token).
function failed(e) {
  if (e && e.status === 401) {
    toLogin();
    return true;
  }
  return false;
}

function emptyState() {
  const host = location.host;
  return el('section', { class: 'card empty', id: 'empty-state' },
    el('h2', { text: 'Connect your first machine' }),
    el('p', { text: 'On each machine where you use Claude Code or Codex, run:' }),
    el('pre', {}, el('code', { id: 'enable-command', text: 'toki settings sync enable --server ' + host })),
    el('p', { class: 'muted', text: 'It opens this server\'s device page in your browser; approve the code shown in the terminal and the machine starts syncing. Its usage appears here within a minute.' }));
}

function setupControls() {
  const ranges = byId('range-control');
  for (const [key, r] of Object.entries(RANGES)) {
    ranges.append(el('button', { type: 'button', class: 'seg', dataset: { range: key }, text: r.label, on: { click: () => go({ range: key }) } }));
  }
  byId('group-by').addEventListener('change', (ev) => go({ group: ev.target.value }));
  for (const input of document.querySelectorAll('input[name=metric]')) {
    input.addEventListener('change', () => go({ metric: input.value }));
  }
  byId('controls').addEventListener('submit', (ev) => {
    ev.preventDefault();
    go({ range: 'custom', from: byId('custom-from').value, to: byId('custom-to').value });
  });
  for (const a of document.querySelectorAll('nav.tabs a')) {
    a.addEventListener('click', (ev) => {
      if (ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.button !== 0) return;
      ev.preventDefault();
      go({ view: a.dataset.view });
    });
  }
  byId('sign-out').addEventListener('click', () => {
    signOut();
    toLogin();
  });
  window.addEventListener('popstate', () => {
    state = readState();
    render(false);
  });
}

function updateControls(w) {
  const c = CONTROLS[state.view];
  byId('controls').hidden = !c.range;
  byId('group-control').hidden = !c.group;
  byId('metric-control').hidden = !c.metric;
  byId('custom-range').hidden = state.range !== 'custom';
  for (const b of document.querySelectorAll('#range-control .seg')) {
    b.setAttribute('aria-pressed', b.dataset.range === state.range ? 'true' : 'false');
  }
  byId('group-by').value = state.group;
  for (const input of document.querySelectorAll('input[name=metric]')) input.checked = input.value === state.metric;
  if (state.range === 'custom') {
    byId('custom-from').value = state.from || toDateInput(w.start);
    byId('custom-to').value = state.to || toDateInput(w.end - 1);
  }
  byId('range-label').textContent = w.label + ', times in ' + Intl.DateTimeFormat().resolvedOptions().timeZone;
  for (const a of document.querySelectorAll('nav.tabs a')) {
    if (a.dataset.view === state.view) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

function go(change) {
  if (change.view && change.view !== state.view) stopLive();
  state = { ...state, ...change };
  render(true);
}

// Renders the current view. Each render has a generation; a view mounts its content only if no
// newer render has started since (so a slow answer never replaces a newer view).
async function render(push) {
  const my = ++generation;
  const main = byId('view');
  const w = windowOf(state);
  // The bare /dashboard is the default view; the URL records the state once it is changed (or
  // when it came with one), so a view can be bookmarked.
  if (push || location.search) writeState(state, push);
  updateControls(w);
  document.body.dataset.start = String(w.start);
  document.body.dataset.end = String(w.end);
  document.body.dataset.offset = w.offset;
  document.body.dataset.step = w.step;
  main.setAttribute('aria-busy', 'true');
  const container = el('div', { class: 'view-' + state.view });
  const ctx = {
    state, win: w, me, devices, failed, emptyState,
    rerender: () => render(false),
    // Attaches the view's container (replacing the previous view) and returns it.
    mount: () => {
      if (my === generation) main.replaceChildren(container);
      return container;
    },
  };
  byId('error').textContent = '';
  try {
    if (state.view === 'account' || state.view === 'admin') ctx.me = await meLoading;
    await VIEWS[state.view].render(ctx);
    devices = ctx.devices;
    if (my !== generation) return;
    main.setAttribute('aria-busy', 'false');
    main.dataset.rendered = state.view;
    main.dataset.generation = String(my);
    if (!document.body.dataset.ready) {
      document.body.dataset.ready = '1';
      // Milliseconds from navigation start to every panel drawn (read by the browser test).
      window.tokiReadyMs = performance.now();
    }
  } catch (e) {
    if (my !== generation || failed(e)) return;
    main.setAttribute('aria-busy', 'false');
    byId('error').textContent = e.message || String(e);
  }
}

async function start() {
  adoptFragmentTokens();
  // Back from an identity provider in the middle of approving a device: finish that first.
  const pending = sessionStorage.getItem(PENDING_DEVICE);
  if (pending && signedIn()) {
    sessionStorage.removeItem(PENDING_DEVICE);
    location.replace('/device?device=' + encodeURIComponent(pending));
    return;
  }
  if (!signedIn()) {
    toLogin();
    return;
  }
  setupControls();
  // The account loads beside the first view; only the account and admin views wait for it.
  meLoading = api('GET', '/me').then((m) => {
    me = m;
    byId('who-name').textContent = me.username;
    byId('nav-admin').hidden = me.role !== 'admin';
    return m;
  });
  meLoading.catch((e) => { if (!failed(e)) byId('error').textContent = e.message; });
  try {
    // Day sums are kept in the user's own offset; a browser in another offset moves them there
    // (the server rebuilds them when it changes, and answers at once when it is the same), so
    // day and week queries read the day tier.
    const [list] = await Promise.all([
      api('GET', '/me/devices'),
      api('PUT', '/me/timezone', { utc_offset: utcOffset() }).catch((e) => {
        if (e.status !== 429) throw e;
      }),
    ]);
    devices = list.devices;
  } catch (e) {
    if (!failed(e)) byId('error').textContent = e.message;
    return;
  }
  await render(false);
  setInterval(() => {
    if (document.visibilityState !== 'visible' || !windowOf(state).live || state.view === 'account') return;
    render(false);
  }, REFRESH_MS);
}

start();
