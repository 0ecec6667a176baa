/**
 * Graph building blocks shared by the family adapters. Every function adds nodes to a GraphBuilder and
 * returns the name of its result; shapes are in the doc comments, T = tokens = B*S (B windows of S tokens).
 *
 * Conventions: activations are float32; 2-D activations are [T, width] so that linear layers are one Gemm;
 * attention reshapes to [B, S, heads, headDim] with S taken from the causal mask input at run time, so one
 * session serves every window length and batch size.
 */
import { ShearsError } from '../errors.js';
import type { GraphBuilder } from '../engine/graph.js';

/**
 * y = x·Wᵀ + b for nn.Linear (W stored [out, in]) or y = x·W + b for GPT-2's Conv1D (W stored [in, out],
 * `transposed` = true). x [T, in] → y [T, out]. One Gemm: MLAS reads Wᵀ without a copy.
 */
export function linear(g: GraphBuilder, x: string, weight: string, bias?: string, transposed = false): string {
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return g.op('Gemm', inputs, transposed ? {} : { transB: 1 });
}

/** LayerNorm over the last axis (biased variance, like torch): x [..., n], gain/bias [n] → [..., n]. */
export function layerNorm(g: GraphBuilder, x: string, gain: string, bias: string | undefined, eps: number): string {
  return g.op('LayerNormalization', bias ? [x, gain, bias] : [x, gain], { axis: -1, epsilon: { float: eps } });
}

/**
 * RMSNorm over the last axis as HF computes it in float32: x / sqrt(mean(x²) + eps) · gain.
 * x [..., n], gain [n] → [..., n]. Written as Pow → ReduceMean → Add → Sqrt → Div → Mul, the pattern
 * onnxruntime fuses into one SimplifiedLayerNormalization kernel. `unitOffset`: the gain is 1 + w
 * (Gemma's RMSNorm, whose weights are stored as offsets from 1), added in float32 as HF does.
 */
export function rmsNorm(g: GraphBuilder, x: string, gain: string, eps: number, unitOffset = false): string {
  const sq = g.op('Pow', [x, g.scalar(2)]);
  const mean = g.op('ReduceMean', [sq], { axes: [-1], keepdims: 1 });
  const std = g.op('Sqrt', [g.op('Add', [mean, g.scalar(eps)])]);
  return g.op('Mul', [g.op('Div', [x, std]), unitOffset ? g.op('Add', [gain, g.scalar(1)]) : gain]);
}

/** Tanh soft-capping (Gemma 2): cap · tanh(x / cap), any shape; bounds x to (-cap, cap). */
export function softcap(g: GraphBuilder, x: string, cap: number): string {
  return g.op('Mul', [g.op('Tanh', [g.op('Div', [x, g.scalar(cap)])]), g.scalar(cap)]);
}

/** The activation functions of HF's ACT2FN that shears can build. */
export const ACTIVATIONS = ['relu', 'silu', 'swish', 'gelu', 'gelu_python', 'gelu_new', 'gelu_pytorch_tanh', 'gelu_fast', 'quick_gelu'] as const;
export type Activation = (typeof ACTIVATIONS)[number];

export function isActivation(name: unknown): name is Activation {
  return typeof name === 'string' && (ACTIVATIONS as readonly string[]).includes(name);
}

/**
 * Elementwise activation, any shape.
 * - gelu / gelu_python: exact 0.5·x·(1 + erf(x/√2))
 * - gelu_new / gelu_pytorch_tanh: tanh form 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
 * - gelu_fast: the same tanh form, written x·√(2/π)·(1 + 0.044715·x²) inside the tanh (HF FastGELU)
 * - quick_gelu: x·sigmoid(1.702·x); silu / swish: x·sigmoid(x); relu.
 */
