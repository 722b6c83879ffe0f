// The dashboard: the signed-in user's devices, with rename and delete.
import { adoptFragmentTokens, api, byId, signedIn, signOut, PENDING_DEVICE } from './api.js';

function toLogin() {
  location.replace('/login');
}

function when(secs) {
  return secs === null || secs === undefined ? 'never' : new Date(secs * 1000).toLocaleString();
}

function setError(message) {
  byId('error').textContent = message || '';
}

function failed(e) {
  if (e.status === 401) toLogin();
  else setError(e.message);
}

function button(label, cls, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  if (cls) b.className = cls;
  b.addEventListener('click', onClick);
  return b;
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

function renderRow(device) {
  const tr = document.createElement('tr');
  tr.dataset.deviceId = device.id;
  const nameCell = cell(device.name || 'unnamed device');
  nameCell.className = 'device-name';
  const actions = document.createElement('td');
  actions.className = 'actions-cell';

  const rename = button('Rename', '', () => {
    const input = document.createElement('input');
    input.type = 'text';
    input.value = device.name;
    input.maxLength = 64;
    input.setAttribute('aria-label', 'New name');
    const save = button('Save', 'primary', async () => {
      setError('');
      try {
        await api('PATCH', '/me/devices/' + encodeURIComponent(device.id) + '/name', { name: input.value });
        await load();
      } catch (e) {
        failed(e);
      }
    });
    const cancel = button('Cancel', '', () => load());
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') save.click();
      if (ev.key === 'Escape') cancel.click();
    });
    nameCell.replaceChildren(input);
    actions.replaceChildren(save, cancel);
    input.focus();
  });
  const remove = button('Delete', 'danger', async () => {
    const label = device.name || 'this device';
    if (!confirm('Delete ' + label + ' and all usage it synced? It will be signed out of sync.')) return;
    setError('');
    try {
      await api('DELETE', '/me/devices/' + encodeURIComponent(device.id));
      await load();
    } catch (e) {
      failed(e);
    }
  });
  actions.replaceChildren(rename, remove);
  tr.replaceChildren(nameCell, cell(when(device.last_seen_at)), cell(when(device.created_at)), actions);
  return tr;
}

async function load() {
  const { devices } = await api('GET', '/me/devices');
  byId('device-rows').replaceChildren(...devices.map(renderRow));
  byId('devices').hidden = devices.length === 0;
  byId('no-devices').hidden = devices.length !== 0;
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
  try {
    const me = await api('GET', '/me');
    byId('who-name').textContent = me.username;
    await load();
  } catch (e) {
    failed(e);
  }
}

byId('sign-out').addEventListener('click', () => {
  signOut();
  toLogin();
});
start();
