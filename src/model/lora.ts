import fs from 'node:fs';
import path from 'node:path';
import type { FloatArray, Kernels } from '../engine/kernels.js';
import { FrozenWeight } from '../engine/frozen.js';
import { convertWeight, frozenToF32 } from '../engine/native.js';
import { add, dropout, linear, scale } from '../engine/ops.js';
import { ParamStore, type ParamSpec } from '../engine/params.js';
import { Rng } from '../engine/rng.js';
import { Context, Tensor } from '../engine/tensor.js';
import { writeJsonAtomic } from '../io/atomic.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { fillStore, CheckpointError } from './checkpoint.js';
import { Llama, linearTargetNames } from './llama.js';

export interface LoraConfig {
  r: number;
  alpha: number;
  dropout: number;
  /** Module names as PEFT writes them (q_proj, ..., down_proj; W_pack for Baichuan), or PEFT's 'all-linear'. */
  targetModules: string[] | 'all-linear';
  /** Whole modules trained beside the adapter (PEFT modules_to_save), e.g. a reward model's `score`. */
  modulesToSave?: string[];
}

/** PEFT's keys for a module's adapter matrix and for a modules_to_save copy. */
const peftName = (module: string, m: 'A' | 'B') => `base_model.model.${module}.lora_${m}.weight`;
const savedName = (module: string) => `base_model.model.${module}.weight`;

/**
 * A LoRA adapter over a frozen Llama: y = x W^T + (alpha / r) * dropout(x) A^T B^T.
 * Only A and B live in the trainable store, so only they get gradients and AdamW state.
 * Saved and loaded in PEFT layout (adapter_config.json + adapter_model.safetensors).
 */
export class LoraAdapter<F extends FloatArray> {
  readonly params: ParamStore<F>;
  readonly modules: string[];
  /** The target names, 'all-linear' resolved for the model's family (as PEFT saves them). */
  readonly targets: string[];
  /** Set per micro-batch by the stage: dropout masks derive from it, so runs are reproducible. */
  stepSeed = 0;
  private merged = false;

  constructor(
    readonly model: Llama<F>,
    readonly config: LoraConfig,
  ) {
    const dims = new Map(model.params.specs.map((s) => [s.name, s.shape]));
    const available = linearTargetNames(model.config);
    this.targets = config.targetModules === 'all-linear' ? available : config.targetModules;
    const missing = this.targets.filter((t) => !available.includes(t));
    if (missing.length || !this.targets.length) {
      throw new Error(
        `LoRA target_modules ${JSON.stringify(missing.length ? missing : this.targets)}: no such linear module in this ${model.config.model_type} model (available: ${available.join(', ')}, or all-linear)`,
      );
    }
    this.modules = Llama.linearModules(model.config).filter((m) => this.targets.some((t) => m.endsWith(`.${t}`)));
    const specs: ParamSpec[] = this.modules.flatMap((m) => {
      const [out, inF] = dims.get(`${m}.weight`)!;
      return [
        { name: peftName(m, 'A'), shape: [config.r, inF] },
        { name: peftName(m, 'B'), shape: [out, config.r] },
      ];
    });
    for (const m of config.modulesToSave ?? []) {
      const shape = dims.get(`${m}.weight`);
      if (!shape) throw new Error(`LoRA modules_to_save: the model has no module ${m}`);
      specs.push({ name: savedName(m), shape });
    }
    this.params = new ParamStore(model.k, specs, true);
  }

  /** The adapter's trainable copy of a modules_to_save weight. */
  saved(module: string): Tensor<F> {
    return this.params.get(savedName(module));
  }

  get scaling(): number {
    return this.config.alpha / this.config.r;
  }

  /** PEFT's default init: A ~ kaiming-uniform(a = sqrt 5) = U(-1/sqrt(in), 1/sqrt(in)), B = 0, so training starts at the base model. */
  init(seed: number): this {
    const rng = new Rng(seed);
    for (const m of this.modules) {
      const A = this.params.get(peftName(m, 'A'));
      const bound = 1 / Math.sqrt(A.shape[1]);
      for (let i = 0; i < A.size; i++) A.data[i] = (2 * rng.next() - 1) * bound;
      this.params.get(peftName(m, 'B')).data.fill(0);
    }
    for (const m of this.config.modulesToSave ?? []) this.saved(m).data.set(this.model.params.get(`${m}.weight`).data);
    return this;
  }

