/**
 * The consistency run's second shard map (`remap` fault, consistency/harness.ts): whichever form it
 * takes, it is a map the library accepts, over the same nodes, that moves some keys, and the shard
 * names the containers record stay those of the nodes their map uses.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { otherShardMap } from '../../consistency/harness.ts';
import { rng } from '../../consistency/rng.ts';
import { contiguousShardMap } from '../../lib/cache/shards.ts';
import { parseShardMap, VIRTUAL_SHARDS } from '../../lib/config.ts';

const first = ['shard0', 'shard1', 'shard2', 'shard3'].map((name, i) => ({ url: `redis://127.0.0.1:${7000 + i}`, name }));

describe('remap: the second shard map', () => {
  test('every form is a valid map over the same nodes that moves some keys, with its shard names', () => {
    // Prepare: enough seeds to draw both forms many times.
    const forms = new Set<string>();
    for (let seed = 1; seed <= 40; seed++) {
      // Act
      const other = otherShardMap(first, rng(seed));
      // Assess
      const nodes = (other.env.CACHE_NODES ?? first.map((x) => x.url).join(',')).split(',');
      assert.deepEqual([...nodes].sort(), first.map((x) => x.url).sort(), 'the same nodes');
      const map = parseShardMap(other.env.CACHE_SHARD_MAP, nodes.length) ?? contiguousShardMap(nodes.length);
      const base = contiguousShardMap(first.length);
      let moved = 0;
      for (let s = 0; s < VIRTUAL_SHARDS; s++) {
        const name = other.nodeNames[map[s] as number];
        // The recorded name is the shard behind the URL this map sends the virtual shard to.
        assert.equal(first.find((x) => x.url === nodes[map[s] as number])?.name, name);
        if (name !== first[base[s] as number]?.name) moved++;
      }
      assert.ok(moved > 0, `seed ${seed}: some keys move`);
      assert.equal(other.movedShare, moved / VIRTUAL_SHARDS, `seed ${seed}: the share moved is reported`);
      forms.add(other.env.CACHE_SHARD_MAP === undefined ? 'order' : 'map');
    }
    assert.deepEqual([...forms].sort(), ['map', 'order']);
  });
});
