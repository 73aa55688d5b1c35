/**
 * The drop-in client against DynamoDB itself: the same random sequences of lib-dynamodb commands
 * (fast-check) sent to a plain DynamoDBDocumentClient on one table and through withCache on its
 * twin, cached, must get the same answers and the same errors. DROP_IN_RUNS raises the number of
 * sequences (default 60: the share of `npm test`, kept small for its 10-minute budget); DROP_IN_SEED replays one.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BatchGetCommand,
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  ScanCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { defineTable, withCache, type CachedDocumentClient, type ItemCache, type ReadResult } from '../../lib/index.ts';
import { createTables } from '../../infra/local/create-tables.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';

const RUNS = Number(process.env.DROP_IN_RUNS ?? 60);
const SEED = process.env.DROP_IN_SEED === undefined ? undefined : Number(process.env.DROP_IN_SEED);

const CACHED = defineTable({ name: 'things', hashKey: { name: 'pk', type: 'S' }, rangeKey: { name: 'sk', type: 'N' } });
const TWIN = defineTable({ name: 'twin-things', hashKey: { name: 'pk', type: 'S' }, rangeKey: { name: 'sk', type: 'N' } });
const KEYS = [
  { pk: 'a', sk: 1 },
  { pk: 'a', sk: 2 },
  { pk: 'b/1', sk: 1 },
];

type Obj = Record<string, any>;

/** A command, written once for whichever table it is sent to. */
type Op = { kind: string; build: (table: string) => object; describe: string };

const key = fc.constantFrom(...KEYS);
const value = fc.oneof(fc.integer({ min: -5, max: 5 }), fc.constantFrom(0.5, 1e20));
const attrs = fc.record(
  {
    x: value,
    y: fc.constantFrom('', 'y', 'zoë'),
    l: fc.array(fc.oneof(value, fc.constant('e')), { maxLength: 3 }),
    m: fc.record({ a: value, b: fc.constantFrom('p', 'q') }, { requiredKeys: [] }),
    s: fc.constantFrom(new Set(['p']), new Set(['p', 'q'])),
    bin: fc.constantFrom(Uint8Array.of(1, 2), Uint8Array.of()),
    n: fc.constant(null),
    flag: fc.boolean(),
  },
  { requiredKeys: [] },
);
const projection = fc.constantFrom<[string, Obj | undefined] | undefined>(
  undefined,
  ['x', undefined],
  ['y, m.a', undefined],
  ['l[0], l[2], #s', { '#s': 's' }],
  ['m', undefined],
  ['pk, x', undefined],
  ['#nope', { '#nope': 'missing' }],
  ['x, x', undefined], // overlapping paths: DynamoDB's ValidationException
);
const condition = fc.constantFrom<[string, Obj | undefined] | undefined>(
  undefined,
  ['attribute_exists(pk)', undefined],
  ['attribute_not_exists(pk)', undefined],
  ['x > :c', { ':c': 0 }],
  ['size(l) < :c', { ':c': 2 }],
  ['#y = :c', { ':c': 'y' }],
);
const conditionNames = (c: [string, Obj | undefined] | undefined): Obj | undefined => (c?.[0].includes('#y') ? { '#y': 'y' } : undefined);
const update = fc.constantFrom<[string, Obj | undefined, Obj | undefined]>(
  ['SET x = :v', undefined, { ':v': 3 }],
  ['SET x = x + :v', undefined, { ':v': 1 }],
  ['ADD x :v', undefined, { ':v': 2 }],
  ['REMOVE y, l[0]', undefined, undefined],
  ['SET l = list_append(if_not_exists(l, :empty), :l)', undefined, { ':empty': [], ':l': [1] }],
  ['ADD s :ss', undefined, { ':ss': new Set(['r']) }],
  ['DELETE s :ss', undefined, { ':ss': new Set(['p']) }],
  ['SET m.a = :v', undefined, { ':v': 7 }],
  ['SET #y = :y ADD x :v REMOVE m', { '#y': 'y' }, { ':y': 'set', ':v': 1 }],
  ['add x :v', undefined, { ':v': 1 }],
  ['SET x = :unused', undefined, { ':v': 1 }], // an undefined placeholder: DynamoDB's ValidationException
);
const returnValues = fc.constantFrom(undefined, 'NONE', 'ALL_OLD', 'UPDATED_OLD', 'ALL_NEW', 'UPDATED_NEW');
const onFailure = fc.constantFrom(undefined, 'NONE', 'ALL_OLD');