export function activation(g: GraphBuilder, x: string, name: Activation): string {
  switch (name) {
    case 'relu':
      return g.op('Relu', [x]);
    case 'silu':
    case 'swish':
      return g.op('Mul', [x, g.op('Sigmoid', [x])]);
    case 'quick_gelu':
      return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, g.scalar(1.702)])])]);
    case 'gelu':
    case 'gelu_python': {
      const erf = g.op('Erf', [g.op('Div', [x, g.scalar(Math.SQRT2)])]);
      return g.op('Mul', [g.op('Mul', [x, g.scalar(0.5)]), g.op('Add', [erf, g.scalar(1)])]);
    }
    case 'gelu_new':
    case 'gelu_pytorch_tanh': {
      const cube = g.op('Mul', [g.op('Pow', [x, g.scalar(3)]), g.scalar(0.044715)]);
      const inner = g.op('Mul', [g.op('Add', [x, cube]), g.scalar(Math.sqrt(2 / Math.PI))]);
      return g.op('Mul', [g.op('Mul', [x, g.scalar(0.5)]), g.op('Add', [g.op('Tanh', [inner]), g.scalar(1)])]);
    }
    case 'gelu_fast': {
      const sq = g.op('Mul', [g.op('Mul', [x, x]), g.scalar(0.044715)]);
      const inner = g.op('Mul', [g.op('Mul', [x, g.scalar(0.7978845608)]), g.op('Add', [sq, g.scalar(1)])]);
      return g.op('Mul', [g.op('Mul', [x, g.scalar(0.5)]), g.op('Add', [g.op('Tanh', [inner]), g.scalar(1)])]);
    }
  }
}

/** Graph inputs that attention needs; declare once per graph with `attentionInputs`. */
export interface AttentionInputs {
  /** float32 [S, S] additive causal mask (0 where allowed, -inf elsewhere); feed `causalMask(S)`. */
  mask: string;
  /** int64 [1] = S, read from the mask's shape (for reshapes). */
  seq: string;
  /** float32 [S, rotaryDim] (HF layout: the half-table repeated twice); feed a Rope's `tables(S)` (rope.ts). Absent without RoPE. */
  cos?: string;
  sin?: string;
  /** Query chunks of `causalAttention` in this graph (1: the whole S × S at once); see `attentionChunks`. */
  chunks: number;
}

/**
 * Declares the inputs `mask` [S,S] and, when rotaryDim is given, `cos`/`sin` [S, rotaryDim]. `chunks`: how
 * many query chunks the graph's attention computes apart (`attentionChunks(heads, S)` for the S it serves).
 */
export function attentionInputs(g: GraphBuilder, rotaryDim?: number, chunks = 1): AttentionInputs {
  const mask = g.input('mask', 'float32', ['seq', 'seq']);
  const seq = g.op('Shape', [mask], { start: 0, end: 1 });
  if (rotaryDim === undefined) return { mask, seq, chunks };
  return {
    mask,
    seq,
    cos: g.input('cos', 'float32', ['seq', rotaryDim]),
    sin: g.input('sin', 'float32', ['seq', rotaryDim]),
    chunks,
  };
}

/**
 * Attention scores of one window per query chunk, at most this many bytes ([heads, S/chunks, S] float32).
 * Whole-window scores at long windows (32 heads × 2048² = 512 MiB) were a quarter of a TinyLlama-shaped
 * block's time: half of them masked away, and the mask add and softmax streaming them through memory.
 */
let chunkScoreBytes = 32 * 2 ** 20;
/** Most query chunks per graph: each chunk is ~8 graph nodes, and the causal saving is (chunks-1)/(2·chunks). */
const MAX_CHUNKS = 32;

/**
 * How many query chunks `causalAttention` should use for `heads` heads at windows of `seq` tokens: the
 * smallest power of two that keeps one window's chunk scores within the budget (1 at short windows, where
 * the score tensor is small and per-node overhead would outweigh the saving). Part of a block's session key.
 */
export function attentionChunks(heads: number, seq: number): number {
  let n = 1;
  while (n < MAX_CHUNKS && heads * Math.ceil(seq / n) * seq * 4 > chunkScoreBytes) n *= 2;
  return n;
}

/** Changes the per-chunk score budget (tests and benchmarks: Infinity turns chunking off); returns the previous value. */
export function setChunkScoreBytes(bytes: number): number {
  const old = chunkScoreBytes;
  chunkScoreBytes = bytes;
  return old;
}

/** [T, heads*headDim] → [B, S, heads, headDim] (B = T/S, worked out by Reshape). */
export function splitHeads(g: GraphBuilder, x: string, seq: string, heads: number, headDim: number): string {
  const shape = g.op('Concat', [g.ints([-1]), seq, g.ints([heads, headDim])], { axis: 0 });
  return g.op('Reshape', [x, shape]);
}

/**
 * HF rotary embedding (rotate_half): on the first `rotaryDim` dims of each head,
 * y = x·cos + rotate_half(x)·sin with rotate_half([x1, x2]) = [-x2, x1] (halves of the rotary part);
 * dims rotaryDim..headDim pass through (GPT-NeoX partial rotary). x [B, S, H, headDim], cos/sin [S, rotaryDim].
 */
