/**
 * DeadlineQueue: the hit path's bound (G3) without a timer per call. Every call is rejected at its
 * own deadline (never before, never much after) unless it was answered first, whatever order the
 * deadlines come in.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeadlineQueue, type Settleable } from '../../lib/cache/deadline.ts';

class Call implements Settleable {
  isResolved = false;
  rejectedAt: number | undefined;
  error: Error | undefined;
  rejections = 0;
  resolve(): void {
    if (this.rejectedAt === undefined) this.isResolved = true;
  }
  reject(err: Error): void {
    this.rejections++;
    this.rejectedAt ??= Date.now();
    this.error ??= err;
  }
}

function bound(q: DeadlineQueue, ms: number): Call {
  const c = new Call();
  q.add(c, Date.now() + ms, ms);
  return c;
}

// Timers fire no earlier than asked, and in the order they are due; a busy machine may fire them
// late, so a check waits this much past a deadline (a timer due later fires after the queue's).
const SLACK = 150;

describe('DeadlineQueue', () => {
  test('an unanswered call is rejected at its deadline, not before', async () => {
    const q = new DeadlineQueue('redis://node:1');
    const t0 = Date.now();
    const c = bound(q, 80);
    await sleep(40);
    assert.equal(c.rejectedAt, undefined, 'not before its deadline');
    await sleep(100 + SLACK);
    assert.ok(c.rejectedAt !== undefined, 'rejected');
    // By the time a later timer fired: how late depends on the machine, not on the queue.
    assert.ok(c.rejectedAt - t0 >= 80, `at ${c.rejectedAt - t0} ms`);
    assert.match(c.error!.message, /no answer from redis:\/\/node:1 within 80 ms/);
    q.close();
  });

  test('answered calls are never rejected; unanswered ones among them are, each at its own deadline', async () => {
    const q = new DeadlineQueue('n');
    const t0 = Date.now();
    const calls: Call[] = [];
    for (let i = 0; i < 3000; i++) calls.push(bound(q, 60)); // past the sweep threshold
    calls.forEach((c, i) => i % 500 !== 7 && c.resolve());
    await sleep(30);
    const later = Array.from({ length: 10 }, () => bound(q, 60));
    later.slice(1).forEach((c) => c.resolve());
    await sleep(60 + 30 + SLACK);
    calls.forEach((c, i) => {
      if (i % 500 === 7) assert.ok(c.rejectedAt !== undefined && c.rejectedAt - t0 >= 60, `call ${i} rejected at its deadline`);
      else assert.equal(c.rejections, 0, `answered call ${i} not rejected`);
    });
    assert.ok(later[0]!.rejectedAt !== undefined && later[0]!.rejectedAt - t0 >= 90, 'the later call at its own (later) deadline');
    later.slice(1).forEach((c) => assert.equal(c.rejections, 0));
    q.close();
  });

  test('an earlier deadline behind later ones is kept exactly', async () => {
    const q = new DeadlineQueue('n');
    const t0 = Date.now();
    const long = bound(q, 400);
    const short = bound(q, 50);
    await sleep(50 + SLACK);
    assert.ok(short.rejectedAt !== undefined && short.rejectedAt - t0 >= 50, 'the short one at its deadline');
    assert.equal(long.rejectedAt, undefined, 'the long one still waits');
    long.resolve();
    q.close();
    assert.equal(long.rejections, 0);
  });

  test('a call rejected by its client stays bounded and does not hold the answered ones behind it', async () => {
    const q = new DeadlineQueue('n');
    const failed = bound(q, 100);
    failed.reject(new Error('connection closed')); // settled, but never isResolved
    for (let i = 0; i < 5000; i++) bound(q, 100).resolve();
    const inside = (q as unknown as { calls: unknown[] }).calls.length;
    assert.ok(inside < 2100, `answered calls swept out (${inside} queued)`);
    await sleep(100 + SLACK);
    assert.equal((q as unknown as { calls: unknown[] }).calls.length, 0, 'empty once the deadline passed');
    q.close();
  });

  test('close rejects what is pending and stops the timer', () => {
    const q = new DeadlineQueue('n');
    const c = bound(q, 10_000);
    q.close();
    assert.match(c.error!.message, /closed/);
    assert.equal((q as unknown as { timer: unknown }).timer, undefined);
  });
});
