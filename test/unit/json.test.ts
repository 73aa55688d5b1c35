/**
 * Issue 18, finding 1: the API's JSON parser reads client bodies in one bounded pass. Nesting is
 * bounded while the tokens are found (before the walk that puts exact numbers back, which recurses, runs), a number token
 * over MAX_NUMBER_LENGTH reaches the library as text and is refused there by length with the
 * attribute's name, and the short-number fast path gives exactly what the exact path gives.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  exactNumber,
  itemFromJson,
  itemJsonText,
  itemToJson,
  JsonText,
  MAX_JSON_DEPTH,
  parseJsonExact,
  stringifyJson,
} from '../../functions/http/json.ts';
import { entryOf, spelledEntryOf } from '../../lib/codec.ts';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { SpelledNumber, toAttributes } from '../../lib/codec.ts';
import { canonicalDigits, MAX_NUMBER_LENGTH, tryNormalizeNumber } from '../../lib/numbers.ts';
import { NumberValue, ValidationError } from '../../lib/index.ts';

function validationError(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ValidationError, `expected a ValidationError, got ${String(err)}`);
    return err;
  }
  assert.fail('accepted');
}

/** What the HTTP write routes do with a body, short of I/O (toAttributes refuses, naming the attribute, numbers DynamoDB cannot store). */
const checkBody = (text: string) => toAttributes(itemFromJson(parseJsonExact(text), 'body'), 'body');

describe('parseJsonExact: bounded nesting', () => {
  const nested = (depth: number, inner: string) => `${'['.repeat(depth)}${inner}${']'.repeat(depth)}`;

  test('JSON nested deeper than MAX_JSON_DEPTH is a ValidationError naming the body, with or without numbers', () => {
    for (const inner of ['', '1', '1.25', '12345678901234567890']) {
      const err = validationError(() => parseJsonExact(`{"a":${nested(MAX_JSON_DEPTH, inner)}}`));
      assert.equal(err.field, 'body');
      assert.match(err.message, new RegExp(`nests deeper than ${MAX_JSON_DEPTH} levels`));
    }
    // Deeper than any stack: still the same answer (the walk never runs).
    assert.match(validationError(() => parseJsonExact(`{"a":${nested(200_000, '1.5')}}`)).message, /nests deeper/);
  });

  test('at MAX_JSON_DEPTH the text is read, and the item depth check names the attribute', () => {
    const parsed = parseJsonExact(`{"a":${nested(MAX_JSON_DEPTH - 1, '12345678901234567890')}}`) as { a: unknown };
    let v: unknown = parsed.a;
    for (let i = 0; i < MAX_JSON_DEPTH - 1; i++) v = (v as unknown[])[0];
    assert.ok(v instanceof NumberValue);
    const err = validationError(() => itemFromJson(parsed, 'body'));
    assert.match(err.field, /^body\.a(\[0\])+$/);
    assert.match(err.message, /nests deeper than 64 levels/);
  });

  test('an item of DynamoDB depth (32 levels, $map wrappers included) is read whole', () => {
    let text = '1.5';
    for (let i = 0; i < 32; i++) text = i % 2 ? `[${text}]` : `{"$map":{"$set":${text === '1.5' ? '[1.5]' : `[${text}]`}}}`;
    assert.doesNotThrow(() => parseJsonExact(`{"a":${text}}`));
  });
});

describe('parseJsonExact: any text', () => {
  test("property: every text ends in a value (JSON.parse's, where every number is short) or a ValidationError", () => {
    // The token scan runs before JSON.parse has checked the syntax: it must end on any text.
    const unit = fc.constantFrom('"', '\\', '[', ']', '{', '}', ':', ',', '1', '.', 'e', '-', ' ', 'a', 'n', 'u', 'l');
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 40 }), (text) => {
        let parsed: unknown;
        try {
          parsed = parseJsonExact(text);
        } catch (err) {
          assert.ok(err instanceof ValidationError, `${text}: ${String(err)}`);
          assert.throws(() => JSON.parse(text), `${text} is JSON`);
          return;
        }
        if (!/[.e]|\d{16}/.test(text)) assert.deepStrictEqual(parsed, JSON.parse(text));
      }),
      { numRuns: 20_000 },
    );
  });
});

