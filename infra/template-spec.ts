/**
 * Checks a CloudFormation template (the one `npm run package` writes) against the AWS resource
 * specification as the CDK publishes it (`@aws-cdk/aws-service-spec`): every resource type exists,
 * every property name is valid at every level, required properties are present, literal values
 * have the right types and allowed values, and every `Ref`, `Fn::GetAtt`, `Fn::Sub` reference,
 * `DependsOn` and `Condition` names something that exists. Nobody here can deploy to AWS, so this
 * is as close to CloudFormation's own validation as the tests get (README, "Deploying it").
 *
 * A value built by an intrinsic function is only known at deploy time: its type is not checked,
 * but what it refers to is.
 */
import { loadAwsServiceSpec } from '@aws-cdk/aws-service-spec';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Obj = { [k: string]: Json };

/** The spec's property type (`@aws-cdk/service-spec-types`), as far as this check reads it. */
type PropType =
  | { type: 'string'; allowedValues?: string[] }
  | { type: 'number' | 'integer'; allowedValues?: (string | number)[] }
  | { type: 'boolean' | 'json' | 'date-time' | 'null' | 'tag' }
  | { type: 'ref'; reference: { $ref: string } }
  | { type: 'array' | 'map'; element: PropType }
  | { type: 'union'; types: PropType[] };

interface PropSpec {
  type: PropType;
  required?: boolean;
  previousTypes?: PropType[];
}

interface Shape {
  properties: Record<string, PropSpec>;
}

export interface SpecIndex {
  resource(type: string): (Shape & { attributes: Record<string, unknown> }) | undefined;
  definition(id: string): Shape | undefined;
}

let loaded: Promise<SpecIndex> | undefined;

/** The specification, loaded once per process (about 1.5 s). */
export function loadSpec(): Promise<SpecIndex> {
  loaded ??= (async () => {
    const db = await loadAwsServiceSpec();
    const resources = new Map<string, Shape & { attributes: Record<string, unknown> }>();
    for (const r of db.all('resource')) resources.set(r.cloudFormationType, r as never);
    const definitions = new Map<string, Shape>();
    for (const d of db.all('typeDefinition')) definitions.set(d.$id, d as never);
    return { resource: (t) => resources.get(t), definition: (id) => definitions.get(id) };
  })();
  return loaded;
}

const PSEUDO = new Set([
  'AWS::AccountId',
  'AWS::NotificationARNs',
  'AWS::NoValue',
  'AWS::Partition',
  'AWS::Region',
  'AWS::StackId',
  'AWS::StackName',
  'AWS::URLSuffix',
]);

const INTRINSICS = new Set([
  'Ref',
  'Fn::GetAtt',
  'Fn::Join',
  'Fn::Sub',
  'Fn::If',
  'Fn::Select',
  'Fn::Split',
  'Fn::ImportValue',
  'Fn::FindInMap',
  'Fn::GetAZs',
  'Fn::Base64',
  'Fn::Cidr',
  'Fn::Length',
  'Fn::ToJsonString',
]);

const isObj = (v: Json | undefined): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The intrinsic function a value is, if it is one (an object of exactly one key that names one). */
function intrinsic(v: Json | undefined): string | undefined {
  if (!isObj(v)) return undefined;
  const keys = Object.keys(v);
  return keys.length === 1 && INTRINSICS.has(keys[0]!) ? keys[0] : undefined;
}

