/**
 * Adversarial review of issues 11 and 13 (CONSISTENCY.md): a node's map registry is read from the
 * node, which is not trusted to be well-formed (maps.ts parseDefinition). A record whose definition
 * names an address no URL parser reads (a faulty or tampered node, another version's format) made the
 * view throw: every write of every container that read it failed, and a cold container's reads too
 * (G3: a failing node never fails a request DynamoDB can serve).
 */
import { afterEach, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { mapIdOf } from '../../lib/cache/maps.ts';
import { REGISTRY_KEY } from '../../lib/cache/scripts.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const FAST = { CACHE_MAP_REFRESH_SECONDS: '1' };

describe('review: a malformed map record on a node', () => {
  let stack: TestStack;
  beforeEach(async () => {
    stack = await startStack({ shards: 2 });
  });
  afterEach(async () => stack.stop());

  test('an unreadable address in another map’s definition fails no request', { timeout: 60_000 }, async () => {
    const warm = stack.cache(FAST);
    const key = { userId: 'registry-record' };
    await warm.put('users', { ...key, v: 1 });
    // Prepare: a live record of a map whose definition names an address that is not a URL; its id is
    // its definition's hash, as REGISTER would have written it.
    const def = { nodes: ['redis://not a host:6379/'], shards: new Array<number>(100).fill(0) };
    const id = mapIdOf(def);
    for (const server of stack.servers) {
      const admin = server.client();
      const [seconds, micros] = await admin.time();
      const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      await admin.hset(REGISTRY_KEY, id, `abcdefgh:${now}:${now}`, `${id}:d`, JSON.stringify(def));
      await admin.quit();
    }
    // Act: a cold container reads and writes; the warm one writes once its view is old.
    const cold = stack.cache(FAST);
    const read = await cold.get('users', key);
    const written = await cold.put('users', { ...key, v: 2 });
    await sleep(1100);
    const again = await warm.put('users', { ...key, v: 3 });
    // Assess
    assert.equal(read.item?.v, 1);
    assert.equal(written.item.v, 2);
    assert.equal(again.item.v, 3);
    assert.equal((await cold.get('users', key)).item?.v, 3);
    assert.deepEqual(warm.shards.view?.otherMaps(), [], 'the unreadable map is not taken for a live one');
  });
});
