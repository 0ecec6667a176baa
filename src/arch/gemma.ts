/**
 * Gemma (`gemma`), Gemma 2 (`gemma2`) and Gemma 3 text (`gemma3_text`), HF semantics (modeling_gemma.py,
 * modeling_gemma2.py, modeling_gemma3.py). What differs from the Llama block:
 * - every RMSNorm multiplies by (1 + w): the stored weights are offsets from 1;
 * - the MLP is GeGLU, down(gelu_tanh(gate(x)) · up(x)); the hidden states entering block 0 are the embedding
 *   rows times √hidden_size, that factor rounded to the model's dtype first (HF builds it as a tensor of the
 *   embedding's dtype: 55.4256… becomes 55.5 in bfloat16), and the LM head is tied to the embedding;
 * - Gemma 2 and 3 norm both sides of each sub-layer:
 *     h   = x + post_attention_layernorm(o_proj(attn(input_layernorm(x))))
 *     out = h + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h)))
 *   (Gemma 1's post_attention_layernorm is the pre-MLP norm, as in Llama), scores are scaled by
 *   query_pre_attn_scalar^-½ instead of head_dim^-½, and layers alternate between sliding-window and full
 *   attention (layer_types, or the older implicit patterns: Gemma 2 even layers sliding; Gemma 3 every
 *   sliding_window_pattern-th layer full);
 * - Gemma 2 soft-caps attention scores (before the mask) and the final logits, cap · tanh(x / cap);
 *   Gemma 3 only when its config asks;
 * - Gemma 3 normalises q and k per head ((1 + w) RMSNorm over head_dim) before RoPE, and its sliding layers
 *   use their own RoPE base (rope_local_base_freq / rope_parameters.sliding_attention), without scaling.
 *
 * The activation: hidden_activation when config.json gives it, else gelu_pytorch_tanh, as HF's Gemma code
 * has resolved it since transformers#29402; `hidden_act` is not read, because the first Gemma configs on the
 * Hub say "gelu" there although the models were trained with the tanh approximation (the warning HF printed
 * for them said so).
 */
import { GraphBuilder } from '../engine/graph.js';
import { tensor, type Feeds } from '../engine/session.js';
import { preview } from '../errors.js';
import { f32BitsToBf16Bits, f32BitsToF16Bits, bf16BitsToF32Bits, f16BitsToF32Bits } from '../io/dtype.js';
import { ConfigReader, readHeads, readRope } from './config.js';
import { activation, attentionInputs, causalAttention, causalMask, isActivation, linear, rmsNorm, rotary, ropeTables, splitHeads, ACTIVATIONS, type Activation } from './ops.js';
import { HeadedArchitecture, finishBlock, linearLayers, embedRows, runBlockGraph, tokensOf, weightFeed, type BuiltBlock, type HeadGraph } from './runtime.js';
import type { Architecture, BlockResult, LinearLayer, ModelSpec, Weights } from './types.js';

export const GEMMA_MODEL_TYPES = ['gemma', 'gemma2', 'gemma3_text'] as const;
type GemmaType = (typeof GEMMA_MODEL_TYPES)[number];

/** Each config class's defaults for the fields shears reads (GemmaConfig, Gemma2Config, Gemma3TextConfig). */
const DEFAULTS: Record<GemmaType, { vocab: number; hidden: number; inter: number; layers: number; heads: number; kvHeads: number; maxPositions: number; theta: number; attnCap?: number; finalCap?: number }> = {
  gemma: { vocab: 256000, hidden: 3072, inter: 24576, layers: 28, heads: 16, kvHeads: 16, maxPositions: 8192, theta: 10000 },
  gemma2: { vocab: 256000, hidden: 2304, inter: 9216, layers: 26, heads: 8, kvHeads: 4, maxPositions: 8192, theta: 10000, attnCap: 50, finalCap: 30 },
  gemma3_text: { vocab: 262208, hidden: 2304, inter: 9216, layers: 26, heads: 8, kvHeads: 4, maxPositions: 131072, theta: 1e6 },
};

/** The RoPE of one layer: base and the linear position-interpolation factor (1 = none). */
interface LayerRope {
  theta: number;
  factor: number;
}

interface GemmaOptions {
  eps: number;
  act: Activation;
  /** Attention score scale: head_dim^-½ (Gemma 1) or query_pre_attn_scalar^-½. */
  scale: number;
  attnBias: boolean;
  /** Gemma 2 / 3: norms after attention and around the MLP. */
  sandwich: boolean;
  qkNorm: boolean;
  attnCap?: number;
  finalCap?: number;
  /** √hidden_size rounded to the model's dtype. */
  embedScale: number;
  windows: (layer: number) => number | undefined;
  rope: (layer: number) => LayerRope;
}

