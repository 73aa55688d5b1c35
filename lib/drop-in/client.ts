/**
 * The drop-in client: an existing DynamoDBDocumentClient, wrapped, so that code sending
 * lib-dynamodb's commands gets DynamoDB's answers with the cache's guarantees held (README, "Using
 * the library"; ARCHITECTURE.md, "The drop-in client").
 *
 *   GetCommand, BatchGetCommand   served by the cache (ItemCache.get, batchGet), a projection applied
 *                                 to the cached item; DynamoDB answers a read the cache may not
 *                                 serve (ConsistentRead on a table not declared all-strict,
 *                                 ReturnConsumedCapacity, a read shape DynamoDB has not yet accepted)
 *   PutCommand, UpdateCommand,    sent to DynamoDB with the version attribute added, inside the
 *   DeleteCommand,                write protocol (ItemCache.writeItem); DynamoDB judges the request,
 *   TransactWriteCommand          so its refusals are the SDK's own exceptions
 *   QueryCommand, ScanCommand,    DynamoDB's answer, the version attribute removed
 *   TransactGetCommand
 *   anything else                 passed through, unless it names a cached table: a write the
 *                                 protocol does not see (BatchWriteCommand, PartiQL, a raw
 *                                 client-dynamodb item command) is refused (UnsupportedCommandError)
 */
import {
  ConditionalCheckFailedException,
  DeleteItemCommand,
  PutItemCommand,
  TransactionCanceledException,
  TransactWriteItemsCommand,
  UpdateItemCommand,
  type AttributeValue,
  type TransactWriteItem,
} from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  DeleteCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  ScanCommand,
  TransactGetCommand,
  TransactWriteCommand,
  UpdateCommand,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import { marshall, unmarshall, type marshallOptions, type unmarshallOptions } from '@aws-sdk/util-dynamodb';
import { holdsDecodedNumberValue, toAttributes } from '../codec.ts';
import { StoreUnavailableError, UnsupportedCommandError, ValidationError } from '../errors.ts';
import type { ItemCache, ReadResult } from '../item-cache.ts';
import type { ResolvedKey } from '../keys.ts';
import type { TableDefinition } from '../tables.ts';
import { deadlineSignal } from '../store.ts';
import { sentOnce } from '../write-once.ts';
import {
  andCondition,
  checkExpressions,
  EXPECTED_VALUE,
  ONE_VALUE,
  parseProjection,
  project,
  type ProjectionTree,
  VERSION_NAME,
  withVersionIncrement,
  type ExpressionParts,
} from './expressions.ts';
import { deadlineClock } from '../clock.ts';

type Attributes = Record<string, AttributeValue>;
type Native = Record<string, unknown>;
type Obj = Record<string, any>;
type SendOptions = { abortSignal?: AbortSignal };
/** A GetCommand the cache serves: what its answer and its fallback to DynamoDB need. */
type CachedRead = {
  def: TableDefinition;
  input: GetCommand['input'];
  shape: string;
  options: SendOptions | undefined;
  projection: ProjectionTree | undefined;
};

export interface DropInOptions {
  /** The cache, whose declared tables (by physical name) the client serves; the others pass through. */
  cache: ItemCache;
}

/** How many read shapes (table, projection, names) DynamoDB has accepted are remembered. */
const ACCEPTED_SHAPES_MAX = 1000;

/**
 * Wraps `docClient`: send it the commands you send today. The wrapped client is not changed; the
 * answer keeps its `send` and `destroy`.
 * @example
 * const client = withCache(DynamoDBDocumentClient.from(new DynamoDBClient({})), { cache: sharedItemCache() });
 * const { Item } = await client.send(new GetCommand({ TableName: 'app-prod-users', Key: { userId: 'ada' } }));
 */
export function withCache(docClient: DynamoDBDocumentClient, options: DropInOptions): CachedDocumentClient {
  return new CachedDocumentClient(docClient, options.cache);
}

