/**
 * numberSize (lib/item-size.ts) finds the first significant digit of a long `0.`-spelling from its
 * end (issue 18): it must give exactly what reading the leading characters one by one gave, for any
 * text, DynamoDB's spellings or not.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { numberSize } from '../../lib/item-size.ts';
import { tryNormalizeNumber } from '../../lib/numbers.ts';

/** numberSize as it was before (at a610b6d), the reference. */
function numberSizeByLeadingScan(text: string): number {
  const n = text.length;
  let point = text.indexOf('.');
  if (point === -1) point = n;
  const leading = /[-0.]*/y;
  leading.lastIndex = 0;
  leading.test(text);
  const first = leading.lastIndex;
  if (first === n) return 1;
  let last = n - 1;
  while (text.charCodeAt(last) === 0x30 || text.charCodeAt(last) === 0x2e) last--;
  const high = first < point ? point - first - 1 : point - first;
  const low = last < point ? point - last - 1 : point - last;
  const pairs = Math.floor(high / 2) - Math.floor(low / 2) + 1;
  return 1 + pairs + (text.charCodeAt(0) === 0x2d && pairs < 20 ? 1 : 0);
}

describe('numberSize: the first significant digit found from the end', () => {
  const digits = (min: number, max: number) =>
    fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: min, maxLength: max, size: 'max' });
  // DynamoDB's spellings below 1: `-`? `0.`, zeros, then significant digits ending in a non-zero one.
  const small = fc
    .tuple(fc.boolean(), fc.integer({ min: 0, max: 140 }), fc.constantFrom(...'123456789'), digits(0, 45), fc.constantFrom(...'123456789'))
    .map(([neg, zeros, lead, mid, tail]) => `${neg ? '-' : ''}0.${'0'.repeat(zeros)}${lead}${mid}${tail}`);
  // Near misses and other texts: padding, dots, signs, exponents, zeros only.
  const other = fc.oneof(
    fc.string({ unit: fc.constantFrom(...'-0.123e+'), maxLength: 60 }),
    fc
      .tuple(fc.integer({ min: 0, max: 300 }), fc.string({ unit: fc.constantFrom(...'0.-19e'), maxLength: 45 }))
      .map(([z, t]) => `0.${'0'.repeat(z)}${t}`),
    // Mostly zeros after the first digits: more than 38 significant digits, a digit before the last 38 characters.
    fc
      .tuple(
        fc.boolean(),
        fc.integer({ min: 0, max: 300 }),
        fc.string({ unit: fc.constantFrom('0', '0', '0', '0', '1', '9'), maxLength: 90, size: 'max' }),
      )
      .map(([neg, z, t]) => `${neg ? '-' : ''}0.${'0'.repeat(z)}${t}`),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map(String),
  );

  test('property: the same size as the leading scan, for DynamoDB spellings and any other text', () => {
    fc.assert(
      fc.property(fc.oneof(small, other), (text) => {
        assert.equal(numberSize(text), numberSizeByLeadingScan(text), text);
        const canonical = tryNormalizeNumber(text);
        if (canonical !== undefined) assert.equal(numberSize(canonical), numberSizeByLeadingScan(canonical), canonical);
      }),
      { numRuns: 5000 },
    );
  });

  test('the longest spelling (`-0.`, 129 zeros, 38 digits) and its neighbours', () => {
    for (const text of [
      `-0.${'0'.repeat(129)}12345678901234567890123456789012345678`,
      `0.${'0'.repeat(129)}12345678901234567890123456789012345678`,
      `-0.${'0'.repeat(129)}1`,
      `0.${'0'.repeat(300)}1`,
      `0.${'0'.repeat(10)}1${'0'.repeat(40)}1`,
      '0.1',
      '-0.5',
      '0',
      '-0',
      '0.',
    ]) {
      assert.equal(numberSize(text), numberSizeByLeadingScan(text), text);
    }
  });
});
