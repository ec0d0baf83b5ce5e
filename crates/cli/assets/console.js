// vodpipe console: the live jobs table (#/), one job's page (#/job/ID) with its timeline,
// items and a player (hls.js or shaka-player). Data: /api/events (server-sent snapshots of
// every job), /api/jobs/ID (one job with its items). Everything is rendered with
// textContent: sources and errors are never parsed as HTML.
'use strict';

const STATES = ['QUEUED', 'PROBING', 'ENCODING', 'STITCHING', 'PUBLISHED', 'FAILED'];
let snap = null;          // the last snapshot
let route = null;         // {page: 'jobs', state} | {page: 'job', id}
let detail = null;        // the open job's detail
let detailKey = '';       // the open job's row as last seen, to refetch only on change
let player = null;        // {kind, destroy(), renditions, subtitles, error}
let detailSeq = 0;        // the newest job-detail request; older answers are dropped

// ---- helpers ---------------------------------------------------------------------------

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'style') e.style.cssText = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}

const $ = (sel) => document.querySelector(sel);

// Replaces `node`'s children, leaving out absent ones (null, false).
function put(node, ...kids) {
  node.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
}

function secs(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return '–';
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 120) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 120) return `${m} min ${String(Math.round(s - m * 60)).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

function when(t) {
  if (!t) return '–';
  const d = new Date(t * 1000);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

function usd(x) {
  if (x === null || x === undefined) return '–';
  return x < 0.01 ? `$${x.toFixed(5)}` : `$${x.toFixed(2)}`;
}

function badge(state) { return el('span', { class: `badge ${state}`, text: state }); }

function progressBar(p, done) {
  const pct = Math.max(0, Math.min(1, p || 0)) * 100;
  return el('span', { class: done ? 'bar done' : 'bar', title: `${pct.toFixed(1)} %` },
    el('i', { style: `width:${pct}%` }));
}

// ---- routing and data ------------------------------------------------------------------

function parseRoute() {
  const h = location.hash.replace(/^#/, '') || '/';
  const m = h.match(/^\/job\/(.+)$/);
  if (m) {
    try {
      return { page: 'job', id: decodeURIComponent(m[1]) };
    } catch (e) {
      return { page: 'job', id: m[1] };
    }
  }
  const q = new URLSearchParams(h.split('?')[1] || '');
  const state = (q.get('state') || '').toUpperCase();
  return { page: 'jobs', state: STATES.includes(state) ? state : null };
}

function onRoute() {
  const next = parseRoute();
  const leavingJob = route && route.page === 'job' && (next.page !== 'job' || next.id !== route.id);
  if (leavingJob) stopPlayer();
  route = next;
  detail = null;
  detailKey = '';
  render(true);
}

function connect() {
  const live = $('#live');
  const es = new EventSource('/api/events');
  es.addEventListener('jobs', (e) => {
    snap = JSON.parse(e.data);
    live.className = 'live on';
    live.textContent = 'live';
    render(false);
  });
  es.onerror = () => {
    live.className = 'live off';
    live.textContent = 'reconnecting…';
  };
}

function header() {
  if (!snap) return;
  $('#backend').textContent = snap.backend === 'aws' ? 'AWS' : 'embedded';
  const q = snap.queues || {};
  $('#queues').textContent = 'queues: ' + Object.entries(q).map(([k, v]) => `${k} ${v}`).join(' · ');
  const banner = $('#banner');
  const msgs = [];
  if (snap.error) msgs.push(snap.error);
  if (snap.backend === 'aws' && !snap.playable) {
    msgs.push('No playback base: start `vodpipe serve` with --playback-base (the stack\'s PlaybackBase output) to play assets here.');
  }
  banner.hidden = msgs.length === 0;
  banner.textContent = msgs.join('  ');
}

function render(routeChanged) {
  header();
  if (!route) route = parseRoute();
  if (route.page === 'jobs') renderJobs();
  else renderJob(routeChanged);
}

// ---- the jobs table --------------------------------------------------------------------

function renderJobs() {
  const view = $('#view');
  if (!snap) return;
  const jobs = snap.jobs || [];
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const j of jobs) counts[j.status] = (counts[j.status] || 0) + 1;
  const link = (state, label) => el('a', {
    href: state ? `#/?state=${state}` : '#/',
    class: route.state === state ? 'active' : null,
    'data-filter': state || 'ALL',
  }, label);
  const filters = el('nav', { class: 'filters' },
    link(null, `All ${jobs.length}`),
    STATES.map((s) => link(s, `${s.toLowerCase()} ${counts[s]}`)));
  const shown = route.state ? jobs.filter((j) => j.status === route.state) : jobs;
  const head = el('tr', {}, ['Source', 'State', 'Tier', 'Progress', 'Items', 'Attempts', 'Interrupted',
    'Cost', 'Queue wait', 'Encode', 'Total', 'Created'].map((h, i) =>
    el('th', { class: i >= 4 && i <= 10 ? 'num' : null, text: h })));
  const rows = shown.map((j) => {
    const t = j.timings || {};
    const running = j.milestones && !j.milestones.finished;
    const total = t.total_secs ?? (running && j.milestones ? Date.now() / 1000 - j.milestones.created : null);
    const tr = el('tr', { class: 'job', 'data-job': j.job_id, 'data-state': j.status,
      onclick: () => { location.hash = `#/job/${encodeURIComponent(j.job_id)}`; } },
      el('td', { class: 'source', title: j.source, text: j.name }),
      el('td', {}, badge(j.status)),
      el('td', { text: j.tier }),
      el('td', {}, progressBar(j.progress, j.status === 'PUBLISHED'), ` ${Math.round((j.progress || 0) * 100)} %`),
      el('td', { class: 'num', text: `${j.chunks_done}/${j.chunks_total}` }),
      el('td', { class: 'num', text: j.failures ? `${j.attempts} (${j.failures} failed)` : `${j.attempts}` }),
      el('td', { class: 'num', text: j.interruptions }),
      el('td', { class: 'num', text: usd(j.estimated_cost_usd) }),
      el('td', { class: 'num', text: secs(t.queue_wait_secs) }),
      el('td', { class: 'num', text: secs(t.encode_secs) }),
      el('td', { class: 'num', text: secs(total) }),
      el('td', { text: when(j.milestones && j.milestones.created) }));
    if (j.error) {
      return [tr, el('tr', { class: 'job', 'data-job': j.job_id },
        el('td', { class: 'error', colspan: 12, text: j.error }))];
    }
    return tr;
  }).flat();
  const body = shown.length
    ? el('table', { id: 'jobs' }, el('thead', {}, head), el('tbody', {}, rows))
    : el('p', { class: 'muted', text: jobs.length
      ? 'No job in this state.'
      : 'No jobs yet. Drop a video in the watched folder or ingest bucket, or run `vodpipe run FILE --out DIR`.' });
  const more = snap.total_jobs > jobs.length
    ? el('p', { class: 'muted', text: `The newest ${jobs.length} of ${snap.total_jobs} jobs (vodpipe jobs --json lists them all).` })
    : null;
  put(view, el('h1', { text: 'Jobs' }), filters, body, more);
}