const withExpr = (base: Obj, c: [string, Obj | undefined] | undefined, names?: Obj): Obj => {
  if (c === undefined) return base;
  const out: Obj = { ...base, ConditionExpression: c[0] };
  if (c[1]) out.ExpressionAttributeValues = { ...(base.ExpressionAttributeValues ?? {}), ...c[1] };
  const n = { ...(base.ExpressionAttributeNames ?? {}), ...(names ?? {}) };
  if (Object.keys(n).length > 0) out.ExpressionAttributeNames = n;
  return out;
};

const get: fc.Arbitrary<Op> = fc.tuple(key, projection, fc.boolean()).map(([k, p, consistent]) => ({
  kind: 'get',
  describe: `Get ${JSON.stringify(k)} ${p?.[0] ?? ''}${consistent ? ' consistent' : ''}`,
  build: (t) =>
    new GetCommand({
      TableName: t,
      Key: k,
      ...(consistent ? { ConsistentRead: true } : {}),
      ...(p ? { ProjectionExpression: p[0], ...(p[1] ? { ExpressionAttributeNames: p[1] } : {}) } : {}),
    }),
}));
const batchGet: fc.Arbitrary<Op> = fc
  .tuple(fc.uniqueArray(key, { minLength: 1, maxLength: 3, selector: (k) => JSON.stringify(k) }), projection, fc.boolean())
  .map(([keys, p, dup]) => ({
    kind: 'batchGet',
    describe: `BatchGet ${JSON.stringify(keys)}${dup ? ' +duplicate' : ''} ${p?.[0] ?? ''}`,
    build: (t) =>
      new BatchGetCommand({
        RequestItems: {
          [t]: {
            Keys: dup ? [...keys, keys[0]!] : keys,
            ...(p ? { ProjectionExpression: p[0], ...(p[1] ? { ExpressionAttributeNames: p[1] } : {}) } : {}),
          },
        },
      }),
  }));
const put: fc.Arbitrary<Op> = fc
  .tuple(key, attrs, condition, fc.constantFrom(undefined, 'NONE', 'ALL_OLD'), onFailure)
  .map(([k, a, c, rv, of]) => ({
    kind: 'put',
    describe: `Put ${JSON.stringify(k)} ${c?.[0] ?? ''} ${rv ?? ''} ${of ?? ''}`,
    build: (t) =>
      new PutCommand(
        withExpr(
          {
            TableName: t,
            Item: { ...a, ...k },
            ...(rv ? { ReturnValues: rv } : {}),
            ...(of ? { ReturnValuesOnConditionCheckFailure: of } : {}),
          },
          c,
          conditionNames(c),
        ) as PutCommand['input'],
      ),
  }));
const updateOp: fc.Arbitrary<Op> = fc
  .tuple(key, update, condition, returnValues, onFailure)
  .map(([k, [expr, names, values], c, rv, of]) => ({
    kind: 'update',
    describe: `Update ${JSON.stringify(k)} ${expr} ${c?.[0] ?? ''} ${rv ?? ''} ${of ?? ''}`,
    build: (t) =>
      new UpdateCommand(
        withExpr(
          {
            TableName: t,
            Key: k,
            UpdateExpression: expr,
            ...(names ? { ExpressionAttributeNames: names } : {}),
            ...(values ? { ExpressionAttributeValues: values } : {}),
            ...(rv ? { ReturnValues: rv } : {}),
            ...(of ? { ReturnValuesOnConditionCheckFailure: of } : {}),
          },
          c,
          conditionNames(c),
        ) as UpdateCommand['input'],
      ),
  }));