export class CachedDocumentClient {
  /** The commands of lib-dynamodb, answered as DynamoDBDocumentClient answers them. */
  readonly send: DynamoDBDocumentClient['send'];
  private readonly marshallOptions: marshallOptions;
  private readonly unmarshallOptions: unmarshallOptions;
  /** Read shapes DynamoDB accepted once: their errors are static, so the cache may serve them since. */
  private readonly acceptedShapes = new Set<string>();
  /** Projection expressions read into path trees, by expression and names. */
  private readonly projections = new Map<string, ProjectionTree>();
  /** cachedTable's answers by physical name (null: not a cached table). */
  private readonly tablesByName = new Map<string, TableDefinition | null>();

  constructor(
    /** The wrapped client: what passes through goes to it. */
    readonly plain: DynamoDBDocumentClient,
    readonly cache: ItemCache,
  ) {
    const translate = plain.config.translateConfig ?? {};
    // As lib-dynamodb translates each attribute value (baseCommand/DynamoDBDocumentClientCommand).
    this.marshallOptions = { ...translate.marshallOptions, convertTopLevelContainer: true };
    this.unmarshallOptions = { ...translate.unmarshallOptions, convertWithoutMapWrapper: true };
    // A refusal is a rejected promise, as the SDK's send gives, never a synchronous throw.
    this.send = ((command: unknown, options?: SendOptions) => {
      try {
        return this.dispatch(command, options);
      } catch (err) {
        return Promise.reject(err);
      }
    }) as DynamoDBDocumentClient['send'];
  }

  /** Closes the wrapped client (the cache is the caller's to close). */
  destroy(): void {
    this.plain.destroy();
  }

  private dispatch(command: unknown, options: SendOptions | undefined): Promise<unknown> {
    if (command instanceof GetCommand) return this.get(command, options);
    if (command instanceof BatchGetCommand) return this.batchGet(command, options);
    if (command instanceof PutCommand) return this.put(command.input, options);
    if (command instanceof UpdateCommand) return this.update(command.input, options);
    if (command instanceof DeleteCommand) return this.delete(command.input, options);
    if (command instanceof TransactWriteCommand) return this.transactWrite(command.input, options);
    if (command instanceof QueryCommand || command instanceof ScanCommand) return this.queryOrScan(command, options);
    if (command instanceof TransactGetCommand) return this.transactGet(command, options);
    const named = tablesNamed((command as { input?: Obj }).input).filter((t) => this.cachedTable(t) !== undefined);
    if (named.length > 0) {
      const name = (command as object).constructor?.name ?? 'this command';
      return Promise.reject(
        new UnsupportedCommandError(
          `${name} on the cached table '${named[0]}' would bypass the cache: the drop-in client serves GetCommand, BatchGetCommand, ` +
            'PutCommand, UpdateCommand, DeleteCommand, TransactWriteCommand, TransactGetCommand, QueryCommand and ScanCommand of @aws-sdk/lib-dynamodb',
        ),
      );
    }
    return this.plain.send(command as Parameters<DynamoDBDocumentClient['send']>[0], options);
  }

  /** The cached table behind a physical name; undefined for a table it does not cache. */
  private cachedTable(tableName: unknown): TableDefinition | undefined {
    if (typeof tableName !== 'string') return undefined;
    // Remembered by name (the registry does not change): the hit path does no string work for it.
    let def = this.tablesByName.get(tableName);
    if (def === undefined) {
      const found = this.cache.tables.fromPhysicalName(tableName);
      def = found?.cached ? found : null;
      if (this.tablesByName.size >= ACCEPTED_SHAPES_MAX) this.tablesByName.clear();
      this.tablesByName.set(tableName, def);
    }
    return def ?? undefined;
  }

  /** May a read of `def` be answered from the cache? A consistent read only where that is as safe as DynamoDB's own. */
  private servable(def: TableDefinition, consistentRead: boolean | undefined): boolean {
    return consistentRead !== true || (def.allWritesThroughStrictCache && this.cache.config.cache.writePolicy === 'strict');
  }

  private marshallMap(native: Native | undefined): Attributes | undefined {
    if (native === undefined || native === null) return undefined;
    const out: Attributes = {};
    for (const [name, value] of Object.entries(native)) {
      if (typeof value === 'function') continue;
      const av = marshall(value as never, this.marshallOptions) as AttributeValue | undefined;
      if (av !== undefined) out[name] = av;
    }
    return out;
  }

  private unmarshallMap(attrs: Attributes): Native {
    const out: Native = {};
    for (const [name, av] of Object.entries(attrs)) out[name] = unmarshall(av as never, this.unmarshallOptions);
    return out;
  }

