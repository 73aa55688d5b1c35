/**
 * What the drop-in client (client.ts) reads and writes of DynamoDB's expressions: the version
 * attribute added to an update, kept out of the caller's own expressions, and a projection applied
 * to a cached item. DynamoDB stays the judge of an expression's validity: the client sends every
 * write to it, and serves a read shape from the cache only once DynamoDB has accepted it (client.ts).
 */
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { UnsupportedCommandError, ValidationError } from '../errors.ts';
import type { TableDefinition } from '../tables.ts';

type Attributes = Record<string, AttributeValue>;

/** The placeholders the client adds; a request that uses them itself is refused. */
export const VERSION_NAME = '#drop_in_version';
export const ONE_VALUE = ':drop_in_one';
export const EXPECTED_VALUE = ':drop_in_expected';

/** The expressions and placeholder maps of a request, as the SDK names them. */
export interface ExpressionParts {
  UpdateExpression?: string;
  ConditionExpression?: string;
  ProjectionExpression?: string;
  FilterExpression?: string;
  KeyConditionExpression?: string;
  ExpressionAttributeNames?: Record<string, string>;
  ExpressionAttributeValues?: Record<string, unknown>;
}

const EXPRESSIONS = [
  'UpdateExpression',
  'ConditionExpression',
  'ProjectionExpression',
  'FilterExpression',
  'KeyConditionExpression',
] as const;

/**
 * Refuses a request whose expressions name the version attribute (it is hidden from every answer
 * and only the library writes it) or use the client's own placeholders.
 */
export function checkExpressions(table: TableDefinition, parts: ExpressionParts, where: string): void {
  const version = table.versionAttribute;
  // Spelled out, not EXPRESSIONS.every(…): every read through the drop-in asks, and a closure per call costs.
  if (
    parts.ExpressionAttributeNames === undefined &&
    parts.ExpressionAttributeValues === undefined &&
    parts.UpdateExpression === undefined &&
    parts.ConditionExpression === undefined &&
    parts.ProjectionExpression === undefined &&
    parts.FilterExpression === undefined &&
    parts.KeyConditionExpression === undefined
  ) {
    return;
  }
  for (const [placeholder, name] of Object.entries(parts.ExpressionAttributeNames ?? {})) {
    if (placeholder === VERSION_NAME)
      throw new UnsupportedCommandError(`${where}: the placeholder ${VERSION_NAME} is the drop-in client's own`);
    if (name === version) {
      throw new ValidationError(
        `${where}.ExpressionAttributeNames.${placeholder}`,
        `'${version}' is the table's version attribute, which only the library reads and writes`,
      );
    }
  }
  for (const placeholder of Object.keys(parts.ExpressionAttributeValues ?? {})) {
    if (placeholder === ONE_VALUE || placeholder === EXPECTED_VALUE) {
      throw new UnsupportedCommandError(`${where}: the placeholder ${placeholder} is the drop-in client's own`);
    }
  }
  for (const name of EXPRESSIONS) {
    const text = parts[name];
    if (text !== undefined && bareName(version).test(text)) {
      throw new ValidationError(
        `${where}.${name}`,
        `names '${version}', the table's version attribute, which only the library reads and writes`,
      );
    }
  }
}

const bareNames = new Map<string, RegExp>();

