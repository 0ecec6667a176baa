/**
 * BLOOM (bigscience/bloom*, HF BloomForCausalLM). LayerNorm everywhere, biases on every linear, ALiBi instead
 * of positions, HF semantics (modeling_bloom.py):
 *   e    = word_embeddings_layernorm(word_embeddings[ids])
 *   a    = LN1(x);  h = r1 + dense(attn(q, k, v))        r1 = a if apply_residual_connection_post_layernorm else x
 *   m    = LN2(h);  out = r2 + dense_4h_to_h(gelu(dense_h_to_4h(m)))   r2 = m if that flag else h
 *   attn: scores = q·kᵀ/√D + slope_h · j (key j; HF's baddbmm with beta 1, alpha 1/√D), causal mask, softmax
 * query_key_value's 3·hidden outputs are interleaved per head: head j owns rows j·3D .. j·3D+3D-1 as
 * [q_j | k_j | v_j] (HF views them as [heads, 3, D]); the fused matrix is pruned as stored, one input statistic
 * for all of it. gelu is bloom_gelu_forward, the tanh form with √(2/π) written 0.79788456: ops' gelu_fast, whose
 * constant differs only in the 10th digit. Head: ln_f, then the LM head tied to word_embeddings (unless
 * tie_word_embeddings is false). pretraining_tp / slow_but_exact only split the dense sums: ignored.
 * The MLP is always 4·hidden (HF ignores n_inner). Window length: ALiBi has no position table, so nothing
 * caps it; maxPositions is seq_length when config.json has it, else 2048, the length BLOOM was trained on and
 * the window the SparseGPT paper evaluates it with — it only sets the default and the largest --seqlen.
 * Tensor names: "transformer." prefix (BloomForCausalLM); Hub files saved from BloomModel (bigscience/bloom-560m
 * and its siblings) have none.
 */
import { ShearsError } from '../errors.js';
import { GraphBuilder } from '../engine/graph.js';
import { tensor, type Feeds } from '../engine/session.js';
import { ConfigReader } from './config.js';
import { activation, alibiKeyBias, attentionInputs, causalAttention, causalMask, layerNorm, linear, splitHeads } from './ops.js';
import { HeadedArchitecture, finishBlock, linearLayers, gatherRows, runBlockGraph, tokensOf, weightFeed, type BuiltBlock, type HeadGraph } from './runtime.js';
import type { Architecture, BlockResult, LinearLayer, ModelSpec, TensorSource, Weights } from './types.js';

interface BloomOptions {
  /** "transformer." or "". */
  prefix: string;
  eps: number;
  /** apply_residual_connection_post_layernorm: the residual is the normed input, not the input. */
  postLnResidual: boolean;
}

/**
 * Missing keys take BloomConfig's defaults. Aliases as BloomConfig resolves them: n_embed (older Hub configs)
 * wins over hidden_size; num_hidden_layers / num_attention_heads (attribute_map) win over n_layer / n_head.
 */
export function createBloom(config: Record<string, unknown>, configPath: string, tensors?: Pick<TensorSource, 'has'>): Architecture {
  const c = new ConfigReader(config, configPath);
  const modelType = c.str('model_type', 'bloom');
  if (modelType !== 'bloom') throw c.error('model_type', `"${modelType}" is not a BLOOM model`);
  const hiddenSize = c.int(['n_embed', 'hidden_size'], 64);
  const numHeads = c.int(['num_attention_heads', 'n_head'], 8);
  if (hiddenSize % numHeads !== 0) throw c.error(c.has('num_attention_heads') ? 'num_attention_heads' : 'n_head', `(${numHeads}) must divide the hidden size (${hiddenSize})`);
  const prefix = tensors && !tensors.has('transformer.word_embeddings.weight') && tensors.has('word_embeddings.weight') ? '' : 'transformer.';
  const spec: ModelSpec = {
    family: 'bloom',
    modelType,
    hiddenSize,
    numLayers: c.int(['num_hidden_layers', 'n_layer'], 2),
    numHeads,
    numKvHeads: numHeads,
    headDim: hiddenSize / numHeads,
    intermediateSize: 4 * hiddenSize,
    vocabSize: c.int('vocab_size', 250880),
    maxPositions: c.int('seq_length', 2048),
    tieWordEmbeddings: c.bool('tie_word_embeddings', true),
    bosTokenId: c.has('bos_token_id') ? c.tokenId('bos_token_id') : 1,
    eosTokenId: c.has('eos_token_id') ? c.tokenId('eos_token_id') : 2,
    dtype: c.dtype(),
  };
  return new BloomArchitecture(spec, {
    prefix,
    eps: c.positive('layer_norm_epsilon', 1e-5),
    postLnResidual: c.bool('apply_residual_connection_post_layernorm', false),
  });
}