// ---- one job ---------------------------------------------------------------------------

async function renderJob(routeChanged) {
  const view = $('#view');
  const row = snap && (snap.jobs || []).find((j) => j.job_id === route.id);
  const key = row ? JSON.stringify(row) : '';
  if (!routeChanged && detail && key === detailKey) return;
  detailKey = key;
  if (routeChanged) {
    view.replaceChildren(
      el('p', {}, el('a', { href: '#/', text: '← all jobs' })),
      el('div', { id: 'job-head' }, el('p', { class: 'muted', text: 'Loading…' })),
      el('div', { class: 'layout' },
        el('div', {}, el('div', { id: 'job-timeline' }), el('div', { id: 'job-items' })),
        el('div', { id: 'job-player' })));
  }
  const seq = ++detailSeq;
  let res;
  try {
    res = await fetch(`/api/jobs/${encodeURIComponent(route.id)}`);
  } catch (e) {
    $('#job-head').replaceChildren(el('div', { class: 'error-box', text: `Cannot reach the console: ${e}` }));
    return;
  }
  if (res.status === 404) {
    $('#job-head').replaceChildren(el('div', { class: 'error-box', text: `No job ${route.id}.` }));
    return;
  }
  if (!res.ok) {
    $('#job-head').replaceChildren(el('div', { class: 'error-box', text: `${res.status}: ${await res.text()}` }));
    return;
  }
  const d = await res.json();
  if (seq !== detailSeq || route.page !== 'job' || route.id !== d.job_id) return;
  detail = d;
  jobHead(d);
  jobTimeline(d);
  jobItems(d);
  if (!$('#job-player').hasChildNodes()) jobPlayer(d);
}

