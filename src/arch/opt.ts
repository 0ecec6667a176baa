/**
 * OPT (facebook/opt-*, HF OPTForCausalLM). Learned positions, LayerNorm, ReLU MLP, HF semantics:
 *   pre-LN  (do_layer_norm_before, 125m and ≥1.3b):  h = x + attn(LN1(x));     out = h + fc2(act(fc1(LN2(h))))
 *   post-LN (opt-350m):                               h = LN1(x + attn(x));     out = LN2(h + fc2(act(fc1(h))))
 * where attn scales q (after its bias) by head_dim^-0.5. Embeddings: embed_tokens [vocab, word_embed_proj_dim],
 * then project_in when that width differs from hidden_size, plus embed_positions row position+2 (OPT's offset;
 * positions 0..seq-1 per unpadded window). Head: final_layer_norm (pre-LN only, unless _remove_final_layer_norm),
 * project_out when present, then the LM head tied to embed_tokens.
 * Tensor names differ between the official checkpoints (DeepSpeed PR #4694 lists them): "model.decoder.*" with a
 * duplicate lm_head.weight (125m, 1.3b, 2.7b, 66b), or the bare OPTModel's "decoder.*" without one (350m, 6.7b,
 * 13b, 30b); a safetensors conversion may keep only one of two shared tensors. Given the checkpoint's names,
 * the adapter picks the prefix and, for a tied head, whichever of embed_tokens / lm_head is stored.
 */
import { ShearsError } from '../errors.js';
import { GraphBuilder } from '../engine/graph.js';
import { run, session, tensor, type Feeds } from '../engine/session.js';
import { ConfigReader } from './config.js';
import { activation, attentionInputs, causalAttention, causalMask, isActivation, layerNorm, linear, splitHeads, ACTIVATIONS, type Activation } from './ops.js';
import { HeadedArchitecture, finishBlock, linearLayers, checkSeq, gatherRows, runBlockGraph, tokensOf, weightFeed, type BuiltBlock, type HeadGraph } from './runtime.js';
import type { Architecture, BlockResult, LinearLayer, ModelSpec, TensorSource, Weights } from './types.js';

/** nn.LayerNorm's default epsilon; OPT's config has no field for it. */
const LN_EPS = 1e-5;
/** OPTLearnedPositionalEmbedding looks up row position + 2. */
const POSITION_OFFSET = 2;

interface OptOptions {
  /** "model.decoder." or "decoder.". */
  prefix: string;
  /** The token embedding table: embed_tokens, or lm_head.weight when tied and only that is stored. */
  tokenTable: string;
  /** word_embed_proj_dim: width of embed_tokens and of the LM head rows. */
  embedDim: number;
  preLN: boolean;
  finalNorm: boolean;
  bias: boolean;
  /** layer_norm_elementwise_affine: LayerNorms have weight and bias tensors. */
  affine: boolean;
  act: Activation;
}

/**
 * Missing config keys take OPTConfig's class defaults (transformers 4 leaves out keys equal to them).
 * `tensors` (the checkpoint's names) decides between the naming variants above; without it the
 * OPTForCausalLM names are assumed.
 */
