/**
 * The Llama family: llama, mistral, qwen2 (q/k/v biases), qwen3 (per-head RMSNorm on q and k before RoPE).
 * Pre-norm decoder block, HF semantics:
 *   h   = x + o_proj(attn(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1)))   n1 = RMSNorm(x)
 *   out = h + down_proj(act(gate_proj(n2)) · up_proj(n2))                      n2 = RMSNorm(h)
 * All weights nn.Linear [out, in]; RoPE is rotate_half over the whole head; GQA shares kv head h/rep.
 */
import { GraphBuilder } from '../engine/graph.js';
import { tensor, type Feeds } from '../engine/session.js';
import { preview } from '../errors.js';
import { ConfigReader, readHeads, readRope } from './config.js';
import { activation, attentionInputs, causalAttention, causalMask, isActivation, linear, rmsNorm, rotary, ropeTables, splitHeads, ACTIVATIONS, type Activation } from './ops.js';
import { HeadedArchitecture, finishBlock, linearLayers, gatherRows, runBlockGraph, tokensOf, weightFeed, type BuiltBlock, type HeadGraph } from './runtime.js';
import type { Architecture, BlockResult, LinearLayer, ModelSpec, Weights } from './types.js';

export const LLAMA_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'qwen3'] as const;
type LlamaType = (typeof LLAMA_MODEL_TYPES)[number];

/** max_position_embeddings when config.json leaves it out: each HF config class's default. */
const DEFAULT_MAX_POSITIONS: Record<LlamaType, number> = { llama: 2048, mistral: 4096 * 32, qwen2: 32768, qwen3: 32768 };

