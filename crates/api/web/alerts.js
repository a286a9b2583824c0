// What the page tells its user outside the lists: the alert box, and the status line that a
// screen reader reads out.

import { $ } from './dom.js';

/** An error the page shows as it is: the API's, the bucket's or Cognito's own message. */
export class ShownError extends Error {
  constructor(message, status = 0, code = '') {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function announce(text) {
  // Emptied first, so that the same words twice are announced twice.
  const status = $('status');
  status.textContent = '';
  setTimeout(() => { status.textContent = text; }, 50);
}

let alertFrom = null;

/** Shows the alert; `from` names who raised it, so that only they clear it. */
export function showAlert(text, from = 'action') {
  const box = $('alert');
  box.textContent = text;
  box.hidden = false;
  alertFrom = from;
}

/** Clears the alert: any alert, or only the one `from` raised. */
export function clearAlert(from) {
  if (from === undefined || alertFrom === from) {
    $('alert').hidden = true;
    $('alert').textContent = '';
    alertFrom = null;
  }
}
