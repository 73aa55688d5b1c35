/** Stream records and batches in the shape Lambda delivers them, for the consumer's tests. */
import type { DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import type { TestStack } from './stack.ts';

export type Image = NonNullable<NonNullable<DynamoDBRecord['dynamodb']>['Keys']>;

/** One record as Lambda delivers it from a table's stream (binary as base64, numbers as strings). */
export function streamRecord(
  stack: Pick<TestStack, 'prefix'>,
  table: string,
  keys: Image,
  seq: string,
  view: 'KEYS_ONLY' | 'NEW_IMAGE' | 'NEW_AND_OLD_IMAGES' = 'KEYS_ONLY',
  images: { NewImage?: Image; OldImage?: Image } = {},
): DynamoDBRecord {
  return {
    eventID: `event-${seq}`,
    eventName: 'MODIFY',
    eventVersion: '1.1',
    eventSource: 'aws:dynamodb',
    awsRegion: 'us-east-1',
    dynamodb: {
      ApproximateCreationDateTime: 1767225600,
      Keys: keys,
      ...(view === 'NEW_AND_OLD_IMAGES' ? images : view === 'NEW_IMAGE' && images.NewImage ? { NewImage: images.NewImage } : {}),
      SequenceNumber: seq,
      SizeBytes: 64,
      StreamViewType: view,
    },
    eventSourceARN: `arn:aws:dynamodb:us-east-1:000000000000:table/${stack.prefix}${table}/stream/2026-01-01T00:00:00.000`,
  };
}

export const batch = (...records: DynamoDBRecord[]): DynamoDBStreamEvent => ({ Records: records });
