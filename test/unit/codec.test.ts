import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import {
  decodeAttributes,
  decodeEntry,
  decodeItem,
  encodeAttributes,
  encodeEntry,
  encodeItem,
  entryFromPieces,
  entryOf,
  entryPieces,
  fromAttributes,
  holdsDecodedNumberValue,
  holdsSpelledNumbers,
  MAX_ENTRY_LENGTH,
  MAX_ITEM_DEPTH,
  normalizeAttributes,
  sameSpelling,
  SpelledNumber,
  spelledEntryOf,
  toAttributes,
  toNativeNumber,
  UnreadableEntryError,
} from '../../lib/codec.ts';
import { NumberValue, ValidationError } from '../../lib/index.ts';
import fc from 'fast-check';

const bytes = (...b: number[]) => new Uint8Array(b);
const isPlainU8 = (v: unknown): boolean => v instanceof Uint8Array && Object.getPrototypeOf(v) === Uint8Array.prototype;

/** Every binary value in a decoded tree is a plain Uint8Array (not a Buffer). */
function assertPlainBinary(av: unknown, path = ''): void {
  if (av instanceof Uint8Array) return assert.ok(isPlainU8(av), `${path} is a ${av.constructor.name}`);
  if (Array.isArray(av)) return av.forEach((x, i) => assertPlainBinary(x, `${path}[${i}]`));
  if (typeof av === 'object' && av !== null) for (const [k, v] of Object.entries(av)) assertPlainBinary(v, `${path}.${k}`);
}

const roundTrip = (av: Record<string, AttributeValue>) => decodeAttributes(encodeAttributes(av));

describe('encodeAttributes / decodeAttributes', () => {
  test('every attribute value type round-trips', () => {
    const av: Record<string, AttributeValue> = {
      s: { S: 'hello' },
      empty: { S: '' },
      uni: { S: 'é😀\u0000\n"\\\u2028' },
      n: { N: '-12.5' },
      big: { N: '123456789012345678901234567890.12345678' },
      b: { B: bytes(0, 1, 2, 255) },
      bEmpty: { B: bytes() },
      ss: { SS: ['a', '', 'b'] },
      ns: { NS: ['1', '2.5', '-3'] },
      bs: { BS: [bytes(1), bytes(), bytes(2, 3)] },
      t: { BOOL: true },
      f: { BOOL: false },
      nul: { NULL: true },
      l: { L: [{ S: 'x' }, { N: '1' }, { B: bytes(9) }, { L: [] }, { M: {} }, { NULL: true }] },
      m: { M: { inner: { M: { deep: { BS: [bytes(7)] } } }, list: { L: [{ SS: ['q'] }] } } },
      emptyL: { L: [] },
      emptyM: { M: {} },
    };
    const back = roundTrip(av);
    assert.deepStrictEqual(back, av);
    assertPlainBinary(back);
  });

  test('Buffer and Uint8Array views come back as plain Uint8Array holding just the view', () => {
    const backing = bytes(100, 1, 2, 3, 200);
    const av: Record<string, AttributeValue> = {
      buf: { B: Buffer.from([1, 2, 3]) },
      view: { B: backing.subarray(1, 4) },
      bufView: { B: Buffer.from(backing.buffer, 1, 3) },
      bs: { BS: [Buffer.from([4]), backing.subarray(4), Buffer.alloc(0)] },
      nested: { M: { b: { B: Buffer.from('hi') } } },
      list: { L: [{ B: Buffer.from([5, 6]) }] },
    };
    const back = roundTrip(av);
    assertPlainBinary(back);
    assert.deepStrictEqual(back, {
      buf: { B: bytes(1, 2, 3) },
      view: { B: bytes(1, 2, 3) },
      bufView: { B: bytes(1, 2, 3) },
      bs: { BS: [bytes(4), bytes(200), bytes()] },
      nested: { M: { b: { B: bytes(104, 105) } } },
      list: { L: [{ B: bytes(5, 6) }] },
    });
    // The encoding is base64, not a Buffer's {"type":"Buffer","data":[...]}.
    assert.doesNotMatch(encodeAttributes(av), /"type":"Buffer"/);
    assert.match(encodeAttributes({ b: { B: Buffer.from([1, 2, 3]) } }), /"AQID"/);
  });

  test('attribute names that look like type tags or cache fields', () => {
    const names = [
      'B',
      'BS',
      'N',
      'NS',
      'S',
      'SS',
      'M',
      'L',
      'NULL',
      'BOOL',
      '_wv',
      '_rv',
      'd',
      'v',
      '_version',
      '$unknown',
      'toJSON',
      '__proto__',
      '',
    ];
    const av: Record<string, AttributeValue> = {};
    for (const name of names) {
      // Each name holds a value of a type whose tag may clash with it: strings under B/BS, lists under BS.
      Object.defineProperty(av, name, { value: { S: `str:${name}` }, enumerable: true, writable: true, configurable: true });
    }
    const tricky: Record<string, AttributeValue> = {
      B: { S: 'AQID' }, // a string that is valid base64 under an attribute named B
      BS: { SS: ['AQID', 'BA=='] },
      S: { B: bytes(1) },
      N: { L: [{ S: 'AQID' }, { B: bytes(2) }] },
      M: { M: { B: { S: 'AQID' }, BS: { L: [{ S: 'AQID' }] }, N: { N: '1' }, d: { BS: [bytes(3)] } } },
      d: { M: { M: { M: { B: { B: bytes(4) } } } } },
      _wv: { N: '7' },
      L: { L: [{ M: { B: { SS: ['x'] } } }] },
    };
    for (const sample of [av, tricky]) {
      const back = roundTrip(sample);
      assert.deepStrictEqual(back, sample);
      assert.deepStrictEqual(Object.keys(back), Object.keys(sample));
      assertPlainBinary(back);
    }
    assert.equal(typeof tricky.B?.S, 'string');
  });

  test('deeply nested maps and lists', () => {
    let av: AttributeValue = { B: bytes(42) };
    for (let i = 0; i < 30; i++) av = i % 2 ? { L: [{ S: String(i) }, av] } : { M: { [`k${i}`]: av, B: { N: String(i) } } };
    const item = { root: av };
    assert.deepStrictEqual(roundTrip(item), item);
  });
});