function jobHead(d) {
  const s = d.settings;
  const settings = s ? `ladder ${s.ladder.value}, ${s.segment_seconds.value} s segments, codecs ${s.codecs.value.join(', ')}` : '–';
  const facts = [
    ['Job', d.job_id], ['Source', d.source], ['Tier', s ? `${d.tier} (from ${s.tier.from})` : d.tier],
    ['Settings', settings], ['Duration', secs(d.duration_secs)],
    ['Output', `${(d.output_minutes || 0).toFixed(2)} rendition-minutes`],
    ['Attempts', `${d.attempts} (${d.failures} failed, ${d.interruptions} interrupted)`],
    ['Estimated cost', usd(d.estimated_cost_usd)],
    ['Subtitles', (d.subtitles || []).join(', ') || '–'],
    ['Protection', protectionText(d)],
  ];
  put($('#job-head'),
    el('h1', {}, d.name, ' ', badge(d.status)),
    d.error ? el('div', { class: 'error-box', text: d.error }) : null,
    el('dl', { class: 'facts card' }, facts.map(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })])));
}

// What protects the asset (scheme, key IDs, DRM systems), or that nothing does.
function protectionText(d) {
  const p = d.protection;
  if (!p) {
    const asked = d.settings && d.settings.drm;
    return asked ? `${asked.value.scheme} (keys not yet applied)` : 'none (clear)';
  }
  const kids = p.video_kid && p.video_kid === p.audio_kid ? `KID ${p.video_kid}`
    : [p.video_kid && `video KID ${p.video_kid}`, p.audio_kid && `audio KID ${p.audio_kid}`].filter(Boolean).join(', ');
  return `${p.scheme} · ${kids} · ${(p.systems || []).join(', ')}`;
}

function jobTimeline(d) {
  const m = d.milestones || {};
  const end = m.finished || d.now;
  const span = Math.max(0.001, end - m.created);
  const phases = [];
  const phase = (cls, from, to, label) => {
    if (!from) return;
    const w = Math.max(0, ((to || end) - from) / span * 100);
    phases.push(el('div', { class: cls, style: `width:${w}%`, title: `${label}: ${secs((to || end) - from)}` },
      w > 8 ? `${label} ${secs((to || end) - from)}` : ''));
  };
  phase('waiting', m.created, m.started || m.stitching || m.finished, 'probe + queue');
  phase('encoding', m.started, m.stitching || m.finished, 'encoding');
  phase('stitching', m.stitching, m.finished, 'stitch + publish');
  const stones = [['created', m.created], ['queued', m.queued], ['first lease', m.started],
    ['stitching', m.stitching], [d.status === 'FAILED' ? 'failed' : 'published', m.finished]];
  const items = d.items || [];
  const shown = items.slice(0, 300);
  const gantt = el('div', { class: 'gantt', id: 'gantt' }, shown.map((it) => {
    const from = it.leased_at;
    const to = it.done_at || (it.state === 'running' ? d.now : null);
    const track = el('div', { class: 'track' });
    if (from && to) {
      const left = Math.max(0, (from - m.created) / span * 100);
      const width = Math.max(0.2, (to - from) / span * 100);
      track.append(el('div', {
        class: `span ${it.kind}${it.state === 'running' ? ' running' : ''}`,
        style: `left:${left}%;width:${Math.min(width, 100 - left)}%`,
        title: `${it.name}: ${it.worker || '?'}, attempt ${it.attempts}, ${secs(to - from)}`,
      }));
    }
    return el('div', { class: 'row', 'data-item': it.name }, el('div', { class: 'label', text: it.name }), track);
  }));
  put($('#job-timeline'),
    el('h2', { text: 'Timeline' }),
    el('div', { class: 'card' },
      el('div', { class: 'phases', id: 'phases' }, phases),
      el('div', { class: 'milestones' }, stones.filter(([, t]) => t).map(([k, t]) =>
        el('span', { text: `${k} ${k === 'created' ? when(t) : '+' + secs(t - m.created)}` }))),
      items.length ? gantt : null,
      items.length > shown.length ? el('p', { class: 'muted', text: `First ${shown.length} of ${items.length} items.` }) : null));
}

