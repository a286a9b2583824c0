// The audio transcoder's page: sign in, upload audio, watch it transcode, read the messages and
// download the results. Plain JavaScript, no library: it talks to the API on its own origin and
// sends files straight to the bucket with the links the API signs. Everything the API or the
// bucket says goes to the page as text (never as HTML).
'use strict';

const FAST_POLL_MS = 2000; // while something is uploading or transcoding
const SLOW_POLL_MS = 15000; // otherwise
const HIDDEN_POLL_MS = 60000; // while the tab is not shown
const AWAIT_LIMIT_MS = 30 * 60 * 1000; // a sent file no longer speeds polling up after this
const PAGE_LIMIT = 100;
// The type the page announces for each extension the pipeline takes; the API checks that it fits.
const AUDIO_TYPES = {
  mp3: 'audio/mpeg', m4a: 'audio/mp4', aac: 'audio/aac', wav: 'audio/wav',
  flac: 'audio/flac', ogg: 'audio/ogg', oga: 'audio/ogg',
};
const STATE_LABELS = {
  received: 'Received, waiting to be transcoded',
  transcoding: 'Transcoding',
  completed: 'Completed',
  completed_with_warnings: 'Completed with warnings',
  failed: 'Failed',
  rejected: 'Refused',
  superseded: 'Replaced',
};
const IN_PROGRESS = new Set(['received', 'transcoding']);
const USER_KEY = 'audio-transcoder.user';
const TOKENS_KEY = 'audio-transcoder.tokens';

const $ = (id) => document.getElementById(id);

/** An error the page shows as it is: the API's, the bucket's or Cognito's own message. */
class ShownError extends Error {
  constructor(message, status = 0, code = '') {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let config = null;
let pollTimer = null;
let refreshing = null;
let uploadsRoute = null; // unknown until GET /uploads answers; false if this API has none
let messagesLoaded = false; // messages there at sign-in are shown, not read out one by one
const notices = new Map(); // message id -> <li>
const uploadRows = new Map(); // upload id -> {li, state}
const awaiting = new Map(); // upload key -> when it was sent
let sendingCount = 0;
let pendingChallenge = null; // a Cognito challenge waiting for the user's answer

// ------------------------------------------------------------------ small helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'text') node.textContent = value;
    else if (name === 'class') node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function announce(text) {
  // Emptied first, so that the same words twice are announced twice.
  const status = $('status');
  status.textContent = '';
  setTimeout(() => { status.textContent = text; }, 50);
}

let alertFrom = null;
function showAlert(text, from = 'action') {
  const box = $('alert');
  box.textContent = text;
  box.hidden = false;
  alertFrom = from;
}

function clearAlert(from) {
  if (from === undefined || alertFrom === from) {
    $('alert').hidden = true;
    $('alert').textContent = '';
    alertFrom = null;
  }
}

function extension(name) {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? '' : name.slice(dot + 1).toLowerCase();
}

function baseName(path) {
  return path.slice(path.lastIndexOf('/') + 1);
}

// ------------------------------------------------------------------ signing in

function signedIn() {
  return config && (config.sign_in === 'local' ? !!localStorage.getItem(USER_KEY) : !!tokens());
}

function tokens() {
  try {
    return JSON.parse(sessionStorage.getItem(TOKENS_KEY) || 'null');
  } catch {
    return null;
  }
}

function jwtClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch {
    return {};
  }
}

/** One call to Cognito's user pool API; its own message on failure. */
async function cognito(action, body) {
  let response;
  try {
    response = await fetch(config.endpoint, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/x-amz-json-1.1',
        'X-Amz-Target': `AWSCognitoIdentityProviderService.${action}`,
      },
      body: JSON.stringify(body),
    });
  } catch (e) {
    throw new ShownError(`Amazon Cognito could not be reached (${e.message}).`);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ShownError(data.message || `Amazon Cognito answered ${response.status}.`,
      response.status, (data.__type || '').split('#').pop());
  }
  return data;
}

