import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FloatArray, Kernels } from '../src/engine/kernels.js';
import { gemmChoice, setGemmChoice } from '../src/engine/gemm-choice.js';
import { nativeInfo, nativeKernels } from '../src/engine/native.js';
import { weightedSum } from '../src/engine/ops.js';
import { ParamStore } from '../src/engine/params.js';
import { referenceKernels } from '../src/engine/reference.js';
import { Rng } from '../src/engine/rng.js';
import { Context } from '../src/engine/tensor.js';
import { parseModelConfig, type ModelConfig } from '../src/model/config.js';
import { Llama, sequentialPositions, type ForwardOptions, type TokenBatch } from '../src/model/llama.js';
import { maxRelErr } from './numerics.js';

const tiny = (over: Record<string, unknown> = {}): ModelConfig =>
  parseModelConfig(
    {
      vocab_size: 13,
      hidden_size: 8,
      intermediate_size: 12,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      rope_theta: 10000,
      initializer_range: 0.4,
      ...over,
    },
    'test',
  );

function batchFor(c: ModelConfig, B: number, T: number, seed: number) {
  const rng = new Rng(seed);
  const ids = Int32Array.from({ length: B * T }, () => rng.int(c.vocab_size));
  // some ignored targets, as in SFT with masked prompts
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 4 === 1 ? -100 : rng.int(c.vocab_size)));
  const weights = Float64Array.from(targets, (t) => (t < 0 ? 0 : -1 / (B * T)));
  const batch: TokenBatch = { ids, pos: sequentialPositions(B, T), B, T };
  return { batch, targets, weights };
}

function loss<F extends FloatArray>(model: Llama<F>, ctx: Context<F>, d: ReturnType<typeof batchFor>, opts: ForwardOptions = {}) {
  return weightedSum(ctx, model.logprobs(ctx, d.batch, d.targets, opts), d.weights);
}

/** Loss and all parameter gradients of one forward/backward. */
function lossAndGrads<F extends FloatArray>(model: Llama<F>, d: ReturnType<typeof batchFor>, opts: ForwardOptions = {}) {
  const ctx = new Context(model.k);
  model.params.zeroGrad();
  const l = loss(model, ctx, d, opts);
  const value = l.data[0];
  ctx.backward(l);
  return { value, grad: Float64Array.from(model.params.grad!) };
}

function copyWeights<A extends FloatArray, B extends FloatArray>(from: Llama<A>, to: Llama<B>) {
  to.params.data.set(from.params.data);
}

/**
 * Every family and RoPE variant, tiny: biases (llama attention/mlp, qwen2 q/k/v), per-head q/k
 * RMSNorm and head_dim != hidden/heads (qwen3), fused W_pack (baichuan), NormHead (baichuan 2),
 * and each RoPE scaling with lengths past the scaled-from length (dynamic NTK at T=5 > 4).
 */
export const FAMILY_VARIANTS: Record<string, Record<string, unknown>> = {
  'llama, untied': {},
  'llama, tied': { tie_word_embeddings: true },
  'llama3: head_dim, attention/mlp bias, llama3 RoPE': {
    head_dim: 6,
    attention_bias: true,
    mlp_bias: true,
    rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 256 },
  },
  'llama, linear RoPE': { rope_scaling: { type: 'linear', factor: 2 } },
  'llama, dynamic NTK RoPE': { max_position_embeddings: 4, rope_scaling: { type: 'dynamic', factor: 2 } },
  'llama, yarn RoPE (mscale)': {
    max_position_embeddings: 32,
    rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 8, mscale: 1, mscale_all_dim: 0.5 },
  },
  'qwen2: q/k/v bias, tied': { model_type: 'qwen2', tie_word_embeddings: true },
  'qwen3: q/k norm, head_dim 6': { model_type: 'qwen3', head_dim: 6, attention_bias: true },
  'baichuan-7b: W_pack': { architectures: ['BaiChuanForCausalLM'], num_key_value_heads: undefined },
  'baichuan2-7b: W_pack, NormHead': { architectures: ['BaichuanForCausalLM'], num_key_value_heads: undefined },
};

/** Moves every weight off its initial value (biases off 0, norm gains off 1), so each switch shows in the output. */
function perturb<F extends FloatArray>(model: Llama<F>, seed: number, std = 0.2): Llama<F> {
  const rng = new Rng(seed);
  for (const s of model.params.specs) {
    const t = model.params.get(s.name).data;
    if (s.noDecay) for (let i = 0; i < t.length; i++) t[i] += rng.normal() * std;
  }
  return model;
}

for (const [label, over] of Object.entries(FAMILY_VARIANTS)) {
  test(`whole 2-layer model: analytic gradients match central differences (float64, ${label})`, () => {
    const c = tiny(over);
    const model = perturb(Llama.random(referenceKernels, c, 3), 4);
    const d = batchFor(c, 2, 5, 11);
    const { grad } = lossAndGrads(model, d);
    const p = model.params.data;
    const rng = new Rng(5);
    const h = 1e-5;
    const ctx = new Context(model.k, undefined, false);
    const names = new Set<string>();
    for (const [spec, off, n] of model.params.ranges()) {
      names.add(spec.name.replace(/\.\d+\./, '.N.'));
      for (let s = 0; s < 4; s++) {
        const i = off + rng.int(n);
        const orig = p[i];
        const f = (x: number) => {
          p[i] = x;
          const v = loss(model, ctx, d).data[0];
          ctx.reset();
          p[i] = orig;
          return v;
        };
        const fd = (f(orig + h) - f(orig - h)) / (2 * h);
        const err = Math.abs(fd - grad[i]) / Math.max(1e-7, Math.abs(fd) + Math.abs(grad[i]));
        assert.ok(err < 1e-5 || Math.abs(fd - grad[i]) < 1e-9, `${spec.name}[${i - off}]: analytic ${grad[i]} vs finite difference ${fd}`);
      }
    }
    // every switch of the variant has its own tensors, each checked above
    const want = Object.entries({
      qkv_bias: 'self_attn.q_proj.bias',
      o_bias: 'self_attn.o_proj.bias',
      mlp_bias: 'mlp.down_proj.bias',
      qk_norm: 'self_attn.k_norm.weight',
      fused_qkv: 'self_attn.W_pack.weight',
    });
    for (const [k, name] of want)
      assert.equal(names.has(`model.layers.N.${name}`), (c as unknown as Record<string, boolean>)[k], `${k}: ${name}`);
  });
}