  /** Routes the model's projections through the adapter. */
  attach(): this {
    if (this.merged) throw new Error('adapter is merged; unmerge it before attaching');
    const index = new Map(this.modules.map((m, i) => [m, i]));
    this.model.hook = (ctx: Context<F>, x: Tensor<F>, y: Tensor<F>, module: string) => {
      const i = index.get(module);
      if (i === undefined) return y;
      const xd = dropout(ctx, x, this.config.dropout, Rng.derive(this.stepSeed, i).nextU32());
      const u = linear(ctx, linear(ctx, xd, this.params.get(peftName(module, 'A'))), this.params.get(peftName(module, 'B')));
      return add(ctx, y, scale(ctx, u, this.scaling));
    };
    return this;
  }

  detach(): void {
    this.model.hook = null;
  }

  /**
   * W += s * B A for every target (s = +scaling to merge, -scaling to unmerge). A frozen W is
   * widened, updated and stored back in its dtype (rounded as PEFT's merge into a bf16 model
   * is), one matrix at a time; its bytes are private pages even when the checkpoint is mapped.
   */
  private fold(sign: 1 | -1): void {
    const k: Kernels<F> = this.model.k;
    for (const m of this.modules) {
      const A = this.params.get(peftName(m, 'A')),
        B = this.params.get(peftName(m, 'B'));
      const W = this.model.params.weight(`${m}.weight`);
      const w = W instanceof FrozenWeight ? k.alloc(W.size) : W.data;
      if (W instanceof FrozenWeight) w.set(frozenToF32(W));
      k.gemm(false, false, B.shape[0], A.shape[1], this.config.r, sign * this.scaling, B.data, A.data, 1, w);
      if (W instanceof FrozenWeight) {
        const f32 = toF32(w);
        convertWeight('f32', new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength), W.shape[0], W.shape[1], W.dtype, W.bytes);
      }
    }
  }

  /** Folds the adapter into the base weights (modules_to_save copies included). */
  merge(): void {
    if (this.merged) return;
    this.detach();
    this.fold(1);
    for (const m of this.config.modulesToSave ?? []) this.model.params.get(`${m}.weight`).data.set(this.saved(m).data);
    this.merged = true;
  }

  unmerge(): void {
    if (!this.merged) return;
    this.fold(-1);
    this.merged = false;
  }

  async save(dir: string, baseModel = ''): Promise<void> {
    fs.mkdirSync(dir, { recursive: true });
    await writeSafetensors(
      path.join(dir, 'adapter_model.safetensors'),
      this.params.specs.map((s) => ({
        name: s.name,
        shape: s.shape,
        data: toF32(this.params.get(s.name).data),
      })),
      { format: 'pt' },
    );
    await writeJsonAtomic(path.join(dir, 'adapter_config.json'), {
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: this.config.r,
      lora_alpha: this.config.alpha,
      lora_dropout: this.config.dropout,
      target_modules: this.targets,
      bias: 'none',
      fan_in_fan_out: false,
      inference_mode: true,
      init_lora_weights: true,
      base_model_name_or_path: baseModel,
      modules_to_save: this.config.modulesToSave ?? null,
    });
  }

  /** Reads a PEFT LoRA adapter for this model; every tensor's shape is checked. */
  static async load<F extends FloatArray>(dir: string, model: Llama<F>): Promise<LoraAdapter<F>> {
    const cfgFile = path.join(dir, 'adapter_config.json');
    if (!fs.existsSync(cfgFile)) throw new CheckpointError(`${cfgFile}: not found (is ${dir} a PEFT adapter?)`);
    const c = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
    if (c.peft_type !== 'LORA') throw new CheckpointError(`${cfgFile}: peft_type is ${c.peft_type}, only LORA is supported`);
    for (const k of ['r', 'lora_alpha'])
      if (typeof c[k] !== 'number' || c[k] <= 0) throw new CheckpointError(`${cfgFile}: ${k} must be a positive number`);
    if (c.use_dora || c.use_rslora) throw new CheckpointError(`${cfgFile}: DoRA / rsLoRA adapters are not supported`);
    const targets: string[] | 'all-linear' =
      typeof c.target_modules === 'string' && c.target_modules !== 'all-linear' ? [c.target_modules] : c.target_modules;
    const adapter = new LoraAdapter(model, {
      r: c.r,
      alpha: c.lora_alpha,
      dropout: c.lora_dropout ?? 0,
      targetModules: targets,
      modulesToSave: c.modules_to_save ?? undefined,
    });
    const file = path.join(dir, 'adapter_model.safetensors');
    fillStore(adapter.params, await readSafetensors(file), file);
    return adapter;
  }
}

function toF32(a: FloatArray): Float32Array {
  return a instanceof Float32Array ? a : Float32Array.from(a);
}
