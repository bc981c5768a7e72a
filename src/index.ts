export type { Kernels, FloatArray, AttentionDims } from './engine/kernels.js';
