/** The event source mappings' settings (stream-mappings.cjs), in serverless.yml's spelling. */
declare function resolve(context: { resolveVariable: (variable: string) => Promise<unknown> }): Promise<resolve.MappingSettings>;
declare namespace resolve {
  interface MappingSettings {
    startingPosition: 'TRIM_HORIZON' | 'LATEST';
    batchSize: number;
    /** Without it, Lambda ignores the answer and retries only a batch whose invocation failed. */
    functionResponseType: 'ReportBatchItemFailures' | undefined;
    bisectBatchOnFunctionError: boolean;
    /** -1: no limit. */
    maximumRetryAttempts: number;
    /** -1: no limit. */
    maximumRecordAgeInSeconds: number;
  }
  function mappingSettings(largestTtlSeconds: number): MappingSettings;
  function retryWindowSeconds(largestTtlSeconds: number): number;
  const STREAM_RETENTION_SECONDS: number;
  const FILL_MARGIN_SECONDS: number;
}
export = resolve;