/** Graph input names of the block's linear layers, by layer name. */
const SHORT: Record<string, string> = {
  'self_attention.query_key_value': 'qkv',
  'self_attention.dense': 'dense',
  'mlp.dense_h_to_4h': 'h_to_4h',
  'mlp.dense_4h_to_h': '4h_to_h',
};

class BloomArchitecture extends HeadedArchitecture implements Architecture {
  private readonly key: string;
  protected readonly head: HeadGraph;
  private readonly wte: string;
  private readonly embedNorm: { w: string; b: string };
  private readonly finalNorm: { w: string; b: string };

  constructor(
    readonly spec: ModelSpec,
    private readonly o: BloomOptions,
  ) {
    super();
    const s = spec;
    this.wte = `${o.prefix}word_embeddings.weight`;
    this.embedNorm = { w: `${o.prefix}word_embeddings_layernorm.weight`, b: `${o.prefix}word_embeddings_layernorm.bias` };
    const finalNorm = { w: `${o.prefix}ln_f.weight`, b: `${o.prefix}ln_f.bias` };
    this.finalNorm = finalNorm;
    this.key = `bloom|h${s.hiddenSize}|H${s.numHeads}|eps${o.eps}|post${+o.postLnResidual}`;
    this.head = {
      key: `bloom-head|h${s.hiddenSize}|v${s.vocabSize}|eps${o.eps}`,
      hidden: s.hiddenSize,
      vocab: s.vocabSize,
      headWeight: s.tieWordEmbeddings ? this.wte : 'lm_head.weight',
      final: (g, x) => layerNorm(g, x, g.input('ln_f.w', 'float32', [s.hiddenSize]), g.input('ln_f.b', 'float32', [s.hiddenSize]), o.eps),
      finalFeeds: (w) => ({ 'ln_f.w': weightFeed(w, finalNorm.w, [s.hiddenSize]), 'ln_f.b': weightFeed(w, finalNorm.b, [s.hiddenSize]) }),
    };
  }

  private p(i: number): string {
    if (!Number.isInteger(i) || i < 0 || i >= this.spec.numLayers) throw new Error(`block ${i} is outside 0..${this.spec.numLayers - 1}`);
    return `${this.o.prefix}h.${i}.`;
  }

  linears(i: number): LinearLayer[] {
    const { hiddenSize: h, intermediateSize: m } = this.spec;
    return linearLayers(this.p(i), false, [
      ['self_attention.query_key_value', 3 * h, h, 'attn_in', 0],
      ['self_attention.dense', h, h, 'o_in', 1],
      ['mlp.dense_h_to_4h', m, h, 'mlp_in', 2],
      ['mlp.dense_4h_to_h', h, m, 'down_in', 3],
    ]);
  }

  blockTensors(i: number): string[] {
    const p = this.p(i);
    const names: string[] = [];
    for (const ln of ['input_layernorm', 'post_attention_layernorm']) names.push(`${p}${ln}.weight`, `${p}${ln}.bias`);
    for (const l of this.linears(i)) names.push(l.tensor, `${p}${l.name}.bias`);
    return names;
  }

  embedTensors(): string[] {
    return [this.wte, this.embedNorm.w, this.embedNorm.b];
  }

  headTensors(): string[] {
    return [this.finalNorm.w, this.finalNorm.b, this.head.headWeight];
  }