  private get(command: GetCommand, options: SendOptions | undefined): Promise<unknown> {
    const input = command.input;
    const def = this.cachedTable(input.TableName);
    if (def === undefined) return this.plain.send(command, options);
    checkExpressions(def, input as ExpressionParts, 'GetCommand');
    const shape = readShape(input.TableName as string, input);
    const servable =
      this.servable(def, input.ConsistentRead) &&
      (input.ReturnConsumedCapacity === undefined || input.ReturnConsumedCapacity === 'NONE') &&
      this.acceptedShapes.has(shape);
    if (!servable) return this.getFromDynamo(def, input, shape, options);
    const read: CachedRead = { def, input, shape, options, projection: this.projection(input) };
    let rk: ResolvedKey;
    try {
      rk = this.cache.resolve(def, input.Key);
    } catch (err) {
      return this.refused(err, read);
    }
    // The hit path: no promise of its own (the answer is made in the library's read continuation),
    // and no closure per read (the bundles keep function names: each closure made costs a defineProperty).
    return this.cache.readAs(rk, read, this.answerRead, this.refused);
  }

  /** A cached read's answer: the item (projected), as the wrapped client would unmarshall it. */
  private readonly answerRead = (result: ReadResult, read: CachedRead): Obj =>
    result.item === undefined ? { $metadata: {} } : { $metadata: {}, Item: this.answerItem(result.item, read.projection) };

  /** A key the library refuses (before any I/O), or a read DynamoDB refused, is DynamoDB's to judge. */
  private readonly refused = (err: unknown, read: CachedRead): Promise<unknown> => {
    if (err instanceof ValidationError) return this.getFromDynamo(read.def, read.input, read.shape, read.options);
    throw err;
  };

  /** DynamoDB's answer to a read, strongly consistent: never older than what the cache would have served. */
  private async getFromDynamo(def: TableDefinition, input: GetCommand['input'], shape: string, options: SendOptions | undefined) {
    const out = (await this.plain.send(new GetCommand({ ...input, ConsistentRead: true }), options)) as Obj;
    this.accept(shape);
    return stripped(def, out, 'Item');
  }

  /**
   * A cached item as the wrapped client would unmarshall it. The library's native form is already
   * that form unless a number in it is a NumberValue (a value a double cannot hold) or the client
   * wraps numbers: then, and for a projection, through DynamoDB's attribute values.
   */
  private answerItem(item: Native, projection: ProjectionTree | undefined): Native {
    if (projection === undefined && this.unmarshallOptions.wrapNumbers === undefined && !holdsDecodedNumberValue(item)) return item;
    const attrs = toAttributes(item);
    return this.unmarshallMap(projection ? project(attrs, projection) : attrs);
  }

  private resolvable(def: TableDefinition, key: unknown): boolean {
    try {
      this.cache.resolve(def, key);
      return true;
    } catch (err) {
      if (err instanceof ValidationError) return false;
      throw err;
    }
  }

  private accept(shape: string): void {
    if (this.acceptedShapes.size >= ACCEPTED_SHAPES_MAX) this.acceptedShapes.clear();
    this.acceptedShapes.add(shape);
  }

  private projection(input: { ProjectionExpression?: string; ExpressionAttributeNames?: Record<string, string> }) {
    if (input.ProjectionExpression === undefined) return undefined;
    const memo = JSON.stringify([input.ProjectionExpression, input.ExpressionAttributeNames ?? null]);
    let tree = this.projections.get(memo);
    if (tree === undefined) {
      // Accepted by DynamoDB already (acceptedShapes): one this reader cannot follow is never served.
      tree = parseProjection(input.ProjectionExpression, input.ExpressionAttributeNames);
      if (tree === undefined) {
        throw new UnsupportedCommandError(`ProjectionExpression '${input.ProjectionExpression}' is not one the cache can apply`);
      }
      if (this.projections.size >= ACCEPTED_SHAPES_MAX) this.projections.clear();
      this.projections.set(memo, tree);
    }
    return tree;
  }

