// Who is signed in, and how the API is told: locally a user name sent as `X-User`, in the
// stack Cognito's tokens, kept for this tab and refreshed before they expire. The password goes
// to Cognito's own endpoint, never to this app's functions.

import { ShownError } from './alerts.js';

const USER_KEY = 'audio-transcoder.user';
const TOKENS_KEY = 'audio-transcoder.tokens';

/** `/config.json`: how this host signs in (`sign_in`: local or cognito); null until loaded. */
export let config = null;

export async function loadConfig() {
  const response = await fetch('/config.json');
  if (!response.ok) throw new Error(`it answered ${response.status}`);
  config = await response.json();
}

export function signedIn() {
  return config && (config.sign_in === 'local' ? !!localStorage.getItem(USER_KEY) : !!tokens());
}

function tokens() {
  try {
    return JSON.parse(sessionStorage.getItem(TOKENS_KEY) || 'null');
  } catch {
    return null;
  }
}

function jwtClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch {
    return {};
  }
}

/** One call to Cognito's user pool API; its own message on failure. */
export async function cognito(action, body) {
  let response;
  try {
    response = await fetch(config.endpoint, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/x-amz-json-1.1',
        'X-Amz-Target': `AWSCognitoIdentityProviderService.${action}`,
      },
      body: JSON.stringify(body),
    });
  } catch (e) {
    throw new ShownError(`Amazon Cognito could not be reached (${e.message}).`);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ShownError(data.message || `Amazon Cognito answered ${response.status}.`,
      response.status, (data.__type || '').split('#').pop());
  }
  return data;
}

export function keepTokens(result, refreshToken) {
  const kept = {
    access: result.AccessToken,
    id: result.IdToken,
    refresh: result.RefreshToken || refreshToken,
    expires: Date.now() + (result.ExpiresIn || 3600) * 1000,
  };
  sessionStorage.setItem(TOKENS_KEY, JSON.stringify(kept));
  return kept;
}

async function freshTokens() {
  const kept = tokens();
  if (!kept) return null;
  if (Date.now() < kept.expires - 60000) return kept;
  const answer = await cognito('InitiateAuth', {
    AuthFlow: 'REFRESH_TOKEN_AUTH',
    ClientId: config.client_id,
    AuthParameters: { REFRESH_TOKEN: kept.refresh },
  });
  return keepTokens(answer.AuthenticationResult, kept.refresh);
}

/** The headers that name the caller to the API. */
export async function authHeaders() {
  if (config.sign_in === 'local') return { 'X-User': localStorage.getItem(USER_KEY) || '' };
  const kept = await freshTokens().catch(() => null);
  return kept ? { Authorization: `Bearer ${kept.access}` } : {};
}

export function userName() {
  if (config.sign_in === 'local') return localStorage.getItem(USER_KEY) || '';
  const claims = jwtClaims((tokens() || {}).id || '');
  return claims.email || claims['cognito:username'] || 'you';
}

/** Signs in locally: the name is all there is. */
export function rememberUser(name) {
  localStorage.setItem(USER_KEY, name);
}

/** Forgets the user name or the tokens; Cognito is asked to revoke them, without waiting. */
export function forgetSession() {
  if (config.sign_in === 'local') {
    localStorage.removeItem(USER_KEY);
  } else {
    const kept = tokens();
    sessionStorage.removeItem(TOKENS_KEY);
    if (kept) {
      cognito('RevokeToken', { Token: kept.refresh, ClientId: config.client_id }).catch(() => {});
    }
  }
}

let signOut = () => {};

/** What the page does when the API no longer knows the caller: app.js signs out. */
export function whenSignedOut(handler) {
  signOut = handler;
}

/** True when the error means the caller is not signed in (any more): the page says so. */
export function handleSignedOut(e) {
  if (e.status !== 401) return false;
  signOut(config.sign_in === 'local'
    ? `The API refused the user name: ${e.message}`
    : 'Your session has ended: sign in again.');
  return true;
}
