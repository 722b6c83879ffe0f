// The dashboard's state lives in the URL (?view=…&range=…&group=…&metric=…&from=…&to=…), so a
// view can be bookmarked; this module reads and writes it and turns a range into a window.
import { DAY, HOUR, localMidnight, offsetMs, utcOffset } from './format.js';

export const VIEWS = ['overview', 'devices', 'teams', 'account', 'admin'];
export const RANGES = {
  today: { label: 'Today', step: '1h' },
  '7d': { label: '7 days', step: '1d', days: 7 },
  '30d': { label: '30 days', step: '1d', days: 30 },
  '90d': { label: '90 days', step: '1d', days: 90 },
  '1y': { label: '1 year', step: '1w', days: 365 },
  custom: { label: 'Custom' },
};
export const GROUPS = ['model', 'project', 'device', 'provider'];
export const METRICS = ['tokens', 'cost'];

export function readState() {
  const q = new URLSearchParams(location.search);
  const pick = (name, allowed, dflt) => (allowed.includes(q.get(name)) ? q.get(name) : dflt);
  return {
    view: pick('view', VIEWS, 'overview'),
    range: pick('range', Object.keys(RANGES), '7d'),
    group: pick('group', GROUPS, 'model'),
    metric: pick('metric', METRICS, 'tokens'),
    from: q.get('from') || '',
    to: q.get('to') || '',
    team: q.get('team') || '',
  };
}

// Writes the state to the URL (push: a new history entry, else replace).
export function writeState(state, push) {
  const q = new URLSearchParams();
  q.set('view', state.view);
  if (state.view !== 'account') {
    q.set('range', state.range);
    if (state.view === 'overview') {
      q.set('group', state.group);
      q.set('metric', state.metric);
    }
    if (state.range === 'custom') {
      if (state.from) q.set('from', state.from);
      if (state.to) q.set('to', state.to);
    }
  }
  if (state.team) q.set('team', state.team);
  const url = location.pathname + '?' + q.toString();
  if (url === location.pathname + location.search) return;
  if (push) history.pushState(null, '', url); else history.replaceState(null, '', url);
}

// A date input's value (YYYY-MM-DD) as local midnight in ms, or NaN.
function dateInput(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
  if (!m) return NaN;
  return localMidnight(new Date(+m[1], +m[2] - 1, +m[3], 12).getTime());
}

export function toDateInput(ms) {
  const d = new Date(ms);
  return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0');
}

// The window of a state: { start, end (ms), step, offset, live (includes now), label }.
export function windowOf(state, nowMs) {
  const now = Math.floor((nowMs || Date.now()) / 1000) * 1000;
  const offset = utcOffset();
  const r = RANGES[state.range];
  if (state.range === 'today') {
    return { start: localMidnight(now), end: now, step: '1h', offset, live: true, label: r.label };
  }
  if (state.range === 'custom') {
    let start = dateInput(state.from);
    let end = dateInput(state.to);
    if (!Number.isFinite(start)) start = localMidnight(now) - 6 * DAY;
    end = Number.isFinite(end) ? Math.min(end + DAY, now) : now;
    if (end <= start) end = Math.min(start + DAY, now);
    const span = end - start;
    const step = span <= 2 * DAY ? '1h' : span <= 180 * DAY ? '1d' : '1w';
    return { start, end, step, offset, live: end >= now, label: toDateInput(start) + ' – ' + toDateInput(end - 1) };
  }
  return { start: localMidnight(now) - (r.days - 1) * DAY, end: now, step: r.step, offset, live: true, label: r.label };
}

export const STEP_MS = { '1h': HOUR, '1d': DAY, '1w': 7 * DAY };

// Bucket starts over a window, as the API counts them (days at local midnight, weeks on Monday).
export function bucketsOf(w) {
  const bucket = (ts) => {
    if (w.step === '1h') return Math.floor(ts / HOUR) * HOUR;
    if (w.step === '1d') return localMidnight(ts);
    const off = offsetMs();
    const day = Math.floor((ts + off) / DAY);
    return (day - (((day + 3) % 7) + 7) % 7) * DAY - off;
  };
  const out = [];
  for (let b = bucket(w.start); b < w.end && out.length < 5000; b += STEP_MS[w.step]) out.push(b);
  return out;
}

// Query parameters for the usage API over a window.
export function usageQuery(w, extra) {
  const q = new URLSearchParams({ start: String(Math.floor(w.start / 1000)), end: String(Math.ceil(w.end / 1000)), utc_offset: w.offset });
  for (const [k, v] of Object.entries(extra || {})) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  return '/api/v1/usage?' + q.toString();
}
