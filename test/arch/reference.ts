/**
 * Independent float64 forward pieces for the adapter tests, written from the HF modeling semantics
 * (modeling_llama / qwen2 / qwen3 / mistral / gpt2) as plain loops. Activations are Float64Array, row-major.
 */
import { expect } from 'vitest';
import type { TensorSource, Weights } from '../../src/arch/types.js';

export type F64 = Float64Array;

/** Deterministic uniform [0, 1) generator (mulberry32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n draws of N(mean, std) rounded to float32 (Box–Muller). */
export function normal(rand: () => number, n: number, mean = 0, std = 0.02): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = mean + std * Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  return out;
}

/** A Map-backed checkpoint: Weights plus the TensorSource view of it. */
export class MemoryCheckpoint implements TensorSource {
  readonly tensors: Weights = new Map();
  private readonly shapes = new Map<string, number[]>();
  constructor(private readonly rand: () => number) {}
  add(name: string, shape: number[], mean = 0, std = 0.02): Float32Array {
    const t = normal(this.rand, shape.reduce((a, b) => a * b, 1), mean, std);
    this.tensors.set(name, t);
    this.shapes.set(name, shape);
    return t;
  }
  get(name: string): Float32Array {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`test checkpoint has no ${name}`);
    return t;
  }
  has(name: string): boolean {
    return this.tensors.has(name);
  }
  shape(name: string): number[] {
    return this.shapes.get(name)!;
  }
  readFloat32(name: string): Float32Array {
    return this.get(name);
  }  readFloat32Range(name: string, start: number, count: number): Float32Array {
    return this.get(name).slice(start, start + count);
  }

  pick(names: string[]): Weights {
    return new Map(names.map((n) => [n, this.get(n)]));
  }
}

/** y = x·Wᵀ + b with W stored [rows = out, cols = in] (nn.Linear); `conv1d` = W stored [in, out]. */
export function linear(x: F64, T: number, W: Float32Array, rows: number, cols: number, b?: Float32Array, conv1d = false): F64 {
  const y = new Float64Array(T * rows);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < rows; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < cols; i++) s += x[t * cols + i] * (conv1d ? W[i * rows + o] : W[o * cols + i]);
      y[t * rows + o] = s;
    }
  }
  return y;
}

/** RMSNorm over groups of n: x / sqrt(mean(x²) + eps) · g. */
export function rmsNorm(x: F64, n: number, g: Float32Array, eps: number): F64 {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[r * n + i] ** 2;
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) y[r * n + i] = x[r * n + i] * inv * g[i];
  }
  return y;
}

/** LayerNorm with biased variance over rows of n. */
export function layerNorm(x: F64, n: number, g: Float32Array, b: Float32Array, eps: number): F64 {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[r * n + i];
    mean /= n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (x[r * n + i] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / n + eps);
    for (let i = 0; i < n; i++) y[r * n + i] = (x[r * n + i] - mean) * inv * g[i] + b[i];
  }
  return y;
}

export function act(name: string, x: number): number {
  const tanhForm = 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  switch (name) {
    case 'silu':
    case 'swish':
      return x / (1 + Math.exp(-x));
    case 'relu':
      return Math.max(0, x);
    case 'gelu':
    case 'gelu_python':
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
    case 'gelu_fast':
      return tanhForm;
    case 'quick_gelu':
      return x / (1 + Math.exp(-1.702 * x));
    default:
      throw new Error(`no reference for ${name}`);
  }
}

/** erf to ~1e-16 relative: Maclaurin series for |x| < 3, continued fraction for erfc beyond. */
export function erf(x: number): number {
  const a = Math.abs(x);
  let r: number;
  if (a < 3) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 200; n++) {
      term *= (-a * a) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    r = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // erfc(a) = exp(-a²)/√π · 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...)))), evaluated bottom-up.
    let f = a;
    for (let k = 60; k >= 1; k--) f = a + k / 2 / f;
    r = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  }
  return x < 0 ? -r : r;
}

