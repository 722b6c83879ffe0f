// The device page (/device, /login/device): the toki CLI opens it as /device?device=CODE. It
// signs the user in if needed, shows the code and the device's name, and approves or denies.
import { api, byId, setupSignIn, showOnly, signedIn, signOut, PENDING_DEVICE } from './api.js';

const SECTIONS = ['entry', 'signin', 'confirm', 'done'];
const CODE_CHARS = /^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{8}$/;

// Upper case, no spaces or hyphens, then the hyphen back: the server's own normalisation.
function normalize(input) {
  const raw = input.toUpperCase().replace(/[\s-]/g, '');
  return CODE_CHARS.test(raw) ? raw.slice(0, 4) + '-' + raw.slice(4) : null;
}

// The toki CLI requests its code without a body and sends the machine's name with its first
// poll, `interval` seconds later; the page is usually open before that. While the name is
// unknown, the page looks the code up again every NAME_RECHECK_MS and shows the name once known.
const NAME_RECHECK_MS = 3000;

let code = null;
let nameTimer = null;

function stopNameCheck() {
  clearTimeout(nameTimer);
  nameTimer = null;
}

function showName(name) {
  byId('device-name').textContent = name || 'unnamed device';
}

function scheduleNameCheck() {
  stopNameCheck();
  const checking = code;
  nameTimer = setTimeout(async () => {
    nameTimer = null;
    // Only while this code's confirm view is still on screen.
    if (byId('confirm').hidden || code !== checking) return;
    try {
      const info = await api('POST', '/device/lookup', { user_code: checking });
      if (byId('confirm').hidden || code !== checking) return;
      showName(info.device_name);
      if (!info.device_name) scheduleNameCheck();
    } catch (e) {
      // Expired, decided elsewhere, or signed out meanwhile: say so (unless the user has moved on).
      if (!byId('confirm').hidden && code === checking) explain(e);
    }
  }, NAME_RECHECK_MS);
}

function setError(message) {
  byId('error').textContent = message || '';
}

function finish(title, text) {
  byId('done-title').textContent = title;
  byId('done-text').textContent = text;
  showOnly(SECTIONS, 'done');
}

async function showUser() {
  try {
    const me = await api('GET', '/me');
    byId('who-name').textContent = me.username;
    byId('who').hidden = false;
  } catch (e) {
    if (e.status === 401) askSignIn();
  }
}

function askSignIn() {
  byId('who').hidden = true;
  showOnly(SECTIONS, 'signin');
  byId('username').focus();
}

function askCode() {
  showOnly(SECTIONS, 'entry');
  byId('code-input').focus();
}

// The failures a user can act on get a sentence; others show the server's message.
function explain(e) {
  if (e.status === 401) {
    askSignIn();
    return;
  }
  if (e.status === 404) {
    setError('That code is not valid. Check it and try again.');
    askCode();
  } else if (e.status === 410) {
    setError('That code has expired. Run toki settings sync enable again to get a new one.');
    askCode();
  } else {
    setError(e.message);
  }
}

async function showRequest() {
  setError('');
  if (!signedIn()) {
    askSignIn();
    return;
  }
  showUser();
  try {
    const info = await api('POST', '/device/lookup', { user_code: code });
    byId('code-text').textContent = info.user_code;
    showName(info.device_name);
    showOnly(SECTIONS, 'confirm');
    if (info.device_name) {
      stopNameCheck();
    } else {
      scheduleNameCheck();
    }
  } catch (e) {
    explain(e);
  }
}

async function decide(approve) {
  stopNameCheck();
  setError('');
  for (const id of ['approve', 'deny']) byId(id).disabled = true;
  try {
    await api('POST', '/device/approve', approve ? { user_code: code } : { user_code: code, deny: true });
    if (approve) {
      finish('Device connected', 'You can close this window and return to your terminal.');
    } else {
      finish('Request denied', 'The device was not connected.');
    }
  } catch (e) {
    explain(e);
  } finally {
    for (const id of ['approve', 'deny']) byId(id).disabled = false;
  }
}

function start() {
  sessionStorage.removeItem(PENDING_DEVICE);
  const given = new URLSearchParams(location.search).get('device');
  code = given ? normalize(given) : null;
  if (given && !code) setError('That code is not valid. Check it and try again.');
  if (code) {
    showRequest();
  } else {
    if (signedIn()) showUser();
    askCode();
  }
}

byId('entry-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const typed = normalize(byId('code-input').value);
  if (!typed) {
    setError('A code has 8 letters and digits, like WDJB-MJHT.');
    return;
  }
  code = typed;
  history.replaceState(null, '', '/device?device=' + encodeURIComponent(code));
  showRequest();
});
byId('approve').addEventListener('click', () => decide(true));
byId('deny').addEventListener('click', () => decide(false));
byId('sign-out').addEventListener('click', () => {
  signOut();
  askSignIn();
});
setupSignIn(async () => {
  if (code) {
    await showRequest();
  } else {
    showUser();
    askCode();
  }
}, () => {
  if (code) sessionStorage.setItem(PENDING_DEVICE, code);
});
start();