  private async batchGet(command: BatchGetCommand, options: SendOptions | undefined): Promise<unknown> {
    const requests = command.input.RequestItems ?? {};
    const fromCache: [string, TableDefinition, Obj][] = [];
    const rest: Record<string, Obj> = {};
    let keyCount = 0;
    let wellFormed = Object.keys(requests).length > 0;
    for (const [tableName, request] of Object.entries(requests) as [string, Obj][]) {
      const keys: unknown[] = Array.isArray(request?.Keys) ? request.Keys : [];
      keyCount += keys.length;
      const def = this.cachedTable(tableName);
      if (def !== undefined) checkExpressions(def, request as ExpressionParts, `BatchGetCommand.RequestItems.${tableName}`);
      const servable =
        def !== undefined &&
        request.AttributesToGet === undefined &&
        this.servable(def, request.ConsistentRead) &&
        this.acceptedShapes.has(readShape(tableName, request)) &&
        keys.length > 0 &&
        distinctKeys(this.cache, def, keys);
      if (servable) fromCache.push([tableName, def, request]);
      else rest[tableName] = def === undefined ? request : { ...request, ConsistentRead: true };
      if (def !== undefined && keys.length === 0) wellFormed = false;
    }
    // A request DynamoDB refuses as a whole goes to it whole, for its own exception (strongly
    // consistent on the cached tables: never older than what the cache would serve).
    if (!wellFormed || keyCount > 100 || (command.input.ReturnConsumedCapacity ?? 'NONE') !== 'NONE') {
      const consistent = Object.fromEntries(
        Object.entries(requests).map(([t, r]) => [t, this.cachedTable(t) === undefined ? r : { ...(r as Obj), ConsistentRead: true }]),
      );
      const out = (await this.plain.send(
        new BatchGetCommand({ ...command.input, RequestItems: consistent as BatchGetCommand['input']['RequestItems'] }),
        options,
      )) as Obj;
      return this.stripResponses(out);
    }
    const out: Obj = { $metadata: {}, Responses: {}, UnprocessedKeys: {} };
    const direct =
      Object.keys(rest).length > 0
        ? ((await this.plain.send(
            new BatchGetCommand({ ...command.input, RequestItems: rest as BatchGetCommand['input']['RequestItems'] }),
            options,
          )) as Obj)
        : undefined;
    if (direct !== undefined) {
      for (const tableName of Object.keys(rest)) if (this.cachedTable(tableName)) this.accept(readShape(tableName, rest[tableName] as Obj));
      Object.assign(out, this.stripResponses(direct));
      out.Responses ??= {};
      out.UnprocessedKeys ??= {};
    }
    await Promise.all(
      fromCache.map(async ([tableName, def, request]) => {
        const projection = this.projection(request);
        const read = await this.cache.batchGet(def.name, request.Keys);
        out.Responses[tableName] = read.items.map((item) => this.answerItem(item, projection));
      }),
    );
    return out;
  }

  private stripResponses(out: Obj): Obj {
    for (const [tableName, items] of Object.entries((out.Responses ?? {}) as Record<string, Native[]>)) {
      const def = this.cachedTable(tableName);
      if (def !== undefined) for (const item of items) delete item[def.versionAttribute];
    }
    return out;
  }

  private async queryOrScan(command: QueryCommand | ScanCommand, options: SendOptions | undefined): Promise<unknown> {
    const def = this.cachedTable(command.input.TableName);
    if (def !== undefined) checkExpressions(def, command.input as ExpressionParts, command.constructor.name);
    const out = (await this.plain.send(command as QueryCommand, options)) as Obj;
    if (def !== undefined) for (const item of (out.Items ?? []) as Native[]) delete item[def.versionAttribute];
    return out;
  }

  private async transactGet(command: TransactGetCommand, options: SendOptions | undefined): Promise<unknown> {
    const items = command.input.TransactItems ?? [];
    for (const [i, t] of items.entries()) {
      const def = this.cachedTable(t.Get?.TableName);
      if (def !== undefined) checkExpressions(def, t.Get as ExpressionParts, `TransactGetCommand.TransactItems[${i}].Get`);
    }
    const out = (await this.plain.send(command, options)) as Obj;
    ((out.Responses ?? []) as Obj[]).forEach((r, i) => {
      const def = this.cachedTable(items[i]?.Get?.TableName);
      if (def !== undefined && r?.Item) delete r.Item[def.versionAttribute];
    });
    return out;
  }

