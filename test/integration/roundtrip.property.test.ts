/**
 * G4: whatever a caller can store in DynamoDB comes back identical through every path — the put's
 * own result, DynamoDB itself, a cache hit, a miss that fills and the hit after it.
 *
 * What the generator produces, and why (each choice checked against DynamoDB Local and the AWS docs):
 *  - attribute names are never empty, top level or nested: DynamoDB refuses them ("Empty attribute
 *    name"). Top-level names exclude the key (`userId`) and the reserved version attribute
 *    (`_version`); nested maps may use both. `__proto__` and `constructor` are valid DynamoDB names
 *    but are left to the dedicated tests at the end of this file (they currently fail; see there), so
 *    that the property keeps checking everything else.
 *  - empty strings and empty binary values are generated anywhere a value can be, including inside
 *    string and binary sets: DynamoDB Local accepts them, and AWS documents "empty string and binary
 *    values are allowed within a set".
 *  - sets are non-empty with elements unique by DynamoDB's rules (numbers by value: 1 and 1.0 are
 *    one element; DynamoDB refuses duplicates and empty sets). Each number set holds one JS kind
 *    (number, bigint or NumberValue), as the SDK's marshall infers the set's conversion from its
 *    first element.
 *  - numbers stay within what DynamoDB stores: at most 38 significant digits, magnitude 1e-130 to
 *    below 1e126. JS numbers are finite, within ±(2^53 − 1) (marshall refuses larger ones, by design:
 *    use NumberValue or bigint), and not below 1e-120 in magnitude (except 0).
 *  - strings are well-formed Unicode (no lone surrogates, which real DynamoDB refuses as invalid
 *    UTF-8, though DynamoDB Local stores them).
 *  - sizes stay well below the 400 KB item limit and the 32-level nesting limit.
 *
 * How DynamoDB Local spells numbers (measured; the library normalizes every number before writing):
 * top-level N and NS come back canonical ('1.50' → '1.5', '1e-7' → '0.0000001'); an N nested in a
 * map or list comes back verbatim, as sent; an NS nested in a map or list comes back as Java's
 * BigDecimal.toString() spells it (scale kept, scientific below 1e-6: '0.0000001' → '1E-7'). The last
 * is what the property trips on today — see the dedicated test near the end of the file.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { GetItemCommand, PutItemCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import fc from 'fast-check';
import { startStack, type TestStack } from '../helpers/stack.ts';
import type { ItemCache } from '../../lib/item-cache.ts';
import { fromAttributes, type Item } from '../../lib/codec.ts';
import { normalizeNumber, NumberValue, ValidationError } from '../../lib/index.ts';

const TABLE = 'users';
const MAX_NUMBER_DIGITS = 38;

// ---------------------------------------------------------------------------------------------
// An oracle for numbers, independent of lib/numbers.ts: the value of a decimal spelling in
// DynamoDB's canonical form (plain decimal, no exponent, no redundant zeros, "0" for zero).

function canonicalDecimal(text: string): string {
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!m || (m[2] ?? '') + (m[3] ?? '') === '') throw new Error(`not a decimal: '${text}'`);
  const frac = m[3] ?? '';
  let digits = BigInt((m[2] ?? '') + frac);
  if (digits === 0n) return '0';
  let exp = BigInt(m[4] ?? '0') - BigInt(frac.length);
  while (digits % 10n === 0n) {
    digits /= 10n;
    exp += 1n;
  }
  const ds = digits.toString();
  let plain: string;
  if (exp >= 0n) plain = ds + '0'.repeat(Number(exp));
  else {
    const k = Number(-exp);
    plain = k < ds.length ? `${ds.slice(0, ds.length - k)}.${ds.slice(ds.length - k)}` : `0.${'0'.repeat(k - ds.length)}${ds}`;
  }
  return m[1] === '-' ? `-${plain}` : plain;
}

function numberText(v: unknown): string | undefined {
  if (typeof v === 'number') return canonicalDecimal(String(v));
  if (typeof v === 'bigint') return canonicalDecimal(v.toString());
  if (v instanceof NumberValue) return canonicalDecimal(v.value);
  return undefined;
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/**
 * A value's meaning as DynamoDB sees it: numbers by value, binary by bytes, sets unordered, maps by
 * their own properties. Used to check that what comes back is what the caller put in.
 */
