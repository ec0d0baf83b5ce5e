#!/usr/bin/env node
// Drives the `vodpipe serve` console in Debian's Chromium (playwright-core), as a person
// would, and prints one JSON report on stdout.
//
//   node console.mjs --url http://127.0.0.1:PORT/ --source NAME
//                    [--play] [--screenshots DIR] [--timeout-secs N] [--rate R]
//
// 1. the jobs table lists NAME; waits until its row is PUBLISHED (or FAILED);
// 2. the state filters show and hide it;
// 3. its row opens the job page: timeline phases, one Gantt row and one table row per item;
// 4. with --play, each player (hls.js, then shaka) is chosen with the toggle, the lowest
//    rendition and the first subtitle track are picked with the console's own selectors,
//    and the asset is played to the end;
// 5. with --screenshots, the table and the job page are saved as PNG.
// Exit: 0 when the report was written (the caller judges it), 2 on a setup error.

import path from 'node:path';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.VODPIPE_CHROMIUM || '/usr/bin/chromium';

function fail(msg) {
  process.stderr.write(`console.mjs: ${msg}\n`);
  process.stdout.write(JSON.stringify({ ok: false, error: msg }) + '\n');
  process.exit(2);
}

function args(argv) {
  const o = { url: null, source: null, play: false, screenshots: null, timeoutSecs: 180, rate: 8 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const take = () => { if (i + 1 >= argv.length) fail(`${k} needs a value`); return argv[++i]; };
    switch (k) {
      case '--url': o.url = take(); break;
      case '--source': o.source = take(); break;
      case '--play': o.play = true; break;
      case '--screenshots': o.screenshots = take(); break;
      case '--timeout-secs': o.timeoutSecs = Number(take()); break;
      case '--rate': o.rate = Number(take()); break;
      default: fail(`unknown argument ${JSON.stringify(k)}`);
    }
  }
  if (!o.url || !o.source) fail('--url and --source are required');
  return o;
}

const opts = args(process.argv.slice(2));
let chromium;
try {
  chromium = createRequire(path.join(HERE, 'package.json'))('playwright-core').chromium;
} catch (e) {
  fail(`playwright-core is missing: run tests/player/install.sh (${e.message.split('\n')[0]})`);
}

const deadline = Date.now() + opts.timeoutSecs * 1000;
const left = () => Math.max(1000, deadline - Date.now());
// The failure's own fields first, so a truncated log still shows them.
const report = { ok: false, step: 'start', error: null, video_at_error: null, console_errors: [] };
// Whatever hangs (a promise a player never settles), the report is written at the deadline.
const watchdog = setTimeout(() => {
  report.error = `timed out after ${opts.timeoutSecs} s at step ${report.step}`;
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  process.exit(1);
}, opts.timeoutSecs * 1000 + 15000);

// How long a playing player may go without reaching the end before it counts as stuck.
const STUCK_SECS = 60;

