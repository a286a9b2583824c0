// The audio transcoder's page: sign in, upload audio, watch it transcode, read the messages and
// download the results. Plain JavaScript modules, no library and no build step: the page talks
// to the API on its own origin and sends files straight to the bucket with the links the API
// signs. Everything the API or the bucket says goes to the page as text (never as HTML).
//
// This module starts the page and moves it between signed out and signed in; each of the
// others does one job (see the imports).

import { $ } from './dom.js';
import { announce, clearAlert, showAlert } from './alerts.js';
import { wireChoices } from './choices.js';
import { forgetMessages, showIfNoMessages } from './messages.js';
import { refresh, stopPolling } from './polling.js';
import { forgetSent } from './sent.js';
import { config, forgetSession, loadConfig, signedIn, userName, whenSignedOut } from './session.js';
import { showSignIn, wireSignIn } from './sign-in.js';
import { wireDropZone } from './upload-form.js';
import { forgetUploads, showIfNoUploads } from './uploads.js';

async function enterApp() {
  clearAlert();
  $('sign-in').hidden = true;
  $('who-name').textContent = userName();
  $('who').hidden = false;
  $('app').hidden = false;
  showIfNoMessages();
  showIfNoUploads();
  await refresh();
  if (signedIn()) {
    $('notices-title').focus();
    announce(`Signed in as ${userName()}.`);
  }
}

/** Signs out, with `why` shown when it was not the user's choice. */
async function signOut(why) {
  stopPolling();
  forgetSession();
  forgetMessages();
  forgetUploads();
  forgetSent();
  showSignIn();
  if (why) showAlert(why);
  else clearAlert();
  announce('Signed out.');
}

async function start() {
  try {
    await loadConfig();
  } catch (e) {
    showAlert(`The page cannot start: /config.json could not be read (${e.message}).`);
    return;
  }
  if (config.sign_in === 'local' && config.origin && window.location.origin !== config.origin) {
    // The runner's links point at its own address: the page moves there, so they stay same-origin.
    window.location.replace(`${config.origin}/`);
    return;
  }
  wireSignIn(enterApp);
  whenSignedOut(signOut);
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