function meaning(v: unknown): unknown {
  const n = numberText(v);
  if (n !== undefined) return { N: n };
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (v instanceof Uint8Array) return { B: hex(v) };
  if (v instanceof Set) return { set: [...v].map((x) => JSON.stringify(meaning(x))).sort() };
  if (Array.isArray(v)) return v.map(meaning);
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) {
      Object.defineProperty(out, k, { value: meaning((v as Record<string, unknown>)[k]), enumerable: true });
    }
    return { M: out };
  }
  throw new Error(`unexpected value ${String(v)}`);
}

/**
 * What the library hands back: numbers as number | NumberValue, plain Uint8Array, plain objects.
 * DynamoDB's spelling of a number is known only at the top level (inside maps and lists DynamoDB
 * Local answers as sent, or, for number sets, in Java BigDecimal form such as `9.0E-7`), so only
 * there is the spelling checked.
 */
function assertOutputShape(v: unknown, path: string, topLevel = false, isItem = false): void {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
  if (typeof v === 'number') {
    assert.ok(Number.isFinite(v), `${path}: ${v}`);
    return;
  }
  if (v instanceof NumberValue) {
    if (topLevel) assert.equal(v.value, canonicalDecimal(v.value), `${path}: NumberValue not in DynamoDB's spelling`);
    // A JS number would have done only if it were exact; then the library must not wrap it.
    const n = Number(v.value);
    const exact = String(n) === v.value && (!Number.isInteger(n) || Number.isSafeInteger(n));
    assert.ok(!exact, `${path}: ${v.value} is exact as a JS number but came back as a NumberValue`);
    return;
  }
  if (v instanceof Uint8Array) {
    assert.ok(Object.getPrototypeOf(v) === Uint8Array.prototype, `${path}: binary is a ${v.constructor.name}, not a plain Uint8Array`);
    return;
  }
  if (v instanceof Set) {
    assert.ok(v.size > 0, `${path}: empty set`);
    [...v].forEach((x, i) => assertOutputShape(x, `${path}<${i}>`, topLevel));
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((x, i) => assertOutputShape(x, `${path}[${i}]`));
    return;
  }
  assert.equal(typeof v, 'object', `${path}: ${typeof v}`);
  assert.ok(Object.getPrototypeOf(v) === Object.prototype, `${path}: not a plain object`);
  for (const [k, x] of Object.entries(v as object)) assertOutputShape(x, `${path}.${k}`, isItem);
}

// ---------------------------------------------------------------------------------------------
// Generators.

/** Names, biased towards ones that collide with type tags, cache hash fields, separators and Object.prototype. */
const specialNames = [
  ':',
  '{',
  '}',
  '{a}',
  'a:b',
  '%3A',
  '_wv',
  '_rv',
  'd',
  'v',
  't',
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
  '$unknown',
  'toJSON',
  'toString',
  'valueOf',
  'hasOwnProperty',
  'isPrototypeOf',
  'a.b',
  '#x',
  ':x',
  ' ',
  'é😀',
  '0',
  '-1',
  'prototype',
  '__defineGetter__',
];
const EXCLUDED_NAMES = new Set(['__proto__', 'constructor']);
const nestedName = fc
  .oneof(fc.constantFrom(...specialNames, '_version', 'userId'), fc.string({ unit: 'binary', minLength: 1, maxLength: 10 }))
  .filter((n) => !EXCLUDED_NAMES.has(n));
const topName = nestedName.filter((n) => n !== '_version' && n !== 'userId');