  /** The key attributes of a native item. */
  private static keyOf(def: TableDefinition, item: Native | undefined): Native {
    const key: Native = {};
    if (item === undefined || item === null) return key;
    for (const attr of [def.hashKey, def.rangeKey]) if (attr !== undefined && attr.name in item) key[attr.name] = item[attr.name];
    return key;
  }

  private async put(input: PutCommand['input'], options: SendOptions | undefined): Promise<unknown> {
    const def = this.cachedTable(input.TableName);
    if (def === undefined) return this.plain.send(new PutCommand(input), options);
    refuseLegacy(input, ['Expected', 'ConditionalOperator'], 'PutCommand');
    checkExpressions(def, input as ExpressionParts, 'PutCommand');
    if (input.Item !== undefined && input.Item !== null && Object.hasOwn(input.Item, def.versionAttribute)) {
      throw new ValidationError(
        `PutCommand.Item.${def.versionAttribute}`,
        'is the table’s version attribute, which only the library writes',
      );
    }
    const key = CachedDocumentClient.keyOf(def, input.Item);
    // A key the cache cannot name has no entry to keep fresh: DynamoDB answers it (with its own exception).
    if (!this.resolvable(def, key)) return this.plain.send(new PutCommand(input), options);
    const item = this.marshallMap(input.Item) ?? {};
    const values = this.marshallMap(input.ExpressionAttributeValues);
    return this.cache.writeItem(def, key, async ({ hint, deadline }) => {
      let expected = hint ?? 0;
      for (let attempt = 1; ; attempt++) {
        const versioned: Attributes = { ...item, [def.versionAttribute]: { N: String(expected + 1) } };
        const ours = expected === 0 ? `attribute_not_exists(${VERSION_NAME})` : `${VERSION_NAME} = ${EXPECTED_VALUE}`;
        const ourValues: Attributes = expected === 0 ? {} : { [EXPECTED_VALUE]: { N: String(expected) } };
        const allValues = values === undefined && expected === 0 ? undefined : { ...values, ...ourValues };
        try {
          const out = await this.plain.send(
            sentOnce(
              new PutItemCommand({
                ...(input as Obj),
                TableName: input.TableName as string,
                Item: versioned,
                ConditionExpression: andCondition(input.ConditionExpression, ours),
                ExpressionAttributeNames: { ...input.ExpressionAttributeNames, [VERSION_NAME]: def.versionAttribute },
                ExpressionAttributeValues: allValues,
                ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
              }),
            ),
            withDeadline(options, deadline),
          );
          return { result: this.answer(def, out as Obj, 'Attributes'), image: versioned, exact: false };
        } catch (err) {
          if (!(err instanceof ConditionalCheckFailedException)) throw err;
          const found = err.Item as Attributes | undefined;
          const current = found === undefined ? undefined : versionOf(def, found);
          const versionHeld = expected === 0 ? found === undefined || found[def.versionAttribute] === undefined : current === expected;
          if (versionHeld) throw this.conditionFailure(def, err, input.ReturnValuesOnConditionCheckFailure);
          if (deadlineClock() > deadline)
            throw new StoreUnavailableError(`the item changed under each of ${attempt} attempts to write it; retry`);
          expected = current ?? 0;
        }
      }
    });
  }

