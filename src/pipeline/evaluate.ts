import path from 'node:path';
import { nativeKernels } from '../engine/native.js';
import { attitudeScale, generationScores, mcqAccuracy, meanReward, perplexity, preferenceAccuracy } from '../eval/suite.js';
import { bundledScalePath } from '../eval/scale.js';
import { loadChatModel } from '../model/load.js';
import { RewardModel } from '../model/reward.js';
import type { Row } from '../report/table.js';
import { MetricsLog } from '../train/metrics.js';
import { templateOf, type RunConfig } from './config.js';

/** Files the evaluations read; from the built-in corpus, or absent. */
export interface EvalFiles {
  ppl: string[];
  mcqTest: string | null;
  mcqDev: string | null;
  gen: string | null;
  pref: string | null;
}

const log = (s: string) => process.stderr.write(`${s}\n`);

/** The evaluations configured in `cfg.eval`, run on one stage's model; one summary row. */
export async function evaluateStage(cfg: RunConfig, runDir: string, modelDir: string, rmDir: string | null, f: EvalFiles, chat: boolean, stage: string, policyUnchanged: boolean): Promise<Row> {
  const t0 = Date.now();
  const cm = await loadChatModel({ model: modelDir, template: templateOf(cfg) });
  const row: Row = {};
  const e = policyUnchanged ? { ...cfg.eval, ppl: false, mcq: false as const, gen: false as const, scale: false as const } : cfg.eval;
  const step = async (name: string, fn: () => Promise<void>) => {
    const s = Date.now();
    await fn();
    log(`eval ${stage}: ${name} ${((Date.now() - s) / 1000).toFixed(1)} s`);
  };
  if (e.ppl && f.ppl.length) await step('perplexity', async () => { row.ppl = (await perplexity(cm, f.ppl)).ppl; });
  if (e.mcq && f.mcqTest) await step('mcq', async () => { const m = await mcqAccuracy(cm, f.mcqTest!, f.mcqDev, { k: e.mcq ? e.mcq.k_shot : 0, mode: e.mcq ? e.mcq.mode : 'loglik', chat, limit: e.mcq ? e.mcq.limit : undefined }); row.mcq_acc = m.accuracy; });
  if (e.gen && f.gen && stage !== 'base') await step('bleu/rouge', async () => { const g = await generationScores(cm, f.gen!, { limit: e.gen ? e.gen.limit : 50, maxNewTokens: e.gen ? e.gen.max_new_tokens : 64 }); row.bleu4 = g.bleu4; row.rougeL = g.rougeL; });
  if (e.pref && f.pref && !policyUnchanged) await step('preference', async () => {
    const p = await preferenceAccuracy(cm, f.pref!);
    row.pref_acc = p.accuracy;
    for (const k of ['wrong_fact', 'unsafe', 'evasive']) if (p[`accuracy_${k}`] !== undefined) row[`pref_acc_${k}`] = p[`accuracy_${k}`];
  });
  if (e.pref && rmDir && chat && f.gen) await step('reward', async () => {
    const rm = await RewardModel.load(rmDir, nativeKernels, false);
    row.mean_reward = await meanReward(cm, rm, f.gen!, { limit: e.gen ? Math.min(e.gen.limit, 50) : 50, maxNewTokens: e.gen ? e.gen.max_new_tokens : 64 });
  });
  if (stage === 'rm') {
    const last = new MetricsLog(path.join(runDir, 'metrics.jsonl')).read('rm').filter((x) => x.eval_accuracy !== undefined).at(-1);
    if (last) row.rm_acc = last.eval_accuracy as number;
  }
  if (e.scale && (chat || e.scale.mode === 'loglik')) await step('attitude scale', async () => {
    const sc = e.scale as Exclude<typeof e.scale, false>;
    const s = await attitudeScale(cm, sc.file ?? bundledScalePath('mental_illness_attitudes_zh.json'), { samples: sc.samples, chat, mode: sc.mode });
    row.scale_total = s.total;
  });
  log(`eval ${stage}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return row;
}
