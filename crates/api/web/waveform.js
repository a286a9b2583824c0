// An upload's waveform: drawn on a canvas from its peaks (BBC audiowaveform JSON), and a click
// or a key on it plays the upload from there.

import { el } from './dom.js';

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
  const duration = Number.isFinite(audio && audio.duration) ? audio.duration : upload.analysis.duration_s;
  if (!audio || !Number.isFinite(duration)) return;
  // Before anything is loaded, this is where playback starts once it is; playing (the click is
  // the user's gesture) loads it.
  audio.currentTime = Math.min(Math.max(fraction, 0), 1) * duration;
  audio.play().catch(() => {
    // Refused (no gesture, or a codec this browser lacks): the position is set all the same.
  });
}

/** Fetches the upload's peaks and puts its waveform first in `box`; nothing if they are unfit. */
export function showWaveform(box, li, upload) {
  fetch(upload.analysis.peaks)
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