// One playback through the console's own controls: the toggle, the lowest rendition (before
// the player has buffered the short clip whole, so the switch shows), the first subtitle
// track, then play from 0 at --rate to the end. Fills `r`; returns 'ended', 'error' or
// 'stuck'.
async function playOnce(page, kind, r) {
  await page.click(`#player-toggle button[data-player="${kind}"]`);
  await page.waitForFunction((k) => {
    const p = window.vodpipeConsole.player();
    return p && p.kind === k && (p.ready || p.error);
  }, kind, { timeout: left() });
  Object.assign(r, await page.evaluate(() => window.vodpipeConsole.player()));
  if (r.error) return 'error';
  const options = await page.locator('#rendition option').count();
  await page.selectOption('#rendition', String(options - 2));
  if (r.subtitles.length) await page.selectOption('#subtitles', '0');
  r.thumbnails = await page.locator('#thumbs .thumb').count();
  const t0 = Date.now();
  await page.evaluate((rate) => {
    const v = document.querySelector('#video');
    v.currentTime = 0;
    v.playbackRate = rate;
    v.play().catch(() => {});
  }, opts.rate);
  try {
    await page.waitForFunction(() => {
      const v = document.querySelector('#video');
      return v.ended || (Number.isFinite(v.duration) && v.duration > 0 && v.currentTime >= v.duration - 0.3)
        || (window.vodpipeConsole.player() || {}).error;
    }, null, { timeout: Math.min(left(), STUCK_SECS * 1000), polling: 250 });
  } catch (e) {
    if (!String(e && e.message).includes('Timeout') || deadline - Date.now() < 5000) throw e;
    r.stuck = await videoState(page);
    return 'stuck';
  }
  Object.assign(r, await page.evaluate(() => {
    const v = document.querySelector('#video');
    const showing = [...v.textTracks].filter((t) => t.mode === 'showing');
    return {
      ended: v.ended || v.currentTime >= v.duration - 0.3,
      current_time: v.currentTime,
      duration: v.duration,
      video_height: v.videoHeight,
      text_tracks_showing: showing.length,
      cues_seen: showing.reduce((n, t) => n + (t.cues ? t.cues.length : 0), 0),
      error: (window.vodpipeConsole.player() || {}).error,
      state_line: document.querySelector('#player-state').textContent,
    };
  }));
  r.play_secs = (Date.now() - t0) / 1000;
  return r.error ? 'error' : 'ended';
}

// Where the player stands: the element's state, its buffer and the player's own account.
function videoState(page) {
  return page.evaluate(() => {
    const v = document.querySelector('#video');
    if (!v) return null;
    const ranges = [];
    for (let i = 0; i < v.buffered.length; i++) ranges.push([v.buffered.start(i), v.buffered.end(i)]);
    return { current_time: v.currentTime, duration: v.duration, paused: v.paused, ended: v.ended,
      ready_state: v.readyState, network_state: v.networkState, error: v.error && v.error.message,
      buffered: ranges, rate: v.playbackRate, state_line: document.querySelector('#player-state').textContent,
      player: window.vodpipeConsole.debug() };
  });
}

let browser;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, timeout: 60000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required', '--mute-audio'],
  });
} catch (e) {
  fail(`could not launch ${CHROMIUM}: ${e.message.split('\n')[0]}`);
}

