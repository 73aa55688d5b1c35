import { randomBytes } from 'node:crypto';

/**
 * Lease tokens and write stamps: random, so a token can never match again after its entry vanished
 * and came back (a counter restarting at 0 could: R4). 96 bits, drawn from a pool to keep the hot
 * path free of a syscall per token.
 */
const POOL_TOKENS = 512;
const TOKEN_BYTES = 12;
let pool = Buffer.alloc(0);
let offset = 0;

export function randomToken(): string {
  if (offset >= pool.length) {
    pool = randomBytes(POOL_TOKENS * TOKEN_BYTES);
    offset = 0;
  }
  const t = pool.toString('base64url', offset, offset + TOKEN_BYTES);
  offset += TOKEN_BYTES;
  return t;
}