/** The version attribute written bare in an expression (not a `#name` or `:value` placeholder, nor part of a longer name). */
function bareName(version: string): RegExp {
  let re = bareNames.get(version);
  if (re === undefined) {
    re = new RegExp(`(?<![#:\\w])${escapeRegExp(version)}(?![\\w])`);
    bareNames.set(version, re);
  }
  return re;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The caller's update expression with the version increment added: to its ADD clause when it has
 * one (each clause may appear once), else as a clause of its own. Clause keywords are reserved
 * words, so a bare ADD can only be the clause; `#add` and `:add` are placeholders.
 */
export function withVersionIncrement(updateExpression: string | undefined): string {
  const increment = `${VERSION_NAME} ${ONE_VALUE}`;
  if (updateExpression === undefined || updateExpression.trim() === '') return `ADD ${increment}`;
  const add = /(?<![#:\w.])ADD(?![\w])/i.exec(updateExpression);
  if (add === null) return `${updateExpression} ADD ${increment}`;
  const at = add.index + add[0].length;
  return `${updateExpression.slice(0, at)} ${increment},${updateExpression.slice(at)}`;
}

/** The caller's condition and the client's, both to hold. */
export function andCondition(callers: string | undefined, ours: string): string {
  return callers === undefined || callers.trim() === '' ? ours : `(${callers}) AND (${ours})`;
}

/** One step of a document path: a map member or a list index. */
type Step = { name: string } | { index: number };

/** A projection read into a tree of document paths. */
export type ProjectionTree = PathNode;

export interface PathNode {
  terminal: boolean;
  names: Map<string, PathNode>;
  indexes: Map<number, PathNode>;
}

const node = (): PathNode => ({ terminal: false, names: new Map(), indexes: new Map() });

/**
 * A projection expression as a tree of document paths, placeholders resolved; undefined when it is
 * not one this reader follows (DynamoDB then answers the request: client.ts).
 */
export function parseProjection(expression: string, names: Record<string, string> | undefined): PathNode | undefined {
  const root = node();
  for (const raw of expression.split(',')) {
    const steps = parsePath(raw.trim(), names);
    if (steps === undefined || steps.length === 0) return undefined;
    let at = root;
    for (const step of steps) {
      if (at.terminal) return undefined; // overlapping paths: DynamoDB's error, not ours to guess
      const children = 'name' in step ? at.names : at.indexes;
      const key = 'name' in step ? step.name : step.index;
      let next = (children as Map<string | number, PathNode>).get(key);
      if (next === undefined) {
        next = node();
        (children as Map<string | number, PathNode>).set(key, next);
      }
      at = next;
    }
    if (at.terminal || at.names.size > 0 || at.indexes.size > 0) return undefined;
    at.terminal = true;
  }
  return root;
}

function parsePath(text: string, names: Record<string, string> | undefined): Step[] | undefined {
  const steps: Step[] = [];
  const token = /^(#[A-Za-z0-9_]+|[A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)/;
  let rest = text;
  for (let first = true; ; first = false) {
    if (!first) {
      if (rest === '') return steps;
      if (rest[0] !== '.') return undefined;
      rest = rest.slice(1);
    }
    const m = token.exec(rest);
    if (m === null) return undefined;
    const word = m[1] as string;
    const name = word.startsWith('#') ? names?.[word] : word;
    if (name === undefined) return undefined;
    steps.push({ name });
    for (const index of (m[2] as string).matchAll(/\[(\d+)\]/g)) steps.push({ index: Number(index[1]) });
    rest = rest.slice(m[0].length);
  }
}

/** The attributes a projection selects from an item (DynamoDB's answer to a projected read). */
export function project(item: Attributes, tree: PathNode): Attributes {
  const out: Attributes = {};
  for (const [name, child] of tree.names) {
    const value = item[name];
    if (value === undefined) continue;
    const selected = select(value, child);
    if (selected !== undefined) out[name] = selected;
  }
  return out;
}

function select(value: AttributeValue, tree: PathNode): AttributeValue | undefined {
  if (tree.terminal) return value;
  if (tree.names.size > 0 && value.M !== undefined) {
    const m = project(value.M, tree);
    return Object.keys(m).length > 0 ? { M: m } : undefined;
  }
  if (tree.indexes.size > 0 && value.L !== undefined) {
    const list = value.L;
    const picked = [...tree.indexes.entries()]
      .sort(([a], [b]) => a - b)
      .map(([i, child]) => (list[i] === undefined ? undefined : select(list[i] as AttributeValue, child)))
      .filter((v): v is AttributeValue => v !== undefined);
    return picked.length > 0 ? { L: picked } : undefined;
  }
  return undefined;
}
