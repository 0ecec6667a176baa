/**
 * GPT-2 (HF GPT2LMHeadModel). Pre-LayerNorm block with learned positions and no RoPE:
 *   h   = x + attn.c_proj(attn(c_attn(ln_1(x))))      c_attn output = [q | k | v], head j owns cols j·D..
 *   out = h + mlp.c_proj(act(c_fc(ln_2(h))))           act = activation_function (gelu_new by default)
 * The four linear layers are HF Conv1D, stored [in, out] (y = x·W + b), hence `transposed` = true.
 * Tensor names carry a "transformer." prefix in what current HF writes; older Hub files have none.
 */
import { ShearsError } from '../errors.js';
import { GraphBuilder } from '../engine/graph.js';
import { tensor, type Feeds } from '../engine/session.js';
import { ConfigReader, readHeads } from './config.js';
import { activation, attentionInputs, causalAttention, causalMask, isActivation, layerNorm, linear, splitHeads, ACTIVATIONS, type Activation } from './ops.js';
import { HeadedArchitecture, finishBlock, linearLayers, checkSeq, gatherRows, runBlockGraph, tokensOf, weightFeed, type BuiltBlock, type HeadGraph } from './runtime.js';
import type { Architecture, BlockResult, LinearLayer, ModelSpec, TensorSource, Weights } from './types.js';

interface Gpt2Options {
  eps: number;
  act: Activation;
  /** Score scale: 1/sqrt(head_dim), or 1 with scale_attn_weights = false. */
  scale: number;
  /** "transformer." or "" (detected from the checkpoint's tensor names). */
  prefix: string;
}

/**
 * `tensors`, when given, is used to tell whether names carry the "transformer." prefix; without it the
 * prefix is assumed (what GPT2LMHeadModel.save_pretrained writes).
 */
export function createGpt2(config: Record<string, unknown>, configPath: string, tensors?: Pick<TensorSource, 'has'>): Architecture {
  const c = new ConfigReader(config, configPath);
  const hiddenSize = c.int(['n_embd', 'hidden_size']);
  const heads = readHeads(c, hiddenSize, { heads: ['n_head', 'num_attention_heads'] });
  const act = c.str('activation_function', 'gelu_new');
  if (!isActivation(act)) throw c.error('activation_function', `"${act}" is not supported (supported: ${ACTIVATIONS.join(', ')})`);
  if (c.bool('scale_attn_by_inverse_layer_idx', false)) throw c.error('scale_attn_by_inverse_layer_idx', 'true is not supported');
  const prefix = tensors && !tensors.has('transformer.wte.weight') && tensors.has('wte.weight') ? '' : 'transformer.';
  const opts: Gpt2Options = {
    eps: c.positive('layer_norm_epsilon', 1e-5),
    act,
    scale: c.bool('scale_attn_weights', true) ? 1 / Math.sqrt(heads.headDim) : 1,
    prefix,
  };
  const spec: ModelSpec = {
    family: 'gpt2',
    modelType: c.str('model_type', 'gpt2'),
    hiddenSize,
    numLayers: c.int(['n_layer', 'num_hidden_layers']),
    ...heads,
    intermediateSize: c.int('n_inner', 4 * hiddenSize),
    vocabSize: c.int('vocab_size'),
    maxPositions: c.int(['n_positions', 'max_position_embeddings']),
    tieWordEmbeddings: c.bool('tie_word_embeddings', true),
    bosTokenId: c.tokenId('bos_token_id'),
    eosTokenId: c.tokenId('eos_token_id'),
    dtype: c.dtype(),
  };
  return new Gpt2Architecture(spec, opts);
}

class Gpt2Architecture extends HeadedArchitecture implements Architecture {
  private readonly key: string;
  protected readonly head: HeadGraph;
  private readonly wte: string;
  private readonly wpe: string;

  constructor(
    readonly spec: ModelSpec,
    private readonly o: Gpt2Options,
  ) {
    super();
    const s = spec;
    this.key = `gpt2|h${s.hiddenSize}|i${s.intermediateSize}|H${s.numHeads}|eps${o.eps}|${o.act}|sc${o.scale}`;
    this.wte = `${o.prefix}wte.weight`;
    this.wpe = `${o.prefix}wpe.weight`;
    const ln = { w: `${o.prefix}ln_f.weight`, b: `${o.prefix}ln_f.bias` };
    this.head = {
      key: `gpt2-head|h${s.hiddenSize}|v${s.vocabSize}|eps${o.eps}`,
      hidden: s.hiddenSize,
      vocab: s.vocabSize,
      headWeight: s.tieWordEmbeddings ? this.wte : 'lm_head.weight',
      final: (g, x) => layerNorm(g, x, g.input('ln_f.w', 'float32', [s.hiddenSize]), g.input('ln_f.b', 'float32', [s.hiddenSize]), o.eps),
      finalFeeds: (w) => ({ 'ln_f.w': weightFeed(w, ln.w, [s.hiddenSize]), 'ln_f.b': weightFeed(w, ln.b, [s.hiddenSize]) }),
    };
  }

  private p(i: number): string {
    if (!Number.isInteger(i) || i < 0 || i >= this.spec.numLayers) throw new Error(`block ${i} is outside 0..${this.spec.numLayers - 1}`);
    return `${this.o.prefix}h.${i}.`;
  }

