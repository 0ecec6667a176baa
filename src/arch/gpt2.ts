/**
 * GPT-2 (HF GPT2LMHeadModel). Pre-LayerNorm block with learned positions and no RoPE:
 *   h   = x + attn.c_proj(attn(c_attn(ln_1(x))))      c_attn output = [q | k | v], head j owns cols j·D..
 *   out = h + mlp.c_proj(act(c_fc(ln_2(h))))           act = activation_function (gelu_new by default)
 * The four linear layers are HF Conv1D, stored [in, out] (y = x·W + b), hence `transposed` = true.
 * Tensor names carry a "transformer." prefix in what current HF writes; older Hub files have none.
 */
import { ShearsError } from '../errors.js';
import { ConfigReader, readHeads } from './config.js';
import { linearDefs, normDefs, plainMlp, residualBlock, type BlockGraph, type BlockLayout, type BlockOutputs, type Branch } from './block-graph.js';
import { DecoderArchitecture } from './decoder.js';
import { isActivation, layerNorm, ACTIVATIONS, type Activation } from './ops.js';
import { checkSeq, gatherRows, weightFeed, type HeadGraph } from './runtime.js';
import type { Architecture, ModelSpec, TensorSource, Weights } from './types.js';

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

class Gpt2Architecture extends DecoderArchitecture {
  protected readonly head: HeadGraph;
  private readonly blockLayout: BlockLayout;
  private readonly wte: string;
  private readonly wpe: string;

  constructor(
    readonly spec: ModelSpec,
    private readonly o: Gpt2Options,
  ) {
    super();
    const s = spec;
    const { hiddenSize: h, intermediateSize: m } = s;
    this.blockLayout = {
      key: `gpt2|h${h}|i${m}|H${s.numHeads}|eps${o.eps}|${o.act}|sc${o.scale}`,
      headDim: s.headDim,
      transposed: true,
      norms: normDefs(['ln_1', 'ln_2'], h, true),
      linears: linearDefs([
        ['attn.c_attn', 3 * h, h, 'attn_in', 0, true],
        ['attn.c_proj', h, h, 'o_in', 1, true],
        ['mlp.c_fc', m, h, 'mlp_in', 2, true],
        ['mlp.c_proj', h, m, 'down_in', 3, true],
      ]),
    };
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

  protected blockPrefix(i: number): string {
    return `${this.o.prefix}h.${i}.`;
  }

  protected layout(): BlockLayout {
    return this.blockLayout;
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

  protected body(b: BlockGraph): BlockOutputs {
    const { hiddenSize: h, numHeads: H, headDim: D } = this.spec;
    const o = this.o;
    const attention = (a: string): Branch => {
      const [q, k, v] = b.splitColumns(b.linear(a, 'attn.c_attn'), [h, h, h]).map((t) => b.heads(t, H));
      const oIn = b.attention(q, k, v, { numHeads: H, numKvHeads: H, headDim: D, scale: o.scale });
      return { out: b.linear(oIn, 'attn.c_proj'), inputs: { o_in: oIn } };
    };
    return residualBlock(b, {
      norm1: (x) => b.layerNorm(x, 'ln_1', o.eps),
      attention,
      norm2: (x) => b.layerNorm(x, 'ln_2', o.eps),
      mlp: (x) => plainMlp(b, x, { up: 'mlp.c_fc', down: 'mlp.c_proj', act: o.act }),
    });
  }
}