  private async update(input: UpdateCommand['input'], options: SendOptions | undefined): Promise<unknown> {
    const def = this.cachedTable(input.TableName);
    if (def === undefined) return this.plain.send(new UpdateCommand(input), options);
    refuseLegacy(input, ['AttributeUpdates', 'Expected', 'ConditionalOperator'], 'UpdateCommand');
    checkExpressions(def, input as ExpressionParts, 'UpdateCommand');
    if (!this.resolvable(def, input.Key)) return this.plain.send(new UpdateCommand(input), options);
    // DynamoDB's new image is what the entry stores: asked for when the caller's answer allows it.
    const wantsImage = input.ReturnValues === undefined || input.ReturnValues === 'NONE' || input.ReturnValues === 'ALL_NEW';
    return this.cache.writeItem(def, input.Key, async ({ deadline }) => {
      try {
        const out = (await this.plain.send(
          sentOnce(
            new UpdateItemCommand({
              ...(input as Obj),
              TableName: input.TableName as string,
              Key: this.marshallMap(input.Key),
              UpdateExpression: withVersionIncrement(input.UpdateExpression),
              ExpressionAttributeNames: { ...input.ExpressionAttributeNames, [VERSION_NAME]: def.versionAttribute },
              ExpressionAttributeValues: { ...this.marshallMap(input.ExpressionAttributeValues), [ONE_VALUE]: { N: '1' } },
              ReturnValues: wantsImage ? 'ALL_NEW' : input.ReturnValues,
            }),
          ),
          withDeadline(options, deadline),
        )) as Obj;
        const image = wantsImage ? (out.Attributes as Attributes) : undefined;
        if (input.ReturnValues === undefined || input.ReturnValues === 'NONE') delete out.Attributes;
        return { result: this.answer(def, out, 'Attributes'), image, exact: true };
      } catch (err) {
        if (err instanceof ConditionalCheckFailedException)
          throw this.conditionFailure(def, err, input.ReturnValuesOnConditionCheckFailure);
        throw err;
      }
    });
  }

  private async delete(input: DeleteCommand['input'], options: SendOptions | undefined): Promise<unknown> {
    const def = this.cachedTable(input.TableName);
    if (def === undefined) return this.plain.send(new DeleteCommand(input), options);
    refuseLegacy(input, ['Expected', 'ConditionalOperator'], 'DeleteCommand');
    checkExpressions(def, input as ExpressionParts, 'DeleteCommand');
    if (!this.resolvable(def, input.Key)) return this.plain.send(new DeleteCommand(input), options);
    return this.cache.writeItem(def, input.Key, async ({ deadline }) => {
      try {
        const out = (await this.plain.send(
          sentOnce(
            new DeleteItemCommand({
              ...(input as Obj),
              TableName: input.TableName as string,
              Key: this.marshallMap(input.Key),
              ExpressionAttributeValues: this.marshallMap(input.ExpressionAttributeValues),
            }),
          ),
          withDeadline(options, deadline),
        )) as Obj;
        return { result: this.answer(def, out, 'Attributes'), image: null, exact: true };
      } catch (err) {
        if (err instanceof ConditionalCheckFailedException)
          throw this.conditionFailure(def, err, input.ReturnValuesOnConditionCheckFailure);
        throw err;
      }
    });
  }

  private async transactWrite(input: TransactWriteCommand['input'], options: SendOptions | undefined): Promise<unknown> {
    const items = input.TransactItems ?? [];
    const plan = items.map((t, i) => this.planTransactItem(t as Obj, i));
    const writes = plan.filter((p) => p.def !== undefined && p.kind !== 'ConditionCheck');
    const keys = new Set<string>();
    for (const p of writes) {
      if (!this.resolvable(p.def as TableDefinition, p.key)) return this.plain.send(new TransactWriteCommand(input), options);
      keys.add(this.cache.resolve(p.def as TableDefinition, p.key).redisKey);
    }
    // Two operations on one item: DynamoDB refuses the transaction; asked as it is, for its own exception.
    if (keys.size < writes.length) return this.plain.send(new TransactWriteCommand(input), options);
    const images: (Attributes | null | undefined)[] = writes.map(() => undefined);
    const hints: (number | undefined)[] = [];
    let deadline = Number.POSITIVE_INFINITY;
    const commitAll = async (): Promise<unknown> => {
      const expected = hints.map((h) => h ?? 0);
      for (let attempt = 1; ; attempt++) {
        const transactItems: TransactWriteItem[] = plan.map((p) => p.raw(expected[writes.indexOf(p)] ?? 0));
        try {
          const out = (await this.plain.send(
            new TransactWriteItemsCommand({ ...(input as Obj), TransactItems: transactItems }),
            withDeadline(options, deadline),
          )) as Obj;
          writes.forEach((p, w) => {
            images[w] = p.kind === 'Delete' ? null : p.kind === 'Put' ? transactItems[plan.indexOf(p)]?.Put?.Item : undefined;
          });
          return out;
        } catch (err) {
          if (!(err instanceof TransactionCanceledException)) throw err;
          const reasons = err.CancellationReasons ?? [];
          // A put whose version guess was wrong (the caller's condition held or was not reached): guess again.
          let retry = false;
          plan.forEach((p, i) => {
            if (p.kind !== 'Put' || p.def === undefined || reasons[i]?.Code !== 'ConditionalCheckFailed') return;
            const w = writes.indexOf(p);
            const found = reasons[i]?.Item as Attributes | undefined;
            const current = found === undefined ? undefined : versionOf(p.def, found);
            const guess = expected[w] ?? 0;
            const versionHeld = guess === 0 ? found === undefined || found[p.def.versionAttribute] === undefined : current === guess;
            if (!versionHeld) {
              expected[w] = current ?? 0;
              retry = true;
            }
          });
          if (!retry) throw this.cancellation(plan, err);
          if (deadlineClock() > deadline)
            throw new StoreUnavailableError(`the items changed under each of ${attempt} attempts to write them; retry`);
        }
      }
    };
    // Each written item inside its own write protocol, one within the other; the transaction commits innermost.
    const nest = async (w: number): Promise<unknown> => {
      const p = writes[w];
      if (p === undefined) return commitAll();
      return this.cache.writeItem(p.def as TableDefinition, p.key, async (context) => {
        hints[w] = context.hint;
        deadline = Math.min(deadline, context.deadline);
        const result = await nest(w + 1);
        return { result, image: images[w], exact: false };
      });
    };
    if (writes.length === 0) return this.plain.send(new TransactWriteCommand(input), options);
    return nest(0);
  }