function jobItems(d) {
  const items = d.items || [];
  if (!items.length) { $('#job-items').replaceChildren(); return; }
  const start = (d.milestones || {}).created;
  const head = el('tr', {}, ['Item', 'State', 'Attempts', 'Failed', 'Interrupted', 'Worker', 'Leased', 'Took', 'Frames', 'Last error']
    .map((h, i) => el('th', { class: i >= 2 && i <= 4 || i === 7 || i === 8 ? 'num' : null, text: h })));
  const rows = items.slice(0, 1000).map((it) => el('tr', { 'data-item': it.name },
    el('td', { text: it.name }),
    el('td', { text: it.state }),
    el('td', { class: 'num', text: it.attempts }),
    el('td', { class: 'num', text: it.failures }),
    el('td', { class: 'num', text: it.interruptions }),
    el('td', { text: it.worker || '–' }),
    el('td', { text: it.leased_at && start ? `+${secs(it.leased_at - start)}` : '–' }),
    el('td', { class: 'num', text: it.done_at && it.leased_at ? secs(it.done_at - it.leased_at) : '–' }),
    el('td', { class: 'num', text: it.frames ?? '' }),
    el('td', { class: 'error', text: it.last_error || '' })));
  $('#job-items').replaceChildren(el('h2', { text: `Items (${items.length})` }),
    el('div', { class: 'scroll' }, el('table', { id: 'items' }, el('thead', {}, head), el('tbody', {}, rows))));
}

// ---- the player ------------------------------------------------------------------------

function jobPlayer(d) {
  const box = $('#job-player');
  const urls = d.urls || {};
  if (!urls.hls && !urls.dash) {
    if (d.status === 'PUBLISHED') {
      box.replaceChildren(el('h2', { text: 'Player' }), el('p', { class: 'muted',
        text: 'Published, but this console has no URL to play it from (see the banner).' }));
    }
    return;
  }
  const toggle = el('div', { class: 'toggle', id: 'player-toggle' },
    el('button', { 'data-player': 'hls', text: 'hls.js', disabled: !urls.hls, onclick: () => startPlayer('hls') }),
    el('button', { 'data-player': 'shaka', text: 'shaka', disabled: !urls.dash, onclick: () => startPlayer('shaka') }));
  const video = newVideo(urls);
  const rendition = el('select', { id: 'rendition', onchange: (e) => player && player.pick(e.target.value) });
  const subtitles = el('select', { id: 'subtitles', onchange: (e) => player && player.subtitle(Number(e.target.value)) });
  put(box,
    el('h2', { text: 'Player' }),
    el('div', { class: 'card' },
      el('div', { class: 'controls' }, toggle,
        el('label', {}, 'Rendition ', rendition),
        el('label', {}, 'Subtitles ', subtitles)),
      video,
      el('div', { id: 'player-state', text: '' }),
      el('div', { class: 'thumbs', id: 'thumbs' }),
      el('div', { class: 'links' },
        urls.hls ? el('div', {}, 'HLS: ', el('a', { href: urls.hls, text: new URL(urls.hls, location.href).href })) : null,
        urls.dash ? el('div', {}, 'DASH: ', el('a', { href: urls.dash, text: new URL(urls.dash, location.href).href })) : null)));
  if (urls.thumbnails) loadThumbnails(urls.thumbnails, urls.query);
  startPlayer(urls.hls ? 'hls' : 'shaka');
}

