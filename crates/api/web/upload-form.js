// The upload form: each file chosen or dropped asks the API for a link, then goes straight to
// the bucket, its row in "Files being sent" showing its progress, or why it was refused.

import { $, el } from './dom.js';
import { ShownError, announce, clearAlert } from './alerts.js';
import { api } from './api.js';
import { choicesBody, readChoices } from './choices.js';
import { refresh } from './polling.js';
import { awaitOutcome, sendingEnded, sendingStarted } from './sent.js';
import { handleSignedOut } from './session.js';
import { uploadsListed } from './uploads.js';

// The type the page announces for each extension the pipeline takes; the API checks that it fits.
const AUDIO_TYPES = {
  mp3: 'audio/mpeg', m4a: 'audio/mp4', aac: 'audio/aac', wav: 'audio/wav',
  flac: 'audio/flac', ogg: 'audio/ogg', oga: 'audio/ogg',
};

function extension(name) {
  const dot = name.lastIndexOf('.');
  return dot < 0 ? '' : name.slice(dot + 1).toLowerCase();
}

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
  sendingStarted();
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
    state.textContent = uploadsListed()
      ? 'Sent: its state is under Your uploads'
      : 'Sent: a message will say when it is transcoded';
    awaitOutcome(link.key);
    announce(`${file.name} is sent.`);
  } finally {
    sendingEnded();
    refresh();
  }
}

function sendAll(files) {
  clearAlert();
  for (const file of files) send(file);
}

export function wireDropZone() {
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
