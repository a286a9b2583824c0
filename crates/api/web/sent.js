// The files this visit sends, until what became of them is known: how many are on their way to
// the bucket, which are sent and awaited, and their rows in "Files being sent" once settled.

import { $ } from './dom.js';

const AWAIT_LIMIT_MS = 30 * 60 * 1000; // a sent file no longer speeds polling up after this

const awaiting = new Map(); // upload key -> when it was sent
let sendingCount = 0;

export function sendingStarted() {
  sendingCount += 1;
}

export function sendingEnded() {
  sendingCount -= 1;
}

/** The file under `key` is in the bucket: its outcome is awaited. */
export function awaitOutcome(key) {
  awaiting.set(key, Date.now());
}

/** True while a file is being sent, or a sent one (not too long ago) awaits its outcome. */
export function onTheirWay() {
  const now = Date.now();
  for (const [key, since] of awaiting) {
    if (now - since > AWAIT_LIMIT_MS) awaiting.delete(key);
  }
  return sendingCount > 0 || awaiting.size > 0;
}

/** The upload under `key` has its outcome: its row says so, if it was awaited. */
export function settle(key, outcome) {
  if (awaiting.delete(key)) settleRow(key, outcome);
}

/** A message about `file` has come: each awaited upload of that name is settled. */
export function settleFile(file, outcome) {
  for (const [key] of awaiting) {
    if (key.endsWith(`/${file}`)) {
      awaiting.delete(key);
      settleRow(key, outcome);
    }
  }
}

export function forgetSent() {
  $('sending').replaceChildren();
  awaiting.clear();
}

/** A sent file's row, once its outcome is known: what became of it. */
function settleRow(key, outcome) {
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
