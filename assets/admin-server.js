// The admin panel, part two: the server (version, uptime, database, VictoriaMetrics and its
// outbox), live sync sessions (refreshing while the panel is open), all devices, and usage across
// all users grouped by user.
import { api } from './api.js';
import { button, el, fmtAgo, fmtDuration, fmtInt, fmtTokens, section, table } from './format.js';
import { usageQuery } from './state.js';
import { breakdownTable } from './view-overview.js';

const LIVE_MS = 5000;
let liveTimer = null;

function bytes(n) {
  if (n >= 1 << 30) return (n / (1 << 30)).toFixed(1) + ' GiB';
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + ' MiB';
  return (n / 1024).toFixed(0) + ' KiB';
}

// RFC 3339 (or null) as a local time.
function when(rfc) {
  return rfc ? new Date(rfc).toLocaleString() : 'never';
}

function serverFacts(info) {
  const db = info.database;
  const vm = info.victoriametrics;
  const vmText = vm.configured
    ? (vm.config_problem ? 'misconfigured: ' + vm.config_problem : vm.failing_since ? 'failing since ' + when(vm.failing_since) + (vm.last_error ? ': ' + vm.last_error : '') : 'ok, last push ' + when(vm.last_push_at))
    : 'not configured';
  return el('dl', { class: 'facts', id: 'server-facts' },
    el('dt', { text: 'Version' }), el('dd', { text: info.version }),
    el('dt', { text: 'Uptime' }), el('dd', { text: fmtDuration(info.uptime_secs) }),
    el('dt', { text: 'Registration' }), el('dd', { text: info.registration_mode }),
    el('dt', { text: 'Connected devices' }), el('dd', { text: fmtInt(info.connected_devices) + ' (' + fmtInt(info.active_sessions) + ' sessions)' }),
    el('dt', { text: 'Database' }), el('dd', { text: bytes(db.file_bytes) + ' · ' + fmtInt(db.users) + ' users · ' + fmtInt(db.devices) + ' devices · ' + fmtInt(db.events) + ' events · ' + fmtInt(db.rollup_buckets) + ' hourly buckets · ' + fmtInt(db.teams) + ' teams' }),
    el('dt', { text: 'VictoriaMetrics' }), el('dd', { text: vmText }),
    el('dt', { text: 'Outbox' }), el('dd', { text: fmtInt(vm.outbox.buckets) + ' buckets, ' + fmtInt(vm.outbox.deletions) + ' deletions waiting' + (vm.outbox_oldest_hour ? ' (oldest ' + vm.outbox_oldest_hour + ')' : '') }));
}

function sessionsTable(active) {
  if (!active.length) return el('p', { class: 'muted', id: 'live-sessions-empty', text: 'No sync connections right now.' });
  return el('div', { class: 'scroll' }, table(['User', 'Device', 'Provider', 'Peer', 'Connected', 'Last batch', 'Events'],
    active.map((s) => el('tr', {},
      el('th', { scope: 'row', text: s.username }), el('td', { text: s.device_name }), el('td', { text: s.provider }),
      el('td', { text: s.peer + (s.tls ? ' (TLS)' : '') }), el('td', { text: fmtAgo(s.connected_at) }),
      el('td', { text: fmtAgo(s.last_batch_at) }), el('td', { class: 'num', text: fmtInt(s.events_accepted) }))), 'data'));
}

export async function sections(ctx) {
  const msg = el('p', { class: 'error', role: 'alert', id: 'admin-devices-error' });
  const [info, { active }, { devices }, usage] = await Promise.all([
    api('GET', '/admin/server-info'),
    api('GET', '/admin/active'),
    api('GET', '/admin/devices'),
    api('GET', usageQuery(ctx.win, { all: 'true', group_by: 'user' })),
  ]);
  const deviceRows = devices.map((d) => el('tr', {},
    el('th', { scope: 'row', text: d.name || 'unnamed device' }), el('td', { text: d.username }),
    el('td', { text: fmtAgo(d.last_seen_at) }),
    el('td', { class: 'actions-cell' }, button('Delete', 'danger', async () => {
      if (!confirm('Delete ' + (d.name || 'this device') + ' of ' + d.username + ' with all usage it synced? It is disconnected and must run `toki settings sync enable` again.')) return;
      try {
        await api('DELETE', '/admin/devices/' + d.id);
        ctx.rerender();
      } catch (e) { if (!ctx.failed(e)) msg.textContent = e.message; }
    }))));
  return [
    section('admin-server', 'Server', serverFacts(info)),
    section('admin-live', 'Live sync sessions', el('div', { id: 'live-sessions' }, sessionsTable(active))),
    section('admin-devices', 'All devices',
      deviceRows.length ? el('div', { class: 'scroll' }, table(['Device', 'User', 'Last sync', ''], deviceRows, 'data')) : el('p', { class: 'muted', text: 'No devices.' }),
      msg),
    section('admin-usage', 'Usage by user (' + ctx.win.label + ', ' + fmtTokens(usage.totals.total) + ' tokens)', breakdownTable(usage, 'user', ctx.state.metric)),
  ];
}

// Refreshes the live sessions while the admin view is shown.
export function startLive(ctx) {
  stopLive();
  liveTimer = setInterval(async () => {
    const box = document.getElementById('live-sessions');
    if (!box) { stopLive(); return; }
    try {
      const { active } = await api('GET', '/admin/active');
      box.replaceChildren(sessionsTable(active));
    } catch (e) {
      ctx.failed(e);
    }
  }, LIVE_MS);
}

export function stopLive() {
  if (liveTimer) clearInterval(liveTimer);
  liveTimer = null;
}