try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  page.on('pageerror', (e) => report.console_errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') report.console_errors.push(m.text()); });
  report.http_errors = [];
  report.requests = [];
  page.on('request', (r) => { report.requests.push(`${r.method()} ${r.url().slice(-60)}`); if (report.requests.length > 25) report.requests.shift(); });
  page.on('requestfailed', (r) => { if (report.http_errors.length < 20) report.http_errors.push(`${r.failure() && r.failure().errorText} ${r.method()} ${r.url()}`); });
  page.on('response', (r) => { if (r.status() >= 400 && report.http_errors.length < 20) report.http_errors.push(`${r.status()} ${r.request().method()} ${r.url()}`); });
  await page.goto(opts.url, { timeout: left() });

  report.step = 'table';
  // 1. The table lists the source; wait for a final state.
  const row = () => page.locator('#jobs tr.job', { has: page.locator('td.source', { hasText: opts.source }) }).first();
  await row().waitFor({ timeout: left() });
  await page.waitForFunction((name) => {
    const tr = [...document.querySelectorAll('#jobs tr.job[data-state]')]
      .find((r) => r.querySelector('td.source')?.textContent === name);
    return tr && ['PUBLISHED', 'FAILED'].includes(tr.dataset.state);
  }, opts.source, { timeout: left() });
  report.table_state = await row().getAttribute('data-state');
  report.table_row = (await row().innerText()).split('\t').map((s) => s.trim());
  report.live = await page.locator('#live').innerText();
  if (opts.screenshots) await page.screenshot({ path: path.join(opts.screenshots, 'console-jobs.png') });

  report.step = 'filters';
  // 2. Filters.
  // Each count waits for the filtered table to be drawn (its filter link active).
  const filtered = async (state) => {
    await page.click(`[data-filter="${state}"]`);
    await page.waitForSelector(`a.active[data-filter="${state}"]`, { timeout: left() });
    return await page.locator('#jobs tr.job').filter({ hasText: opts.source }).count() > 0;
  };
  report.shown_in_own_filter = await filtered(report.table_state);
  report.shown_in_other_filter = await filtered(report.table_state === 'FAILED' ? 'PUBLISHED' : 'FAILED');
  await filtered('ALL');

  report.step = 'job page';
  // 3. The job page.
  await row().click();
  await page.waitForSelector('#job-head h1', { timeout: left() });
  await page.waitForSelector('#gantt .row', { timeout: left() });
  report.job = await page.evaluate(() => ({
    title: document.querySelector('#job-head h1').textContent,
    phases: [...document.querySelectorAll('#phases > div')].map((d) => d.className),
    gantt_rows: document.querySelectorAll('#gantt .row').length,
    gantt_spans: document.querySelectorAll('#gantt .span').length,
    items: [...document.querySelectorAll('#items tbody tr')].map((tr) =>
      [...tr.querySelectorAll('td')].map((td) => td.textContent)),
    milestones: [...document.querySelectorAll('.milestones span')].map((s) => s.textContent),
  }));

  // 4. Both players, through the console's own controls.
  if (opts.play) {
    for (const kind of ['hls', 'shaka']) {
      report.step = kind;
      const r = { kind };
      report[kind] = r;
      let outcome = await playOnce(page, kind, r);
      // A player that loads nothing more for a minute with no error (seen once on a loaded
      // machine: hls.js fetched no fragment after the rendition switch) is started again
      // once through the same toggle; the first attempt stays in the report, and a second
      // stall fails the check.
      if (outcome === 'stuck') {
        r.first_attempt = { stuck: r.stuck };
        delete r.stuck;
        r.retried = true;
        outcome = await playOnce(page, kind, r);
      }
      if (outcome === 'stuck') throw new Error(`${kind} made no progress for ${STUCK_SECS} s (twice)`);
    }
    report.step = 'back to hls';
    // Back from shaka to hls.js: the new player plays (shaka's teardown finishes late and
    // must not touch it).
    await page.click('#player-toggle button[data-player="hls"]');
    await page.waitForFunction(() => {
      const p = window.vodpipeConsole.player();
      return p && p.kind === 'hls' && (p.ready || p.error);
    }, null, { timeout: left() });
    await page.evaluate(() => { document.querySelector('#video').play().catch(() => {}); });
    await page.waitForFunction(() => document.querySelector('#video').currentTime > 1
      || (window.vodpipeConsole.player() || {}).error, null, { timeout: left() });
    await page.waitForTimeout(500);
    report.back_to_hls = await page.evaluate(() => ({
      error: (window.vodpipeConsole.player() || {}).error,
      current_time: document.querySelector('#video').currentTime,
      playing: !document.querySelector('#video').paused,
      videos: document.querySelectorAll('video').length,
    }));
    if (opts.screenshots) {
      await page.evaluate(() => { const v = document.querySelector('#video'); v.pause(); v.currentTime = v.duration / 3; });
      await page.waitForTimeout(1000);
    }
  }
  if (opts.screenshots) await page.screenshot({ path: path.join(opts.screenshots, 'console-job.png'), fullPage: true });
  report.ok = true;
} catch (e) {
  report.error = String(e && e.message || e).split('\n')[0];
  // Where the player stood, for the failure message.
  try {
    report.video_at_error = await videoState(browser.contexts()[0].pages()[0]);
  } catch (e2) {
    report.video_at_error = String(e2);
  }
} finally {
  clearTimeout(watchdog);
  await browser.close();
}
process.stdout.write(JSON.stringify(report, null, 2) + '\n');