/**
 * In-place rotate_half RoPE on x [T, heads, D] with exact float64 angles (p / factor)·theta^(-2i/D),
 * p = t mod seq; `factor` > 1 is HF's "linear" scaling (position interpolation).
 */
export function rope(x: F64, T: number, heads: number, D: number, seq: number, theta: number, factor = 1): void {
  const inv = Array.from({ length: D / 2 }, (_, i) => Math.pow(theta, (-2 * i) / D) / factor);
  ropeInv(x, T, heads, D, seq, inv);
}

/**
 * In-place rotate_half RoPE on the first R = 2·inv.length dims of each head of x [T, heads, D] (the rest pass
 * through, HF's partial rotary): angles p·inv[i] in float64, p = t mod seq, cos and sin times `scale` (HF's
 * attention scaling of yarn / longrope).
 */
export function ropeInv(x: F64, T: number, heads: number, D: number, seq: number, inv: readonly number[], scale = 1): void {
  const half = inv.length;
  for (let t = 0; t < T; t++) {
    const p = t % seq;
    for (let h = 0; h < heads; h++) {
      const o = (t * heads + h) * D;
      for (let i = 0; i < half; i++) {
        const a = p * inv[i];
        const c = Math.cos(a) * scale;
        const s = Math.sin(a) * scale;
        const x1 = x[o + i];
        const x2 = x[o + half + i];
        x[o + i] = x1 * c - x2 * s;
        x[o + half + i] = x2 * c + x1 * s;
      }
    }
  }
}

/**
 * Causal attention per window: q [T, H, D], k/v [T, KV, D]; query head h reads kv head floor(h/(H/KV));
 * key j visible to query i iff j ≤ i and i - j < window; `bias`(h, i, j), when given, is added to the scaled
 * score (ALiBi); `cap`, when given, soft-caps the scaled score to cap·tanh(score/cap) first (Gemma 2). Returns [T, H·D].
 */
export function attention(q: F64, k: F64, v: F64, T: number, seq: number, H: number, KV: number, D: number, scale: number, window = Infinity, bias?: (h: number, i: number, j: number) => number, cap?: number): F64 {
  const out = new Float64Array(T * H * D);
  const rep = H / KV;
  const p = new Float64Array(seq);
  for (let w0 = 0; w0 < T; w0 += seq) {
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / rep);
      for (let i = 0; i < seq; i++) {
        let max = -Infinity;
        const lo = Math.max(0, i - window + 1);
        for (let j = lo; j <= i; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += q[((w0 + i) * H + h) * D + d] * k[((w0 + j) * KV + kvh) * D + d];
          const scaled = cap === undefined ? s * scale : cap * Math.tanh((s * scale) / cap);
          p[j] = scaled + (bias ? bias(h, i, j) : 0);
          max = Math.max(max, p[j]);
        }
        let z = 0;
        for (let j = lo; j <= i; j++) z += p[j] = Math.exp(p[j] - max);
        for (let d = 0; d < D; d++) {
          let s = 0;
          for (let j = lo; j <= i; j++) s += p[j] * v[((w0 + j) * KV + kvh) * D + d];
          out[((w0 + i) * H + h) * D + d] = s / z;
        }
      }
    }
  }
  return out;
}

export function add(a: F64, b: F64): F64 {
  return a.map((v, i) => v + b[i]);
}

/** max |got - exp| / max |exp|. */
export function relErr(got: ArrayLike<number>, exp: ArrayLike<number>): number {
  expect(got.length).toBe(exp.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < exp.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - exp[i]));
    scale = Math.max(scale, Math.abs(exp[i]));
  }
  return diff / scale;
}

/** Random token ids in [0, vocab). */
export function randomIds(rand: () => number, n: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(rand() * vocab));
}

/** The sizes of a tiny random decoder checkpoint (the Gemma and Phi-3 references build from them). */
export interface Dims {
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  inter: number;
  layers: number;
  vocab: number;
}