  /** One item of a transaction: its table (when cached), kind, key, and its raw form for a version guess. */
  private planTransactItem(t: Obj, i: number) {
    const kind = (['Put', 'Update', 'Delete', 'ConditionCheck'] as const).find((k) => t[k] !== undefined);
    const op: Obj = kind === undefined ? {} : t[kind];
    const def = this.cachedTable(op.TableName);
    const where = `TransactWriteCommand.TransactItems[${i}].${kind}`;
    if (def !== undefined) {
      checkExpressions(def, op as ExpressionParts, where);
      if (kind === 'Put' && op.Item && Object.hasOwn(op.Item, def.versionAttribute)) {
        throw new ValidationError(
          `${where}.Item.${def.versionAttribute}`,
          'is the table’s version attribute, which only the library writes',
        );
      }
    }
    const key = kind === 'Put' && def !== undefined ? CachedDocumentClient.keyOf(def, op.Item) : op.Key;
    const raw = (expected: number): TransactWriteItem => {
      const base: Obj = { ...op };
      if (op.Item !== undefined) base.Item = this.marshallMap(op.Item);
      if (op.Key !== undefined) base.Key = this.marshallMap(op.Key);
      if (op.ExpressionAttributeValues !== undefined) base.ExpressionAttributeValues = this.marshallMap(op.ExpressionAttributeValues);
      if (def !== undefined && kind === 'Put') {
        base.Item = { ...base.Item, [def.versionAttribute]: { N: String(expected + 1) } };
        base.ConditionExpression = andCondition(
          op.ConditionExpression,
          expected === 0 ? `attribute_not_exists(${VERSION_NAME})` : `${VERSION_NAME} = ${EXPECTED_VALUE}`,
        );
        base.ExpressionAttributeNames = { ...op.ExpressionAttributeNames, [VERSION_NAME]: def.versionAttribute };
        if (expected !== 0)
          base.ExpressionAttributeValues = { ...base.ExpressionAttributeValues, [EXPECTED_VALUE]: { N: String(expected) } };
        base.ReturnValuesOnConditionCheckFailure = 'ALL_OLD';
      } else if (def !== undefined && kind === 'Update') {
        base.UpdateExpression = withVersionIncrement(op.UpdateExpression);
        base.ExpressionAttributeNames = { ...op.ExpressionAttributeNames, [VERSION_NAME]: def.versionAttribute };
        base.ExpressionAttributeValues = { ...base.ExpressionAttributeValues, [ONE_VALUE]: { N: '1' } };
      }
      return kind === undefined ? (t as TransactWriteItem) : ({ [kind]: base } as TransactWriteItem);
    };
    return { kind, def, key, raw, callerWantsOld: op.ReturnValuesOnConditionCheckFailure === 'ALL_OLD' };
  }

