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

/** The message in a line: the file and what is ready; the links below say where (not storage keys). */
function noticeText(message, file) {
  const formats = message.outputs.map((o) => (o.format || '').toUpperCase()).filter(Boolean).join(', ');
  if (message.state === 'completed' && formats) return `${file} is ready as ${formats}.`;
  if (message.state === 'completed_with_warnings') {
    const warning = /with a warning: (.*?)\. Files:/.exec(message.text || '');
    return `${file} is ready${formats ? ` as ${formats}` : ''}, with a warning: ${warning ? warning[1] : 'see the log'}.`;
  }
  // A failure's reason is the useful part of the API's own text.
  return message.text;
}

function renderNotice(message) {
  const textId = `notice-${notices.size}-${Date.now()}`;
  const file = baseName(message.file);
  const li = el('li', { class: `notice notice-${message.state}`, 'data-id': message.id });
  const article = el('article', { 'aria-labelledby': textId });
  article.append(el('p', { id: textId, text: noticeText(message, file) }));
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
    const playable = playableOutput(message.outputs);
    if (playable) {
      article.append(el('audio', {
        controls: '', preload: 'none', src: playable.url, 'data-format': playable.format,
        'data-key': message.file, 'aria-label': `Play ${file} (${playable.format.toUpperCase()})`,
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
    if (audio && output.format === audio.dataset.format && audio.paused && audio.currentTime === 0) audio.src = output.url;
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
    el('p', { class: 'reason' }),
    el('div', { class: 'analysis', hidden: '' }));
  return li;
}

// ------------------------------------------------------------------ analysis: loudness and waveform

/** The output a browser plays best, in this order; null when none. */
function playableOutput(outputs) {
  for (const format of ['aac', 'mp3', 'opus', 'flac', 'wav']) {
    const output = (outputs || []).find((o) => o.format === format && o.url);
    if (output) return output;
  }
  return null;
}

const finite = (v) => typeof v === 'number' && Number.isFinite(v);

/** "2 min 5 s": a duration in plain words. */
function describeDuration(seconds) {
  if (!finite(seconds) || seconds < 0) return 'length unknown';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return [h ? `${h} h` : '', h || m ? `${m} min` : '', `${s} s`].filter(Boolean).join(' ');
}

/** "2 min 5 s · -16.1 LUFS, peaks at -1.2 dBTP", or "silent" where loudness cannot be measured. */
function describeAnalysis(analysis) {
  const parts = [describeDuration(analysis.duration_s)];
  if (finite(analysis.integrated_lufs)) {
    let loud = `${analysis.integrated_lufs.toFixed(1)} LUFS`;
    if (finite(analysis.true_peak_dbtp)) loud += `, peaks at ${analysis.true_peak_dbtp.toFixed(1)} dBTP`;
    if (finite(analysis.loudness_range_lu)) loud += `, range ${analysis.loudness_range_lu.toFixed(1)} LU`;
    parts.push(loud);
  } else {
    parts.push(finite(analysis.true_peak_dbtp)
      ? `too quiet to measure, peaks at ${analysis.true_peak_dbtp.toFixed(1)} dBTP` : 'silent');
  }
  return parts.join(' · ');
}

/** BBC audiowaveform JSON version 2, 8-bit, checked: the [min, max] pairs of channel 0, or null. */
function parsePeaks(json) {
  if (!json || json.version !== 2 || json.bits !== 8 || !Array.isArray(json.data)) return null;
  const channels = Number.isInteger(json.channels) && json.channels > 0 ? json.channels : 1;
  const length = json.length;
  if (!Number.isInteger(length) || length <= 0 || json.data.length !== 2 * length * channels) return null;
  if (!json.data.every((v) => Number.isInteger(v) && v >= -128 && v <= 127)) return null;
  const pairs = [];
  for (let i = 0; i < length; i += 1) {
    const at = 2 * i * channels;
    pairs.push([json.data[at], json.data[at + 1]]);
  }
  return pairs;
}

function drawWaveform(canvas, pairs) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600;
  const height = canvas.clientHeight || 64;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext('2d');
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = getComputedStyle(canvas).color || '#1d4ed8';
  const mid = height / 2;
  for (let x = 0; x < width; x += 1) {
    // Each pixel column takes the extremes of the pairs it covers.
    const from = Math.floor((x * pairs.length) / width);
    const to = Math.max(from + 1, Math.floor(((x + 1) * pairs.length) / width));
    let lo = 0;
    let hi = 0;
    for (let i = from; i < to && i < pairs.length; i += 1) {
      lo = Math.min(lo, pairs[i][0]);
      hi = Math.max(hi, pairs[i][1]);
    }
    const top = mid - (hi / 128) * mid;
    const bottom = mid - (lo / 128) * mid;
    ctx.fillRect(x, top, 1, Math.max(1, bottom - top));
  }
}

/** The player of this upload: in its own row, or else in its message. */
function playerOf(li, upload) {
  const own = li.querySelector('audio');
  if (own) return own;
  return [...document.querySelectorAll('#notices audio')].find((a) => a.dataset.key === upload.key)
    || null;
}

function seek(li, upload, fraction) {
  const audio = playerOf(li, upload);
  const duration = finite(audio && audio.duration) ? audio.duration : upload.analysis.duration_s;
  if (!audio || !finite(duration)) return;
  // Before anything is loaded, this is where playback starts once it is; playing (the click is
  // the user's gesture) loads it.
  audio.currentTime = Math.min(Math.max(fraction, 0), 1) * duration;
  audio.play().catch(() => {
    // Refused (no gesture, or a codec this browser lacks): the position is set all the same.
  });
}

/** Fills the row's analysis once: the words at once, the waveform when its peaks arrive. */
function showAnalysis(li, upload) {
  const box = li.querySelector('.analysis');
  const analysis = upload.analysis;
  if (!analysis || typeof analysis !== 'object' || box.dataset.shown) return;
  box.dataset.shown = 'yes';
  box.hidden = false;
  box.append(el('p', { class: 'loudness', text: describeAnalysis(analysis) }));
  const playable = playableOutput(upload.outputs);
  if (playable) {
    box.append(el('audio', {
      controls: '', preload: 'none', src: playable.url, 'data-format': playable.format,
      'aria-label': `Play ${upload.file} (${playable.format.toUpperCase()})`,
    }));
  }
  if (typeof analysis.peaks !== 'string' || !analysis.peaks) return;
  fetch(analysis.peaks)
    .then((response) => (response.ok ? response.json() : null))
    .then((json) => {
      const pairs = parsePeaks(json);
      if (!pairs) return;
      const canvas = el('canvas', {
        class: 'waveform', tabindex: '0', role: 'button',
        'aria-label': `Waveform of ${upload.file}: click or press Enter to play from there`,
      });
      box.prepend(canvas);
      drawWaveform(canvas, pairs);
      canvas.addEventListener('click', (e) => {
        const rect = canvas.getBoundingClientRect();
        seek(li, upload, (e.clientX - rect.left) / rect.width);
      });
      let at = 0;
      canvas.addEventListener('keydown', (e) => {
        if (e.key === 'ArrowRight') at = Math.min(1, at + 0.05);
        else if (e.key === 'ArrowLeft') at = Math.max(0, at - 0.05);
        else if (e.key === 'Home') at = 0;
        else if (e.key !== 'Enter' && e.key !== ' ') return;
        e.preventDefault();
        seek(li, upload, at);
      });
    })
    .catch(() => {
      // No waveform: the words and the player still stand.
    });
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
  if (upload.analysis) showAnalysis(li, upload);
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

// ------------------------------------------------------------------ output choices

/** The formats the API knows, with the bitrates a lossy one takes (kbit/s) and its default. */
const FORMATS = [
  { format: 'wav', label: 'WAV' },
  { format: 'flac', label: 'FLAC' },
  { format: 'aac', label: 'AAC (m4a)', rates: [64, 96, 128, 160, 192, 256, 320], min: 32, max: 320, rate: 256 },
  { format: 'mp3', label: 'MP3', rates: [64, 96, 128, 160, 192, 256, 320], min: 32, max: 320, rate: 192 },
  { format: 'opus', label: 'Opus (Ogg)', rates: [32, 48, 64, 96, 128, 160, 256], min: 16, max: 256, rate: 96 },
];
const LOUDNESS = ['', 'podcast', 'broadcast'];
const CHOICES_KEY = 'transcoder.choices.v1';
const DEFAULT_CHOICES = {
  outputs: [{ format: 'wav' }, { format: 'flac' }, { format: 'aac', bitrate_kbps: 256 }], loudness: '',
};

/** Stored choices, checked; anything unreadable or out of bounds gives the defaults. */
function validChoices(value) {
  if (!value || typeof value !== 'object' || !Array.isArray(value.outputs)) return null;
  if (!LOUDNESS.includes(value.loudness)) return null;
  const outputs = [];
  for (const output of value.outputs) {
    const known = FORMATS.find((f) => output && f.format === output.format);
    if (!known || outputs.some((o) => o.format === known.format)) return null;
    if (known.rates) {
      const rate = output.bitrate_kbps;
      if (!Number.isInteger(rate) || rate < known.min || rate > known.max) return null;
      outputs.push({ format: known.format, bitrate_kbps: rate });
    } else outputs.push({ format: known.format });
  }
  return outputs.length ? { outputs, loudness: value.loudness } : null;
}

function storedChoices() {
  try {
    return validChoices(JSON.parse(localStorage.getItem(CHOICES_KEY))) || DEFAULT_CHOICES;
  } catch {
    return DEFAULT_CHOICES;
  }
}

function readChoices() {
  const outputs = [];
  for (const f of FORMATS) {
    if (!$(`format-${f.format}`).checked) continue;
    outputs.push(f.rates ? { format: f.format, bitrate_kbps: Number($(`rate-${f.format}`).value) }
      : { format: f.format });
  }
  return { outputs, loudness: $('loudness').value };
}

/** The POST /uploads fields for a choice: nothing chosen leaves the deployment's defaults. */
function choicesBody(choices) {
  const body = {};
  if (choices.outputs.length) body.outputs = choices.outputs;
  if (choices.loudness) body.loudness = choices.loudness;
  return body;
}

function saveChoices() {
  const choices = validChoices(readChoices());
  try {
    if (choices) localStorage.setItem(CHOICES_KEY, JSON.stringify(choices));
  } catch {
    // Storage full or refused: the choice still holds for this visit.
  }
}

function wireChoices() {
  const box = document.querySelector('#choices .formats');
  const choices = storedChoices();
  for (const f of FORMATS) {
    const chosen = choices.outputs.find((o) => o.format === f.format);
    const row = el('div', { class: 'format' });
    const check = el('input', { type: 'checkbox', id: `format-${f.format}`, name: 'format', value: f.format });
    check.checked = Boolean(chosen);
    row.append(check, el('label', { for: `format-${f.format}`, text: f.label }));
    if (f.rates) {
      const select = el('select', { id: `rate-${f.format}`, 'aria-label': `${f.label} bitrate` });
      const rates = [...new Set([...f.rates, f.rate, chosen ? chosen.bitrate_kbps : f.rate])].sort((a, b) => a - b);
      for (const rate of rates) select.append(el('option', { value: String(rate), text: `${rate} kbit/s` }));
      select.value = String(chosen ? chosen.bitrate_kbps : f.rate);
      row.append(select);
    }
    box.append(row);
  }
  $('loudness').value = choices.loudness;
  $('choices').addEventListener('change', saveChoices);
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
    // Every header the link is signed for, but Content-Length, which only the browser may set.
    for (const [name, value] of Object.entries(link.headers || {})) {
      if (name.toLowerCase() !== 'content-length') request.setRequestHeader(name, value);
    }
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
      link = await api('POST', '/uploads', {
        filename: file.name, size: file.size, content_type: type, ...choicesBody(readChoices()),
      });
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
  wireChoices();
  wireDropZone();
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && signedIn()) refresh();
  });
  if (signedIn()) await enterApp();
  else showSignIn();
}

start();
