/** What a deploy needs from the account, checked at package time (deploy-preconditions.cjs). */
declare function resolve(context: { resolveVariable: (variable: string) => Promise<unknown>; options: { stage?: string } }): Promise<string>;
declare namespace resolve {
  /** Problems with a deploy's params, one line each; empty when it can go ahead. */
  function problems(params: Record<string, string | null | undefined>): string[];
}
export = resolve;
