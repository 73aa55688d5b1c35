// The deploy's side of tables.json, the one file that declares the application's tables (the library
// imports the same file: lib/tables.ts). serverless.yml and infra/iam.yml take each piece with
// ${file(infra/tables.cjs):<piece>}; osls calls the piece's function at package time. CommonJS: osls
// loads a file variable with require().
//
// Per table it makes: the AWS::DynamoDB::Table (on-demand, the stream of the declared view type,
// point-in-time recovery, deletion protection and policy from the params), its outputs, the stream
// consumer's subscription, and the ARNs the functions' roles are granted (infra/iam.yml).
// lib/tables.ts checks every declaration in full (the functions refuse to start on a bad file); the
// checks here are those the CloudFormation needs, so that a bad file fails the package too.
'use strict';

const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const { mappingSettings } = require('./stream-mappings.cjs');

const TABLES_FILE = join(__dirname, '..', 'tables.json');
const TABLE_NAME = /^[A-Za-z0-9_.-]{3,200}$/;
const KEY_TYPES = ['S', 'N', 'B'];
const STREAM_VIEW_TYPES = ['KEYS_ONLY', 'NEW_IMAGE', 'OLD_IMAGE', 'NEW_AND_OLD_IMAGES'];
// New images by default: the consumer compares a record's image with the entry (lib/tables.ts says why).
const DEFAULT_STREAM_VIEW_TYPE = 'NEW_IMAGE';

/**
 * The CloudFormation logical id of a table: its name in PascalCase + `Table` (`users` → UsersTable,
 * `order-lines` → OrderLinesTable). It must never change for a deployed table: a new id replaces the
 * table, and with it its data (unless the deletion policy retains it).
 */
function logicalId(name) {
  const words = name.split(/[^A-Za-z0-9]+/).filter((w) => w !== '');
  return `${words.map((w) => w[0].toUpperCase() + w.slice(1)).join('')}Table`;
}

