// Calls to the API on this page's own origin, as the signed-in caller.

import { ShownError } from './alerts.js';
import { authHeaders } from './session.js';

export const PAGE_LIMIT = 100;

/** One call to the API on this origin: its JSON, or its own error message. */
export async function api(method, path, body) {
  const headers = await authHeaders();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ShownError(`the server could not be reached (${e.message})`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    // Our errors are {"error": {code, message}}; API Gateway's own are {"message"}.
    const error = (data && data.error) || {};
    const message = error.message || (data && data.message) || `the server answered ${response.status}`;
    throw new ShownError(message, response.status, error.code || '');
  }
  return data;
}

/** Every page of a list, up to `pages` pages. */
export async function listAll(path, field, pages) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < pages; i += 1) {
    const query = new URLSearchParams({ limit: String(PAGE_LIMIT) });
    if (cursor) query.set('cursor', cursor);
    const page = await api('GET', `${path}?${query}`);
    items.push(...page[field]);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return items;
}
