// The admin panel, part one: users (create, delete, role, reset password), pending
// registrations (approve, reject), teams (create, delete, members) and settings. Part two
// (server, live sessions, all devices, usage by user) is in admin-server.js. Only admins see
// this view; the API refuses everyone else anyway.
import { api } from './api.js';
import { button, el, fmtDateTime, section, table } from './format.js';
import * as server from './admin-server.js';

// Runs an admin action, then renders the panel again; an error is shown in `msg`.
function actor(ctx, msg) {
  return async (f) => {
    msg.textContent = '';
    try { await f(); ctx.rerender(); return true; } catch (e) { if (!ctx.failed(e)) msg.textContent = e.message; return false; }
  };
}

// A form row of labelled inputs with a submit button; `submit` gets the values by name.
function inlineForm(id, fields, label, submit, msg) {
  const inputs = fields.map((f) => (f.options
    ? el('select', { id: id + '-' + f.name, 'aria-label': f.label }, f.options.map((o) => el('option', { value: o, text: o })))
    : el('input', { id: id + '-' + f.name, type: f.type || 'text', 'aria-label': f.label, placeholder: f.label, required: true, autocomplete: 'off' })));
  const form = el('form', { class: 'inline-form', id }, inputs, el('button', { type: 'submit', class: 'primary', text: label }));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.textContent = '';
    const values = Object.fromEntries(fields.map((f, i) => [f.name, inputs[i].value]));
    if (await submit(values)) form.reset();
  });
  return form;
}

async function usersSection(ctx, users, pending) {
  const msg = el('p', { class: 'error', role: 'alert', id: 'users-error' });
  const act = actor(ctx, msg);
  const rows = users.filter((u) => u.status !== 'pending').map((u) => {
    const role = el('select', { 'aria-label': 'Role of ' + u.username, class: 'role-select' },
      ['user', 'admin'].map((r) => el('option', { value: r, text: r, selected: r === u.role })));
    role.addEventListener('change', () => act(() => api('PATCH', '/admin/users/' + u.id + '/role', { role: role.value })));
    const reset = button('Reset password', '', () => {
      const pw = prompt('New password for ' + u.username + ' (8–128 characters). Their refresh tokens are revoked.');
      if (pw) act(() => api('PATCH', '/admin/users/' + u.id + '/password', { password: pw }));
    });
    const del = button('Delete', 'danger', () => {
      if (confirm('Delete ' + u.username + ' with all their devices, usage, tokens and team memberships?')) {
        act(() => api('DELETE', '/admin/users/' + u.id));
      }
    });
    const self = u.id === ctx.me.id;
    return el('tr', { dataset: { username: u.username } },
      el('th', { scope: 'row', text: u.username + (self ? ' (you)' : '') }),
      el('td', {}, role), el('td', { text: u.status }), el('td', { text: u.auth }),
      el('td', { text: fmtDateTime(u.created_at * 1000) }),
      el('td', { class: 'actions-cell' }, u.auth === 'password' ? reset : null, self ? null : del));
  });
  const create = inlineForm('create-user', [
    { name: 'username', label: 'Username' },
    { name: 'password', label: 'Password', type: 'password' },
    { name: 'role', label: 'Role', options: ['user', 'admin'] },
  ], 'Create user', (v) => act(() => api('POST', '/admin/users', v)), msg);

  const pendingRows = pending.map((u) => el('tr', { dataset: { username: u.username } },
    el('th', { scope: 'row', text: u.username }), el('td', { text: fmtDateTime(u.created_at * 1000) }),
    el('td', { class: 'actions-cell' },
      button('Approve', 'primary', () => act(() => api('POST', '/admin/pending/' + u.id + '/approve'))),
      button('Reject', 'danger', () => {
        if (confirm('Reject and delete the registration of ' + u.username + '?')) act(() => api('POST', '/admin/pending/' + u.id + '/reject'));
      }))));
  return [
    section('admin-users', 'Users',
      el('div', { class: 'scroll' }, table(['User', 'Role', 'Status', 'Sign-in', 'Created', ''], rows, 'data users')),
      create, msg),
    section('admin-pending', 'Pending registrations',
      pendingRows.length
        ? el('div', { class: 'scroll' }, table(['User', 'Registered', ''], pendingRows, 'data pending'))
        : el('p', { class: 'muted', text: 'No registrations waiting for approval.' })),
  ];
}