const del: fc.Arbitrary<Op> = fc.tuple(key, condition, fc.constantFrom(undefined, 'NONE', 'ALL_OLD'), onFailure).map(([k, c, rv, of]) => ({
  kind: 'delete',
  describe: `Delete ${JSON.stringify(k)} ${c?.[0] ?? ''} ${rv ?? ''}`,
  build: (t) =>
    new DeleteCommand(
      withExpr(
        { TableName: t, Key: k, ...(rv ? { ReturnValues: rv } : {}), ...(of ? { ReturnValuesOnConditionCheckFailure: of } : {}) },
        c,
        conditionNames(c),
      ) as DeleteCommand['input'],
    ),
}));
const transact: fc.Arbitrary<Op> = fc
  .tuple(
    fc.uniqueArray(key, { minLength: 1, maxLength: 2, selector: (k) => JSON.stringify(k) }),
    attrs,
    update,
    condition,
    fc.nat(3),
    fc.boolean(),
  )
  .map(([keys, a, [expr, names, values], c, first, dup]) => ({
    kind: 'transactWrite',
    describe: `TransactWrite ${JSON.stringify(keys)} ${first} ${c?.[0] ?? ''}${dup ? ' +duplicate' : ''}`,
    build: (t) => {
      const items = keys.map((k, i) => {
        const kind = (first + i) % 4;
        if (kind === 0) return { Put: withExpr({ TableName: t, Item: { ...a, ...k } }, c, conditionNames(c)) };
        if (kind === 1) {
          return {
            Update: withExpr(
              {
                TableName: t,
                Key: k,
                UpdateExpression: expr,
                ...(names ? { ExpressionAttributeNames: names } : {}),
                ...(values ? { ExpressionAttributeValues: values } : {}),
              },
              c,
              conditionNames(c),
            ),
          };
        }
        if (kind === 2) return { Delete: withExpr({ TableName: t, Key: k }, c, conditionNames(c)) };
        return { ConditionCheck: withExpr({ TableName: t, Key: k }, c ?? ['attribute_exists(pk)', undefined], conditionNames(c)) };
      });
      if (dup) items.push({ Delete: { TableName: t, Key: keys[0] } });
      return new TransactWriteCommand({ TransactItems: items as TransactWriteCommand['input']['TransactItems'] });
    },
  }));