describe('fromAttributes / toAttributes', () => {
  test('native items: every type, numbers exact, binary as Uint8Array', () => {
    const item = {
      s: 'x',
      e: '',
      n: 1.5,
      i: -42,
      big: new NumberValue('9007199254740993'),
      b: bytes(1, 2),
      t: true,
      nul: null,
      l: [1, 'a', [bytes(3)], {}],
      m: { a: { b: new Set(['x', '']) } },
      ns: new Set([1, 2]),
      bs: new Set([bytes(1), bytes()]),
    };
    const av = toAttributes(item);
    assert.deepStrictEqual(av.big, { N: '9007199254740993' });
    assert.deepStrictEqual(av.ns, { NS: ['1', '2'] });
    const back = decodeItem(encodeAttributes(av));
    assert.deepStrictEqual(back, item);
    assert.deepStrictEqual(decodeItem(encodeItem(item)), item);
    assert.deepStrictEqual(fromAttributes(av), item);
    // bigint is written as a number and comes back as a NumberValue once beyond 2^53.
    assert.deepStrictEqual(fromAttributes(toAttributes({ x: 2n ** 64n, y: 5n })), { x: new NumberValue('18446744073709551616'), y: 5 });
  });

  test('decodeItem gives plain Uint8Array for Buffer inputs', () => {
    const back = decodeItem(encodeItem({ b: Buffer.from([1]), s: new Set([Buffer.from([2])]) }));
    assert.ok(isPlainU8(back.b));
    assert.ok([...(back.s as Set<unknown>)].every(isPlainU8));
    assert.deepStrictEqual(back, { b: bytes(1), s: new Set([bytes(2)]) });
  });
});

