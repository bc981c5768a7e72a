import fs from 'node:fs';
import path from 'node:path';
import { nativeKernels } from '../engine/native.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { saveModel } from '../model/checkpoint.js';
import { loadChatModel, type ChatModelSource } from '../model/load.js';
import { RewardModel } from '../model/reward.js';
import { readJsonl, toMessages } from '../train/conversations.js';
import { MetricsLog } from '../train/metrics.js';
import { greedyReward, roundSummary, sampleAndRank, writeRound, type RoundRecord, type RsOptions, type RsPrompt } from '../train/rejection.js';
import { encodeSft, SftTask } from '../train/sft.js';
import { parse, UsageError } from './args.js';
import { applyThreads } from './common.js';
import { LORA_FLAGS, LORA_USAGE, MODEL_FLAGS, MODEL_USAGE, TRAINER_FLAGS, TRAINER_USAGE, loraFrom, runStage, splitHeldout, trainerConfig } from './stage.js';

const USAGE = `chimed train rs --prompts FILE --model DIR --reward RM_DIR --out RUN_DIR [options]

ChiMed-GPT's rejection sampling: per round, k answers per prompt from the policy plus any
external candidates are scored by the reward model; the best --keep per prompt (above
--threshold) become an SFT set the policy is fine-tuned on. Candidates, rewards and choices
of each round go to RUN_DIR/stages/rs/round-N/candidates.jsonl; the held-out prompts'
greedy-answer reward is logged before the first round and after each.

  --prompts FILE       JSONL: {id?, messages} or {id?, prompt, history?}; a final assistant turn is dropped
  --limit N            use at most N prompts (default all)
  --reward DIR         reward model (from chimed train rm)
  --external FILE      JSONL {id or prompt, response}: extra candidates (references, other models)
  --k N                samples per prompt (default 4)      --keep N   kept per prompt (default 1)
  --threshold X        minimum reward to keep               --rounds N (default 1)
  --temperature X      (default 0.8)  --top-p X (default 0.9)  --max-new-tokens N (default 128)
  --eval-fraction X    prompts held out for the greedy-reward measurement (default 0.1)
  --max-source N  --max-target N
${MODEL_USAGE}
${LORA_USAGE}
${TRAINER_USAGE}`;