/** Checks `template`; returns one line per problem, each naming where it is. Empty: valid. */
export function checkTemplate(template: Obj, spec: SpecIndex): string[] {
  const problems: string[] = [];
  const resources = isObj(template.Resources) ? template.Resources : {};
  const parameters = isObj(template.Parameters) ? template.Parameters : {};
  const conditions = isObj(template.Conditions) ? template.Conditions : {};
  const mappings = isObj(template.Mappings) ? template.Mappings : {};
  const typeOf = (logicalId: string): string | undefined => {
    const r = resources[logicalId];
    return isObj(r) && typeof r.Type === 'string' ? r.Type : undefined;
  };

  // References, wherever they are (properties, outputs, conditions).
  const refs = (v: Json | undefined, at: string): void => {
    if (Array.isArray(v)) return v.forEach((x, i) => refs(x, `${at}[${i}]`));
    if (!isObj(v)) return;
    const fn = intrinsic(v);
    if (fn === 'Ref') {
      const name = v.Ref;
      if (typeof name !== 'string') problems.push(`${at}: Ref must name something`);
      else if (!(name in resources) && !(name in parameters) && !PSEUDO.has(name)) {
        problems.push(`${at}: Ref to '${name}', which is neither a resource, a parameter nor a pseudo parameter`);
      }
      return;
    }
    if (fn === 'Fn::GetAtt') {
      const arg = v['Fn::GetAtt'];
      const [id, attr] = typeof arg === 'string' ? splitOnce(arg) : Array.isArray(arg) ? [arg[0], arg[1]] : [undefined, undefined];
      if (typeof id !== 'string' || attr === undefined) problems.push(`${at}: Fn::GetAtt needs [resource, attribute]`);
      else if (typeof attr === 'string') checkGetAtt(id, attr, at);
      if (Array.isArray(arg) && typeof arg[1] !== 'string') refs(arg[1], `${at}.Fn::GetAtt[1]`);
      return;
    }
    if (fn === 'Fn::Sub') {
      const arg = v['Fn::Sub'];
      const [text, vars] = typeof arg === 'string' ? [arg, {}] : Array.isArray(arg) ? [arg[0], arg[1]] : [undefined, undefined];
      if (typeof text !== 'string') problems.push(`${at}: Fn::Sub needs a string`);
      else {
        const local = isObj(vars) ? vars : {};
        for (const m of text.matchAll(/\$\{([^!}][^}]*)\}/g)) {
          const name = m[1]!.trim();
          if (name in local) continue;
          const [id, attr] = splitOnce(name);
          if (attr !== undefined) checkGetAtt(id, attr, `${at}.Fn::Sub`);
          else if (!(id in resources) && !(id in parameters) && !PSEUDO.has(id)) {
            problems.push(`${at}: Fn::Sub names '\${${id}}', which is neither a resource, a parameter nor a pseudo parameter`);
          }
        }
        refs(local, `${at}.Fn::Sub[1]`);
      }
      return;
    }
    if (fn === 'Fn::If') {
      const arg = v['Fn::If'];
      if (!Array.isArray(arg) || arg.length !== 3 || typeof arg[0] !== 'string')
        problems.push(`${at}: Fn::If needs [condition, then, else]`);
      else if (!(arg[0] in conditions)) problems.push(`${at}: Fn::If names condition '${arg[0]}', which is not declared`);
    }
    if (fn === 'Fn::FindInMap') {
      const arg = v['Fn::FindInMap'];
      if (Array.isArray(arg) && typeof arg[0] === 'string' && !(arg[0] in mappings))
        problems.push(`${at}: Fn::FindInMap names mapping '${arg[0]}', which is not declared`);
    }
    if (fn === undefined && typeof v.Condition === 'string' && Object.keys(v).length === 1 && !(v.Condition in conditions)) {
      problems.push(`${at}: names condition '${v.Condition}', which is not declared`);
    }
    for (const [k, x] of Object.entries(v)) refs(x, `${at}.${k}`);
  };

  const checkGetAtt = (id: string, attr: string, at: string): void => {
    const type = typeOf(id);
    if (type === undefined) return void problems.push(`${at}: Fn::GetAtt of '${id}', which is not a resource`);
    if (type.startsWith('Custom::') || type === 'AWS::CloudFormation::CustomResource') return;
    const r = spec.resource(type);
    if (r && !(attr in r.attributes))
      problems.push(`${at}: ${type} '${id}' has no attribute '${attr}' (it has ${Object.keys(r.attributes).join(', ') || 'none'})`);
  };

  // Values against their types.
  const value = (v: Json | undefined, t: PropType, at: string): void => {
    if (v === undefined) return;
    const fn = intrinsic(v);
    if (fn === 'Fn::If') {
      const arg = v && isObj(v) ? v['Fn::If'] : undefined;
      if (Array.isArray(arg))
        for (const [i, branch] of [arg[1], arg[2]].entries()) if (!isNoValue(branch)) value(branch, t, `${at}.Fn::If[${i + 1}]`);
      return;
    }
    if (fn !== undefined) return; // known at deploy time only; its references are checked apart
    switch (t.type) {
      case 'string':
        if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
          return void problems.push(`${at}: expected a string, got ${describe(v)}`);
        if (t.allowedValues && !t.allowedValues.includes(String(v)))
          problems.push(`${at}: '${String(v)}' is not one of ${t.allowedValues.join(', ')}`);
        return;
      case 'integer':
      case 'number':
        if (
          typeof v === 'number'
            ? t.type === 'integer' && !Number.isInteger(v)
            : typeof v !== 'string' || !/^-?\d+(\.\d+)?$/.test(v) || (t.type === 'integer' && v.includes('.'))
        ) {
          return void problems.push(`${at}: expected ${t.type === 'integer' ? 'an integer' : 'a number'}, got ${describe(v)}`);
        }
        if (t.allowedValues && !t.allowedValues.map(String).includes(String(v)))
          problems.push(`${at}: ${String(v)} is not one of ${t.allowedValues.join(', ')}`);
        return;
      case 'boolean':
        if (typeof v !== 'boolean' && v !== 'true' && v !== 'false') problems.push(`${at}: expected a boolean, got ${describe(v)}`);
        return;
      case 'array':
        if (!Array.isArray(v)) return void problems.push(`${at}: expected a list, got ${describe(v)}`);
        return v.forEach((x, i) => value(x, t.element, `${at}[${i}]`));
      case 'map':
        if (!isObj(v)) return void problems.push(`${at}: expected a map, got ${describe(v)}`);
        for (const [k, x] of Object.entries(v)) value(x, t.element, `${at}.${k}`);
        return;
      case 'tag':
        if (!isObj(v) || !('Key' in v) || !('Value' in v)) problems.push(`${at}: expected a tag { Key, Value }, got ${describe(v)}`);
        return;
      case 'ref': {
        const d = spec.definition(t.reference.$ref);
        if (!d) return;
        if (!isObj(v)) return void problems.push(`${at}: expected an object, got ${describe(v)}`);
        return shape(v, d, at);
      }
      case 'union': {
        const before = problems.length;
        const tries = t.types.map((member) => {
          value(v, member, at);
          return problems.splice(before);
        });
        const best = tries.reduce((a, b) => (b.length < a.length ? b : a));
        if (best.length > 0) problems.push(...best);
        return;
      }
      default:
        return; // json, date-time, null: anything
    }
  };

  // A property's types: its own and its previous ones. The spec adds `json` (anything) beside a
  // structured type where the CloudFormation schema widened it (KeySchema: a list, or json); that
  // member is kept only where json was the type before (policy documents), else the structured
  // members are what is checked.
  const propTypes = (p: PropSpec): PropType => {
    const flat = (t: PropType): PropType[] => (t.type === 'union' ? t.types.flatMap(flat) : [t]);
    const all = [...flat(p.type), ...(p.previousTypes ?? []).flatMap(flat)];
    const structured = all.filter((t) => t.type !== 'json');
    const jsonBefore = (p.previousTypes ?? []).some((t) => t.type === 'json') || p.type.type === 'json';
    const members = jsonBefore || structured.length === 0 ? all : structured;
    return members.length === 1 ? members[0]! : { type: 'union', types: members };
  };

  const shape = (v: Obj, s: Shape, at: string): void => {
    for (const [name, p] of Object.entries(s.properties)) {
      if (p.required && !(name in v)) problems.push(`${at}: required property '${name}' is missing`);
    }
    for (const [name, x] of Object.entries(v)) {
      const p = s.properties[name];
      if (!p) problems.push(`${at}: unknown property '${name}' (known: ${Object.keys(s.properties).sort().join(', ')})`);
      else if (!isNoValue(x)) value(x, propTypes(p), `${at}.${name}`);
    }
  };

  for (const [id, r] of Object.entries(resources)) {
    const at = `Resources.${id}`;
    if (!isObj(r) || typeof r.Type !== 'string') {
      problems.push(`${at}: a resource needs a Type`);
      continue;
    }
    const props = isObj(r.Properties) ? r.Properties : {};
    if (r.Type.startsWith('Custom::') || r.Type === 'AWS::CloudFormation::CustomResource') {
      if (!('ServiceToken' in props)) problems.push(`${at}: a custom resource needs a ServiceToken`);
    } else {
      const s = spec.resource(r.Type);
      if (!s) problems.push(`${at}: resource type '${r.Type}' does not exist`);
      else shape(props, s, `${at}.Properties`);
    }
    const deps = r.DependsOn === undefined ? [] : Array.isArray(r.DependsOn) ? r.DependsOn : [r.DependsOn];
    for (const d of deps)
      if (typeof d !== 'string' || !(d in resources)) problems.push(`${at}.DependsOn: '${String(d)}' is not a resource`);
    if (r.Condition !== undefined && (typeof r.Condition !== 'string' || !(r.Condition in conditions)))
      problems.push(`${at}.Condition: '${String(r.Condition)}' is not declared`);
    for (const policy of ['DeletionPolicy', 'UpdateReplacePolicy'] as const) {
      if (r[policy] !== undefined && !['Delete', 'Retain', 'RetainExceptOnCreate', 'Snapshot'].includes(String(r[policy])))
        problems.push(`${at}.${policy}: '${String(r[policy])}' is not a policy`);
    }
    refs(props, `${at}.Properties`);
  }
  refs(template.Outputs, 'Outputs');
  refs(template.Conditions, 'Conditions');
  return problems;
}

function isNoValue(v: Json | undefined): boolean {
  return isObj(v) && v.Ref === 'AWS::NoValue';
}

function splitOnce(s: string): [string, string | undefined] {
  const i = s.indexOf('.');
  return i === -1 ? [s, undefined] : [s.slice(0, i), s.slice(i + 1)];
}

function describe(v: Json): string {
  if (Array.isArray(v)) return 'a list';
  if (v === null) return 'null';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}
