/**
 * The Llama family: llama, mistral, qwen2 (q/k/v biases), qwen3 (per-head RMSNorm on q and k before RoPE).
 * Pre-norm decoder block, HF semantics:
 *   h   = x + o_proj(attn(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1)))   n1 = RMSNorm(x)
 *   out = h + down_proj(act(gate_proj(n2)) · up_proj(n2))                      n2 = RMSNorm(h)
 * All weights nn.Linear [out, in]; RoPE is rotate_half over the whole head; GQA shares kv head h/rep.
 */
import { preview } from '../errors.js';
import { ConfigReader, readHeads } from './config.js';
import { gatedMlp, linearDefs, normDefs, residualBlock, type BlockGraph, type BlockLayout, type BlockOutputs, type Branch } from './block-graph.js';
import { DecoderArchitecture } from './decoder.js';
import { isActivation, rmsNorm, ACTIVATIONS, type Activation } from './ops.js';
import { readRope, requireWholeHead, type Rope } from './rope.js';
import { embedRows, weightFeed, type HeadGraph } from './runtime.js';
import type { Architecture, ModelSpec, Weights } from './types.js';

export const LLAMA_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'qwen3'] as const;
type LlamaType = (typeof LLAMA_MODEL_TYPES)[number];

/** max_position_embeddings when config.json leaves it out: each HF config class's default. */
const DEFAULT_MAX_POSITIONS: Record<LlamaType, number> = { llama: 2048, mistral: 4096 * 32, qwen2: 32768, qwen3: 32768 };

/** What differs between the four model types, all read from config.json (and what the MoE families share). */
export interface LlamaOptions {
  eps: number;
  rope: Rope;
  act: Activation;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  qkNorm: boolean;
  /** Sliding-window size of a layer (undefined = full causal attention). A function, not an array of
   *  num_hidden_layers entries: the config is read before the weights confirm the layer count. */
  windows: (layer: number) => number | undefined;
}

export function createLlama(config: Record<string, unknown>, configPath: string): Architecture {
  const c = new ConfigReader(config, configPath);
  const modelType = c.str('model_type') as LlamaType;
  if (!(LLAMA_MODEL_TYPES as readonly string[]).includes(modelType)) throw c.error('model_type', `"${modelType}" is not a Llama-family model`);
  const hiddenSize = c.int('hidden_size');
  const numLayers = c.int('num_hidden_layers');
  const heads = readHeads(c, hiddenSize, { heads: 'num_attention_heads', kvHeads: 'num_key_value_heads', headDim: 'head_dim' });
  // Qwen3's class default head_dim is 128, not hidden/heads.
  if (modelType === 'qwen3' && !c.has('head_dim')) heads.headDim = 128;
  const act = c.str('hidden_act', 'silu');
  if (!isActivation(act)) throw c.error('hidden_act', `"${act}" is not supported (supported: ${ACTIVATIONS.join(', ')})`);
  const attentionBias = c.bool('attention_bias', false);
  const maxPositions = c.int('max_position_embeddings', DEFAULT_MAX_POSITIONS[modelType]);
  const rope = readRope(c, { headDim: heads.headDim, defaultTheta: 10000, maxPositions });
  requireWholeHead(c, rope, heads.headDim, modelType);
  const opts: LlamaOptions = {
    eps: c.positive('rms_norm_eps', 1e-6),
    rope,
    act,
    qkvBias: modelType === 'qwen2' || (modelType !== 'mistral' && attentionBias),
    oBias: (modelType === 'llama' || modelType === 'qwen3') && attentionBias,
    mlpBias: modelType === 'llama' && c.bool('mlp_bias', false),
    qkNorm: modelType === 'qwen3',
    windows: slidingWindows(c, modelType, numLayers),
  };
  const spec: ModelSpec = {
    family: 'llama',
    modelType,
    hiddenSize,
    numLayers,
    ...heads,
    intermediateSize: c.int('intermediate_size'),
    vocabSize: c.int('vocab_size'),
    maxPositions,
    tieWordEmbeddings: c.bool('tie_word_embeddings', false),
    bosTokenId: c.tokenId('bos_token_id'),
    eosTokenId: c.tokenId('eos_token_id'),
    dtype: c.dtype(),
  };
  return new LlamaArchitecture(spec, opts);
}

/**
 * HF's per-layer sliding windows: mistral uses `sliding_window` in every layer (null = none); qwen2/qwen3
 * use it only where `layer_types` says "sliding_attention", or (older configs) when use_sliding_window is
 * set, for layers ≥ max_window_layers.
 */
function slidingWindows(c: ConfigReader, modelType: LlamaType, layers: number): (layer: number) => number | undefined {
  const none = (): undefined => undefined;
  if (modelType === 'llama' || !c.has('sliding_window')) return none;
  const window = c.int('sliding_window');
  if (modelType === 'mistral') return () => window;
  const types = c.strings('layer_types');
  if (types) {
    if (types.length !== layers) throw c.error('layer_types', `has ${types.length} entries for ${layers} layers`);
    return (i) => (types[i] === 'sliding_attention' ? window : undefined);
  }
  if (!c.bool('use_sliding_window', false)) return none;
  const from = c.has('max_window_layers') ? nonNegative(c, 'max_window_layers') : 28; // the class default
  return (i) => (i >= from ? window : undefined);
}

