/**
 * The built-in demo: the whole regime on the built-in corpus with a small model, about 10
 * minutes on 2 cores (`fast`: about one, for tests). The settings are tuned so that
 * each stage moves the metric it targets on this corpus; the paper defaults (config.ts) are
 * for real models and data. `seed` seeds everything: the corpus (its phrasings and which
 * diseases and templates are held out), the initialisation, data order, sampling and splits.
 */
export const DEMO_SEED = 42;

export function demoConfig(fast: boolean, seed = DEMO_SEED): Record<string, unknown> {
  const steps = (full: number, quick: number) => (fast ? quick : full);
  return {
    name: `${fast ? 'demo-fast' : 'demo'}${seed === DEMO_SEED ? '' : `-seed${seed}`}`,
    seed,
    builtin_corpus: { seed, heldout_fraction: 0.1 },
    tokenizer: { train: { vocab_size: fast ? 1500 : 3000, min_frequency: 2 } },
    model: {
      config: fast
        ? {
            hidden_size: 128,
            intermediate_size: 352,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            max_position_embeddings: 512,
          }
        : {
            hidden_size: 256,
            intermediate_size: 704,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            max_position_embeddings: 1024,
          },
    },
    stages: [
      {
        type: 'pt',
        block_size: 256,
        batch_size: 8,
        max_steps: steps(300, 80),
        eval_every: steps(60, 20),
        lr: 2e-3,
        warmup_ratio: 0.05,
        weight_decay: 0.01,
      },
      { type: 'sft', batch_size: 16, max_steps: steps(300, 60), eval_every: steps(60, 20), lr: 1e-3, max_source: 128, max_target: 128 },
      { type: 'rm', batch_size: 8, max_steps: steps(100, 40), eval_every: steps(20, 10), lr: 5e-4, max_source: 128, max_target: 128 },
      // Rounds are judged (greedy-answer reward every eval_every steps) on the corpus's validation
      // split (sft_dev: the held-out diseases and wordings; the test split is sft_heldout). Judged
      // on a share of its own prompts, a round kept steps whose gains did not carry over (full
      // demo, seed 1: +0.56 on 352 held-out prompts, against +1.0 judged on sft_dev). Two rounds:
      // the fast demo's first round can find no step that beats its start (seed 3: the first
      // steps swing the judged reward by 2), and a second round samples afresh from the policy
      // it hands on; with two, the held-out reward rose by 1.2-5.2 on all 5 fast seeds and by
      // 1.8 on full seed 1 (the closing notes of issue 11). The full demo's best step raises the
      // references' loss by about 9% (0.75 -> 0.82, seed 42): the default 2% bound kept the
      // starting policy there. Replay: with half of the set references (the default), the
      // references the reward model rates below the policy's greedy answers pulled the reward
      // back down; a quarter let ROUGE-L fall by up to 4.9; 0.35 raised it everywhere. The
      // ROUGE-L bound: without it the reward model pulled answers away from the references'
      // wording (full seed 1: BLEU-4 -4.2, ROUGE-L -2.9 on 200 held-out dialogues, beyond the
      // seeds' spread); 10% of the start's ROUGE-L on sft_dev kept every drop within it
      {
        type: 'rs',
        k: 4,
        keep: 1,
        rounds: 2,
        prompts: steps(192, 64),
        eval_limit: steps(96, 48),
        eval_every: steps(4, 2),
        max_loss_rise: 0.1,
        max_rouge_drop: 0.1,
        replay: 0.35,
        max_new_tokens: 64,
        batch_size: 16,
        max_steps: steps(24, 10),
        lr: 3e-4,
        max_source: 128,
        max_target: 128,
      },
      {
        type: 'dpo',
        batch_size: 8,
        max_steps: steps(60, 30),
        eval_every: steps(20, 10),
        lr: fast ? 1e-3 : 5e-4,
        beta: 0.1,
        max_source: 128,
        max_target: 128,
      },
    ],
    eval: {
      mcq: { k_shot: 0, mode: 'cloze', limit: steps(300, 100) },
      // enough held-out conversations that a stage's reward change stands out of the noise: on
      // 48 the per-conversation change of RS's reward had an SD of 3-5, so a standard error of ~0.5
      gen: { limit: steps(200, 64), max_new_tokens: 64 },
      ner: { k_shot: 2, limit: steps(32, 12), max_new_tokens: 48 },
      scale: { samples: 1, mode: 'loglik' },
    },
  };
}