  /** The caller's TransactionCanceledException: items the caller did not ask for removed, versions hidden. */
  private cancellation(plan: ReturnType<CachedDocumentClient['planTransactItem']>[], err: TransactionCanceledException): Error {
    plan.forEach((p, i) => {
      const reason = err.CancellationReasons?.[i];
      if (reason?.Item === undefined) return;
      if (!p.callerWantsOld) delete reason.Item;
      else if (p.def !== undefined) delete reason.Item[p.def.versionAttribute];
    });
    return err;
  }

  /** The caller's ConditionalCheckFailedException: the item only if asked for, its version hidden. */
  private conditionFailure(def: TableDefinition, err: ConditionalCheckFailedException, asked: string | undefined): Error {
    if (asked !== 'ALL_OLD') delete err.Item;
    else if (err.Item !== undefined) delete err.Item[def.versionAttribute];
    return err;
  }

  /** A raw write's answer as lib-dynamodb gives it: attributes unmarshalled, the version hidden (none left: none at all). */
  private answer(def: TableDefinition, out: Obj, field: 'Attributes'): Obj {
    const attrs = out[field] as Attributes | undefined;
    if (attrs === undefined) return out;
    const { [def.versionAttribute]: _version, ...rest } = attrs;
    if (Object.keys(rest).length === 0) delete out[field];
    else out[field] = this.unmarshallMap(rest);
    return out;
  }
}

function versionOf(def: TableDefinition, item: Attributes): number {
  const n = item[def.versionAttribute]?.N;
  return n === undefined ? 0 : Number(n);
}

/**
 * The caller's abort signal, and the write protocol's deadline (the writer's fence rests on it: G1):
 * nothing is sent from the deadline on, as store.ts bounds its own requests (`deadlineSignal`).
 */
function withDeadline(options: SendOptions | undefined, deadline: number): SendOptions {
  return { abortSignal: deadlineSignal(deadline, options?.abortSignal) };
}

/** A native answer's item, the version hidden. */
function stripped(def: TableDefinition, out: Obj, field: string): Obj {
  if (out[field] !== undefined) delete out[field][def.versionAttribute];
  return out;
}

function refuseLegacy(input: Obj, names: string[], command: string): void {
  for (const name of names) {
    if (input[name] !== undefined) {
      throw new UnsupportedCommandError(
        `${command}.${name} is a legacy parameter the drop-in client does not support; use the expression form`,
      );
    }
  }
}

/** What a read's static validity depends on: DynamoDB's refusals of it do not depend on the item. */
function readShape(
  tableName: string,
  input: { ProjectionExpression?: string; ExpressionAttributeNames?: Record<string, string>; [k: string]: unknown },
): string {
  if (
    input.ProjectionExpression === undefined &&
    input.ExpressionAttributeNames === undefined &&
    input.ExpressionAttributeValues === undefined
  ) {
    return tableName;
  }
  return JSON.stringify([
    tableName,
    input.ProjectionExpression ?? null,
    input.ExpressionAttributeNames ?? null,
    input.ExpressionAttributeValues ?? null,
  ]);
}

/** No two keys of a batch name one item (DynamoDB refuses such a batch: it goes to DynamoDB for its exception). */
function distinctKeys(cache: ItemCache, def: TableDefinition, keys: unknown[]): boolean {
  const seen = new Set<string>();
  for (const key of keys) {
    let rk: string;
    try {
      rk = cache.resolve(def, key).redisKey;
    } catch (err) {
      if (err instanceof ValidationError) return false;
      throw err;
    }
    if (seen.has(rk)) return false;
    seen.add(rk);
  }
  return true;
}

/** Every table a command's input names (TableName, RequestItems, TransactItems). */
function tablesNamed(input: Obj | undefined): string[] {
  if (input === undefined || input === null) return [];
  const names: string[] = [];
  if (typeof input.TableName === 'string') names.push(input.TableName);
  if (input.RequestItems && typeof input.RequestItems === 'object') names.push(...Object.keys(input.RequestItems));
  if (Array.isArray(input.TransactItems)) {
    for (const t of input.TransactItems as Obj[]) {
      for (const op of Object.values(t ?? {}) as Obj[]) if (typeof op?.TableName === 'string') names.push(op.TableName);
    }
  }
  return names;
}
