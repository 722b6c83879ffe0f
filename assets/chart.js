// Our own small SVG charts: stacked bars (with a legend that toggles series, a tooltip on hover
// and keyboard focus, and a table alternative) and a year calendar. Colours come from the
// stylesheet (classes s0…s8), so light and dark follow prefers-color-scheme.
import { el, svg, table } from './format.js';

const MAX_COLORS = 9;

// Draws stacked bars into `root` (which it empties).
//   buckets: [{ ts, label }]             one bar per bucket, in time order
//   series:  [{ key, label, values[] }]  values[i] belongs to buckets[i]
//   format:  number -> string            for axis, tooltip and table
export function stackedBars(root, { buckets, series, format, title }) {
  const hidden = new Set();
  const wrap = el('div', { class: 'chart-wrap' });
  const tip = el('div', { class: 'chart-tip', role: 'status', hidden: true });
  const legend = el('div', { class: 'legend', role: 'group', 'aria-label': 'Series' });
  const plot = el('div', { class: 'chart-plot' });
  const details = el('details', { class: 'chart-table' }, el('summary', { text: 'Show as table' }));
  wrap.append(plot, tip);
  root.replaceChildren(legend, wrap, details);
  root.dataset.seriesCount = String(series.length);

  series.forEach((s, i) => {
    const b = el('button', {
      type: 'button', class: 'legend-item', 'aria-pressed': 'true', dataset: { key: s.key },
    }, el('span', { class: 'swatch s' + (i % MAX_COLORS) }), s.label);
    b.addEventListener('click', () => {
      if (hidden.has(i)) hidden.delete(i); else hidden.add(i);
      b.setAttribute('aria-pressed', hidden.has(i) ? 'false' : 'true');
      draw();
    });
    legend.append(b);
  });

  const rows = buckets.map((b, j) => el('tr', {},
    el('th', { scope: 'row', text: b.label }),
    series.map((s) => el('td', { class: 'num', text: format(s.values[j] || 0) }))));
  details.append(table(['', ...series.map((s) => s.label)], rows, 'data'));

  function draw() {
    const width = Math.max(280, Math.floor(plot.clientWidth || root.clientWidth || 600));
    const height = 220;
    const pad = { l: 56, r: 8, t: 8, b: 24 };
    const totals = buckets.map((_, j) => series.reduce((a, s, i) => a + (hidden.has(i) ? 0 : s.values[j] || 0), 0));
    const max = Math.max(...totals, 0) || 1;
    const n = Math.max(buckets.length, 1);
    const slot = (width - pad.l - pad.r) / n;
    const barW = Math.max(1, slot * 0.8);
    const y = (v) => pad.t + (height - pad.t - pad.b) * (1 - v / max);
    const chart = svg('svg', {
      width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img',
      'aria-label': (title || 'Chart') + ': ' + series.length + ' series over ' + buckets.length + ' periods; the table below has the numbers',
    });
    // Axis: 0, half, max.
    for (const v of [0, max / 2, max]) {
      chart.append(svg('line', { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: 'grid' }));
      chart.append(svg('text', { x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis', text: format(v) }));
    }
    const every = Math.ceil(n / Math.max(1, Math.floor((width - pad.l) / 70)));
    buckets.forEach((b, j) => {
      const x = pad.l + j * slot + (slot - barW) / 2;
      const g = svg('g', { class: 'bar', tabindex: '0', 'aria-label': b.label + ': ' + format(totals[j]), dataset: { index: String(j) } });
      let acc = 0;
      series.forEach((s, i) => {
        const v = hidden.has(i) ? 0 : s.values[j] || 0;
        if (v <= 0) return;
        g.append(svg('rect', {
          x, width: barW, y: y(acc + v), height: Math.max(0.5, y(acc) - y(acc + v)),
          class: 's' + (i % MAX_COLORS), dataset: { series: s.key },
        }));
        acc += v;
      });
      // A transparent hit area the full height of the plot, so thin bars are easy to point at.
      g.append(svg('rect', { x: pad.l + j * slot, width: slot, y: pad.t, height: height - pad.t - pad.b, class: 'hit' }));
      const show = () => showTip(j, x + barW / 2);
      g.addEventListener('mouseenter', show);
      g.addEventListener('focus', show);
      g.addEventListener('mouseleave', () => { tip.hidden = true; });
      g.addEventListener('blur', () => { tip.hidden = true; });
      chart.append(g);
      if (j % every === 0) {
        chart.append(svg('text', { x: pad.l + j * slot + slot / 2, y: height - 6, 'text-anchor': 'middle', class: 'axis', text: b.short || b.label }));
      }
    });
    plot.replaceChildren(chart);
  }

  function showTip(j, x) {
    const lines = series
      .map((s, i) => ({ s, i, v: s.values[j] || 0 }))
      .filter((r) => r.v > 0 && !hidden.has(r.i))
      .sort((a, b) => b.v - a.v);
    const total = lines.reduce((a, r) => a + r.v, 0);
    tip.replaceChildren(
      el('strong', { text: buckets[j].label + ' · ' + format(total) }),
      ...lines.map((r) => el('div', {}, el('span', { class: 'swatch s' + (r.i % MAX_COLORS) }), r.s.label + ': ' + format(r.v))),
    );
    tip.hidden = false;
    const w = wrap.clientWidth;
    tip.style.left = Math.min(Math.max(0, x - 80), Math.max(0, w - 180)) + 'px';
  }

  draw();
  return { redraw: draw };
}

// A calendar of the last days: one cell a day in week columns (Monday on top), shaded in five
// steps of `values` (ms of the local day start -> number). `days` is the list of day starts.
export function calendar(root, { days, values, format, label }) {
  const cell = 11, gap = 2;
  const firstDow = (new Date(days[0]).getDay() + 6) % 7;
  const weeks = Math.ceil((days.length + firstDow) / 7);
  const width = weeks * (cell + gap) + 30, height = 7 * (cell + gap) + 16;
  const max = Math.max(0, ...days.map((d) => values.get(d) || 0));
  const chart = svg('svg', {
    width, height, viewBox: `0 0 ${width} ${height}`, class: 'calendar', role: 'img',
    'aria-label': label + ' per day for the last ' + days.length + ' days; the table below has the numbers',
  });
  let lastMonth = -1;
  days.forEach((d, i) => {
    const pos = i + firstDow;
    const wk = Math.floor(pos / 7), dow = pos % 7;
    const v = values.get(d) || 0;
    const level = v <= 0 ? 0 : Math.min(4, 1 + Math.floor((v / max) * 3.999));
    const x = 30 + wk * (cell + gap), y = 14 + dow * (cell + gap);
    const rect = svg('rect', { x, y, width: cell, height: cell, rx: 2, class: 'day l' + level, dataset: { day: String(d), value: String(v) } });
    rect.append(svg('title', { text: new Date(d).toLocaleDateString() + ': ' + format(v) }));
    chart.append(rect);
    const month = new Date(d).getMonth();
    if (month !== lastMonth && dow === 0) {
      chart.append(svg('text', { x, y: 10, class: 'axis', text: new Date(d).toLocaleDateString(undefined, { month: 'short' }) }));
      lastMonth = month;
    }
  });
  ['Mon', '', 'Wed', '', 'Fri', '', ''].forEach((t, i) => {
    if (t) chart.append(svg('text', { x: 0, y: 14 + i * (cell + gap) + 9, class: 'axis', text: t }));
  });
  const used = days.filter((d) => (values.get(d) || 0) > 0);
  const details = el('details', { class: 'chart-table' }, el('summary', { text: 'Show days with usage as a table' }),
    table(['Day', label], used.map((d) => el('tr', {}, el('th', { scope: 'row', text: new Date(d).toLocaleDateString() }),
      el('td', { class: 'num', text: format(values.get(d)) }))), 'data'));
  root.replaceChildren(el('div', { class: 'calendar-scroll' }, chart), details);
}
