/**
 * GPT-NeoX (EleutherAI/pythia-*, gpt-neox-20b; HF GPTNeoXForCausalLM). LayerNorm + RoPE, HF semantics:
 *   a   = dense(attn(rope(q), rope(k), v))        q|k|v from query_key_value(LN1(x))
 *   parallel (use_parallel_residual, Pythia):  out = x + a + mlp(LN2(x))
 *   sequential:                                 h = x + a;  out = h + mlp(LN2(h))
 *   mlp(y) = dense_4h_to_h(act(dense_h_to_4h(y)))   act = hidden_act (exact-erf "gelu" in Pythia)
 * query_key_value's 3·hidden outputs are grouped per head: head j owns rows j·3D .. j·3D+3D-1 as [q_j | k_j | v_j]
 * (HF views them as [heads, 3·D] and chunks the last axis). RoPE (rotate_half) covers only the first
 * rotary_ndims = int(D · rotary_pct) dims of each head. Head: final_layer_norm, then embed_out (untied).
 * Tensor names: "gpt_neox." prefix (GPTNeoXForCausalLM); the bare GPTNeoXModel has none.
 */
import { GraphBuilder } from '../engine/graph.js';
import { tensor, type Feeds } from '../engine/session.js';
import { ConfigReader, readRope } from './config.js';
import { activation, attentionInputs, causalAttention, causalMask, isActivation, layerNorm, linear, rotary, ropeTables, splitHeads, ACTIVATIONS, type Activation } from './ops.js';
import { HeadedArchitecture, finishBlock, linearLayers, checkSeq, gatherRows, runBlockGraph, tokensOf, weightFeed, type BuiltBlock, type HeadGraph } from './runtime.js';
import type { Architecture, BlockResult, LinearLayer, ModelSpec, TensorSource, Weights } from './types.js';

interface NeoxOptions {
  /** "gpt_neox." or "". */
  prefix: string;
  eps: number;
  act: Activation;
  parallel: boolean;
  /** attention_bias: query_key_value and dense have biases (the MLP always has). */
  attnBias: boolean;
  rotaryDim: number;
  ropeTheta: number;
}

/**
 * Missing config keys take GPTNeoXConfig's class defaults (transformers 4 leaves out keys equal to them).
 * Rotary settings are read from rotary_pct / rotary_emb_base (transformers 4) or rope_parameters
 * (transformers 5: partial_rotary_factor, rope_theta). `tensors`, when given, tells whether names carry
 * the "gpt_neox." prefix.
 */
export function createGptNeox(config: Record<string, unknown>, configPath: string, tensors?: Pick<TensorSource, 'has'>): Architecture {
  const c = new ConfigReader(config, configPath);
  const modelType = c.str('model_type', 'gpt_neox');
  if (modelType !== 'gpt_neox') throw c.error('model_type', `"${modelType}" is not a GPT-NeoX model`);
  const hiddenSize = c.int('hidden_size', 6144);
  const numHeads = c.int('num_attention_heads', 64);
  if (hiddenSize % numHeads !== 0) throw c.error('num_attention_heads', `(${numHeads}) must divide the hidden size (${hiddenSize})`);
  const headDim = hiddenSize / numHeads;
  const act = c.str('hidden_act', 'gelu');
  if (!isActivation(act)) throw c.error('hidden_act', `"${act}" is not supported (supported: ${ACTIVATIONS.join(', ')})`);

  const rope = readRope(c, c.positive('rotary_emb_base', 10000));
  const pctField = c.has('rotary_pct') ? 'rotary_pct' : c.has('partial_rotary_factor') ? 'partial_rotary_factor' : undefined;
  const pct = pctField ? c.fraction(pctField, 0.25) : (rope.partialRotaryFactor ?? 0.25);
  // HF truncates the float product: rotary_ndims = int(head_size * rotary_pct).
  const rotaryDim = Math.floor(headDim * pct);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0) {
    throw c.error(pctField ?? 'rope_parameters.partial_rotary_factor', `(${pct}) gives ${rotaryDim} rotary dims of the head's ${headDim}; an even number ≥ 2 is required`);
  }

  const prefix = tensors && !tensors.has('gpt_neox.layers.0.mlp.dense_h_to_4h.weight') && tensors.has('layers.0.mlp.dense_h_to_4h.weight') ? '' : 'gpt_neox.';
  const opts: NeoxOptions = {
    prefix,
    eps: c.positive('layer_norm_eps', 1e-5),
    act,
    parallel: c.bool('use_parallel_residual', true),
    attnBias: c.bool('attention_bias', true),
    rotaryDim,
    ropeTheta: rope.theta,
  };
  const spec: ModelSpec = {
    family: 'gpt_neox',
    modelType,
    hiddenSize,
    numLayers: c.int('num_hidden_layers', 44),
    numHeads,
    numKvHeads: numHeads,
    headDim,
    intermediateSize: c.int('intermediate_size', 24576),
    vocabSize: c.int('vocab_size', 50432),
    maxPositions: c.int('max_position_embeddings', 2048),
    tieWordEmbeddings: c.bool('tie_word_embeddings', false),
    bosTokenId: c.has('bos_token_id') ? c.tokenId('bos_token_id') : 0,
    eosTokenId: c.has('eos_token_id') ? c.tokenId('eos_token_id') : 2,
    dtype: c.dtype(),
  };
  return new GptNeoxArchitecture(spec, opts);
}

