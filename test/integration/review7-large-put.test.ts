/**
 * Review 7 (issue 18's write path): a put of 64 KB and more assembles its entry from the pieces
 * written while DynamoDB stores it (lib/item-cache.ts spelledOutcome) and its HTTP answer writes
 * numbers unchecked (functions/http/json.ts itemJsonText). Each entry, digest and answer is held to
 * what the old path gives for the item DynamoDB holds (encodeEntry, itemDigest, entryOf of DynamoDB's
 * read): items of odd number spellings, sets, integer-like and escaped names, empty values, binary,
 * tag-named maps, concurrent writers of one key and a refused ifVersion. Against DynamoDB Local and
 * real redis-servers.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { GetItemCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { call } from '../helpers/api-event.ts';
import { entryFields } from '../helpers/faults.ts';
import { NumberValue, VersionMismatchError, type ItemCache } from '../../lib/index.ts';
import { encodeEntry, entryOf, holdsSpelledNumbers } from '../../lib/codec.ts';
import { itemDigest } from '../../lib/digest.ts';
import { ENTRY_TAG_LENGTH } from '../../lib/cache/scripts.ts';
import { createHttpApp, type HttpHandler } from '../../functions/http/app.ts';
import { allRoutes } from '../../functions/http/routes.ts';
import { itemFromJson, itemToJson, parseJsonExact, stringifyJson } from '../../functions/http/json.ts';

/** assert.equal of two long texts, quoting only where they part. */
function sameText(actual: string | undefined, expected: string, what: string): void {
  if (actual === expected) return;
  const a = actual ?? '';
  let i = 0;
  while (i < a.length && a[i] === expected[i]) i++;
  assert.fail(
    `${what}: they part at ${i} (lengths ${a.length}, ${expected.length}): ${JSON.stringify(a.slice(Math.max(0, i - 40), i + 80))} vs ${JSON.stringify(expected.slice(Math.max(0, i - 40), i + 80))}`,
  );
}

const PAD = `"pad":"${'x'.repeat(70_000)}","big":12345678901234567890123456789012345678`;

/** Bodies (raw JSON text, so numbers keep their spelling), each over 64 KB. */
const BODIES: Record<string, string> = {
  spellings: `{${PAD},"l":[1E-130,-1.50e3,0.0000001,12345678901234567890123456789012345678,1.2345678901234567890123456789012345678e125,-0,100,1e2,0.10],"m":{"a":-0.000,"b":[9.99e125]}}`,
  nestedSet: `{${PAD},"m":{"ns":{"$set":[1e-7,3,2,0.5]},"n":1}}`,
  topSets: `{${PAD},"ss":{"$set":["b","a","c"]},"ns":{"$set":[10,2,1.5]},"l":[1]}`,
  intKeys: `{${PAD},"10":1,"2":[2],"a":{"10":1,"2":2,"01":3,"-1":4,"b":5},"0":{"x":[0]}}`,
  names: `{${PAD},"é":[1],"a\\"b":{"\\u2028":2},"\\\\":[3],"😀":{"😀":4},"\\u0000":[5]}`,
  empties: `{${PAD},"e":"","l":[],"m":{},"n":null,"b":false,"nl":[[],{},"",[1]]}`,
  binary: `{${PAD},"bin":{"$base64":"AAEC"},"l":[1]}`,
  tags: `{${PAD},"m":{"$map":{"$set":[1]}},"m2":{"$map":{"$base64":[2]}}}`,
};

describe('review 7: a large put’s entry and answer are the old path’s', () => {
  let stack: TestStack;
  let cache: ItemCache;
  let app: HttpHandler;
  before(async () => {
    stack = await startStack({});
    cache = stack.cache();
    app = createHttpApp(cache, allRoutes);
  });
  after(async () => stack.stop());

  for (const [name, body] of Object.entries(BODIES)) {
    test(name, async () => {
      const userId = `r7-${name}`;
      for (let round = 0; round < 2; round++) {
        const put = await call(app, 'PUT', `/tables/users/items/${encodeURIComponent(userId)}`, { body });
        assert.equal(put.status, 200, put.text);
        const { stored, cached } = await entryIsStored(cache, userId, `${name} round ${round}`);
        const old = stringifyJson(itemToJson(entryOf(stored, '_version').item));
        sameText(put.text, old, `${name} round ${round}: the answer is the stored item's`);
        if (cached) {
          const get = await call(app, 'GET', `/tables/users/items/${encodeURIComponent(userId)}`);
          assert.equal(get.headers['x-cache'], 'hit');
          sameText(get.text, old, `${name} round ${round}: a hit answers the stored item`);
        }
      }
    });
  }

  /**
   * The entry of `userId` is absent, or DynamoDB's item with its digest. Returns DynamoDB's item, and
   * whether an entry was there.
   */
  async function entryIsStored(
    c: ItemCache,
    userId: string,
    what: string,
  ): Promise<{ stored: Record<string, AttributeValue>; cached: boolean }> {
    const stored = (
      await stack.dynamo.send(
        new GetItemCommand({ TableName: `${stack.prefix}users`, Key: { userId: { S: userId } }, ConsistentRead: true }),
      )
    ).Item;
    assert.ok(stored !== undefined);
    const fields = await entryFields(c, c.resolve('users', { userId }));
    if (fields.d === undefined) return { stored, cached: false };
    sameText(fields.d.slice(ENTRY_TAG_LENGTH), encodeEntry(stored, '_version'), `${what}: the entry is the stored item's`);
    assert.equal(fields.g, itemDigest(stored), `${what}: the digest is the stored item's`);
    return { stored, cached: true };
  }

  const large = (userId: string, tag: string) => ({
    userId,
    pad: 'y'.repeat(70_000),
    tag,
    l: [new NumberValue('1.50'), 2, tag],
    m: { n: [new NumberValue(`0.${'0'.repeat(120)}123`)], t: tag },
  });

  test('concurrent large puts of one key, from two caches', async () => {
    const other = stack.cache();
    const userId = 'r7-concurrent';
    for (let round = 0; round < 3; round++) {
      await Promise.allSettled(
        Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? cache : other).put('users', large(userId, `${round}-${i}`))),
      );
      await entryIsStored(cache, userId, `round ${round}`);
    }
  });

  test('a large put with a wrong ifVersion leaves the entry as it was', async () => {
    const userId = 'r7-ifversion';
    const first = await cache.put('users', large(userId, 'a'));
    await cache.get('users', { userId });
    await assert.rejects(cache.put('users', large(userId, 'b'), { ifVersion: first.version + 5 }), VersionMismatchError);
    await entryIsStored(cache, userId, 'after the mismatch');
    const second = await cache.put('users', large(userId, 'c'), { ifVersion: first.version });
    assert.equal(second.version, first.version + 1);
    await entryIsStored(cache, userId, 'after the matching put');
  });

  test('the bodies above that DynamoDB answers as written take the assembled path (so the tests above cover it)', async () => {
    // Prepare: the library's own reading of each body, as the HTTP route makes it.
    const assembled: string[] = [];
    for (const [name, body] of Object.entries(BODIES)) {
      const item = { ...itemFromJson(parseJsonExact(body, 'body', true), 'body'), userId: `r7-lib-${name}` };
      // Act
      const r = await cache.put('users', item);
      // Assess: an answer registered as DynamoDB's spellings came from spelledOutcome (lib/item-cache.ts).
      if (holdsSpelledNumbers(r.item)) assembled.push(name);
      await entryIsStored(cache, `r7-lib-${name}`, name);
    }
    assert.ok(assembled.includes('spellings'), `assembled: ${assembled.join(', ')}`);
  });
});