function nonNegative(c: ConfigReader, field: string): number {
  const v = c.config[field];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw c.error(field, `must be a non-negative integer, got ${preview(v)}`);
  return v;
}

/** Exported for the MoE families (moe.ts), whose blocks are Llama's with routed experts in place of the MLP. */
export class LlamaArchitecture extends DecoderArchitecture {
  protected readonly head: HeadGraph;
  private readonly blockLayout: BlockLayout;

  constructor(
    readonly spec: ModelSpec,
    protected readonly lo: LlamaOptions,
  ) {
    super();
    const o = lo;
    const s = spec;
    const { hiddenSize: h, intermediateSize: m, numHeads: H, numKvHeads: KV, headDim: D } = s;
    this.blockLayout = {
      key: `llama|h${h}|i${m}|H${H}|kv${KV}|d${D}|eps${o.eps}|${o.act}|b${+o.qkvBias}${+o.oBias}${+o.mlpBias}|qk${+o.qkNorm}`,
      headDim: D,
      rotaryDim: D,
      norms: [
        ...normDefs(['input_layernorm', 'post_attention_layernorm'], h, false),
        ...(o.qkNorm ? normDefs(['self_attn.q_norm', 'self_attn.k_norm'], D, false) : []),
      ],
      linears: linearDefs([
        ['self_attn.q_proj', H * D, h, 'attn_in', 0, o.qkvBias],
        ['self_attn.k_proj', KV * D, h, 'attn_in', 0, o.qkvBias],
        ['self_attn.v_proj', KV * D, h, 'attn_in', 0, o.qkvBias],
        ['self_attn.o_proj', h, H * D, 'o_in', 1, o.oBias],
        ['mlp.gate_proj', m, h, 'mlp_in', 2, o.mlpBias],
        ['mlp.up_proj', m, h, 'mlp_in', 2, o.mlpBias],
        ['mlp.down_proj', h, m, 'down_in', 3, o.mlpBias],
      ]),
    };
    this.head = {
      key: `llama-head|h${s.hiddenSize}|v${s.vocabSize}|eps${o.eps}`,
      hidden: s.hiddenSize,
      vocab: s.vocabSize,
      headWeight: s.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight',
      final: (g, x) => rmsNorm(g, x, g.input('norm_w', 'float32', [s.hiddenSize]), o.eps),
      finalFeeds: (w) => ({ norm_w: weightFeed(w, 'model.norm.weight', [s.hiddenSize]) }),
    };
  }

  protected blockPrefix(i: number): string {
    return `model.layers.${i}.`;
  }

  protected layout(_i: number): BlockLayout {
    return this.blockLayout;
  }

  protected override window(i: number): number | undefined {
    return this.lo.windows(i);
  }

  protected override rope(_i: number, seq: number): { cos: Float32Array; sin: Float32Array } {
    return this.lo.rope.tables(seq);
  }

  embedTensors(): string[] {
    return ['model.embed_tokens.weight'];
  }

  headTensors(): string[] {
    return ['model.norm.weight', this.head.headWeight];
  }

  async embed(w: Weights, ids: Int32Array, seq: number): Promise<Float32Array> {
    return embedRows(w, 'model.embed_tokens.weight', this.spec.hiddenSize, ids, seq);
  }

  /** The attention branch on the normed input a: q/k/v, per-head q/k norms (qwen3), RoPE, o_proj. */
  protected attention(b: BlockGraph, a: string): Branch {
    const { numHeads: H, numKvHeads: KV, headDim: D } = this.spec;
    const o = this.lo;
    let q = b.heads(b.linear(a, 'self_attn.q_proj'), H);
    let k = b.heads(b.linear(a, 'self_attn.k_proj'), KV);
    const v = b.heads(b.linear(a, 'self_attn.v_proj'), KV);
    if (o.qkNorm) {
      q = b.rmsNorm(q, 'self_attn.q_norm', o.eps);
      k = b.rmsNorm(k, 'self_attn.k_norm', o.eps);
    }
    const oIn = b.attention(b.rotary(q), b.rotary(k), v, { numHeads: H, numKvHeads: KV, headDim: D });
    return { out: b.linear(oIn, 'self_attn.o_proj'), inputs: { o_in: oIn } };
  }

  protected body(b: BlockGraph): BlockOutputs {
    const o = this.lo;
    return residualBlock(b, {
      norm1: (x) => b.rmsNorm(x, 'input_layernorm', o.eps),
      attention: (a) => this.attention(b, a),
      norm2: (x) => b.rmsNorm(x, 'post_attention_layernorm', o.eps),
      mlp: (x) => gatedMlp(b, x, { gate: 'mlp.gate_proj', up: 'mlp.up_proj', down: 'mlp.down_proj', act: o.act, width: this.spec.intermediateSize }),
    });
  }
}
