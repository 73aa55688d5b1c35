/** Cluster slots (lib/cache/slots.ts): what every cluster node computes, and the redirects they answer. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { redirectOf, slotOf, tagForSlot, SLOTS } from '../../lib/cache/slots.ts';
import { clusterSealKey } from '../../lib/cache/scripts.ts';

describe('cluster slots', () => {
  test('a key with a hash tag lands in the slot of the tag (the spec example: {user1000}.following)', () => {
    // Prepare: the Redis Cluster specification's example keys share the slot of "user1000".
    // Assess
    assert.equal(slotOf('{user1000}.following'), slotOf('user1000'));
    assert.equal(slotOf('{user1000}.followers'), slotOf('user1000'));
    assert.equal(slotOf('123456789'), 12739); // CRC16/XMODEM of "123456789" is 0x31C3
  });

  test("an epoch's seal, named with tagForSlot(s), lands in slot s, for the first, last and some slots between", () => {
    for (const slot of [0, 1, 777, 8191, 12345, SLOTS - 1]) {
      // Act
      const seal = clusterSealKey(tagForSlot(slot), 'f'.repeat(40));
      // Assess
      assert.equal(slotOf(seal), slot, seal);
    }
    assert.throws(() => tagForSlot(SLOTS), /not a cluster slot/);
  });

  test('MOVED and ASK answers are read as redirects; other errors are not', () => {
    assert.deepEqual(redirectOf(new Error('MOVED 3999 127.0.0.1:6381')), { kind: 'MOVED', slot: 3999, address: '127.0.0.1:6381' });
    assert.deepEqual(redirectOf(new Error('ASK 12 node-2.example:6379')), { kind: 'ASK', slot: 12, address: 'node-2.example:6379' });
    assert.equal(redirectOf(new Error('CLUSTERDOWN The cluster is down')), undefined);
    assert.equal(redirectOf('MOVED 1 a:1'), undefined);
  });
});
