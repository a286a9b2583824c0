// The player of an upload's outputs, in its message and in its row.

import { el } from './dom.js';

/** The output a browser plays best, in this order; null when none. */
function playableOutput(outputs) {
  for (const format of ['aac', 'mp3', 'opus', 'flac', 'wav']) {
    const output = (outputs || []).find((o) => o.format === format && o.url);
    if (output) return output;
  }
  return null;
}

/** An <audio> for the best of `outputs`, loading nothing until it is played; null when none. */
export function playerFor(outputs, file, attrs = {}) {
  const playable = playableOutput(outputs);
  if (!playable) return null;
  return el('audio', {
    controls: '', preload: 'none', src: playable.url, 'data-format': playable.format, ...attrs,
    'aria-label': `Play ${file} (${playable.format.toUpperCase()})`,
  });
}