const shortString = fc.oneof(
  fc.constant(''),
  fc.string({ unit: 'binary', maxLength: 16 }),
  fc.string({ unit: 'grapheme', maxLength: 8 }),
  fc.constantFrom('\u0000', '"', '\\', '\u2028', '{"S":"x"}', 'AQID', '-', 'cafe\u0301', 'caf\u00e9', '😀'),
);
const longString = fc.string({ unit: 'binary', minLength: 500, maxLength: 5000 });

const safeInteger = fc.maxSafeInteger();
/** Doubles that are short decimals: m × 10^-k. */
const shortDecimal = fc
  .tuple(fc.integer({ min: -999_999_999, max: 999_999_999 }), fc.integer({ min: 0, max: 9 }))
  .map(([m, k]) => Number(`${m}e-${k}`));
/** Any double DynamoDB can hold and marshall accepts (including -0 and ones whose shortest form has an exponent). */
const anyDouble = fc
  .double({ min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER, noNaN: true })
  .filter((x) => x === 0 || Math.abs(x) >= 1e-120);
const jsNumber = fc.oneof(
  safeInteger,
  shortDecimal,
  anyDouble,
  fc.constantFrom(0, -0, 0.1, 0.30000000000000004, 1e-7, 5e-7, 123e20 / 1e20, 2 ** 53 - 1, -(2 ** 53 - 1)),
);
const bigInteger = fc.oneof(fc.bigInt({ min: -(10n ** 38n) + 1n, max: 10n ** 38n - 1n }), fc.bigInt({ min: -(2n ** 64n), max: 2n ** 64n }));

/** A NumberValue: 1–38 significant digits at any exponent DynamoDB accepts, in one of many spellings. */
const numberValue = fc
  .record({
    sign: fc.constantFrom('', '-', '+'),
    digits: fc.oneof(
      fc.bigInt({ min: 1n, max: 10n ** 38n - 1n }),
      fc.bigInt({ min: 1n, max: 10n ** 17n }),
      fc.bigInt({ min: 2n ** 53n - 3n, max: 2n ** 53n + 1000n }),
    ),
    exp: fc.integer({ min: -170, max: 125 }),
    style: fc.constantFrom('plain', 'e', 'E+', 'sci', 'padded'),
    pad: fc.integer({ min: 0, max: 3 }),
  })
  .map(({ sign, digits, exp, style, pad }) => {
    let ds = digits.toString();
    // Clamp the exponent so the magnitude (exp + digits - 1) lies within [-130, 125].
    const e = Math.max(-130 - ds.length + 1, Math.min(exp, 125 - ds.length + 1));
    switch (style) {
      case 'e':
        return `${sign}${ds}e${e}`;
      case 'E+':
        return `${sign}${ds}E${e >= 0 ? '+' : ''}${e}`;
      case 'sci':
        return `${sign}${ds[0]}.${ds.slice(1)}e${e + ds.length - 1}`;
      case 'padded':
        ds = `${'0'.repeat(pad)}${ds}.${'0'.repeat(pad)}`;
        return `${sign}${ds}e${e}`;
      default: {
        if (e >= 0) return `${sign}${ds}${'0'.repeat(e)}`;
        const k = -e;
        return k < ds.length
          ? `${sign}${ds.slice(0, ds.length - k)}.${ds.slice(ds.length - k)}`
          : `${sign}0.${'0'.repeat(k - ds.length)}${ds}`;
      }
    }
  })
  .map((s) => new NumberValue(s));
const specialNumberValues = fc
  .constantFrom(
    '0',
    '-0',
    '0.000',
    '0e5',
    '9007199254740993',
    '-9007199254740993',
    '18446744073709551616',
    '0.1',
    '1.0',
    '1.50',
    '3.1415926535897932384626433832795028841',
    '12345678901234567890123456789012345678',
    `1e-130`,
    '-1e-130',
    '9.9999999999999999999999999999999999999e125',
    '-9.9999999999999999999999999999999999999e125',
    '1e125',
    '.5',
    '5.',
    '0.1000000000000000055511151231257827',
    '1e-7',
    '123456789.123456789123456789',
  )
  .map((s) => new NumberValue(s));