export function rotary(g: GraphBuilder, x: string, cos: string, sin: string, headDim: number, rotaryDim: number): string {
  if (rotaryDim % 2 !== 0 || rotaryDim <= 0 || rotaryDim > headDim) {
    throw new ShearsError(`rotary dimension ${rotaryDim} must be even and within the head dimension ${headDim}`);
  }
  const c = g.op('Unsqueeze', [cos, g.ints([1])]); // [S, 1, R] broadcasts over B and heads
  const s = g.op('Unsqueeze', [sin, g.ints([1])]);
  let rot = x;
  let pass: string | undefined;
  if (rotaryDim < headDim) [rot, pass] = g.opN('Split', [x, g.ints([rotaryDim, headDim - rotaryDim])], 2, { axis: -1 });
  const half = rotaryDim / 2;
  const [x1, x2] = g.opN('Split', [rot, g.ints([half, half])], 2, { axis: -1 });
  const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
  const y = g.op('Add', [g.op('Mul', [rot, c]), g.op('Mul', [rotated, s])]);
  return pass ? g.op('Concat', [y, pass], { axis: -1 }) : y;
}

export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Score scale; default 1/sqrt(headDim). Applied to q before q·kᵀ (cheaper than scaling the scores). */
  scale?: number;
  /**
   * An additive per-head bias on each key, [numHeads, S], added to the scaled scores before the softmax
   * (ALiBi as HF builds it: slope_h · j; feed `alibiKeyBias`). Absent: the scores get the mask alone.
   */
  keyBias?: string;
  /** Tanh soft-capping of the scaled scores before the mask (Gemma 2's attn_logit_softcapping); absent: none. */
  softcap?: number;
}

/**
 * Causal softmax attention with grouped K/V: query head h reads kv head floor(h / (numHeads/numKvHeads)),
 * like HF repeat_kv, without materialising repeated K/V (q is viewed as [B, KV, rep, S, D]).
 * q [B, S, H, D], k/v [B, S, KV, D], att.mask [S, S] additive → [T, H*D] (heads concatenated, HF order).
 *
 * With att.chunks = n > 1 the queries go in n chunks of C = ceil(S/n) rows, and chunk c reads only the keys
 * before its end, min((c+1)·C, S): the keys after it are masked for every query in it, so the skipped part
 * of each softmax row is exp(-inf) = 0 and the result is the same attention (sums of the same non-zero terms,
 * possibly rounded in another order). About (n+1)/(2n) of the S × S scores are computed, and the live score
 * tensor is B·H·C·S floats instead of B·H·S². S is read at run time: empty trailing chunks (S < n) are fine.
 */