describe('parseJsonExact: the marked path (a number a double cannot hold)', () => {
  const L = '123456789012345678901234567890';
  /** Numbers by value (a NumberValue as the double nearest it), everything else as it is. */
  const byValue = (v: unknown): unknown => {
    if (v instanceof NumberValue) return Number(v.value) + 0;
    if (typeof v === 'number') return v + 0;
    if (Array.isArray(v)) return v.map(byValue);
    if (typeof v === 'object' && v !== null) {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v))
        Object.defineProperty(out, k, { value: byValue((v as Record<string, unknown>)[k]), enumerable: true });
      return out;
    }
    return v;
  };

  test('property: a text is refused exactly when JSON.parse refuses it, and read as JSON.parse reads it, numbers by value', () => {
    const unit = fc.constantFrom(
      '"',
      '\\',
      '[',
      ']',
      '{',
      '}',
      ':',
      ',',
      ' ',
      '1',
      '.',
      'e',
      '-',
      '0',
      'a',
      L,
      `-${L}`,
      `${L}e5`,
      '1e20',
      '"__proto__"',
      'true',
    );
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 24 }), (text) => {
        let plain: unknown;
        let json = true;
        try {
          plain = JSON.parse(text);
        } catch {
          json = false;
        }
        let parsed: unknown;
        try {
          parsed = parseJsonExact(text);
        } catch (err) {
          assert.ok(err instanceof ValidationError, `${text}: ${String(err)}`);
          assert.ok(!json, `${text} is JSON but was refused: ${String(err)}`);
          return;
        }
        assert.ok(json, `${text} is not JSON but was read`);
        assert.deepStrictEqual(byValue(parsed), byValue(plain), text);
      }),
      { numRuns: 20_000 },
    );
  });

  test('markers are numbers no body number can be taken for, and every long number keeps its digits', () => {
    const parsed = parseJsonExact(
      `{"a":[${L},1e20,2e20,100000000000000000000,9007199254740993,9007199254740991,"1e20"],"__proto__":${L}}`,
    ) as Record<string, unknown>;
    assert.deepStrictEqual(parsed.a, [
      new NumberValue(L),
      new NumberValue('100000000000000000000'),
      new NumberValue('200000000000000000000'),
      new NumberValue('100000000000000000000'),
      new NumberValue('9007199254740993'),
      9007199254740991,
      '1e20',
    ]);
    assert.ok(Object.hasOwn(parsed, '__proto__'));
    assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
    assert.deepStrictEqual(Object.getOwnPropertyDescriptor(parsed, '__proto__')?.value, new NumberValue(L));
  });

  test("property: for a request body, a SpelledNumber only ever holds DynamoDB's spelling of its token", () => {
    // Prepare: number tokens of every shape, long and short, DynamoDB's spelling or not (39 digits,
    // trailing zeros, exponents, out of range).
    const digits = fc.stringMatching(/^[1-9]\d{0,40}$/);
    const zeros = fc.nat(140).map((n) => '0'.repeat(n));
    const token = fc
      .tuple(
        fc.constantFrom('', '-'),
        fc.oneof(digits, fc.constant('0')),
        fc.option(fc.tuple(zeros, digits, zeros), { nil: undefined }),
        fc.constantFrom('', 'e5', 'E-3'),
      )
      .map(([sign, int, frac, exp]) => `${sign}${int}${frac === undefined ? '' : `.${frac.join('')}`}${exp}`);
    fc.assert(
      fc.property(fc.array(token, { minLength: 1, maxLength: 8 }), (tokens) => {
        // Act
        const text = `[${tokens.join(',')}]`;
        const spelled = parseJsonExact(text, 'body', true) as unknown[];
        const plain = parseJsonExact(text) as unknown[];
        // Assess: the same values; a SpelledNumber is DynamoDB's spelling of its token, and only the request parse makes one.
        spelled.forEach((v, i) => {
          const p = plain[i];
          assert.ok(!(p instanceof SpelledNumber), text);
          if (v instanceof SpelledNumber) {
            assert.ok(canonicalDigits(v.value) >= 0, `${text}: ${v.value}`);
            assert.equal(v.value, tryNormalizeNumber(tokens[i] as string), text);
            assert.equal((p as NumberValue).value, v.value, text);
          } else {
            assert.deepStrictEqual(v, p, text);
          }
        });
      }),
      { numRuns: 5_000 },
    );
  });

  test('a long number where a key must be, or a number token JSON does not allow, is malformed JSON (its own error)', () => {
    for (const text of [`{${L}:1}`, `{"a":1,${L} :2}`, `[-,${L}]`, `[01,${L}]`, `[${L}.]`, `[${L}e]`, `[1.5.5${L}]`, `[${L} ${L}]`]) {
      const err = validationError(() => parseJsonExact(text));
      assert.match(err.message, /malformed JSON/, text);
    }
  });
});