describe('toNativeNumber: a JS number only when exact', () => {
  test('numbers that survive the trip through a double', () => {
    const exact: [string, number][] = [
      ['0', 0],
      ['0.1', 0.1],
      ['1.5', 1.5],
      ['-42', -42],
      ['0.30000000000000004', 0.30000000000000004],
      ['0.00001', 0.00001],
      ['9007199254740991', Number.MAX_SAFE_INTEGER],
      ['-9007199254740991', Number.MIN_SAFE_INTEGER],
      ['123456.789', 123456.789],
    ];
    for (const [text, n] of exact) {
      const v = toNativeNumber(text);
      assert.equal(typeof v, 'number', text);
      assert.equal(v, n);
    }
  });

  test('numbers that do not: NumberValue holding the same digits', () => {
    const inexact = [
      '9007199254740992', // 2^53: exact as a double, but not a safe integer
      '9007199254740993',
      '-9007199254740993',
      '100000000000000000000',
      '0.1000000000000000055511151231257827',
      '1.00000000000000001',
      '0.0000001', // String(1e-7) is '1e-7': the plain spelling does not survive
      `0.${'0'.repeat(129)}1`, // 1e-130
      `1${'0'.repeat(125)}`, // 1e125
      '12345678901234567890123456789012345678',
    ];
    for (const text of inexact) {
      const v = toNativeNumber(text);
      assert.ok(v instanceof NumberValue, `${text} → ${String(v)}`);
      assert.equal(v.value, text);
    }
  });

  test('fromAttributes applies it to N and NS, at any depth', () => {
    const item = fromAttributes({
      a: { N: '0.1' },
      b: { N: '9007199254740993' },
      s: { NS: ['1', '9007199254740993'] },
      l: { L: [{ N: '0.0000001' }, { M: { x: { N: '2' } } }] },
    });
    assert.deepStrictEqual(item, {
      a: 0.1,
      b: new NumberValue('9007199254740993'),
      s: new Set([1, new NumberValue('9007199254740993')]),
      l: [new NumberValue('0.0000001'), { x: 2 }],
    });
  });
});

describe('normalizeAttributes', () => {
  test('rewrites every number, at any depth, in DynamoDB spelling; leaves the rest alone', () => {
    const av: Record<string, AttributeValue> = {
      n: { N: '1.50' },
      ns: { NS: ['1E2', '-0', '+5'] },
      l: { L: [{ N: '.5' }, { M: { x: { N: '-1.2300e-3' } } }, { S: '1.50' }] },
      m: { M: { y: { N: '5.' }, z: { SS: ['1.0'] } } },
      b: { B: bytes(1) },
    };
    assert.deepStrictEqual(normalizeAttributes(av), {
      n: { N: '1.5' },
      ns: { NS: ['100', '0', '5'] },
      l: { L: [{ N: '0.5' }, { M: { x: { N: '-0.00123' } } }, { S: '1.50' }] },
      m: { M: { y: { N: '5' }, z: { SS: ['1.0'] } } },
      b: { B: bytes(1) },
    });
  });

  test('a number DynamoDB cannot store: ValidationError with its path', () => {
    const field = (av: Record<string, AttributeValue>) => {
      try {
        normalizeAttributes(av);
      } catch (e) {
        assert.ok(e instanceof ValidationError);
        return e.field;
      }
      assert.fail('expected a ValidationError');
    };
    assert.equal(field({ a: { N: '1e126' } }), 'item.a');
    assert.equal(field({ m: { M: { x: { N: 'abc' } } } }), 'item.m.x');
    assert.equal(field({ l: { L: [{ N: '1' }, { N: '1e-131' }] } }), 'item.l[1]');
    assert.equal(field({ s: { NS: ['1', `1${'2'.repeat(38)}`] } }), 'item.s');
  });
});

// Attribute names that collide with Object.prototype. The AWS SDK's (de)serialisers drop an
// attribute named '__proto__' (they assign with `obj[key] = …`), so the library refuses to write one,
// naming it, rather than let it vanish; 'constructor' is an ordinary name.
describe('toAttributes / fromAttributes: names that collide with Object.prototype', () => {
  test("'__proto__' is refused by name at any depth, never silently dropped", () => {
    for (const body of ['{"__proto__":{"a":1}}', '{"m":{"__proto__":"x"}}']) {
      const item = JSON.parse(body) as Record<string, unknown>;
      assert.throws(
        () => toAttributes(item),
        (e: unknown) => e instanceof ValidationError && e.field.endsWith('__proto__'),
      );
    }
  });

  test("fromAttributes keeps an own '__proto__' attribute as data, not as a prototype", () => {
    const av = decodeAttributes('{"__proto__":{"S":"x"},"k":{"N":"1"}}');
    const item = fromAttributes(av);
    assert.equal(Object.getPrototypeOf(item), Object.prototype);
    assert.equal(Object.getOwnPropertyDescriptor(item, '__proto__')?.value, 'x');
  });

  test("'constructor' is an ordinary attribute name", () => {
    assert.deepStrictEqual(toAttributes({ constructor: 'c', m: { constructor: 1 } }), {
      constructor: { S: 'c' },
      m: { M: { constructor: { N: '1' } } },
    });
  });
});

