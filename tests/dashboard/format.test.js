// Unit tests for the dashboard's number formatters (src/api/dashboard/format.js), run by
// `cargo test` through tests/dashboard_format.rs with Node's built-in test runner:
//   node --test tests/dashboard/format.test.js
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const f = require('../../src/api/dashboard/format.js');

const cases = (fn, table) => {
  for (const [input, want] of table) {
    assert.equal(fn(input), want, `${fn.name || 'format'}(${input})`);
  }
};

test('seconds: three significant digits, unit chosen by magnitude', () => {
  cases(f.seconds, [
    [0.1, '100 ms'],
    [0.15, '150 ms'],
    [0.149946367, '150 ms'],
    [0.229638143, '230 ms'],
    [0.2296, '230 ms'],
    [1.0, '1.00 s'],
    [1.5, '1.50 s'],
    [10, '10.0 s'],
    [100, '100 s'],
    [0.0001, '100 µs'],
    [0.00099, '990 µs'],
    [0.001, '1.00 ms'],
    [0.0123, '12.3 ms'],
    [0.120061951, '120 ms'],
    [1.200619135, '1.20 s'],
    [0.9996, '1.00 s'],
    [0.0009996, '1.00 ms'],
    [999.4, '999 s'],
    [999.6, '1,000 s'],
    [12345.6, '12,346 s'],
    [5e-7, '500 ns'],
    [0, '0 s'],
    [null, '—'],
    [undefined, '—'],
    [NaN, '—'],
  ]);
});

test('seconds never drops a significant zero (the 10x misreading)', () => {
  for (let ms = 1; ms < 1000; ms += 1) {
    const text = f.seconds(ms / 1000);
    const shown = Number(text.replace(/ (ms|s)$/, '')) * (text.endsWith(' ms') ? 1 : 1000);
    assert.ok(Math.abs(shown - ms) / ms < 0.005, `${ms} ms shown as ${text}`);
  }
});

test('ratios: two decimals, rounded down, exact 0 and 1 only at the ends', () => {
  cases(f.ratio, [
    [0, '0%'],
    [0.5, '50.00%'],
    [0.29, '29.00%'],
    [0.99, '99.00%'],
    [0.999, '99.90%'],
    [0.9999, '99.99%'],
    [0.99999, '99.99%'],
    [0.999999999, '99.99%'],
    [1, '100%'],
    [0.8, '80.00%'],
    [1e-9, '0.01%'],
    [-24, '-2400.00%'],
    [null, '—'],
  ]);
});

test('bad ratios (errors, affected shares): two decimals, rounded up', () => {
  cases(f.badRatio, [
    [0, '0%'],
    [0.5, '50.00%'],
    [0.01, '1.00%'],
    [0.2, '20.00%'],
    [0.00001, '0.01%'],
    [0.99991, '99.99%'],
    [0.1234, '12.34%'],
    [0.12341, '12.35%'],
    [1, '100%'],
  ]);
});

test('objectives are shown as configured', () => {
  cases(f.objective, [
    [0.999, '99.9%'],
    [0.99, '99%'],
    [0.9995, '99.95%'],
    [0.5, '50%'],
    [null, '—'],
  ]);
});

test('rates: two decimals below 100, whole with separators above', () => {
  cases(f.rate, [
    [0.05, '0.05'],
    [9.76, '9.76'],
    [1000, '1,000'],
    [12345, '12,345'],
    [0, '0'],
    [0.004, '<0.01'],
    [0.005, '0.01'],
    [99.994, '99.99'],
    [99.996, '100'],
    [100, '100'],
    [1234567.4, '1,234,567'],
    [null, '—'],
  ]);
});

test('burn rates share the decimal rule', () => {
  cases(f.burn, [
    [0, '0'],
    [1, '1.00'],
    [14.4, '14.40'],
    [50, '50.00'],
    [1000, '1,000'],
  ]);
});

test('counts are whole with separators', () => {
  cases(f.count, [
    [0, '0'],
    [1, '1'],
    [999, '999'],
    [1000, '1,000'],
    [2100, '2,100'],
    [12345.4, '12,345'],
    [null, '—'],
  ]);
});

test('time to budget exhaustion', () => {
  cases(f.eta, [
    [0, 'exhausted'],
    [-5, 'exhausted'],
    [30, '30s'],
    [59.5, '1m'],
    [90, '1m'],
    [3600, '1h 0m'],
    [3 * 3600 + 20 * 60, '3h 20m'],
    [2 * 86400 + 5 * 3600 + 59, '2d 5h'],
    [null, '—'],
  ]);
});
