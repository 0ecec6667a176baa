/**
 * Phi-3 and Phi-4 (`phi3`: microsoft/Phi-3-*, Phi-3.5-mini, Phi-4, Phi-4-mini; HF Phi3ForCausalLM). The Llama
 * block (llama.ts: embedding, RMSNorms, head) with two fused projections, HF semantics (modeling_phi3.py):
 *   qkv = qkv_proj(n1)            [T, (H + 2·KV)·D], columns q | k | v (q: the first H·D, then k, then v)
 *   h   = x + o_proj(attn(rope(q), rope(k), v))                     n1 = RMSNorm(x)
 *   g|u = gate_up_proj(n2)        [T, 2·I], columns gate | up (HF's chunk(2): gate first)
 *   out = h + down_proj(act(g) · u)                                  n2 = RMSNorm(h)
 * No biases; resid/embd dropout are training-only and ignored. RoPE (rope.ts) is rotate_half on the first
 * int(head_dim · partial_rotary_factor) dims of each head (Phi-4-mini: 0.75), the rest pass through; the
 * "longrope" of Phi-3-*-128k, Phi-3.5 and Phi-4-mini picks short_factor or long_factor by the window length
 * against original_max_position_embeddings, as HF does. Phi3Config renames the older rope types "su" and
 * "yarn" to "longrope" (Phi-3-mini-128k's first config said "su"), so they are read as longrope here.
 * sliding_window, when set, limits every layer's attention (HF builds the sliding-window mask for all layers
 * whenever config.sliding_window is not null).
 * The fused matrices are pruned as stored: all their rows read the same input, so one statistic (Gram
 * matrix, column norms) serves the whole matrix, and the output keeps qkv_proj / gate_up_proj as HF has them.
 * Structured removal: --channels cuts channel j's row from both parts of gate_up_proj (src/structured/block.ts
 * treats an MLP input with k·intermediate rows as k stacked parts) and writes intermediate_size; --heads is
 * refused, since a head's rows sit in the q part and, for whole KV groups, in the k and v parts of qkv_proj.
 */
import { ConfigReader, readHeads } from './config.js';
import { gatedMlp, linearDefs, normDefs, residualBlock, type BlockGraph, type BlockLayout, type BlockOutputs, type Branch } from './block-graph.js';
import { LlamaArchitecture, type LlamaOptions } from './llama.js';
import { isActivation, ACTIVATIONS } from './ops.js';
import { readRope } from './rope.js';
import type { Architecture, ModelSpec } from './types.js';

/** Missing keys take Phi3Config's defaults (the Phi-3-mini-4k shape). */
export function createPhi3(config: Record<string, unknown>, configPath: string): Architecture {
  const c = new ConfigReader(config, configPath);
  const modelType = c.str('model_type');
  if (modelType !== 'phi3') throw c.error('model_type', `"${modelType}" is not a Phi-3 model`);
  const hiddenSize = c.int('hidden_size', 3072);
  const withHeads = new ConfigReader({ num_attention_heads: 32, ...config }, configPath);
  const heads = readHeads(withHeads, hiddenSize, { heads: 'num_attention_heads', kvHeads: 'num_key_value_heads', headDim: 'head_dim' });
  const act = c.str('hidden_act', 'silu');
  if (!isActivation(act)) throw c.error('hidden_act', `"${act}" is not supported (supported: ${ACTIVATIONS.join(', ')})`);
  const maxPositions = c.int('max_position_embeddings', 4096);
  // original_max_position_embeddings is a Phi3Config field (default 4096), so HF's longrope always finds it.
  const ropeConfig = withLongropeNames({ original_max_position_embeddings: 4096, ...config });
  const rope = readRope(new ConfigReader(ropeConfig, configPath), { headDim: heads.headDim, defaultTheta: 10000, maxPositions });
  if (rope.type !== 'default' && rope.type !== 'longrope') {
    // Phi3Config refuses to load any other type, so no Phi-3 checkpoint was trained with one.
    throw c.error(c.has('rope_parameters') ? 'rope_parameters' : 'rope_scaling', `rope type "${rope.type}" is not one Phi-3 uses (Phi3Config accepts "default" and "longrope")`);
  }
  const spec: ModelSpec = {
    family: 'phi3',
    modelType,
    hiddenSize,
    numLayers: c.int('num_hidden_layers', 32),
    ...heads,
    intermediateSize: c.int('intermediate_size', 8192),
    vocabSize: c.int('vocab_size', 32064),
    maxPositions,
    tieWordEmbeddings: c.bool('tie_word_embeddings', false),
    bosTokenId: c.has('bos_token_id') ? c.tokenId('bos_token_id') : 1,
    eosTokenId: c.has('eos_token_id') ? c.tokenId('eos_token_id') : 32000,
    dtype: c.dtype(),
  };
  const window = c.has('sliding_window') ? c.int('sliding_window') : undefined;
  return new Phi3Architecture(spec, { eps: c.positive('rms_norm_eps', 1e-5), act, rope, qkvBias: false, oBias: false, mlpBias: false, qkNorm: false, windows: () => window });
}