  linears(i: number): LinearLayer[] {
    const { hiddenSize: h, intermediateSize: m } = this.spec;
    return linearLayers(this.p(i), true, [
      ['attn.c_attn', 3 * h, h, 'attn_in', 0],
      ['attn.c_proj', h, h, 'o_in', 1],
      ['mlp.c_fc', m, h, 'mlp_in', 2],
      ['mlp.c_proj', h, m, 'down_in', 3],
    ]);
  }

  blockTensors(i: number): string[] {
    const p = this.p(i);
    const names = [`${p}ln_1.weight`, `${p}ln_1.bias`, `${p}ln_2.weight`, `${p}ln_2.bias`];
    for (const l of this.linears(i)) names.push(l.tensor, `${p}${l.name}.bias`);
    return names;
  }

  embedTensors(): string[] {
    return [this.wte, this.wpe];
  }

  headTensors(): string[] {
    return [`${this.o.prefix}ln_f.weight`, `${this.o.prefix}ln_f.bias`, this.head.headWeight];
  }

  /** wte[id] + wpe[position], positions 0..seq-1 in every window. */
  async embed(w: Weights, ids: Int32Array, seq: number): Promise<Float32Array> {
    if (ids.length % seq !== 0) throw new Error(`${ids.length} ids are not whole windows of ${seq}`);
    checkSeq(seq, this.spec.maxPositions, 'n_positions');
    const h = this.spec.hiddenSize;
    const wte = w.get(this.wte);
    const wpe = w.get(this.wpe);
    if (!wte || !wpe) throw new Error(`${this.wte} / ${this.wpe} were not loaded`);
    if (wpe.length < seq * h) throw new ShearsError(`${this.wpe} has ${wpe.length / h} positions, fewer than the window of ${seq}`);
    const out = gatherRows(wte, h, ids);
    for (let t = 0; t < ids.length; t++) {
      const row = t * h;
      const pos = (t % seq) * h;
      for (let j = 0; j < h; j++) out[row + j] += wpe[pos + j];
    }
    return out;
  }

  private build(capture: boolean): BuiltBlock {
    const { hiddenSize: h, intermediateSize: m, numHeads: H, headDim: D } = this.spec;
    const o = this.o;
    const g = new GraphBuilder('gpt2_block');
    const x = g.input('x', 'float32', ['tokens', h]);
    const att = attentionInputs(g);
    const weight = (name: string, dims: number[]) => g.input(name, 'float32', dims);
    const conv = (input: string, name: string, cols: number, rows: number) =>
      linear(g, input, weight(`${name}.w`, [cols, rows]), weight(`${name}.b`, [rows]), true);

    const attnIn = layerNorm(g, x, weight('ln_1.w', [h]), weight('ln_1.b', [h]), o.eps);
    const [q, k, v] = g.opN('Split', [conv(attnIn, 'c_attn', h, 3 * h), g.ints([h, h, h])], 3, { axis: 1 });
    const heads = (t: string) => splitHeads(g, t, att.seq, H, D);
    const oIn = causalAttention(g, heads(q), heads(k), heads(v), att.mask, { numHeads: H, numKvHeads: H, headDim: D, scale: o.scale });
    const hMid = g.op('Add', [x, conv(oIn, 'attn.c_proj', h, h)]);
    const mlpIn = layerNorm(g, hMid, weight('ln_2.w', [h]), weight('ln_2.b', [h]), o.eps);
    const downIn = activation(g, conv(mlpIn, 'c_fc', h, m), o.act);
    const out = g.op('Add', [hMid, conv(downIn, 'mlp.c_proj', m, h)]);

    return finishBlock(g, x, out, h, capture, { attn_in: [attnIn, h], o_in: [oIn, h], mlp_in: [mlpIn, h], down_in: [downIn, m] });
  }

  async runBlock(i: number, w: Weights, x: Float32Array, seq: number, capture: boolean, out?: Float32Array | null): Promise<BlockResult> {
    const { hiddenSize: h, intermediateSize: m } = this.spec;
    const tokens = tokensOf(x, h, seq);
    const p = this.p(i);
    const feeds: Feeds = {
      x: tensor(x, [tokens, h]),
      mask: tensor(causalMask(seq), [seq, seq]),
      'ln_1.w': weightFeed(w, `${p}ln_1.weight`, [h]),
      'ln_1.b': weightFeed(w, `${p}ln_1.bias`, [h]),
      'ln_2.w': weightFeed(w, `${p}ln_2.weight`, [h]),
      'ln_2.b': weightFeed(w, `${p}ln_2.bias`, [h]),
    };
    const graphName: Record<string, string> = { 'attn.c_attn': 'c_attn', 'attn.c_proj': 'attn.c_proj', 'mlp.c_fc': 'c_fc', 'mlp.c_proj': 'mlp.c_proj' };
    for (const l of this.linears(i)) {
      feeds[`${graphName[l.name]}.w`] = weightFeed(w, l.tensor, [l.cols, l.rows]); // Conv1D stores [in, out]
      feeds[`${graphName[l.name]}.b`] = weightFeed(w, `${p}${l.name}.bias`, [l.rows]);
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
