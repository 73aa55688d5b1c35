import type { ItemKey } from '../lib/index.ts';

/** One item the run reads and writes. */
export interface KeyRef {
  /** `u/<userId>` or `o/<customerId>/<orderId>`: the checker's name for the item. */
  id: string;
  table: 'users' | 'orders';
  key: ItemKey;
  hot: boolean;
}

export interface KeySpace {
  hot: KeyRef[];
  cold: KeyRef[];
  all: KeyRef[];
  byId: Map<string, KeyRef>;
}

export interface KeySpaceOptions {
  /** Hot user keys: every client hammers them, so races happen. */
  hot: number;
  /** Cold user keys. */
  coldUsers: number;
  /** Cold order keys: customers × orders per customer (a table with a range key). */
  customers: number;
  ordersPerCustomer: number;
}

export const defaultKeySpace: KeySpaceOptions = { hot: 6, coldUsers: 600, customers: 40, ordersPerCustomer: 10 };

export function userRef(userId: string, hot: boolean): KeyRef {
  return { id: `u/${userId}`, table: 'users', key: { userId }, hot };
}

export function orderRef(customerId: string, orderId: string): KeyRef {
  return { id: `o/${customerId}/${orderId}`, table: 'orders', key: { customerId, orderId }, hot: false };
}

export function keySpace(o: KeySpaceOptions = defaultKeySpace): KeySpace {
  const hot = Array.from({ length: o.hot }, (_, i) => userRef(`hot-${i}`, true));
  const cold: KeyRef[] = Array.from({ length: o.coldUsers }, (_, i) => userRef(`cold-${i}`, false));
  for (let c = 0; c < o.customers; c++) {
    for (let n = 0; n < o.ordersPerCustomer; n++) cold.push(orderRef(`c-${c}`, `o-${n}`));
  }
  const all = [...hot, ...cold];
  return { hot, cold, all, byId: new Map(all.map((k) => [k.id, k])) };
}

/** The checker's name of an item returned by the library (or a DynamoDB key), by table. */
export function idOfItem(table: string, item: Record<string, unknown>): string | undefined {
  if (table === 'users' && typeof item.userId === 'string') return `u/${item.userId}`;
  if (table === 'orders' && typeof item.customerId === 'string' && typeof item.orderId === 'string') {
    return `o/${item.customerId}/${item.orderId}`;
  }
  return undefined;
}

/** The same from a DynamoDB attribute-value key (`{ userId: { S: 'x' } }`) and a physical table name. */
export function idOfAttributes(physicalTable: string, key: Record<string, { S?: string } | undefined>): string | undefined {
  if (physicalTable.endsWith('users') && key.userId?.S !== undefined) return `u/${key.userId.S}`;
  if (physicalTable.endsWith('orders') && key.customerId?.S !== undefined && key.orderId?.S !== undefined) {
    return `o/${key.customerId.S}/${key.orderId.S}`;
  }
  return undefined;
}

/** The items a GetItem / BatchGetItem call reads (by the checker's names); none for other commands. */
export function readIdsOf(command: string, input: unknown): string[] {
  const ids: string[] = [];
  const add = (table: string | undefined, key: unknown): void => {
    const id = table && key ? idOfAttributes(table, key as Record<string, { S?: string }>) : undefined;
    if (id) ids.push(id);
  };
  if (command === 'GetItemCommand') {
    const i = input as { TableName?: string; Key?: unknown };
    add(i.TableName, i.Key);
  } else if (command === 'BatchGetItemCommand') {
    const i = input as { RequestItems?: Record<string, { Keys?: unknown[] }> };
    for (const [table, req] of Object.entries(i.RequestItems ?? {})) for (const k of req.Keys ?? []) add(table, k);
  }
  return ids;
}