const anyNumber = fc.oneof(jsNumber, bigInteger, numberValue, specialNumberValues);

const binary = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.constant(new Uint8Array()),
  // A view into a larger buffer: only the view's bytes are the value.
  fc.uint8Array({ minLength: 2, maxLength: 32 }).map((a) => a.subarray(1, a.length - 1)),
);

const uniqueBy = <T>(arb: fc.Arbitrary<T>, selector: (v: T) => unknown) =>
  fc.uniqueArray(arb, { minLength: 1, maxLength: 5, selector }).map((xs) => new Set(xs));
const numberKey = (v: unknown): string => numberText(v) as string;
const sets = fc.oneof(
  uniqueBy(shortString, (s) => s),
  uniqueBy(jsNumber, numberKey),
  uniqueBy(bigInteger, numberKey),
  uniqueBy(fc.oneof(numberValue, specialNumberValues), numberKey),
  uniqueBy(binary, hex),
);

const leaf = fc.oneof(shortString, anyNumber, binary, fc.boolean(), fc.constant(null), sets);

/** Items whose values are `leaf`s, or lists and maps of them up to three levels deep, with now and then a long string. */
function itemsOf(leafArb: fc.Arbitrary<unknown>): fc.Arbitrary<Record<string, unknown>> {
  const { value } = fc.letrec<{ value: unknown }>((tie) => ({
    value: fc.oneof(
      { maxDepth: 3, depthSize: 'small', withCrossShrink: true },
      leafArb,
      fc.array(tie('value'), { maxLength: 4 }),
      fc.dictionary(nestedName, tie('value'), { maxKeys: 4 }),
    ),
  }));
  return fc.dictionary(topName, fc.oneof({ weight: 12, arbitrary: value }, { weight: 1, arbitrary: longString }), {
    minKeys: 0,
    maxKeys: 8,
  });
}

const attributes = itemsOf(leaf);
/**
 * Items of only what plain JSON can carry (strings, JS numbers, booleans, null, lists, maps): the
 * cache keeps most of these in its native `[version,{…}]` form rather than as attribute values.
 */
const plainAttributes = itemsOf(fc.oneof(shortString, jsNumber, fc.boolean(), fc.constant(null)));

// ---------------------------------------------------------------------------------------------

