/** The deploy's side of tables.json (tables.cjs). */
interface KeyAttribute {
  name: string;
  type: 'S' | 'N' | 'B';
}
interface DeployTable {
  name: string;
  logicalId: string;
  keys: KeyAttribute[];
  streamViewType: string;
  ttlSeconds: number | undefined;
}
interface Context {
  resolveVariable: (variable: string) => Promise<unknown>;
}
type Intrinsic = Record<string, unknown>;
declare const tables: {
  resources(context: Context): Promise<{ Resources: Record<string, any>; Outputs: Record<string, any> }>;
  streamMapping(context: Context): Promise<import('./stream-mappings.cjs').MappingSettings>;
  streamEvents(context: Context): Promise<{ stream: Record<string, any> }[]>;
  tableArns(): Promise<Intrinsic[]>;
  streamArns(): Promise<Intrinsic[]>;
  tableStreams(): Promise<Intrinsic[]>;
  readTables(path?: string): DeployTable[];
  logicalId(name: string): string;
  TABLES_FILE: string;
};
export = tables;