export function createOpt(config: Record<string, unknown>, configPath: string, tensors?: Pick<TensorSource, 'has'>): Architecture {
  const c = new ConfigReader(config, configPath);
  const modelType = c.str('model_type', 'opt');
  if (modelType !== 'opt') throw c.error('model_type', `"${modelType}" is not an OPT model`);
  const hiddenSize = c.int(['hidden_size', 'd_model'], 768);
  const numHeads = c.int('num_attention_heads', 12);
  if (hiddenSize % numHeads !== 0) throw c.error('num_attention_heads', `(${numHeads}) must divide the hidden size (${hiddenSize})`);
  const act = c.str('activation_function', 'relu');
  if (!isActivation(act)) throw c.error('activation_function', `"${act}" is not supported (supported: ${ACTIVATIONS.join(', ')})`);
  const preLN = c.bool('do_layer_norm_before', true);
  const tieWordEmbeddings = c.bool('tie_word_embeddings', true);
  const prefix = tensors && !tensors.has('model.decoder.layers.0.fc1.weight') && tensors.has('decoder.layers.0.fc1.weight') ? 'decoder.' : 'model.decoder.';
  let tokenTable = `${prefix}embed_tokens.weight`;
  if (tieWordEmbeddings && tensors && !tensors.has(tokenTable) && tensors.has('lm_head.weight')) tokenTable = 'lm_head.weight';
  const opts: OptOptions = {
    prefix,
    tokenTable,
    embedDim: c.int('word_embed_proj_dim', hiddenSize),
    preLN,
    finalNorm: preLN && !c.bool('_remove_final_layer_norm', false),
    bias: c.bool('enable_bias', true),
    affine: c.bool('layer_norm_elementwise_affine', true),
    act,
  };
  const spec: ModelSpec = {
    family: 'opt',
    modelType,
    hiddenSize,
    numLayers: c.int('num_hidden_layers', 12),
    numHeads,
    numKvHeads: numHeads,
    headDim: hiddenSize / numHeads,
    intermediateSize: c.int('ffn_dim', 3072),
    vocabSize: c.int('vocab_size', 50272),
    maxPositions: c.int('max_position_embeddings', 2048),
    tieWordEmbeddings,
    bosTokenId: c.has('bos_token_id') ? c.tokenId('bos_token_id') : 2,
    eosTokenId: c.has('eos_token_id') ? c.tokenId('eos_token_id') : 2,
    dtype: c.dtype(),
  };
  return new OptArchitecture(spec, opts);
}

/** Graph input names of the block's linear layers, by layer name. */
const SHORT: Record<string, string> = {
  'self_attn.q_proj': 'q',
  'self_attn.k_proj': 'k',
  'self_attn.v_proj': 'v',
  'self_attn.out_proj': 'o',
  fc1: 'fc1',
  fc2: 'fc2',
};

class OptArchitecture extends HeadedArchitecture implements Architecture {
  private readonly key: string;
  protected readonly head: HeadGraph;
  private readonly names: { tokens: string; positions: string; projectIn: string; projectOut: string; finalW: string; finalB: string };

  constructor(
    readonly spec: ModelSpec,
    private readonly o: OptOptions,
  ) {
    super();
    const s = spec;
    const d = o.prefix;
    this.names = {
      tokens: o.tokenTable,
      positions: `${d}embed_positions.weight`,
      projectIn: `${d}project_in.weight`,
      projectOut: `${d}project_out.weight`,
      finalW: `${d}final_layer_norm.weight`,
      finalB: `${d}final_layer_norm.bias`,
    };
    this.key = `opt|h${s.hiddenSize}|i${s.intermediateSize}|H${s.numHeads}|pre${+o.preLN}|b${+o.bias}|a${+o.affine}|${o.act}`;
    const projected = o.embedDim !== s.hiddenSize;
    this.head = {
      key: `opt-head|h${s.hiddenSize}|e${o.embedDim}|v${s.vocabSize}|n${+o.finalNorm}|a${+o.affine}`,
      hidden: s.hiddenSize,
      vocab: s.vocabSize,
      headWeight: s.tieWordEmbeddings ? this.names.tokens : 'lm_head.weight',
      headWidth: o.embedDim,
      final: (g, x) => {
        let y = x;
        if (o.finalNorm) y = this.layerNorm(g, y, 'final_ln');
        if (projected) y = linear(g, y, g.input('project_out', 'float32', [o.embedDim, s.hiddenSize]));
        return y;
      },
      finalFeeds: (w) => {
        const feeds: Feeds = {};
        if (o.finalNorm && o.affine) {
          feeds['final_ln.w'] = weightFeed(w, this.names.finalW, [s.hiddenSize]);
          feeds['final_ln.b'] = weightFeed(w, this.names.finalB, [s.hiddenSize]);
        }
        if (projected) feeds.project_out = weightFeed(w, this.names.projectOut, [o.embedDim, s.hiddenSize]);
        return feeds;
      },
    };
  }