describe('G4: every DynamoDB type round-trips exactly through put, DynamoDB, hit, miss and fill', () => {
  let stack: TestStack;
  let cache: ItemCache;
  const runId = randomBytes(4).toString('hex');
  let seq = 0;
  const nextUserId = () => `rt-${runId}-${seq++}`;

  before(async () => {
    stack = await startStack({ shards: 2 });
    // These properties assert hits; a script that a loaded machine answers past the stack's 500 ms
    // would mark its node down and turn later reads into bypasses. Timeouts are tested elsewhere.
    cache = stack.cache({ CACHE_COMMAND_TIMEOUT_MS: '5000' });
  });
  after(async () => stack?.stop());

  /** DynamoDB's own answer: a consistent GetItem, decoded by the library's codec, version removed. */
  async function readRaw(userId: string): Promise<{ item: Item; version: unknown }> {
    const out = await stack.dynamo.send(
      new GetItemCommand({ TableName: `${stack.prefix}${TABLE}`, Key: { userId: { S: userId } }, ConsistentRead: true }),
    );
    assert.ok(out.Item, `item ${userId} is not in DynamoDB`);
    const { _version: version, ...item } = fromAttributes(out.Item);
    return { item, version };
  }

  /** Puts one item and checks the four reads against each other and against the input. */
  async function checkRoundTrip(item: Item): Promise<void> {
    const userId = item.userId as string;
    const before = meaning(item);
    const written = await cache.put(TABLE, item);
    assert.equal(written.version, 1);
    assert.deepStrictEqual(meaning(item), before, 'put changed its input');

    // (a) DynamoDB itself.
    const raw = await readRaw(userId);
    assert.equal(raw.version, 1);
    assert.deepStrictEqual(written.item, raw.item, 'put result ≠ DynamoDB');
    // What DynamoDB holds means what the caller wrote (numbers by value, binary by bytes, sets unordered).
    assert.deepStrictEqual(meaning(raw.item), before, 'DynamoDB ≠ input');
    assertOutputShape(raw.item, 'dynamodb', false, true);

    // (b) The entry the put stored.
    const hit = await cache.get(TABLE, { userId });
    assert.equal(hit.cache, 'hit');
    assert.equal(hit.version, 1);
    assert.deepStrictEqual(hit.item, raw.item, 'hit after put ≠ DynamoDB');

    // (c) Without the entry: a miss read from DynamoDB that fills, then a hit on the fill.
    const rk = cache.resolve(TABLE, { userId });
    const node = cache.nodeFor(rk);
    assert.ok(node, 'users is cached');
    assert.equal(await node.client.del(rk.redisKey), 1);
    const miss = await cache.get(TABLE, { userId });
    assert.equal(miss.cache, 'miss');
    assert.equal(miss.version, 1);
    assert.deepStrictEqual(miss.item, raw.item, 'miss ≠ DynamoDB');
    const filled = await cache.get(TABLE, { userId });
    assert.equal(filled.cache, 'hit');
    assert.equal(filled.version, 1);
    assert.deepStrictEqual(filled.item, raw.item, 'hit after fill ≠ DynamoDB');
  }

  test('property: 250 generated items', async (t) => {
    const t0 = Date.now();
    await fc.assert(
      fc.asyncProperty(attributes, async (attrs) => {
        await checkRoundTrip({ ...attrs, userId: nextUserId() });
      }),
      { numRuns: 250 },
    );
    t.diagnostic(`250 round trips in ${Date.now() - t0} ms`);
  });

  test('property: 300 generated plain-JSON items (the native entry form)', async (t) => {
    let native = 0;
    await fc.assert(
      fc.asyncProperty(plainAttributes, async (attrs) => {
        const userId = nextUserId();
        await checkRoundTrip({ ...attrs, userId });
        // checkRoundTrip ends on a hit of the entry its miss filled: that is the form the item has.
        const rk = cache.resolve(TABLE, { userId });
        const node = cache.nodeFor(rk)!;
        const entry = await node.client.hget(rk.redisKey, 'd');
        if (entry?.startsWith(`${node.epochTag}[`)) native++;
      }),
      { numRuns: 300 },
    );
    t.diagnostic(`${native} of 300 items were cached in the native form`);
    // Numbers DynamoDB spells differently from JS (1e-7 → 0.0000001) keep the attribute-value form.
    assert.ok(native >= 150, `only ${native} of 300 plain items took the native form`);
  });

  test('examples: each type at its edges', async () => {
    await checkRoundTrip({
      userId: nextUserId(),
      emptyString: '',
      unicode: 'é😀\u0000"\\\u2028',
      long: 'x'.repeat(100_000),
      zero: 0,
      negZero: -0,
      safe: Number.MAX_SAFE_INTEGER,
      double: 0.30000000000000004,
      tiny: 1e-7,
      beyond: new NumberValue('9007199254740993'),
      big: 2n ** 100n,
      digits38: new NumberValue('-1.2345678901234567890123456789012345678e-130'),
      max: new NumberValue('9.9999999999999999999999999999999999999e125'),
      spelled: new NumberValue('+00012.3400e-1'),
      bin: new Uint8Array([0, 255]),
      emptyBin: new Uint8Array(),
      t: true,
      n: null,
      list: [[], {}, [[[1]]], { ' ': '' }, '', new Uint8Array()],
      map: { B: 'AQID', BS: ['AQID'], N: { S: 'x' }, _wv: 1, _rv: 2, d: '-', ':': { '{': '}' }, _version: 3, userId: 'other' },
      ss: new Set(['', 'a', 'b']),
      ns: new Set([new NumberValue('1'), new NumberValue('1.5'), new NumberValue('9007199254740993')]),
      nsNumbers: new Set([0, 0.1, -5]),
      bs: new Set([new Uint8Array(), new Uint8Array([1])]),
      B: 'x',
      BS: 1,
      M: [],
      S: new Set(['S']),
      d: 'data',
      _wv: 'not the writer fence',
    });
  });

  test('numbers: normalizeNumber accepts exactly what DynamoDB accepts, in its spelling', async () => {
    // Boundary spellings; each is written raw to DynamoDB and compared with the library's verdict.
    // (Not covered: surrounding whitespace, which the library trims and DynamoDB refuses — the
    // library then writes the trimmed number, so nothing is lost — and non-ASCII digits, which
    // DynamoDB Local accepts and real DynamoDB does not.)
    const spellings = [
      '1.50',
      '1E2',
      '-0',
      '0.000',
      '1e-5',
      '+5',
      '.5',
      '5.',
      '-1.2300e-3',
      '0e999',
      '0.0e-999',
      '1e+2',
      '00012',
      '12345678901234567890123456789012345678',
      '123456789012345678901234567890123456789',
      '1234567890123456789012345678901234567800000',
      '1.2345678901234567890123456789012345678e-130',
      '1.23456789012345678901234567890123456789e-130',
      '1e125',
      '9.9999999999999999999999999999999999999e125',
      '9.99999999999999999999999999999999999999e125',
      '1e126',
      '10e125',
      '1e-130',
      '1.2e-130',
      '0.1e-129',
      '9.9e-131',
      '1e-131',
      '-1e-130',
      'abc',
      '',
      '.',
      '1e',
      'e1',
      'Infinity',
      'NaN',
      '0x10',
      '1_000',
      '1,5',
      '--1',
    ];
    const table = `${stack.prefix}${TABLE}`;
    const mismatches: string[] = [];
    await Promise.all(
      spellings.map(async (text, i) => {
        const userId = `num-${runId}-${i}`;
        let dynamo: string;
        try {
          await stack.dynamo.send(new PutItemCommand({ TableName: table, Item: { userId: { S: userId }, n: { N: text } } }));
          const out = await stack.dynamo.send(
            new GetItemCommand({ TableName: table, Key: { userId: { S: userId } }, ConsistentRead: true }),
          );
          dynamo = `accepted as ${out.Item?.n?.N}`;
        } catch (e) {
          dynamo = 'refused';
          assert.equal((e as Error).name, 'ValidationException', `${text}: ${String(e)}`);
        }
        let library: string;
        try {
          library = `accepted as ${normalizeNumber(text, 'n')}`;
        } catch (e) {
          assert.ok(e instanceof ValidationError);
          library = 'refused';
        }
        if (dynamo !== library) mismatches.push(`'${text}': DynamoDB ${dynamo}, library ${library}`);
      }),
    );
    assert.deepEqual(mismatches, []);
  });

  // ---------------------------------------------------------------------------------------------
  // LIBRARY BUGS found while writing this file. Each test states what G4 requires; they fail today.

  // DynamoDB Local answers the elements of a number set nested in a map or list as Java's
  // BigDecimal.toString() spells them: scientific notation once the exponent is below -6 ('1E-7',
  // '-2.5E-10'), while top-level N and NS, and nested N, come back plain ('0.0000001'). The library
  // writes and caches the plain spelling, so the put result and the hit after it hold
  // NumberValue('0.0000001') where DynamoDB, and therefore a miss and its fill, give NumberValue('1E-7').
  // (This is the shrunk counterexample the property finds; real DynamoDB's spelling is unverified.)
  test('a number set nested in a map or list: the put and its hit agree with DynamoDB', async () => {
    const userId = nextUserId();
    const written = await cache.put(TABLE, { userId, m: { s: new Set([new NumberValue('0.0000001')]) }, l: [new Set([-2.5e-10])] });
    const raw = await readRaw(userId);
    const hit = await cache.get(TABLE, { userId });
    assert.equal(hit.cache, 'hit');
    assert.deepStrictEqual(meaning(raw.item), meaning(written.item));
    assert.deepStrictEqual(written.item, raw.item, 'put result ≠ DynamoDB');
    assert.deepStrictEqual(hit.item, raw.item, 'hit after put ≠ DynamoDB');
  });

  // The put result hands back the caller's Buffer objects, while every read (DynamoDB, hit, miss)
  // gives plain Uint8Array: `assert.deepStrictEqual(put.item, get.item)` fails on the prototype.
  // Cause: ItemCache.put builds WriteResult.item with fromAttributes(toAttributes(input)), and the
  // SDK's marshall/unmarshall pass binary values through as they are.
  test('Buffer values: the put result equals what every read returns (plain Uint8Array)', async () => {
    const userId = nextUserId();
    const written = await cache.put(TABLE, { userId, b: Buffer.from([1, 2, 3]), bs: new Set([Buffer.from([4])]) });
    const raw = await readRaw(userId);
    const hit = await cache.get(TABLE, { userId });
    assert.deepStrictEqual(hit.item, raw.item);
    assertOutputShape(written.item, 'put', false, true);
    assert.deepStrictEqual(written.item, raw.item);
  });

  // An attribute named "__proto__" is a valid DynamoDB name and is what JSON.parse yields for a
  // request body such as {"userId":"u","__proto__":{"a":1}}. The SDK's marshall assigns it with
  // `map[key] = …`, which sets the prototype of its scratch object instead: the attribute silently
  // vanishes, and the put succeeds without it. It must be stored (or the put refused), never dropped.
  test("an attribute named '__proto__' is stored, or the put refused; never silently dropped", async () => {
    for (const body of ['{"__proto__":{"a":1},"k":1}', '{"k":1,"m":{"__proto__":"x"}}']) {
      const userId = nextUserId();
      const item = JSON.parse(body) as Item;
      item.userId = userId;
      let written;
      try {
        written = await cache.put(TABLE, item);
      } catch (e) {
        assert.ok(e instanceof ValidationError, String(e));
        continue;
      }
      const raw = await readRaw(userId);
      assert.deepStrictEqual(meaning(raw.item), meaning(item), `${body}: DynamoDB holds ${JSON.stringify(raw.item)}`);
      assert.deepStrictEqual(written.item, raw.item);
    }
  });

  // Reading side: the AWS SDK's own response deserialiser assigns attribute names with `acc[key] = …`,
  // so an item written out of band with a "__proto__" attribute loses it in every read, raw or
  // cached. The library cannot restore what the SDK dropped; what it must do is answer the same
  // whichever way the item is read (G4), and refuse to write such a name (test above).
  test("an item with a '__proto__' attribute written out of band reads the same from DynamoDB and from the cache", async () => {
    const userId = nextUserId();
    const av: Record<string, AttributeValue> = { userId: { S: userId }, k: { N: '1' } };
    Object.defineProperty(av, '__proto__', { value: { S: 'x' }, enumerable: true, writable: true, configurable: true });
    await stack.dynamo.send(new PutItemCommand({ TableName: `${stack.prefix}${TABLE}`, Item: av }));
    const raw = await readRaw(userId);
    const first = await cache.get(TABLE, { userId });
    assert.equal(first.cache, 'miss');
    const second = await cache.get(TABLE, { userId });
    assert.equal(second.cache, 'hit');
    assert.deepStrictEqual(first.item, raw.item);
    assert.deepStrictEqual(second.item, raw.item);
  });

  // "constructor" is a valid DynamoDB attribute name, but the SDK's marshall decides a value's type
  // from `value.constructor.name`, so an item (or nested map) with an own "constructor" attribute is
  // refused with ValidationError ("Unsupported type passed: [object Object]").
  test("an attribute named 'constructor' can be written and read back", async () => {
    for (const extra of [{ constructor: 'c' }, { m: { constructor: 'c' } }, { constructor: { name: 'Set' } }]) {
      const userId = nextUserId();
      await checkRoundTrip({ ...extra, userId });
    }
  });
});