function keepTokens(result, refreshToken) {
  const kept = {
    access: result.AccessToken,
    id: result.IdToken,
    refresh: result.RefreshToken || refreshToken,
    expires: Date.now() + (result.ExpiresIn || 3600) * 1000,
  };
  sessionStorage.setItem(TOKENS_KEY, JSON.stringify(kept));
  return kept;
}

async function freshTokens() {
  const kept = tokens();
  if (!kept) return null;
  if (Date.now() < kept.expires - 60000) return kept;
  const answer = await cognito('InitiateAuth', {
    AuthFlow: 'REFRESH_TOKEN_AUTH',
    ClientId: config.client_id,
    AuthParameters: { REFRESH_TOKEN: kept.refresh },
  });
  return keepTokens(answer.AuthenticationResult, kept.refresh);
}

async function authHeaders() {
  if (config.sign_in === 'local') return { 'X-User': localStorage.getItem(USER_KEY) || '' };
  const kept = await freshTokens().catch(() => null);
  return kept ? { Authorization: `Bearer ${kept.access}` } : {};
}

function userName() {
  if (config.sign_in === 'local') return localStorage.getItem(USER_KEY) || '';
  const claims = jwtClaims((tokens() || {}).id || '');
  return claims.email || claims['cognito:username'] || 'you';
}

async function signInLocally(event) {
  event.preventDefault();
  const name = $('user-name').value.trim();
  // A header carries printable ASCII only; the API checks the rest.
  if (!/^[\x20-\x7e]{1,128}$/.test(name)) {
    showAlert('Use letters, digits and ASCII punctuation in the user name (at most 128).');
    $('user-name').focus();
    return;
  }
  localStorage.setItem(USER_KEY, name);
  await enterApp();
}

async function signInWithCognito(event) {
  event.preventDefault();
  const email = $('email').value.trim();
  const button = event.submitter || $('cognito-form').querySelector('button');
  button.disabled = true;
  try {
    let answer;
    if (pendingChallenge) {
      const responses = { USERNAME: pendingChallenge.username };
      if (pendingChallenge.name === 'NEW_PASSWORD_REQUIRED') responses.NEW_PASSWORD = $('new-password').value;
      else responses.SOFTWARE_TOKEN_MFA_CODE = $('mfa-code').value.trim();
      answer = await cognito('RespondToAuthChallenge', {
        ChallengeName: pendingChallenge.name,
        ClientId: config.client_id,
        Session: pendingChallenge.session,
        ChallengeResponses: responses,
      });
    } else {
      answer = await cognito('InitiateAuth', {
        AuthFlow: 'USER_PASSWORD_AUTH',
        ClientId: config.client_id,
        AuthParameters: { USERNAME: email, PASSWORD: $('password').value },
      });
    }
    if (answer.AuthenticationResult) {
      pendingChallenge = null;
      keepTokens(answer.AuthenticationResult);
      $('password').value = '';
      $('new-password').value = '';
      $('mfa-code').value = '';
      $('new-password-field').hidden = true;
      $('mfa-field').hidden = true;
      await enterApp();
      return;
    }
    const name = answer.ChallengeName;
    if (name !== 'NEW_PASSWORD_REQUIRED' && name !== 'SOFTWARE_TOKEN_MFA') {
      throw new ShownError(`Amazon Cognito asks for ${name}, which this page cannot answer.`);
    }
    const username = (answer.ChallengeParameters || {}).USER_ID_FOR_SRP || email;
    pendingChallenge = { name, session: answer.Session, username };
    const field = name === 'NEW_PASSWORD_REQUIRED' ? 'new-password' : 'mfa-code';
    $(`${field}-field`).hidden = false;
    $(field).required = true;
    $(field).focus();
    announce(name === 'NEW_PASSWORD_REQUIRED'
      ? 'Choose a new password to finish signing in.'
      : 'Enter the code from your authenticator app.');
  } catch (e) {
    if (pendingChallenge && e.code === 'NotAuthorizedException') pendingChallenge = null;
    showAlert(`Could not sign in: ${e.message}`);
  } finally {
    button.disabled = false;
  }
}