async function teamsSection(ctx, users) {
  const msg = el('p', { class: 'error', role: 'alert', id: 'teams-error' });
  const act = actor(ctx, msg);
  const { teams } = await api('GET', '/admin/teams');
  const members = await Promise.all(teams.map((t) => api('GET', '/admin/teams/' + t.id + '/members')));
  const active = users.filter((u) => u.status === 'active');
  const blocks = teams.map((t, i) => {
    const list = members[i].members;
    const rows = list.map((m) => el('tr', {},
      el('th', { scope: 'row', text: m.username }), el('td', { text: m.role }),
      el('td', { class: 'actions-cell' }, button('Remove', 'danger', () => act(() => api('DELETE', '/admin/teams/' + t.id + '/members/' + m.user_id))))));
    const who = el('select', { 'aria-label': 'User to add to ' + t.name },
      active.filter((u) => !list.some((m) => m.user_id === u.id)).map((u) => el('option', { value: u.id, text: u.username })));
    const role = el('select', { 'aria-label': 'Team role' }, ['member', 'admin'].map((r) => el('option', { value: r, text: r })));
    const add = el('form', { class: 'inline-form' }, who, role, el('button', { type: 'submit', text: 'Add member' }));
    add.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (who.value) act(() => api('POST', '/admin/teams/' + t.id + '/members', { user_id: who.value, role: role.value }));
    });
    return el('div', { class: 'team-admin', dataset: { team: t.name } },
      el('h3', {}, t.name + ' ', button('Delete team', 'danger small', () => {
        if (confirm('Delete the team ' + t.name + '? Its members keep their accounts and usage.')) act(() => api('DELETE', '/admin/teams/' + t.id));
      })),
      rows.length ? table(['Member', 'Team role', ''], rows, 'data') : el('p', { class: 'muted', text: 'No members yet.' }),
      add);
  });
  const create = inlineForm('create-team', [{ name: 'name', label: 'Team name' }], 'Create team',
    (v) => act(() => api('POST', '/admin/teams', v)), msg);
  return section('admin-teams', 'Teams', ...blocks, create, msg);
}

async function settingsSection(ctx) {
  const msg = el('p', { class: 'error', role: 'alert' });
  const s = await api('GET', '/admin/settings');
  const mode = el('select', { id: 'registration-mode' },
    [['open', 'open: anyone can register'], ['approval', 'approval: an admin approves each'], ['disabled', 'disabled: admins create users']]
      .map(([v, t]) => el('option', { value: v, text: t, selected: v === s.registration_mode })));
  mode.addEventListener('change', async () => {
    msg.textContent = '';
    try {
      await api('PATCH', '/admin/settings', { registration_mode: mode.value });
      msg.className = 'success';
      msg.textContent = 'Saved.';
    } catch (e) {
      msg.className = 'error';
      if (!ctx.failed(e)) msg.textContent = e.message;
    }
  });
  return section('admin-settings', 'Settings', el('label', { for: 'registration-mode', text: 'Registration' }), mode, msg);
}

export async function render(ctx) {
  if (ctx.me.role !== 'admin') {
    ctx.mount().replaceChildren(el('section', { class: 'card' }, el('p', { class: 'error', text: 'admin role required' })));
    return;
  }
  const [{ users }, { pending }] = await Promise.all([api('GET', '/admin/users'), api('GET', '/admin/pending')]);
  const parts = await Promise.all([
    usersSection(ctx, users, pending),
    teamsSection(ctx, users),
    settingsSection(ctx),
    server.sections(ctx),
  ]);
  const [userParts, teams, settings, serverParts] = parts;
  ctx.mount().replaceChildren(...serverParts.slice(0, 1), ...userParts, teams, settings, ...serverParts.slice(1));
  server.startLive(ctx);
}
