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
import { ConfigReader } from './config.js';
import { linearDefs, normDefs, plainMlp, residualBlock, type BlockGraph, type BlockLayout, type BlockOutputs, type Branch } from './block-graph.js';
import { DecoderArchitecture } from './decoder.js';
import { isActivation, layerNorm, ACTIVATIONS, type Activation } from './ops.js';
import { readRope, type Rope } from './rope.js';
import { checkSeq, embedRows, weightFeed, type HeadGraph } from './runtime.js';
import type { Architecture, ModelSpec, TensorSource, Weights } from './types.js';

interface NeoxOptions {
  /** "gpt_neox." or "". */
  prefix: string;
  eps: number;
  act: Activation;
  parallel: boolean;
  /** attention_bias: query_key_value and dense have biases (the MLP always has). */
  attnBias: boolean;
  rope: Rope;
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

  const maxPositions = c.int('max_position_embeddings', 2048);
  const rope = readRope(c, {
    headDim,
    defaultTheta: c.positive('rotary_emb_base', 10000),
    maxPositions,
    partialRotary: c.has('rotary_pct') ? { value: c.fraction('rotary_pct', 0.25), field: 'rotary_pct' } : undefined,
    defaultPartialRotary: 0.25,
  });

  const prefix = tensors && !tensors.has('gpt_neox.layers.0.mlp.dense_h_to_4h.weight') && tensors.has('layers.0.mlp.dense_h_to_4h.weight') ? '' : 'gpt_neox.';
  const opts: NeoxOptions = {
    prefix,
    eps: c.positive('layer_norm_eps', 1e-5),
    act,
    parallel: c.bool('use_parallel_residual', true),
    attnBias: c.bool('attention_bias', true),
    rope,
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
    maxPositions,
    tieWordEmbeddings: c.bool('tie_word_embeddings', false),
    bosTokenId: c.has('bos_token_id') ? c.tokenId('bos_token_id') : 0,
    eosTokenId: c.has('eos_token_id') ? c.tokenId('eos_token_id') : 2,
    dtype: c.dtype(),
  };
  return new GptNeoxArchitecture(spec, opts);
}

class GptNeoxArchitecture extends DecoderArchitecture {
  protected readonly head: HeadGraph;
  private readonly blockLayout: BlockLayout;
  private readonly embedIn: string;
  private readonly finalNorm: { w: string; b: string };

  constructor(
    readonly spec: ModelSpec,
    private readonly o: NeoxOptions,
  ) {
    super();
    const s = spec;
    const { hiddenSize: h, intermediateSize: m } = s;
    this.embedIn = `${o.prefix}embed_in.weight`;
    const finalNorm = { w: `${o.prefix}final_layer_norm.weight`, b: `${o.prefix}final_layer_norm.bias` };
    this.finalNorm = finalNorm;
    this.blockLayout = {
      key: `gpt_neox|h${h}|i${m}|H${s.numHeads}|r${o.rope.rotaryDim}|eps${o.eps}|${o.act}|par${+o.parallel}|b${+o.attnBias}`,
      headDim: s.headDim,
      rotaryDim: o.rope.rotaryDim,
      norms: normDefs(['input_layernorm', 'post_attention_layernorm'], h, true),
      linears: linearDefs([
        ['attention.query_key_value', 3 * h, h, 'attn_in', 0, o.attnBias],
        ['attention.dense', h, h, 'o_in', 1, o.attnBias],
        ['mlp.dense_h_to_4h', m, h, 'mlp_in', 2, true],
        ['mlp.dense_4h_to_h', h, m, 'down_in', 3, true],
      ]),
    };
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

  protected blockPrefix(i: number): string {
    return `${this.o.prefix}layers.${i}.`;
  }

  protected layout(): BlockLayout {
    return this.blockLayout;
  }

  protected override rope(_i: number, seq: number): { cos: Float32Array; sin: Float32Array } {
    return this.o.rope.tables(seq);
  }

  embedTensors(): string[] {
    return [this.embedIn];
  }

  headTensors(): string[] {
    return [this.finalNorm.w, this.finalNorm.b, this.head.headWeight];
  }

  async embed(w: Weights, ids: Int32Array, seq: number): Promise<Float32Array> {
    checkSeq(seq, this.spec.maxPositions, 'max_position_embeddings');
    return embedRows(w, this.embedIn, this.spec.hiddenSize, ids, seq);
  }

  protected body(b: BlockGraph): BlockOutputs {
    const { numHeads: H, headDim: D } = this.spec;
    const o = this.o;
    const attention = (a: string): Branch => {
      const [q, k, v] = b.splitPerHead(b.linear(a, 'attention.query_key_value'), H, [D, D, D]);
      const oIn = b.attention(b.rotary(q), b.rotary(k), v, { numHeads: H, numKvHeads: H, headDim: D });
      return { out: b.linear(oIn, 'attention.dense'), inputs: { o_in: oIn } };
    };
    return residualBlock(b, {
      norm1: (x) => b.layerNorm(x, 'input_layernorm', o.eps),
      attention,
      norm2: (x) => b.layerNorm(x, 'post_attention_layernorm', o.eps),
      mlp: (x) => plainMlp(b, x, { up: 'mlp.dense_h_to_4h', down: 'mlp.dense_4h_to_h', act: o.act }),
      parallel: o.parallel,
    });
  }
}