/** Graph input names of the block's linear layers, by layer name. */
const SHORT: Record<string, string> = {
  'attention.query_key_value': 'qkv',
  'attention.dense': 'dense',
  'mlp.dense_h_to_4h': 'h_to_4h',
  'mlp.dense_4h_to_h': '4h_to_h',
};

class GptNeoxArchitecture extends HeadedArchitecture implements Architecture {
  private readonly key: string;
  protected readonly head: HeadGraph;
  private readonly embedIn: string;
  private readonly finalNorm: { w: string; b: string };

  constructor(
    readonly spec: ModelSpec,
    private readonly o: NeoxOptions,
  ) {
    super();
    const s = spec;
    this.embedIn = `${o.prefix}embed_in.weight`;
    const finalNorm = { w: `${o.prefix}final_layer_norm.weight`, b: `${o.prefix}final_layer_norm.bias` };
    this.finalNorm = finalNorm;
    this.key = `gpt_neox|h${s.hiddenSize}|i${s.intermediateSize}|H${s.numHeads}|r${o.rotaryDim}|eps${o.eps}|${o.act}|par${+o.parallel}|b${+o.attnBias}`;
    this.head = {
      key: `gpt_neox-head|h${s.hiddenSize}|v${s.vocabSize}|eps${o.eps}`,
      hidden: s.hiddenSize,
      vocab: s.vocabSize,
      headWeight: s.tieWordEmbeddings ? this.embedIn : 'embed_out.weight',
      final: (g, x) => layerNorm(g, x, g.input('final_ln.w', 'float32', [s.hiddenSize]), g.input('final_ln.b', 'float32', [s.hiddenSize]), o.eps),
      finalFeeds: (w) => ({
        'final_ln.w': weightFeed(w, finalNorm.w, [s.hiddenSize]),
        'final_ln.b': weightFeed(w, finalNorm.b, [s.hiddenSize]),
      }),
    };
  }

  private p(i: number): string {
    if (!Number.isInteger(i) || i < 0 || i >= this.spec.numLayers) throw new Error(`block ${i} is outside 0..${this.spec.numLayers - 1}`);
    return `${this.o.prefix}layers.${i}.`;
  }

  linears(i: number): LinearLayer[] {
    const { hiddenSize: h, intermediateSize: m } = this.spec;
    return linearLayers(this.p(i), false, [
      ['attention.query_key_value', 3 * h, h, 'attn_in', 0],
      ['attention.dense', h, h, 'o_in', 1],
      ['mlp.dense_h_to_4h', m, h, 'mlp_in', 2],
      ['mlp.dense_4h_to_h', h, m, 'down_in', 3],
    ]);
  }

  private hasBias(layer: string): boolean {
    return this.o.attnBias || layer.startsWith('mlp.');
  }

  blockTensors(i: number): string[] {
    const p = this.p(i);
    const names: string[] = [];
    for (const ln of ['input_layernorm', 'post_attention_layernorm']) names.push(`${p}${ln}.weight`, `${p}${ln}.bias`);
    for (const l of this.linears(i)) {
      names.push(l.tensor);
      if (this.hasBias(l.name)) names.push(`${p}${l.name}.bias`);
    }
    return names;
  }

