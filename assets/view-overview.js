// The overview: headline cards with the change against the previous period, usage over time
// (stacked bars of the top 8 groups and "other"), breakdown tables, the activity calendar and
// the 5-hour blocks.
import { api } from './api.js';
import { calendar, stackedBars } from './chart.js';
import {
  DAY, el, fmtChange, fmtDate, fmtDateTime, fmtDuration, fmtInt, fmtPct, fmtTime, fmtTokens, fmtUsd,
  localMidnight, numCell, section, table,
} from './format.js';
import { GROUPS, bucketsOf, usageQuery } from './state.js';

const TOP = 8;
const GROUP_TITLES = { model: 'Model', project: 'Project', device: 'Device', provider: 'Provider', user: 'Member' };

// A series' label for a grouping key.
export function labelOf(key, group) {
  if (key === 'device') return group.device_name || 'unnamed device';
  if (key === 'user') return group.username || 'deleted user';
  if (key === 'project') return group.project || '(no project)';
  return group[key] || '(none)';
}

export function metricOf(metric) {
  return metric === 'cost'
    ? { value: (s) => s.cost_usd, format: fmtUsd, name: 'Cost' }
    : { value: (s) => s.total, format: fmtTokens, name: 'Tokens' };
}

// The chart of a usage report with points: top 8 series and "other".
export function drawUsageChart(root, report, key, w, metric, title) {
  const m = metricOf(metric);
  const starts = bucketsOf(w);
  const index = new Map(starts.map((ts, i) => [ts, i]));
  const ranked = [...report.series].sort((a, b) => m.value(b.totals) - m.value(a.totals));
  const top = ranked.slice(0, TOP);
  const rest = ranked.slice(TOP);
  const toValues = (list) => {
    const values = new Array(starts.length).fill(0);
    for (const s of list) {
      for (const p of s.points || []) {
        const i = index.get(p.ts * 1000);
        if (i !== undefined) values[i] += m.value(p);
      }
    }
    return values;
  };
  const series = top.map((s) => ({ key: labelOf(key, s.group), label: labelOf(key, s.group), values: toValues([s]) }));
  if (rest.length) series.push({ key: '(other)', label: 'other (' + rest.length + ')', values: toValues(rest) });
  const label = (ts) => (w.step === '1h' ? fmtDateTime(ts) : w.step === '1d' ? new Date(ts).toLocaleDateString() : 'Week of ' + new Date(ts).toLocaleDateString());
  const short = (ts) => (w.step === '1h' ? fmtTime(ts) : fmtDate(ts));
  const buckets = starts.map((ts) => ({ ts, label: label(ts), short: short(ts) }));
  if (!series.length) {
    root.replaceChildren(el('p', { class: 'muted', text: 'No usage in this range.' }));
    root.dataset.seriesCount = '0';
    return;
  }
  stackedBars(root, { buckets, series, format: m.format, title });
}

// A breakdown table: one row per group with every token column, cost and share.
export function breakdownTable(report, key, metric) {
  const m = metricOf(metric);
  const unpriced = new Set(report.unpriced_models || []);
  const grand = m.value(report.totals) || 0;
  const rows = [...report.series]
    .sort((a, b) => m.value(b.totals) - m.value(a.totals))
    .map((s) => {
      const t = s.totals;
      const name = labelOf(key, s.group);
      const nameCell = el('th', { scope: 'row', class: 'name', text: name });
      if (key === 'model' && unpriced.has(s.group.model)) {
        nameCell.append(' ', el('span', { class: 'badge', text: 'unpriced', title: 'No price known for this model: it counts $0' }));
      }
      return el('tr', { dataset: { key: name } }, nameCell,
        numCell(fmtTokens(t.tokens.input), t.tokens.input),
        numCell(fmtTokens(t.tokens.output), t.tokens.output),
        numCell(fmtTokens(t.tokens.cache_create), t.tokens.cache_create),
        numCell(fmtTokens(t.tokens.cache_read), t.tokens.cache_read),
        numCell(fmtTokens(t.total), t.total),
        numCell(fmtUsd(t.cost_usd), t.cost_usd),
        numCell(fmtPct(grand ? m.value(t) / grand : 0)));
    });
  if (!rows.length) return el('p', { class: 'muted', text: 'No usage in this range.' });
  return el('div', { class: 'scroll' }, table(
    [GROUP_TITLES[key], 'Input', 'Output', 'Cache write', 'Cache read', 'Total', 'Cost', 'Share'], rows, 'data breakdown'));
}

function card(id, title, value, text, change) {
  return el('div', { class: 'stat', id, dataset: { value: String(value) } },
    el('div', { class: 'stat-title', text: title }),
    el('div', { class: 'stat-value', text }),
    el('div', { class: 'stat-change muted', text: change + ' vs previous period' }));
}

function activeDevices(report) {
  return report.series.filter((s) => s.totals.events > 0).length;
}

