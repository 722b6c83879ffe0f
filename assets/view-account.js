// Account: change the password; sign out everywhere (revokes every refresh token).
import { api, signOut } from './api.js';
import { el } from './format.js';

export async function render(ctx) {
  const { me } = ctx;
  const msg = el('p', { class: 'error', role: 'alert', id: 'password-message' });
  const current = el('input', { type: 'password', id: 'current-password', autocomplete: 'current-password', required: true });
  const next = el('input', { type: 'password', id: 'new-password', autocomplete: 'new-password', required: true, minLength: 8, maxLength: 128 });
  const again = el('input', { type: 'password', id: 'new-password-again', autocomplete: 'new-password', required: true });
  const form = el('form', { id: 'password-form' },
    el('label', { for: 'current-password', text: 'Current password' }), current,
    el('label', { for: 'new-password', text: 'New password (8–128 characters)' }), next,
    el('label', { for: 'new-password-again', text: 'New password again' }), again,
    el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary', text: 'Change password' })),
    msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.className = 'error';
    msg.textContent = '';
    if (next.value !== again.value) {
      msg.textContent = 'the new passwords do not match';
      return;
    }
    try {
      await api('PATCH', '/me/password', { current_password: current.value, new_password: next.value });
      form.reset();
      msg.className = 'success';
      msg.textContent = 'Password changed. Other browsers and devices must sign in again when their access expires.';
    } catch (e) {
      if (!ctx.failed(e)) msg.textContent = e.message;
    }
  });

  const outMsg = el('p', { class: 'error', role: 'alert' });
  const everywhere = el('button', { type: 'button', class: 'danger', id: 'sign-out-everywhere', text: 'Sign out everywhere' });
  everywhere.addEventListener('click', async () => {
    if (!confirm('Sign out every browser and every toki device of this account? Each must sign in again (devices: `toki settings sync enable`) once its current access expires.')) return;
    try {
      await api('POST', '/me/sign-out-everywhere');
      signOut();
      location.replace('/login');
    } catch (e) {
      if (!ctx.failed(e)) outMsg.textContent = e.message;
    }
  });

  const sections = [
    el('section', { class: 'card' }, el('h2', { text: 'Account' }),
      el('dl', { class: 'facts' },
        el('dt', { text: 'Username' }), el('dd', { text: me.username }),
        el('dt', { text: 'Role' }), el('dd', { text: me.role }),
        el('dt', { text: 'Sign-in' }), el('dd', { text: me.auth === 'oidc' ? 'single sign-on' : 'password' }),
        el('dt', { text: 'Member since' }), el('dd', { text: new Date(me.created_at * 1000).toLocaleDateString() }))),
  ];
  if (me.auth !== 'oidc') sections.push(el('section', { class: 'card narrow-card' }, el('h2', { text: 'Change password' }), form));
  sections.push(el('section', { class: 'card' }, el('h2', { text: 'Sessions' }),
    el('p', { class: 'muted', text: 'Lost a laptop, or signed in somewhere you should not have? This revokes every refresh token of your account.' }),
    el('div', { class: 'actions' }, everywhere), outMsg));
  ctx.mount().replaceChildren(...sections);
}