  embedTensors(): string[] {
    return [this.embedIn];
  }

  headTensors(): string[] {
    return [this.finalNorm.w, this.finalNorm.b, this.head.headWeight];
  }

  async embed(w: Weights, ids: Int32Array, seq: number): Promise<Float32Array> {
    if (ids.length % seq !== 0) throw new Error(`${ids.length} ids are not whole windows of ${seq}`);
    checkSeq(seq, this.spec.maxPositions, 'max_position_embeddings');
    const table = w.get(this.embedIn);
    if (!table) throw new Error(`${this.embedIn} was not loaded`);
    return gatherRows(table, this.spec.hiddenSize, ids);
  }

  private build(capture: boolean): BuiltBlock {
    const { hiddenSize: h, intermediateSize: m, numHeads: H, headDim: D } = this.spec;
    const o = this.o;
    const g = new GraphBuilder('gpt_neox_block');
    const x = g.input('x', 'float32', ['tokens', h]);
    const att = attentionInputs(g, o.rotaryDim);
    const ln = (input: string, name: string) => layerNorm(g, input, g.input(`${name}.w`, 'float32', [h]), g.input(`${name}.b`, 'float32', [h]), o.eps);
    const lin = (input: string, layer: string, rows: number, cols: number) => {
      const name = SHORT[layer];
      const bias = this.hasBias(layer) ? g.input(`${name}.b`, 'float32', [rows]) : undefined;
      return linear(g, input, g.input(`${name}.w`, 'float32', [rows, cols]), bias);
    };

    const attnIn = ln(x, 'ln1');
    // [T, 3h] → [B, S, heads, 3D] → q, k, v [B, S, heads, D] (per-head [q | k | v] layout).
    const qkv = splitHeads(g, lin(attnIn, 'attention.query_key_value', 3 * h, h), att.seq, H, 3 * D);
    const [q, k, v] = g.opN('Split', [qkv, g.ints([D, D, D])], 3, { axis: -1 });
    const qr = rotary(g, q, att.cos!, att.sin!, D, o.rotaryDim);
    const kr = rotary(g, k, att.cos!, att.sin!, D, o.rotaryDim);
    const oIn = causalAttention(g, qr, kr, v, att.mask, { numHeads: H, numKvHeads: H, headDim: D });
    const attnOut = lin(oIn, 'attention.dense', h, h);
    const hMid = g.op('Add', [x, attnOut]);
    const mlpIn = ln(o.parallel ? x : hMid, 'ln2');
    const downIn = activation(g, lin(mlpIn, 'mlp.dense_h_to_4h', m, h), o.act);
    const out = g.op('Add', [hMid, lin(downIn, 'mlp.dense_4h_to_h', h, m)]);

    return finishBlock(g, x, out, h, capture, { attn_in: [attnIn, h], o_in: [oIn, h], mlp_in: [mlpIn, h], down_in: [downIn, m] });
  }

  async runBlock(i: number, w: Weights, x: Float32Array, seq: number, capture: boolean, out?: Float32Array | null): Promise<BlockResult> {
    const { hiddenSize: h, intermediateSize: m } = this.spec;
    const tokens = tokensOf(x, h, seq);
    const p = this.p(i);
    const r = this.o.rotaryDim;
    const rope = ropeTables(seq, r, this.o.ropeTheta);
    const feeds: Feeds = {
      x: tensor(x, [tokens, h]),
      mask: tensor(causalMask(seq), [seq, seq]),
      cos: tensor(rope.cos, [seq, r]),
      sin: tensor(rope.sin, [seq, r]),
      'ln1.w': weightFeed(w, `${p}input_layernorm.weight`, [h]),
      'ln1.b': weightFeed(w, `${p}input_layernorm.bias`, [h]),
      'ln2.w': weightFeed(w, `${p}post_attention_layernorm.weight`, [h]),
      'ln2.b': weightFeed(w, `${p}post_attention_layernorm.bias`, [h]),
    };
    for (const l of this.linears(i)) {
      feeds[`${SHORT[l.name]}.w`] = weightFeed(w, l.tensor, [l.rows, l.cols]);
      if (this.hasBias(l.name)) feeds[`${SHORT[l.name]}.b`] = weightFeed(w, `${p}${l.name}.bias`, [l.rows]);
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