// A fresh <video> for each player: a player being torn down (shaka's destroy finishes
// later) can never touch the element the next one plays in, nor leave its text tracks.
// `u` with the signed query of a private distribution appended, when the asset has one.
function signed(u, query) {
  if (!u || !query) return u;
  return u + (u.includes('?') ? '&' : '?') + query;
}

function newVideo(urls) {
  const video = el('video', { id: 'video', controls: true, muted: true, playsinline: true, preload: 'auto',
    poster: signed(urls.poster, urls.query) || null });
  video.muted = true;
  video.addEventListener('timeupdate', playerState);
  video.addEventListener('ended', playerState);
  return video;
}

function playerState() {
  const v = $('#video');
  const s = $('#player-state');
  if (!v || !s) return;
  const dur = Number.isFinite(v.duration) ? v.duration : 0;
  const state = v.ended ? 'ended' : v.paused ? 'paused' : 'playing';
  s.textContent = `${player ? player.kind : ''} ${state} ${v.currentTime.toFixed(1)} / ${dur.toFixed(1)} s` +
    (player && player.error ? `: ${player.error}` : '');
  s.dataset.state = state;
}

function fillSelect(sel, options, selected) {
  sel.replaceChildren(...options.map(([value, label]) => el('option', { value, text: label })));
  sel.value = String(selected);
}

function stopPlayer() {
  const old = player;
  player = null;
  if (!old) return Promise.resolve();
  try {
    return Promise.resolve(old.destroy()).catch(() => {});
  } catch (e) {
    return Promise.resolve();
  }
}

async function startPlayer(kind) {
  const d = detail;
  const current = $('#video');
  if (!d || !current) return;
  const stopped = stopPlayer();
  const video = newVideo(d.urls || {});
  current.replaceWith(video);
  for (const b of document.querySelectorAll('#player-toggle button')) {
    b.classList.toggle('active', b.dataset.player === kind);
  }
  await stopped;
  if (player !== null || $('#video') !== video) return; // another start came first
  const me = { kind, renditions: [], subtitles: [], error: null, ready: false, destroy() {}, pick() {}, subtitle() {} };
  player = me;
  // A protected asset that signals Clear Key plays with the console's own licence.
  const p = d.protection;
  const licence = p && (p.systems || []).includes('clearkey')
    ? `/api/licence/${encodeURIComponent(d.job_id)}` : null;
  try {
    if (kind === 'hls') await startHls(me, video, d.urls.hls, licence, d.urls.query);
    else await startShaka(me, video, d.urls.dash, licence, d.urls.query);
  } catch (e) {
    me.error = String(e && e.message || e);
  }
  if (player !== me) return;
  fillSelect($('#rendition'), [['auto', 'Auto'], ...me.renditions.map((r, i) => [String(i), r])], 'auto');
  fillSubtitles(me);
  me.ready = true;
  video.dataset.player = kind;
  playerState();
}

function fillSubtitles(me) {
  if (player !== me) return;
  fillSelect($('#subtitles'), [['-1', 'Off'], ...me.subtitles.map((t, i) => [String(i), t])], -1);
}

