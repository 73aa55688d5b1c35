/** cluster-key-slot (a dependency of ioredis) ships no types: its one function, as ioredis calls it. */
declare module 'cluster-key-slot' {
  /** CRC16 of the key (or of its hash tag) mod 16384: the Redis Cluster slot. */
  function calculateSlot(key: string | Buffer): number;
  export = calculateSlot;
}
