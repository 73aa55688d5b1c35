/** The canonical digest of an item's content (lib/digest.ts): one item, one digest, however spelled. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { DIGEST_LENGTH, itemDigest, spelledItemDigest } from '../../lib/digest.ts';

type Item = Record<string, AttributeValue>;

describe('itemDigest', () => {
  const item: Item = {
    id: { S: 'a' },
    n: { N: '1.5' },
    tags: { SS: ['x', 'y'] },
    nums: { NS: ['1', '20'] },
    bin: { B: Uint8Array.from([1, 2, 3]) },
    nested: { M: { b: { N: '100' }, a: { L: [{ N: '0.0000001' }, { BOOL: true }, { NULL: true }] } } },
    _version: { N: '3' },
  };

  test('attribute order, map-key order, number spelling, set order and binary encoding do not matter', () => {
    const respelled = {
      _version: { N: '3.0' },
      nested: { M: { a: { L: [{ N: '1E-7' }, { BOOL: true }, { NULL: true }] }, b: { N: '1e2' } } },
      bin: { B: 'AQID' }, // base64, as a Lambda stream event carries binary
      nums: { NS: ['20.0', '01'] },
      tags: { SS: ['y', 'x'] },
      n: { N: '15e-1' },
      id: { S: 'a' },
    } as unknown as Item;
    assert.equal(itemDigest(respelled), itemDigest(item));
    assert.equal(itemDigest(item).length, DIGEST_LENGTH);
  });

  test('any change of content, type, list order or version gives another digest', () => {
    const base = itemDigest(item);
    const variants: Item[] = [
      { ...item, id: { S: 'b' } },
      { ...item, n: { S: '1.5' } },
      { ...item, n: { N: '1.50001' } },
      { ...item, tags: { SS: ['x'] } },
      { ...item, bin: { B: Uint8Array.from([1, 2]) } },
      { ...item, nested: { M: { b: { N: '100' }, a: { L: [{ BOOL: true }, { N: '0.0000001' }, { NULL: true }] } } } },
      { ...item, _version: { N: '4' } },
      { ...item, extra: { NULL: true } },
      Object.fromEntries(Object.entries(item).filter(([k]) => k !== 'n')),
      { ...item, nested: { L: [{ N: '100' }] } },
    ];
    const digests = variants.map(itemDigest);
    for (const d of digests) assert.notEqual(d, base);
    assert.equal(new Set(digests).size, digests.length);
  });

  test('names that look like the canonical form’s own markers cannot forge another item', () => {
    assert.notEqual(itemDigest({ a: { S: 'b' } }), itemDigest({ a: { M: { S: { S: 'b' } } } }));
    assert.notEqual(itemDigest({ 'a","b': { S: 'c' } }), itemDigest({ a: { S: 'c' }, b: { S: 'c' } }));
  });

  test('the digest of a fixed item is pinned (entries and records written by earlier versions still compare)', () => {
    // The value lib/digest.ts gave before its canonical form was written as text directly (issue 18).
    const pinned: Item = {
      id: { S: 'a"é\u{1F600}' },
      n: { N: '1.50' },
      b: { B: new Uint8Array([1, 2, 255]) },
      t: { BOOL: true },
      f: { BOOL: false },
      z: { NULL: true },
      ss: { SS: ['b', 'a', 'b'] },
      ns: { NS: ['10', '1E1', '-0.5'] },
      bs: { BS: [new Uint8Array([2]), new Uint8Array([1])] },
      l: { L: [{ N: '-0.0000001' }, { M: { y: { S: 'x' }, '10': { N: '2' }, '2': { L: [] } } }] },
      _version: { N: '3' },
    };
    assert.equal(itemDigest(pinned), 'xOclXbUUjnqqBtgMkWfywx');
  });

  test('the digest of an item whose canonical text spans many hashed pieces is pinned (surrogate pairs, escapes, a long string)', () => {
    // Prepare: about 1 MB of canonical text, hashed in pieces since issue 18; the values are the
    // ones lib/digest.ts gave when it hashed the text as one string (commit 40de970).
    const big = (): Item => ({
      l: {
        L: Array.from({ length: 6000 }, (_, i) =>
          i % 3 === 0
            ? { S: `é😀"\\${i}` }
            : i % 3 === 1
              ? { N: `-0.${'0'.repeat(i % 130)}${i + 1}` }
              : { M: { [`k${i}`]: { S: '😀'.repeat(i % 7) }, z: { BOOL: true } } },
        ),
      },
      s: { S: '😀'.repeat(40_000) },
      _version: { N: '7' },
    });
    // Act, Assess
    assert.equal(itemDigest(big()), 'zJTGpeNA0nZg8QEriQ1gQ+');
    assert.equal(spelledItemDigest(big()), 'YMu6gSpmFYhE+0m0W7c746');
  });

  test("spelledItemDigest: the same digest for an item whose numbers are already in DynamoDB's spelling", () => {
    const spelled: Item = { n: { N: '1.5' }, ns: { NS: ['-0.5', '10'] }, l: { L: [{ N: '-0.0000001' }, { M: { a: { N: '2' } } }] } };
    assert.equal(spelledItemDigest(spelled), itemDigest(spelled));
    assert.equal(spelledItemDigest(item), itemDigest(item));
  });
});
