// Keeping the lists current: messages and uploads are loaded again every 2 s while something
// moves, every 15 s otherwise, and every minute while the tab is not shown.

import { clearAlert, showAlert } from './alerts.js';
import { loadMessages } from './messages.js';
import { onTheirWay } from './sent.js';
import { handleSignedOut, signedIn } from './session.js';
import { anyInProgress, loadUploads } from './uploads.js';

const FAST_POLL_MS = 2000; // while something is uploading or transcoding
const SLOW_POLL_MS = 15000; // otherwise
const HIDDEN_POLL_MS = 60000; // while the tab is not shown

let pollTimer = null;
let refreshing = null;

function busy() {
  return onTheirWay() || anyInProgress();
}

/** Loads messages and uploads now, then again in 2 s while something moves, 15 s otherwise. */
export function refresh() {
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

/** No more loads until the next `refresh`. */
export function stopPolling() {
  clearTimeout(pollTimer);
}