describe('encodeEntry / decodeEntry', () => {
  const V = '_version';
  const round = (av: Record<string, AttributeValue>) => decodeEntry(encodeEntry(av, V), V);

  test('an item of plain JSON values is kept as [version, native item]; the version is left out of the item', () => {
    const av = toAttributes({
      id: 'a',
      n: 1.5,
      big: 9007199254740991,
      t: true,
      z: null,
      l: ['x', [2]],
      m: { _version: 'nested stays', N: { S: 'x' } },
    });
    const text = encodeEntry({ ...av, _version: { N: '7' } }, V);
    assert.ok(text.startsWith('[7,{'), text);
    assert.deepStrictEqual(decodeEntry(text, V), { item: fromAttributes(av), version: 7 });
  });

  test('an item without a version attribute decodes with version 0, in either form', () => {
    assert.deepStrictEqual(round({ a: { S: 'x' } }), { item: { a: 'x' }, version: 0 });
    assert.deepStrictEqual(round({ a: { SS: ['x'] } }), { item: { a: new Set(['x']) }, version: 0 });
  });

  test('sets, binary and numbers a double cannot hold exactly keep the attribute-value form', () => {
    const cases: Record<string, AttributeValue>[] = [
      { s: { SS: ['a'] } },
      { s: { NS: ['1'] } },
      { b: { B: bytes(1, 2) } },
      { s: { BS: [bytes(1)] } },
      { n: { N: '9007199254740993' } },
      { n: { N: '0.0000001' } }, // JS would spell it 1e-7
      { l: { L: [{ M: { n: { N: '12345678901234567890' } } }] } },
    ];
    for (const av of cases) {
      const text = encodeEntry({ ...av, _version: { N: '2' } }, V);
      assert.ok(text.startsWith('{'), text);
      const back = decodeEntry(text, V);
      assert.equal(back.version, 2);
      assert.deepStrictEqual(back.item, fromAttributes(av));
    }
  });

  test('a version attribute that is not a whole number keeps the attribute-value form (versionOf reads it)', () => {
    assert.ok(encodeEntry({ a: { S: 'x' }, _version: { S: 'odd' } }, V).startsWith('{'));
    assert.equal(round({ a: { S: 'x' }, _version: { S: 'odd' } }).version, 0);
    assert.ok(encodeEntry({ a: { S: 'x' }, _version: { N: '1.5' } }, V).startsWith('{'));
    assert.equal(round({ a: { S: 'x' }, _version: { N: '1.5' } }).version, 1.5);
  });

  test("an own '__proto__' attribute survives the native form as data", () => {
    const av: Record<string, AttributeValue> = {};
    Object.defineProperty(av, '__proto__', { value: { S: 'x' }, enumerable: true, writable: true, configurable: true });
    av.k = { M: JSON.parse('{"__proto__":{"N":"1"}}') as Record<string, AttributeValue> };
    const text = encodeEntry(av, V);
    assert.ok(text.startsWith('['), text);
    const { item } = decodeEntry(text, V);
    assert.equal(Object.getPrototypeOf(item), Object.prototype);
    assert.equal(Object.getOwnPropertyDescriptor(item, '__proto__')?.value, 'x');
    assert.equal(Object.getOwnPropertyDescriptor(item.k, '__proto__')?.value, 1);
  });

  test('an entry in neither form throws (a faulty or tampered node), it is never served', () => {
    for (const text of ['[1]', '[1,2]', '["1",{}]', '[1,[]]', '[1,null]', '[1.5,{}]', '[1,{},3]', '[1,{"a":', '5', 'null', '[]']) {
      assert.throws(() => decodeEntry(text, V), Error, text);
    }
  });

  // Issue 18, finding 5: everything read from Redis is untrusted input.
  const unreadable = (text: string): string => {
    try {
      decodeEntry(text, V);
    } catch (err) {
      assert.ok(err instanceof UnreadableEntryError, `${text.slice(0, 60)}: ${String(err)}`);
      return err.reason;
    }
    assert.fail(`${text.slice(0, 60)} was decoded`);
  };
  const nestedList = (depth: number): string => `${'['.repeat(depth)}${']'.repeat(depth)}`;
  const nestedAv = (depth: number): string => `${'{"L":['.repeat(depth)}${']}'.repeat(depth)}`;

  test('a planted entry is refused with a fixed reason that quotes none of its bytes', () => {
    const cases: [string, string][] = [
      ['{"userId":{"S":"secret-bytes"},"v":', 'not JSON'],
      ['not json at all: secret-bytes', 'not JSON'],
      [`[1,{"deep":${nestedList(5000)}}]`, 'too deep'],
      [`{"deep":${nestedAv(5000)}}`, 'too deep'],
      ['{"n":{"N":"abc"}}', 'bad number'],
      [`{"n":{"N":"1${'0'.repeat(60_000)}1"}}`, 'bad number'],
      ['{"n":{"N":"1e126"}}', 'bad number'],
      ['{"n":{"N":12}}', 'bad number'],
      ['{"s":{"NS":["1","x"]}}', 'bad number'],
      ['{"_version":{"N":"secret"},"a":{"S":"x"}}', 'bad number'],
      ['[1,{"n":1e400}]', 'bad number'],
      ['[1,{"l":[9007199254740993]}]', 'bad number'],
      ['[1,{"n":1e-200}]', 'bad number'],
      ['{"s":{"S":5}}', 'not an attribute value'],
      ['{"q":{"Q":"secret-bytes"}}', 'not an attribute value'],
      ['{"two":{"S":"a","N":"1"}}', 'not an attribute value'],
      ['{"e":{}}', 'not an attribute value'],
      ['{"e":"secret-bytes"}', 'not an attribute value'],
      ['{"ss":{"SS":[]}}', 'not an attribute value'],
      ['{"ss":{"SS":["a",1]}}', 'not an attribute value'],
      ['{"m":{"M":[]}}', 'not an attribute value'],
      ['{"b":{"B":"!!secret"}}', 'bad binary'],
      ['{"b":{"BS":["AA==","%%"]}}', 'bad binary'],
      ['[-1,{}]', 'not an entry'],
      ['"secret-bytes"', 'not an entry'],
      [' '.repeat(MAX_ENTRY_LENGTH + 1), 'too large'],
    ];
    for (const [text, reason] of cases) {
      assert.equal(unreadable(text), reason, text.slice(0, 60));
      try {
        decodeEntry(text, V);
      } catch (err) {
        assert.doesNotMatch((err as Error).message, /secret|abc|0000/, 'the message quotes the entry');
      }
    }
  });

  test('items nested MAX_ITEM_DEPTH levels decode in either form; one more level is refused', () => {
    // A top-level attribute's value is at depth 1, as in a request body (functions/http/json.ts).
    assert.ok(decodeEntry(`[1,{"a":${nestedList(MAX_ITEM_DEPTH)}}]`, V));
    assert.equal(unreadable(`[1,{"a":${nestedList(MAX_ITEM_DEPTH + 1)}}]`), 'too deep');
    const avWithNumberAt = (depth: number) => `{"a":${nestedAv(depth - 1).replace('[]', '[{"N":"1.5"}]')}}`;
    assert.ok(decodeEntry(avWithNumberAt(MAX_ITEM_DEPTH), V));
    assert.equal(unreadable(avWithNumberAt(MAX_ITEM_DEPTH + 1)), 'too deep');
  });

  test('every number spelling DynamoDB answers is still read (nested scientific spellings included)', () => {
    const back = decodeEntry('{"n":{"N":"1E-7"},"s":{"NS":["-2.5E-10","100"]},"_version":{"N":"3"}}', V);
    assert.equal(back.version, 3);
    assert.deepStrictEqual(back.item, { n: new NumberValue('1E-7'), s: new Set([new NumberValue('-2.5E-10'), 100]) });
  });

  test('entryOf (a write answer) is what decoding the encoded entry returns, for any attribute values', () => {
    // Numbers in the spellings DynamoDB answers: canonical, as sent (long), and Java's BigDecimal form.
    const number = fc.constantFrom(
      '0',
      '1.5',
      '-7',
      '9007199254740993',
      '0.0000001',
      '1E-7',
      '-2.5E-10',
      `-0.${'0'.repeat(129)}12345678901234567890123456789012345678`,
      '12345678901234567890',
    );
    const name = fc.constantFrom('a', 'b', '__proto__', 'constructor', '_version', 'N', '1', '');
    const { value } = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: 'small' },
        fc.record({ S: fc.string() }),
        fc.record({ N: number }),
        fc.record({ BOOL: fc.boolean() }),
        fc.constant({ NULL: true }),
        fc.record({ B: fc.uint8Array({ maxLength: 4 }).map((b) => (b.length % 2 ? Buffer.from(b) : b)) }),
        fc.record({ SS: fc.uniqueArray(fc.string(), { minLength: 1, maxLength: 3 }) }),
        fc.record({ NS: fc.uniqueArray(number, { minLength: 1, maxLength: 3 }) }),
        fc.record({ BS: fc.array(fc.uint8Array({ maxLength: 3 }), { minLength: 1, maxLength: 3 }) }),
        fc.record({ L: fc.array(tie('value'), { maxLength: 3 }) }),
        fc.record({ M: fc.dictionary(name, tie('value'), { maxKeys: 3 }) }),
      ),
    }));
    const version = fc.option(fc.constantFrom('1', '42', '1.5'), { nil: undefined });
    fc.assert(
      fc.property(fc.dictionary(name, value as fc.Arbitrary<AttributeValue>, { maxKeys: 4 }), version, (av, v) => {
        const item: Record<string, AttributeValue> = { ...(av as Record<string, AttributeValue>) };
        if (v !== undefined) item[V] = { N: v };
        const expected = decodeEntry(encodeEntry(item, V), V);
        const got = entryOf(item, V);
        assert.deepStrictEqual(got, expected);
        assertPlainBinary(got.item);
      }),
      { numRuns: 500 },
    );
  });
});

