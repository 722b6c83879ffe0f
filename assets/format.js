// Small helpers shared by the dashboard's views: building elements (text only, never parsed as
// HTML), numbers and times formatted for people, and the browser's UTC offset.

export const SVG_NS = 'http://www.w3.org/2000/svg';
export const HOUR = 3600000;
export const DAY = 24 * HOUR;

// el('td', { class: 'num', text: '12', dataset: { value: 12 }, on: { click: f } }, child, …)
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  return fill(node, attrs, children);
}

export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  return fill(node, attrs, children);
}

function fill(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = String(v);
    else if (k === 'class') node.setAttribute('class', v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'on') for (const [ev, f] of Object.entries(v)) node.addEventListener(ev, f);
    else if (k in node && !(node instanceof SVGElement) && typeof v !== 'string') node[k] = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function button(label, cls, onClick, extra) {
  return el('button', { type: 'button', class: cls || null, text: label, on: { click: onClick }, ...(extra || {}) });
}

const compact = [[1e12, 'T'], [1e9, 'B'], [1e6, 'M'], [1e3, 'k']];

// 1.2M, 12.3k, 950.
export function fmtTokens(n) {
  n = Number(n) || 0;
  for (const [size, unit] of compact) {
    if (Math.abs(n) >= size) {
      const v = n / size;
      return (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)).replace(/\.?0+$/, '') + unit;
    }
  }
  return String(Math.round(n));
}

export function fmtInt(n) {
  return Math.round(Number(n) || 0).toLocaleString('en-US');
}

// $12.34; small but non-zero amounts keep enough digits to be seen.
export function fmtUsd(x) {
  x = Number(x) || 0;
  if (x !== 0 && Math.abs(x) < 0.01) return (x < 0 ? '-' : '') + '$' + Math.abs(x).toFixed(4);
  return (x < 0 ? '-$' : '$') + Math.abs(x).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

export function fmtPct(x) {
  if (!Number.isFinite(x)) return '–';
  return (x * 100).toFixed(x >= 0.1 || x === 0 ? 0 : 1) + '%';
}

// The change against the previous period: "+12%", "−3%", "new", "no change".
export function fmtChange(now, before) {
  if (!before) return now ? 'new' : 'no change';
  const d = (now - before) / before;
  if (Math.abs(d) < 0.005) return 'no change';
  return (d > 0 ? '+' : '−') + fmtPct(Math.abs(d));
}

export function fmtDateTime(ms) {
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function fmtTime(ms) {
  return new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

export function fmtDate(ms) {
  return new Date(ms).toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
}

// "2 h 05 min", "12 min".
export function fmtDuration(secs) {
  const m = Math.max(0, Math.round(secs / 60));
  if (m < 60) return m + ' min';
  return Math.floor(m / 60) + ' h ' + String(m % 60).padStart(2, '0') + ' min';
}

// Seconds since the epoch, or null: "3 min ago", else a date.
export function fmtAgo(secs) {
  if (secs === null || secs === undefined) return 'never';
  const ago = Date.now() / 1000 - secs;
  if (ago < 90) return 'just now';
  if (ago < 3600) return Math.round(ago / 60) + ' min ago';
  if (ago < 86400) return Math.round(ago / 3600) + ' h ago';
  return fmtDateTime(secs * 1000);
}

// The browser's current offset as the API writes it: +02:00, -05:00.
export function utcOffset(date) {
  const mins = -(date || new Date()).getTimezoneOffset();
  const a = Math.abs(mins);
  return (mins < 0 ? '-' : '+') + String(Math.floor(a / 60)).padStart(2, '0') + ':' + String(a % 60).padStart(2, '0');
}

export function offsetMs() {
  return -new Date().getTimezoneOffset() * 60000;
}

// Local midnight (at the current offset, as the API counts days) of the day holding `ms`.
export function localMidnight(ms) {
  const off = offsetMs();
  return Math.floor((ms + off) / DAY) * DAY - off;
}

// A card section titled by its heading (for assistive technology too).
export function section(id, title, ...children) {
  return el('section', { class: 'card', id, 'aria-labelledby': id + '-title' }, el('h2', { id: id + '-title', text: title }), ...children);
}

// A table with a header row and `rows` (arrays of cells: strings or elements).
export function table(headers, rows, cls) {
  return el('table', { class: cls || null },
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', { scope: 'col', text: h })))),
    el('tbody', {}, rows));
}

export function numCell(text, value) {
  return el('td', { class: 'num', text, dataset: value === undefined ? undefined : { value: String(value) } });
}