test('recomputation gives the same loss and gradients as keeping activations', () => {
  const c = tiny();
  const model = Llama.random(referenceKernels, c, 4);
  const d = batchFor(c, 2, 6, 12);
  const a = lossAndGrads(model, d);
  const b = lossAndGrads(model, d, { recompute: true });
  assert.equal(a.value, b.value);
  assert.deepEqual(a.grad, b.grad);
});

// the LM head and cross-entropy a block of logits at a time (5 of 14 rows by 17 of 97 vocabulary
// entries, dividing neither) against the whole logits in one block: tied and untied heads, NormHead
for (const label of ['llama, untied', 'qwen2: q/k/v bias, tied', 'baichuan2-7b: W_pack, NormHead'])
  test(`chunked logits give the loss and every gradient of whole logits (float32, ${label})`, () => {
    const c = tiny({ vocab_size: 97, hidden_size: 16, ...FAMILY_VARIANTS[label] });
    const model = perturb(Llama.random(nativeKernels, c, 6), 7);
    const d = batchFor(c, 2, 7, 13);
    const whole = lossAndGrads(model, d, { logitsBlock: { rows: 14, cols: 97 } }),
      chunked = lossAndGrads(model, d, { logitsBlock: { rows: 5, cols: 17 } });
    // float32 sums in another order; over 8 seeds x these 3 heads the largest relative errors
    // measured were 1.2e-7 (loss) and 1.2e-6 (gradients)
    assert.ok(Math.abs(chunked.value - whole.value) <= 1e-6 * Math.abs(whole.value), `loss ${chunked.value} vs ${whole.value}`);
    assert.ok(maxRelErr(chunked.grad, whole.grad) < 1e-5, `grad rel err ${maxRelErr(chunked.grad, whole.grad)}`);
  });

function agreement(native: Kernels<Float32Array>, c: ModelConfig, B: number, T: number) {
  const ref = perturb(Llama.random(referenceKernels, c, 8), 9, 0.05);
  const nat = new Llama(c, new ParamStore(native, Llama.paramSpecs(c), true));
  copyWeights(ref, nat);
  const d = batchFor(c, B, T, 21);
  const r = lossAndGrads(ref, d),
    n = lossAndGrads(nat, d, { recompute: true });
  return { lossErr: Math.abs(r.value - n.value) / Math.abs(r.value), gradErr: maxRelErr(n.grad, r.grad) };
}

/** The model the native-against-float64 agreement tests run (GQA, 4 heads). */
const AGREEMENT_SIZES = {
  vocab_size: 97,
  hidden_size: 64,
  intermediate_size: 96,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  initializer_range: 0.05,
};

for (const [label, over] of Object.entries(FAMILY_VARIANTS)) {
  test(`native float32 model agrees with the float64 reference (${label})`, () => {
    const c = tiny({
      ...AGREEMENT_SIZES,
      ...over,
      ...('head_dim' in over && { head_dim: 24 }),
    });
    const { lossErr, gradErr } = agreement(nativeKernels, c, 2, 13);
    assert.ok(lossErr < 1e-5, `loss rel err ${lossErr}`);
    assert.ok(gradErr < 1e-3, `grad rel err ${gradErr}`);
  });
}

// every GEMM path the build has: gemm dispatches by shape class, so the model runs on either
for (const path of nativeInfo().openblas ? (['builtin', 'openblas'] as const) : (['builtin'] as const))
  test(`native float32 model agrees with the float64 reference (loss and every gradient), ${path} GEMM`, () => {
    const c = tiny(AGREEMENT_SIZES);
    setGemmChoice(Object.fromEntries(Object.keys(gemmChoice().backends).map((k) => [k, path])));
    try {
      const { lossErr, gradErr } = agreement(nativeKernels, c, 3, 17);
      assert.ok(lossErr < 1e-5, `loss rel err ${lossErr}`);
      assert.ok(gradErr < 1e-3, `grad rel err ${gradErr}`);
    } finally {
      setGemmChoice(null);
    }
  });

test('native and reference agree on a longer sequence with plain multi-head attention', () => {
  const c = tiny({
    vocab_size: 50,
    hidden_size: 32,
    intermediate_size: 40,
    num_attention_heads: 2,
    num_key_value_heads: 2,
    initializer_range: 0.05,
  });
  const { lossErr, gradErr } = agreement(nativeKernels, c, 1, 300);
  assert.ok(lossErr < 1e-5, `loss rel err ${lossErr}`);
  assert.ok(gradErr < 2e-3, `grad rel err ${gradErr}`);
});

test('a forward pass is deterministic', () => {
  const c = tiny({ vocab_size: 40, hidden_size: 32, intermediate_size: 48, num_attention_heads: 4, num_key_value_heads: 4 });
  const model = Llama.random(nativeKernels, c, 2);
  const d = batchFor(c, 2, 33, 3);
  const a = lossAndGrads(model, d),
    b = lossAndGrads(model, d);
  assert.equal(a.value, b.value);
  assert.deepEqual(a.grad, b.grad);
});
