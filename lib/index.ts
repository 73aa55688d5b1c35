// The public API of the library; everything else in lib/ is internal.
export { ItemCache, sharedItemCache, MAX_BATCH_KEYS } from './item-cache.ts';
export type { ItemCacheOptions, ReadResult, WriteResult, BatchGetResult, UpdateChanges } from './item-cache.ts';
export { loadConfig, parseShardMap, VIRTUAL_SHARDS } from './config.ts';
export type { Config, CacheConfig, StoreConfig, StreamConfig, ObserveConfig, CacheMode, WritePolicy } from './config.ts';
export {
  defineTable,
  declaredTables,
  exampleTables,
  tablesFromJson,
  TableRegistry,
  DEFAULT_VERSION_ATTRIBUTE,
  DEFAULT_STREAM_VIEW_TYPE,
} from './tables.ts';
export type { TableDefinition, TableDeclaration, KeyAttribute, KeyType, StreamViewType } from './tables.ts';
export { resolveKey } from './keys.ts';
/** @internal The shard a key maps to (the bench and the tests place keys on chosen nodes). */
export { virtualShard } from './keys.ts';
export type { ItemKey, KeyValue, ResolvedKey } from './keys.ts';
export { canonicalDigits, normalizeNumber, tryNormalizeNumber } from './numbers.ts';
export type { Item } from './codec.ts';
export type { WriteOptions } from './store.ts';
export { withCache, CachedDocumentClient } from './drop-in/client.ts';
export type { DropInOptions } from './drop-in/client.ts';
export { invalidateStreamRecords, tableNameFromArn } from './stream/consumer.ts';
export type { StreamRecordLike, StreamConsumerOptions } from './stream/consumer.ts';
export type { StreamBatchResult } from './stream/batch.ts';
export { PARKING_TABLE_NAME } from './stream/parking.ts';
export type { ParkedInvalidation } from './stream/parking.ts';
export { replayParkedInvalidations } from './stream/replayer.ts';
export type { ParkingRecordLike } from './stream/replayer.ts';
export { sweepParkedInvalidations } from './stream/sweep.ts';
export { checkStreamRetryWindow } from './stream/window.ts';
export { invalidateTableEntries } from './stream/flush.ts';
export { ConsistencyInspector } from './stream/inspector.ts';
export type { InspectorOptions, Inconsistency } from './stream/inspector.ts';
export { CacheMetrics, METRICS, streamAgeSeconds } from './metrics.ts';
export type { MetricName, MetricUnitName, MetricValue } from './metrics.ts';
export type { SweepOptions, SweepResult } from './stream/sweep.ts';
export type { NodeHealth, NodeStatus } from './cache/node.ts';
export type { ReadSource } from './cache/protocol.ts';
/** @internal Test seams that force an interleaving (ItemCacheOptions.hooks). */
export type { ProtocolHooks } from './cache/protocol.ts';
export {
  CacheLibraryError,
  ConfigError,
  ValidationError,
  UnknownTableError,
  ItemNotFoundError,
  VersionMismatchError,
  ItemTooLargeError,
  StoreUnavailableError,
  CacheUnavailableError,
  UnsupportedCommandError,
} from './errors.ts';
export { NumberValue } from '@aws-sdk/lib-dynamodb';
export { logger } from './log.ts';
export { resolveSecretVariables } from './secrets.ts';
