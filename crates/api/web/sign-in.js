// The sign-in forms: a user name on one machine, or Cognito's email and password, with the
// challenges this page can answer (a new password, an authenticator's code).

import { $ } from './dom.js';
import { ShownError, announce, showAlert } from './alerts.js';
import { cognito, config, keepTokens, rememberUser } from './session.js';

let pendingChallenge = null; // a Cognito challenge waiting for the user's answer
let onSignedIn = async () => {};

async function signInLocally(event) {
  event.preventDefault();
  const name = $('user-name').value.trim();
  // A header carries printable ASCII only; the API checks the rest.
  if (!/^[\x20-\x7e]{1,128}$/.test(name)) {
    showAlert('Use letters, digits and ASCII punctuation in the user name (at most 128).');
    $('user-name').focus();
    return;
  }
  rememberUser(name);
  await onSignedIn();
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
      await onSignedIn();
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

export function showSignIn() {
  $('app').hidden = true;
  $('who').hidden = true;
  $('sign-in').hidden = false;
  const form = config.sign_in === 'local' ? 'local-form' : 'cognito-form';
  $(form).hidden = false;
  $(config.sign_in === 'local' ? 'user-name' : 'email').focus();
}

/** Wires the forms for this host's way of signing in; `signedIn` runs once the user is. */
export function wireSignIn(signedIn) {
  onSignedIn = signedIn;
  $('mode-note').hidden = config.sign_in !== 'local';
  $('local-form').addEventListener('submit', signInLocally);
  $('cognito-form').addEventListener('submit', signInWithCognito);
}
