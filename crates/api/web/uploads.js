// "Your uploads": each upload's state as GET /uploads tells it, with a progress bar while it
// transcodes and, once analysed, its loudness, a player and its waveform. An API without the
// route leaves the section hidden: the messages still say what became of each file.

import { $, el } from './dom.js';
import { announce } from './alerts.js';
import { PAGE_LIMIT, api } from './api.js';
import { describeAnalysis } from './analysis.js';
import { playerFor } from './player.js';
import { settle } from './sent.js';
import { showWaveform } from './waveform.js';

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

let uploadsRoute = null; // unknown until GET /uploads answers; false if this API has none
const uploadRows = new Map(); // upload id -> {li, state}

/** True once GET /uploads has answered: a sent file's state is then under "Your uploads". */
export function uploadsListed() {
  return uploadsRoute;
}

/** True while an upload listed waits to be transcoded or is transcoding. */
export function anyInProgress() {
  return [...uploadRows.values()].some((row) => IN_PROGRESS.has(row.state));
}

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

/** Fills the row's analysis once: the words at once, the waveform when its peaks arrive. */
function showAnalysis(li, upload) {
  const box = li.querySelector('.analysis');
  const analysis = upload.analysis;
  if (!analysis || typeof analysis !== 'object' || box.dataset.shown) return;
  box.dataset.shown = 'yes';
  box.hidden = false;
  box.append(el('p', { class: 'loudness', text: describeAnalysis(analysis) }));
  const player = playerFor(upload.outputs, upload.file);
  if (player) box.append(player);
  if (typeof analysis.peaks !== 'string' || !analysis.peaks) return;
  showWaveform(box, li, upload);
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

export async function loadUploads() {
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
    if (!IN_PROGRESS.has(upload.state)) settle(upload.key, upload.state);
    if (list.children[index] !== row.li) list.insertBefore(row.li, list.children[index] || null);
  });
  for (const [id, row] of uploadRows) {
    if (!seen.has(id)) {
      row.li.remove();
      uploadRows.delete(id);
    }
  }
  showIfNoUploads();
}

/** "Nothing uploaded yet." while there is nothing. */
export function showIfNoUploads() {
  $('no-uploads').hidden = uploadRows.size > 0;
}

export function forgetUploads() {
  $('uploads').replaceChildren();
  uploadRows.clear();
}