function startHls(me, video, url, licence, query) {
  if (!window.Hls || !Hls.isSupported()) throw new Error('hls.js cannot play in this browser (no MediaSource)');
  const drm = licence ? { emeEnabled: true, drmSystems: { 'org.w3.clearkey': { licenseUrl: licence } } } : {};
  // A private distribution: every playlist, segment and key request carries the signature.
  const privately = query ? { xhrSetup: (xhr, u) => { if (u !== licence) xhr.open('GET', signed(u, query), true); } } : {};
  const hls = new Hls({ renderTextTracksNatively: true, enableWebVTT: true, ...drm, ...privately });
  me.destroy = () => hls.destroy();
  // A fatal media error (a buffer append the browser refused, as Chromium now and then
  // does with an encrypted init segment) is recovered once, as hls.js advises; a second
  // one is the player's error.
  let recovered = false;
  hls.on(Hls.Events.ERROR, (_, e) => {
    if (!e.fatal) return;
    if (e.type === Hls.ErrorTypes.MEDIA_ERROR && !recovered) {
      recovered = true;
      hls.recoverMediaError();
      return;
    }
    me.error = `${e.type}: ${e.details}`;
    playerState();
  });
  // The player's last steps, for window.vodpipeConsole.debug() when playback stands still.
  const steps = [];
  const step = (name) => (_, e) => {
    const f = (e && e.frag) || {};
    steps.push(`${name} ${f.type || ''} ${f.level ?? (e && e.level) ?? ''} ${f.sn ?? ''} ${(e && e.details) || ''}`.trim());
    if (steps.length > 30) steps.shift();
  };
  for (const name of ['LEVEL_SWITCHING', 'FRAG_LOADING', 'FRAG_LOADED', 'FRAG_BUFFERED', 'BUFFER_FLUSHED', 'ERROR']) {
    hls.on(Hls.Events[name], step(name));
  }
  me.debug = () => ({ current_level: hls.currentLevel, load_level: hls.loadLevel, next_load_level: hls.nextLoadLevel, steps: [...steps] });
  return new Promise((resolve, reject) => {
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      me.levels = hls.levels.map((l, i) => ({ i, h: l.height, bw: l.bitrate }));
      const order = [...me.levels].sort((a, b) => b.h - a.h || b.bw - a.bw);
      me.renditions = order.map((l) => `${l.h}p · ${Math.round(l.bw / 1000)} kb/s`);
      me.pick = (v) => { hls.currentLevel = v === 'auto' ? -1 : order[Number(v)].i; };
      me.subtitle = (i) => { hls.subtitleDisplay = i >= 0; hls.subtitleTrack = i; };
      resolve();
    });
    // hls.js lists subtitle tracks once it has read them, which may be after the ladder.
    hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, (_, e) => {
      me.subtitles = (e.subtitleTracks || []).map((t) => t.lang || t.name);
      if (me.ready) fillSubtitles(me);
    });
    hls.on(Hls.Events.ERROR, (_, e) => { if (e.fatal && me.error) reject(new Error(me.error)); });
    hls.loadSource(url);
    hls.attachMedia(video);
  });
}

