import fs from 'node:fs';
import path from 'node:path';
import { nativeKernels } from '../engine/native.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { saveModel } from '../model/checkpoint.js';
import { loadChatModel, type ChatModelSource } from '../model/load.js';
import { RewardModel } from '../model/reward.js';
import { readJsonl, toMessages } from '../train/conversations.js';
import { MetricsLog } from '../train/metrics.js';
import { formatRound, greedyReward, roundSummary, roundTrainingSet, sampleAndRank, writeCandidates, RoundTask, type RoundRecord, type RsOptions, type RsPrompt } from '../train/rejection.js';
import { encodeSft, SftTask } from '../train/sft.js';
import { parse, UsageError } from './args.js';
import { applyThreads } from './common.js';
import { LORA_FLAGS, LORA_USAGE, MODEL_FLAGS, MODEL_USAGE, TRAINER_FLAGS, TRAINER_USAGE, loraFrom, runStage, splitHeldout, trainerConfig } from './stage.js';

const USAGE = `chimed train rs --prompts FILE --model DIR --reward RM_DIR --out RUN_DIR [options]

ChiMed-GPT's rejection sampling: per round, the policy's greedy answer and k samples per prompt,
any external candidates and the prompt's reference answer are scored by the reward model; the
best --keep samples that beat the greedy answer's reward by more than --margin (and above
--threshold) become an SFT set, with --replay of it reference answers, the policy is
fine-tuned on. A prompt whose samples do not beat its greedy answer teaches nothing that
round; the round keeps the weights whose greedy answers to the held-out prompts score best
without their reference answers' loss rising by more than --max-loss-rise, so it never
leaves the policy worse on them, nor drifted from what SFT taught. Candidates, rewards and choices of each round go
to RUN_DIR/stages/rs/round-N/candidates.jsonl, its report (kept fraction, mean reward of kept
vs greedy vs reference answers, held-out reward before and after) to summary.json, metrics.jsonl
and stdout.

  --prompts FILE       JSONL: {id?, messages} or {id?, prompt, response?, history?}; a final
                       assistant turn (or response) is the reference answer
  --limit N            use at most N prompts (default all)
  --reward DIR         reward model (from chimed train rm)
  --external FILE      JSONL {id or prompt, response}: extra candidates (references, other models)
  --k N                samples per prompt (default 4)      --keep N   kept per prompt (default 1)
  --margin X           a kept sample's reward must exceed the greedy answer's by more than X (default 0)
  --beat-reference     and exceed the reference answer's by more than X too
  --replay X           share of each round's set that replays reference answers, 0..1 (default 0.5)
  --max-loss-rise X    a judged step counts only if the held-out prompts' reference answers'
                       loss rose by at most this share of the starting policy's (default 0.02)
  --threshold X        absolute floor: minimum reward to keep     --rounds N (default 1)
  --temperature X      (default 0.8)  --top-p X (default 0.9)  --max-new-tokens N (default 128)
  --eval-fraction X    prompts held out to judge each round by their greedy answers' reward
                       (default 0.1); the round keeps its best judged weights (--eval-every
                       steps apart and the last, the starting ones included)
  --max-source N  --max-target N
${MODEL_USAGE}
${LORA_USAGE}
${TRAINER_USAGE}`;