describe('parseJsonExact: numbers', () => {
  test('a number token just over MAX_NUMBER_LENGTH is refused by length, naming the attribute', () => {
    const over = `1${'0'.repeat(MAX_NUMBER_LENGTH - 1)}1`;
    assert.equal(over.length, MAX_NUMBER_LENGTH + 1);
    const err = validationError(() => checkBody(`{"ok":1,"n":${over}}`));
    assert.equal(err.field, 'body.n');
    assert.match(err.message, /a number of 257 characters is longer than any DynamoDB can store \(256\)/);
    // Also as a set member and in a list.
    assert.equal(validationError(() => checkBody(`{"s":{"$set":[1,${over}]}}`)).field, 'body.s');
    assert.equal(validationError(() => checkBody(`{"l":[1,[${over}]]}`)).field, 'body.l[1][0]');
  });

  test('the pathological number of issue 18 (1000…0001, a megabyte) is refused the same way', () => {
    const err = validationError(() => checkBody(`{"n":1${'0'.repeat(1_000_000)}1}`));
    assert.equal(err.field, 'body.n');
    assert.match(err.message, /longer than any DynamoDB can store/);
  });

  test('property: the short-number fast path agrees with the exact path', () => {
    // The exact path: DynamoDB's spelling, then a double only when it spells the same value.
    // (A text DynamoDB cannot store stays as it is, for the library to refuse.)
    const reference = (text: string): number | string => {
      const canonical = tryNormalizeNumber(text);
      if (canonical === undefined) return text;
      const n = Number(canonical);
      return (!Number.isInteger(n) || Number.isSafeInteger(n)) && tryNormalizeNumber(String(n)) === canonical ? n : canonical;
    };
    const shortNumber = fc
      .tuple(fc.boolean(), fc.stringMatching(/^(0|[1-9]\d{0,14})$/), fc.option(fc.stringMatching(/^\d{1,15}$/), { nil: undefined }))
      .map(([neg, int, frac]) => `${neg ? '-' : ''}${int}${frac === undefined ? '' : `.${frac}`}`)
      .filter((t) => t.replace(/\D/g, '').length <= 15);
    fc.assert(
      fc.property(fc.oneof(shortNumber, fc.double({ noNaN: true, noDefaultInfinity: true }).map(String)), (text) => {
        const got = exactNumber(text);
        const want = reference(text);
        if (typeof want === 'number') assert.ok(Object.is(got, want === 0 ? 0 : want), `${text}: ${String(got)} ≠ ${want}`);
        else assert.ok(got instanceof NumberValue && got.value === want, `${text}: ${String(got)} ≠ NumberValue ${want}`);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('itemJsonText: the answer in one walk', () => {
  // Every kind of native value an item may hold, and shapes the two-step path treats specially: tag-shaped
  // maps ($map), holes and undefined in lists, undefined attributes, __proto__ and integer-like names.
  const name = fc.oneof(fc.constantFrom('$base64', '$set', '$map', '__proto__', '0', '7', '10', 'a', ''), fc.string({ maxLength: 4 }));
  const number = fc.oneof(
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }),
    fc
      .constantFrom('1.5', '-0.000123', '1E-7', '1e+21', '.5', '01', '-0', `-0.${'0'.repeat(129)}12345678901234567890123456789012345678`)
      .map((t) => new NumberValue(t)),
  );
  const scalar = fc.oneof(
    fc.string({ maxLength: 6 }),
    number,
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined),
    fc.uint8Array({ maxLength: 5 }),
  );
  const { value } = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, tie('list'), tie('map'), tie('set')),
    list: fc.array(tie('value'), { maxLength: 4 }).map((xs) => {
      if (xs.length > 2) delete xs[1]; // a hole
      return xs;
    }),
    map: fc.array(fc.tuple(name, tie('value')), { maxLength: 4 }).map((pairs) => {
      const m: Record<string, unknown> = {};
      for (const [k, v] of pairs) Object.defineProperty(m, k, { value: v, enumerable: true, writable: true, configurable: true });
      return m;
    }),
    set: fc.oneof(
      fc.uniqueArray(fc.string({ maxLength: 3 }), { minLength: 1, maxLength: 3 }).map((xs) => new Set(xs)),
      fc.uniqueArray(fc.integer(), { minLength: 1, maxLength: 3 }).map((xs) => new Set(xs)),
      fc.array(fc.uint8Array({ maxLength: 3 }), { minLength: 1, maxLength: 2 }).map((xs) => new Set(xs)),
    ),
  }));
  const item = fc.array(fc.tuple(name, value), { maxLength: 5 }).map((pairs) => {
    const m: Record<string, unknown> = {};
    for (const [k, v] of pairs) Object.defineProperty(m, k, { value: v, enumerable: true, writable: true, configurable: true });
    return m;
  });

  test('property: the same text as stringifyJson(itemToJson(item)), and as the reply body', () => {
    fc.assert(
      fc.property(item, (it) => {
        const want = stringifyJson(itemToJson(it));
        assert.equal(itemJsonText(it), want);
        assert.equal(stringifyJson(new JsonText(itemJsonText(it))), want);
      }),
      { numRuns: 3000 },
    );
  });

  test('property: an item of numbers all in DynamoDB’s spelling (spelledEntryOf) is answered with the text of the checked path', () => {
    const number = fc.constantFrom(
      '1.5',
      '-2',
      '0',
      '0.0000001',
      '123456789012345678901234567890',
      `-0.${'0'.repeat(129)}12345678901234567890123456789012345678`,
    );
    const av = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: 'small' },
        fc.record({ S: fc.string({ maxLength: 4 }) }),
        fc.record({ N: number }),
        fc.record({ NS: fc.uniqueArray(number, { minLength: 1, maxLength: 3 }) }),
        fc.record({ B: fc.uint8Array({ maxLength: 3 }) }),
        fc.constant({ NULL: true }),
        fc.record({ L: fc.array(tie('value'), { maxLength: 4 }) }),
        fc.record({ M: fc.dictionary(fc.constantFrom('$map', '$set', 'a', 'b'), tie('value'), { maxKeys: 2 }) }),
      ),
    })).value as fc.Arbitrary<AttributeValue>;
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom('a', 'b', '$base64', 'v'), av, { maxKeys: 3 }), (attrs) => {
        const want = stringifyJson(itemToJson(entryOf(attrs, 'v').item));
        assert.equal(itemJsonText(spelledEntryOf(attrs, 'v').item), want);
      }),
      { numRuns: 1000 },
    );
  });

  test('a write answer of the worst body kind (a list of 38-digit numbers, read back) is the same text', () => {
    const n = `-0.${'0'.repeat(129)}12345678901234567890123456789012345678`;
    const { item: it } = entryOf({ l: { L: Array.from({ length: 50 }, () => ({ N: n })) }, id: { S: 'x' }, v: { N: '3' } }, 'v');
    assert.equal(itemJsonText(it), stringifyJson(itemToJson(it)));
  });
});