describe('holdsDecodedNumberValue: what the drop-in client asks instead of walking each item', () => {
  test('true exactly for decoded items holding a NumberValue, at any depth, in either form', () => {
    const cases: [string, Record<string, AttributeValue>, boolean][] = [
      ['plain form, exact numbers', { a: { N: '5' }, b: { L: [{ N: '0.5' }] } }, false],
      ['attribute-value form (a set), exact numbers', { a: { NS: ['1', '2'] }, b: { M: { c: { N: '3' } } } }, false],
      ['a top-level number beyond a double', { a: { N: '100000000000000000000' }, s: { SS: ['x'] } }, true],
      ['one nested in a map in a list', { a: { L: [{ M: { b: { N: '12345678901234567890' } } }] }, s: { SS: ['x'] } }, true],
      ['one in a number set', { a: { NS: ['1', '0.1000000000000000000001'] } }, true],
    ];
    for (const [what, av, expected] of cases) {
      const { item } = decodeEntry(encodeEntry({ ...av, _version: { N: '1' } }, '_version'), '_version');
      assert.equal(holdsDecodedNumberValue(item), expected, what);
    }
    // Decoding an item without one after an item with one: the mark is per item.
    const { item: after } = decodeEntry(encodeEntry({ a: { NS: ['1'] }, _version: { N: '1' } }, '_version'), '_version');
    assert.equal(holdsDecodedNumberValue(after), false);
  });
});

