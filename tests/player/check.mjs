#!/usr/bin/env node
// Headless playback check for vodpipe output.
//
//   node check.mjs --root DIR [--hls REL_MASTER] [--dash REL_MPD]
//                  [--timeout-secs N] [--rate R] [--stuck-secs N] [--video-codec CODEC]
//                  [--clearkey KID:KEY] [--expect-refusal]
//
// Serves DIR (plus hls.js / shaka-player from node_modules and a generated
// page) on 127.0.0.1, plays each requested stream to the end in Debian's
// Chromium driven by playwright-core, and prints one JSON object on stdout.
// Exit: 0 all requested players passed, 1 a player failed (or timed out),
// 2 usage / setup error (bad args, chromium or node_modules missing, ...).
// See docs/testing.md ("Playback and the web console").

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { MIME, insideRoot, parseRange, cloudfrontRefusal } from './cloudfront.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.VODPIPE_CHROMIUM || '/usr/bin/chromium';
const END_TOLERANCE_S = 0.5;
// hls.js non-fatal ERROR details that mean playback stalled or jumped a hole.
const HLS_STALL_DETAILS = ['bufferStalledError', 'bufferNudgeOnStall', 'bufferSeekOverHole'];
// A 'waiting' event / hls.js bufferStalledError with at least this much media buffered
// contiguously ahead (and no second buffered range) is a decoder underflow (machine too slow
// for --rate), not a content problem: reported as decode_underflows, not a failure. With less
// ahead and still one contiguous range, fetching fell behind the rate: an underrun, a failure
// the report marks (`retry_slower`) so a caller may play again at a lower rate, where a
// machine's load no longer matters but a content fault would recur. A second buffered range
// (a hole) is always a failure.
const STARVE_S = 1.0;

const USAGE = `usage: node check.mjs --root DIR [--hls REL_PATH_TO_MASTER] [--dash REL_PATH_TO_MPD]
                      [--timeout-secs N (default 120, whole run)] [--rate R (default 8, max 16)]
                      [--stuck-secs N (default 15: give up if currentTime does not move)]
                      [--video-codec CODEC (play only the variants of this codec string,
                       e.g. av01.0.04M.08; fails unless that is what played)]
                      [--clearkey KID:KEY (32 hex each: a protected asset's Clear Key; shaka
                       is given it inline, hls.js licenses it from this server's /_licence,
                       which answers with a W3C JSON Web Key set)]
                      [--expect-refusal (pass only if no player plays: a protected asset
                       without its key)]
                      [--cloudfront-public-key PEM (serve /media/ only to requests carrying
                       a CloudFront signature this public key verifies: a custom or canned
                       policy, RSA-SHA256 or -SHA1, not expired, its resource matching
                       --cloudfront-origin + the path; 403 otherwise)]
                      [--cloudfront-origin URL (the distribution as signed resources name it,
                       default http://vodpipe.test)]
                      [--signed-query QUERY (both players append it to every media request:
                       what vodpipe aws sign prints)]
                      [--prefer-range PQ|HLG (ask both players for that HDR range: hls.js
                       videoPreference, shaka preferredVideo hdrLevel; the report lists
                       every variant's range and the one played)]
At least one of --hls / --dash is required. Paths are relative to --root.`;

class SetupError extends Error {}