async function signOut(why) {
  clearTimeout(pollTimer);
  if (config.sign_in === 'local') {
    localStorage.removeItem(USER_KEY);
  } else {
    const kept = tokens();
    sessionStorage.removeItem(TOKENS_KEY);
    if (kept) {
      cognito('RevokeToken', { Token: kept.refresh, ClientId: config.client_id }).catch(() => {});
    }
  }
  for (const list of ['notices', 'uploads', 'sending']) $(list).replaceChildren();
  notices.clear();
  uploadRows.clear();
  awaiting.clear();
  messagesLoaded = false;
  delete document.body.dataset.loaded;
  showSignIn();
  if (why) showAlert(why);
  else clearAlert();
  announce('Signed out.');
}

function showSignIn() {
  $('app').hidden = true;
  $('who').hidden = true;
  $('sign-in').hidden = false;
  const form = config.sign_in === 'local' ? 'local-form' : 'cognito-form';
  $(form).hidden = false;
  $(config.sign_in === 'local' ? 'user-name' : 'email').focus();
}

async function enterApp() {
  clearAlert();
  $('sign-in').hidden = true;
  $('who-name').textContent = userName();
  $('who').hidden = false;
  $('app').hidden = false;
  updateEmpty();
  await refresh();
  if (signedIn()) {
    $('notices-title').focus();
    announce(`Signed in as ${userName()}.`);
  }
}

// ------------------------------------------------------------------ the API

/** One call to the API on this origin: its JSON, or its own error message. */
async function api(method, path, body) {
  const headers = await authHeaders();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ShownError(`the server could not be reached (${e.message})`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    // Our errors are {"error": {code, message}}; API Gateway's own are {"message"}.
    const error = (data && data.error) || {};
    const message = error.message || (data && data.message) || `the server answered ${response.status}`;
    throw new ShownError(message, response.status, error.code || '');
  }
  return data;
}

/** Every page of a list, up to `pages` pages. */
async function listAll(path, field, pages) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < pages; i += 1) {
    const query = new URLSearchParams({ limit: String(PAGE_LIMIT) });
    if (cursor) query.set('cursor', cursor);
    const page = await api('GET', `${path}?${query}`);
    items.push(...page[field]);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return items;
}

// ------------------------------------------------------------------ messages

function renderNotice(message) {
  const textId = `notice-${notices.size}-${Date.now()}`;
  const file = baseName(message.file);
  const li = el('li', { class: `notice notice-${message.state}`, 'data-id': message.id });
  const article = el('article', { 'aria-labelledby': textId });
  article.append(el('p', { id: textId, text: message.text }));
  const created = new Date(message.created_at);
  if (!Number.isNaN(created.getTime())) {
    article.append(el('p', { class: 'hint' }, el('time', {
      datetime: message.created_at, text: created.toLocaleString(),
    })));
  }
  if (message.outputs.length) {
    const links = el('ul', { class: 'downloads', 'aria-label': `Downloads of ${file}` });
    for (const output of message.outputs) {
      const label = output.format.toUpperCase();
      links.append(el('li', {}, el('a', {
        href: output.url,
        download: baseName(output.key),
        'data-format': output.format,
        'aria-label': `Download ${file} as ${label}`,
        text: label,
      })));
    }
    article.append(links);
    const aac = message.outputs.find((o) => o.format === 'aac');
    if (aac) {
      article.append(el('audio', {
        controls: '', preload: 'none', src: aac.url, 'aria-label': `Play ${file} (AAC)`,
      }));
    }
  }
  const dismiss = el('button', {
    type: 'button', class: 'secondary dismiss', 'aria-label': `Dismiss the message about ${file}`,
    text: 'Dismiss',
  });
  dismiss.addEventListener('click', () => dismissNotice(message.id, file, li, dismiss));
  article.append(dismiss);
  li.append(article);
  return li;
}

