// End-to-end test of pubq's live page in a real headless Chromium.
//
//   PUBQ_BIN=target/debug/pubq node --test tests/browser/
//
// Builds nothing: it runs the pubq binary named by PUBQ_BIN (default
// target/debug/pubq, relative to the repository root) with an in-memory store
// on a free loopback port, drives the page with playwright-core and Debian's
// /usr/bin/chromium (env CHROMIUM to use another), and checks the page against
// the server's own HTTP answers. Every wait is bounded. A screenshot goes to
// target/browser-artifacts/live-page.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.resolve(ROOT, process.env.PUBQ_BIN || 'target/debug/pubq');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'target/browser-artifacts');
const STEP_MS = 10_000; // the longest any single wait may take

let server; // the pubq child process
let serverLog = '';
let base; // http://127.0.0.1:PORT
let context; // the browser context (a persistent one, with a fresh profile)
let profile; // its user data dir
let page;

/** Starts `pubq serve --memory` on a free port; resolves to its base URL. */
function startServer() {
  return new Promise((resolve, reject) => {
    if (!existsSync(BIN)) {
      reject(new Error(`no pubq binary at ${BIN}: run cargo build, or set PUBQ_BIN`));
      return;
    }
    server = spawn(BIN, ['serve', '--memory', '--listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
    });
    const timer = setTimeout(() => reject(new Error(`pubq did not say where it listens within ${STEP_MS} ms:\n${serverLog}`)), STEP_MS);
    let out = '';
    server.stdout.on('data', (d) => {
      out += d;
      serverLog += d;
      const m = out.match(/listening on (http:\/\/[0-9.]+:[0-9]+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    server.stderr.on('data', (d) => { serverLog += d; });
    server.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`pubq exited early (code ${code}, signal ${signal}):\n${serverLog}`));
    });
    server.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** One HTTP call to the server; returns {status, body}. */
async function http(method, p, body) {
  const res = await fetch(base + p, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(STEP_MS),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function ok(method, p, body) {
  const r = await http(method, p, body);
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${p} -> ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Polls `fn` until it returns a truthy value, at most `ms`. */
async function eventually(what, fn, ms = STEP_MS) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const stats = async (q) => (await ok('GET', `/v1/queues/${q}`)).stats;
const queueRow = (q) => page.locator(`tr[data-testid="queue-row"][data-queue="${q}"]`);
const queueCell = (q, id) => queueRow(q).locator(`[data-testid="${id}"]`);
const watchCard = (kind, name) => page.locator(`[data-testid="watch"][data-kind="${kind}"][data-name="${name}"]`).first();
const msgRow = (id) => page.locator(`tr[data-testid="msg"][data-msg-id="${id}"]`).first();

before(async () => {
  base = await startServer();
  profile = mkdtempSync(path.join(os.tmpdir(), 'pubq-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    viewport: { width: 1440, height: 1000 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  context.setDefaultTimeout(STEP_MS);
  page = context.pages()[0] || (await context.newPage());
  page.on('pageerror', (e) => console.error('page error:', e.message));
  page.on('console', (m) => {
    // The server's error answers the test asks for show up as failed loads; skip those.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) console.error('page console:', m.text());
  });
  console.log(`chromium ${context.browser()?.version() ?? '?'}, pubq at ${base}`);
});

after(async () => {
  try {
    if (context) await context.close();
  } finally {
    if (server && server.exitCode === null) server.kill('SIGKILL');
    if (profile) rmSync(profile, { recursive: true, force: true });
  }
});

test('the page and its assets are served', { timeout: 30_000 }, async () => {
  for (const [p, type] of [['/', 'text/html'], ['/ui/app.js', 'text/javascript'], ['/ui/style.css', 'text/css']]) {
    const res = await fetch(base + p, { signal: AbortSignal.timeout(STEP_MS) });
    assert.equal(res.status, 200, p);
    assert.match(res.headers.get('content-type'), new RegExp(type), p);
  }
});

test('a queue watched from the page: publish, see it live, ack, depth drops to 0', { timeout: 60_000 }, async () => {
  await ok('PUT', '/v1/topics/orders', {});
  await ok('PUT', '/v1/queues/work-dlq', {});
  await ok('PUT', '/v1/queues/work', { dead_letter: { queue: 'work-dlq', max_receives: 1 } });
  await ok('PUT', '/v1/topics/orders/subscriptions/work', {});

  await page.goto(base + '/', { timeout: STEP_MS });
  await queueRow('work').waitFor();
  await page.locator('[data-testid="http-status"][data-state="ok"]').waitFor();
  // The DLQ is marked as one.
  await queueRow('work-dlq').locator('[data-testid="badge-dlq"]').waitFor();
  assert.equal(await queueRow('work').locator('[data-testid="badge-dlq"]').count(), 0);

  assert.equal(await queueRow('work').locator('td.actions').innerText(), 'watch');
  await queueRow('work').locator('[data-testid="watch-queue"]').click();
  await watchCard('queue', 'work').locator('[data-testid="watch-state"][data-state="live"]').waitFor();

  const { ids: [id] } = await ok('POST', '/v1/topics/orders/publish',
    { body: 'hello from the browser test <b>not bold</b>', attributes: { kind: 'e2e' } });
  const row = msgRow(id);
  await row.waitFor();
  // Inserted as text, not HTML.
  assert.match(await row.locator('[data-testid="msg-body"]').innerText(), /hello from the browser test <b>not bold<\/b>/);
  assert.equal(await row.locator('[data-testid="msg-body"] b').count(), 0);
  assert.match(await row.locator('[data-testid="msg-attrs"]').innerText(), /kind=e2e/);

  // The page's table shows the message in flight before the ack ...
  await eventually('in flight 1 on the page', async () =>
    (await queueCell('work', 'q-in-flight').innerText()) === '1');

  await row.locator('[data-testid="ack"]').click();
  await row.locator('[data-testid="msg-result"]', { hasText: 'acked' }).waitFor();
  assert.equal(await row.getAttribute('data-state'), 'acked');

  // ... and the server and the page agree it is gone.
  const s = await eventually('work empty over HTTP', async () => {
    const st = await stats('work');
    return st.in_flight + st.visible === 0 && st.acked === 1 ? st : null;
  });
  assert.equal(s.received, 1);
  await eventually('visible 0 and in flight 0 on the page', async () =>
    (await queueCell('work', 'q-in-flight').innerText()) === '0' &&
    (await queueCell('work', 'q-visible').innerText()) === '0');
});

test('a nack past max_receives fills the DLQ, and the page shows it', { timeout: 60_000 }, async () => {
  const { ids: [id] } = await ok('POST', '/v1/topics/orders/publish', { body: 'this one fails' });
  const row = msgRow(id);
  await row.waitFor();
  await row.locator('[data-testid="nack"]').click();
  await row.locator('[data-testid="msg-result"]', { hasText: 'nacked' }).waitFor();

  await eventually('the DLQ holds it over HTTP', async () => (await stats('work-dlq')).visible === 1);
  assert.equal((await stats('work')).dead_lettered, 1);
  await eventually('the DLQ shows 1 visible on the page', async () =>
    (await queueCell('work-dlq', 'q-visible').innerText()) === '1');
  await eventually('work shows 1 dead-lettered on the page', async () =>
    (await queueCell('work', 'q-dead-lettered').innerText()) === '1');
});

test('forms: create, subscribe, publish; a topic watch resumes after a reconnect', { timeout: 90_000 }, async () => {
  // A bad name: the server's error shows in the page.
  await page.fill('#topic-name', 'not a name!');
  await page.click('#topic-submit');
  await page.locator('[data-testid="error"][data-code="InvalidName"]').first().waitFor();
  assert.match(await page.locator('#topic-result').innerText(), /InvalidName/);

  await page.fill('#topic-name', 'news');
  await page.click('#topic-submit');
  await page.locator('#topic-result', { hasText: 'news is ready' }).waitFor();

  await page.fill('#queue-name', 'news-archive');
  await page.fill('#queue-dlq', 'news-archive-dlq');
  await page.fill('#queue-max-receives', '2');
  await page.click('#queue-submit');
  await page.locator('#queue-result', { hasText: 'news-archive is ready' }).waitFor();
  const q = await ok('GET', '/v1/queues/news-archive');
  assert.deepEqual(q.settings.dead_letter, { queue: 'news-archive-dlq', max_receives: 2 });

  await page.fill('#sub-topic', 'news');
  await page.fill('#sub-queue', 'news-archive');
  await page.fill('#sub-filter', '{"lang": ["en"]}');
  await page.click('#sub-submit');
  await page.locator('#sub-result', { hasText: 'news-archive now gets news' }).waitFor();
  const t = await ok('GET', '/v1/topics/news');
  assert.deepEqual(t.subscriptions, [{ queue: 'news-archive', filter: { lang: ['en'] } }]);

  // Watch the topic: a temporary queue appears, marked as such.
  await page.locator('tr[data-testid="topic-row"][data-topic="news"] [data-testid="watch-topic"]').click();
  const card = watchCard('topic', 'news');
  await card.locator('[data-testid="watch-state"][data-state="live"]').waitFor();
  const token = (await card.locator('[data-testid="resume-token"]').getAttribute('title')) || '';
  assert.ok(token.length > 0, 'a resume token is shown');
  await page.locator(`tr[data-testid="queue-row"][data-temporary="true"] [data-testid="badge-temp"]`).first().waitFor();

  // Publish from the page's form, with attributes.
  await page.fill('#publish-topic', 'news');
  await page.fill('#publish-body', 'extra, extra');
  await page.fill('#publish-attrs', 'lang=en\nsection = sports');
  await page.click('#publish-submit');
  await page.locator('#publish-result[data-state="ok"]').waitFor();
  const answer = JSON.parse((await page.locator('#publish-result').innerText()).replace(/^[^\n]*\n/, ''));
  const [id1] = answer.ids;
  await card.locator(`tr[data-msg-id="${id1}"]`).waitFor();
  assert.match(await card.locator(`tr[data-msg-id="${id1}"] [data-testid="msg-attrs"]`).innerText(), /section=sports/);
  await card.locator(`tr[data-msg-id="${id1}"] [data-testid="ack"]`).click();
  await card.locator(`tr[data-msg-id="${id1}"] [data-testid="msg-result"]`, { hasText: 'acked' }).waitFor();
  // The filtered subscription got its copy too.
  await eventually('news-archive got its copy', async () => (await stats('news-archive')).visible === 1);

  // Drop the connection; the page reconnects and resumes with its token.
  await page.click('#ws-reconnect');
  await card.locator('[data-testid="resume-count"]', { hasText: 'resumed 1' }).waitFor();
  await card.locator('[data-testid="watch-state"][data-state="live"]').waitFor();
  assert.equal(await card.locator('[data-testid="resume-token"]').getAttribute('title'), token);
  const { ids: [id2] } = await ok('POST', '/v1/topics/news/publish', { body: 'after the reconnect' });
  await card.locator(`tr[data-msg-id="${id2}"]`).waitFor();

  // Leave it unacked for the screenshot; refresh the tables first.
  await page.waitForTimeout(1200);
  await page.evaluate(() => window.scrollTo(0, 0));
  mkdirSync(ARTIFACTS, { recursive: true });
  const shot = path.join(ARTIFACTS, 'live-page.png');
  await page.screenshot({ path: shot, fullPage: true, timeout: STEP_MS });
  console.log(`screenshot: ${path.relative(ROOT, shot)}`);

  // Publish errors show in the page too.
  await page.fill('#publish-topic', 'no-such-topic');
  await page.click('#publish-submit');
  await page.locator('#publish-result[data-state="error"]', { hasText: 'TopicNotFound' }).waitFor();
});
