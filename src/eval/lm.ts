/** What evaluation needs of a language model; implemented over the real model elsewhere. */
export interface EvalModel {
  /** Sum of log-probabilities of each continuation given the prompt (same prompt for all). */
  scoreContinuations(prompt: string, continuations: string[]): Promise<number[]>;
  /** Greedy or sampled completions, one array of n strings per prompt. */
  generate(prompts: string[], opts: GenerateOptions): Promise<string[][]>;
}

export interface GenerateOptions {
  maxNewTokens: number;
  temperature?: number;
  topP?: number;
  n?: number;
  seed?: number;
  stop?: string[];
}

/** Runs `generate` over prompts in batches of `batchSize`, keeping the order. */
export async function generateBatched(
  model: EvalModel,
  prompts: string[],
  opts: GenerateOptions,
  batchSize: number,
  onProgress?: (done: number, total: number) => void,
): Promise<string[][]> {
  if (!(batchSize >= 1)) throw new Error(`batchSize must be >= 1, got ${batchSize}`);
  const out: string[][] = [];
  for (let i = 0; i < prompts.length; i += batchSize) {
    const batch = prompts.slice(i, i + batchSize);
    const got = await model.generate(batch, opts);
    if (got.length !== batch.length) throw new Error(`model.generate returned ${got.length} results for ${batch.length} prompts`);
    out.push(...got);
    onProgress?.(out.length, prompts.length);
  }
  return out;
}
