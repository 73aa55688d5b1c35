/** Reading infra/monitoring.yml's dashboard and alarms: which metrics they name, in which namespace. */

export interface NamedMetric {
  namespace: string;
  name: string;
}

/**
 * The dashboard body (the Fn::Sub template string) as JSON: CloudFormation's own variables
 * (`${AWS::Region}`, `${ReadLambdaFunction}`) replaced by their names, as Fn::Sub would by values;
 * the serverless variables of the unpackaged file (`${self:service}`, lower case) stay as they are.
 */
export function dashboardBody(template: string): { widgets: { properties: { metrics: unknown[][] } }[] } {
  return JSON.parse(template.replace(/\$\{([A-Z][A-Za-z0-9:]*)\}/g, (_, name: string) => name));
}

/**
 * Every metric a dashboard body graphs: rows `[namespace, name, dimension, value, …]` (a row may
 * repeat the one above with "."), and the metric names inside SEARCH expressions (in `namespace`
 * given as the schema's first element).
 */
export function dashboardMetrics(template: string): NamedMetric[] {
  const out: NamedMetric[] = [];
  for (const widget of dashboardBody(template).widgets) {
    let previous: string[] = [];
    for (const row of widget.properties.metrics) {
      const first = row[0];
      if (typeof first === 'object' && first !== null && 'expression' in first) {
        const expression = String((first as { expression: unknown }).expression);
        for (const m of expression.matchAll(/SEARCH\('\{"?([^",}]+)"?[^}]*\}\s*MetricName="([^"]+)"/g)) {
          out.push({ namespace: m[1] as string, name: m[2] as string });
        }
        continue;
      }
      const strings = row.filter((x): x is string => typeof x === 'string').map((x, i) => (x === '.' ? (previous[i] ?? x) : x));
      previous = strings;
      out.push({ namespace: strings[0] as string, name: strings[1] as string });
    }
  }
  return out;
}

/** The metrics the alarms watch (a plain MetricName each: no metric math). */
export function alarmMetrics(resources: Record<string, { Type: string; Properties: Record<string, unknown> }>): NamedMetric[] {
  return Object.values(resources)
    .filter((r) => r.Type === 'AWS::CloudWatch::Alarm')
    .map((r) => ({ namespace: String(r.Properties.Namespace), name: String(r.Properties.MetricName) }));
}
