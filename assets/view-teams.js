// Teams: for each team the user belongs to, the team's totals, its chart and a breakdown by
// member (the usage API's team scope).
import { api } from './api.js';
import { el, fmtInt, fmtTokens, fmtUsd } from './format.js';
import { usageQuery } from './state.js';
import { breakdownTable, drawUsageChart, metricOf } from './view-overview.js';

export async function render(ctx) {
  const { state, win: w } = ctx;
  const teams = await api('GET', '/me/teams');
  if (!teams.length) {
    ctx.mount().replaceChildren(el('section', { class: 'card' }, el('h2', { text: 'Teams' }),
      el('p', { class: 'muted', id: 'no-teams', text: 'You are not in a team yet. An admin can add you to one.' })));
    return;
  }
  const reports = await Promise.all(teams.map((t) => Promise.all([
    api('GET', usageQuery(w, { team: t.team_id, step: w.step, group_by: 'user' })),
  ])));
  const m = metricOf(state.metric);
  const sections = teams.map((t, i) => {
    const [report] = reports[i];
    const chart = el('div', { class: 'chart-box team-chart' });
    const tot = report.totals;
    const sec = el('section', { class: 'card team', dataset: { teamId: t.team_id } },
      el('h2', { text: t.team_name }),
      el('p', { class: 'muted', text: 'Your role: ' + t.role + ' · ' + w.label }),
      el('div', { class: 'stats' },
        el('div', { class: 'stat', dataset: { value: String(tot.total) } }, el('div', { class: 'stat-title', text: 'Tokens' }), el('div', { class: 'stat-value', text: fmtTokens(tot.total) })),
        el('div', { class: 'stat', dataset: { value: String(tot.cost_usd) } }, el('div', { class: 'stat-title', text: 'Cost' }), el('div', { class: 'stat-value', text: fmtUsd(tot.cost_usd) })),
        el('div', { class: 'stat', dataset: { value: String(tot.events) } }, el('div', { class: 'stat-title', text: 'Events' }), el('div', { class: 'stat-value', text: fmtInt(tot.events) })),
        el('div', { class: 'stat', dataset: { value: String(report.series.length) } }, el('div', { class: 'stat-title', text: 'Active members' }), el('div', { class: 'stat-value', text: fmtInt(report.series.length) }))),
      el('h3', { text: m.name + ' over time, by member' }), chart,
      el('h3', { text: 'By member' }), breakdownTable(report, 'user', state.metric));
    return { sec, chart, report };
  });
  ctx.mount().replaceChildren(...sections.map((s) => s.sec));
  for (const s of sections) drawUsageChart(s.chart, s.report, 'user', w, state.metric, m.name + ' by member');
}