describe('SpelledNumber: a spelling the HTTP parse checked', () => {
  test('toAttributes takes its text as it is; it cannot be changed after the check', () => {
    // Prepare
    const long = `-0.${'0'.repeat(129)}12345678901234567890123456789012345678`;
    const n = new SpelledNumber(long);
    // Act
    const av = toAttributes({ n, l: [n] });
    // Assess
    assert.deepStrictEqual(av, { n: { N: long }, l: { L: [{ N: long }] } });
    assert.ok(n instanceof NumberValue);
    assert.throws(() => {
      (n as { value: string }).value = '1.50';
    }, TypeError);
    // A caller's NumberValue is still checked and spelled by the library.
    assert.deepStrictEqual(toAttributes({ n: new NumberValue('1.50') }), { n: { N: '1.5' } });
  });
});

describe('a put’s entry from its written item: sameSpelling, entryPieces, entryFromPieces, spelledEntryOf', () => {
  const W = '_version';
  const number = fc.constantFrom(
    '1.5',
    '-2',
    '0',
    '100',
    '0.0000001',
    `-0.${'0'.repeat(129)}12345678901234567890123456789012345678`,
    '12345678901234567890',
  );
  const name = fc.constantFrom('a', 'b', '__proto__', 'constructor', 'toJSON', 'N', '1', '10', '', 'é');
  const arbitraries = (binary: boolean) =>
    fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: 'small' },
        fc.record({ S: fc.string() }),
        fc.record({ N: number }),
        fc.record({ BOOL: fc.boolean() }),
        fc.constant({ NULL: true }),
        fc.record({ SS: fc.uniqueArray(fc.string(), { minLength: 1, maxLength: 3 }) }),
        fc.record({ NS: fc.uniqueArray(number, { minLength: 1, maxLength: 3 }) }),
        ...(binary ? [fc.record({ B: fc.uint8Array({ maxLength: 4 }) })] : []),
        fc.record({ L: fc.array(tie('value'), { maxLength: 3 }) }),
        fc.record({ M: fc.dictionary(name, tie('value'), { maxKeys: 3 }) }),
      ),
    })).value as fc.Arbitrary<AttributeValue>;
  /** A deep copy (every string a fresh one, as the SDK's answer), the top-level names in another order. */
  const answered = (av: Record<string, AttributeValue>, order: number[]): Record<string, AttributeValue> => {
    const names = Object.keys(av);
    const out: Record<string, AttributeValue> = {};
    const copy = (n: string) =>
      Object.defineProperty(out, n, {
        value: decodeAttributes(JSON.stringify({ x: av[n] })).x,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    for (const i of order) {
      const n = names[i % names.length] as string;
      if (!Object.hasOwn(out, n)) copy(n);
    }
    for (const n of names) if (!Object.hasOwn(out, n)) copy(n);
    return out;
  };
  const items = (binary: boolean) =>
    fc
      .tuple(fc.dictionary(name, arbitraries(binary), { maxKeys: 4 }), fc.constantFrom('1', '7'), fc.array(fc.nat(), { maxLength: 6 }))
      .map(([av, v, order]) => {
        const item: Record<string, AttributeValue> = { ...(av as Record<string, AttributeValue>), [W]: { N: v } };
        return { item, stored: answered(item, order) };
      });

  test('property: DynamoDB’s answer spelled as written, in any order of names, has the entry and the item the written item’s pieces give', () => {
    fc.assert(
      fc.property(items(false), ({ item, stored }) => {
        for (const n of Object.keys(item)) assert.ok(sameSpelling(stored[n], item[n]), n);
        const pieces = entryPieces(item, W);
        if (pieces !== undefined) assert.equal(entryFromPieces(stored, pieces), encodeEntry(stored, W));
        else assert.ok(encodeEntry(item, W).startsWith('['), 'only the plain form has no pieces (no binary here)');
        const spelled = spelledEntryOf(stored, W);
        assert.deepStrictEqual(spelled, entryOf(stored, W));
        assert.ok(holdsSpelledNumbers(spelled.item));
        assert.ok(!holdsSpelledNumbers(entryOf(stored, W).item));
      }),
      { numRuns: 1000 },
    );
  });

  test('property: an item holding binary has no pieces', () => {
    fc.assert(
      fc.property(items(true), ({ item }) => {
        if (JSON.stringify(item).includes('"B":')) assert.equal(entryPieces(item, W), undefined);
      }),
      { numRuns: 300 },
    );
  });

  test('sameSpelling: another spelling, order, type or member count is not the same', () => {
    const long = `-0.${'0'.repeat(129)}1`;
    assert.ok(sameSpelling({ L: [{ N: long }, { S: 'a' }] }, { L: [{ N: `-0.${'0'.repeat(129)}1` }, { S: 'a' }] }));
    assert.ok(!sameSpelling({ N: '1E-7' }, { N: '0.0000001' }));
    assert.ok(!sameSpelling({ NS: ['1E-7', '2'] }, { NS: ['0.0000001', '2'] }));
    assert.ok(!sameSpelling({ NS: ['2', '1'] }, { NS: ['1', '2'] }));
    assert.ok(!sameSpelling({ M: { a: { N: '1' }, b: { N: '2' } } }, { M: { b: { N: '2' }, a: { N: '1' } } }));
    assert.ok(!sameSpelling({ L: [{ N: '1' }] }, { L: [{ N: '1' }, { N: '1' }] }));
    assert.ok(!sameSpelling({ S: '1' }, { N: '1' }));
    assert.ok(!sameSpelling({ N: '1', S: 'x' } as unknown as AttributeValue, { N: '1' }));
    assert.ok(!sameSpelling({ B: bytes(1) }, { B: bytes(1) }));
    assert.ok(!sameSpelling(undefined, { N: '1' }));
  });
});
