// The web page in a real browser: Debian's chromium, driven by playwright-core, against the
// built local runner (target/debug/transcoder-local) on a loopback port. `make test` runs it
// after `make binaries`; alone: `node --test tests/browser/page.test.mjs`.
//
// Each step leaves a screenshot in target/screenshots/ so that a failure can be looked at.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const ROOT = resolve(import.meta.dirname, '..', '..');
const TARGET = resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target');
const RUNNER = join(TARGET, 'debug', 'transcoder-local');
const SHOTS = join(TARGET, 'screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// Kept small so that a "too large" refusal needs no large file.
const MAX_UPLOAD_BYTES = 1_000_000;

let dir;
let runner;
let base;
let browser;
const logs = [];
const problems = []; // console errors and page errors, from every page

function freePort() {
  return new Promise((done, fail) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
    server.on('error', fail);
  });
}

async function until(what, check, timeoutMs = 60_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; runner log:\n${logs.join('')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function api(user, path) {
  const response = await fetch(`${base}${path}`, { headers: { 'X-User': user } });
  return { status: response.status, body: await response.json() };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'transcoder-browser-'));
  mkdirSync(SHOTS, { recursive: true });
  execFileSync('ffmpeg', ['-y', '-loglevel', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=3',
    '-ac', '2', '-ar', '44100', join(dir, 'song.mp3')]);
  // A short spoken episode, quiet, with pauses: a waveform with something to see.
  execFileSync('espeak-ng', ['-w', join(dir, 'episode.wav'), '-g', '12',
    'Welcome to the show. Today, loudness. And then, a pause. Thank you for listening.']);
  execFileSync('ffmpeg', ['-y', '-loglevel', 'error', '-i', join(dir, 'episode.wav'), '-af', 'volume=-12dB',
    '-c:a', 'libmp3lame', '-b:a', '96k', join(dir, 'episode.mp3')]);
  // Long enough to be copied over while it transcodes.
  execFileSync('ffmpeg', ['-y', '-loglevel', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=900',
    '-ac', '2', '-ar', '44100', join(dir, 'long.mp3')]);
  writeFileSync(join(dir, 'notes.mp3'), 'Dear diary,\nthis is a text file with an audio name.\n');
  writeFileSync(join(dir, 'notes.txt'), 'plain text\n');
  writeFileSync(join(dir, 'huge.wav'), Buffer.alloc(MAX_UPLOAD_BYTES + 1));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  runner = spawn(RUNNER, [], {
    env: {
      ...process.env,
      BUCKET_DIR: join(dir, 'bucket'),
      STORE_PATH: join(dir, 'store.sqlite3'),
      LISTEN_ADDR: `127.0.0.1:${port}`,
      SETTLE_MS: '300',
      MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES),
      RUST_LOG: 'info',
      NO_COLOR: '1',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  runner.stderr.on('data', (chunk) => logs.push(chunk.toString()));
  runner.on('error', (e) => logs.push(`cannot start ${RUNNER}: ${e.message} (run make binaries)\n`));
  await until('the runner to start', () => logs.join('').includes('local pipeline running'));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Playwright gives each launch a new, empty profile (--user-data-dir) of its own.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  runner?.kill('SIGINT');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function openPage(name, options = {}) {
  const context = await browser.newContext({ acceptDownloads: true, ...options });
  const page = await context.newPage();
  page.on('console', (m) => {
    // A refusal the page shows is also logged by the browser as a failed load: not a problem.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource: the server responded')) {
      problems.push(`${name}: console: ${m.text()}`);
    }
  });
  page.on('pageerror', (e) => problems.push(`${name}: ${e.message}`));
  await page.goto(`${base}/`);
  return { context, page };
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Signs in with the keyboard only: the name field has the focus when the page opens. */
async function signIn(page, user) {
  await page.waitForSelector('#user-name:focus');
  await page.keyboard.type(user);
  await page.keyboard.press('Enter');
  await page.waitForSelector('body[data-loaded]');
  assert.equal(await page.textContent('#who-name'), user);
}

function notice(page, file) {
  return page.locator('#notices li.notice', { hasText: `${file} ` });
}

test('a podcaster chooses mp3 and opus at podcast loudness, sees the waveform and seeks by it', async (t) => {
  const { context, page } = await openPage('carol');
  await signIn(page, 'carol');

  await t.test('the choices are made, and survive a reload', async () => {
    for (const format of ['wav', 'flac', 'aac']) await page.uncheck(`#format-${format}`);
    await page.check('#format-mp3');
    await page.selectOption('#rate-mp3', '128');
    await page.check('#format-opus');
    await page.selectOption('#loudness', 'podcast');
    await page.reload();
    await page.waitForSelector('body[data-loaded]');
    assert.ok(await page.isChecked('#format-mp3'));
    assert.ok(await page.isChecked('#format-opus'));
    assert.ok(!(await page.isChecked('#format-wav')));
    assert.equal(await page.inputValue('#rate-mp3'), '128');
    assert.equal(await page.inputValue('#loudness'), 'podcast');
    await shot(page, '20-choices');
  });

  await t.test('bad stored choices give the defaults', async () => {
    const other = await openPage('carol-bad-storage');
    await other.page.evaluate(() => localStorage.setItem('transcoder.choices.v1', '{"outputs":[{"format":"mp3","bitrate_kbps":9999}],"loudness":"x"}'));
    await other.page.reload();
    await signIn(other.page, 'carol');
    assert.ok(await other.page.isChecked('#format-wav'));
    assert.ok(!(await other.page.isChecked('#format-mp3')));
    assert.equal(await other.page.inputValue('#loudness'), '');
    await other.context.close();
  });

  await t.test('the upload gets exactly mp3 and opus', async () => {
    await page.setInputFiles('#files', join(dir, 'episode.mp3'));
    await page.waitForSelector('#uploads li[data-key="media/carol/episode.mp3"][data-state="completed"]',
      { timeout: 90_000 });
    await notice(page, 'episode.mp3').waitFor({ timeout: 90_000 });
    const formats = await notice(page, 'episode.mp3').locator('.downloads a').allTextContents();
    assert.deepEqual(formats, ['MP3', 'OPUS']);
    assert.match(await notice(page, 'episode.mp3').textContent(), /episode\.mp3 is ready as MP3, OPUS/);
  });

  await t.test('each download starts with its format\'s magic', async () => {
    for (const [label, check] of [
      ['MP3', (b) => b.subarray(0, 3).toString() === 'ID3' || (b[0] === 0xff && (b[1] & 0xe0) === 0xe0)],
      ['OPUS', (b) => b.subarray(0, 4).toString() === 'OggS'],
    ]) {
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.click(`a[aria-label="Download episode.mp3 as ${label}"]`),
      ]);
      const got = readFileSync(await download.path());
      assert.ok(check(got), `${label} begins ${got.subarray(0, 4).toString('hex')}`);
    }
  });

  const row = page.locator('#uploads li[data-key="media/carol/episode.mp3"]');
  await t.test('its duration and loudness in words', async () => {
    const words = await row.locator('.loudness').textContent({ timeout: 30_000 });
    assert.match(words, /^\d+(\.\d)? s · (-?\d+\.\d LUFS, peaks at -?\d+\.\d dBTP|silent)/);
  });

  await t.test('the waveform is drawn, and a click on it seeks the player', async () => {
    const canvas = row.locator('canvas.waveform');
    await canvas.waitFor({ timeout: 30_000 });
    const inked = await canvas.evaluate((c) => {
      const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n += 1;
      return n;
    });
    assert.ok(inked > 100, `${inked} pixels drawn`);
    await shot(page, '21-waveform');
    const box = await canvas.boundingBox();
    // Scrolled into view first: the row may be below the fold.
    await canvas.click({ position: { x: box.width * 0.6, y: box.height / 2 } });
    // The upload's player: in its row where GET /uploads links its outputs, else in its message.
    const audio = (await row.locator('audio').count()) ? row.locator('audio')
      : notice(page, 'episode.mp3').locator('audio');
    await until('the player to seek', () => audio.evaluate((a) => !a.seeking && a.currentTime > 1), 10_000)
      .catch(async (e) => {
        const state = await audio.evaluate((a) => JSON.stringify({ src: a.src, ready: a.readyState, net: a.networkState, error: a.error && a.error.message, t: a.currentTime, d: a.duration }));
        throw new Error(`${state}\n${e.message.slice(0, 300)}`);
      });
    await shot(page, '22-seeked');
  });
  await context.close();
});

test('the page as a new user meets it', async (t) => {
  const { context, page } = await openPage('alice');
  const headers = (await page.request.get(`${base}/`)).headers();
  assert.match(headers['content-security-policy'], /script-src 'self';/);
  assert.doesNotMatch(headers['content-security-policy'], /unsafe/);
  assert.equal(headers['x-content-type-options'], 'nosniff');
  await page.waitForSelector('#local-form:not([hidden])');
  assert.match(await page.textContent('#mode-note'), /no authentication/);
  await shot(page, '01-sign-in');
  await signIn(page, 'alice');
  await shot(page, '02-signed-in');

  await t.test('an mp3 goes up with a progress bar and is transcoded', async () => {
    await page.setInputFiles('#files', join(dir, 'song.mp3'));
    await page.waitForSelector('#sending li[data-file="song.mp3"][data-state="sent"]');
    assert.equal(await page.getAttribute('#sending li[data-file="song.mp3"] progress', 'value'), '100');
    await shot(page, '03-sent');
  });

  await t.test('the upload\'s state reaches completed', async () => {
    const listed = await api('alice', '/uploads');
    assert.equal(listed.status, 200, `the runner answers GET /uploads with ${JSON.stringify(listed)}`);
    await page.waitForSelector('#uploads li[data-key="media/alice/song.mp3"][data-state="completed"]',
      { timeout: 90_000 });
    await shot(page, '04-upload-completed');
  });

  await t.test('the message appears, with its links and a player', async () => {
    await notice(page, 'song.mp3').waitFor({ timeout: 90_000 });
    const formats = await notice(page, 'song.mp3').locator('.downloads a').allTextContents();
    assert.deepEqual(formats, ['WAV', 'FLAC', 'AAC']);
    assert.equal(await notice(page, 'song.mp3').locator('audio[controls]').count(), 1);
    await page.waitForSelector('#sending li[data-file="song.mp3"][data-state="completed"]');
    await shot(page, '05-notice');
  });

  await t.test('the player can seek: its file is served in byte ranges', async () => {
    const audio = notice(page, 'song.mp3').locator('audio[controls]');
    await audio.evaluate((a) => { a.preload = 'metadata'; a.load(); });
    // Chromium reports [0, 0] for a file served without ranges, the duration with them.
    const end = await until('the player to know what it can seek to', () => audio.evaluate((a) => (
      a.readyState >= 1 && a.seekable.length > 0 ? a.seekable.end(a.seekable.length - 1) : 0)));
    assert.ok(end > 2, `seekable to ${end} s of a 3 s song`);
    await audio.evaluate((a) => { a.currentTime = 2; });
    await until('the player to seek', () => audio.evaluate((a) => !a.seeking && a.currentTime >= 1.9));
  });

  await t.test('another user, in another browser context, sees nothing of it', async () => {
    const bob = await openPage('bob');
    await signIn(bob.page, 'bob');
    assert.equal(await bob.page.locator('#notices li').count(), 0);
    assert.equal(await bob.page.locator('#uploads li').count(), 0);
    assert.ok(await bob.page.isVisible('#no-notices'));
    assert.deepEqual((await api('bob', '/messages')).body.messages, []);
    await shot(bob.page, '06-bob-sees-nothing');
    await bob.context.close();
  });

  await t.test('each download is the transcoded file, byte for byte', async () => {
    for (const [label, ext] of [['WAV', 'wav'], ['FLAC', 'flac'], ['AAC', 'm4a']]) {
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.click(`a[aria-label="Download song.mp3 as ${label}"]`),
      ]);
      const got = readFileSync(await download.path());
      const want = readFileSync(join(dir, 'bucket', 'transcoded', 'alice', `song.mp3.${ext}`));
      assert.ok(want.length > 0);
      assert.ok(got.equals(want), `${label}: ${got.length} bytes downloaded, ${want.length} in the bucket`);
      assert.equal(download.suggestedFilename(), `song.mp3.${ext}`);
    }
  });

  await t.test('on a phone-sized screen', async () => {
    const phone = await openPage('alice-phone', { viewport: { width: 390, height: 844 }, isMobile: true });
    await signIn(phone.page, 'alice');
    await notice(phone.page, 'song.mp3').waitFor();
    const width = await phone.page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `the page is ${width} px wide on a 390 px screen`);
    await shot(phone.page, '07-phone');
    await phone.context.close();
  });

  await t.test('dismissed with the keyboard, it stays dismissed after a reload', async () => {
    await notice(page, 'song.mp3').locator('button.dismiss').focus();
    await page.keyboard.press('Enter');
    await notice(page, 'song.mp3').waitFor({ state: 'detached' });
    assert.equal(await page.evaluate(() => document.activeElement.id), 'notices-title');
    await shot(page, '08-dismissed');
    await page.reload();
    await page.waitForSelector('body[data-loaded]');
    assert.equal(await notice(page, 'song.mp3').count(), 0);
    assert.deepEqual((await api('alice', '/messages')).body.messages, []);
    await shot(page, '09-reloaded');
  });

  await t.test('a file dropped on the page whose name is not audio is refused with the API\'s reason', async () => {
    const dropped = await page.evaluateHandle((text) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([text], 'notes.txt', { type: 'text/plain' }));
      return transfer;
    }, readFileSync(join(dir, 'notes.txt'), 'utf8'));
    await page.dispatchEvent('#drop', 'dragover', { dataTransfer: dropped });
    await page.dispatchEvent('#drop', 'drop', { dataTransfer: dropped });
    const row = page.locator('#sending li[data-file="notes.txt"][data-state="refused"]');
    await row.waitFor();
    assert.match(await row.textContent(), /the file is not audio \(accepted extensions: mp3/);
    await shot(page, '10-refused-name');
  });

  await t.test('a file over the upload limit is refused with the limit', async () => {
    await page.setInputFiles('#files', join(dir, 'huge.wav'));
    const row = page.locator('#sending li[data-file="huge.wav"][data-state="refused"]');
    await row.waitFor();
    assert.match(await row.textContent(), new RegExp(`uploads are limited to ${MAX_UPLOAD_BYTES} bytes`));
    await shot(page, '11-refused-size');
  });

  await t.test('a text file named .mp3 is refused by its bytes', async () => {
    await page.setInputFiles('#files', join(dir, 'notes.mp3'));
    await page.waitForSelector('#sending li[data-file="notes.mp3"][data-state="sent"]');
    const failed = notice(page, 'notes.mp3');
    await failed.waitFor({ timeout: 60_000 });
    assert.match(await failed.textContent(), /not an audio file/);
    assert.equal(await failed.locator('.downloads a').count(), 0);
    await page.waitForSelector('#sending li[data-file="notes.mp3"][data-state="failed"]');
    await shot(page, '12-refused-bytes');
  });

  await t.test('the text file shows as rejected, with the reason', async () => {
    const row = page.locator('#uploads li[data-key="media/alice/notes.mp3"][data-state="rejected"]');
    await row.waitFor({ timeout: 60_000 });
    assert.match(await row.textContent(), /not an audio file/);
    await shot(page, '13-upload-rejected');
  });

  await t.test('a file copied over itself while it transcodes shows as replaced, with no progress bar', async () => {
    const key = 'media/alice/long.mp3';
    const target = join(dir, 'bucket', key);
    copyFileSync(join(dir, 'long.mp3'), target);
    await page.waitForSelector(`#uploads li[data-key="${key}"][data-state="transcoding"]`, { timeout: 60_000 });
    copyFileSync(join(dir, 'long.mp3'), target);
    const replaced = page.locator(`#uploads li[data-key="${key}"][data-state="superseded"]`);
    await replaced.waitFor({ timeout: 60_000 });
    assert.equal(await replaced.locator('.state').textContent(), 'Replaced');
    assert.match(await replaced.locator('.reason').textContent(), /replaced by a newer upload of the same file/);
    assert.ok(await replaced.locator('progress').isHidden(), 'a replaced upload has no progress bar');
    await shot(page, '14-upload-superseded');
  });

  await context.close();
  assert.deepEqual(problems, [], 'the page logged errors (a CSP violation, a script error)');
});