  /** LayerNorm over the hidden width with inputs `${name}.w`/`${name}.b`, or a unit gain when not affine. */
  private layerNorm(g: GraphBuilder, x: string, name: string): string {
    const h = this.spec.hiddenSize;
    if (this.o.affine) return layerNorm(g, x, g.input(`${name}.w`, 'float32', [h]), g.input(`${name}.b`, 'float32', [h]), LN_EPS);
    const ones = g.constant({ type: 'float32', dims: [h], data: new Float32Array(h).fill(1) }, 'ones');
    return layerNorm(g, x, ones, undefined, LN_EPS);
  }

  private p(i: number): string {
    if (!Number.isInteger(i) || i < 0 || i >= this.spec.numLayers) throw new Error(`block ${i} is outside 0..${this.spec.numLayers - 1}`);
    return `${this.o.prefix}layers.${i}.`;
  }

  linears(i: number): LinearLayer[] {
    const { hiddenSize: h, intermediateSize: m } = this.spec;
    return linearLayers(this.p(i), false, [
      ['self_attn.q_proj', h, h, 'attn_in', 0],
      ['self_attn.k_proj', h, h, 'attn_in', 0],
      ['self_attn.v_proj', h, h, 'attn_in', 0],
      ['self_attn.out_proj', h, h, 'o_in', 1],
      ['fc1', m, h, 'mlp_in', 2],
      ['fc2', h, m, 'down_in', 3],
    ]);
  }

  blockTensors(i: number): string[] {
    const p = this.p(i);
    const names: string[] = [];
    if (this.o.affine) {
      for (const ln of ['self_attn_layer_norm', 'final_layer_norm']) names.push(`${p}${ln}.weight`, `${p}${ln}.bias`);
    }
    for (const l of this.linears(i)) {
      names.push(l.tensor);
      if (this.o.bias) names.push(`${p}${l.name}.bias`);
    }
    return names;
  }

  embedTensors(): string[] {
    const names = [this.names.tokens, this.names.positions];
    if (this.o.embedDim !== this.spec.hiddenSize) names.push(this.names.projectIn);
    return names;
  }

  headTensors(): string[] {
    const names: string[] = [];
    if (this.o.finalNorm && this.o.affine) names.push(this.names.finalW, this.names.finalB);
    if (this.o.embedDim !== this.spec.hiddenSize) names.push(this.names.projectOut);
    names.push(this.head.headWeight);
    return names;
  }

  /** embed_tokens[id] (· project_inᵀ) + embed_positions[position + 2], positions 0..seq-1 in every window. */
  async embed(w: Weights, ids: Int32Array, seq: number): Promise<Float32Array> {
    if (ids.length % seq !== 0) throw new Error(`${ids.length} ids are not whole windows of ${seq}`);
    checkSeq(seq, this.spec.maxPositions, 'max_position_embeddings');
    const h = this.spec.hiddenSize;
    const e = this.o.embedDim;
    const table = w.get(this.names.tokens);
    const positions = w.get(this.names.positions);
    if (!table || !positions) throw new Error(`${this.names.tokens} / ${this.names.positions} were not loaded`);
    if (table.length % e !== 0) throw new ShearsError(`${this.names.tokens} has ${table.length} values, not rows of word_embed_proj_dim ${e}`);
    if (positions.length < (seq + POSITION_OFFSET) * h) {
      throw new ShearsError(`${this.names.positions} has ${positions.length / h} rows, fewer than the ${seq + POSITION_OFFSET} a window of ${seq} needs`);
    }
    const tokens = gatherRows(table, e, ids);
    const out = e === h ? tokens : await this.projectIn(w, tokens, ids.length);
    for (let t = 0; t < ids.length; t++) {
      const row = t * h;
      const pos = ((t % seq) + POSITION_OFFSET) * h;
      for (let j = 0; j < h; j++) out[row + j] += positions[pos + j];
    }
    return out;
  }