export function createGemma(config: Record<string, unknown>, configPath: string): Architecture {
  const c = new ConfigReader(config, configPath);
  const modelType = c.str('model_type') as GemmaType;
  if (!(GEMMA_MODEL_TYPES as readonly string[]).includes(modelType)) throw c.error('model_type', `"${modelType}" is not a Gemma model`);
  const d = DEFAULTS[modelType];
  if (modelType === 'gemma3_text' && c.bool('use_bidirectional_attention', false)) {
    throw c.error('use_bidirectional_attention', 'is true: a bidirectional (embedding) model is not a causal language model');
  }
  const hiddenSize = c.int('hidden_size', d.hidden);
  const numLayers = c.int('num_hidden_layers', d.layers);
  // Missing head counts take the class defaults (which are not "kv heads = heads" here).
  const withHeads = new ConfigReader({ num_attention_heads: d.heads, num_key_value_heads: d.kvHeads, ...config }, configPath);
  const heads = readHeads(withHeads, hiddenSize, { heads: 'num_attention_heads', kvHeads: 'num_key_value_heads', headDim: 'head_dim' });
  // Every Gemma config class defaults head_dim to 256, not hidden / heads.
  if (!c.has('head_dim')) heads.headDim = 256;
  const act = c.str('hidden_activation', 'gelu_pytorch_tanh');
  if (!isActivation(act)) throw c.error('hidden_activation', `"${act}" is not supported (supported: ${ACTIVATIONS.join(', ')})`);
  const dtype = c.dtype();
  const v1 = modelType === 'gemma';
  const opts: GemmaOptions = {
    eps: c.positive('rms_norm_eps', 1e-6),
    act,
    scale: 1 / Math.sqrt(v1 ? heads.headDim : c.positive('query_pre_attn_scalar', 256)),
    attnBias: c.bool('attention_bias', false),
    sandwich: !v1,
    qkNorm: modelType === 'gemma3_text',
    attnCap: v1 ? undefined : optionalCap(c, 'attn_logit_softcapping', d.attnCap),
    finalCap: v1 ? undefined : optionalCap(c, 'final_logit_softcapping', d.finalCap),
    embedScale: roundTo(dtype, Math.sqrt(hiddenSize)),
    windows: v1 ? () => undefined : slidingWindows(c, modelType, numLayers),
    rope: modelType === 'gemma3_text' ? gemma3Rope(c, modelType, numLayers) : constantRope(readRope(c, d.theta).theta),
  };
  const spec: ModelSpec = {
    family: 'gemma',
    modelType,
    hiddenSize,
    numLayers,
    ...heads,
    intermediateSize: c.int('intermediate_size', d.inter),
    vocabSize: c.int('vocab_size', d.vocab),
    maxPositions: c.int('max_position_embeddings', d.maxPositions),
    tieWordEmbeddings: c.bool('tie_word_embeddings', true),
    bosTokenId: c.has('bos_token_id') ? c.tokenId('bos_token_id') : 2,
    eosTokenId: c.has('eos_token_id') ? c.tokenId('eos_token_id') : 1,
    dtype,
  };
  return new GemmaArchitecture(spec, opts);
}

/** A soft-capping field: absent = the class default, null = off, else a positive number. */
function optionalCap(c: ConfigReader, field: string, fallback: number | undefined): number | undefined {
  if (!(field in c.config)) return fallback;
  return c.config[field] === null ? undefined : c.positive(field);
}

/** x rounded to the model's dtype, as torch.tensor(x, dtype=…) stores it (via float32). */
function roundTo(dtype: string | undefined, x: number): number {
  const bits = new Uint32Array(new Float32Array([x]).buffer)[0];
  if (dtype === 'bfloat16') return new Float32Array(new Uint32Array([bf16BitsToF32Bits(f32BitsToBf16Bits(bits))]).buffer)[0];
  if (dtype === 'float16') return new Float32Array(new Uint32Array([f16BitsToF32Bits(f32BitsToF16Bits(bits))]).buffer)[0];
  return Math.fround(x);
}

/**
 * Sliding-window size per layer. layer_types (written by newer transformers) wins; without it, Gemma 2 slides
 * on even layers and Gemma 3 on every layer but each sliding_window_pattern-th (default 6). A null
 * sliding_window means no window at all.
 */
