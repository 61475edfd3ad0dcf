// otel-sli dashboard: how every number on the page is written, one formatter per unit.
// Each is a pure function of the API's value; the rules are stated in docs/dashboard.md
// ("How numbers are shown") and tested by tests/dashboard/format.test.js (Node's test
// runner) and tests/dashboard.rs (the page in Chromium against the API's values).
// Loaded by the page before dashboard.js (as `OtelSliFormat`) and by Node as a module.
'use strict';
(function (root) {
  const DASH = '—';
  const isNum = (x) => typeof x === 'number' && Number.isFinite(x);

  // 12345 -> "12,345": a whole number with thousands separators (no locale: the same
  // everywhere).
  function whole(x) {
    const r = Math.round(x);
    const digits = String(Math.abs(r)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    return (r < 0 ? '-' : '') + digits;
  }

  // Three significant digits of v (1 <= v < 1000), trailing zeros kept: 1.00, 10.0, 150.
  const sig3 = (v) => v.toPrecision(3);

  // Seconds: rounded to three significant digits, then written in the largest of s, ms, µs
  // and ns in which the rounded value is at least 1 (0.1 -> "100 ms", 0.2296 -> "230 ms",
  // 1.5 -> "1.50 s", 0.00099 -> "990 µs"); 1,000 s and more whole ("1,234 s").
  const UNITS = [[1, 's'], [1e-3, 'ms'], [1e-6, 'µs'], [1e-9, 'ns']];
  function seconds(s) {
    if (!isNum(s)) return DASH;
    if (s === 0) return '0 s';
    const a = Math.abs(s);
    if (a >= 999.5) return (s < 0 ? '-' : '') + whole(a) + ' s';
    const r = Number(a.toPrecision(3));
    const [f, unit] = UNITS.find(([f]) => r >= f) || UNITS[UNITS.length - 1];
    return (s < 0 ? '-' : '') + sig3(r / f) + ' ' + unit;
  }

  // A share, as a percentage with two decimals rounded towards `toward` ('down' for shares
  // where more is better, 'up' where more is worse), so a figure never reads better than it
  // is. Exactly 0 and 1 are "0%" and "100%"; anything between never rounds to either.
  function percent(r, toward) {
    if (!isNum(r)) return DASH;
    if (r === 0) return '0%';
    if (r === 1) return '100%';
    const scaled = r * 10000;
    // The epsilon undoes float error (0.29 * 10000 = 2899.9999999999995), far below 0.01%.
    let hundredths = toward === 'up' ? Math.ceil(scaled - 1e-6) : Math.floor(scaled + 1e-6);
    if (r > 0 && r < 1) hundredths = Math.min(Math.max(hundredths, 1), 9999);
    return (hundredths / 100).toFixed(2) + '%';
  }
  // Success ratio, trace coverage, SLI value, error budget remaining: rounded down.
  const ratio = (r) => percent(r, 'down');
  // Error ratio, share of requests affected by a gap: rounded up.
  const badRatio = (r) => percent(r, 'up');

  // An SLO objective as configured: 0.999 -> "99.9%", 0.99 -> "99%" (exact, no rounding
  // beyond four decimals of a percent).
  function objective(o) {
    return isNum(o) ? String(Number((o * 100).toFixed(4))) + '%' : DASH;
  }

  // A plain decimal: two decimals below 100 ("0.05", "9.76"), whole with separators from
  // 100 ("1,000", "12,345"); a positive value below 0.005 is "<0.01", never "0.00".
  function decimal(x) {
    if (!isNum(x)) return DASH;
    if (x === 0) return '0';
    const two = Math.round(x * 100) / 100;
    if (Math.abs(two) >= 100) return whole(x);
    if (x > 0 && two === 0) return '<0.01';
    return two.toFixed(2);
  }
  // Requests per second.
  const rate = decimal;
  // Burn rate (1 = spending the budget exactly over the SLO window).
  const burn = decimal;

  // A count of requests or events: whole, with separators (sampling estimates are rounded).
  function count(x) {
    return isNum(x) ? whole(x) : DASH;
  }

  // A p-value (flag variants' error tests): two significant digits rounded up, so that it
  // never reads more significant than it is ("0.032", "0.50"); below 0.001 "<0.001"; 1 and
  // anything that rounds up to 1 is "1".
  function pValue(p) {
    if (!isNum(p)) return DASH;
    if (p < 0.001) return '<0.001';
    if (p >= 1) return '1';
    const step = Math.pow(10, Math.floor(Math.log10(p)) - 1);
    // The epsilon undoes float error (0.032 / 0.001 = 32.00000000000001), as in percent().
    const up = Math.ceil(p / step - 1e-6) * step;
    return up >= 1 ? '1' : up.toPrecision(2);
  }

  // Time left until the error budget runs out: "exhausted" at 0, else the two largest units
  // ("45s", "12m", "3h 20m", "2d 5h"), rounded up below a minute and down above.
  function eta(sec) {
    if (!isNum(sec)) return DASH;
    if (sec <= 0) return 'exhausted';
    if (sec < 60) return Math.ceil(sec) === 60 ? '1m' : Math.ceil(sec) + 's';
    const d = Math.floor(sec / 86400);
    const h = Math.floor((sec % 86400) / 3600);
    const m = Math.floor((sec % 3600) / 60);
    if (d > 0) return d + 'd ' + h + 'h';
    if (h > 0) return h + 'h ' + m + 'm';
    return m + 'm';
  }

  const api = Object.freeze({ isNum, seconds, ratio, badRatio, objective, rate, burn, count, pValue, eta });
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.OtelSliFormat = api;
})(typeof globalThis === 'object' ? globalThis : this);