  /** tokens [n, embedDim] · project_inᵀ → [n, hidden]; a matmul too large for a JS loop at real sizes. */
  private async projectIn(w: Weights, tokens: Float32Array, n: number): Promise<Float32Array> {
    const h = this.spec.hiddenSize;
    const e = this.o.embedDim;
    const s = await session(`opt-project-in|e${e}|h${h}`, () => {
      const g = new GraphBuilder('opt_project_in');
      const x = g.input('x', 'float32', ['n', e]);
      g.output(linear(g, x, g.input('w', 'float32', [h, e])), 'float32', ['n', h], 'y');
      return g.toBytes();
    });
    const out = new Float32Array(n * h);
    await run(s, { x: tensor(tokens, [n, e]), w: weightFeed(w, this.names.projectIn, [h, e]) }, { y: tensor(out, [n, h]) });
    return out;
  }

  private build(capture: boolean): BuiltBlock {
    const { hiddenSize: h, intermediateSize: m, numHeads: H, headDim: D } = this.spec;
    const o = this.o;
    const g = new GraphBuilder('opt_block');
    const x = g.input('x', 'float32', ['tokens', h]);
    const att = attentionInputs(g);
    const lin = (input: string, name: string, rows: number, cols: number) =>
      linear(g, input, g.input(`${name}.w`, 'float32', [rows, cols]), o.bias ? g.input(`${name}.b`, 'float32', [rows]) : undefined);
    const heads = (t: string) => splitHeads(g, t, att.seq, H, D);

    const attnIn = o.preLN ? this.layerNorm(g, x, 'ln1') : x;
    const q = heads(lin(attnIn, 'q', h, h));
    const k = heads(lin(attnIn, 'k', h, h));
    const v = heads(lin(attnIn, 'v', h, h));
    const oIn = causalAttention(g, q, k, v, att.mask, { numHeads: H, numKvHeads: H, headDim: D });
    let hMid = g.op('Add', [x, lin(oIn, 'o', h, h)]);
    if (!o.preLN) hMid = this.layerNorm(g, hMid, 'ln1');
    const mlpIn = o.preLN ? this.layerNorm(g, hMid, 'ln2') : hMid;
    const downIn = activation(g, lin(mlpIn, 'fc1', m, h), o.act);
    let out = g.op('Add', [hMid, lin(downIn, 'fc2', h, m)]);
    if (!o.preLN) out = this.layerNorm(g, out, 'ln2');

    return finishBlock(g, x, out, h, capture, { attn_in: [attnIn, h], o_in: [oIn, h], mlp_in: [mlpIn, h], down_in: [downIn, m] });
  }

  async runBlock(i: number, w: Weights, x: Float32Array, seq: number, capture: boolean, out?: Float32Array | null): Promise<BlockResult> {
    const { hiddenSize: h, intermediateSize: m } = this.spec;
    const tokens = tokensOf(x, h, seq);
    const p = this.p(i);
    const feeds: Feeds = {
      x: tensor(x, [tokens, h]),
      mask: tensor(causalMask(seq), [seq, seq]),
    };
    if (this.o.affine) {
      feeds['ln1.w'] = weightFeed(w, `${p}self_attn_layer_norm.weight`, [h]);
      feeds['ln1.b'] = weightFeed(w, `${p}self_attn_layer_norm.bias`, [h]);
      feeds['ln2.w'] = weightFeed(w, `${p}final_layer_norm.weight`, [h]);
      feeds['ln2.b'] = weightFeed(w, `${p}final_layer_norm.bias`, [h]);
    }
    for (const l of this.linears(i)) {
      feeds[`${SHORT[l.name]}.w`] = weightFeed(w, l.tensor, [l.rows, l.cols]);
      if (this.o.bias) feeds[`${SHORT[l.name]}.b`] = weightFeed(w, `${p}${l.name}.bias`, [l.rows]);
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