/** The tables of tables.json (or of `path`), checked as far as the template needs. */
function readTables(path = TABLES_FILE) {
  const fail = (where, message) => {
    throw new Error(`${path}: ${where}: ${message}`);
  };
  let doc;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path}: cannot be read as JSON: ${err.message}`);
  }
  if (!doc || !Array.isArray(doc.tables) || doc.tables.length === 0) fail('tables', 'must be a list of one table or more');
  const ids = new Map();
  return doc.tables.map((t, i) => {
    const at = `tables[${i}]`;
    if (!t || typeof t !== 'object') fail(at, 'must be an object');
    if (typeof t.name !== 'string' || !TABLE_NAME.test(t.name)) fail(`${at}.name`, 'must be 3-200 characters of letters, digits, _ . -');
    const keys = [t.hashKey, t.rangeKey].filter((k) => k !== undefined);
    if (t.hashKey === undefined) fail(`${at}.hashKey`, 'is required');
    for (const k of keys) {
      if (!k || typeof k.name !== 'string' || k.name === '' || !KEY_TYPES.includes(k.type)) {
        fail(at, `a key must be { "name": "<attribute>", "type": "S" | "N" | "B" }, got ${JSON.stringify(k)}`);
      }
    }
    const streamViewType = t.streamViewType ?? DEFAULT_STREAM_VIEW_TYPE;
    if (!STREAM_VIEW_TYPES.includes(streamViewType)) fail(`${at}.streamViewType`, `must be one of ${STREAM_VIEW_TYPES.join(', ')}`);
    if (t.ttlSeconds !== undefined && (!Number.isInteger(t.ttlSeconds) || t.ttlSeconds < 1)) {
      fail(`${at}.ttlSeconds`, 'must be a positive whole number');
    }
    const id = logicalId(t.name);
    if (ids.has(id)) fail(`${at}.name`, `'${t.name}' and '${ids.get(id)}' make the same CloudFormation id ${id}`);
    ids.set(id, t.name);
    return { name: t.name, logicalId: id, keys, streamViewType, ttlSeconds: t.ttlSeconds };
  });
}

/** The AWS::DynamoDB::Table of a table, in CloudFormation's spelling. */
function tableResource(table, { tablePrefix, deletionPolicy, deletionProtection }) {
  return {
    Type: 'AWS::DynamoDB::Table',
    DeletionPolicy: deletionPolicy,
    UpdateReplacePolicy: deletionPolicy,
    Properties: {
      TableName: tablePrefix + table.name,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: table.keys.map((k) => ({ AttributeName: k.name, AttributeType: k.type })),
      KeySchema: table.keys.map((k, i) => ({ AttributeName: k.name, KeyType: i === 0 ? 'HASH' : 'RANGE' })),
      // Changing the view type replaces the stream (a new StreamArn): the consumer's subscription follows it.
      StreamSpecification: { StreamViewType: table.streamViewType },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      DeletionProtectionEnabled: deletionProtection,
    },
  };
}

/** `resources:` entry of serverless.yml: every table and its outputs (name, stream ARN). */
async function resources({ resolveVariable }) {
  const settings = {
    tablePrefix: await resolveVariable('self:custom.tablePrefix'),
    deletionPolicy: await resolveVariable('param:tableDeletionPolicy'),
    deletionProtection: String(await resolveVariable('param:tableDeletionProtection')) === 'true',
  };
  const Resources = {};
  const Outputs = {};
  for (const t of readTables()) {
    Resources[t.logicalId] = tableResource(t, settings);
    Outputs[`${t.logicalId}Name`] = { Value: { Ref: t.logicalId } };
    Outputs[`${t.logicalId}StreamArn`] = { Value: { 'Fn::GetAtt': [t.logicalId, 'StreamArn'] } };
  }
  return { Resources, Outputs };
}

/**
 * The largest entry TTL the mappings' retry window must cover: the params' (cacheTtlSeconds for
 * every table, largestTableTtlSeconds as an override) and each table's own ttlSeconds.
 */
async function largestTtlSeconds(resolveVariable) {
  const ttl = Number(await resolveVariable('param:cacheTtlSeconds'));
  const override = Number(await resolveVariable('param:largestTableTtlSeconds'));
  return Math.max(ttl, override, ...readTables().map((t) => t.ttlSeconds ?? 0));
}

/** The settings of every mapping (stream-mappings.cjs), with the retry window of these tables. */
async function streamMapping({ resolveVariable }) {
  return mappingSettings(await largestTtlSeconds(resolveVariable));
}

/** The stream consumer's events: one subscription per table, each with the mappings' settings. */
/** Where Lambda reports records it gave up on (infra/parking.yml). */
const GIVEN_UP = { onFailure: { arn: { 'Fn::GetAtt': ['StreamRecordsGivenUpQueue', 'Arn'] }, type: 'sqs' } };

async function streamEvents(context) {
  const settings = await streamMapping(context);
  return readTables().map((t) => ({
    stream: { type: 'dynamodb', arn: { 'Fn::GetAtt': [t.logicalId, 'StreamArn'] }, ...settings, destinations: GIVEN_UP },
  }));
}

module.exports = {
  resources,
  streamMapping,
  streamEvents,
  /** The tables' ARNs (what the read and write roles are granted). */
  tableArns: async () => readTables().map((t) => ({ 'Fn::GetAtt': [t.logicalId, 'Arn'] })),
  /** The tables' stream ARNs (what the consumer's role reads). */
  streamArns: async () => readTables().map((t) => ({ 'Fn::GetAtt': [t.logicalId, 'StreamArn'] })),
  /** Every stream of each table: ListStreams names a table, not a stream. */
  tableStreams: async () => readTables().map((t) => ({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [t.logicalId, 'Arn'] }, '/stream/*']] })),
  readTables,
  logicalId,
  TABLES_FILE,
};