export function causalAttention(g: GraphBuilder, q: string, k: string, v: string, att: AttentionInputs, a: AttentionShape): string {
  const { numHeads: H, numKvHeads: KV, headDim: D } = a;
  if (H % KV !== 0) throw new ShearsError(`attention: ${H} query heads are not a multiple of ${KV} key/value heads`);
  const rep = H / KV;
  const scale = a.scale ?? 1 / Math.sqrt(D);
  const qs = g.op('Mul', [q, g.scalar(scale)]);
  const q5 = g.op('Transpose', [g.op('Reshape', [qs, g.ints([0, 0, KV, rep, D])])], { perm: [0, 2, 3, 1, 4] }); // [B,KV,rep,S,D]
  const kT = g.op('Unsqueeze', [g.op('Transpose', [k], { perm: [0, 2, 3, 1] }), g.ints([2])]); // [B,KV,1,D,S]
  const v5 = g.op('Unsqueeze', [g.op('Transpose', [v], { perm: [0, 2, 1, 3] }), g.ints([2])]); // [B,KV,1,S,D]
  const keyBias = a.keyBias ? g.op('Reshape', [a.keyBias, g.ints([KV, rep, 1, -1])]) : undefined; // [KV,rep,1,S]
  // Scores of queries q5c against keys kTc/v5c with additive mask `mask` (and key bias): softmax(q·kᵀ + bias)·v.
  const attend = (q5c: string, kTc: string, v5c: string, mask: string, bias: string | undefined): string => {
    // A key bias joins the mask first ([KV,rep,C,E], no batch axis), so the scores still take a single Add.
    const add = bias ? g.op('Add', [mask, bias]) : mask;
    const raw = g.op('MatMul', [q5c, kTc]);
    const scores = g.op('Add', [a.softcap === undefined ? raw : softcap(g, raw, a.softcap), add]); // [B,KV,rep,C,E]
    return g.op('MatMul', [g.op('Softmax', [scores], { axis: -1 }), v5c]); // [B,KV,rep,C,D]
  };
  let ctx5: string;
  if (att.chunks <= 1) {
    ctx5 = attend(q5, kT, v5, att.mask, keyBias);
  } else {
    const n = att.chunks;
    const size = g.op('Div', [g.op('Add', [att.seq, g.ints([n - 1])]), g.ints([n])]); // C = ceil(S/n), int64 [1]
    const zero = g.ints([0]);
    const parts: string[] = [];
    for (let c = 0; c < n; c++) {
      const from = c === 0 ? zero : g.op('Mul', [size, g.ints([c])]);
      const to = g.op('Mul', [size, g.ints([c + 1])]); // Slice clamps ends (and starts) past S
      const q5c = g.op('Slice', [q5, from, to, g.ints([3])]);
      const kTc = g.op('Slice', [kT, zero, to, g.ints([4])]);
      const v5c = g.op('Slice', [v5, zero, to, g.ints([3])]);
      const maskc = g.op('Slice', [att.mask, g.op('Concat', [from, zero], { axis: 0 }), g.op('Concat', [to, to], { axis: 0 }), g.ints([0, 1])]);
      const biasc = keyBias ? g.op('Slice', [keyBias, zero, to, g.ints([3])]) : undefined;
      parts.push(attend(q5c, kTc, v5c, maskc, biasc));
    }
    ctx5 = g.op('Concat', parts, { axis: 3 });
  }
  const ctx = g.op('Transpose', [ctx5], { perm: [0, 3, 1, 2, 4] }); // [B,S,KV,rep,D]
  return g.op('Reshape', [ctx, g.ints([-1, H * D])]);
}

// ---- Feeds for the inputs declared by attentionInputs (computed in JS, cached per shape) ----

const masks = new Map<string, Float32Array>();
const alibis = new Map<string, Float32Array>();

/**
 * Additive causal mask [S, S]: 0 where key j may be seen by query i (j ≤ i, and i - j < slidingWindow
 * when a window is given, HF's sliding-window rule), -Infinity elsewhere. Cached; do not modify.
 */
export function causalMask(seq: number, slidingWindow?: number): Float32Array {
  const w = slidingWindow !== undefined && slidingWindow < seq ? slidingWindow : seq;
  const key = `${seq}:${w}`;
  let m = masks.get(key);
  if (!m) {
    m = new Float32Array(seq * seq).fill(-Infinity);
    for (let i = 0; i < seq; i++) for (let j = Math.max(0, i - w + 1); j <= i; j++) m[i * seq + j] = 0;
    masks.set(key, m);
  }
  return m;
}

/**
 * ALiBi slopes as HF's build_alibi_tensor makes them (BLOOM; Press et al. 2022): for the largest power of
 * two p ≤ heads, slope_h = b^(h+1) with b = 2^(-8/p); heads beyond p take the odd powers 1, 3, 5, … of
 * 2^(-4/p) (the slopes of 2p heads that the first p skip). Rounded to float32 step by step as torch does.
 */
export function alibiSlopes(heads: number): Float32Array {
  const f = Math.fround;
  const p = 2 ** Math.floor(Math.log2(heads));
  const slopes = new Float32Array(heads);
  const base = f(2 ** (-8 / p));
  for (let h = 0; h < p; h++) slopes[h] = f(Math.pow(base, h + 1));
  const extra = f(2 ** (-4 / p));
  for (let h = p; h < heads; h++) slopes[h] = f(Math.pow(extra, 2 * (h - p) + 1));
  return slopes;
}

/**
 * The ALiBi key bias [heads, S] for `causalAttention`'s keyBias: slope_h · j for key position j, HF's form
 * (softmax ignores a per-query constant, so this equals the paper's slope_h · (j - i)). Cached; do not modify.
 */
export function alibiKeyBias(seq: number, heads: number): Float32Array {
  const key = `${seq}:${heads}`;
  let b = alibis.get(key);
  if (!b) {
    const slopes = alibiSlopes(heads);
    b = new Float32Array(heads * seq);
    for (let h = 0; h < heads; h++) for (let j = 0; j < seq; j++) b[h * seq + j] = slopes[h] * j;
    alibis.set(key, b);
  }
  return b;
}
