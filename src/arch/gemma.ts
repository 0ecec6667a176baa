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
 *   use their own RoPE (rope_local_base_freq, unscaled, in transformers 4; rope_parameters.sliding_attention
 *   in 5); any RoPE variant of rope.ts is read.
 * Everything else is the shared decoder base (decoder.ts) and its block patterns (block-graph.ts).
 *
 * The activation: hidden_activation when config.json gives it, else gelu_pytorch_tanh, as HF's Gemma code
 * has resolved it since transformers#29402; `hidden_act` is not read, because the first Gemma configs on the
 * Hub say "gelu" there although the models were trained with the tanh approximation (the warning HF printed
 * for them said so).
 */
import { preview } from '../errors.js';
import { f32BitsToBf16Bits, f32BitsToF16Bits, bf16BitsToF32Bits, f16BitsToF32Bits } from '../io/dtype.js';
import { gatedMlp, linearDefs, normDefs, residualBlock, type BlockGraph, type BlockLayout, type BlockOutputs, type Branch } from './block-graph.js';
import { ConfigReader, readHeads } from './config.js';
import { DecoderArchitecture } from './decoder.js';
import { isActivation, rmsNorm, ACTIVATIONS, type Activation } from './ops.js';
import { readRope, requireWholeHead, type Rope, type RopeTables } from './rope.js';
import { embedRows, weightFeed, type HeadGraph } from './runtime.js';
import type { Architecture, ModelSpec, Weights } from './types.js';

export const GEMMA_MODEL_TYPES = ['gemma', 'gemma2', 'gemma3_text'] as const;
type GemmaType = (typeof GEMMA_MODEL_TYPES)[number];