function slidingWindows(c: ConfigReader, modelType: GemmaType, layers: number): (layer: number) => number | undefined {
  const window = 'sliding_window' in c.config ? (c.config.sliding_window === null ? undefined : c.int('sliding_window')) : 4096;
  const sliding = layerIsSliding(c, modelType, layers);
  return (i) => (sliding(i) ? window : undefined);
}

function layerIsSliding(c: ConfigReader, modelType: GemmaType, layers: number): (layer: number) => boolean {
  const types = c.strings('layer_types');
  if (types) {
    if (types.length !== layers) throw c.error('layer_types', `has ${types.length} entries for ${layers} layers`);
    const bad = types.find((t) => t !== 'sliding_attention' && t !== 'full_attention');
    if (bad !== undefined) throw c.error('layer_types', `has ${preview(bad)} (supported: sliding_attention, full_attention)`);
    return (i) => types[i] === 'sliding_attention';
  }
  if (modelType === 'gemma2') return (i) => i % 2 === 0;
  const pattern = c.int('sliding_window_pattern', 6);
  return (i) => (i + 1) % pattern !== 0;
}

function constantRope(theta: number): (layer: number) => LayerRope {
  return () => ({ theta, factor: 1 });
}

/**
 * Gemma 3's two RoPEs: full-attention layers use rope_theta with rope_scaling (transformers 4) or
 * rope_parameters.full_attention (5); sliding layers rope_local_base_freq (4) or
 * rope_parameters.sliding_attention (5), never scaled.
 */
function gemma3Rope(c: ConfigReader, modelType: GemmaType, layers: number): (layer: number) => LayerRope {
  const sliding = layerIsSliding(c, modelType, layers);
  const params = c.config.rope_parameters;
  let global: LayerRope;
  let local: LayerRope;
  if (params !== undefined && params !== null && typeof params === 'object' && !Array.isArray(params) && ('full_attention' in params || 'sliding_attention' in params)) {
    const p = params as Record<string, unknown>;
    global = ropeEntry(c, 'rope_parameters.full_attention', p.full_attention, DEFAULTS.gemma3_text.theta);
    local = ropeEntry(c, 'rope_parameters.sliding_attention', p.sliding_attention, 10000);
  } else {
    global = { theta: readRope(stripScaling(c), DEFAULTS.gemma3_text.theta).theta, factor: scalingFactor(c, 'rope_scaling', c.config.rope_scaling) };
    local = { theta: c.positive('rope_local_base_freq', 10000), factor: 1 };
  }
  return (i) => (sliding(i) ? local : global);
}

/** One rope_parameters entry: {rope_type, rope_theta, factor}. */
function ropeEntry(c: ConfigReader, label: string, entry: unknown, defaultTheta: number): LayerRope {
  if (entry === undefined || entry === null) return { theta: defaultTheta, factor: 1 };
  if (typeof entry !== 'object' || Array.isArray(entry)) throw c.error(label, `must be an object, got ${preview(entry)}`);
  const e = entry as Record<string, unknown>;
  const theta = e.rope_theta === undefined ? defaultTheta : e.rope_theta;
  if (typeof theta !== 'number' || !(theta > 0) || !Number.isFinite(theta)) throw c.error(`${label}.rope_theta`, `must be a positive number, got ${preview(theta)}`);
  return { theta, factor: scalingFactor(c, label, e) };
}

/** The linear factor of a rope_scaling / rope_parameters object: 1 for "default", its factor for "linear". */
function scalingFactor(c: ConfigReader, label: string, s: unknown): number {
  if (s === undefined || s === null) return 1;
  if (typeof s !== 'object' || Array.isArray(s)) throw c.error(label, `must be an object, got ${preview(s)}`);
  const o = s as Record<string, unknown>;
  const type = o.rope_type ?? o.type ?? 'default';
  if (type === 'default') return 1;
  if (type !== 'linear') throw c.error(label, `${preview(s)} is not supported (Gemma 3: "default" or "linear" RoPE)`);
  if (typeof o.factor !== 'number' || !(o.factor >= 1) || !Number.isFinite(o.factor)) throw c.error(`${label}.factor`, `must be a number ≥ 1, got ${preview(o.factor)}`);
  return o.factor;
}

/** The config without rope_scaling, for reading rope_theta alone (the scaling is read apart). */
function stripScaling(c: ConfigReader): ConfigReader {
  const { rope_scaling: _, ...rest } = c.config;
  return new ConfigReader(rest, c.path);
}