export async function rsCommand(argv: string[]): Promise<number> {
  const a = parse(argv, {
    ...TRAINER_FLAGS, ...LORA_FLAGS, ...MODEL_FLAGS, prompts: { type: 'string' }, reward: { type: 'string' }, external: { type: 'string' },
    k: { type: 'string' }, keep: { type: 'string' }, threshold: { type: 'string' }, rounds: { type: 'string' }, temperature: { type: 'string' },
    'top-p': { type: 'string' }, 'max-new-tokens': { type: 'string' }, limit: { type: 'string' }, 'eval-fraction': { type: 'string' }, 'max-source': { type: 'string' }, 'max-target': { type: 'string' },
  }, USAGE);
  if (a.help) { process.stdout.write(USAGE + '\n'); return 0; }
  applyThreads(a.str('threads') ? a.int('threads') : undefined);
  const runDir = a.need('out');
  const seed = a.num('seed', 42, Number.isInteger, 'an integer');
  const o: RsOptions = {
    k: a.int('k', 4), keep: a.int('keep', 1), threshold: a.str('threshold') !== undefined ? a.num('threshold') : null,
    temperature: a.num('temperature', 0.8), topP: a.num('top-p', 0.9), maxNewTokens: a.int('max-new-tokens', 128),
    maxSource: a.int('max-source', 256), maxTarget: a.int('max-target', 256), batchSize: a.int('batch-size', 8), seed,
  };
  const rounds = a.int('rounds', 1);
  const rows = await readJsonl(a.need('prompts'));
  const prompts: RsPrompt[] = rows.slice(0, a.str('limit') ? a.int('limit') : undefined).map(({ rec, where }, i) => {
    let msgs = Array.isArray(rec.messages) ? toMessages(rec, where) : toMessages({ ...rec, response: '' }, where).slice(0, -1);
    if (msgs.at(-1)?.role === 'assistant') msgs = msgs.slice(0, -1);
    if (msgs.at(-1)?.role !== 'user') throw new UsageError(`${where}: a prompt must end with a user turn`);
    return { id: typeof rec.id === 'string' || typeof rec.id === 'number' ? String(rec.id) : String(i), messages: msgs };
  });
  const external = new Map<string, string[]>();
  if (a.str('external')) {
    const byPrompt = new Map(prompts.map((p) => [p.messages.at(-1)!.content, p.id]));
    for (const { rec, where } of await readJsonl(a.str('external')!)) {
      const id = rec.id !== undefined ? String(rec.id) : byPrompt.get(String(rec.prompt ?? ''));
      if (id === undefined || typeof rec.response !== 'string') throw new UsageError(`${where}: an external candidate needs "response" and an "id" or "prompt" matching a prompt`);
      external.set(id, [...(external.get(id) ?? []), rec.response]);
    }
  }
  const { train, heldout } = splitHeldout(prompts, a.num('eval-fraction', 0.1), seed);
  const rm = await RewardModel.load(a.need('reward'), nativeKernels, false);
  const metrics = new MetricsLog(path.join(runDir, 'metrics.jsonl'));
  const stageDir = path.join(runDir, 'stages', 'rs');
  // each round starts from the previous round's policy (the --adapter merges into round 1 only)
  let source: ChatModelSource = { model: a.need('model'), adapter: a.str('adapter'), tokenizer: a.str('tokenizer'), template: a.str('template') };
  for (let round = 1; round <= rounds; round++) {
    const roundDir = path.join(stageDir, `round-${round}`);
    const policyDir = path.join(roundDir, 'policy');
    const next: ChatModelSource = { ...source, model: policyDir, adapter: undefined };
    if (fs.existsSync(path.join(roundDir, 'done.json'))) {
      process.stderr.write(`rs: round ${round} already done, policy in ${policyDir}\n`);
      source = next;
      continue;
    }
    const { model, tokenizer, template } = await loadChatModel({ ...source, trainable: !a.flag('lora') });
    if (round === 1) {
      const before = greedyReward(model, rm, tokenizer, template, heldout, o);
      metrics.append({ stage: 'rs', step: 0, 'rs/heldout_greedy_reward': before });
      process.stderr.write(`rs: held-out greedy reward before round 1: ${before.toFixed(4)}\n`);
    }
    const candFile = path.join(roundDir, 'candidates.jsonl');
    let records: RoundRecord[];
    if (fs.existsSync(candFile)) records = (await readJsonl(candFile)).map((r) => r.rec as unknown as RoundRecord);
    else {
      process.stderr.write(`rs: round ${round}: sampling ${o.k} answers for ${train.length} prompts\n`);
      records = sampleAndRank(model, rm, tokenizer, template, train, external, o, round);
      await writeRound(roundDir, records, roundSummary(records));
    }
    const summary = roundSummary(records);
    const kept = records.flatMap((r) => r.kept.map((i) => [...r.prompt, { role: 'assistant' as const, content: r.candidates[i].text }]));
    if (!kept.length) throw new UsageError(`rs: round ${round}: no candidate passed the threshold ${o.threshold}; lower --threshold`);
    const adapter = loraFrom(a, model, { r: 8, alpha: 32, dropout: 0.05 });
    const savePolicy = async (out: string) => { await saveModel(out, model); await tokenizer.save(out, { template: template }); };
    const enc = encodeSft(kept, tokenizer, template, { maxSource: o.maxSource, maxTarget: o.maxTarget, trainOnPrompt: false });
    const cfg = trainerConfig(a, enc.examples.length, { lr: 2e-5, epochs: 1, batchSize: 8, warmupRatio: 0.05, weightDecay: 0.05 });
    const task = new SftTask(model, enc.examples, [], { batchSize: cfg.batchSize, recompute: a.flag('recompute'), seed: seed + round }, adapter,
      async (out) => { if (adapter) await adapter.save(out, source.model); else await savePolicy(out); });
    await runStage(`rs/round-${round}`, runDir, cfg, task, { round, ...o, kept: kept.length });
    adapter?.merge();
    await savePolicy(policyDir);
    const after = greedyReward(model, rm, tokenizer, template, heldout, o);
    metrics.append({ stage: 'rs', step: round, ...summary, 'rs/heldout_greedy_reward': after });
    await writeJsonAtomic(path.join(roundDir, 'done.json'), { round, ...summary, heldout_greedy_reward: after });
    process.stdout.write(`rs round ${round}: mean sample reward ${summary['rs/mean_reward'].toFixed(4)}, best ${summary['rs/best_reward'].toFixed(4)}, ` +
      `kept ${summary['rs/kept']} (${summary['rs/kept_external']} external); held-out greedy reward ${after.toFixed(4)}\npolicy: ${policyDir}\n`);
    source = next;
  }
  return 0;
}