export async function rsCommand(argv: string[]): Promise<number> {
  const a = parse(argv, {
    ...TRAINER_FLAGS, ...LORA_FLAGS, ...MODEL_FLAGS, prompts: { type: 'string' }, reward: { type: 'string' }, external: { type: 'string' },
    k: { type: 'string' }, keep: { type: 'string' }, threshold: { type: 'string' }, margin: { type: 'string' }, 'beat-reference': { type: 'boolean' }, 'reference-candidate': { type: 'boolean' }, replay: { type: 'string' }, 'max-loss-rise': { type: 'string' },
    rounds: { type: 'string' }, temperature: { type: 'string' }, 'top-p': { type: 'string' }, 'max-new-tokens': { type: 'string' }, limit: { type: 'string' },
    'eval-fraction': { type: 'string' }, 'max-source': { type: 'string' }, 'max-target': { type: 'string' },
  }, USAGE);
  if (a.help) { process.stdout.write(USAGE + '\n'); return 0; }
  applyThreads(a.str('threads') ? a.int('threads') : undefined);
  const runDir = a.need('out');
  const seed = a.num('seed', 42, Number.isInteger, 'an integer');
  const o: RsOptions = {
    k: a.int('k', 4), keep: a.int('keep', 1), threshold: a.str('threshold') !== undefined ? a.num('threshold') : null,
    margin: a.num('margin', 0, (x) => x >= 0, 'a number >= 0'), beatReference: a.flag('beat-reference'), referenceCandidate: a.flag('reference-candidate'),
    replay: a.num('replay', 0.5, (x) => x >= 0 && x < 1, 'a share in [0, 1)'), maxLossRise: a.num('max-loss-rise', 0.02, (x) => x >= 0, 'a number >= 0'),
    temperature: a.num('temperature', 0.8), topP: a.num('top-p', 0.9), maxNewTokens: a.int('max-new-tokens', 128),
    maxSource: a.int('max-source', 256), maxTarget: a.int('max-target', 256), batchSize: a.int('batch-size', 8), seed,
  };
  const rounds = a.int('rounds', 1);
  const rows = await readJsonl(a.need('prompts'));
  const prompts: RsPrompt[] = rows.slice(0, a.str('limit') ? a.int('limit') : undefined).map(({ rec, where }, i) => {
    let msgs = Array.isArray(rec.messages) ? toMessages(rec, where) : toMessages({ ...rec, response: rec.response ?? '' }, where);
    const reference = msgs.at(-1)?.role === 'assistant' ? msgs.at(-1)!.content.trim() : '';
    if (msgs.at(-1)?.role === 'assistant') msgs = msgs.slice(0, -1);
    if (msgs.at(-1)?.role !== 'user') throw new UsageError(`${where}: a prompt must end with a user turn`);
    return { id: typeof rec.id === 'string' || typeof rec.id === 'number' ? String(rec.id) : String(i), messages: msgs, ...(reference ? { reference } : {}) };
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
    const judge = () => greedyReward(model, rm, tokenizer, template, heldout, o);
    const before = judge();
    if (round === 1) metrics.append({ stage: 'rs', step: 0, 'rs/heldout_greedy_reward': before });
    process.stderr.write(`rs: round ${round}: held-out greedy reward of the starting policy ${before.toFixed(4)}\n`);
    const candFile = path.join(roundDir, 'candidates.jsonl');
    let records: RoundRecord[];
    if (fs.existsSync(candFile)) records = (await readJsonl(candFile)).map((r) => r.rec as unknown as RoundRecord);
    else {
      process.stderr.write(`rs: round ${round}: greedy answer and ${o.k} samples for each of ${train.length} prompts\n`);
      records = sampleAndRank(model, rm, tokenizer, template, train, external, o, round);
      await writeCandidates(roundDir, records);
    }
    const set = roundTrainingSet(records, train, o, round);
    const savePolicy = async (out: string) => { await saveModel(out, model); await tokenizer.save(out, { template: template }); };
    let selectedStep = 0;
    if (set.kept) {
      const adapter = loraFrom(a, model, { r: 8, alpha: 32, dropout: 0.05 });
      const enc = encodeSft(set.conversations, tokenizer, template, { maxSource: o.maxSource, maxTarget: o.maxTarget, trainOnPrompt: false });
      const cfg = trainerConfig(a, enc.examples.length, { lr: 2e-5, epochs: 1, batchSize: 8, warmupRatio: 0.05, weightDecay: 0.05 });
      const opts = { batchSize: cfg.batchSize, gradAccum: cfg.gradAccum, recompute: a.flag('recompute'), seed: seed + round };
      const saveWeights = async (out: string) => { if (adapter) await adapter.save(out, source.model); else await savePolicy(out); };
      // with validation prompts the round keeps its best judged weights; without, its last
      const references = heldout.filter((p) => p.reference).map((p) => [...p.messages, { role: 'assistant' as const, content: p.reference! }]);
      const validation = encodeSft(references, tokenizer, template, { maxSource: o.maxSource, maxTarget: o.maxTarget, trainOnPrompt: false }).examples;
      const task = heldout.length
        ? new RoundTask(model, enc.examples, validation, opts, adapter, saveWeights, judge, { reward: before, maxLossRise: o.maxLossRise })
        : new SftTask(model, enc.examples, [], opts, adapter, saveWeights);
      await runStage(`rs/round-${round}`, runDir, cfg, task, { round, ...o, kept: set.kept, replayed: set.replayed });
      selectedStep = task instanceof RoundTask ? task.restoreBest().step : cfg.maxSteps;
      adapter?.merge();
    } else process.stderr.write(`rs: round ${round}: no sample beat its prompt's bar, so the policy stays as it was\n`);
    await savePolicy(policyDir);
    const after = selectedStep ? judge() : before;
    const summary = { ...roundSummary(records), 'rs/replayed': set.replayed, 'rs/selected_step': selectedStep, 'rs/heldout_greedy_reward_before': before, 'rs/heldout_greedy_reward': after };
    metrics.append({ stage: 'rs', step: round, ...summary });
    await writeJsonAtomic(path.join(roundDir, 'summary.json'), { round, ...summary });
    await writeJsonAtomic(path.join(roundDir, 'done.json'), { round, ...summary });
    process.stdout.write(`${formatRound(round, summary, set.replayed)}\nrs round ${round}: held-out greedy reward ${before.toFixed(4)} -> ${after.toFixed(4)} ` +
      `(${selectedStep ? `weights of step ${selectedStep}` : 'the starting policy kept: no judged step improved it'})\npolicy: ${policyDir}\n`);
    source = next;
  }
  return 0;
}
