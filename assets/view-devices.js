// Devices: name, provider sessions connected now, last sync, usage in the range; rename and
// delete (the confirmation says what deletion removes).
import { api } from './api.js';
import { button, el, fmtAgo, fmtTokens, fmtUsd, numCell, table } from './format.js';
import { usageQuery } from './state.js';

export async function render(ctx) {
  const { win: w } = ctx;
  const [list, usage] = await Promise.all([
    api('GET', '/me/devices'),
    api('GET', usageQuery(w, { group_by: 'device' })),
  ]);
  const byDevice = new Map(usage.series.map((s) => [s.group.device, s.totals]));
  const devices = list.devices;
  ctx.devices = devices;
  const error = el('p', { class: 'error', role: 'alert', id: 'devices-error' });
  const fail = (e) => { if (!ctx.failed(e)) error.textContent = e.message; };
  const reload = () => ctx.rerender();

  const rows = devices.map((d) => {
    const u = byDevice.get(d.id) || { total: 0, cost_usd: 0, events: 0 };
    const tr = el('tr', { dataset: { deviceId: d.id } });
    const nameCell = el('td', { class: 'device-name', text: d.name || 'unnamed device' });
    const actions = el('td', { class: 'actions-cell' });
    const live = (d.connected || []).length
      ? el('span', { class: 'live', text: d.connected.join(', ') })
      : el('span', { class: 'muted', text: 'not connected' });
    const rename = button('Rename', '', () => {
      const input = el('input', { type: 'text', value: d.name, maxLength: 64, 'aria-label': 'New name for ' + (d.name || 'this device') });
      const save = button('Save', 'primary', async () => {
        error.textContent = '';
        try {
          await api('PATCH', '/me/devices/' + encodeURIComponent(d.id) + '/name', { name: input.value });
          reload();
        } catch (e) { fail(e); }
      });
      const cancel = button('Cancel', '', reload);
      input.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter') save.click();
        if (ev.key === 'Escape') cancel.click();
      });
      nameCell.replaceChildren(input);
      actions.replaceChildren(save, cancel);
      input.focus();
    });
    const remove = button('Delete', 'danger', async () => {
      const label = d.name || 'this device';
      const what = 'Delete ' + label + '? This removes all usage it synced (' + fmtTokens(u.total) +
        ' tokens in the selected range alone) from the server and disconnects it. The machine can sync again only after `toki settings sync enable` is run on it.';
      if (!confirm(what)) return;
      error.textContent = '';
      try {
        await api('DELETE', '/me/devices/' + encodeURIComponent(d.id));
        reload();
      } catch (e) { fail(e); }
    });
    actions.replaceChildren(rename, remove);
    tr.replaceChildren(nameCell, el('td', {}, live), el('td', { text: fmtAgo(d.last_seen_at) }),
      numCell(fmtTokens(u.total), u.total), numCell(fmtUsd(u.cost_usd), u.cost_usd), actions);
    return tr;
  });

  const body = devices.length
    ? el('div', { class: 'scroll' }, table(['Name', 'Connected now', 'Last sync', 'Tokens (' + w.label + ')', 'Cost', ''], rows, 'data devices'))
    : el('p', { class: 'muted', id: 'no-devices', text: 'No devices yet.' });
  const tbody = body.querySelector && body.querySelector('tbody');
  if (tbody) tbody.id = 'device-rows';
  ctx.mount().replaceChildren(
    ...(devices.length ? [] : [ctx.emptyState()]),
    el('section', { class: 'card' }, el('h2', { text: 'Your devices' }), body, error),
    el('section', { class: 'card' }, el('h2', { text: 'Connect a device' }),
      el('p', { class: 'muted' }, 'Have a code from ', el('code', { text: 'toki settings sync enable' }), '? ',
        el('a', { href: '/device', text: 'Enter it here' }), '.')),
  );
}