function blocksPanel(report) {
  if (!report.providers.length) return [el('p', { class: 'muted', text: 'No usage in the last two days.' })];
  return report.providers.map((p) => {
    const cur = p.current;
    const parts = [el('h3', { text: p.provider })];
    if (cur) {
      const pr = cur.projection;
      const pct = Math.min(100, Math.round((pr.elapsed_secs / (pr.elapsed_secs + pr.remaining_secs)) * 100));
      const bar = el('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(pct), 'aria-label': 'Time used of the current block' });
      const fillEl = el('div', { class: 'progress-fill' });
      fillEl.style.width = pct + '%';
      bar.append(fillEl);
      parts.push(el('div', { class: 'block-current', dataset: { provider: p.provider, total: String(cur.total) } },
        el('p', {}, 'Current block started ', el('strong', { text: fmtTime(cur.start_ts * 1000) }),
          ', ', el('strong', { text: fmtDuration(pr.remaining_secs) }), ' left (ends ' + fmtTime(cur.end_ts * 1000) + ').'),
        bar,
        el('dl', { class: 'facts' },
          el('dt', { text: 'Tokens' }), el('dd', { text: fmtTokens(cur.total) }),
          el('dt', { text: 'Cost' }), el('dd', { text: fmtUsd(cur.cost_usd) }),
          el('dt', { text: 'Burn rate' }), el('dd', { text: fmtTokens(pr.tokens_per_minute) + ' tokens/min · ' + fmtUsd(pr.cost_per_hour_usd) + '/h' }),
          el('dt', { text: 'Projected at the end' }), el('dd', { text: fmtTokens(pr.projected_total) + ' tokens · ' + fmtUsd(pr.projected_cost_usd) }))));
    } else {
      parts.push(el('p', { class: 'muted', text: 'No block running: the next event starts one.' }));
    }
    const recent = p.blocks.filter((b) => !b.active).slice(0, 8);
    if (recent.length) {
      parts.push(el('div', { class: 'scroll' }, table(['Block', 'Tokens', 'Events', 'Cost'], recent.map((b) => el('tr', {},
        el('th', { scope: 'row', text: fmtDateTime(b.start_ts * 1000) + ' – ' + fmtTime(b.end_ts * 1000) }),
        numCell(fmtTokens(b.total), b.total), numCell(fmtInt(b.events), b.events), numCell(fmtUsd(b.cost_usd), b.cost_usd))), 'data')));
    }
    if (!p.exact) parts.push(el('p', { class: 'muted small', text: 'Usage never paused for 4 hours in the last week, so block boundaries are estimated.' }));
    return el('div', { class: 'block-provider' }, parts);
  });
}

export async function render(ctx) {
  const { state, win: w } = ctx;
  const metric = state.metric;
  const prev = { ...w, start: w.start - (w.end - w.start), end: w.start };
  const yearStart = localMidnight(w.end) - 364 * DAY;
  const year = { start: yearStart, end: Date.now(), offset: w.offset };
  const get = (path) => api('GET', path);
  const byKey = {};
  const others = GROUPS.filter((g) => g !== state.group);
  const [main, before, blocks, cal, ...rest] = await Promise.all([
    get(usageQuery(w, { step: w.step, group_by: state.group })),
    get(usageQuery(prev, { group_by: 'device' })),
    get('/api/v1/usage/blocks?' + new URLSearchParams({ start: String(Math.floor(Date.now() / 1000) - 2 * 86400), utc_offset: w.offset })),
    get(usageQuery(year, { step: '1d' })),
    ...others.map((g) => get(usageQuery(w, { group_by: g }))),
  ]);
  byKey[state.group] = main;
  others.forEach((g, i) => { byKey[g] = rest[i]; });

  const t = main.totals;
  const devicesNow = activeDevices(byKey.device);
  const cards = el('div', { class: 'stats', id: 'cards' },
    card('card-tokens', 'Tokens', t.total, fmtTokens(t.total), fmtChange(t.total, before.totals.total)),
    card('card-cost', 'Cost', t.cost_usd, fmtUsd(t.cost_usd), fmtChange(t.cost_usd, before.totals.cost_usd)),
    card('card-events', 'Events', t.events, fmtInt(t.events), fmtChange(t.events, before.totals.events)),
    card('card-devices', 'Active devices', devicesNow, fmtInt(devicesNow), fmtChange(devicesNow, activeDevices(before))));

  const chart = el('div', { id: 'usage-chart', class: 'chart-box' });
  const breakdowns = GROUPS.map((g) => el('div', { class: 'breakdown', id: 'breakdown-' + g },
    el('h3', { text: 'By ' + g }), breakdownTable(byKey[g], g, metric)));
  const calBox = el('div', { id: 'calendar' });
  const values = new Map();
  const m = metricOf(metric);
  for (const p of (cal.series[0] && cal.series[0].points) || []) values.set(p.ts * 1000, m.value(p));
  const days = [];
  for (let d = yearStart; d < year.end; d += DAY) days.push(d);

  const children = [];
  if (ctx.devices.length === 0 && t.events === 0) children.push(ctx.emptyState());
  children.push(
    cards,
    section('over-time', m.name + ' over time, by ' + state.group, chart),
    section('blocks', '5-hour blocks', el('div', { id: 'blocks-list', class: 'blocks' }, blocksPanel(blocks))),
    section('breakdowns', 'Breakdowns', ...breakdowns),
    section('activity', 'Activity, last 365 days (' + m.name.toLowerCase() + ')', calBox),
  );
  if (main.unpriced_models.length) {
    children.push(el('p', { class: 'muted small', text: 'Unpriced models (counted as $0): ' + main.unpriced_models.join(', ') }));
  }
  ctx.mount().replaceChildren(...children);
  drawUsageChart(chart, main, state.group, w, metric, m.name + ' by ' + state.group);
  calendar(calBox, { days, values, format: m.format, label: m.name });
}