function setupFail(msg) {
  process.stderr.write(`check.mjs: ${msg}\n`);
  process.stdout.write(JSON.stringify({ ok: false, error: msg }, null, 2) + '\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { root: null, hls: null, dash: null, timeoutSecs: 120, rate: 8, stuckSecs: 15, videoCodec: null, clearkey: null, expectRefusal: false, preferRange: null, cloudfrontKey: null, cloudfrontOrigin: 'http://vodpipe.test', signedQuery: null };
  const num = (name, v, min, max) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new SetupError(`${name} must be a number in [${min}, ${max}], got ${JSON.stringify(v)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    let [k, v] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const take = () => {
      if (v !== undefined) return v;
      if (i + 1 >= argv.length) throw new SetupError(`${k} needs a value`);
      return argv[++i];
    };
    switch (k) {
      case '--root': o.root = take(); break;
      case '--hls': o.hls = take(); break;
      case '--dash': o.dash = take(); break;
      case '--timeout-secs': o.timeoutSecs = num(k, take(), 1, 86400); break;
      case '--rate': o.rate = num(k, take(), 0.25, 16); break;
      case '--stuck-secs': o.stuckSecs = num(k, take(), 1, 86400); break;
      case '--video-codec': o.videoCodec = take(); break;
      case '--clearkey': {
        const m = /^([0-9a-fA-F]{32}):([0-9a-fA-F]{32})$/.exec(take());
        if (!m) throw new SetupError('--clearkey takes KID:KEY, 32 hex digits each');
        o.clearkey = { kid: m[1].toLowerCase(), key: m[2].toLowerCase() };
        break;
      }
      case '--expect-refusal': o.expectRefusal = true; break;
      case '--cloudfront-public-key': o.cloudfrontKey = fs.readFileSync(take(), 'utf8'); break;
      case '--cloudfront-origin': o.cloudfrontOrigin = take().replace(/\/$/, ''); break;
      case '--signed-query': o.signedQuery = take(); break;
      case '--prefer-range': {
        const r = take().toUpperCase();
        if (r !== 'PQ' && r !== 'HLG') throw new SetupError('--prefer-range takes PQ or HLG');
        o.preferRange = r;
        break;
      }
      case '-h': case '--help': process.stdout.write(USAGE + '\n'); process.exit(0);
      default: throw new SetupError(`unknown argument ${JSON.stringify(a)}`);
    }
  }
  if (!o.root) throw new SetupError('--root is required');
  if (!o.hls && !o.dash) throw new SetupError('give --hls and/or --dash');
  return o;
}

// Resolve REL inside ROOT; returns absolute path or null if it escapes ROOT.
// ---------------------------------------------------------------------------
// Static HTTP server
// ---------------------------------------------------------------------------

// base64url of the bytes of a hex string (JSON Web Key encoding).
function hexToB64url(hex) {
  return Buffer.from(hex, 'hex').toString('base64url');
}

function startServer({ root, libs, page, log, clearkey, cloudfront }) {
  const server = http.createServer((req, res) => {
    const send = (status, body, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, 'http://127.0.0.1').pathname);
    } catch {
      log(req, 400);
      return send(400, 'bad url\n');
    }
    // A Clear Key licence server: the W3C request ({"kids": [...]}) answered with a JSON
    // Web Key set holding the asset's key for the key IDs it knows.
    if (req.method === 'POST' && pathname === '/_licence') {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => {
        let kids = [];
        try { kids = JSON.parse(body).kids || []; } catch { /* answered empty */ }
        const keys = clearkey ? kids.filter((k) => k === hexToB64url(clearkey.kid))
          .map((k) => ({ kty: 'oct', kid: k, k: hexToB64url(clearkey.key) })) : [];
        server.licences = (server.licences || 0) + 1;
        log(req, 200);
        send(200, JSON.stringify({ keys, type: 'temporary' }), 'application/json');
      });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') { log(req, 405); return send(405, 'method not allowed\n'); }
    if (pathname === '/' || pathname === '/index.html') { log(req, 200); return send(200, page, MIME['.html']); }
    if (pathname === '/favicon.ico') { res.writeHead(204); return res.end(); }

    let file = null;
    if (pathname.startsWith('/_lib/')) file = libs[pathname.slice('/_lib/'.length)] || null;
    else if (pathname.startsWith('/media/')) {
      if (cloudfront) {
        const why = cloudfrontRefusal(req.url, cloudfront);
        server.signed_checked = (server.signed_checked || 0) + 1;
        if (why) {
          server.signed_refused = (server.signed_refused || 0) + 1;
          if (!server.refusal) server.refusal = { url: req.url.slice(0, 200), why };
          log(req, 403);
          return send(403, `AccessDenied: ${why}\n`);
        }
      }
      file = insideRoot(root, pathname.slice('/media/'.length));
    }
    let st = null;
    try { st = file && fs.statSync(file); } catch { st = null; }
    if (!st || !st.isFile()) { log(req, 404); return send(404, 'not found\n'); }

    const headers = {
      'Content-Type': MIME[path.extname(file).toLowerCase()] || 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'no-store',
      'Last-Modified': st.mtime.toUTCString(),
    };
    let status = 200, start = 0, end = st.size - 1;
    if (req.headers.range !== undefined && st.size > 0) {
      const r = parseRange(req.headers.range, st.size);
      if (r === null) {
        log(req, 416);
        res.writeHead(416, { 'Content-Range': `bytes */${st.size}`, 'Cache-Control': 'no-store' });
        return res.end();
      }
      if (r) { status = 206; ({ start, end } = r); headers['Content-Range'] = `bytes ${start}-${end}/${st.size}`; }
    }
    headers['Content-Length'] = st.size === 0 ? 0 : end - start + 1;
    log(req, status);
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || st.size === 0) return res.end();
    const stream = fs.createReadStream(file, { start, end });
    stream.on('error', () => res.destroy());
    stream.pipe(res);
  });
  server.keepAliveTimeout = 5000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// ---------------------------------------------------------------------------
// Browser-side harness (serialized into the page with Function#toString).
// ---------------------------------------------------------------------------

function pageHarness(HLS_STALL_DETAILS, STARVE_S) {
  const MAX_LISTED = 50;
  let st = null;       // state of the current run
  let video = null;
  let player = null;   // Hls or shaka.Player

  const ranges = (tr) => { const out = []; for (let i = 0; i < tr.length; i++) out.push([+tr.start(i).toFixed(3), +tr.end(i).toFixed(3)]); return out; };
  const bufferAhead = () => {
    const b = video.buffered, t = video.currentTime;
    for (let i = 0; i < b.length; i++) if (b.start(i) <= t + 0.05 && t < b.end(i)) return +(b.end(i) - t).toFixed(3);
    return 0;
  };
  const push = (list, item) => { if (list.length < MAX_LISTED) list.push(item); };
  const num = (x) => (typeof x === 'number' && Number.isFinite(x) ? +x.toFixed(3) : x === Infinity ? 'Infinity' : null);

  // Every cue any text track of the video held at some point (players add and drop
  // cues as segments load), keyed by time and text.
  function collectCues() {
    for (const t of Array.from(video.textTracks || [])) {
      if (!t.cues) continue;
      for (const c of Array.from(t.cues)) {
        const key = `${c.startTime.toFixed(3)}|${c.endTime.toFixed(3)}|${c.text}`;
        if (!st.cues[key]) st.cues[key] = { start: num(c.startTime), end: num(c.endTime), text: c.text };
      }
    }
  }

  function refresh() {
    if (!st || st.frozen) return;
    collectCues();
    st.current_time = num(video.currentTime);
    st.duration = num(video.duration);
    st.paused = video.paused;
    st.ready_state = video.readyState;
    st.playback_rate = video.playbackRate;
    st.buffered = ranges(video.buffered);
    st.buffered_ranges = video.buffered.length;
    if (video.getVideoPlaybackQuality) {
      const q = video.getVideoPlaybackQuality();
      st.quality = { total_video_frames: q.totalVideoFrames, dropped_video_frames: q.droppedVideoFrames, corrupted_video_frames: q.corruptedVideoFrames };
    }
    if (st.kind === 'dash' && player && player.getStats) {
      try {
        const s = player.getStats();
        st.player_stats = { stallsDetected: s.stallsDetected, gapsJumped: s.gapsJumped, manifestGapCount: s.manifestGapCount,
          nonFatalErrorCount: s.nonFatalErrorCount, bufferingTime: num(s.bufferingTime), width: s.width, height: s.height, currentCodecs: s.currentCodecs };
        const active = player.getVariantTracks().find((t) => t.active);
        st.player_stats.range = active ? active.hdr || null : null;
      } catch (e) { /* player destroyed */ }
    }
    if (st.kind === 'hls' && player) {
      const lvl = player.levels && player.levels[player.currentLevel];
      st.player_stats = { levels: player.levels ? player.levels.length : 0, current_level: player.currentLevel,
        width: lvl ? lvl.width : null, height: lvl ? lvl.height : null, codecs: lvl ? [lvl.videoCodec, lvl.audioCodec].filter(Boolean).join(',') : null,
        range: lvl ? lvl.videoRange || null : null };
    }
    st.text_track_modes = Array.from(video.textTracks || []).map((t) => `${t.kind}:${t.language}:${t.mode}:${t.cues ? t.cues.length : 'null'}`);
    if (st.kind === 'hls' && player) {
      // hls.js only takes a subtitle selection once media is attached.
      if (player.subtitleTracks && player.subtitleTracks.length && player.subtitleTrack < 0 && player.media) {
        player.subtitleDisplay = true;
        player.subtitleTrack = 0;
      }
      st.subtitle_track = player.subtitleTrack;
    }
    st.wall_secs = +((performance.now() - st.t_start) / 1000).toFixed(3);
  }

  function finish(reason) {
    if (!st || st.done) return;
    refresh();
    st.done = true;
    st.done_reason = reason;
    st.frozen = true;
    clearInterval(st.timer);
    try { video.pause(); } catch (e) { /* ignore */ }
  }

  // A fragment load hls.js aborted itself (its ABR dropping to a lower level while the load
  // ran) is the player's own decision, not a fault of the stream: kept in the report, not
  // counted against it. A fault of the stream fails the load instead.
  function selfAborted(e) {
    return e.source === 'hls.js' && !e.fatal && e.details === 'aborted';
  }

  function recordError(e, isStall) {
    st.error_count++;
    if (e.fatal) st.fatal_errors++;
    else if (selfAborted(e)) st.self_aborted = (st.self_aborted || 0) + 1;
    else if (!isStall) st.nonfatal_errors++;
    push(st.errors, e);
  }

  function watch() {
    video.addEventListener('playing', () => { st.started = true; });
    video.addEventListener('waiting', () => {
      if (st.started && !st.ended && !st.done) {
        // Starved: nothing (or a hole) right ahead. Otherwise the decoder merely fell behind the
        // playback rate with data buffered ahead: a machine limit, reported but not a failure.
        const ahead = bufferAhead();
        const hole = video.buffered.length > 1;
        const kind = hole ? 'starved' : ahead < STARVE_S ? 'underrun' : 'decode_underflow';
        st.waiting_events++;
        if (kind === 'starved') st.waiting_starved++;
        else if (kind === 'underrun') st.underruns++;
        else st.decode_underflows++;
        push(st.waiting, { at: num(video.currentTime), buffer_ahead: ahead, buffered: ranges(video.buffered), kind });
      }
    });
    video.addEventListener('ended', () => { st.ended = true; finish('ended'); });
    video.addEventListener('error', () => {
      const me = video.error;
      recordError({ source: 'video', fatal: true, code: me ? me.code : null, message: me ? me.message : null });
      finish('video_error');
    });
    // Max number of buffered ranges seen while playing (diagnostic).
    const sample = () => {
      if (!st.done) st.max_buffered_ranges = Math.max(st.max_buffered_ranges, video.buffered.length);
    };
    video.addEventListener('progress', sample);
    video.addEventListener('timeupdate', sample);
    let lastT = -1, lastMove = performance.now();
    st.timer = setInterval(() => {
      if (st.done) return;
      sample();
      const t = video.currentTime;
      if (t !== lastT) { lastT = t; lastMove = performance.now(); }
      else if (performance.now() - lastMove > st.stuck_secs * 1000) finish('stuck');
    }, 250);
  }

  // `u` with the signed query appended (vodpipe aws sign's): every request of a player
  // to a private distribution carries it.
  function withQuery(u, q) {
    return u + (u.includes('?') ? '&' : '?') + q;
  }

  async function startHls(url) {
    const Hls = window.Hls;
    st.player = `hls.js ${Hls.version}`;
    if (!Hls.isSupported()) throw new Error('Hls.isSupported() is false (no MSE / codecs)');
    const drm = st.drm ? { emeEnabled: true, drmSystems: { 'org.w3.clearkey': { licenseUrl: st.drm.licence_url } } } : {};
    const prefer = st.prefer_range ? { videoPreference: { preferHDR: true, allowedVideoRanges: [st.prefer_range] } } : {};
    const signed = st.signed_query ? { xhrSetup: (xhr, u) => { xhr.open('GET', withQuery(u, st.signed_query), true); } } : {};
    const hls = player = new Hls({ backBufferLength: Infinity, maxBufferLength: 60, ...drm, ...prefer, ...signed });
    hls.on(Hls.Events.ERROR, (ev, d) => {
      const e = { source: 'hls.js', fatal: !!d.fatal, type: d.type, details: d.details };
      if (d.reason) e.reason = String(d.reason);
      if (d.error && d.error.message) e.message = String(d.error.message).slice(0, 300);
      if (d.frag) e.frag = { sn: d.frag.sn, start: num(d.frag.start), url: d.frag.url };
      if (d.response && d.response.code) e.http_code = d.response.code;
      if (typeof d.buffer === 'number') e.buffer = num(d.buffer);
      e.at = num(video.currentTime);
      let isStall = !d.fatal && HLS_STALL_DETAILS.includes(d.details);
      if (isStall && d.details === 'bufferStalledError' && typeof d.buffer === 'number' && d.buffer >= STARVE_S && video.buffered.length <= 1) {
        // hls.js saw the playhead stop with plenty of data ahead and no hole: decoder too slow for the rate.
        e.classified = 'decode_underflow';
        st.decode_underflows++;
        push(st.errors, e);
        return;
      }
      if (isStall && d.details === 'bufferStalledError' && video.buffered.length <= 1) {
        // The buffer ran dry with no hole: fetching fell behind the rate (see STARVE_S).
        e.classified = 'underrun';
        st.underruns++;
        push(st.errors, e);
        return;
      }
      recordError(e, isStall);
      if (isStall) { st.stalls++; push(st.stall_events, { details: d.details, at: e.at }); }
      if (d.fatal) finish('fatal_error');
    });
    hls.on(Hls.Events.LEVEL_LOADED, (ev, d) => {
      if (d.details && typeof d.details.totalduration === 'number') st.manifest_duration = num(d.details.totalduration);
    });
    // Subtitles: list what the player found (refresh() shows the first track, so its cues
    // load).
    hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, (ev, d) => {
      const tracks = (d && d.subtitleTracks) || [];
      st.text_tracks = tracks.map((t) => ({ language: t.lang || null, name: t.name || null }));
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      st.variants_listed = hls.levels.map((l) => ({ codec: l.videoCodec || null, range: l.videoRange || null, height: l.height }));
      if (st.video_codec) {
        // Only this codec's variants: the lowest of them, locked (no ABR switch away).
        const want = st.video_codec.toLowerCase();
        const idx = hls.levels.map((l, i) => [l, i]).filter(([l]) => String(l.videoCodec || '').toLowerCase() === want)
          .sort((a, b) => a[0].bitrate - b[0].bitrate).map(([, i]) => i);
        st.codec_levels = idx.length;
        if (!idx.length) { recordError({ source: 'harness', fatal: true, message: `no level with video codec ${st.video_codec}: ${hls.levels.map((l) => l.videoCodec).join(' ')}` }); return finish('no_such_codec'); }
        hls.currentLevel = idx[0];
      }
      video.play().catch((err) => { if (!st.done) { recordError({ source: 'play()', fatal: true, message: String(err) }); finish('play_rejected'); } });
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  }

  async function startDash(url) {
    const shaka = window.shaka;
    st.player = `shaka-player ${shaka.Player.version}`;
    shaka.polyfill.installAll();
    if (!shaka.Player.isBrowserSupported()) throw new Error('shaka.Player.isBrowserSupported() is false');
    const p = player = new shaka.Player();
    await p.attach(video);
    if (st.signed_query) {
      p.getNetworkingEngine().registerRequestFilter((type, request) => { request.uris = request.uris.map((u) => withQuery(u, st.signed_query)); });
    }
    p.configure({ streaming: { bufferingGoal: 60, rebufferingGoal: 2, bufferBehind: 3600 } });
    if (st.drm) p.configure({ drm: { clearKeys: { [st.drm.kid]: st.drm.key } } });
    if (st.video_codec) {
      p.configure({ preferredVideo: [{ label: '', role: '', language: '', codec: st.video_codec, hdrLevel: '', layout: '' }], abr: { enabled: false } });
    }
    if (st.prefer_range) {
      p.configure({ preferredVideo: [{ label: '', role: '', language: '', codec: '', hdrLevel: st.prefer_range, layout: '' }] });
    }
    p.addEventListener('error', (ev) => {
      const d = ev.detail || {};
      const e = { source: 'shaka', fatal: d.severity === 2, severity: d.severity, category: d.category, code: d.code,
        message: (d.message || '').slice(0, 300), data: JSON.stringify(d.data || []).slice(0, 300), at: num(video.currentTime) };
      recordError(e);
      if (e.fatal) finish('fatal_error');
    });
    p.addEventListener('buffering', (ev) => {
      if (ev.buffering && st.started && !st.ended && !st.done) {
        // Buffering with one contiguous range is an underrun (see STARVE_S); with a hole, a stall.
        if (video.buffered.length <= 1) { st.underruns++; push(st.waiting, { at: num(video.currentTime), kind: 'shaka underrun', buffered: ranges(video.buffered) }); }
        else { st.stalls++; push(st.stall_events, { details: 'shaka buffering', at: num(video.currentTime) }); }
      }
    });
    try {
      await p.load(url);
    } catch (d) {
      recordError({ source: 'shaka load()', fatal: true, severity: d.severity, category: d.category, code: d.code, message: String(d.message || d) });
      return finish('load_failed');
    }
    // Subtitles and thumbnails: what the player found; the first text track is shown so
    // its cues load, and the thumbnail at 5 s is looked up as a seek bar would.
    st.variants_listed = p.getVariantTracks().map((t) => ({ codec: t.videoCodec || null, range: t.hdr || null, height: t.height }));
    const texts = p.getTextTracks();
    st.text_tracks = texts.map((t) => ({ language: t.language || null, name: t.label || null }));
    if (texts.length) {
      p.selectTextTrack(texts[0]);
      if (typeof p.setTextTrackVisibility === 'function') p.setTextTrackVisibility(true);
    }
    const images = p.getImageTracks();
    st.image_tracks = images.map((t) => ({ id: t.id, width: t.width, height: t.height, tiles: t.tilesLayout || null }));
    if (images.length) {
      const th = await p.getThumbnails(images[0].id, 5);
      st.thumbnail_at_5s = th ? { uris: th.uris, start: num(th.startTime), duration: num(th.duration), width: th.width, height: th.height, x: th.positionX, y: th.positionY } : null;
    }
    if (st.video_codec) {
      const tracks = p.getVariantTracks().filter((t) => t.videoCodec === st.video_codec).sort((a, b) => a.bandwidth - b.bandwidth);
      st.codec_levels = tracks.length;
      if (!tracks.length) { recordError({ source: 'harness', fatal: true, message: `no variant with video codec ${st.video_codec}: ${p.getVariantTracks().map((t) => t.videoCodec).join(' ')}` }); return finish('no_such_codec'); }
      p.selectVariantTrack(tracks[0], true);
    }
    const sr = p.seekRange();
    st.manifest_duration = num(sr.end);
    await video.play().catch((err) => { if (!st.done) { recordError({ source: 'play()', fatal: true, message: String(err) }); finish('play_rejected'); } });
  }

  window.__vp = {
    codecs() {
      const types = ['video/mp4; codecs="avc1.64001f"', 'video/mp4; codecs="avc1.42E01E"', 'audio/mp4; codecs="mp4a.40.2"',
        'video/mp4; codecs="hvc1.1.6.L93.B0"', 'video/mp4; codecs="av01.0.05M.08"', 'video/webm; codecs="vp9"'];
      const out = {};
      for (const t of types) out[t] = !!(window.MediaSource && MediaSource.isTypeSupported(t));
      return { mse: !!window.MediaSource, types: out, user_agent: navigator.userAgent };
    },
    start(kind, url, rate, stuckSecs, videoCodec, drm, preferRange, signedQuery) {
      video = document.createElement('video');
      video.muted = true;
      video.autoplay = false;
      video.playsInline = true;
      video.defaultPlaybackRate = rate;
      video.playbackRate = rate;
      video.width = 320;
      document.body.appendChild(video);
      st = {
        kind, url, player: null, requested_rate: rate, started: false, ended: false, done: false, done_reason: null, frozen: false,
        current_time: null, duration: null, manifest_duration: null, waiting_events: 0, waiting_starved: 0, decode_underflows: 0, underruns: 0, waiting: [], stalls: 0, stall_events: [],
        error_count: 0, fatal_errors: 0, nonfatal_errors: 0, errors: [], buffered: [], buffered_ranges: null, max_buffered_ranges: 0,
        quality: null, player_stats: null, stuck_secs: stuckSecs, video_codec: videoCodec || null, codec_levels: null,
        text_tracks: [], cues: {}, image_tracks: [], thumbnail_at_5s: null, t_start: performance.now(), wall_secs: 0,
        drm: drm || null, prefer_range: preferRange || null, variants_listed: null, signed_query: signedQuery || null,
      };
      // Players may reset the rate on load; force it back whenever it drifts.
      video.addEventListener('ratechange', () => { if (video.playbackRate !== 0 && video.playbackRate !== rate) video.playbackRate = rate; });
      watch();
      const go = kind === 'hls' ? startHls : startDash;
      go(url).catch((err) => { recordError({ source: 'harness', fatal: true, message: String(err && err.stack || err) }); finish('harness_error'); });
    },
    snapshot() {
      refresh();
      const out = Object.assign({}, st);
      delete out.timer; delete out.frozen; delete out.t_start; delete out.stuck_secs;
      out.cues = Object.values(st.cues).sort((a, b) => a.start - b.start);
      return out;
    },
    async stop() {
      finish('stopped');
      try { if (player) await player.destroy(); } catch (e) { /* ignore */ }
      player = null;
    },
  };
  window.__vp_ready = true;
}

function pageHtml() {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>vodpipe player check</title></head>
<body>
<script src="/_lib/hls.js"></script>
<script src="/_lib/shaka.js"></script>
<script>(${pageHarness.toString()})(${JSON.stringify(HLS_STALL_DETAILS)}, ${STARVE_S});</script>
</body></html>
`;
}

// ---------------------------------------------------------------------------
// Verdict
// ---------------------------------------------------------------------------

function judge(r, httpErrors) {
  const f = [];
  if (r.timed_out) f.push('timed out (overall --timeout-secs reached) before the end of playback');
  if (!r.ended) f.push(`did not reach 'ended' (stopped because: ${r.done_reason || 'timeout'})`);
  if (typeof r.current_time === 'number' && typeof r.duration === 'number') {
    if (Math.abs(r.duration - r.current_time) > END_TOLERANCE_S) f.push(`final currentTime ${r.current_time} is not within ${END_TOLERANCE_S}s of duration ${r.duration}`);
  } else f.push(`no numeric currentTime/duration (${r.current_time}/${r.duration})`);
  if (typeof r.manifest_duration === 'number' && typeof r.current_time === 'number'
      && Math.abs(r.manifest_duration - r.current_time) > END_TOLERANCE_S) {
    f.push(`final currentTime ${r.current_time} is not within ${END_TOLERANCE_S}s of the manifest's duration ${r.manifest_duration}`);
  }
  if (r.fatal_errors > 0) f.push(`${r.fatal_errors} fatal error(s)`);
  if (r.nonfatal_errors > 0) {
    const kinds = new Set(r.errors.filter((e) => !e.fatal && !HLS_STALL_DETAILS.includes(e.details) && !(e.source === 'hls.js' && e.details === 'aborted')).map((e) => e.details || e.code));
    f.push(`${r.nonfatal_errors} non-fatal player error(s): ${[...kinds].join(', ')}`);
  }
  if (r.stalls > 0) f.push(`${r.stalls} stall/gap event(s) (${[...new Set(r.stall_events.map((s) => s.details))].join(', ')})`);
  if (r.dash_gap_stats > 0) f.push(`shaka stats: stallsDetected=${r.player_stats.stallsDetected} gapsJumped=${r.player_stats.gapsJumped}`);
  if (r.waiting_starved > 0) f.push(`${r.waiting_starved} 'waiting' event(s) after playback started with a hole in the buffer`);
  if (r.underruns > 0) f.push(`${r.underruns} underrun(s): the buffer ran dry with no hole (fetching fell behind --rate)`);
  if (r.buffered_ranges !== 1) f.push(`${r.buffered_ranges} buffered range(s) at the end, expected exactly 1: ${JSON.stringify(r.buffered)}`);
  if (httpErrors.length) f.push(`${httpErrors.length} HTTP error response(s), first: ${httpErrors[0].status} ${httpErrors[0].url}`);
  if (r.page_errors && r.page_errors.length) f.push(`${r.page_errors.length} uncaught page error(s)`);
  if (r.video_codec) {
    const s = r.player_stats || {};
    const played = String((r.kind === 'hls' ? s.codecs : s.currentCodecs) || '');
    if (!played.toLowerCase().split(',').includes(r.video_codec.toLowerCase())) f.push(`played codecs ${JSON.stringify(played)}, not the requested video codec ${r.video_codec}`);
  }
  return f;
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

async function main() {
  const tStart = Date.now();
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof SetupError) { process.stderr.write(USAGE + '\n'); setupFail(e.message); }
    throw e;
  }
  const root = path.resolve(opts.root);
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) setupFail(`--root ${root} is not a directory`);
  const wanted = [];
  for (const kind of ['hls', 'dash']) {
    const rel = opts[kind];
    if (!rel) continue;
    const abs = insideRoot(root, rel);
    if (!abs) setupFail(`--${kind} ${rel} is outside --root`);
    if (!fs.existsSync(abs) || !fs.statSync(abs).isFile()) setupFail(`--${kind}: ${abs} does not exist`);
    const relPosix = path.relative(root, abs).split(path.sep).map(encodeURIComponent).join('/');
    wanted.push({ kind, rel, url: `/media/${relPosix}` });
  }

  if (!fs.existsSync(CHROMIUM)) setupFail(`${CHROMIUM} not found: run tests/player/install.sh (installs Debian's chromium and the npm packages)`);
  const require = createRequire(import.meta.url);
  let chromium, libs;
  try {
    ({ chromium } = await import('playwright-core'));
    libs = {
      'hls.js': require.resolve('hls.js/dist/hls.min.js'),
      'shaka.js': path.join(path.dirname(require.resolve('shaka-player/package.json')), 'dist', 'shaka-player.compiled.js'),
    };
    for (const f of Object.values(libs)) fs.accessSync(f);
  } catch (e) {
    setupFail(`npm packages missing in ${HERE}/node_modules (${e.message.split('\n')[0]}): run tests/player/install.sh`);
  }

  const deadline = tStart + opts.timeoutSecs * 1000;
  // Last-resort watchdog: never outlive the timeout by much, whatever hangs.
  const hard = setTimeout(() => {
    process.stderr.write(`check.mjs: hard timeout after ${opts.timeoutSecs + 20}s, aborting\n`);
    process.stdout.write(JSON.stringify({ ok: false, error: 'hard timeout' }) + '\n');
    process.exit(1);
  }, opts.timeoutSecs * 1000 + 20000);
  hard.unref();

  let currentKind = null;
  const httpLog = { hls: { requests: 0, errors: [] }, dash: { requests: 0, errors: [] } };
  const server = await startServer({
    root, libs, page: pageHtml(), clearkey: opts.clearkey,
    cloudfront: opts.cloudfrontKey ? { key: opts.cloudfrontKey, origin: opts.cloudfrontOrigin } : null,
    log: (req, status) => {
      if (!currentKind) return;
      const h = httpLog[currentKind];
      h.requests++;
      if (status >= 400 && h.errors.length < 50) h.errors.push({ status, url: req.url, range: req.headers.range || null });
    },
  });
  const base = `http://127.0.0.1:${server.address().port}`;

  let browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 60000,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required', '--mute-audio'],
    });
  } catch (e) {
    server.close();
    setupFail(`could not launch ${CHROMIUM}: ${e.message.split('\n')[0]} (run tests/player/install.sh?)`);
  }

  const result = { hls: null, dash: null, ok: false };
  let setupError = null;
  try {
    const context = await browser.newContext();
    // Probe the browser once.
    const probe = await context.newPage();
    await probe.goto(base + '/', { timeout: 30000 });
    await probe.waitForFunction(() => window.__vp_ready === true, null, { timeout: 30000 });
    const caps = await probe.evaluate(() => window.__vp.codecs());
    await probe.close();
    result.browser = { version: browser.version(), executable: CHROMIUM, mse: caps.mse, is_type_supported: caps.types, user_agent: caps.user_agent };
    if (!caps.mse) setupError = 'MediaSource is not available in this Chromium';
    else if (!caps.types['video/mp4; codecs="avc1.64001f"'] || !caps.types['audio/mp4; codecs="mp4a.40.2"']) {
      setupError = 'this Chromium cannot play H.264/AAC via MSE (MediaSource.isTypeSupported false); install Debian\'s chromium (with its ffmpeg-based proprietary codecs) via tests/player/install.sh';
    }

    for (const w of (setupError ? [] : wanted)) {
      currentKind = w.kind;
      const page = await context.newPage();
      const pageErrors = [];
      const consoleErrors = [];
      page.on('pageerror', (e) => { if (pageErrors.length < 20) pageErrors.push(String(e.message || e).slice(0, 300)); });
      page.on('console', (m) => { if (m.type() === 'error' && consoleErrors.length < 20) consoleErrors.push(m.text().slice(0, 300)); });
      let r = null;
      let timedOut = false;
      try {
        const left = () => Math.max(1, deadline - Date.now());
        await page.goto(base + '/', { timeout: Math.min(30000, left()) });
        await page.waitForFunction(() => window.__vp_ready === true, null, { timeout: Math.min(30000, left()) });
        const drm = opts.clearkey ? { kid: opts.clearkey.kid, key: opts.clearkey.key, licence_url: base + '/_licence' } : null;
        await page.evaluate(([k, u, rate, stuck, codec, d, pr, sq]) => window.__vp.start(k, u, rate, stuck, codec, d, pr, sq), [w.kind, base + w.url, opts.rate, opts.stuckSecs, opts.videoCodec, drm, opts.preferRange, opts.signedQuery]);
        for (;;) {
          r = await page.evaluate(() => window.__vp.snapshot());
          if (r.done) break;
          if (Date.now() >= deadline) { timedOut = true; break; }
          await new Promise((res) => setTimeout(res, 200));
        }
        await Promise.race([page.evaluate(() => window.__vp.stop()), new Promise((res) => setTimeout(res, 3000))]);
      } catch (e) {
        if (Date.now() >= deadline) timedOut = true;
        pageErrors.push(`harness: ${String(e.message || e).split('\n')[0]}`);
        if (!r) r = { kind: w.kind, url: base + w.url, ended: false, done_reason: 'harness_error', waiting: [], stall_events: [], errors: [], error_count: 0, fatal_errors: 0, nonfatal_errors: 0, stalls: 0, waiting_events: 0, waiting_starved: 0, decode_underflows: 0, underruns: 0 };
      }
      await page.close().catch(() => {});
      r.path = w.rel;
      r.timed_out = timedOut;
      r.page_errors = pageErrors;
      r.console_errors = consoleErrors;
      r.http = httpLog[w.kind];
      r.dash_gap_stats = r.player_stats && w.kind === 'dash' ? (r.player_stats.stallsDetected || 0) + (r.player_stats.gapsJumped || 0) : 0;
      // Refused: no player may play past its first second, nor reach the end.
      const failures = opts.expectRefusal
        ? (r.ended || (typeof r.current_time === 'number' && r.current_time > 1)
          ? [`played to ${r.current_time} s without the key`] : [])
        : judge(r, httpLog[w.kind].errors);
      // Whether underruns are all that failed (see STARVE_S).
      const underrunOnly = failures.length > 0 && judge({ ...r, underruns: 0 }, httpLog[w.kind].errors).length === 0;
      delete r.kind; delete r.done; delete r.dash_gap_stats;
      result[w.kind] = { ok: failures.length === 0, underrun_only: underrunOnly, failures, ...r };
      currentKind = null;
    }
    await context.close().catch(() => {});
  } finally {
    await Promise.race([browser.close().catch(() => {}), new Promise((res) => setTimeout(res, 10000))]);
    server.close();
    server.closeAllConnections?.();
  }
  if (setupError) {
    result.error = setupError;
    process.stderr.write(`check.mjs: ${setupError}\n`);
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    process.exit(2);
  }
  result.ok = wanted.every((w) => result[w.kind] && result[w.kind].ok);
  result.licences = server.licences || 0;
  if (opts.cloudfrontKey) {
    result.cloudfront = { checked: server.signed_checked || 0, refused: server.signed_refused || 0, first_refusal: server.refusal || null };
  }
  result.retry_slower = !result.ok && wanted.every((w) => result[w.kind] && (result[w.kind].ok || result[w.kind].underrun_only));
  result.elapsed_secs = +((Date.now() - tStart) / 1000).toFixed(2);
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  for (const w of wanted) {
    const r = result[w.kind];
    process.stderr.write(`${w.kind}: ${r.ok ? 'OK' : 'FAIL'} ${r.player || ''} ended=${r.ended} t=${r.current_time}/${r.duration} ` +
      `ranges=${r.buffered_ranges} waiting=${r.waiting_events} (starved ${r.waiting_starved}) stalls=${r.stalls} errors=${r.error_count}` +
      (r.decode_underflows ? ` decode_underflows=${r.decode_underflows} (CPU too slow for --rate ${opts.rate}; not a failure)` : '') +
      (r.failures.length ? `\n  - ${r.failures.join('\n  - ')}` : '') + '\n');
  }
  process.exit(result.ok ? 0 : 1);
}

main().catch((e) => {
  process.stderr.write(`check.mjs: internal error: ${e && e.stack || e}\n`);
  process.stdout.write(JSON.stringify({ ok: false, error: `internal error: ${e && e.message || e}` }) + '\n');
  process.exit(2);
});
