import type { RopeFrequencies } from '../engine/ops.js';
import type { ModelConfig, RopeScaling } from './config.js';

/**
 * RoPE frequencies of every scaling HF implements for these families, computed once in double
 * precision and handed to the rope kernel (which only rotates). Formulas as transformers'
 * modeling_rope_utils.py (v5: `factor` as given, original_max_position_embeddings defaulting
 * to max_position_embeddings); llama.cpp computes the same angles for linear, yarn and llama3.
 *
 * `seqLen` matters only for dynamic NTK, whose base grows with the longest position in the
 * forward pass once it passes max_position_embeddings (as HF's dynamic update: a KV cache
 * keeps the keys rotated when they were computed).
 */
export function ropeFrequencies(c: ModelConfig, seqLen: number): RopeFrequencies {
  const dim = c.head_dim,
    half = dim / 2,
    s = c.rope_scaling;
  const plain = (base: number) => Float64Array.from({ length: half }, (_, i) => 1 / base ** ((2 * i) / dim));
  if (!s) return { invFreq: plain(c.rope_theta), scale: 1 };
  switch (s.rope_type) {
    case 'linear':
      return { invFreq: plain(c.rope_theta).map((f) => f / s.factor), scale: 1 };
    case 'dynamic': {
      const max = c.max_position_embeddings,
        len = Math.max(seqLen, max);
      return { invFreq: plain(c.rope_theta * ((s.factor * len) / max - (s.factor - 1)) ** (dim / (dim - 2))), scale: 1 };
    }
    case 'yarn':
      return yarn(c, s);
    case 'llama3':
      return { invFreq: llama3(plain(c.rope_theta), s), scale: 1 };
  }
}

/** Whether the frequencies depend on the sequence length (they must then be recomputed per forward). */
export function ropeDependsOnLength(c: ModelConfig): boolean {
  return c.rope_scaling?.rope_type === 'dynamic';
}

/** YaRN: interpolated low frequencies, extrapolated high ones, a linear ramp between; cos/sin scaled by the attention factor. */
function yarn(c: ModelConfig, s: RopeScaling): RopeFrequencies {
  const dim = c.head_dim,
    base = c.rope_theta,
    factor = s.factor;
  const original = s.original_max_position_embeddings ?? c.max_position_embeddings;
  const mscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  const scale =
    s.attention_factor ?? (s.mscale && s.mscale_all_dim ? mscale(factor, s.mscale) / mscale(factor, s.mscale_all_dim) : mscale(factor));
  // dimension index at which a frequency completes `rotations` turns over the original length
  const correction = (rotations: number) => (dim * Math.log(original / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
  const truncate = s.truncate ?? true;
  let low = correction(s.beta_fast ?? 32),
    high = correction(s.beta_slow ?? 1);
  if (truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  const invFreq = new Float64Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const extrapolation = 1 / base ** ((2 * i) / dim);
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    // ramp 0: keep the frequency (extrapolate), 1: divide it by the factor (interpolate)
    invFreq[i] = (extrapolation / factor) * ramp + extrapolation * (1 - ramp);
  }
  return { invFreq, scale };
}

/** Llama 3.1: long wavelengths divided by the factor, short ones kept, a smooth blend between. */
function llama3(invFreq: Float64Array, s: RopeScaling): Float64Array {
  const { factor } = s,
    lowF = s.low_freq_factor!,
    highF = s.high_freq_factor!,
    old = s.original_max_position_embeddings!;
  const lowWavelen = old / lowF,
    highWavelen = old / highF;
  return invFreq.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / factor;
    const smooth = (old / wavelen - lowF) / (highF - lowF);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}
