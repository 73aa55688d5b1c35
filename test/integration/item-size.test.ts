/**
 * DynamoDB's 400 KB item limit, counted by the library before the write (lib/item-size.ts): the rule
 * agrees with DynamoDB Local's own refusal byte for byte, and an item over it is refused before the
 * cache's fence, so neither DynamoDB nor the cached entry changes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GetItemCommand, PutItemCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { apiEvent } from '../helpers/api-event.ts';
import { ItemTooLargeError, NumberValue, type ItemCache } from '../../lib/index.ts';
import { itemSize, MAX_ITEM_BYTES, numberSize } from '../../lib/item-size.ts';
import { createHttpApp, type HttpHandler } from '../../functions/http/app.ts';
import { writeRoutes } from '../../functions/http/routes.ts';

const D38 = '12345678901234567890123456789012345678';
const zeros = (n: number): string => '0'.repeat(n);

/** Values whose sizes cover every case of the rule (numbers in DynamoDB's spelling). */
const NUMBERS = [
  '0',
  '1',
  '15',
  '1.5',
  '-1.5',
  '-12',
  '0.05',
  '-0.05',
  '1000.01',
  '100000000',
  D38,
  `-${D38}`,
  `-${D38.slice(0, 37)}`,
  `1.${D38.slice(1)}`,
  `-1.${D38.slice(1)}`,
  `-0.${zeros(129)}${D38}`,
  `0.${zeros(129)}1`,
  `-9${zeros(125)}`,
];
const SHAPES: Record<string, Record<string, AttributeValue>> = {
  numbers: { l: { L: NUMBERS.map((N) => ({ N })) }, n: { N: '-3.25' } },
  numberSet: { ns: { NS: NUMBERS } },
  strings: { é名: { S: 'ü€𝄞' }, ss: { SS: ['a', 'bé', '𝄞'] } },
  binary: { b: { B: new Uint8Array(7) }, bs: { BS: [new Uint8Array(5), new Uint8Array(1)] } },
  nested: {
    m: { M: { é: { M: { ab: { BOOL: false }, n: { NULL: true } } }, l: { L: [{ L: [] }, { M: {} }, { S: 'x' }] } } },
    t: { BOOL: true },
    z: { NULL: true },
  },
};

describe('item size (400 KB), counted before the write', () => {
  let stack: TestStack;
  let cache: ItemCache;
  let app: HttpHandler;
  let usersTable: string;
  before(async () => {
    stack = await startStack({ shards: 1 });
    cache = stack.cache();
    app = createHttpApp(cache, writeRoutes);
    usersTable = `${stack.prefix}users`;
  });
  after(async () => stack.stop());

  /** `base` padded with a string attribute to exactly `size` bytes by the library's count. */
  function padded(base: Record<string, AttributeValue>, size: number): Record<string, AttributeValue> {
    const n = size - itemSize(base) - 'pad'.length;
    assert.ok(n >= 0);
    return { ...base, pad: { S: 'x'.repeat(n) } };
  }

  async function dynamoStores(item: Record<string, AttributeValue>): Promise<boolean> {
    try {
      await stack.dynamo.send(new PutItemCommand({ TableName: usersTable, Item: item }));
      return true;
    } catch (err) {
      if (/size/i.test((err as Error).message)) return false;
      throw err;
    }
  }

  test('numberSize: base-100 digits aligned on the point, one exponent byte, one more for a negative of under 20 pairs', () => {
    const sizes = Object.fromEntries(NUMBERS.map((n) => [n.length > 20 ? `${n.slice(0, 8)}…(${n.length})` : n, numberSize(n)]));
    assert.deepEqual(sizes, {
      '0': 1,
      '1': 2,
      '15': 2,
      '1.5': 3,
      '-1.5': 4,
      '-12': 3,
      '0.05': 2,
      '-0.05': 3,
      '1000.01': 4,
      '100000000': 2,
      [`${D38.slice(0, 8)}…(38)`]: 20,
      [`-${D38.slice(0, 7)}…(39)`]: 21,
      [`-${D38.slice(0, 7)}…(38)`]: 21,
      [`1.${D38.slice(1, 7)}…(39)`]: 21,
      [`-1.${D38.slice(1, 6)}…(40)`]: 21,
      [`-0.${zeros(5)}…(170)`]: 21,
      [`0.${zeros(6)}…(132)`]: 2,
      [`-9${zeros(6)}…(127)`]: 3,
    });
  });

  for (const [name, shape] of Object.entries(SHAPES)) {
    test(`the rule is DynamoDB Local's, at the boundary: ${name}`, async () => {
      const base = { userId: { S: `size-${name}` }, ...shape };
      assert.equal(await dynamoStores(padded(base, MAX_ITEM_BYTES)), true, 'exactly 400 KB is stored');
      assert.equal(await dynamoStores(padded(base, MAX_ITEM_BYTES + 1)), false, 'one byte more is refused');
    });
  }

  test('a PUT one byte over is refused by the library before the write: the item and its cached entry stay as they were', async () => {
    const key = { userId: 'size-put' };
    // userId, n (-1.5: 4 bytes), pad, and the version the store adds (`_version` = 1: 8 + 2 bytes).
    const fixed = 'userId'.length + 'size-put'.length + 'n'.length + 4 + 'pad'.length + '_version'.length + 2;
    const body = (size: number) => ({ ...key, n: new NumberValue('-1.5'), pad: 'x'.repeat(size - fixed) });
    const atLimit = body(MAX_ITEM_BYTES);
    await cache.put('users', atLimit);
    assert.equal((await cache.get('users', key)).cache, 'hit');
    const over = body(MAX_ITEM_BYTES + 1);
    await assert.rejects(cache.put('users', over), (err: unknown) => {
      assert.ok(err instanceof ItemTooLargeError);
      assert.equal(err.size, MAX_ITEM_BYTES + 1, 'counted by the library, not refused by DynamoDB');
      return true;
    });
    const r = await cache.get('users', key);
    assert.equal(r.cache, 'hit', 'the entry was not touched');
    assert.equal(r.version, 1);
    assert.equal((r.item?.pad as string).length, (atLimit.pad as string).length);
    const raw = await stack.dynamo.send(new GetItemCommand({ TableName: usersTable, Key: { userId: { S: 'size-put' } } }));
    assert.equal(raw.Item?._version?.N, '1');
  });

  test('over HTTP: PUT and PATCH of an item surely over 400 KB are 413 naming the size, and nothing changes', async () => {
    const key = { userId: 'size-http' };
    await cache.put('users', { ...key, v: 1 });
    await cache.get('users', key);
    const put = await app(
      apiEvent('PUT', '/tables/users/items/size-http', { body: { v: 2, l: Array.from({ length: 140_000 }, () => 1.5) } }),
    );
    assert.equal(put.statusCode, 413);
    assert.match(JSON.parse(put.body ?? '').error.message, /400 KB item size limit \(560032 bytes as DynamoDB counts them\)/);
    const patch = await app(apiEvent('PATCH', '/tables/users/items/size-http', { body: { big: 'y'.repeat(MAX_ITEM_BYTES) } }));
    assert.equal(patch.statusCode, 413);
    const r = await cache.get('users', key);
    assert.equal(r.cache, 'hit');
    assert.deepEqual(r.item, { ...key, v: 1 });
  });
});