/** What differs between the four model types, all read from config.json. */
interface LlamaOptions {
  eps: number;
  ropeTheta: number;
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
  const opts: LlamaOptions = {
    eps: c.positive('rms_norm_eps', 1e-6),
    ropeTheta: readRope(c, 10000).theta,
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
    maxPositions: c.int('max_position_embeddings', DEFAULT_MAX_POSITIONS[modelType]),
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

class LlamaArchitecture extends HeadedArchitecture implements Architecture {
  private readonly key: string;
  protected readonly head: HeadGraph;

  constructor(
    readonly spec: ModelSpec,
    private readonly o: LlamaOptions,
  ) {
    super();
    const s = spec;
    this.key = `llama|h${s.hiddenSize}|i${s.intermediateSize}|H${s.numHeads}|kv${s.numKvHeads}|d${s.headDim}|eps${o.eps}|${o.act}|b${+o.qkvBias}${+o.oBias}${+o.mlpBias}|qk${+o.qkNorm}`;
    this.head = {
      key: `llama-head|h${s.hiddenSize}|v${s.vocabSize}|eps${o.eps}`,
      hidden: s.hiddenSize,
      vocab: s.vocabSize,
      headWeight: s.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight',
      final: (g, x) => rmsNorm(g, x, g.input('norm_w', 'float32', [s.hiddenSize]), o.eps),
      finalFeeds: (w) => ({ norm_w: weightFeed(w, 'model.norm.weight', [s.hiddenSize]) }),
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

  /** Bias tensor names present in block i, by layer name. */
  private biases(i: number): Record<string, string> {
    const p = this.p(i);
    const b: Record<string, string> = {};
    if (this.o.qkvBias) for (const n of ['q', 'k', 'v']) b[`self_attn.${n}_proj`] = `${p}self_attn.${n}_proj.bias`;
    if (this.o.oBias) b['self_attn.o_proj'] = `${p}self_attn.o_proj.bias`;
    if (this.o.mlpBias) for (const n of ['gate', 'up', 'down']) b[`mlp.${n}_proj`] = `${p}mlp.${n}_proj.bias`;
    return b;
  }

  blockTensors(i: number): string[] {
    const p = this.p(i);
    const names = [`${p}input_layernorm.weight`, `${p}post_attention_layernorm.weight`];
    if (this.o.qkNorm) names.push(`${p}self_attn.q_norm.weight`, `${p}self_attn.k_norm.weight`);
    names.push(...this.linears(i).map((l) => l.tensor), ...Object.values(this.biases(i)));
    return names;
  }

  embedTensors(): string[] {
    return ['model.embed_tokens.weight'];
  }

  headTensors(): string[] {
    return ['model.norm.weight', this.head.headWeight];
  }

  async embed(w: Weights, ids: Int32Array, seq: number): Promise<Float32Array> {
    if (ids.length % seq !== 0) throw new Error(`${ids.length} ids are not whole windows of ${seq}`);
    const table = w.get('model.embed_tokens.weight');
    if (!table) throw new Error('model.embed_tokens.weight was not loaded');
    return gatherRows(table, this.spec.hiddenSize, ids);
  }

  /** The block graph; graph input names are the layer names with "/" for "." plus a kind suffix. */
  private build(capture: boolean): BuiltBlock {
    const { hiddenSize: h, intermediateSize: m, numHeads: H, numKvHeads: KV, headDim: D } = this.spec;
    const o = this.o;
    const g = new GraphBuilder('llama_block');
    const x = g.input('x', 'float32', ['tokens', h]);
    const att = attentionInputs(g, D);
    const weight = (name: string, dims: number[]) => g.input(name, 'float32', dims);
    const lin = (input: string, name: string, rows: number, cols: number, bias: boolean) =>
      linear(g, input, weight(`${name}.w`, [rows, cols]), bias ? weight(`${name}.b`, [rows]) : undefined);

    const attnIn = rmsNorm(g, x, weight('ln1', [h]), o.eps);
    let q = splitHeads(g, lin(attnIn, 'q', H * D, h, o.qkvBias), att.seq, H, D);
    let k = splitHeads(g, lin(attnIn, 'k', KV * D, h, o.qkvBias), att.seq, KV, D);
    const v = splitHeads(g, lin(attnIn, 'v', KV * D, h, o.qkvBias), att.seq, KV, D);
    if (o.qkNorm) {
      q = rmsNorm(g, q, weight('q_norm', [D]), o.eps);
      k = rmsNorm(g, k, weight('k_norm', [D]), o.eps);
    }
    q = rotary(g, q, att.cos!, att.sin!, D, D);
    k = rotary(g, k, att.cos!, att.sin!, D, D);
    const oIn = causalAttention(g, q, k, v, att.mask, { numHeads: H, numKvHeads: KV, headDim: D });
    const hMid = g.op('Add', [x, lin(oIn, 'o', h, H * D, o.oBias)]);
    const mlpIn = rmsNorm(g, hMid, weight('ln2', [h]), o.eps);
    const gate = activation(g, lin(mlpIn, 'gate', m, h, o.mlpBias), o.act);
    const downIn = g.op('Mul', [gate, lin(mlpIn, 'up', m, h, o.mlpBias)]);
    const out = g.op('Add', [hMid, lin(downIn, 'down', h, m, o.mlpBias)]);

    return finishBlock(g, x, out, h, capture, { attn_in: [attnIn, h], o_in: [oIn, H * D], mlp_in: [mlpIn, h], down_in: [downIn, m] });
  }

  async runBlock(i: number, w: Weights, x: Float32Array, seq: number, capture: boolean, out?: Float32Array | null): Promise<BlockResult> {
    const { hiddenSize: h, intermediateSize: m, numHeads: H, numKvHeads: KV, headDim: D } = this.spec;
    const tokens = tokensOf(x, h, seq);
    const p = this.p(i);
    const rope = ropeTables(seq, D, this.o.ropeTheta);
    const feeds: Feeds = {
      x: tensor(x, [tokens, h]),
      mask: tensor(causalMask(seq, this.o.windows(i)), [seq, seq]),
      cos: tensor(rope.cos, [seq, D]),
      sin: tensor(rope.sin, [seq, D]),
      ln1: weightFeed(w, `${p}input_layernorm.weight`, [h]),
      ln2: weightFeed(w, `${p}post_attention_layernorm.weight`, [h]),
    };
    if (this.o.qkNorm) {
      feeds.q_norm = weightFeed(w, `${p}self_attn.q_norm.weight`, [D]);
      feeds.k_norm = weightFeed(w, `${p}self_attn.k_norm.weight`, [D]);
    }
    const short: Record<string, string> = {
      'self_attn.q_proj': 'q',
      'self_attn.k_proj': 'k',
      'self_attn.v_proj': 'v',
      'self_attn.o_proj': 'o',
      'mlp.gate_proj': 'gate',
      'mlp.up_proj': 'up',
      'mlp.down_proj': 'down',
    };
    const biases = this.biases(i);
    for (const l of this.linears(i)) {
      feeds[`${short[l.name]}.w`] = weightFeed(w, l.tensor, [l.rows, l.cols]);
      if (biases[l.name]) feeds[`${short[l.name]}.b`] = weightFeed(w, biases[l.name], [l.rows]);
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
