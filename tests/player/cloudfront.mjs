#!/usr/bin/env node
// A stand-in for CloudFront in front of a private distribution: what check.mjs's server
// and the console test check every media request with, and, run on its own, a file server
// that serves a directory only to requests signed as CloudFront requires.
//
//   node cloudfront.mjs --root DIR --public-key PEM [--listen 127.0.0.1:0]
//
// Prints one line, {"url": "http://127.0.0.1:PORT"}, then serves DIR under that origin
// (the origin signed policies must name) to signed requests, with CORS for players on
// another origin; 403 AccessDenied with the reason otherwise. GET /_stats answers
// {"checked", "refused", "first_refusal"}. Runs until killed.
// See docs/testing.md ("Playback and the web console").

import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The file under `root` that `rel` names, or null for one outside it.
export function insideRoot(root, rel) {
  const abs = path.resolve(root, '.' + path.sep + rel);
  return abs === root || abs.startsWith(root + path.sep) ? abs : null;
}

// Content types of what players fetch.
export const MIME = {
  '.m3u8': 'application/vnd.apple.mpegurl',
  '.mpd': 'application/dash+xml',
  '.m4s': 'video/iso.segment',
  '.mp4': 'video/mp4',
  '.m4v': 'video/mp4',
  '.m4a': 'audio/mp4',
  '.cmfv': 'video/mp4',
  '.cmfa': 'audio/mp4',
  '.ts': 'video/mp2t',
  '.aac': 'audio/aac',
  '.vtt': 'text/vtt',
  '.webvtt': 'text/vtt',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.json': 'application/json',
  '.xml': 'application/xml',
};

// A Range header against a file of `size` bytes.
export function parseRange(header, size) {
  // Single "bytes=a-b" / "bytes=a-" / "bytes=-n" range. Returns
  // undefined (ignore header, send 200), null (unsatisfiable) or {start,end}.
  const m = /^bytes=(\d*)-(\d*)$/.exec(String(header).trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  let start, end;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return null;
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) return null;
  return { start, end };
}

// CloudFront's base64 (`-`, `_`, `~` for `+`, `=`, `/`) back to bytes.
function cloudfrontB64(s) {
  return Buffer.from(String(s).replace(/-/g, '+').replace(/_/g, '=').replace(/~/g, '/'), 'base64');
}

