/**
 * Issue 18, finding 1: a number is bounded before any pattern reads it, so every number costs a
 * small constant amount of work. Linearity is shown by construction, not by timing: the length
 * check is the first thing normalizeNumber does (a text over the bound gets the length refusal
 * even where the pattern would have refused it for another reason), the bound is a constant, and
 * the longest spelling a stored number needs fits under it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  canonicalDigits,
  MAX_NUMBER_LENGTH,
  normalizeNumber,
  readSpelledNumber,
  spelledDigits,
  spelledEnd,
  tryNormalizeNumber,
} from '../../lib/numbers.ts';
import { ValidationError } from '../../lib/index.ts';

const D38 = '12345678901234567890123456789012345678';

function refusal(text: string, field = 'body.n'): ValidationError {
  try {
    normalizeNumber(text, field);
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    return err;
  }
  assert.fail(`'${text.slice(0, 40)}…' was accepted`);
}

describe('normalizeNumber: bounded before any pattern runs', () => {
  test('the bound holds the longest spelling of any storable number without redundant characters', () => {
    // 38 significant digits at the bottom of the range, negative: 170 characters.
    const longest = `-0.${'0'.repeat(129)}${D38}`;
    assert.equal(longest.length, 170);
    assert.ok(MAX_NUMBER_LENGTH >= longest.length);
    assert.equal(normalizeNumber(longest, 'n'), longest);
    // The largest magnitude in plain decimal is shorter.
    assert.equal(normalizeNumber(`-${D38}${'0'.repeat(88)}`, 'n').length, 127);
  });

  test('a spelling of exactly MAX_NUMBER_LENGTH characters is read; one more is refused by length', () => {
    const padded = `${'0'.repeat(MAX_NUMBER_LENGTH - 3)}1.5`;
    assert.equal(padded.length, MAX_NUMBER_LENGTH);
    assert.equal(normalizeNumber(padded, 'n'), '1.5');
    const err = refusal(`0${padded}`);
    assert.equal(err.field, 'body.n');
    assert.match(
      err.message,
      new RegExp(
        `^body\\.n: a number of ${MAX_NUMBER_LENGTH + 1} characters is longer than any DynamoDB can store \\(${MAX_NUMBER_LENGTH}\\)$`,
      ),
    );
  });

  test('the length is checked first: over the bound, every other verdict gives way to it', () => {
    // Each of these is refused for another reason by the pattern or the digit count when short;
    // over the bound the length refusal comes first, so nothing else read the text.
    const over = MAX_NUMBER_LENGTH + 1;
    const cases = [
      `x${'1'.repeat(over - 1)}`, // not a number
      `1${'0'.repeat(over - 2)}1`, // the quadratic case of issue 18: more than 38 significant digits
      `1e${'9'.repeat(over - 2)}`, // out of range
      `${'1'.repeat(over - 1)}.`, // 38+ digits
    ];
    for (const text of cases) {
      assert.equal(text.length, over);
      assert.match(refusal(text).message, /longer than any DynamoDB can store/, text.slice(0, 20));
    }
    // Below the bound the same shapes get their own verdicts.
    assert.match(refusal('x1').message, /is not a number/);
    assert.match(refusal(`1${'0'.repeat(40)}1`).message, /more than 38 significant digits/);
  });

  test('a megabyte of digits is refused by its length alone, and the message does not quote it', () => {
    const text = `1${'0'.repeat(1_000_000)}1`;
    const err = refusal(text);
    assert.match(err.message, /a number of 1000002 characters/);
    assert.ok(err.message.length < 200);
  });

  test('tryNormalizeNumber gives the same spelling, or undefined where normalizeNumber throws', () => {
    for (const text of [
      '1.50',
      '-0',
      '1e2',
      `0.${'0'.repeat(129)}1`,
      D38,
      'abc',
      '1e126',
      `1${'0'.repeat(40)}1`,
      '1'.repeat(MAX_NUMBER_LENGTH + 1),
    ]) {
      let expected: string | undefined;
      try {
        expected = normalizeNumber(text, 'n');
      } catch {
        expected = undefined;
      }
      assert.equal(tryNormalizeNumber(text), expected, text.slice(0, 20));
    }
  });
});

describe('normalizeNumber: a spelling already DynamoDB’s is taken as it is', () => {
  test('property: the one-pass check agrees with the general path (a leading + forces the general path)', () => {
    const digits = (max: number) => fc.string({ unit: fc.constantFrom('0', '1', '5', '9'), maxLength: max });
    // Plain decimals, and digits moved near DynamoDB's bounds by up to 140 zeros before or after them.
    const spelling = fc
      .tuple(fc.constantFrom('', '-'), digits(45), fc.option(digits(45)), fc.nat({ max: 140 }), fc.constantFrom('plain', 'small', 'large'))
      .map(([sign, int, frac, zeros, shape]) => {
        const fraction = frac === null ? '' : `.${frac}`;
        if (shape === 'small') return { sign, body: `0.${'0'.repeat(zeros)}${int || '1'}` };
        if (shape === 'large') return { sign, body: `${int || '1'}${'0'.repeat(zeros)}${fraction}` };
        return { sign, body: `${int || '0'}${fraction}` };
      });
    fc.assert(
      fc.property(spelling, ({ sign, body }) => {
        // `+body` is never a spelling DynamoDB answers, so it always takes the general path.
        const general = tryNormalizeNumber(`+${body}`);
        const expected = general === undefined || sign === '' ? general : negate(general);
        assert.equal(tryNormalizeNumber(`${sign}${body}`), expected, `${sign}${body}`);
      }),
      { numRuns: 20_000 },
    );
  });
});

function negate(canonical: string): string {
  return canonical === '0' ? '0' : `-${canonical}`;
}

describe("canonicalDigits: the one-pass check of DynamoDB's spelling", () => {
  test('property: ≥ 0 exactly for the spellings normalizeNumber keeps as they are, with their significant digits', () => {
    // Spellings of every shape: signs, leading and trailing zeros, points, exponents, long zero runs, 38 and 39 digits.
    const digits = fc.stringMatching(/^\d{0,40}$/);
    const zeros = fc.nat(140).map((n) => '0'.repeat(n));
    const spelling = fc
      .tuple(
        fc.constantFrom('', '-', '+'),
        fc.oneof(digits, zeros),
        fc.option(fc.tuple(zeros, digits), { nil: undefined }),
        fc.constantFrom('', 'e5', 'E-3'),
      )
      .map(([sign, int, frac, exp]) => `${sign}${int}${frac === undefined ? '' : `.${frac[0]}${frac[1]}`}${exp}`);
    const significant = (t: string): number => t.replace(/[-.]/g, '').replace(/^0+/, '').replace(/0+$/, '').length;
    fc.assert(
      fc.property(fc.oneof(spelling, fc.string({ unit: fc.constantFrom('0', '1', '9', '.', '-', 'e') })), (text) => {
        const d = canonicalDigits(text);
        assert.equal(d >= 0, tryNormalizeNumber(text) === text, text);
        if (d >= 0) assert.equal(d, significant(text), text);
      }),
      { numRuns: 20_000 },
    );
    for (const [text, d] of [
      ['0', 0],
      ['-0', -1],
      ['1.5', 2],
      ['100', 1],
      [`-0.${'0'.repeat(129)}${D38}`, 38],
      [`0.${'0'.repeat(130)}1`, -1],
    ] as const) {
      assert.equal(canonicalDigits(text), d, text);
    }
  });
});

describe("readSpelledNumber: DynamoDB's spelling read in place, in a longer text", () => {
  test("property: where a token is DynamoDB's spelling and a non-number character follows, its end and digits", () => {
    // Prepare: tokens of every shape (as canonicalDigits' property), between other characters.
    const digits = fc.stringMatching(/^\d{0,40}$/);
    const zeros = fc.nat(140).map((n) => '0'.repeat(n));
    const token = fc
      .tuple(fc.constantFrom('', '-'), fc.oneof(digits, zeros), fc.option(fc.tuple(zeros, digits), { nil: undefined }))
      .map(([sign, int, frac]) => `${sign}${int}${frac === undefined ? '' : `.${frac[0]}${frac[1]}`}`);
    const around = fc.constantFrom('', '[', '{"a":', ' ');
    const after = fc.constantFrom('', ',', ']', '}', ' ', '0', '.', 'e', '5');
    fc.assert(
      fc.property(around, token, after, (before, t, next) => {
        // Act
        const text = `${before}${t}${next}`;
        const read = readSpelledNumber(text, before.length);
        // Assess: the whole token is DynamoDB's spelling exactly when the read ends at it and no
        // number character follows there; its digits are canonicalDigits'.
        const whole = read >= 0 && spelledEnd(read) === before.length + t.length && !/[-+.eE0-9]/.test(next);
        assert.equal(whole, canonicalDigits(t) >= 0 && !/[-+.eE0-9]/.test(next), text);
        // Wherever a read stops before a non-number character, what it read is a spelling of those digits.
        if (read >= 0 && !/[-+.eE0-9]/.test(text.charAt(spelledEnd(read)))) {
          assert.equal(spelledDigits(read), canonicalDigits(text.slice(before.length, spelledEnd(read))), text);
        }
      }),
      { numRuns: 20_000 },
    );
  });
});

describe('readSpelledNumber: the zeros of `0.` read eight at a time', () => {
  /** readSpelledNumber as it was at 6c8102a (the zeros of `0.` read one by one), the reference. */
  function readSpelledNumberByOne(text: string, start: number): number {
    const FRACTION_HEAD = /-?0\.0*(?=[1-9])/y;
    const SIGNIFICANT = /[1-9](?:\d*[1-9])?/y;
    const INTEGER = /-?[1-9]\d*/y;
    const FRACTION = /\.\d*[1-9]/y;
    const pack = (end: number, digits: number) => end * 64 + digits;
    const sign = text.charCodeAt(start) === 0x2d ? 1 : 0;
    if (text.charCodeAt(start + sign) === 0x30) {
      FRACTION_HEAD.lastIndex = start;
      if (!FRACTION_HEAD.test(text)) return sign === 0 ? pack(start + 1, 0) : -1;
      const first = FRACTION_HEAD.lastIndex;
      SIGNIFICANT.lastIndex = first;
      SIGNIFICANT.test(text);
      const end = SIGNIFICANT.lastIndex;
      const high = start + sign + 1 - first;
      return end - first <= 38 && high >= -130 ? pack(end, end - first) : -1;
    }
    INTEGER.lastIndex = start;
    if (!INTEGER.test(text)) return -1;
    const integerEnd = INTEGER.lastIndex;
    const high = integerEnd - start - sign - 1;
    if (high > 125) return -1;
    if (text.charCodeAt(integerEnd) === 0x2e) {
      FRACTION.lastIndex = integerEnd;
      if (FRACTION.test(text)) {
        const end = FRACTION.lastIndex;
        const digits = end - start - sign - 1;
        return digits <= 38 ? pack(end, digits) : -1;
      }
    }
    let last = integerEnd;
    while (text.charCodeAt(last - 1) === 0x30) last--;
    const digits = last - start - sign;
    return digits <= 38 ? pack(integerEnd, digits) : -1;
  }

  test('property: the same answer as reading the zeros one by one, at any offset of any text', () => {
    const zerosFirst = fc
      .tuple(
        fc.constantFrom('', '-', 'x', '1', '-1'),
        fc.integer({ min: 0, max: 300 }),
        fc.string({ unit: fc.constantFrom('0', '0', '1', '9', '.', 'e', '-', ','), maxLength: 60, size: 'max' }),
      )
      .map(([lead, zeros, tail]) => `${lead}0.${'0'.repeat(zeros)}${tail}`);
    fc.assert(
      fc.property(
        fc.oneof(zerosFirst, fc.string({ unit: fc.constantFrom('0', '.', '-', '1', 'x'), maxLength: 40, size: 'max' })),
        fc.nat({ max: 3 }),
        (text, start) => {
          assert.equal(readSpelledNumber(text, start), readSpelledNumberByOne(text, start), `${text} @${start}`);
        },
      ),
      { numRuns: 10000 },
    );
  });
});