const query: fc.Arbitrary<Op> = fc.constantFrom('a', 'b/1').map((pk) => ({
  kind: 'query',
  describe: `Query ${pk}`,
  build: (t) =>
    new QueryCommand({ TableName: t, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': pk }, ConsistentRead: true }),
}));
const scan: fc.Arbitrary<Op> = fc.constant({
  kind: 'scan',
  describe: 'Scan',
  build: (t: string) => new ScanCommand({ TableName: t, ConsistentRead: true }),
});

const op = fc.oneof(
  { weight: 5, arbitrary: get },
  { weight: 2, arbitrary: batchGet },
  { weight: 4, arbitrary: put },
  { weight: 5, arbitrary: updateOp },
  { weight: 2, arbitrary: del },
  { weight: 2, arbitrary: transact },
  { weight: 1, arbitrary: query },
  { weight: 1, arbitrary: scan },
);

/** An answer, comparable across the twins: the table's name made one, metadata and capacity left out, items in one order. */
function comparable(out: Obj, table: string): Obj {
  const { $metadata: _m, ConsumedCapacity: _c, ...rest } = out;
  const text = JSON.stringify(rest, (_k, v) =>
    v instanceof Set
      ? { $set: [...v].map(String).sort() }
      : v instanceof Uint8Array
        ? { $bytes: [...v] }
        : typeof v === 'bigint'
          ? String(v)
          : v,
  ).replaceAll(`"${table}"`, '"T"');
  const parsed = JSON.parse(text) as Obj;
  // DynamoDB answers a batch in no particular order, and a projection may leave no key to order by.
  // Attribute order differs between answers (deepEqual ignores it): items are ordered by their sorted attributes.
  const canonical = (v: unknown): string =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? `{${Object.keys(v)
          .sort()
          .map((k) => `${JSON.stringify(k)}:${canonical((v as Obj)[k])}`)
          .join(',')}}`
      : Array.isArray(v)
        ? `[${v.map(canonical).join(',')}]`
        : JSON.stringify(v);
  const order = (items: Obj[]) => items.sort((a, b) => canonical(a).localeCompare(canonical(b)));
  if (Array.isArray(parsed.Items)) order(parsed.Items);
  for (const items of Object.values((parsed.Responses ?? {}) as Record<string, Obj[]>)) if (Array.isArray(items)) order(items);
  return parsed;
}

function comparableError(err: unknown, table: string): Obj {
  const e = err as Obj;
  return comparable(
    {
      error: e?.name,
      message: e?.message,
      Item: e?.Item,
      CancellationReasons: e?.CancellationReasons,
    },
    table,
  );
}

async function outcome(client: { send: (c: any) => Promise<unknown> }, op: Op, table: string): Promise<Obj> {
  try {
    return comparable((await client.send(op.build(table))) as Obj, table);
  } catch (err) {
    return comparableError(err, table);
  }
}

describe('drop-in client: the same answers as DynamoDB, errors included (differential)', () => {
  let stack: TestStack;
  let cache: ItemCache;
  let plain: DynamoDBDocumentClient;
  let dropIn: CachedDocumentClient;
  let cachedName: string;
  let twinName: string;
  const seen = new Map<string, number>();
  const sources = new Map<string, number>();

  before(async () => {
    stack = await startStack({ tables: [CACHED] });
    await createTables(stack.dynamo, [TWIN], stack.prefix);
    cache = stack.cache();
    // Counts where the drop-in's cached reads were answered from (hit, miss, bypass): at readAs, where its GetCommands go.
    const readAs = cache.readAs.bind(cache) as (...args: unknown[]) => Promise<unknown>;
    cache.readAs = ((rk: unknown, context: unknown, answer: (r: ReadResult, c: unknown) => unknown, recover?: unknown) =>
      readAs(
        rk,
        context,
        (r: ReadResult, c: unknown) => {
          sources.set(r.cache, (sources.get(r.cache) ?? 0) + 1);
          return answer(r, c);
        },
        recover,
      )) as ItemCache['readAs'];
    plain = DynamoDBDocumentClient.from(stack.dynamo);
    dropIn = withCache(plain, { cache });
    cachedName = `${stack.prefix}things`;
    twinName = `${stack.prefix}twin-things`;
  });
  after(async () => stack.stop());

  test(`${RUNS} random command sequences: identical answers and errors on the plain twin and through the cache`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 10 }), async (ops) => {
        // Each sequence starts from empty tables (deleted through the cache on its side).
        for (const k of KEYS) {
          await plain.send(new DeleteCommand({ TableName: twinName, Key: k }));
          await dropIn.send(new DeleteCommand({ TableName: cachedName, Key: k }));
        }
        for (const o of ops) {
          const expected = await outcome(plain, o, twinName);
          const actual = await outcome(dropIn, o, cachedName);
          assert.deepEqual(actual, expected, o.describe);
          const tag = `${o.kind} ${expected.error ?? 'ok'}`;
          seen.set(tag, (seen.get(tag) ?? 0) + 1);
        }
        // And what each read sees afterwards, through the cache and from DynamoDB.
        for (const k of KEYS) {
          const read: Op = {
            kind: 'get',
            describe: `final Get ${JSON.stringify(k)}`,
            build: (t) => new GetCommand({ TableName: t, Key: k }),
          };
          assert.deepEqual(await outcome(dropIn, read, cachedName), await outcome(plain, read, twinName), read.describe);
        }
      }),
      { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) },
    );
    // The sequences reached every command, and both answers and refusals of DynamoDB.
    const kinds = new Set([...seen.keys()].map((k) => k.split(' ')[0]));
    for (const kind of ['get', 'batchGet', 'put', 'update', 'delete', 'transactWrite', 'query', 'scan']) assert.ok(kinds.has(kind), kind);
    for (const error of ['ConditionalCheckFailedException', 'ValidationException', 'TransactionCanceledException']) {
      assert.ok(
        [...seen.keys()].some((k) => k.endsWith(error)),
        `${error} never happened: ${JSON.stringify([...seen])}`,
      );
    }
    // Reads were served by the cache, hits among them, every node up throughout.
    assert.ok((sources.get('hit') ?? 0) > 0 && (sources.get('miss') ?? 0) > 0, JSON.stringify([...sources]));
    assert.ok(cache.health().every((n) => n.status === 'up'));
  });
});