/**
 * RoPE tables with linear position interpolation as HF computes it: the float32 inverse frequencies
 * divided by the factor (in float32), then the default tables' arithmetic.
 */
function linearRopeTables(seq: number, D: number, r: LayerRope): { cos: Float32Array; sin: Float32Array } {
  if (r.factor === 1) return ropeTables(seq, D, r.theta);
  const f = Math.fround;
  const half = D / 2;
  const cos = new Float32Array(seq * D);
  const sin = new Float32Array(seq * D);
  for (let i = 0; i < half; i++) {
    const inv = f(f(1 / f(Math.pow(r.theta, f((2 * i) / D)))) / f(r.factor));
    for (let p = 0; p < seq; p++) {
      const angle = f(p * inv);
      cos[p * D + i] = cos[p * D + half + i] = Math.cos(angle);
      sin[p * D + i] = sin[p * D + half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

const SHORT: Record<string, string> = {
  'self_attn.q_proj': 'q',
  'self_attn.k_proj': 'k',
  'self_attn.v_proj': 'v',
  'self_attn.o_proj': 'o',
  'mlp.gate_proj': 'gate',
  'mlp.up_proj': 'up',
  'mlp.down_proj': 'down',
};

class GemmaArchitecture extends HeadedArchitecture implements Architecture {
  private readonly key: string;
  protected readonly head: HeadGraph;

  constructor(
    readonly spec: ModelSpec,
    private readonly o: GemmaOptions,
  ) {
    super();
    const s = spec;
    this.key = `gemma|h${s.hiddenSize}|i${s.intermediateSize}|H${s.numHeads}|kv${s.numKvHeads}|d${s.headDim}|eps${o.eps}|${o.act}|s${o.scale}|b${+o.attnBias}|sw${+o.sandwich}|qk${+o.qkNorm}|cap${o.attnCap}`;
    this.head = {
      key: `gemma-head|h${s.hiddenSize}|v${s.vocabSize}|eps${o.eps}|cap${o.finalCap}`,
      hidden: s.hiddenSize,
      vocab: s.vocabSize,
      headWeight: s.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight',
      final: (g, x) => rmsNorm(g, x, g.input('norm_w', 'float32', [s.hiddenSize]), o.eps, true),
      finalFeeds: (w) => ({ norm_w: weightFeed(w, 'model.norm.weight', [s.hiddenSize]) }),
      logitCap: o.finalCap,
    };
  }

  private p(i: number): string {
    if (!Number.isInteger(i) || i < 0 || i >= this.spec.numLayers) throw new Error(`block ${i} is outside 0..${this.spec.numLayers - 1}`);
    return `model.layers.${i}.`;
  }

  linears(i: number): LinearLayer[] {
    const { hiddenSize: h, intermediateSize: m, numHeads, numKvHeads, headDim } = this.spec;
    return linearLayers(this.p(i), false, [
      ['self_attn.q_proj', numHeads * headDim, h, 'attn_in', 0],
      ['self_attn.k_proj', numKvHeads * headDim, h, 'attn_in', 0],
      ['self_attn.v_proj', numKvHeads * headDim, h, 'attn_in', 0],
      ['self_attn.o_proj', h, numHeads * headDim, 'o_in', 1],
      ['mlp.gate_proj', m, h, 'mlp_in', 2],
      ['mlp.up_proj', m, h, 'mlp_in', 2],
      ['mlp.down_proj', h, m, 'down_in', 3],
    ]);
  }

  /** The block's norms: graph input name → tensor name inside the block, with its width. */
  private norms(): [string, string, 'h' | 'd'][] {
    const n: [string, string, 'h' | 'd'][] = [
      ['ln1', 'input_layernorm', 'h'],
      ['ln2', 'post_attention_layernorm', 'h'],
    ];
    if (this.o.sandwich) n.push(['ln3', 'pre_feedforward_layernorm', 'h'], ['ln4', 'post_feedforward_layernorm', 'h']);
    if (this.o.qkNorm) n.push(['q_norm', 'self_attn.q_norm', 'd'], ['k_norm', 'self_attn.k_norm', 'd']);
    return n;
  }

  blockTensors(i: number): string[] {
    const p = this.p(i);
    const names = this.norms().map(([, t]) => `${p}${t}.weight`);
    for (const l of this.linears(i)) {
      names.push(l.tensor);
      if (this.o.attnBias && l.name.startsWith('self_attn.')) names.push(`${p}${l.name}.bias`);
    }
    return names;
  }

  embedTensors(): string[] {
    return ['model.embed_tokens.weight'];
  }

  headTensors(): string[] {
    return ['model.norm.weight', this.head.headWeight];
  }

  /** embed_tokens[id] · √hidden_size (the factor in the model's dtype). */
  async embed(w: Weights, ids: Int32Array, seq: number): Promise<Float32Array> {
    const x = embedRows(w, 'model.embed_tokens.weight', this.spec.hiddenSize, ids, seq);
    for (let j = 0; j < x.length; j++) x[j] *= this.o.embedScale;
    return x;
  }

  private build(capture: boolean): BuiltBlock {
    const { hiddenSize: h, intermediateSize: m, numHeads: H, numKvHeads: KV, headDim: D } = this.spec;
    const o = this.o;
    const g = new GraphBuilder('gemma_block');
    const x = g.input('x', 'float32', ['tokens', h]);
    const att = attentionInputs(g, D);
    const weight = (name: string, dims: number[]) => g.input(name, 'float32', dims);
    const norm = (input: string, name: string, width: number) => rmsNorm(g, input, weight(name, [width]), o.eps, true);
    const lin = (input: string, name: string, rows: number, cols: number, bias: boolean) =>
      linear(g, input, weight(`${name}.w`, [rows, cols]), bias ? weight(`${name}.b`, [rows]) : undefined);

    const attnIn = norm(x, 'ln1', h);
    let q = splitHeads(g, lin(attnIn, 'q', H * D, h, o.attnBias), att.seq, H, D);
    let k = splitHeads(g, lin(attnIn, 'k', KV * D, h, o.attnBias), att.seq, KV, D);
    const v = splitHeads(g, lin(attnIn, 'v', KV * D, h, o.attnBias), att.seq, KV, D);
    if (o.qkNorm) {
      q = norm(q, 'q_norm', D);
      k = norm(k, 'k_norm', D);
    }
    q = rotary(g, q, att.cos!, att.sin!, D, D);
    k = rotary(g, k, att.cos!, att.sin!, D, D);
    const oIn = causalAttention(g, q, k, v, att, { numHeads: H, numKvHeads: KV, headDim: D, scale: o.scale, softcap: o.attnCap });
    const attnOut = lin(oIn, 'o', h, H * D, o.attnBias);
    const hMid = g.op('Add', [x, o.sandwich ? norm(attnOut, 'ln2', h) : attnOut]);
    const mlpIn = norm(hMid, o.sandwich ? 'ln3' : 'ln2', h);
    const downIn = g.op('Mul', [activation(g, lin(mlpIn, 'gate', m, h, false), o.act), lin(mlpIn, 'up', m, h, false)]);
    const mlpOut = lin(downIn, 'down', h, m, false);
    const out = g.op('Add', [hMid, o.sandwich ? norm(mlpOut, 'ln4', h) : mlpOut]);

    return finishBlock(g, x, out, h, capture, { attn_in: [attnIn, h], o_in: [oIn, H * D], mlp_in: [mlpIn, h], down_in: [downIn, m] });
  }

  async runBlock(i: number, w: Weights, x: Float32Array, seq: number, capture: boolean, out?: Float32Array | null): Promise<BlockResult> {
    const { hiddenSize: h, intermediateSize: m, numHeads: H, headDim: D } = this.spec;
    const tokens = tokensOf(x, h, seq);
    const p = this.p(i);
    const rope = linearRopeTables(seq, D, this.o.rope(i));
    const feeds: Feeds = {
      x: tensor(x, [tokens, h]),
      mask: tensor(causalMask(seq, this.o.windows(i)), [seq, seq]),
      cos: tensor(rope.cos, [seq, D]),
      sin: tensor(rope.sin, [seq, D]),
    };
    for (const [input, t, width] of this.norms()) feeds[input] = weightFeed(w, `${p}${t}.weight`, [width === 'h' ? h : D]);
    for (const l of this.linears(i)) {
      feeds[`${SHORT[l.name]}.w`] = weightFeed(w, l.tensor, [l.rows, l.cols]);
      if (this.o.attnBias && l.name.startsWith('self_attn.')) feeds[`${SHORT[l.name]}.b`] = weightFeed(w, `${p}${l.name}.bias`, [l.rows]);
    }
    return runBlockGraph({
      key: this.key,
      build: (cap) => this.build(cap),
      feeds,
      tokens,
      hidden: h,
      capture,
      widths: { attn_in: h, o_in: H * D, mlp_in: h, down_in: m },
      out,
    });
  }
}