/** The links of a shown message, renewed: each link is signed for 15 minutes. */
function renewLinks(li, message) {
  for (const output of message.outputs) {
    const link = li.querySelector(`a[data-format="${CSS.escape(output.format)}"]`);
    if (link) link.href = output.url;
    const audio = li.querySelector('audio');
    // A player in use keeps its source; a fresh one takes the new link.
    if (output.format === 'aac' && audio && audio.paused && audio.currentTime === 0) audio.src = output.url;
  }
}

async function loadMessages() {
  const messages = await listAll('/messages', 'messages', 5);
  const seen = new Set();
  const list = $('notices');
  messages.forEach((message, index) => {
    seen.add(message.id);
    let li = notices.get(message.id);
    if (li) {
      renewLinks(li, message);
    } else {
      li = renderNotice(message);
      notices.set(message.id, li);
      if (messagesLoaded) announce(message.text);
    }
    if (list.children[index] !== li) list.insertBefore(li, list.children[index] || null);
    for (const [key] of awaiting) {
      if (key.endsWith(`/${message.file}`)) {
        awaiting.delete(key);
        settleSent(key, message.state);
      }
    }
  });
  for (const [id, li] of notices) {
    if (!seen.has(id)) {
      li.remove();
      notices.delete(id);
    }
  }
  messagesLoaded = true;
  document.body.dataset.loaded = 'true';
  updateEmpty();
}

/** A sent file's row, once its message is here: what became of it. */
function settleSent(key, outcome) {
  for (const li of $('sending').querySelectorAll('li[data-state="sent"]')) {
    if (li.dataset.key !== key) continue;
    // A refused upload's record says `rejected` and its message `failed`; whichever the page
    // sees first settles the row, so both read as one outcome.
    li.dataset.state = outcome === 'rejected' ? 'failed' : outcome;
    const done = outcome === 'completed' || outcome === 'completed_with_warnings';
    const state = li.querySelector('.state');
    if (outcome === 'superseded') {
      // No message comes for it: the newer upload of the same name has its own.
      state.className = 'state state-superseded';
      state.textContent = 'Replaced by a newer upload of the same name';
      continue;
    }
    state.className = `state state-${done ? 'done' : 'failed'}`;
    state.textContent = done
      ? 'Transcoded: its message has the downloads'
      : 'Not transcoded: its message says why';
  }
}

async function dismissNotice(id, file, li, button) {
  button.disabled = true;
  try {
    await api('POST', `/messages/${encodeURIComponent(id)}/dismiss`);
  } catch (e) {
    button.disabled = false;
    if (!handleSignedOut(e)) showAlert(`Could not dismiss the message about ${file}: ${e.message}`);
    return;
  }
  // Focus moves to the next message's button, or the previous one's, or the heading.
  const next = li.nextElementSibling || li.previousElementSibling;
  li.remove();
  notices.delete(id);
  updateEmpty();
  (next ? next.querySelector('button.dismiss') : $('notices-title')).focus();
  announce(`The message about ${file} is dismissed.`);
}

// ------------------------------------------------------------------ uploads and their states

function describeState(upload) {
  const label = STATE_LABELS[upload.state] || upload.state;
  return upload.state === 'transcoding' && upload.percent !== null && upload.percent !== undefined
    ? `${label}, ${upload.percent} %` : label;
}

function renderUpload(upload) {
  const li = el('li', { 'data-key': upload.key });
  li.append(el('span', { class: 'file-name', text: upload.file }),
    el('span', { class: 'state' }),
    el('progress', { max: '100', 'aria-label': `${upload.file}: transcoding` }),
    el('p', { class: 'reason' }));
  return li;
}