async function startShaka(me, video, url, licence, query) {
  if (!window.shaka) throw new Error('shaka-player did not load');
  shaka.polyfill.installAll();
  if (!shaka.Player.isBrowserSupported()) throw new Error('shaka-player cannot play in this browser');
  const p = new shaka.Player();
  me.destroy = () => p.destroy();
  await p.attach(video);
  // A private distribution: every manifest and segment request carries the signature
  // (the licence goes to the console, which needs none).
  if (query) {
    const T = shaka.net.NetworkingEngine.RequestType;
    p.getNetworkingEngine().registerRequestFilter((type, request) => {
      if (type === T.MANIFEST || type === T.SEGMENT) request.uris = request.uris.map((u) => signed(u, query));
    });
  }
  if (licence) p.configure({ drm: { servers: { 'org.w3.clearkey': new URL(licence, location.href).href } } });
  p.addEventListener('error', (e) => { me.error = `shaka error ${e.detail && e.detail.code}`; playerState(); });
  await p.load(url);
  const byHeight = new Map();
  for (const t of p.getVariantTracks()) {
    if (!t.height) continue;
    const seen = byHeight.get(t.height);
    if (!seen || t.bandwidth > seen.bandwidth) byHeight.set(t.height, t);
  }
  const order = [...byHeight.values()].sort((a, b) => b.height - a.height);
  me.renditions = order.map((t) => `${t.height}p · ${Math.round((t.videoBandwidth || t.bandwidth) / 1000)} kb/s`);
  me.pick = (v) => {
    if (v === 'auto') { p.configure({ abr: { enabled: true } }); return; }
    p.configure({ abr: { enabled: false } });
    const want = order[Number(v)];
    const audio = p.getVariantTracks().find((t) => t.active);
    const pick = p.getVariantTracks().find((t) => t.height === want.height &&
      (!audio || t.language === audio.language)) || want;
    // The switch takes effect from the next segment: clearing the buffer mid-fetch
    // (clearBuffer) measured to leave shaka 5.2 with an empty video buffer on a slow origin.
    // Once the whole title is buffered there is no next segment and no fetch to disturb:
    // the buffer is cleared, so the pick shows.
    const got = (p.getBufferedInfo().video || []).slice(-1)[0];
    const whole = !!got && Number.isFinite(video.duration) && got.end >= video.duration - 0.5;
    if (!pick.active) p.selectVariantTrack(pick, whole);
  };
  me.debug = () => ({ buffering: p.isBuffering(), buffered: p.getBufferedInfo(), stats: p.getStats(),
    active: p.getVariantTracks().filter((t) => t.active).map((t) => `${t.height}p`) });
  const texts = p.getTextTracks();
  me.subtitles = texts.map((t) => t.language || t.label || `track ${t.id}`);
  // Selecting a track shows it; null hides subtitles (shaka-player 5).
  me.subtitle = (i) => p.selectTextTrack(i < 0 ? null : texts[i]);
  if (texts.some((t) => t.active)) p.selectTextTrack(null);
}

// A URL made safe inside CSS url("…"): quotes, brackets, backslashes and spaces escaped.
function cssUrl(href) {
  return href.replace(/["'()\\\s]/g, (ch) => '%' + ch.charCodeAt(0).toString(16).padStart(2, '0'));
}

async function loadThumbnails(url, query) {
  const box = $('#thumbs');
  let text;
  try {
    const r = await fetch(signed(url, query));
    if (!r.ok) return;
    text = await r.text();
  } catch (e) { return; }
  const base = new URL(url, location.href);
  const cues = [];
  const re = /(\d+:)?(\d+):(\d+\.\d+)\s*-->\s*(?:\d+:)?\d+:\d+\.\d+\s*\n([^\n]+)/g;
  let m;
  while ((m = re.exec(text))) {
    const start = Number((m[1] || '0:').slice(0, -1)) * 3600 + Number(m[2]) * 60 + Number(m[3]);
    const [file, frag] = m[4].trim().split('#xywh=');
    if (!frag) continue;
    const [x, y, w, h] = frag.split(',').map(Number);
    const src = new URL(file, base);
    // Sprites come from where the track came from, nowhere else.
    if (src.origin !== base.origin || ![x, y, w, h].every(Number.isFinite)) continue;
    cues.push({ start, src: signed(src.href, query), x, y, w, h });
  }
  box.replaceChildren(...cues.map((c) => el('div', {
    class: 'thumb', title: `seek to ${secs(c.start)}`,
    style: `width:${c.w}px;height:${c.h}px;background-image:url("${cssUrl(c.src)}");background-position:-${c.x}px -${c.y}px`,
    onclick: () => { $('#video').currentTime = c.start; },
  }, el('span', { text: secs(c.start) }))));
}

// For scripts and tests: what the open player offers.
window.vodpipeConsole = {
  player: () => player && { kind: player.kind, ready: player.ready, error: player.error,
    renditions: player.renditions, subtitles: player.subtitles },
  start: (kind) => startPlayer(kind),
  debug: () => player && player.debug && player.debug(),
};

window.addEventListener('hashchange', onRoute);
onRoute();
connect();