/** Each config class's defaults for the fields shears reads (GemmaConfig, Gemma2Config, Gemma3TextConfig). */
const DEFAULTS: Record<GemmaType, { vocab: number; hidden: number; inter: number; layers: number; heads: number; kvHeads: number; maxPositions: number; theta: number; attnCap?: number; finalCap?: number }> = {
  gemma: { vocab: 256000, hidden: 3072, inter: 24576, layers: 28, heads: 16, kvHeads: 16, maxPositions: 8192, theta: 10000 },
  gemma2: { vocab: 256000, hidden: 2304, inter: 9216, layers: 26, heads: 8, kvHeads: 4, maxPositions: 8192, theta: 10000, attnCap: 50, finalCap: 30 },
  gemma3_text: { vocab: 262208, hidden: 2304, inter: 9216, layers: 26, heads: 8, kvHeads: 4, maxPositions: 131072, theta: 1e6 },
};

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
  rope: (layer: number) => Rope;
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
  const maxPositions = c.int('max_position_embeddings', d.maxPositions);
  const ropeOf = modelType === 'gemma3_text' ? gemma3Rope(c, modelType, numLayers, heads.headDim, maxPositions) : constantRope(c, modelType, readRope(c, { headDim: heads.headDim, defaultTheta: d.theta, maxPositions }), heads.headDim);
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
    rope: ropeOf,
  };
  const spec: ModelSpec = {
    family: 'gemma',
    modelType,
    hiddenSize,
    numLayers,
    ...heads,
    intermediateSize: c.int('intermediate_size', d.inter),
    vocabSize: c.int('vocab_size', d.vocab),
    maxPositions,
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

function constantRope(c: ConfigReader, modelType: GemmaType, rope: Rope, headDim: number): (layer: number) => Rope {
  requireWholeHead(c, rope, headDim, modelType);
  return () => rope;
}

/**
 * Gemma 3's two RoPEs: full-attention layers use rope_theta with rope_scaling (transformers 4) or
 * rope_parameters.full_attention (5); sliding layers rope_local_base_freq, never scaled (4), or
 * rope_parameters.sliding_attention (5).
 */
function gemma3Rope(c: ConfigReader, modelType: GemmaType, layers: number, headDim: number, maxPositions: number): (layer: number) => Rope {
  const sliding = layerIsSliding(c, modelType, layers);
  const params = c.config.rope_parameters;
  const perLayer = params !== undefined && params !== null && typeof params === 'object' && !Array.isArray(params) && ('full_attention' in params || 'sliding_attention' in params);
  const at = { headDim, maxPositions };
  const global = readRope(c, { ...at, defaultTheta: DEFAULTS.gemma3_text.theta, layerType: perLayer ? 'full_attention' : undefined });
  const local = perLayer
    ? readRope(c, { ...at, defaultTheta: 10000, layerType: 'sliding_attention' })
    : readRope(c, { ...at, defaultTheta: 10000, params: { label: 'rope_local_base_freq', fields: { rope_theta: c.positive('rope_local_base_freq', 10000) } } });
  for (const r of [global, local]) requireWholeHead(c, r, headDim, modelType);
  return (i) => (sliding(i) ? local : global);
}

class GemmaArchitecture extends DecoderArchitecture {
  protected readonly head: HeadGraph;
  private readonly blockLayout: BlockLayout;

  constructor(
    readonly spec: ModelSpec,
    private readonly o: GemmaOptions,
  ) {
    super();
    const s = spec;
    const { hiddenSize: h, intermediateSize: m, numHeads: H, numKvHeads: KV, headDim: D } = s;
    const norms = ['input_layernorm', 'post_attention_layernorm', ...(o.sandwich ? ['pre_feedforward_layernorm', 'post_feedforward_layernorm'] : [])];
    this.blockLayout = {
      key: `gemma|h${h}|i${m}|H${H}|kv${KV}|d${D}|eps${o.eps}|${o.act}|s${o.scale}|b${+o.attnBias}|sw${+o.sandwich}|qk${+o.qkNorm}|cap${o.attnCap}`,
      headDim: D,
      rotaryDim: D,
      norms: [...normDefs(norms, h, false), ...(o.qkNorm ? normDefs(['self_attn.q_norm', 'self_attn.k_norm'], D, false) : [])],
      linears: linearDefs([
        ['self_attn.q_proj', H * D, h, 'attn_in', 0, o.attnBias],
        ['self_attn.k_proj', KV * D, h, 'attn_in', 0, o.attnBias],
        ['self_attn.v_proj', KV * D, h, 'attn_in', 0, o.attnBias],
        ['self_attn.o_proj', h, H * D, 'o_in', 1, o.attnBias],
        ['mlp.gate_proj', m, h, 'mlp_in', 2, false],
        ['mlp.up_proj', m, h, 'mlp_in', 2, false],
        ['mlp.down_proj', h, m, 'down_in', 3, false],
      ]),
    };
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

  protected blockPrefix(i: number): string {
    return `model.layers.${i}.`;
  }

  protected layout(): BlockLayout {
    return this.blockLayout;
  }

  protected override window(i: number): number | undefined {
    return this.o.windows(i);
  }

  protected override rope(i: number, seq: number): RopeTables {
    return this.o.rope(i).tables(seq);
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

  /** Llama's block with (1 + w) norms, GeGLU, the score scale and cap, and (Gemma 2/3) norms on each branch output. */
  protected body(b: BlockGraph): BlockOutputs {
    const { numHeads: H, numKvHeads: KV, headDim: D } = this.spec;
    const o = this.o;
    const norm = (name: string) => (x: string) => b.rmsNorm(x, name, o.eps, true);
    const attention = (a: string): Branch => {
      let q = b.heads(b.linear(a, 'self_attn.q_proj'), H);
      let k = b.heads(b.linear(a, 'self_attn.k_proj'), KV);
      const v = b.heads(b.linear(a, 'self_attn.v_proj'), KV);
      if (o.qkNorm) {
        q = norm('self_attn.q_norm')(q);
        k = norm('self_attn.k_norm')(k);
      }
      const oIn = b.attention(b.rotary(q), b.rotary(k), v, { numHeads: H, numKvHeads: KV, headDim: D, scale: o.scale, softcap: o.attnCap });
      return { out: b.linear(oIn, 'self_attn.o_proj'), inputs: { o_in: oIn } };
    };
    return residualBlock(b, {
      norm1: norm('input_layernorm'),
      attention,
      post1: o.sandwich ? norm('post_attention_layernorm') : undefined,
      norm2: norm(o.sandwich ? 'pre_feedforward_layernorm' : 'post_attention_layernorm'),
      mlp: (x) => gatedMlp(b, x, { gate: 'mlp.gate_proj', up: 'mlp.up_proj', down: 'mlp.down_proj', act: o.act, width: this.spec.intermediateSize }),
      post2: o.sandwich ? norm('post_feedforward_layernorm') : undefined,
    });
  }
}