  /** word_embeddings_layernorm(word_embeddings[id]); no positions (ALiBi lives in the attention). */
  async embed(w: Weights, ids: Int32Array, seq: number): Promise<Float32Array> {
    if (ids.length % seq !== 0) throw new Error(`${ids.length} ids are not whole windows of ${seq}`);
    const h = this.spec.hiddenSize;
    const table = w.get(this.wte);
    const gain = w.get(this.embedNorm.w);
    const bias = w.get(this.embedNorm.b);
    if (!table || !gain || !bias) throw new Error(`${this.embedTensors().join(' / ')} were not loaded`);
    if (gain.length !== h || bias.length !== h) throw new ShearsError(`${this.embedNorm.w} / ${this.embedNorm.b} must have ${h} values (hidden_size)`);
    const x = gatherRows(table, h, ids);
    // LayerNorm per row, statistics in float64 (the embedding pass is cheap next to the blocks).
    for (let r = 0; r < ids.length; r++) {
      const row = x.subarray(r * h, (r + 1) * h);
      let mean = 0;
      for (let j = 0; j < h; j++) mean += row[j];
      mean /= h;
      let v = 0;
      for (let j = 0; j < h; j++) v += (row[j] - mean) ** 2;
      const inv = 1 / Math.sqrt(v / h + this.o.eps);
      for (let j = 0; j < h; j++) row[j] = (row[j] - mean) * inv * gain[j] + bias[j];
    }
    return x;
  }

  private build(capture: boolean): BuiltBlock {
    const { hiddenSize: h, intermediateSize: m, numHeads: H, headDim: D } = this.spec;
    const o = this.o;
    const g = new GraphBuilder('bloom_block');
    const x = g.input('x', 'float32', ['tokens', h]);
    const att = attentionInputs(g);
    const alibi = g.input('alibi', 'float32', [H, 'seq']);
    const ln = (input: string, name: string) => layerNorm(g, input, g.input(`${name}.w`, 'float32', [h]), g.input(`${name}.b`, 'float32', [h]), o.eps);
    const lin = (input: string, layer: string, rows: number, cols: number) =>
      linear(g, input, g.input(`${SHORT[layer]}.w`, 'float32', [rows, cols]), g.input(`${SHORT[layer]}.b`, 'float32', [rows]));

    const attnIn = ln(x, 'ln1');
    // [T, 3h] → [B, S, heads, 3D] → q, k, v [B, S, heads, D] (per-head [q | k | v] layout).
    const qkv = splitHeads(g, lin(attnIn, 'self_attention.query_key_value', 3 * h, h), att.seq, H, 3 * D);
    const [q, k, v] = g.opN('Split', [qkv, g.ints([D, D, D])], 3, { axis: -1 });
    const oIn = causalAttention(g, q, k, v, att.mask, { numHeads: H, numKvHeads: H, headDim: D, keyBias: alibi });
    const hMid = g.op('Add', [o.postLnResidual ? attnIn : x, lin(oIn, 'self_attention.dense', h, h)]);
    const mlpIn = ln(hMid, 'ln2');
    const downIn = activation(g, lin(mlpIn, 'mlp.dense_h_to_4h', m, h), 'gelu_fast');
    const out = g.op('Add', [o.postLnResidual ? mlpIn : hMid, lin(downIn, 'mlp.dense_4h_to_h', h, m)]);

    return finishBlock(g, x, out, h, capture, { attn_in: [attnIn, h], o_in: [oIn, h], mlp_in: [mlpIn, h], down_in: [downIn, m] });
  }

  async runBlock(i: number, w: Weights, x: Float32Array, seq: number, capture: boolean, out?: Float32Array | null): Promise<BlockResult> {
    const { hiddenSize: h, intermediateSize: m, numHeads: H } = this.spec;
    const tokens = tokensOf(x, h, seq);
    const p = this.p(i);
    const feeds: Feeds = {
      x: tensor(x, [tokens, h]),
      mask: tensor(causalMask(seq), [seq, seq]),
      alibi: tensor(alibiKeyBias(seq, H), [H, seq]),
      'ln1.w': weightFeed(w, `${p}input_layernorm.weight`, [h]),
      'ln1.b': weightFeed(w, `${p}input_layernorm.bias`, [h]),
      'ln2.w': weightFeed(w, `${p}post_attention_layernorm.weight`, [h]),
      'ln2.b': weightFeed(w, `${p}post_attention_layernorm.bias`, [h]),
    };
    for (const l of this.linears(i)) {
      feeds[`${SHORT[l.name]}.w`] = weightFeed(w, l.tensor, [l.rows, l.cols]);
      feeds[`${SHORT[l.name]}.b`] = weightFeed(w, `${p}${l.name}.bias`, [l.rows]);
    }
    return runBlockGraph({
      key: this.key,
      build: (cap) => this.build(cap),
      feeds,
      tokens,
      hidden: h,
      capture,
      widths: { attn_in: h, o_in: h, mlp_in: h, down_in: m },
      out,
    });
  }
}