// What CloudFront checks of a request to a distribution with trusted key groups, written
// from its documentation independently of vodpipe's signer: the policy (a custom one sent
// as Policy, or the canned one rebuilt from the URL and Expires), its signature under the
// public key with the named hash, the time window, and the resource (with * and ?
// wildcards) against the URL the viewer asked for. Returns null when allowed, else why not.
export function cloudfrontRefusal(reqUrl, { key, origin }) {
  const u = new URL(reqUrl, origin);
  const q = u.searchParams;
  const sig = q.get('Signature'), kid = q.get('Key-Pair-Id');
  if (!sig || !kid) return 'unsigned';
  const hash = (q.get('Hash-Algorithm') || 'SHA1').toUpperCase();
  if (hash !== 'SHA1' && hash !== 'SHA256') return `hash ${hash}`;
  for (const k of ['Policy', 'Signature', 'Key-Pair-Id', 'Hash-Algorithm', 'Expires']) q.delete(k);
  const asked = origin + u.pathname + (q.toString() ? '?' + q.toString() : '');
  let policy;
  if (u.searchParams.has('Policy') || reqUrl.includes('Policy=')) {
    policy = cloudfrontB64(new URL(reqUrl, origin).searchParams.get('Policy')).toString('utf8');
  } else {
    const expires = new URL(reqUrl, origin).searchParams.get('Expires');
    if (!expires) return 'no policy and no Expires';
    policy = `{"Statement":[{"Resource":"${asked}","Condition":{"DateLessThan":{"AWS:EpochTime":${expires}}}}]}`;
  }
  const ok = crypto.verify(hash === 'SHA256' ? 'sha256' : 'sha1', Buffer.from(policy, 'utf8'), key, cloudfrontB64(sig));
  if (!ok) return 'bad signature';
  let st;
  try { st = JSON.parse(policy).Statement[0]; } catch { return 'unreadable policy'; }
  const now = Math.floor(Date.now() / 1000);
  const c = st.Condition || {};
  if (!(c.DateLessThan && now < c.DateLessThan['AWS:EpochTime'])) return 'expired';
  if (c.DateGreaterThan && now < c.DateGreaterThan['AWS:EpochTime']) return 'not yet valid';
  const glob = new RegExp('^' + String(st.Resource).replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$');
  if (!glob.test(asked)) return `resource ${st.Resource} does not cover ${asked}`;
  return null;
}

// ---------------------------------------------------------------------------
// Run on its own: the stand-in distribution.
// ---------------------------------------------------------------------------

function serve({ root, key, listen }) {
  const stats = { checked: 0, refused: 0, first_refusal: null };
  const cors = {
    'Access-Control-Allow-Origin': '*',
    'Access-Control-Allow-Headers': 'Range',
    'Access-Control-Expose-Headers': 'Content-Length, Content-Range',
  };
  let origin = null;
  const server = http.createServer((req, res) => {
    const send = (status, body, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { ...cors, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...cors, 'Access-Control-Allow-Methods': 'GET, HEAD' });
      return res.end();
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, origin).pathname);
    } catch {
      return send(400, 'bad url\n');
    }
    if (pathname === '/_stats') return send(200, JSON.stringify(stats), 'application/json');
    stats.checked += 1;
    const why = cloudfrontRefusal(req.url, { key, origin });
    if (why) {
      stats.refused += 1;
      if (!stats.first_refusal) stats.first_refusal = { url: req.url.slice(0, 200), why };
      return send(403, `AccessDenied: ${why}\n`);
    }
    const file = insideRoot(root, pathname.slice(1));
    let st = null;
    try { st = file && fs.statSync(file); } catch { st = null; }
    if (!st || !st.isFile()) return send(404, 'not found\n');
    const headers = {
      ...cors,
      'Content-Type': MIME[path.extname(file).toLowerCase()] || 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      'Cache-Control': 'no-store',
    };
    let status = 200, start = 0, end = st.size - 1;
    if (req.headers.range !== undefined && st.size > 0) {
      const r = parseRange(req.headers.range, st.size);
      if (r === null) {
        res.writeHead(416, { ...cors, 'Content-Range': `bytes */${st.size}` });
        return res.end();
      }
      if (r) { status = 206; ({ start, end } = r); headers['Content-Range'] = `bytes ${start}-${end}/${st.size}`; }
    }
    headers['Content-Length'] = st.size === 0 ? 0 : end - start + 1;
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || st.size === 0) return res.end();
    fs.createReadStream(file, { start, end }).pipe(res);
  });
  const [host, port] = listen.split(':');
  server.listen(Number(port), host, () => {
    origin = `http://${host}:${server.address().port}`;
    process.stdout.write(JSON.stringify({ url: origin }) + '\n');
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const o = { root: null, key: null, listen: '127.0.0.1:0' };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const value = () => { if (i + 1 >= argv.length) { process.stderr.write(`${argv[i]} needs a value\n`); process.exit(2); } return argv[++i]; };
    switch (argv[i]) {
      case '--root': o.root = path.resolve(value()); break;
      case '--public-key': o.key = fs.readFileSync(value(), 'utf8'); break;
      case '--listen': o.listen = value(); break;
      default: process.stderr.write(`unknown argument ${JSON.stringify(argv[i])}\n`); process.exit(2);
    }
  }
  if (!o.root || !o.key) { process.stderr.write('--root and --public-key are required\n'); process.exit(2); }
  serve(o);
}
