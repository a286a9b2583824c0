// What comes out of an upload: the formats (with a lossy one's bitrate) and the loudness,
// remembered on this browser for the next visit.

import { $, el } from './dom.js';

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

export function readChoices() {
  const outputs = [];
  for (const f of FORMATS) {
    if (!$(`format-${f.format}`).checked) continue;
    outputs.push(f.rates ? { format: f.format, bitrate_kbps: Number($(`rate-${f.format}`).value) }
      : { format: f.format });
  }
  return { outputs, loudness: $('loudness').value };
}

/** The POST /uploads fields for a choice: nothing chosen leaves the deployment's defaults. */
export function choicesBody(choices) {
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

export function wireChoices() {
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
