// What a deploy needs from the account that `npm run package` can check without credentials
// (README, "Deploying it"). serverless.yml resolves ${file(infra/deploy-preconditions.cjs)} at
// package time, so a deploy that could only fail later, or deploy a stack whose functions cannot
// reach DynamoDB, fails here with a message that says what to pass. The local stage is not checked.
'use strict';

const SUBNET = /^subnet-[0-9a-f]{8,17}$/;
const ROUTE_TABLE = /^rtb-[0-9a-f]{8,17}$/;
const PREFIX_LIST = /^pl-[0-9a-f]{8,17}$/;

/** Problems with the params of a deploy; empty when it can go ahead. */
function problems(p) {
  const out = [];
  const subnets = String(p.subnetIds ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (new Set(subnets).size < 2) {
    out.push(`subnetIds: name two private subnets or more, in different Availability Zones (the cache's Multi-AZ failover needs them); got '${p.subnetIds ?? ''}'`);
  }
  for (const s of subnets) if (!SUBNET.test(s)) out.push(`subnetIds: '${s}' is not a subnet id (subnet-…)`);
  const routeTables = String(p.dynamodbEndpointRouteTableIds ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const r of routeTables) if (!ROUTE_TABLE.test(r)) out.push(`dynamodbEndpointRouteTableIds: '${r}' is not a route table id (rtb-…)`);
  const reach = String(p.subnetsReachDynamoDb ?? 'false');
  if (routeTables.length === 0 && reach !== 'true') {
    out.push(
      'the functions would not reach DynamoDB: give dynamodbEndpointRouteTableIds (the route tables of subnetIds, for a gateway endpoint), ' +
        'or set subnetsReachDynamoDb=true when those subnets already reach it (a NAT gateway or an existing endpoint)',
    );
  }
  if (!PREFIX_LIST.test(String(p.dynamodbPrefixListId ?? ''))) {
    out.push(
      `dynamodbPrefixListId: the id of the managed prefix list com.amazonaws.<region>.dynamodb (pl-…), the functions' only HTTPS egress; got '${p.dynamodbPrefixListId ?? ''}'. ` +
        "Find it with: aws ec2 describe-managed-prefix-lists --filters Name=prefix-list-name,Values=com.amazonaws.<region>.dynamodb --query 'PrefixLists[0].PrefixListId'",
    );
  }
  return out;
}

const NAMES = ['subnetIds', 'dynamodbEndpointRouteTableIds', 'subnetsReachDynamoDb', 'dynamodbPrefixListId'];

async function resolve({ resolveVariable, options }) {
  const stage = options.stage ?? (await resolveVariable('sls:stage'));
  if (stage === 'local') return 'not checked (local stage)';
  // serverless-offline (the local stack, any stage) deploys nothing.
  const command = process.argv.slice(2).find((a) => !a.startsWith('-'));
  if (command === 'offline') return 'not checked (offline)';
  const params = {};
  for (const n of NAMES) params[n] = await resolveVariable(`param:${n}, null`);
  const found = problems(params);
  if (found.length > 0) throw new Error(`deploy preconditions (README, "Deploying it"):\n  - ${found.join('\n  - ')}`);
  return 'met';
}

module.exports = resolve;
module.exports.problems = problems;
