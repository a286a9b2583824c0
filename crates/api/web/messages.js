// The messages: what became of each upload, with its downloads and a player, until the user
// dismisses it. Messages there at sign-in are shown; new ones are also read out.

import { $, el } from './dom.js';
import { announce, showAlert } from './alerts.js';
import { api, listAll } from './api.js';
import { playerFor } from './player.js';
import { handleSignedOut } from './session.js';
import { settleFile } from './sent.js';

const notices = new Map(); // message id -> <li>
let messagesLoaded = false; // messages there at sign-in are shown, not read out one by one

function baseName(path) {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** The message in a line: the file and what is ready; the links below say where (not storage keys). */
function noticeText(message, file) {
  const formats = message.outputs.map((o) => (o.format || '').toUpperCase()).filter(Boolean).join(', ');
  if (message.state === 'completed' && formats) return `${file} is ready as ${formats}.`;
  if (message.state === 'completed_with_warnings') {
    const warning = /with a warning: (.*?)\. Files:/.exec(message.text || '');
    return `${file} is ready${formats ? ` as ${formats}` : ''}, with a warning: ${warning ? warning[1] : 'see the log'}.`;
  }
  // A failure's reason is the useful part of the API's own text.
  return message.text;
}

function renderNotice(message) {
  const textId = `notice-${notices.size}-${Date.now()}`;
  const file = baseName(message.file);
  const li = el('li', { class: `notice notice-${message.state}`, 'data-id': message.id });
  const article = el('article', { 'aria-labelledby': textId });
  article.append(el('p', { id: textId, text: noticeText(message, file) }));
  const created = new Date(message.created_at);
  if (!Number.isNaN(created.getTime())) {
    article.append(el('p', { class: 'hint' }, el('time', {
      datetime: message.created_at, text: created.toLocaleString(),
    })));
  }
  if (message.outputs.length) {
    const links = el('ul', { class: 'downloads', 'aria-label': `Downloads of ${file}` });
    for (const output of message.outputs) {
      const label = output.format.toUpperCase();
      links.append(el('li', {}, el('a', {
        href: output.url,
        download: baseName(output.key),
        'data-format': output.format,
        'aria-label': `Download ${file} as ${label}`,
        text: label,
      })));
    }
    article.append(links);
    const player = playerFor(message.outputs, file, { 'data-key': message.file });
    if (player) article.append(player);
  }
  const dismiss = el('button', {
    type: 'button', class: 'secondary dismiss', 'aria-label': `Dismiss the message about ${file}`,
    text: 'Dismiss',
  });
  dismiss.addEventListener('click', () => dismissNotice(message.id, file, li, dismiss));
  article.append(dismiss);
  li.append(article);
  return li;
}

/** The links of a shown message, renewed: each link is signed for 15 minutes. */
function renewLinks(li, message) {
  for (const output of message.outputs) {
    const link = li.querySelector(`a[data-format="${CSS.escape(output.format)}"]`);
    if (link) link.href = output.url;
    const audio = li.querySelector('audio');
    // A player in use keeps its source; a fresh one takes the new link.
    if (audio && output.format === audio.dataset.format && audio.paused && audio.currentTime === 0) audio.src = output.url;
  }
}

export async function loadMessages() {
  const messages = await listAll('/messages', 'messages', 5);
  const seen = new Set();
  const list = $('notices');
  messages.forEach((message, index) => {
    seen.add(message.id);
    let li = notices.get(message.id);
    if (li) {
      renewLinks(li, message);
    } else {
      li = renderNotice(message);
      notices.set(message.id, li);
      if (messagesLoaded) announce(message.text);
    }
    if (list.children[index] !== li) list.insertBefore(li, list.children[index] || null);
    settleFile(message.file, message.state);
  });
  for (const [id, li] of notices) {
    if (!seen.has(id)) {
      li.remove();
      notices.delete(id);
    }
  }
  messagesLoaded = true;
  document.body.dataset.loaded = 'true';
  showIfNoMessages();
}

async function dismissNotice(id, file, li, button) {
  button.disabled = true;
  try {
    await api('POST', `/messages/${encodeURIComponent(id)}/dismiss`);
  } catch (e) {
    button.disabled = false;
    if (!handleSignedOut(e)) showAlert(`Could not dismiss the message about ${file}: ${e.message}`);
    return;
  }
  // Focus moves to the next message's button, or the previous one's, or the heading.
  const next = li.nextElementSibling || li.previousElementSibling;
  li.remove();
  notices.delete(id);
  showIfNoMessages();
  (next ? next.querySelector('button.dismiss') : $('notices-title')).focus();
  announce(`The message about ${file} is dismissed.`);
}

/** "No new messages." while there are none. */
export function showIfNoMessages() {
  $('no-notices').hidden = notices.size > 0;
}

export function forgetMessages() {
  $('notices').replaceChildren();
  notices.clear();
  messagesLoaded = false;
  delete document.body.dataset.loaded;
}