function updateUpload(li, upload) {
  li.dataset.state = upload.state;
  const state = li.querySelector('.state');
  state.className = `state state-${upload.state}`;
  state.textContent = describeState(upload);
  const bar = li.querySelector('progress');
  bar.hidden = !IN_PROGRESS.has(upload.state);
  if (typeof upload.percent === 'number') bar.value = upload.percent;
  else bar.removeAttribute('value');
  const reason = li.querySelector('.reason');
  reason.textContent = upload.reason || '';
  reason.hidden = !upload.reason;
}

async function loadUploads() {
  if (uploadsRoute === false) return;
  let page;
  try {
    page = await api('GET', `/uploads?limit=${PAGE_LIMIT}`);
  } catch (e) {
    // An API without the route (no_route, as the router names an unknown path): the messages
    // still say what became of each file.
    if (e.status === 404 || e.status === 405) {
      uploadsRoute = false;
      $('uploads-section').hidden = true;
      return;
    }
    throw e;
  }
  uploadsRoute = true;
  $('uploads-section').hidden = false;
  const list = $('uploads');
  const seen = new Set();
  page.uploads.forEach((upload, index) => {
    seen.add(upload.id);
    let row = uploadRows.get(upload.id);
    if (!row) {
      row = { li: renderUpload(upload), state: null };
      uploadRows.set(upload.id, row);
    }
    updateUpload(row.li, upload);
    if (row.state !== null && row.state !== upload.state) {
      announce(`${upload.file}: ${STATE_LABELS[upload.state] || upload.state}.`);
    }
    row.state = upload.state;
    if (!IN_PROGRESS.has(upload.state) && awaiting.delete(upload.key)) {
      settleSent(upload.key, upload.state);
    }
    if (list.children[index] !== row.li) list.insertBefore(row.li, list.children[index] || null);
  });
  for (const [id, row] of uploadRows) {
    if (!seen.has(id)) {
      row.li.remove();
      uploadRows.delete(id);
    }
  }
  updateEmpty();
}

function updateEmpty() {
  $('no-notices').hidden = notices.size > 0;
  $('no-uploads').hidden = uploadRows.size > 0;
}

// ------------------------------------------------------------------ sending files

function sendingRow(file) {
  const li = el('li', { 'data-file': file.name, 'data-state': 'sending' });
  const bar = el('progress', { max: '100', value: '0', 'aria-label': `Sending ${file.name}` });
  li.append(el('span', { class: 'file-name', text: file.name }),
    el('span', { class: 'state', text: 'Sending, 0 %' }), bar, el('p', { class: 'reason', hidden: '' }));
  $('sending').prepend(li);
  return li;
}

function putFile(link, file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open(link.method, link.url);
    // The link is signed for exactly this type and length; the browser sets the length itself,
    // from the file, which is the size the API was told.
    request.setRequestHeader('Content-Type', link.headers['Content-Type']);
    request.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(Math.floor((100 * e.loaded) / e.total));
    });
    request.addEventListener('load', () => {
      if (request.status >= 200 && request.status < 300) resolve();
      else reject(new ShownError(bucketError(request), request.status));
    });
    request.addEventListener('error', () => reject(new ShownError('the upload could not reach the bucket')));
    request.addEventListener('abort', () => reject(new ShownError('the upload was stopped')));
    request.send(file);
  });
}

/** The reason the bucket gives: the local runner's JSON error, or S3's XML <Message>. */
function bucketError(request) {
  const text = request.responseText || '';
  try {
    const message = JSON.parse(text).error.message;
    if (message) return message;
  } catch {
    // not JSON: S3 answers in XML
  }
  const match = /<Message>([^<]*)<\/Message>/.exec(text);
  return match ? match[1] : `the bucket answered ${request.status}`;
}

