/** What the Streams consumer and the replayer share: running a batch record by record, Lambda's answer. */

export interface StreamBatchResult {
  /** Lambda's ReportBatchItemFailures answer: the records to retry, by sequence number. */
  batchItemFailures: { itemIdentifier: string }[];
}

/** Stream order of two sequence numbers (decimal strings of varying length). */
export function compareSequence(a: string, b: string): number {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Runs `apply` on every record at once (`id`: its sequence number, else its eventID, else its
 * place) and answers with the records it reported failed (`false`), in stream order: Lambda
 * retries from the lowest. A record `apply` skips or applies answers `true`.
 */
export async function eachRecord<R extends { eventID?: string; dynamodb?: { SequenceNumber?: string } }>(
  records: readonly R[],
  apply: (record: R, id: string) => Promise<boolean>,
): Promise<StreamBatchResult> {
  const failures: { itemIdentifier: string }[] = [];
  await Promise.all(
    records.map(async (record, i) => {
      const id = record.dynamodb?.SequenceNumber ?? record.eventID ?? String(i);
      if (!(await apply(record, id))) failures.push({ itemIdentifier: id });
    }),
  );
  failures.sort((a, b) => compareSequence(a.itemIdentifier, b.itemIdentifier));
  return { batchItemFailures: failures };
}
