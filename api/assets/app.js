// Tidemark dashboard: polls `status` and `health` once a second, the epochs of each chain
// every 5 s, and follows `v1/stream` through one EventSource. Every URL is relative, so
// the page works behind a path prefix. No dependencies, no build step.
(function () {
  'use strict';

  var POLL_MS = 1000;             // status and health: one request each per second at most
  var EPOCH_MS = 5000;            // every chain's epoch page
  var EPOCH_PAGE_SIZE = 10;
  var EVENTS_PAGE = 50;           // newest events loaded at start
  var MAX_ROWS = 200;             // event rows kept
  var MAX_BUFFER = 10000;         // entries held while paused
  var FETCH_TIMEOUT_MS = 4500;
  var STREAM_BACKOFF_MS = [1000, 2000, 4000, 8000, 15000];

  // ---------------------------------------------------------------- state

  var S = {
    status: null,          // last 200 /status body
    statusPerf: 0,         // performance.now() when it arrived
    statusWall: 0,         // Date.now() when it arrived
    statusProblem: null,   // {kind: 'network'|'unavailable'|'http', ...} of the last attempt
    health: null,          // last /health body (200 or 503)
    healthProblem: null,   // {kind: 'network'|'http', ...} of the last attempt
    unreachableSince: 0,   // Date.now() of the first failure in a row, 0 when reachable
    inflight: { status: false, health: false },
    epochsStarted: false,
  };

  var E = {
    rows: new Map(),       // cursor -> <tr>
    newest: null,          // newest cursor loaded by the first page
    lastCursor: null,      // newest cursor seen (page or stream)
    initialAfter: null,    // the stream's first start: a cursor, '0', or null (head)
    queue: [],             // entries waiting to be drawn
    flushTimer: 0,
    paused: false,
    buffer: [],            // entries received while paused
    bufferedLogs: 0,
    es: null,
    retryTimer: 0,
    failures: 0,           // consecutive streams that ended CLOSED
    refusedWhileFine: 0,   // of which while the API was reachable and healthy
    loaded: false,
    noteTimer: 0,
  };

  var EP = new Map();      // chainId -> {page, pages, total, items, inflight, again, error, panel}

  // ---------------------------------------------------------------- helpers

  var $ = function (id) { return document.getElementById(id); };
  var NF = new Intl.NumberFormat('en-US');

  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }

  function setText(node, text) {
    var t = text === undefined || text === null ? '' : String(text);
    if (node && node.textContent !== t) node.textContent = t;
  }

  function setTitle(node, title) {
    if (!node) return;
    if (title) {
      if (node.getAttribute('title') !== title) node.setAttribute('title', title);
    } else if (node.hasAttribute('title')) {
      node.removeAttribute('title');
    }
  }

  function show(node, visible) {
    if (node) node.classList.toggle('hidden', !visible);
  }

  function isObj(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }
  function isNum(v) { return typeof v === 'number' && isFinite(v); }
  function num(v) {
    if (isNum(v)) return v;
    if (typeof v === 'string' && /^\d+(\.\d+)?$/.test(v)) return Number(v);
    return null;
  }

  function fmtInt(n) { n = num(n); return n === null ? '—' : NF.format(Math.round(n)); }

  function fmtRate(x) {
    if (!isNum(x) || x < 0) return '—';
    if (x === 0) return '0';
    if (x < 10) return x.toFixed(1);
    return NF.format(Math.round(x));
  }

  // 75 -> "1 min 15 s"; coarse past ten minutes.
  function dur(s) {
    if (!isNum(s)) return '—';
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + ' s';
    if (s < 3600) {
      var m = Math.floor(s / 60), r = s % 60;
      return m + ' min' + (r && m < 10 ? ' ' + r + ' s' : '');
    }
    if (s < 86400) {
      var h = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60);
      return h + ' h' + (mm ? ' ' + mm + ' min' : '');
    }
    var d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600);
    return d + ' d' + (hh ? ' ' + hh + ' h' : '');
  }

  function coarse(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min';
    if (s < 86400) return dur(s);
    return dur(s);
  }

  function ago(s) {
    if (!isNum(s)) return '—';
    return s < 1 ? 'just now' : dur(s) + ' ago';
  }

  function msDur(ms) {
    if (!isNum(ms)) return '—';
    ms = Math.max(0, ms);
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 10000) return (ms / 1000).toFixed(2) + ' s';
    if (ms < 60000) return (ms / 1000).toFixed(1) + ' s';
    return dur(ms / 1000);
  }

  function pad2(n) { return (n < 10 ? '0' : '') + n; }
  function clock(d) { return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds()); }

  // "0x1234…abcd" for long hex; other long strings cut in the middle.
  function shorten(s) {
    if (typeof s !== 'string') return String(s);
    if (/^0x[0-9a-fA-F]{10,}$/.test(s)) return s.slice(0, 6) + '…' + s.slice(-4);
    if (s.length > 24) return s.slice(0, 12) + '…' + s.slice(-6);
    return s;
  }

  function shortNode(s, cls, titlePrefix) {
    var text = shorten(s);
    var n = el('span', cls || null, text);
    if (text !== s || titlePrefix) n.title = (titlePrefix || '') + s;
    return n;
  }

  // Cursors are decimal strings that may exceed 2^53: compared as strings.
  function cmpCursor(a, b) {
    a = String(a).replace(/^0+(?=\d)/, '');
    b = String(b).replace(/^0+(?=\d)/, '');
    if (a.length !== b.length) return a.length < b.length ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function isCursor(c) { return typeof c === 'string' && /^\d+$/.test(c); }

  async function getJson(url) {
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, FETCH_TIMEOUT_MS);
    try {
      var res = await fetch(url, { cache: 'no-store', headers: { Accept: 'application/json' }, signal: ctl.signal });
      var body = null;
      try { body = await res.json(); } catch (e) { body = null; }
      return { ok: res.ok, status: res.status, body: body, network: false };
    } catch (e) {
      return { ok: false, status: 0, body: null, network: true, timeout: ctl.signal.aborted };
    } finally {
      clearTimeout(timer);
    }
  }

  function errorCode(body) {
    return isObj(body) && isObj(body.error) && typeof body.error.code === 'string' ? body.error.code : null;
  }

  // The API's error codes (docs/api.md, "Parameters and errors") in words.
  var ERROR_WORDS = {
    database_unavailable: 'the database does not answer',
    query_timeout: 'the query ran past the statement timeout',
    overloaded: 'the API is overloaded',
    request_timeout: 'the request timed out',
    unavailable: 'nothing is cached to serve yet',
    too_many_streams: 'the API serves too many streams',
    cursor_expired: 'the cursor is older than the retained journal',
    internal_error: 'the API failed (see its log)',
    invalid_parameter: 'a parameter was refused',
    not_found: 'not found',
  };

  function errorWords(r) {
    if (r.network) return r.timeout ? 'the API does not answer in time' : 'the API cannot be reached';
    var code = errorCode(r.body);
    return code ? ERROR_WORDS[code] || code : 'HTTP ' + r.status;
  }

  // ---------------------------------------------------------------- status accessors

  function projection() {
    var p = S.status && S.status.realtimeProjection;
    return isObj(p) ? p : null;
  }
  function snapshot() {
    var p = projection();
    return p && isObj(p.snapshot) ? p.snapshot : null;
  }
  function config() {
    return S.status && isObj(S.status.config) ? S.status.config : null;
  }
  function chainsMap() {
    var s = snapshot();
    var o = s && isObj(s.omnichainSnapshot) ? s.omnichainSnapshot : null;
    return o && isObj(o.chains) ? o.chains : {};
  }
  function chainIds() {
    return Object.keys(chainsMap()).sort(function (a, b) { return cmpCursor(a, b); });
  }
  function chainConfig(id) {
    var c = config();
    if (!c || !Array.isArray(c.chains)) return null;
    for (var i = 0; i < c.chains.length; i++) {
      if (isObj(c.chains[i]) && String(c.chains[i].chainId) === String(id)) return c.chains[i];
    }
    return null;
  }

  // "Now" on the server's (database) clock: projectedAt advanced by the time elapsed here.
  function serverNow() {
    var p = projection();
    if (p && isNum(p.projectedAt)) return p.projectedAt + (performance.now() - S.statusPerf) / 1000;
    return Date.now() / 1000;
  }

  // Age of the cached status snapshot, on the server's clock.
  function snapshotAge() {
    var s = snapshot();
    return s && isNum(s.snapshotTime) ? Math.max(0, serverNow() - s.snapshotTime) : null;
  }

  function indexBuild() {
    if (S.status && isObj(S.status.indexBuild)) return S.status.indexBuild;
    var s = snapshot();
    return s && isObj(s.indexBuild) ? s.indexBuild : null;
  }

  function sinks() {
    if (S.status && isObj(S.status.sinks)) return S.status.sinks;
    var s = snapshot();
    return s && isObj(s.sinks) ? s.sinks : null;
  }

  function statusWord(chainStatus) {
    return typeof chainStatus === 'string' ? chainStatus.replace(/^chain-/, '') : 'unknown';
  }

  // ---------------------------------------------------------------- reasons in words

  function describe(code) {
    if (typeof code !== 'string') return String(code);
    var i = code.indexOf(':');
    var base = i < 0 ? code : code.slice(0, i);
    var arg = i < 0 ? '' : code.slice(i + 1);
    var age = snapshotAge();
    switch (base) {
      case 'database-unreachable':
        return age !== null
          ? 'The database does not answer; showing data cached ' + dur(age) + ' ago.'
          : 'The database does not answer; nothing cached to show yet.';
      case 'uninitialized':
        return 'Nothing is indexed yet: the database holds no configuration for this instance (the indexer never ran, or the instance was reset).';
      case 'no-status':
        return 'The indexer stored its configuration but no status yet; it is probably starting.';
      case 'incompatible':
        return "The stored status does not describe the configuration's chains, so it is not served.";
      case 'status-stale':
        return 'No new status ' + (age !== null ? 'for ' + dur(age) : 'for over 30 s') +
          ': the indexer is probably down. Stored data is still served.';
      case 'chain-stalled': {
        var c = chainsMap()[arg];
        var st = isObj(c) && isObj(c.stalled) ? c.stalled : null;
        var since = st && isNum(st.since) ? ' for ' + dur(serverNow() - st.since) : '';
        var err = st && typeof st.lastError === 'string' && st.lastError ? ' Last error: ' + st.lastError : '';
        return 'Chain ' + arg + ' has made no progress' + since + ' although its head moves.' + err;
      }
      case 'indexes-building': {
        var b = indexBuild();
        var detail = '';
        if (b) {
          detail = b.state === 'deferred'
            ? ' (waiting for the first backfill to finish'
            : ' (' + fmtInt(b.built) + ' of ' + fmtInt(b.total) + ' built' +
              (typeof b.current === 'string' && b.current ? ', now ' + b.current : '');
          detail += ')';
        }
        return 'The event indexes are being built' + detail + '; filtered event queries are slower until they are done.';
      }
      case 'backfilling-sources':
        return 'Some sources are still backfilling; their events are not complete yet.';
      case 'rpc-unreachable':
        return 'The RPC endpoint of chain ' + arg + ' does not answer.';
      default:
        return code;
    }
  }

  // ---------------------------------------------------------------- polling

  function noteReachable(ok) {
    if (ok) {
      var was = S.unreachableSince;
      S.unreachableSince = 0;
      if (was) onRecovered();
    } else if (!S.unreachableSince) {
      S.unreachableSince = Date.now();
    }
  }

  async function pollStatus() {
    S.inflight.status = true;
    try {
      var r = await getJson('status');
      if (r.ok && isObj(r.body) && r.body.responseCode === 'ok') {
        S.status = r.body;
        S.statusPerf = performance.now();
        S.statusWall = Date.now();
        S.statusProblem = null;
        noteReachable(true);
        if (!S.epochsStarted) startEpochs();
      } else if (r.network || r.body === null) {
        S.statusProblem = { kind: 'network', status: r.status, timeout: !!r.timeout };
        noteReachable(false);
      } else if (isObj(r.body) && r.body.responseCode === 'error') {
        S.statusProblem = { kind: 'unavailable', reasons: Array.isArray(r.body.reasons) ? r.body.reasons : [] };
        noteReachable(true);
      } else {
        S.statusProblem = { kind: 'http', status: r.status, code: errorCode(r.body) };
        noteReachable(true);
      }
    } finally {
      S.inflight.status = false;
      render();
    }
  }

  async function pollHealth() {
    S.inflight.health = true;
    try {
      var r = await getJson('health');
      if (isObj(r.body) && typeof r.body.status === 'string') {
        S.health = r.body;
        S.healthProblem = null;
        noteReachable(true);
      } else if (r.network || r.body === null) {
        S.healthProblem = { kind: 'network', status: r.status, timeout: !!r.timeout };
        noteReachable(false);
      } else {
        S.healthProblem = { kind: 'http', status: r.status, code: errorCode(r.body) };
      }
    } finally {
      S.inflight.health = false;
      render();
    }
  }

  function tick() {
    // A request still outstanding skips its tick: polls never overlap.
    if (!S.inflight.status) pollStatus();
    if (!S.inflight.health) pollHealth();
    render();
  }

  function onRecovered() {
    // The API answers again, or is healthy again: a stream that gave up reconnects now
    // rather than after its backoff (an open or connecting one resumes by itself).
    if (E.loaded && (!E.es || E.es.readyState === 2) && E.retryTimer) {
      clearTimeout(E.retryTimer);
      E.retryTimer = 0;
      openStream();
    }
    if (!E.loaded && E.retryTimer) {
      clearTimeout(E.retryTimer);
      E.retryTimer = 0;
      loadNewestEvents();
    }
  }

  // ---------------------------------------------------------------- header, banner, notes

  function healthUnhealthy() {
    return !S.healthProblem && S.health && S.health.status !== 'ok';
  }

  function bannerMessages() {
    var msgs = [];
    var unreachable = (S.statusProblem && S.statusProblem.kind === 'network') ||
      (S.healthProblem && S.healthProblem.kind === 'network');
    if (unreachable) {
      var p = S.statusProblem && S.statusProblem.kind === 'network' ? S.statusProblem : S.healthProblem;
      var why = p.timeout ? 'does not answer in time' : p.status ? 'answers with HTTP ' + p.status : 'cannot be reached';
      var m = 'The API ' + why;
      if (S.unreachableSince) m += ' (since ' + clock(new Date(S.unreachableSince)) + ')';
      m += S.status
        ? '; showing the data received ' + ago((Date.now() - S.statusWall) / 1000) + '.'
        : '; nothing received yet.';
      msgs.push({ code: 'api-unreachable', text: m });
      return msgs;
    }
    var reasons = [];
    if (healthUnhealthy() && Array.isArray(S.health.reasons)) reasons = S.health.reasons.slice();
    if (S.statusProblem && S.statusProblem.kind === 'unavailable') {
      S.statusProblem.reasons.forEach(function (r) { if (reasons.indexOf(r) < 0) reasons.push(r); });
    }
    reasons.forEach(function (r) { msgs.push({ code: String(r), text: describe(r) }); });
    if (healthUnhealthy() && !reasons.length) msgs.push({ code: 'unhealthy', text: 'The API reports itself unhealthy.' });
    if (S.statusProblem && S.statusProblem.kind === 'http') {
      var c = S.statusProblem.code;
      var t = 'The status could not be read (' + (c ? ERROR_WORDS[c] || c : 'HTTP ' + S.statusProblem.status) + '); retrying.';
      msgs.push({ code: c || 'http-' + S.statusProblem.status, text: t + (S.status ? ' Showing the last data received.' : '') });
    }
    return msgs;
  }

  var wasDegraded = false;

  function renderBanner() {
    var banner = $('banner');
    var msgs = bannerMessages();
    var degraded = msgs.length > 0;
    if (wasDegraded && !degraded) setTimeout(onRecovered, 0);
    wasDegraded = degraded;
    if (!msgs.length) {
      banner.classList.remove('degraded');
      banner.classList.add('hidden');
      banner.removeAttribute('data-codes');
      banner.removeAttribute('data-text');
      if (banner.firstChild) banner.textContent = '';
      return;
    }
    var key = msgs.map(function (m) { return m.text; }).join('\n');
    if (banner.getAttribute('data-text') !== key) {
      banner.textContent = '';
      banner.appendChild(el('strong', null, 'Degraded: '));
      msgs.forEach(function (m, i) {
        var s = el('span', 'banner-msg', m.text);
        s.setAttribute('data-code', m.code);
        if (i) banner.appendChild(document.createTextNode(' '));
        banner.appendChild(s);
      });
      banner.setAttribute('data-text', key);
    }
    banner.setAttribute('data-codes', msgs.map(function (m) { return m.code; }).join(' '));
    banner.classList.add('degraded');
    banner.classList.remove('hidden');
  }

  function renderHeader() {
    var c = config();
    var snap = snapshot();
    var p = projection();
    var ns = c && typeof c.namespace === 'string' ? c.namespace : null;
    setText($('namespace'), ns !== null ? ns : '…');
    document.title = ns ? 'Tidemark · ' + ns : 'Tidemark';
    setText($('instance-schema'), c && c.instanceSchema ? c.instanceSchema : '—');
    var vi = c && isObj(c.versionInfo) ? c.versionInfo : null;
    var version = '—';
    if (vi) {
      version = (vi.tidemark ? 'Tidemark ' + vi.tidemark : 'Tidemark') +
        (vi.schemaVersion !== undefined && vi.schemaVersion !== null ? ' · schema v' + vi.schemaVersion : '');
    }
    setText($('version'), version);

    var os = $('omnichain-status');
    var o = snap && isObj(snap.omnichainSnapshot) ? snap.omnichainSnapshot.omnichainStatus : null;
    var word = typeof o === 'string' ? o.replace(/^omnichain-/, '') : '—';
    setText(os, word);
    os.className = 'badge status-' + word;

    var dist = $('distance');
    if (p && isNum(p.worstCaseDistance)) {
      // Projected on the server; advanced locally while no new status arrives.
      var d = p.worstCaseDistance + Math.max(0, (performance.now() - S.statusPerf) / 1000 - 1);
      var chains = chainsMap();
      var ids = Object.keys(chains);
      var atHead = ids.length > 0 && ids.every(function (id) {
        var ch = chains[id];
        if (!isObj(ch)) return false;
        if (ch.chainStatus === 'chain-completed') return true;
        return ch.chainStatus === 'chain-following' && isObj(ch.latestIndexedBlock) && isObj(ch.latestKnownBlock) &&
          ch.latestIndexedBlock.number >= ch.latestKnownBlock.number;
      });
      var age = snapshotAge();
      var inSync = d <= 2 || (atHead && age !== null && age <= 5);
      setText(dist, inSync ? 'in sync' : coarse(d) + ' behind');
      dist.className = inSync ? 'ok' : d > 60 ? 'bad' : 'warn';
      setTitle(dist, 'Everything up to ' + coarse(d) + ' ago is indexed on every chain (worstCaseDistance ' +
        Math.round(d) + ' s)');
    } else {
      setText(dist, '—');
      dist.className = '';
      setTitle(dist, null);
    }

    var h = $('health');
    var hw, hc;
    if (S.healthProblem && S.healthProblem.kind === 'network') { hw = 'unreachable'; hc = 'bad'; }
    else if (!S.health) { hw = 'unknown'; hc = ''; }
    else if (S.health.status === 'ok') {
      var warns = Array.isArray(S.health.warnings) ? S.health.warnings.length : 0;
      hw = warns ? 'healthy, ' + warns + (warns === 1 ? ' warning' : ' warnings') : 'healthy';
      hc = warns ? 'warn' : 'ok';
    } else { hw = String(S.health.status); hc = 'bad'; }
    setText(h, hw);
    h.className = 'badge ' + hc;

    // Warnings in words, below the header (reasons are in the banner). The last known
    // ones from the status while /health cannot be read.
    var notes = [];
    if (S.health && !(S.healthProblem && S.healthProblem.kind === 'network')) {
      if (Array.isArray(S.health.warnings)) {
        S.health.warnings.forEach(function (w) { notes.push({ code: String(w), kind: 'warning' }); });
      }
    } else if (S.status && Array.isArray(S.status.warnings)) {
      S.status.warnings.forEach(function (w) { notes.push({ code: String(w), kind: 'warning' }); });
    }
    var ul = $('health-notes');
    while (ul.children.length > notes.length) ul.removeChild(ul.lastChild);
    notes.forEach(function (n, i) {
      var li = ul.children[i];
      if (!li) { li = el('li'); ul.appendChild(li); }
      li.className = 'note-' + n.kind;
      li.setAttribute('data-code', n.code);
      setText(li, describe(n.code));
    });

    // The index build in detail, unless a warning already describes it.
    var ib = indexBuild();
    var ibn = $('index-build');
    var warned = notes.some(function (n) { return n.code === 'indexes-building'; });
    if (ib && ib.state !== 'done' && !warned) {
      setText(ibn, ib.state === 'building'
        ? 'Building the event indexes: ' + fmtInt(ib.built) + ' of ' + fmtInt(ib.total) +
          (ib.current ? ' (now ' + ib.current + ')' : '') + '.'
        : 'The event indexes are deferred until the first backfill is done (' + fmtInt(ib.built) + ' of ' +
          fmtInt(ib.total) + ' built).');
      show(ibn, true);
    } else {
      show(ibn, false);
    }
  }

  function renderFooter() {
    var t = $('last-update');
    if (S.statusWall) {
      var d = new Date(S.statusWall);
      var a = (Date.now() - S.statusWall) / 1000;
      setText(t, clock(d) + (a >= 3 ? ' (' + ago(a) + ')' : ''));
      t.setAttribute('datetime', d.toISOString());
    }
    var fs = $('footer-state');
    var polling = 'status and health every second, epochs every ' + dur(epochPeriod() / 1000);
    setText(fs, polling);
  }

  // ---------------------------------------------------------------- chains

  function chainRow(id) {
    var tr = el('tr', 'chain-row');
    tr.setAttribute('data-chain-id', id);
    var tdId = el('td', 'chain-id', id);
    var tdSt = el('td', 'chain-state');
    tdSt.appendChild(el('span', 'chain-status badge'));
    tdSt.appendChild(document.createTextNode(' '));
    tdSt.appendChild(el('span', 'chain-stalled badge bad hidden', 'stalled'));
    tdSt.appendChild(document.createTextNode(' '));
    tdSt.appendChild(el('span', 'chain-sources badge warn hidden'));
    var tdPr = el('td', 'col-progress');
    var track = el('div', 'progress');
    var bar = el('div', 'progress-bar');
    bar.setAttribute('data-percent', '0');
    bar.setAttribute('role', 'progressbar');
    bar.setAttribute('aria-valuemin', '0');
    bar.setAttribute('aria-valuemax', '100');
    track.appendChild(bar);
    tdPr.appendChild(track);
    tdPr.appendChild(el('div', 'progress-text'));
    tr.appendChild(tdId);
    tr.appendChild(tdSt);
    tr.appendChild(tdPr);
    tr.appendChild(el('td', 'num chain-bps'));
    tr.appendChild(el('td', 'num chain-eps'));
    tr.appendChild(el('td', 'num chain-eta'));
    tr.appendChild(el('td', 'num chain-finality'));
    var tdLast = el('td', 'chain-last');
    tdLast.appendChild(el('span', 'num chain-last-block'));
    tdLast.appendChild(document.createTextNode(' '));
    tdLast.appendChild(el('span', 'age chain-last-age'));
    tr.appendChild(tdLast);
    return tr;
  }

  function chainFigures(ch) {
    var start = isObj(ch.config) && isObj(ch.config.startBlock) ? num(ch.config.startBlock.number) : null;
    var end = isObj(ch.config) && isObj(ch.config.endBlock) ? num(ch.config.endBlock.number) : null;
    var indexed = isObj(ch.latestIndexedBlock) ? num(ch.latestIndexedBlock.number) : null;
    var target = null;
    switch (ch.chainStatus) {
      case 'chain-backfill':
        target = isObj(ch.backfillEndBlock) ? num(ch.backfillEndBlock.number) : null; break;
      case 'chain-following':
        target = isObj(ch.latestKnownBlock) ? num(ch.latestKnownBlock.number) : null; break;
      case 'chain-completed':
        target = end !== null ? end : indexed; break;
      default:
        target = null;
    }
    // A backfill shows 100 only once it reached its end (rounded down); a chain that
    // follows is rounded to the nearest integer (a block or two behind the head is 100).
    var pct = 0;
    if (ch.chainStatus === 'chain-completed') pct = 100;
    else if (indexed !== null && target !== null) {
      if (indexed >= target) pct = 100;
      else {
        var origin = start !== null && start <= indexed ? start : 0;
        var span = target - origin;
        var ratio = span > 0 ? ((indexed - origin) / span) * 100 : 0;
        pct = ch.chainStatus === 'chain-following' ? Math.round(ratio) : Math.floor(ratio);
      }
    }
    pct = Math.max(0, Math.min(100, pct | 0));
    return { start: start, indexed: indexed, target: target, pct: pct };
  }

  function renderChains() {
    var body = $('chains-body');
    var chains = chainsMap();
    var ids = chainIds();
    if (!ids.length) return; // keep what is shown (placeholder or last data)
    var ph = body.querySelector('tr.placeholder');
    if (ph) body.removeChild(ph);
    var now = serverNow();
    var keep = new Set(ids);
    Array.prototype.slice.call(body.querySelectorAll('tr.chain-row')).forEach(function (tr) {
      if (!keep.has(tr.getAttribute('data-chain-id'))) body.removeChild(tr);
    });
    ids.forEach(function (id, i) {
      var ch = chains[id];
      if (!isObj(ch)) return;
      var tr = body.querySelector('tr.chain-row[data-chain-id="' + id + '"]');
      if (!tr) tr = chainRow(id);
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
      var word = statusWord(ch.chainStatus);
      var st = tr.querySelector('.chain-status');
      setText(st, word);
      st.className = 'chain-status badge status-' + word;

      var stalled = tr.querySelector('.chain-stalled');
      var sd = isObj(ch.stalled) ? ch.stalled : null;
      show(stalled, !!sd);
      setTitle(stalled, sd ? 'No progress since ' + (isNum(sd.since) ? ago(now - sd.since) : '?') +
        (sd.lastError ? ' — ' + sd.lastError : '') : null);

      // Sources added to the chain (a contract, addresses or events) still backfilling.
      var sources = Array.isArray(ch.sources) ? ch.sources.filter(isObj) : [];
      var srcBadge = tr.querySelector('.chain-sources');
      show(srcBadge, sources.length > 0);
      if (sources.length) {
        var pctOf = function (s) {
          var from = num(s.fromBlock), to = num(s.toBlock), next = num(s.nextBlock);
          if (from === null || to === null || next === null || to < from) return 0;
          return Math.floor(Math.min(1, Math.max(0, (next - from) / (to - from + 1))) * 100);
        };
        setText(srcBadge, sources.length === 1
          ? 'adding ' + String(sources[0].contract) + ' ' + pctOf(sources[0]) + '%'
          : 'adding ' + sources.length + ' sources');
        setTitle(srcBadge, sources.map(function (s) {
          return String(s.contract) + ': blocks ' + fmtInt(num(s.fromBlock)) + '–' + fmtInt(num(s.toBlock)) +
            ', ' + pctOf(s) + '% stored (' + (Array.isArray(s.events) ? s.events.length : 0) + ' events, ' +
            (Array.isArray(s.addresses) ? s.addresses.length : 0) + ' addresses)';
        }).join('\n'));
      }

      var f = chainFigures(ch);
      var bar = tr.querySelector('.progress-bar');
      var pctText = String(f.pct);
      if (bar.getAttribute('data-percent') !== pctText) {
        bar.setAttribute('data-percent', pctText);
        bar.setAttribute('aria-valuenow', pctText);
        bar.style.width = f.pct + '%';
      }
      bar.className = 'progress-bar status-' + word;
      var label = f.pct + '%';
      if (f.indexed !== null && f.target !== null) label += ' · ' + fmtInt(f.indexed) + ' / ' + fmtInt(f.target);
      else if (word === 'queued') label += ' · queued';
      setText(tr.querySelector('.progress-text'), label);
      setTitle(tr.querySelector('.col-progress'),
        'From block ' + fmtInt(f.start) + ' to ' + (f.target !== null ? fmtInt(f.target) : '?') +
        (word === 'backfill' ? ' (backfill end)' : word === 'following' ? ' (latest known block)' : ''));

      var wh = isObj(ch.webhooks) ? ch.webhooks : null;
      var whText = null;
      if (wh) {
        var lat = function (l) { return isObj(l) ? 'p50 ' + msDur(l.p50Ms) + ', p99 ' + msDur(l.p99Ms) + ' over ' + fmtInt(l.blocks) + ' blocks' : '—'; };
        whText = 'Webhooks: ' + fmtInt(wh.received) + ' received, ' + fmtInt(wh.duplicate) + ' duplicate, ' +
          fmtInt(wh.parked) + ' parked, ' + fmtInt(wh.released) + ' released, ' + fmtInt(wh.expired) + ' expired' +
          '\nhead → stored by webhook: ' + lat(wh.webhookLatency) + '\nby polling: ' + lat(wh.pollingLatency);
      }
      setTitle(tr.querySelector('.chain-id'), whText);

      var pr = isObj(ch.progress) ? ch.progress : null;
      setText(tr.querySelector('.chain-bps'), pr ? fmtRate(pr.blocksPerSecond) : '—');
      setText(tr.querySelector('.chain-eps'), pr ? fmtRate(pr.eventsPerSecond) : '—');
      // The ETA exists while backfilling only.
      var eta = word === 'backfill' && pr && isNum(pr.etaSeconds) ? dur(pr.etaSeconds) : '—';
      setText(tr.querySelector('.chain-eta'), eta);

      var cc = chainConfig(id);
      setText(tr.querySelector('.chain-finality'), cc && cc.finalityDepth !== undefined ? fmtInt(cc.finalityDepth) + ' blocks' : '—');

      var lib = isObj(ch.latestIndexedBlock) ? ch.latestIndexedBlock : null;
      var lb = tr.querySelector('.chain-last-block');
      setText(lb, lib ? '#' + fmtInt(lib.number) : '—');
      setTitle(lb, lib && typeof lib.hash === 'string' ? lib.hash : null);
      var la = tr.querySelector('.chain-last-age');
      setText(la, lib && isNum(lib.timestamp) ? ago(now - lib.timestamp) : '');
      setTitle(la, lib && isNum(lib.timestamp) ? new Date(lib.timestamp * 1000).toISOString() : null);
    });
  }

  // ---------------------------------------------------------------- sinks

  function renderSinks() {
    var map = sinks();
    var names = map ? Object.keys(map).sort() : [];
    show($('sinks-section'), names.length > 0);
    if (!names.length) return;
    var body = $('sinks-body');
    var now = serverNow();
    while (body.children.length > names.length) body.removeChild(body.lastChild);
    names.forEach(function (name, i) {
      var s = isObj(map[name]) ? map[name] : {};
      var tr = body.children[i];
      if (!tr) {
        tr = el('tr', 'sink-row');
        ['sink-name', 'sink-kind', 'sink-state-cell', 'num sink-lag-entries', 'num sink-lag-seconds',
          'sink-delivered', 'sink-error'].forEach(function (c) { tr.appendChild(el('td', c)); });
        tr.children[2].appendChild(el('span', 'sink-state badge'));
        body.appendChild(tr);
      }
      tr.setAttribute('data-sink', name);
      setText(tr.children[0], name);
      setText(tr.children[1], s.kind || '—');
      var state = tr.querySelector('.sink-state');
      var word = typeof s.state === 'string' ? s.state : '—';
      setText(state, word);
      state.className = 'sink-state badge sink-' + word;
      var rb = isObj(s.rebroadcast) ? s.rebroadcast : null;
      setTitle(state, rb ? 'Rebroadcast run ' + rb.run + (isNum(rb.startedAt) ? ', started ' + ago(now - rb.startedAt) : '') +
        (rb.nextCursor ? ', next after cursor ' + rb.nextCursor : '') : null);
      setText(tr.children[3], fmtInt(s.lagEntries));
      setText(tr.children[4], isNum(s.lagSeconds) ? dur(s.lagSeconds) : '—');
      setText(tr.children[5], isNum(s.lastDeliveredAt) ? ago(now - s.lastDeliveredAt) : '—');
      setTitle(tr.children[0], s.cursor ? 'Delivered up to cursor ' + s.cursor : null);
      var err = typeof s.lastError === 'string' && s.lastError ? s.lastError : '';
      setText(tr.children[6], err || '—');
      tr.children[6].classList.toggle('error-text', !!err);
      setTitle(tr.children[6], err || null);
    });
  }

  function render() {
    renderHeader();
    renderBanner();
    renderChains();
    renderSinks();
    renderFooter();
  }

  // ---------------------------------------------------------------- epochs

  function epochPeriod() {
    // Every chain every 5 s; with more than two chains at most one epoch request every
    // 2 s, so that with status and health the page stays well under 3 requests a second.
    return Math.max(EPOCH_MS, chainIds().length * 2000);
  }

  function startEpochs() {
    S.epochsStarted = true;
    var cycle = async function () {
      var ids = chainIds();
      try {
        for (var i = 0; i < ids.length; i++) await loadEpochs(ids[i]);
      } finally {
        setTimeout(cycle, epochPeriod());
      }
    };
    cycle();
  }

  function epochState(id) {
    var st = EP.get(id);
    if (!st) {
      st = { page: 1, pages: 0, total: 0, items: [], inflight: false, again: false, error: null, loaded: false, panel: null };
      EP.set(id, st);
    }
    return st;
  }

  async function loadEpochs(id) {
    var st = epochState(id);
    if (st.inflight) { st.again = true; return; }
    st.inflight = true;
    try {
      var r = await getJson('v1/epochs?chainId=' + encodeURIComponent(id) + '&page=' + st.page + '&size=' + EPOCH_PAGE_SIZE);
      if (r.ok && isObj(r.body)) {
        var b = r.body;
        st.items = Array.isArray(b.items) ? b.items : [];
        st.total = num(b.total) || 0;
        st.pages = num(b.pages) || 0;
        st.error = null;
        st.loaded = true;
        if (st.pages > 0 && st.page > st.pages) { st.page = st.pages; st.again = true; }
      } else {
        st.error = 'not refreshed: ' + errorWords(r);
      }
    } finally {
      st.inflight = false;
      renderEpochs(id);
    }
    if (st.again) { st.again = false; await loadEpochs(id); }
  }

  function epochPanel(id) {
    var st = epochState(id);
    if (st.panel) return st.panel;
    var sec = el('section', 'epochs-panel');
    sec.setAttribute('data-epochs-chain', id);
    var head = el('div', 'epochs-head');
    head.appendChild(el('h3', null, 'Chain ' + id));
    head.appendChild(el('span', 'epochs-summary'));
    var pager = el('div', 'pager');
    var prev = el('button', 'epochs-prev', '‹ Newer');
    prev.type = 'button';
    var label = el('span', 'epochs-page');
    var next = el('button', 'epochs-next', 'Older ›');
    next.type = 'button';
    prev.addEventListener('click', function () {
      if (st.page > 1) { st.page -= 1; renderEpochs(id); loadEpochs(id); }
    });
    next.addEventListener('click', function () {
      if (st.page < st.pages) { st.page += 1; renderEpochs(id); loadEpochs(id); }
    });
    pager.appendChild(prev);
    pager.appendChild(label);
    pager.appendChild(next);
    head.appendChild(pager);
    sec.appendChild(head);
    var wrap = el('div', 'scroll-x');
    var table = el('table', 'grid epochs-table');
    var thead = el('thead');
    var hr = el('tr');
    [['Epoch', 'num'], ['Blocks', 'num'], ['Stage', ''], ['planned → stored', 'col-timeline'], ['Total', 'num'],
      ['Finalized', 'num'], ['Delivered', 'num'], ['Error', '']].forEach(function (h) {
      hr.appendChild(el('th', h[1] || null, h[0]));
    });
    thead.appendChild(hr);
    table.appendChild(thead);
    table.appendChild(el('tbody', 'epochs-body'));
    wrap.appendChild(table);
    sec.appendChild(wrap);
    sec.appendChild(el('p', 'epochs-error note hidden'));
    st.panel = sec;
    return sec;
  }

  var PIPE = { planned: 1, fetched: 1, decoded: 1, stored: 1 };

  function timing(ep) {
    var hist = Array.isArray(ep.stages) ? ep.stages.filter(function (x) {
      return isObj(x) && typeof x.stage === 'string' && isNum(x.at);
    }) : [];
    var segs = [];
    var first = null, storedAt = null, finalizedAt = null, deliveredAt = null, deliveredFrom = null, reorgedAt = null;
    for (var i = 0; i < hist.length; i++) {
      var h = hist[i];
      if (PIPE[h.stage]) {
        if (first === null) first = h.at;
        var prev = i > 0 ? hist[i - 1] : null;
        if (prev && PIPE[prev.stage]) segs.push({ stage: h.stage, from: prev.stage, ms: (h.at - prev.at) * 1000 });
        if (h.stage === 'stored') storedAt = h.at;
      } else if (h.stage === 'finalized') finalizedAt = h.at;
      else if (h.stage === 'delivered') { deliveredAt = h.at; deliveredFrom = i > 0 ? hist[i - 1] : null; }
      else if (h.stage === 'reorged') reorgedAt = h.at;
    }
    var lastPipe = null;
    for (var j = hist.length - 1; j >= 0; j--) if (PIPE[hist[j].stage]) { lastPipe = hist[j].at; break; }
    return {
      segs: segs,
      totalMs: first !== null && lastPipe !== null ? (lastPipe - first) * 1000 : null,
      complete: storedAt !== null,
      finalizedMs: finalizedAt !== null && storedAt !== null ? (finalizedAt - storedAt) * 1000 : null,
      deliveredMs: deliveredAt !== null && deliveredFrom ? (deliveredAt - deliveredFrom.at) * 1000 : null,
      deliveredFrom: deliveredFrom ? deliveredFrom.stage : null,
      reorgedMs: reorgedAt !== null && storedAt !== null ? (reorgedAt - storedAt) * 1000 : null,
      plannedAt: first,
    };
  }

  function epochRow(ep, t, scaleMs, now) {
    var tr = el('tr', 'epoch-row');
    tr.setAttribute('data-epoch-id', String(ep.epochId));
    var err = typeof ep.error === 'string' && ep.error ? ep.error : null;
    var failedStage = err && /^[a-z]+:/.test(err) ? err.slice(0, err.indexOf(':')) : null;
    if (err) tr.classList.add('epoch-failed');
    if (ep.stage === 'reorged') tr.classList.add('epoch-reorged');

    var tdId = el('td', 'num', '#' + fmtInt(ep.epochId));
    if (t.plannedAt !== null) tdId.title = 'Planned ' + ago(now - t.plannedAt) + ' (' + new Date(t.plannedAt * 1000).toISOString() + ')';
    tr.appendChild(tdId);
    var blocks = fmtInt(ep.fromBlock) + (ep.toBlock !== ep.fromBlock ? '–' + fmtInt(ep.toBlock) : '');
    var tdB = el('td', 'num', blocks);
    if (isNum(ep.fromBlock) && isNum(ep.toBlock)) tdB.title = fmtInt(ep.toBlock - ep.fromBlock + 1) + ' blocks';
    tr.appendChild(tdB);
    var tdS = el('td');
    tdS.appendChild(el('span', 'badge epoch-stage stage-' + (ep.stage || 'unknown'), ep.stage || '?'));
    // An added source's epoch: its key (`<contract>:<digest>`), as text.
    if (typeof ep.source === 'string' && ep.source) {
      var src = el('span', 'badge epoch-source', ep.source.split(':')[0]);
      src.title = 'Added source ' + ep.source + ', backfilled beside the chain';
      tdS.appendChild(src);
    }
    tr.appendChild(tdS);

    var tdT = el('td', 'col-timeline');
    var bar = el('div', 'timeline');
    t.segs.forEach(function (s) {
      var seg = el('i', 'seg seg-' + s.stage);
      seg.style.width = Math.max(0, Math.min(100, (s.ms / scaleMs) * 100)).toFixed(2) + '%';
      seg.title = s.from + ' → ' + s.stage + ': ' + msDur(s.ms);
      bar.appendChild(seg);
    });
    if (err) {
      var f = el('i', 'seg seg-failed');
      f.title = 'failed' + (failedStage ? ' at ' + failedStage : '') + ': ' + err;
      bar.appendChild(f);
    }
    tdT.appendChild(bar);
    tr.appendChild(tdT);

    tr.appendChild(el('td', 'num', t.totalMs !== null ? msDur(t.totalMs) + (t.complete ? '' : '…') : '—'));
    var fin = t.finalizedMs !== null ? '+' + msDur(t.finalizedMs) : ep.stage === 'reorged' && t.reorgedMs !== null ? 'reorged +' + msDur(t.reorgedMs) : '—';
    var tdF = el('td', 'num', fin);
    if (t.finalizedMs !== null) tdF.title = 'finalized ' + msDur(t.finalizedMs) + ' after stored';
    tr.appendChild(tdF);
    var tdD = el('td', 'num', t.deliveredMs !== null ? '+' + msDur(t.deliveredMs) : '—');
    if (t.deliveredMs !== null) tdD.title = 'delivered ' + msDur(t.deliveredMs) + ' after ' + t.deliveredFrom;
    tr.appendChild(tdD);
    var tdE = el('td', 'epoch-error', err || '');
    if (err) { tdE.title = err; tdE.classList.add('error-text'); }
    tr.appendChild(tdE);
    return tr;
  }

  function renderEpochs(id) {
    var host = $('epochs');
    var st = epochState(id);
    var panel = epochPanel(id);
    var ids = chainIds();
    var empty = host.querySelector('p.empty');
    if (empty) host.removeChild(empty);
    // Panels in chain order; panels of chains no longer configured go.
    Array.prototype.slice.call(host.querySelectorAll('.epochs-panel')).forEach(function (p) {
      if (ids.indexOf(p.getAttribute('data-epochs-chain')) < 0) host.removeChild(p);
    });
    var idx = ids.indexOf(id);
    if (idx < 0) return;
    if (panel.parentNode !== host) {
      var before = null;
      for (var k = idx + 1; k < ids.length && !before; k++) {
        var other = EP.get(ids[k]);
        if (other && other.panel && other.panel.parentNode === host) before = other.panel;
      }
      host.insertBefore(panel, before);
    }

    var summary = S.status && isObj(S.status.epochs) && isObj(S.status.epochs[id]) ? S.status.epochs[id] : null;
    var sumText = fmtInt(st.total) + ' epochs retained';
    if (summary && isNum(summary.notFinalized)) sumText += ' · ' + fmtInt(summary.notFinalized) + ' not finalized';
    setText(panel.querySelector('.epochs-summary'), st.loaded ? sumText : 'loading…');
    setText(panel.querySelector('.epochs-page'), st.pages ? 'page ' + st.page + ' of ' + st.pages : 'page ' + st.page);
    panel.querySelector('.epochs-prev').disabled = st.page <= 1;
    panel.querySelector('.epochs-next').disabled = st.page >= st.pages;
    var errNode = panel.querySelector('.epochs-error');
    setText(errNode, st.error ? 'Epochs ' + st.error + (st.loaded ? '; showing the last page read.' : '.') : '');
    show(errNode, !!st.error);

    var body = panel.querySelector('.epochs-body');
    var items = st.items.filter(isObj);
    var timings = items.map(timing);
    var scale = 1;
    timings.forEach(function (t) { if (t.totalMs !== null && t.totalMs > scale) scale = t.totalMs; });
    var now = serverNow();
    var frag = document.createDocumentFragment();
    items.forEach(function (ep, i) { frag.appendChild(epochRow(ep, timings[i], scale, now)); });
    if (!items.length) {
      var tr = el('tr', 'placeholder');
      var td = el('td', null, st.loaded ? 'No epochs recorded for this chain.' : 'Loading…');
      td.colSpan = 8;
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    body.textContent = '';
    body.appendChild(frag);
  }

  // ---------------------------------------------------------------- events

  function argNode(v, depth) {
    if (v === null || v === undefined) return el('span', 'arg-null', 'null');
    if (typeof v === 'string') return shortNode(v, 'arg-val');
    if (typeof v === 'number' || typeof v === 'boolean') return el('span', 'arg-val', String(v));
    if (Array.isArray(v)) {
      var a = el('span', 'arg-list');
      a.appendChild(document.createTextNode('['));
      var max = 6;
      v.slice(0, max).forEach(function (x, i) {
        if (i) a.appendChild(document.createTextNode(', '));
        a.appendChild(depth > 3 ? el('span', null, '…') : argNode(x, depth + 1));
      });
      if (v.length > max) {
        var more = el('span', 'arg-more', ', … +' + (v.length - max));
        more.title = JSON.stringify(v);
        a.appendChild(more);
      }
      a.appendChild(document.createTextNode(']'));
      return a;
    }
    if (isObj(v)) {
      var keys = Object.keys(v);
      if (keys.length === 1 && keys[0] === 'topicHash' && typeof v.topicHash === 'string') {
        return shortNode(v.topicHash, 'arg-val arg-topic', 'indexed value, its hash: ');
      }
      if (keys.length === 1 && keys[0] === 'hex' && typeof v.hex === 'string') {
        var hx = el('span', 'arg-val arg-hex', 'hex ' + shorten(v.hex));
        hx.title = 'raw bytes (not valid UTF-8 text): ' + v.hex;
        return hx;
      }
      var o = el('span', 'arg-obj');
      o.appendChild(document.createTextNode('{'));
      keys.forEach(function (k, i) {
        if (i) o.appendChild(document.createTextNode(', '));
        o.appendChild(el('span', 'arg-name', k + ': '));
        o.appendChild(depth > 3 ? el('span', null, '…') : argNode(v[k], depth + 1));
      });
      o.appendChild(document.createTextNode('}'));
      return o;
    }
    return el('span', 'arg-val', String(v));
  }

  function argsCell(e) {
    var td = el('td', 'ev-args');
    if (e.args === null || e.args === undefined) {
      var d = el('span', 'decode-error', e.decodeError ? 'not decoded' : '—');
      if (e.decodeError) d.title = String(e.decodeError);
      td.appendChild(d);
      return td;
    }
    if (isObj(e.args)) {
      Object.keys(e.args).forEach(function (k, i) {
        var pair = el('span', 'arg');
        pair.appendChild(el('span', 'arg-name', k + '='));
        pair.appendChild(argNode(e.args[k], 1));
        if (i) td.appendChild(document.createTextNode(' '));
        td.appendChild(pair);
      });
      if (!Object.keys(e.args).length) td.appendChild(el('span', 'arg-null', '(no arguments)'));
      return td;
    }
    td.appendChild(argNode(e.args, 1));
    return td;
  }

  function eventRow(e) {
    var tr = el('tr', 'event-row');
    tr.setAttribute('data-cursor', String(e.cursor));
    // `data-chain`, not `data-chain-id`: `[data-chain-id]` is reserved for the chain rows.
    if (e.chainId !== undefined) tr.setAttribute('data-chain', String(e.chainId));
    if (e.finalized === false) tr.classList.add('unfinalized');

    var tdTime = el('td', 'ev-time num');
    if (isNum(e.blockTimestamp)) {
      var d = new Date(e.blockTimestamp * 1000);
      tdTime.textContent = clock(d);
      tdTime.title = d.toISOString() + ' · cursor ' + e.cursor + (e.finalized ? ' · final' : ' · not final when received');
    } else {
      tdTime.textContent = '—';
    }
    tr.appendChild(tdTime);

    var tdB = el('td', 'ev-block num');
    tdB.appendChild(el('span', 'ev-chain', String(e.chainId !== undefined ? e.chainId : '?')));
    tdB.appendChild(document.createTextNode(' · '));
    var bn = el('span', 'ev-number', isNum(e.blockNumber) ? '#' + fmtInt(e.blockNumber) : '—');
    var bt = [];
    if (typeof e.blockHash === 'string') bt.push('block ' + e.blockHash);
    if (e.logIndex !== undefined) bt.push('log ' + e.logIndex);
    if (bt.length) bn.title = bt.join(' · ');
    tdB.appendChild(bn);
    tr.appendChild(tdB);

    var tdC = el('td', 'ev-contract');
    tdC.appendChild(el('span', 'ev-contract-name', e.contract || '?'));
    if (typeof e.address === 'string') {
      tdC.appendChild(document.createTextNode(' '));
      var ad = el('span', 'addr', shorten(e.address));
      ad.title = e.address;
      tdC.appendChild(ad);
    }
    tr.appendChild(tdC);

    var tdE = el('td', 'ev-event', e.event || '?');
    if (typeof e.signature === 'string') tdE.title = e.signature;
    tr.appendChild(tdE);

    tr.appendChild(argsCell(e));

    var tdTx = el('td', 'ev-tx');
    if (typeof e.transactionHash === 'string') {
      var tx = el('span', 'hash', shorten(e.transactionHash));
      tx.title = e.transactionHash;
      tdTx.appendChild(tx);
    } else {
      tdTx.textContent = '—';
    }
    tr.appendChild(tdTx);
    return tr;
  }

  function markRemoved(tr, r) {
    tr.classList.add('removed');
    tr.setAttribute('data-removed-by', String(r.cursor));
    tr.title = 'Removed by a reorg' + (typeof r.blockHash === 'string' ? ' (block ' + r.blockHash + ')' : '');
  }

  function trimRows() {
    var body = $('events-body');
    while (body.children.length > MAX_ROWS) {
      var last = body.lastElementChild;
      E.rows.delete(last.getAttribute('data-cursor'));
      body.removeChild(last);
    }
  }

  function noteCursor(c) {
    if (isCursor(c) && (E.lastCursor === null || cmpCursor(c, E.lastCursor) > 0)) E.lastCursor = c;
  }

  // Applies queued stream entries in order: logs on top, removals strike their log.
  function flush() {
    E.flushTimer = 0;
    if (!E.queue.length) return;
    var q = E.queue;
    E.queue = [];
    var body = $('events-body');
    var logs = 0;
    q.forEach(function (x) { if (x.kind === 'log') logs++; });
    var skip = Math.max(0, logs - MAX_ROWS); // rows that would be trimmed at once
    q.forEach(function (x) {
      if (x.kind === 'log') {
        var e = x.data;
        var c = String(e.cursor);
        if (E.rows.has(c) || (E.newest !== null && cmpCursor(c, E.newest) <= 0)) return;
        if (skip > 0) { skip--; return; }
        var tr = eventRow(e);
        E.rows.set(c, tr);
        body.insertBefore(tr, body.firstChild);
      } else if (x.kind === 'removed') {
        var target = E.rows.get(String(x.data.eventCursor));
        if (target) markRemoved(target, x.data);
      }
    });
    trimRows();
    updateEventsEmpty();
  }

  function enqueue(entry) {
    if (E.paused) {
      E.buffer.push(entry);
      if (entry.kind === 'log') E.bufferedLogs++;
      if (E.buffer.length > MAX_BUFFER) E.buffer.splice(0, E.buffer.length - MAX_BUFFER);
      renderNewCount();
      return;
    }
    E.queue.push(entry);
    if (!E.flushTimer) E.flushTimer = setTimeout(flush, 60);
  }

  function renderNewCount() {
    var n = $('events-new-count');
    setText(n, E.bufferedLogs ? NF.format(E.bufferedLogs) + ' new' : E.paused ? '0 new' : '');
    n.setAttribute('data-count', String(E.bufferedLogs));
    show(n, E.paused);
  }

  function setPaused(p) {
    E.paused = p;
    var b = $('events-pause');
    setText(b, p ? 'Resume' : 'Pause');
    b.setAttribute('aria-pressed', p ? 'true' : 'false');
    b.classList.toggle('paused', p);
    if (!p && E.buffer.length) {
      E.queue = E.queue.concat(E.buffer);
      E.buffer = [];
      flush();
    }
    if (!p) E.bufferedLogs = 0;
    renderNewCount();
    renderStreamState();
  }

  function updateEventsEmpty() {
    var empty = $('events-empty');
    var has = $('events-body').children.length > 0;
    if (has) { show(empty, false); return; }
    show(empty, true);
    setText(empty, E.loaded ? 'No events yet; new ones appear here as they are indexed.' : 'Loading the newest events…');
  }

  function setEventsNote(text, seconds) {
    var n = $('events-note');
    if (E.noteTimer) { clearTimeout(E.noteTimer); E.noteTimer = 0; }
    setText(n, text || '');
    show(n, !!text);
    if (text && seconds) E.noteTimer = setTimeout(function () { setEventsNote(null); }, seconds * 1000);
  }

  var loadBackoff = 0;

  async function loadNewestEvents() {
    E.retryTimer = 0;
    var r = await getJson('v1/events?order=desc&limit=' + EVENTS_PAGE);
    if (r.ok && isObj(r.body) && Array.isArray(r.body.items)) {
      var items = r.body.items.filter(function (e) { return isObj(e) && isCursor(String(e.cursor)); });
      // Newest first; an API that ignores `order` would answer ascending: sort to be sure.
      items.sort(function (a, b) { return cmpCursor(String(b.cursor), String(a.cursor)); });
      var body = $('events-body');
      var frag = document.createDocumentFragment();
      items.slice(0, MAX_ROWS).forEach(function (e) {
        var c = String(e.cursor);
        if (E.rows.has(c)) return;
        var tr = eventRow(e);
        E.rows.set(c, tr);
        frag.appendChild(tr);
      });
      body.appendChild(frag);
      if (items.length) {
        E.newest = String(items[0].cursor);
        noteCursor(E.newest);
        E.initialAfter = E.newest;
      } else {
        E.initialAfter = '0'; // nothing stored yet: every event from now on
      }
      E.loaded = true;
      loadBackoff = 0;
      updateEventsEmpty();
      openStream();
      return;
    }
    if (r.status === 400) {
      // An API without `order=desc`: follow new events from the head only.
      E.loaded = true;
      E.initialAfter = null;
      setEventsNote('This API cannot list the newest events; showing new events as they arrive.');
      updateEventsEmpty();
      openStream();
      return;
    }
    // Unavailable for now (API or database down): try again with backoff; the banner says why.
    loadBackoff = Math.min(loadBackoff ? loadBackoff * 2 : 2000, 15000);
    E.retryTimer = setTimeout(loadNewestEvents, loadBackoff);
  }

  function streamUrl() {
    var after = E.lastCursor !== null ? E.lastCursor : E.initialAfter;
    return after !== null ? 'v1/stream?after=' + encodeURIComponent(after) : 'v1/stream';
  }

  function renderStreamState() {
    var n = $('stream-state');
    var word;
    if (!E.loaded) word = 'connecting';
    else if (!E.es) word = E.retryTimer ? 'reconnecting' : 'connecting';
    else if (E.es.readyState === 1) word = 'live';
    else if (E.es.readyState === 0) word = E.failures || E.wasOpen ? 'reconnecting' : 'connecting';
    else word = 'reconnecting';
    if (E.paused && word === 'live') word = 'live, paused';
    setText(n, word);
    n.className = 'stream-state ' + word.replace(/[^a-z]+/g, '-');
  }

  function parse(m) {
    try { return JSON.parse(m.data); } catch (e) { return null; }
  }

  function openStream() {
    if (E.retryTimer) { clearTimeout(E.retryTimer); E.retryTimer = 0; }
    if (E.es) { E.es.close(); E.es = null; }
    var es = new EventSource(streamUrl());
    E.es = es;
    E.wasOpen = false;
    es.onopen = function () {
      if (E.es !== es) return;
      E.failures = 0;
      E.refusedWhileFine = 0;
      E.wasOpen = true;
      renderStreamState();
    };
    es.addEventListener('log', function (m) {
      if (E.es !== es) return;
      var d = parse(m);
      if (!isObj(d)) return;
      if (d.cursor === undefined && m.lastEventId) d.cursor = m.lastEventId;
      noteCursor(String(d.cursor));
      enqueue({ kind: 'log', data: d });
    });
    es.addEventListener('removed', function (m) {
      if (E.es !== es) return;
      var d = parse(m);
      if (!isObj(d)) return;
      noteCursor(String(d.cursor !== undefined ? d.cursor : m.lastEventId));
      enqueue({ kind: 'removed', data: d });
    });
    es.addEventListener('lagged', function (m) {
      if (E.es !== es) return;
      var d = parse(m) || {};
      setEventsNote('The stream fell ' + fmtInt(d.behind) + ' entries behind and caught up from the database.', 10);
    });
    es.onerror = function () {
      if (E.es !== es) return;
      if (es.readyState === 2) {
        // Refused (e.g. 503, or 410 for a cursor below the journal's floor): recreate
        // with backoff, resuming after the last cursor seen.
        es.close();
        E.es = null;
        E.failures++;
        if (!S.unreachableSince && !wasDegraded && S.health && S.health.status === 'ok') E.refusedWhileFine++;
        scheduleReconnect();
      }
      renderStreamState();
    };
    renderStreamState();
  }

  function scheduleReconnect() {
    var delay = STREAM_BACKOFF_MS[Math.min(E.failures - 1, STREAM_BACKOFF_MS.length - 1)];
    // Refused three times in a row while the API was reachable and healthy: the cursor
    // is probably below the journal's retained floor (410). Resynchronise from the
    // newest page.
    E.retryTimer = setTimeout(function () {
      E.retryTimer = 0;
      if (E.refusedWhileFine >= 3) {
        E.failures = 0;
        E.refusedWhileFine = 0;
        resync();
      } else {
        openStream();
      }
    }, delay);
    renderStreamState();
  }

  function resync() {
    var body = $('events-body');
    body.textContent = '';
    E.rows.clear();
    E.queue = [];
    E.newest = null;
    E.lastCursor = null;
    E.loaded = false;
    setEventsNote('The stream could not resume where it stopped; reloaded the newest events.', 15);
    updateEventsEmpty();
    loadNewestEvents();
  }

  // ---------------------------------------------------------------- start

  function start() {
    $('events-pause').addEventListener('click', function () { setPaused(!E.paused); });
    renderNewCount();
    updateEventsEmpty();
    tick();
    setInterval(tick, POLL_MS);
    setInterval(renderStreamState, POLL_MS);
    loadNewestEvents();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
