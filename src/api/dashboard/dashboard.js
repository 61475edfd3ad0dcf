// otel-sli dashboard: reads /api/v1/* and renders it. No dependencies, no build step.
// Every section renders from its own API answer and shows a message when that answer is
// empty or failed; the DOM is built with text nodes only (names, reasons and ids come from
// telemetry: they are never parsed as HTML, and a trace link is only ever an http(s) URL
// built from hex ids).
'use strict';
(function () {
  const REFRESH_MS = 5000;
  const HISTORY_MS = 30000;
  const TOKEN_KEY = 'otel-sli.admin-token';
  const WINDOW_SECONDS = { '1m': 60, '5m': 300, '1h': 3600 };
  const WINDOW_TEXT = { '1m': 'last minute', '5m': 'last 5 minutes', '1h': 'last hour' };
  const SVG = 'http://www.w3.org/2000/svg';

  const state = {
    window: '5m',
    sort: { key: 'service', dir: 1 },
    filter: '',
    rows: [],
    history: null,
    historyAt: 0,
    info: null,
    paused: false,
    timer: 0,
    busy: false,
    refreshes: 0,
    cohorts: new Map(),
    needsToken: false,
    formMessage: false,
    // Set once /api/v1/flags answers 404 (flags.enabled: false): not asked again.
    flagsOff: false,
    // The series whose example requests are shown (its key), and what was read for it:
    // { key, series (or null: none kept), error, loading }.
    selected: null,
    examples: null,
  };

  const $ = (id) => document.getElementById(id);

  // el('td', {class: 'num', text: '1'}, child…): an element with attributes and children.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  // ---- formatting (format.js: one formatter per unit, docs/dashboard.md) ---------------
  const F = window.OtelSliFormat;
  const isNum = F.isNum;
  function time(t) {
    const d = new Date(t);
    return isNaN(d) ? String(t) : d.toLocaleString();
  }

  // ---- API ---------------------------------------------------------------------------
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path) {
    const headers = { Accept: 'application/json' };
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    let r;
    try {
      r = await fetch(path, { headers, cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, 'otel-sli cannot be reached (' + e.message + ')');
    }
    if (r.status === 401) {
      state.needsToken = true;
      throw new ApiError(401, t ? 'the admin token was refused' : 'the API needs the admin token');
    }
    let body = null;
    try { body = await r.json(); } catch (_) { body = null; }
    if (!r.ok) throw new ApiError(r.status, (body && body.error) || ('HTTP ' + r.status));
    if (body === null || typeof body !== 'object') throw new ApiError(r.status, 'the answer is not JSON');
    return body;
  }

  function message(id, text, isError) {
    const m = $(id);
    if (!text) { m.hidden = true; m.textContent = ''; return; }
    m.hidden = false;
    m.textContent = text;
    m.classList.toggle('error', !!isError);
  }

  function failure(what, e) {
    if (e && e.status === 401) return what + ' need the admin token: paste it above.';
    return 'Cannot load ' + what + ': ' + (e && e.message ? e.message : String(e));
  }

  // Runs a render function; a bug in one section shows as a message, not a blank page.
  function guarded(id, fn) {
    try { fn(); } catch (e) { message(id, 'This section could not be drawn: ' + e.message, true); }
  }

  // The `data-focus` mark of the control focused inside `box`, to give the focus back to
  // the same control once `box` is redrawn.
  function focusMark(box) {
    const a = document.activeElement;
    return a && box && box.contains(a) && a.dataset ? a.dataset.focus || null : null;
  }

  function restoreFocus(box, mark) {
    if (!mark || !box) return;
    const again = [...box.querySelectorAll('[data-focus]')].find((e) => e.dataset.focus === mark);
    if (again) again.focus();
  }

  // ---- overview table ----------------------------------------------------------------
  const keyOf = (s) => s.service + '\u0000' + s.feature + '\u0000' + JSON.stringify(s.dimensions || {});
  const dimsText = (d) => Object.entries(d || {}).map(([k, v]) => k + '=' + v).join(' ');

  function rowsFrom(slis, win) {
    // The time the window really covers (less than its length just after a start).
    const secs = isNum(slis.window_seconds) && slis.window_seconds > 0
      ? slis.window_seconds : (WINDOW_SECONDS[win] || 300);
    return (slis.slis || []).map((s) => {
      const lat = s.latency_seconds || {};
      return {
        key: keyOf(s),
        service: String(s.service),
        feature: String(s.feature),
        dims: dimsText(s.dimensions),
        dimensions: s.dimensions || {},
        rate: isNum(s.requests) ? s.requests / secs : null,
        requests: s.requests,
        errors: s.errors,
        success: s.success_ratio,
        p50: lat.p50, p95: lat.p95, p99: lat.p99,
        coverage: s.trace_coverage,
        quality: s.data_quality === 'ok' ? 'ok' : 'insufficient',
        reasons: s.data_quality_reasons || [],
      };
    });
  }

  function compare(a, b, key) {
    const x = a[key], y = b[key];
    if (typeof x === 'string' || typeof y === 'string') {
      return String(x).localeCompare(String(y));
    }
    return x - y;
  }

  function visibleRows() {
    const f = state.filter.trim().toLowerCase();
    const rows = f
      ? state.rows.filter((r) => (r.service + ' ' + r.feature + ' ' + r.dims).toLowerCase().includes(f))
      : state.rows.slice();
    const { key, dir } = state.sort;
    rows.sort((a, b) => {
      const missA = a[key] === null || a[key] === undefined;
      const missB = b[key] === null || b[key] === undefined;
      if (missA !== missB) return missA ? 1 : -1; // no data sorts last either way
      const c = missA ? 0 : compare(a, b, key) * dir;
      return c || a.service.localeCompare(b.service) || a.feature.localeCompare(b.feature) || a.dims.localeCompare(b.dims);
    });
    return rows;
  }

  function historyFor(row) {
    const h = state.history;
    if (!h || !h.index) return null;
    return h.index.get(row.key) || null;
  }

  // A sparkline of `values` (null: no point) scaled to [lo, hi].
  function sparkline(values, lo, hi, cls, label) {
    const w = 110, hgt = 26, pad = 2;
    const s = svg('svg', { class: 'spark ' + cls, width: w, height: hgt, viewBox: '0 0 ' + w + ' ' + hgt, role: 'img', 'aria-label': label });
    s.append(svg('title', {}));
    s.firstChild.textContent = label;
    s.append(svg('line', { class: 'base', x1: 0, x2: w, y1: hgt - 0.5, y2: hgt - 0.5 }));
    const n = values.length;
    if (n === 0 || values.every((v) => v === null)) return s;
    const span = hi - lo || 1;
    const x = (i) => (n === 1 ? w - pad : pad + (i * (w - 2 * pad)) / (n - 1));
    const y = (v) => hgt - pad - ((Math.min(Math.max(v, lo), hi) - lo) / span) * (hgt - 2 * pad);
    let seg = [];
    const flush = () => {
      if (seg.length > 1) s.append(svg('polyline', { points: seg.join(' ') }));
      else if (seg.length === 1) {
        const [cx, cy] = seg[0].split(',');
        s.append(svg('circle', { cx, cy, r: 2.2 }));
      }
      seg = [];
    };
    values.forEach((v, i) => {
      if (v === null) flush();
      else seg.push(x(i).toFixed(1) + ',' + y(v).toFixed(1));
    });
    flush();
    return s;
  }

  function trendCells(row) {
    const h = historyFor(row);
    if (!h) {
      return [el('td', { class: 'muted', text: '—' }), el('td', { class: 'muted', text: '—' })];
    }
    const succ = h.requests.map((r, i) => (isNum(r) && r > 0 ? Math.max(0, 1 - (h.errors[i] || 0) / r) : null));
    const p95 = h.p95_seconds.map((v) => (isNum(v) ? v : null));
    const sv = succ.filter((v) => v !== null);
    const pv = p95.filter((v) => v !== null);
    const lo = sv.length ? Math.min(...sv, 0.99) : 0;
    const sLabel = sv.length
      ? 'Success ratio per minute, last hour: lowest ' + F.ratio(Math.min(...sv)) + ', latest ' + F.ratio(sv[sv.length - 1])
      : 'No requests in the last hour';
    const pLabel = pv.length
      ? 'p95 latency per minute, last hour: highest ' + F.seconds(Math.max(...pv)) + ', latest ' + F.seconds(pv[pv.length - 1])
      : 'No latency data in the last hour';
    const sSpark = sparkline(succ, lo, 1, 'success', sLabel);
    if (sv.some((v) => v < 0.99)) sSpark.classList.add('dipped');
    return [
      el('td', {}, sSpark),
      el('td', {}, sparkline(p95, 0, pv.length ? Math.max(...pv) : 1, 'p95', pLabel)),
    ];
  }

  function qualityCell(row, open) {
    if (row.quality === 'ok') {
      return el('td', { 'data-value': 'ok' }, el('span', { class: 'badge ok', text: '✓ ok' }));
    }
    const d = el('details', { class: 'quality', 'data-key': row.key },
      el('summary', { 'data-focus': 'quality\u0000' + row.key }, el('span', { class: 'badge warn', text: '⚠ insufficient' })),
      el('ul', {}, ...row.reasons.map((r) => el('li', { text: r }))));
    if (open) d.open = true;
    return el('td', { 'data-value': 'insufficient' }, d);
  }

  function examplesCell(r) {
    const open = state.selected === r.key;
    const name = r.service + ' · ' + r.feature + (r.dims ? ' · ' + r.dims : '');
    return el('td', { class: 'examples-cell' },
      el('button', {
        type: 'button',
        class: 'examples-toggle',
        'data-key': r.key,
        'data-focus': 'examples\u0000' + r.key,
        'aria-expanded': String(open),
        'aria-controls': open ? 'sli-examples' : null,
        'aria-label': 'Examples of ' + name,
        text: (open ? '▾' : '▸') + ' Examples',
      }));
  }

  function renderTable() {
    const body = $('sli-body');
    const open = new Set([...body.querySelectorAll('details[open]')].map((d) => d.dataset.key));
    const mark = focusMark(body);
    const rows = visibleRows();
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      const lowSuccess = isNum(r.success) && r.success < 0.99;
      frag.append(el('tr', { 'data-key': r.key, 'data-service': r.service, 'data-feature': r.feature },
        el('td', { text: r.service }),
        el('th', { scope: 'row' }, r.feature, r.dims ? el('span', { class: 'dims', text: r.dims }) : null),
        el('td', { class: 'num', 'data-value': r.rate, text: F.rate(r.rate) }),
        el('td', { class: 'num' + (lowSuccess ? ' low' : ''), 'data-value': r.success, text: (lowSuccess ? '▼ ' : '') + F.ratio(r.success) }),
        el('td', { class: 'num', 'data-value': r.p50, text: F.seconds(r.p50) }),
        el('td', { class: 'num', 'data-value': r.p95, text: F.seconds(r.p95) }),
        el('td', { class: 'num', 'data-value': r.p99, text: F.seconds(r.p99) }),
        el('td', { class: 'num', 'data-value': r.coverage, text: isNum(r.coverage) ? F.ratio(r.coverage) : 'no metrics' }),
        qualityCell(r, open.has(r.key)),
        ...trendCells(r),
        examplesCell(r)));
      if (r.key === state.selected) {
        frag.append(el('tr', { class: 'examples-row', 'data-examples-for': r.key },
          el('td', { colspan: 12 }, examplesPanel(r))));
      }
    }
    if (rows.length === 0) {
      const text = state.rows.length
        ? 'No feature matches “' + state.filter + '”.'
        : 'No requests in the ' + WINDOW_TEXT[state.window] + '.';
      frag.append(el('tr', {}, el('td', { colspan: 12, class: 'empty', text })));
    }
    body.replaceChildren(frag);
    restoreFocus(body, mark);
    const total = state.rows.length;
    $('sli-count').textContent = rows.length === total
      ? total + (total === 1 ? ' feature' : ' features')
      : rows.length + ' of ' + total + ' features shown';
    $('caption-window').textContent = WINDOW_TEXT[state.window];
    for (const th of document.querySelectorAll('#sli-table thead th[data-key]')) {
      if (th.dataset.key === state.sort.key) th.setAttribute('aria-sort', state.sort.dir > 0 ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
    }
  }

  // ---- example requests (docs/exemplars.md) -------------------------------------------
  const TRACE_ID = /^[0-9a-f]{32}$/;
  const SPAN_ID = /^[0-9a-f]{16}$/;

  function traceTemplate() {
    const t = state.info && state.info.links && state.info.links.trace_url;
    return typeof t === 'string' && t ? t : null;
  }

  // The link to a request's trace: links.trace_url with {trace_id} and {span_id} replaced,
  // only by ids that are exactly 32 and 16 lower-case hex digits, and only if the result is
  // an absolute http: or https: URL. Anything else: null, and the id is shown as text.
  function traceHref(traceId, spanId) {
    const template = traceTemplate();
    if (!template || typeof traceId !== 'string' || !TRACE_ID.test(traceId)) return null;
    if (template.includes('{span_id}') && (typeof spanId !== 'string' || !SPAN_ID.test(spanId))) return null;
    const filled = template.split('{trace_id}').join(traceId).split('{span_id}').join(spanId);
    let url;
    try { url = new URL(filled); } catch (_) { return null; }
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  }

  // Copies the button's id; without the clipboard API (a page served over plain HTTP from
  // another host) or when it is refused, selects the id so that Ctrl+C copies it.
  async function copyId(button) {
    const text = button.dataset.copy || '';
    const note = button.parentElement.querySelector('.copy-note');
    let done = false;
    try {
      if (navigator.clipboard && navigator.clipboard.writeText) {
        await navigator.clipboard.writeText(text);
        done = true;
      }
    } catch (_) { done = false; }
    if (!done) {
      const code = button.parentElement.querySelector('.trace-id');
      const sel = window.getSelection();
      if (code && sel) {
        sel.selectAllChildren(code);
        try { done = document.execCommand('copy'); } catch (_) { done = false; }
      }
    }
    if (note) note.textContent = done ? 'Copied' : 'Selected: press Ctrl+C to copy';
  }

  // One example request: why it is one, its duration and end, with series (SLO and canary
  // lists span several features), and its trace as a link or as text to copy.
  function exampleItem(x, withSeries, focus) {
    const id = typeof x.trace_id === 'string' ? x.trace_id : '';
    const span = typeof x.span_id === 'string' ? x.span_id : '';
    const href = traceHref(id, span);
    const reason = x.reason ? String(x.reason) : '';
    const slow = reason.startsWith('slower than');
    const trace = href
      ? el('a', {
        class: 'trace-id',
        href,
        target: '_blank',
        rel: 'noopener noreferrer',
        'data-focus': 'link\u0000' + focus + id,
        'aria-label': 'Trace ' + id + ' (opens in a new tab)',
        text: id,
      })
      : el('code', { class: 'trace-id', text: id });
    return el('li', { class: 'example', 'data-trace-id': id, 'data-span-id': span, 'data-bad': reason && !slow ? 'true' : null },
      el('div', { class: 'example-what' },
        reason ? el('span', { class: 'badge ' + (slow ? 'warn' : 'bad'), 'data-role': 'reason', text: reason }) : null,
        el('span', { 'data-role': 'duration', text: F.seconds(x.duration_seconds) }),
        el('time', { datetime: x.end, 'data-role': 'end', text: time(x.end) })),
      withSeries
        ? el('div', { class: 'example-series', 'data-role': 'series', text: x.service + ' · ' + x.feature + (dimsText(x.dimensions) ? ' · ' + dimsText(x.dimensions) : '') })
        : null,
      el('div', { class: 'example-trace' },
        el('span', { class: 'muted', text: 'Trace' }),
        trace,
        href ? null : el('button', {
          type: 'button',
          class: 'copy',
          'data-copy': id,
          'data-focus': 'copy\u0000' + focus + id,
          'aria-label': 'Copy trace id ' + id,
          text: 'Copy',
        }),
        href ? null : el('span', { class: 'copy-note muted', role: 'status' }),
        span ? el('span', { class: 'span-id muted', text: 'span ' + span }) : null));
  }

  // A list of example requests, or `empty` as text.
  function exampleList(list, name, empty, withSeries, focus) {
    const items = Array.isArray(list) ? list : [];
    if (!items.length) return el('p', { class: 'muted examples-empty', 'data-list': name, text: empty });
    return el('ul', { class: 'examples', 'data-list': name },
      ...items.map((x) => exampleItem(x, withSeries, (focus || name) + '\u0000')));
  }

  function linkHint() {
    return traceTemplate() ? null
      : el('p', { class: 'muted hint', text: 'Set links.trace_url in the configuration to open these traces at your tracing tool.' });
  }

  // The examples of the selected row: its latest bad requests and the slowest of the window.
  function examplesPanel(row) {
    const ex = state.examples && state.examples.key === row.key ? state.examples : { loading: true };
    const name = row.service + ' · ' + row.feature + (row.dims ? ' · ' + row.dims : '');
    let body;
    if (ex.error) {
      body = [el('p', { class: 'message error', text: failure('the example requests', ex.error) })];
    } else if (!ex.series) {
      body = [el('p', { class: 'muted', text: ex.loading ? 'Loading…' : 'No example requests are kept for this feature: only requests whose span was sampled are (sli.exemplars.enabled).' })];
    } else {
      const win = WINDOW_TEXT[state.window];
      body = [
        el('div', { class: 'examples-cols' },
          el('div', {},
            el('h4', { text: 'Latest bad requests' }),
            exampleList(ex.series.bad, 'bad', 'No bad request kept.', false)),
          el('div', {},
            el('h4', { text: 'Slowest requests, ' + win }),
            exampleList((ex.series.slowest || {})[state.window], 'slowest', 'No request kept in the ' + win + '.', false))),
        linkHint(),
      ];
    }
    return el('div', { id: 'sli-examples', class: 'examples-panel', role: 'region', 'aria-labelledby': 'sli-examples-h', 'aria-busy': ex.loading ? 'true' : null },
      el('h3', { id: 'sli-examples-h', text: 'Example requests: ' + name }),
      ...body);
  }

  function renderExamples() {
    const box = $('sli-examples');
    const row = state.rows.find((r) => r.key === state.selected);
    if (!box || !row) return;
    const mark = focusMark(box);
    const again = examplesPanel(row);
    box.replaceWith(again);
    restoreFocus(again, mark);
  }

  // Reads the selected series' examples (one series: the refresh stays cheap).
  async function loadExamples() {
    const key = state.selected;
    const row = state.rows.find((r) => r.key === key);
    if (!row) return;
    let next;
    try {
      const v = await api('/api/v1/exemplars?service=' + encodeURIComponent(row.service) +
        '&feature=' + encodeURIComponent(row.feature));
      next = { key, series: (v.series || []).find((s) => keyOf(s) === key) || null, error: null, loading: false };
    } catch (e) {
      next = { key, series: null, error: e, loading: false };
    }
    if (state.selected !== key) return; // another row was picked meanwhile
    state.examples = next;
    guarded('sli-message', renderExamples);
  }

  function toggleExamples(key) {
    if (state.selected === key) {
      state.selected = null;
      state.examples = null;
    } else {
      state.selected = key;
      state.examples = { key, series: null, error: null, loading: true };
      loadExamples();
    }
    renderTable();
  }

  // ---- SLOs --------------------------------------------------------------------------
  const ALERTS = {
    ok: ['ok', '✓ OK'],
    ticket: ['warn', '▲ TICKET'],
    page: ['bad', '■ PAGE'],
    no_data: ['neutral', '○ NO DATA'],
    insufficient: ['warn', '⚠ INSUFFICIENT DATA'],
  };

  // The failing requests behind an SLO, collapsed; `open` keeps it open across refreshes.
  function sloExamples(s, open) {
    const examples = Array.isArray(s.examples) ? s.examples : [];
    if (!examples.length) {
      return isNum(s.bad) && s.bad > 0
        ? el('p', { class: 'muted examples-empty', text: 'No example of its failing requests is kept (only sampled requests are).' })
        : null;
    }
    const d = el('details', { class: 'examples', 'data-key': s.name },
      el('summary', { 'data-focus': 'summary\u0000' + s.name },
        'Failing requests (' + examples.length + (examples.length === 1 ? ' example)' : ' examples)')),
      exampleList(examples, 'slo', '', true, 'slo\u0000' + s.name),
      linkHint());
    if (open) d.open = true;
    return d;
  }

  function sloCard(s, open) {
    const [cls, label] = ALERTS[s.alert] || ['neutral', String(s.alert).toUpperCase()];
    const what = s.sli === 'latency'
      ? 'requests faster than ' + F.seconds(s.threshold_seconds)
      : 'successful requests';
    const remaining = s.error_budget_remaining;
    const fill = el('div', { class: 'fill' });
    if (isNum(remaining)) {
      fill.style.width = (Math.min(Math.max(remaining, 0), 1) * 100).toFixed(1) + '%';
      if (remaining < 0.25) fill.classList.add(remaining <= 0 ? 'bad' : 'warn');
    }
    const burns = Object.entries(s.burn_rates || {});
    const burn = el('table', { class: 'burn' },
      el('caption', { text: 'Burn rate per window (1 = spending the budget exactly over ' + s.window + ')' }),
      el('thead', {}, el('tr', {}, ...burns.map(([w]) => el('th', { scope: 'col', text: w })))),
      el('tbody', {}, el('tr', {}, ...burns.map(([w, b]) => el('td', {
        class: isNum(b) && b >= 1 ? 'hot' : null,
        'data-window': w,
        text: F.burn(b),
      })))));
    const reasons = (s.alert_reasons || []);
    return el('article', { class: 'card', 'data-slo': s.name, 'data-alert': s.alert, 'aria-labelledby': 'slo-' + s.name },
      el('div', { class: 'card-head' },
        el('h3', { id: 'slo-' + s.name, text: s.name }),
        el('span', { class: 'badge ' + cls, 'data-role': 'alert', text: label })),
      el('p', { class: 'sub', 'data-role': 'what', text: s.service + ' · ' + s.feature + ' · ' + what + ' · ' + s.window + ' window' }),
      el('dl', {},
        el('dt', { text: 'SLI' }),
        el('dd', { 'data-role': 'sli', text: F.ratio(s.sli_value) + ' (objective ' + F.objective(s.objective) + ')' }),
        el('dt', { text: 'Requests' }),
        el('dd', { 'data-role': 'requests', text: F.count(s.total) + ' total, ' + F.count(s.bad) + ' bad' }),
        el('dt', { text: 'Error budget' }),
        el('dd', {},
          el('span', { 'data-role': 'budget', text: isNum(remaining) ? F.ratio(remaining) + ' remaining' : 'no data' }),
          el('div', { class: 'bar', 'aria-hidden': 'true' }, fill)),
        el('dt', { text: 'Exhausted in' }),
        el('dd', { 'data-role': 'eta', text: s.exhaustion_eta_seconds === null || s.exhaustion_eta_seconds === undefined ? 'not burning' : F.eta(s.exhaustion_eta_seconds) })),
      burns.length ? burn : null,
      reasons.length ? el('ul', { class: 'reasons' }, ...reasons.map((r) => el('li', { text: r }))) : null,
      sloExamples(s, open));
  }

  function renderSlos(res) {
    const box = $('slo-cards');
    if (res.status === 'rejected') {
      box.replaceChildren();
      message('slo-message', failure('SLOs', res.reason), res.reason.status !== 401);
      return;
    }
    const slos = res.value.slos || [];
    const order = { page: 0, ticket: 1, insufficient: 2, no_data: 3, ok: 4 };
    slos.sort((a, b) => (order[a.alert] ?? 5) - (order[b.alert] ?? 5) || String(a.name).localeCompare(String(b.name)));
    const open = new Set([...box.querySelectorAll('details[open]')].map((d) => d.dataset.key));
    const mark = focusMark(box);
    box.replaceChildren(...slos.map((s) => sloCard(s, open.has(s.name))));
    restoreFocus(box, mark);
    message('slo-message', slos.length ? '' : 'No SLOs are configured. Declare them under slos: in the configuration file (or with --openslo) to see error budgets and burn rates here.');
  }

  // ---- gaps --------------------------------------------------------------------------
  const GAP_NAMES = {
    orphan_spans: 'Orphan spans',
    missing_root: 'Missing root spans',
    invalid_spans: 'Invalid spans',
    silent_service: 'Silent service',
    metrics_without_traces: 'Metrics without traces',
    untraced_requests: 'Untraced requests',
    unattributed_spans: 'Unattributed spans',
  };

  function renderGaps(res) {
    const box = $('gap-list');
    if (res.status === 'rejected') {
      box.replaceChildren();
      message('gap-message', failure('gaps', res.reason), res.reason.status !== 401);
      return;
    }
    const gaps = res.value.gaps || [];
    const by = new Map();
    for (const g of gaps) {
      if (!by.has(g.service)) by.set(g.service, []);
      by.get(g.service).push(g);
    }
    const groups = [...by.entries()].map(([service, list]) => el('article', { class: 'gap-group', 'data-service': service, 'aria-labelledby': 'gaps-' + service },
      el('h3', { id: 'gaps-' + service }, service,
        el('span', { class: 'badge warn', text: '⚠ ' + list.length + (list.length === 1 ? ' gap' : ' gaps') })),
      el('ul', {}, ...list.map((g) => el('li', { 'data-kind': g.kind },
        el('strong', { text: GAP_NAMES[g.kind] || g.kind }),
        g.feature ? ' · ' + g.feature : null,
        el('div', { class: 'facts', text: F.count(g.count) + ' · ' + F.badRatio(g.ratio) + ' affected · since ' + time(g.since) + ' · last seen ' + time(g.last_seen) }),
        el('p', { text: g.detail }))))));
    box.replaceChildren(...groups);
    message('gap-message', gaps.length ? '' : '✓ No telemetry gaps in the last 5 minutes: traces are whole, every service reports, and request metrics match the spans.');
  }

  // ---- canary ------------------------------------------------------------------------
  function cohortsFrom(series, label) {
    const m = new Map();
    for (const s of series) {
      const v = s.dimensions && s.dimensions[label];
      if (!v) continue;
      if (!m.has(s.service)) m.set(s.service, new Set());
      m.get(s.service).add(v);
    }
    const out = new Map();
    for (const [svc, set] of m) if (set.size >= 2) out.set(svc, [...set].sort());
    return out;
  }

  function fillSelect(sel, values, preferred) {
    const current = sel.value || preferred;
    const same = sel.options.length === values.length && values.every((v, i) => sel.options[i].value === v);
    if (!same) sel.replaceChildren(...values.map((v) => el('option', { value: v, text: v })));
    if (values.includes(current)) sel.value = current;
  }

  // Messages about the form itself (canary off, nothing to compare) are replaced on every
  // refresh; a comparison's own message stays until the next comparison.
  function formMessage(text) {
    state.formMessage = !!text;
    message('canary-message', text);
  }

  function renderCanaryForm() {
    const info = state.info;
    const form = $('canary-form');
    const controls = form.querySelectorAll('select, button');
    if (!info) return;
    if (!info.canary) {
      controls.forEach((c) => { c.disabled = true; });
      formMessage('Canary analysis is off: set canary.attribute (for example service.version) in the configuration to compare versions.');
      return;
    }
    const series = (state.history && state.history.series) || state.rows;
    state.cohorts = cohortsFrom(series, info.canary.label);
    const services = [...state.cohorts.keys()].sort();
    const enabled = services.length > 0;
    controls.forEach((c) => { c.disabled = !enabled; });
    if (!enabled) {
      fillSelect($('canary-service'), [], '');
      fillSelect($('canary-baseline'), [], '');
      fillSelect($('canary-canary'), [], '');
      formMessage('No service has sent two values of ' + info.canary.attribute + ' in the last hour, so there is nothing to compare yet.');
      return;
    }
    if (state.formMessage) formMessage('');
    fillSelect($('canary-service'), services, services[0]);
    fillCohorts();
  }

  function fillCohorts() {
    const versions = state.cohorts.get($('canary-service').value) || [];
    fillSelect($('canary-baseline'), versions, versions[0]);
    const rest = versions.filter((v) => v !== $('canary-baseline').value);
    fillSelect($('canary-canary'), rest, rest[rest.length - 1]);
  }

  const VERDICTS = { pass: ['ok', '✓ PASS'], fail: ['bad', '✗ FAIL'], inconclusive: ['neutral', '? INCONCLUSIVE'] };

  function cohortCells(c) {
    c = c || {};
    return [
      el('td', { class: 'num', text: F.count(c.requests) }),
      el('td', { class: 'num', text: F.badRatio(c.error_ratio) }),
      el('td', { class: 'num', text: F.seconds(c.p95_seconds) }),
      el('td', { class: 'num', text: F.seconds(c.p99_seconds) }),
    ];
  }

  function renderVerdict(v) {
    const [cls, label] = VERDICTS[v.verdict] || ['neutral', String(v.verdict).toUpperCase()];
    const q = v.query || {};
    const rows = [{ feature: 'Overall', ...v }, ...(v.features || [])];
    const sub = (text) => el('th', { scope: 'col', class: 'num', text });
    return el('div', { 'data-verdict': v.verdict },
      el('div', { class: 'verdict' },
        el('span', { class: 'badge ' + cls, text: label }),
        el('span', { text: q.service + ': ' + q.canary + ' against ' + q.baseline + ' over ' + q.window + ' (' + q.attribute + ')' })),
      (v.reasons || []).length ? el('ul', {}, ...v.reasons.map((r) => el('li', { text: r }))) : null,
      (v.notes || []).length ? el('ul', { class: 'muted' }, ...v.notes.map((r) => el('li', { text: r }))) : null,
      el('div', { class: 'canary-examples' },
        el('h3', { text: 'Failing requests of canary ' + q.canary }),
        exampleList(v.canary_examples, 'canary', 'No failing request of the canary is kept for this window.', true),
        linkHint()),
      el('div', { class: 'table-wrap' },
        el('table', {},
          el('caption', { text: 'Baseline and canary figures, overall and per feature' }),
          el('thead', {},
            el('tr', {},
              el('td', {}),
              el('td', {}),
              el('th', { scope: 'colgroup', colspan: 4, text: 'Baseline ' + q.baseline }),
              el('th', { scope: 'colgroup', colspan: 4, text: 'Canary ' + q.canary })),
            el('tr', {},
              el('th', { scope: 'col', text: 'Feature' }),
              el('th', { scope: 'col', text: 'Verdict' }),
              sub('Requests'), sub('Errors'), sub('p95'), sub('p99'),
              sub('Requests'), sub('Errors'), sub('p95'), sub('p99'))),
          el('tbody', {}, ...rows.map((r) => {
            const [c, l] = VERDICTS[r.verdict] || ['neutral', String(r.verdict)];
            return el('tr', {},
              el('th', { scope: 'row', text: r.feature }),
              el('td', {}, el('span', { class: 'badge ' + c, text: l })),
              ...cohortCells(r.baseline), ...cohortCells(r.canary));
          })))));
  }

  async function runCanary(ev) {
    ev.preventDefault();
    const p = new URLSearchParams({
      service: $('canary-service').value,
      baseline: $('canary-baseline').value,
      canary: $('canary-canary').value,
      window: $('canary-window').value,
    });
    const out = $('canary-result');
    state.formMessage = false;
    message('canary-message', 'Comparing…');
    try {
      const v = await api('/api/v1/canary?' + p.toString());
      message('canary-message', '');
      out.replaceChildren(renderVerdict(v));
    } catch (e) {
      out.replaceChildren();
      if (e.status === 404) message('canary-message', 'Canary analysis is off on this instance (canary.attribute is empty).');
      else message('canary-message', failure('the canary verdict', e), e.status !== 401);
    }
  }

  // ---- feature flags -----------------------------------------------------------------
  // Each flag (service, flag key) with its variants' figures over the page's window, which
  // variants the API ties errors to, and per feature on demand. Flag keys, variants and
  // features come from telemetry: text only, and matched by dataset, never by selector.
  const flagKey = (f) => f.service + '\u0000' + f.flag;

  // "p = 0.032", "p <0.001"; with the Holm adjustment it was decided on.
  function pText(t) {
    const adj = t.adjusted;
    const p = F.pValue(adj ? adj.p_value : t.p_value);
    return 'p ' + (p.startsWith('<') ? '' : '= ') + p +
      (adj ? ' (Holm-adjusted over ' + adj.tests + ' variants)' : '');
  }

  function figureCells(x) {
    const lat = x.latency_seconds || {};
    const low = isNum(x.success_ratio) && x.success_ratio < 0.99;
    return [
      el('td', { class: 'num', 'data-role': 'requests', text: F.count(x.requests) }),
      el('td', { class: 'num', 'data-role': 'errors', text: F.count(x.errors) }),
      el('td', { class: 'num' + (low ? ' low' : ''), 'data-role': 'success', text: (low ? '▼ ' : '') + F.ratio(x.success_ratio) }),
      el('td', { class: 'num', 'data-role': 'p95', text: F.seconds(lat.p95) }),
      el('td', { class: 'num', 'data-role': 'p99', text: F.seconds(lat.p99) }),
    ];
  }

  // The error test of one variant: tied (a badge, not colour alone), not tied, or untested.
  function testCell(v, tied) {
    const t = v.error_test;
    if (!t) return el('td', { class: 'muted', 'data-role': 'test', text: 'not tested: too few requests' });
    return el('td', { 'data-role': 'test' },
      tied ? el('span', { class: 'badge bad', 'data-role': 'tied', text: '▲ errors tied to this variant' }) : el('span', { class: 'muted', text: 'not tied' }),
      ' ',
      el('span', { class: 'p-value', 'data-role': 'p', text: pText(t) }));
  }

  const colHead = (text, num) => el('th', { scope: 'col', class: num ? 'num' : null, text });
  const figureHeads = () => [colHead('Requests', true), colHead('Errors', true), colHead('Success', true), colHead('p95', true), colHead('p99', true)];

  // The variants in each feature, feature by feature.
  function flagFeatures(f, open, win) {
    const by = new Map();
    for (const v of f.variants || []) {
      for (const x of v.features || []) {
        if (!by.has(x.feature)) by.set(x.feature, []);
        by.get(x.feature).push([v.variant, x]);
      }
    }
    if (by.size === 0) return null;
    const rows = [];
    for (const feature of [...by.keys()].sort()) {
      for (const [variant, x] of by.get(feature)) {
        rows.push(el('tr', { 'data-feature': feature, 'data-variant': variant },
          el('th', { scope: 'row', text: feature }),
          el('td', { text: variant }),
          ...figureCells(x)));
      }
    }
    const d = el('details', { class: 'flag-features', 'data-key': flagKey(f) },
      el('summary', { 'data-focus': 'features\u0000' + flagKey(f) },
        'Per feature (' + by.size + (by.size === 1 ? ' feature)' : ' features)')),
      el('div', { class: 'table-wrap' },
        el('table', {},
          el('caption', { text: 'Variants of ' + f.flag + ' per feature, ' + win }),
          el('thead', {}, el('tr', {}, colHead('Feature'), colHead('Variant'), ...figureHeads())),
          el('tbody', {}, ...rows))));
    if (open) d.open = true;
    return d;
  }

  function flagCard(f, i, open, win) {
    const tied = new Set(f.errors_tied_to || []);
    const variants = f.variants || [];
    const tested = variants.some((v) => v.error_test);
    const [cls, label] = tied.size
      ? ['bad', '▲ errors tied to ' + [...tied].join(', ')]
      : tested ? ['ok', '✓ errors tied to no variant'] : ['neutral', '○ not tested: too few requests'];
    const id = 'flag-' + i;
    return el('article', { class: 'flag', 'data-service': f.service, 'data-flag': f.flag, 'aria-labelledby': id },
      el('div', { class: 'card-head' },
        el('div', {},
          el('h3', { id, text: f.flag }),
          el('p', { class: 'sub', 'data-role': 'service', text: 'Service ' + f.service + ' · ' + variants.length + (variants.length === 1 ? ' variant' : ' variants') })),
        el('span', { class: 'badge ' + cls, 'data-role': 'verdict', text: label })),
      el('div', { class: 'table-wrap' },
        el('table', {},
          el('caption', { text: 'Variants of ' + f.flag + ', ' + win }),
          el('thead', {}, el('tr', {}, colHead('Variant'), ...figureHeads(), colHead('Error test'))),
          el('tbody', {}, ...variants.map((v) => el('tr', { 'data-variant': v.variant, 'data-tied': tied.has(v.variant) ? 'true' : null },
            el('th', { scope: 'row', text: v.variant }),
            ...figureCells(v),
            testCell(v, tied.has(v.variant))))))),
      flagFeatures(f, open, win));
  }

  // What the caps and rules left out, since start; nothing when nothing was.
  function flagNotes(v) {
    const d = v.dropped || {}, fo = v.folded || {}, lim = v.limits || {};
    const parts = [];
    const add = (n, text) => { if (isNum(n) && n > 0) parts.push(F.count(n) + ' ' + text); };
    add(d.no_variant, 'named no variant');
    add(d.unattributed, 'were on a child span whose entry span (same trace and service) came in another export request');
    add(d.not_listed, 'were of flags outside flags.keys');
    add(d.request_limit, 'were beyond the limits of one request (64 flags, two flag observations per span)');
    add(d.max_flags, 'were of flags beyond flags.max_flags (' + F.count(lim.max_flags) + ')');
    const folded = [];
    if (isNum(fo.max_variants) && fo.max_variants > 0) folded.push(F.count(fo.max_variants) + ' are counted under their flag’s variant __overflow__ (flags.max_variants ' + F.count(lim.max_variants) + ')');
    if (isNum(fo.max_series) && fo.max_series > 0) folded.push(F.count(fo.max_series) + ' are in the overflow series, not shown (flags.max_series ' + F.count(lim.max_series) + ')');
    const text = [];
    if (parts.length) text.push('Evaluations not counted since start: ' + parts.join('; ') + '.');
    if (folded.length) text.push('Of those counted since start, ' + folded.join('; ') + '.');
    return text.join(' ');
  }

  function renderFlags(res, win) {
    const box = $('flag-list');
    const notes = $('flag-notes');
    $('flags-window').textContent = WINDOW_TEXT[win];
    if (state.flagsOff) {
      box.replaceChildren();
      notes.hidden = true;
      message('flag-message', 'Feature-flag cohorts are off on this instance (flags.enabled is false): variants’ figures are not kept.');
      return;
    }
    if (res.status === 'rejected') {
      box.replaceChildren();
      notes.hidden = true;
      message('flag-message', failure('feature flags', res.reason), res.reason.status !== 401);
      return;
    }
    const flags = res.value.flags || [];
    const open = new Set([...box.querySelectorAll('details[open]')].map((d) => d.dataset.key));
    const mark = focusMark(box);
    const w = WINDOW_TEXT[win];
    box.replaceChildren(...flags.map((f, i) => flagCard(f, i, open.has(flagKey(f)), w)));
    restoreFocus(box, mark);
    const n = flagNotes(res.value);
    notes.hidden = !n;
    notes.textContent = n;
    message('flag-message', flags.length ? '' : 'No feature-flag evaluations in the ' + w + '. Record them on your entry spans as feature_flag.evaluation events (feature_flag.key, feature_flag.result.variant), as the OpenFeature OpenTelemetry hooks do.');
  }

  // ---- empty state, auth -------------------------------------------------------------
  function renderWelcome(show) {
    const w = $('welcome');
    w.hidden = !show;
    if (!show) return;
    const info = state.info;
    if (!info) {
      $('welcome-env').textContent = 'export OTEL_EXPORTER_OTLP_ENDPOINT=<the OTLP/HTTP address of this instance (port 4318 by default)>';
      $('welcome-cmd').textContent = '(the receiver addresses could not be read)';
      return;
    }
    $('welcome-env').textContent = info.env.map(([k, v]) => 'export ' + k + '=' + v).join('\n') +
      '\n# or OTLP/gRPC: OTEL_EXPORTER_OTLP_ENDPOINT=' + info.otlp.grpc.endpoint + ' with OTEL_EXPORTER_OTLP_PROTOCOL=grpc';
    $('welcome-cmd').textContent = info.test_command;
  }

  function renderAuth() {
    const needs = state.needsToken;
    $('token-button').hidden = !needs && !token();
    if (needs) {
      const first = $('auth').hidden;
      $('auth').hidden = false;
      message('auth-message', token() ? 'The token in this tab was refused; paste the current one.' : '', true);
      if (first && !document.activeElement.closest('form')) $('token').focus();
    }
  }

  // ---- refresh loop ------------------------------------------------------------------
  function status(text) { $('status').textContent = text; }

  function schedule() {
    clearTimeout(state.timer);
    if (!state.paused && !document.hidden) state.timer = setTimeout(refresh, REFRESH_MS);
  }

  function indexHistory(h) {
    h.index = new Map();
    for (const s of h.series || []) h.index.set(keyOf(s), s);
    return h;
  }

  async function refresh() {
    if (state.busy) return;
    state.busy = true;
    clearTimeout(state.timer);
    state.needsToken = false;
    const win = state.window;
    const wantHistory = !state.history || Date.now() - state.historyAt > HISTORY_MS;
    try {
      // Settled at once (a rejection handled only later counts as unhandled meanwhile).
      const settle = (p) => p.then(
        (value) => ({ status: 'fulfilled', value }),
        (reason) => ({ status: 'rejected', reason }));
      const pending = [
        settle(api('/api/v1/slos')),
        settle(api('/api/v1/gaps')),
        settle(wantHistory ? api('/api/v1/history?window=1h') : Promise.resolve(null)),
        settle(state.info ? Promise.resolve(state.info) : api('/api/v1/info')),
        settle(state.flagsOff ? Promise.resolve(null) : api('/api/v1/flags?window=' + encodeURIComponent(win))),
      ];
      // The table first, as soon as its figures arrive; trends fill in with the history.
      const [slis] = await Promise.allSettled([api('/api/v1/slis?window=' + encodeURIComponent(win))]);
      guarded('sli-message', () => {
        if (slis.status === 'fulfilled') {
          state.rows = rowsFrom(slis.value, win);
          message('sli-message', '');
        } else {
          state.rows = [];
          message('sli-message', failure('SLIs', slis.reason), slis.reason.status !== 401);
        }
        renderTable();
      });
      if (state.refreshes === 0 && performance.mark) performance.mark('otel-sli-first-render');
      const [slos, gaps, hist, info, flags] = await Promise.all(pending);
      // Flags off (404): the configuration does not change while the process runs.
      if (flags.status === 'rejected' && flags.reason.status === 404) state.flagsOff = true;
      if (info.status === 'fulfilled') {
        state.info = info.value;
        $('version').textContent = 'v' + state.info.version;
      }
      if (hist.status === 'fulfilled' && hist.value) {
        state.history = indexHistory(hist.value);
        state.historyAt = Date.now();
        guarded('sli-message', renderTable);
      }
      let empty = false;
      if (slis.status === 'fulfilled' && state.rows.length === 0) {
        // Nothing in this window: is there anything at all?
        try {
          const all = await api('/api/v1/slis?window=all');
          empty = (all.slis || []).length === 0;
        } catch (_) { empty = false; }
      }
      guarded('sli-message', () => renderWelcome(empty));
      guarded('slo-message', () => renderSlos(slos));
      guarded('gap-message', () => renderGaps(gaps));
      guarded('canary-message', renderCanaryForm);
      guarded('flag-message', () => renderFlags(flags, win));
      if (state.selected) await loadExamples();
      renderAuth();
      const sources = state.flagsOff ? [slis, slos, gaps] : [slis, slos, gaps, flags];
      const failed = sources.filter((r) => r.status === 'rejected').length;
      state.refreshes += 1;
      document.body.dataset.refreshes = String(state.refreshes);
      status((failed ? failed + ' of ' + sources.length + ' sources failed · ' : '') + 'Updated ' + new Date().toLocaleTimeString() +
        (state.paused ? ' · updates paused' : ' · next update in 5 s'));
    } catch (e) {
      status('Update failed: ' + e.message);
    } finally {
      state.busy = false;
      schedule();
    }
  }

  function sortBy(key) {
    if (state.sort.key === key) state.sort.dir = -state.sort.dir;
    else state.sort = { key, dir: ['service', 'feature', 'quality'].includes(key) ? 1 : -1 };
    renderTable();
  }

  function start() {
    $('window').value = state.window;
    $('window').addEventListener('change', (e) => { state.window = e.target.value; refresh(); });
    $('filter').addEventListener('input', (e) => { state.filter = e.target.value; renderTable(); });
    for (const b of document.querySelectorAll('#sli-table thead button[data-sort]')) {
      b.addEventListener('click', () => sortBy(b.dataset.sort));
    }
    // One listener each for every row's Examples button and every Copy button.
    $('sli-body').addEventListener('click', (e) => {
      const b = e.target.closest('button.examples-toggle');
      if (b) toggleExamples(b.dataset.key);
    });
    document.addEventListener('click', (e) => {
      const b = e.target.closest('button.copy[data-copy]');
      if (b) copyId(b);
    });
    $('pause').addEventListener('click', () => {
      state.paused = !state.paused;
      $('pause').setAttribute('aria-pressed', String(state.paused));
      $('pause').textContent = state.paused ? 'Resume updates' : 'Pause updates';
      if (state.paused) { clearTimeout(state.timer); status('Updates paused'); } else refresh();
    });
    $('auth-form').addEventListener('submit', (e) => {
      e.preventDefault();
      try { sessionStorage.setItem(TOKEN_KEY, $('token').value.trim()); } catch (_) { /* storage off: nothing kept */ }
      $('token').value = '';
      $('auth').hidden = true;
      refresh();
    });
    $('forget').addEventListener('click', () => {
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* nothing kept */ }
      refresh();
    });
    $('token-button').addEventListener('click', () => { $('auth').hidden = !$('auth').hidden; if (!$('auth').hidden) $('token').focus(); });
    $('copy-cmd').addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText($('welcome-cmd').textContent);
        $('copy-status').textContent = 'Copied.';
      } catch (_) {
        $('copy-status').textContent = 'Copying is not allowed here: select the command and copy it.';
      }
    });
    $('canary-service').addEventListener('change', fillCohorts);
    $('canary-baseline').addEventListener('change', fillCohorts);
    $('canary-form').addEventListener('submit', runCanary);
    document.addEventListener('visibilitychange', () => {
      if (document.hidden) clearTimeout(state.timer);
      else if (!state.paused) refresh();
    });
    refresh();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