async function send(file) {
  const li = sendingRow(file);
  const state = li.querySelector('.state');
  const bar = li.querySelector('progress');
  const refuse = (e) => {
    li.dataset.state = 'refused';
    state.className = 'state state-refused';
    state.textContent = 'Refused';
    bar.hidden = true;
    const reason = li.querySelector('.reason');
    reason.textContent = e.message;
    reason.hidden = false;
    announce(`${file.name} was refused: ${e.message}`);
  };
  sendingCount += 1;
  try {
    const type = AUDIO_TYPES[extension(file.name)] || file.type || 'application/octet-stream';
    let link;
    try {
      link = await api('POST', '/uploads', { filename: file.name, size: file.size, content_type: type });
    } catch (e) {
      if (!handleSignedOut(e)) refuse(e);
      return;
    }
    li.dataset.key = link.key;
    try {
      await putFile(link, file, (percent) => {
        bar.value = percent;
        state.textContent = `Sending, ${percent} %`;
      });
    } catch (e) {
      refuse(e);
      return;
    }
    li.dataset.state = 'sent';
    bar.value = 100;
    state.textContent = uploadsRoute
      ? 'Sent: its state is under Your uploads'
      : 'Sent: a message will say when it is transcoded';
    awaiting.set(link.key, Date.now());
    announce(`${file.name} is sent.`);
  } finally {
    sendingCount -= 1;
    refresh();
  }
}

function sendAll(files) {
  clearAlert();
  for (const file of files) send(file);
}

// ------------------------------------------------------------------ polling

function busy() {
  const now = Date.now();
  for (const [key, since] of awaiting) {
    if (now - since > AWAIT_LIMIT_MS) awaiting.delete(key);
  }
  return sendingCount > 0 || awaiting.size > 0
    || [...uploadRows.values()].some((row) => IN_PROGRESS.has(row.state));
}

/** True when the error means the caller is not signed in (any more): the page says so. */
function handleSignedOut(e) {
  if (e.status !== 401) return false;
  signOut(config.sign_in === 'local'
    ? `The API refused the user name: ${e.message}`
    : 'Your session has ended: sign in again.');
  return true;
}

/** Loads messages and uploads now, then again in 2 s while something moves, 15 s otherwise. */
function refresh() {
  if (refreshing) return refreshing;
  clearTimeout(pollTimer);
  refreshing = (async () => {
    if (!signedIn()) return;
    try {
      await Promise.all([loadMessages(), loadUploads()]);
      clearAlert('refresh');
    } catch (e) {
      if (handleSignedOut(e)) return;
      showAlert(`Could not load your messages and uploads: ${e.message}`, 'refresh');
    }
    if (!signedIn()) return;
    let wait = busy() ? FAST_POLL_MS : SLOW_POLL_MS;
    if (document.hidden) wait = HIDDEN_POLL_MS;
    pollTimer = setTimeout(refresh, wait);
  })().finally(() => { refreshing = null; });
  return refreshing;
}

// ------------------------------------------------------------------ start

function wireDropZone() {
  const zone = $('drop');
  const input = $('files');
  input.addEventListener('change', () => {
    sendAll([...input.files]);
    input.value = '';
  });
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    sendAll([...e.dataTransfer.files]);
  });
  // A file dropped beside the zone is not opened in place of the page.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => e.preventDefault());
}

async function start() {
  try {
    const response = await fetch('/config.json');
    if (!response.ok) throw new Error(`it answered ${response.status}`);
    config = await response.json();
  } catch (e) {
    showAlert(`The page cannot start: /config.json could not be read (${e.message}).`);
    return;
  }
  if (config.sign_in === 'local' && config.origin && window.location.origin !== config.origin) {
    // The runner's links point at its own address: the page moves there, so they stay same-origin.
    window.location.replace(`${config.origin}/`);
    return;
  }
  $('mode-note').hidden = config.sign_in !== 'local';
  $('local-form').addEventListener('submit', signInLocally);
  $('cognito-form').addEventListener('submit', signInWithCognito);
  $('sign-out').addEventListener('click', () => signOut());
  wireDropZone();
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && signedIn()) refresh();
  });
  if (signedIn()) await enterApp();
  else showSignIn();
}

start();