/** config with Phi3Config's renaming applied: rope type "su" or "yarn" (either config style) is "longrope". */
function withLongropeNames(config: Record<string, unknown>): Record<string, unknown> {
  const rename = (o: unknown, key: string): unknown => {
    if (typeof o !== 'object' || o === null || Array.isArray(o)) return o;
    const v = (o as Record<string, unknown>)[key];
    return v === 'su' || v === 'yarn' ? { ...o, [key]: 'longrope' } : o;
  };
  const scaling = rename(rename(config.rope_scaling, 'type'), 'rope_type');
  const params = rename(config.rope_parameters, 'rope_type');
  return scaling === config.rope_scaling && params === config.rope_parameters ? config : { ...config, rope_scaling: scaling, rope_parameters: params };
}

/** Llama's decoder (embedding, head, windows, RoPE) with the fused layout, attention and MLP. */
class Phi3Architecture extends LlamaArchitecture {
  private readonly phi3Layout: BlockLayout;

  constructor(spec: ModelSpec, o: LlamaOptions) {
    super(spec, o);
    const { hiddenSize: h, intermediateSize: m, numHeads: H, numKvHeads: KV, headDim: D } = spec;
    this.phi3Layout = {
      key: `phi3|h${h}|i${m}|H${H}|kv${KV}|d${D}|r${o.rope.rotaryDim}|eps${o.eps}|${o.act}`,
      headDim: D,
      rotaryDim: o.rope.rotaryDim,
      norms: normDefs(['input_layernorm', 'post_attention_layernorm'], h, false),
      linears: linearDefs([
        ['self_attn.qkv_proj', (H + 2 * KV) * D, h, 'attn_in', 0, false],
        ['self_attn.o_proj', h, H * D, 'o_in', 1, false],
        ['mlp.gate_up_proj', 2 * m, h, 'mlp_in', 2, false],
        ['mlp.down_proj', h, m, 'down_in', 3, false],
      ]),
    };
  }

  protected override layout(): BlockLayout {
    return this.phi3Layout;
  }

  protected override attention(b: BlockGraph, a: string): Branch {
    const { numHeads: H, numKvHeads: KV, headDim: D } = this.spec;
    const [q, k, v] = b.splitColumns(b.linear(a, 'self_attn.qkv_proj'), [H * D, KV * D, KV * D]);
    const oIn = b.attention(b.rotary(b.heads(q, H)), b.rotary(b.heads(k, KV)), b.heads(v, KV), { numHeads: H, numKvHeads: KV, headDim: D });
    return { out: b.linear(oIn, 'self_attn.o_proj'), inputs: { o_in: oIn } };
  }

  protected override body(b: BlockGraph): BlockOutputs {
    const o = this.lo;
    return residualBlock(b, {
      norm1: (x) => b.rmsNorm(x, 'input_layernorm', o.eps),
      attention: (a) => this.attention(b, a),
      norm2: (x) => b.rmsNorm(x, 'post_attention_layernorm', o.eps),
      mlp: (x) => gatedMlp(b, x, { gateUp: 'mlp.gate_up_proj', down: 'mlp.down_proj', act: o.act, width: this.spec.intermediateSize }),
    });
  }
}
