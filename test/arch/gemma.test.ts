/**
 * Gemma adapter (gemma, gemma2, gemma3_text) vs the float64 reference of gemma-reference.ts, written from HF's
 * modeling_gemma.py / modeling_gemma2.py / modeling_gemma3.py, on tiny random checkpoints whose config.json
 * (transformers 4 and 5 styles) and tensor names are HF's; one BF16 checkpoint per model type. Sliding windows
 * (3 or 4) are shorter than the 7-token windows fed, soft-caps small enough to bend the scores, and
 * head_dim · heads ≠ hidden_size, so that each Gemma-specific step shows in the logits.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createGemma } from '../../src/arch/gemma.js';
import { setChunkScoreBytes } from '../../src/arch/ops.js';
import { architectureFor } from '../../src/arch/registry.js';
import type { Weights } from '../../src/arch/types.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { gemmaCheckpoint, refBlock, refEmbed, refHead, toBf16, writeFolder, type Dims, type GemmaType, type RefModel } from './gemma-reference.js';
import { randomIds, relErr, rng } from './reference.js';

const VOCAB = 50;
const tmp = mkdtempSync(join(tmpdir(), 'shears-gemma-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Case {
  label: string;
  type: GemmaType;
  dims: Dims;
  dtype: 'F32' | 'BF16';
  attentionBias?: boolean;
  config: Record<string, unknown>;
  /** What the reference must do, written out from the config by hand. */
  ref: Omit<RefModel, 'w' | 'type' | 'd'>;
}

const inf = Infinity;
const CASES: Case[] = [
  {
    label: 'gemma, transformers 4 config (legacy hidden_act "gelu" next to hidden_activation), MQA, head_dim·heads ≠ hidden, F32',
    type: 'gemma',
    dims: { hidden: 48, heads: 4, kvHeads: 1, headDim: 16, inter: 96, layers: 2, vocab: VOCAB },
    dtype: 'F32',
    config: { architectures: ['GemmaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 2, eos_token_id: 1, head_dim: 16, hidden_act: 'gelu', hidden_activation: 'gelu_pytorch_tanh', hidden_size: 48, initializer_range: 0.02, intermediate_size: 96, max_position_embeddings: 8192, model_type: 'gemma', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 1, pad_token_id: 0, rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 10000.0, torch_dtype: 'float32', transformers_version: '4.38.0', use_cache: true, vocab_size: VOCAB },
    ref: { eps: 1e-6, activation: 'gelu_pytorch_tanh', scale: 16 ** -0.5, normalizer: Math.fround(Math.sqrt(48)), window: () => inf, rope: () => ({ theta: 10000, factor: 1 }) },
  },
  {
    label: 'gemma, transformers 5 config (dtype, rope_parameters, no hidden_activation), attention biases, BF16',
    type: 'gemma',
    dims: { hidden: 32, heads: 2, kvHeads: 2, headDim: 16, inter: 64, layers: 2, vocab: VOCAB },
    dtype: 'BF16',
    attentionBias: true,
    config: { architectures: ['GemmaForCausalLM'], attention_bias: true, head_dim: 16, hidden_size: 32, intermediate_size: 64, model_type: 'gemma', num_attention_heads: 2, num_hidden_layers: 2, num_key_value_heads: 2, rms_norm_eps: 1e-5, rope_parameters: { rope_type: 'default', rope_theta: 500.0 }, dtype: 'bfloat16', tie_word_embeddings: true, transformers_version: '5.0.0', vocab_size: VOCAB },
    // √32 = 5.657 is 5.65625 in bfloat16.
    ref: { eps: 1e-5, activation: 'gelu_pytorch_tanh', scale: 16 ** -0.5, normalizer: toBf16(Math.sqrt(32)), window: () => inf, rope: () => ({ theta: 500, factor: 1 }) },
  },
  {
    label: 'gemma2, transformers 4 config (no layer_types: even layers slide), query_pre_attn_scalar ≠ head_dim, both soft-caps, F32',
    type: 'gemma2',
    dims: { hidden: 32, heads: 4, kvHeads: 2, headDim: 8, inter: 64, layers: 3, vocab: VOCAB },
    dtype: 'F32',
    config: { architectures: ['Gemma2ForCausalLM'], attention_bias: false, attention_dropout: 0.0, attn_logit_softcapping: 1.5, bos_token_id: 2, cache_implementation: 'hybrid', eos_token_id: 1, final_logit_softcapping: 2.0, head_dim: 8, hidden_act: 'gelu_pytorch_tanh', hidden_activation: 'gelu_pytorch_tanh', hidden_size: 32, initializer_range: 0.02, intermediate_size: 64, max_position_embeddings: 8192, model_type: 'gemma2', num_attention_heads: 4, num_hidden_layers: 3, num_key_value_heads: 2, pad_token_id: 0, query_pre_attn_scalar: 20, rms_norm_eps: 1e-6, rope_theta: 10000.0, sliding_window: 4, torch_dtype: 'float32', transformers_version: '4.42.0', use_cache: true, vocab_size: VOCAB },
    ref: { eps: 1e-6, activation: 'gelu_pytorch_tanh', scale: 20 ** -0.5, attnCap: 1.5, finalCap: 2, normalizer: Math.fround(Math.sqrt(32)), window: (i) => (i % 2 === 0 ? 4 : inf), rope: () => ({ theta: 10000, factor: 1 }) },
  },
  {
    label: 'gemma2, transformers 5 config (layer_types, rope_parameters, final_logit_softcapping null, default attention cap 50), BF16',
    type: 'gemma2',
    dims: { hidden: 24, heads: 2, kvHeads: 1, headDim: 16, inter: 48, layers: 3, vocab: VOCAB },
    dtype: 'BF16',
    config: { architectures: ['Gemma2ForCausalLM'], head_dim: 16, hidden_activation: 'gelu_pytorch_tanh', hidden_size: 24, intermediate_size: 48, layer_types: ['full_attention', 'sliding_attention', 'sliding_attention'], model_type: 'gemma2', num_attention_heads: 2, num_hidden_layers: 3, num_key_value_heads: 1, final_logit_softcapping: null, query_pre_attn_scalar: 16, rope_parameters: { rope_type: 'default', rope_theta: 10000.0 }, sliding_window: 3, dtype: 'bfloat16', transformers_version: '5.0.0', vocab_size: VOCAB },
    ref: { eps: 1e-6, activation: 'gelu_pytorch_tanh', scale: 16 ** -0.5, attnCap: 50, normalizer: toBf16(Math.sqrt(24)), window: (i) => (i === 0 ? inf : 3), rope: () => ({ theta: 10000, factor: 1 }) },
  },
  {
    label: 'gemma3_text, transformers 4 config (sliding_window_pattern 3, rope_local_base_freq, linear rope_scaling on full layers), F32',
    type: 'gemma3_text',
    dims: { hidden: 32, heads: 4, kvHeads: 2, headDim: 16, inter: 64, layers: 3, vocab: VOCAB },
    dtype: 'F32',
    config: { architectures: ['Gemma3ForCausalLM'], attention_bias: false, attention_dropout: 0.0, attn_logit_softcapping: null, bos_token_id: 2, cache_implementation: 'hybrid', eos_token_id: 1, final_logit_softcapping: null, head_dim: 16, hidden_activation: 'gelu_pytorch_tanh', hidden_size: 32, initializer_range: 0.02, intermediate_size: 64, max_position_embeddings: 32768, model_type: 'gemma3_text', num_attention_heads: 4, num_hidden_layers: 3, num_key_value_heads: 2, pad_token_id: 0, query_pre_attn_scalar: 16, rms_norm_eps: 1e-6, rope_local_base_freq: 10000, rope_scaling: { factor: 8.0, rope_type: 'linear' }, rope_theta: 1000000, sliding_window: 4, sliding_window_pattern: 3, torch_dtype: 'float32', transformers_version: '4.50.0', use_cache: true, vocab_size: VOCAB },
    ref: { eps: 1e-6, activation: 'gelu_pytorch_tanh', scale: 16 ** -0.5, normalizer: Math.fround(Math.sqrt(32)), window: (i) => (i === 2 ? inf : 4), rope: (i) => (i === 2 ? { theta: 1e6, factor: 8 } : { theta: 10000, factor: 1 }) },
  },
  {
    label: 'gemma3_text, transformers 5 config (layer_types, rope_parameters per attention type, attention soft-cap), BF16',
    type: 'gemma3_text',
    dims: { hidden: 48, heads: 2, kvHeads: 1, headDim: 32, inter: 64, layers: 3, vocab: VOCAB },
    dtype: 'BF16',
    config: { architectures: ['Gemma3ForCausalLM'], attn_logit_softcapping: 2.0, head_dim: 32, hidden_size: 48, intermediate_size: 64, layer_types: ['sliding_attention', 'full_attention', 'sliding_attention'], model_type: 'gemma3_text', num_attention_heads: 2, num_hidden_layers: 3, num_key_value_heads: 1, query_pre_attn_scalar: 32, rope_parameters: { full_attention: { rope_type: 'linear', factor: 4.0, rope_theta: 1000000.0 }, sliding_attention: { rope_type: 'default', rope_theta: 10000.0 } }, sliding_window: 3, dtype: 'bfloat16', transformers_version: '5.0.0', use_bidirectional_attention: false, vocab_size: VOCAB },
    ref: { eps: 1e-6, activation: 'gelu_pytorch_tanh', scale: 32 ** -0.5, attnCap: 2, normalizer: toBf16(Math.sqrt(48)), window: (i) => (i === 1 ? inf : 3), rope: (i) => (i === 1 ? { theta: 1e6, factor: 4 } : { theta: 10000, factor: 1 }) },
  },
];

describe('gemma adapter', () => {
  it.each(CASES)('$label: embeddings, blocks, captured inputs and logits match float64', async (c) => {
    const dir = mkdtempSync(join(tmp, 'model-'));
    writeFolder(dir, gemmaCheckpoint(c.type, c.dims, c.dims.hidden + c.dims.layers, c.attentionBias), c.config, c.dtype);
    const ckpt = Checkpoint.openFolder(dir);
    try {
      const arch = architectureFor(ckpt.config, join(dir, 'config.json'), ckpt);
      const d = c.dims;
      expect(arch.spec).toMatchObject({ family: 'gemma', modelType: c.type, hiddenSize: d.hidden, numHeads: d.heads, numKvHeads: d.kvHeads, headDim: d.headDim, numLayers: d.layers, intermediateSize: d.inter, tieWordEmbeddings: true });
      expect(arch.headLinear()).toMatchObject({ tensor: 'model.embed_tokens.weight', tied: true });
      const load = (names: string[]): Weights => new Map(names.map((n) => [n, ckpt.readFloat32(n)]));
      // The reference reads the same (BF16-rounded) values.
      const m: RefModel = { w: (n) => ckpt.readFloat32(n), type: c.type, d, attentionBias: c.attentionBias, ...c.ref };
      const seq = 7;
      const ids = randomIds(rng(d.hidden + 20), 3 * seq, VOCAB);
      let x = await arch.embed(load(arch.embedTensors()), ids, seq);
      let ref = refEmbed(m, ids);
      expect(relErr(x, ref)).toBeLessThanOrEqual(1e-6);
      for (let i = 0; i < d.layers; i++) {
        const r = await arch.runBlock(i, load(arch.blockTensors(i)), x, seq, true);
        const e = refBlock(m, i, ref, seq);
        expect(relErr(r.out, e.out), `block ${i}`).toBeLessThanOrEqual(1e-5);
        for (const [id, v] of Object.entries(e.inputs)) expect(relErr(r.inputs[id], v), `block ${i} ${id}`).toBeLessThanOrEqual(1e-5);
        // Sliding windows and score soft-capping with attention in query chunks (what long windows get),
        // forced here at seq 7: the same reference.
        const budget = setChunkScoreBytes(0);
        try {
          expect(relErr((await arch.runBlock(i, load(arch.blockTensors(i)), x, seq, false)).out, e.out), `block ${i}, chunked attention`).toBeLessThanOrEqual(1e-5);
        } finally {
          setChunkScoreBytes(budget);
        }
        x = r.out;
        ref = e.out;
      }
      const logits = await arch.logits(load(arch.headTensors()), x, seq);
      expect(relErr(logits, refHead(m, ref))).toBeLessThanOrEqual(1e-5);
    } finally {
      ckpt.close();
    }
  });

  it('tensor lists and linear layers follow HF names; norms are never prunable', () => {
    const arch = createGemma({ model_type: 'gemma3_text', hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 1, head_dim: 32, intermediate_size: 128, vocab_size: 100 }, 'config.json');
    expect(arch.blockTensors(1).sort()).toEqual(
      [
        'input_layernorm',
        'post_attention_layernorm',
        'pre_feedforward_layernorm',
        'post_feedforward_layernorm',
        'self_attn.q_norm',
        'self_attn.k_norm',
        'self_attn.q_proj',
        'self_attn.k_proj',
        'self_attn.v_proj',
        'self_attn.o_proj',
        'mlp.gate_proj',
        'mlp.up_proj',
        'mlp.down_proj',
      ]
        .map((n) => `model.layers.1.${n}.weight`)
        .sort(),
    );
    expect(arch.linears(1).map((l) => `${l.name}:${l.rows}x${l.cols}:${l.input}:${l.stage}`)).toEqual([
      'self_attn.q_proj:128x64:attn_in:0',
      'self_attn.k_proj:32x64:attn_in:0',
      'self_attn.v_proj:32x64:attn_in:0',
      'self_attn.o_proj:64x128:o_in:1',
      'mlp.gate_proj:128x64:mlp_in:2',
      'mlp.up_proj:128x64:mlp_in:2',
      'mlp.down_proj:64x128:down_in:3',
    ]);
    expect(arch.embedTensors()).toEqual(['model.embed_tokens.weight']);
    expect(arch.headTensors()).toEqual(['model.norm.weight', 'model.embed_tokens.weight']);
    const v1 = createGemma({ model_type: 'gemma', num_hidden_layers: 1 }, 'config.json');
    expect(v1.blockTensors(0).filter((t) => t.includes('norm'))).toEqual(['model.layers.0.input_layernorm.weight', 'model.layers.0.post_attention_layernorm.weight']);
  });

  it('config defaults are each HF config class\'s: head_dim 256, kv heads, vocab, positions, token ids', () => {
    expect(createGemma({ model_type: 'gemma' }, 'c.json').spec).toMatchObject({ hiddenSize: 3072, numLayers: 28, numHeads: 16, numKvHeads: 16, headDim: 256, intermediateSize: 24576, vocabSize: 256000, maxPositions: 8192, bosTokenId: 2, eosTokenId: 1 });
    expect(createGemma({ model_type: 'gemma2' }, 'c.json').spec).toMatchObject({ hiddenSize: 2304, numLayers: 26, numHeads: 8, numKvHeads: 4, headDim: 256, intermediateSize: 9216, vocabSize: 256000, maxPositions: 8192 });
    expect(createGemma({ model_type: 'gemma3_text' }, 'c.json').spec).toMatchObject({ hiddenSize: 2304, numHeads: 8, numKvHeads: 4, headDim: 256, vocabSize: 262208, maxPositions: 131072 });
  });

  it('refuses what it cannot run, naming the file and field', () => {
    expect(() => createGemma({ model_type: 'gemma3_text', use_bidirectional_attention: true }, 'x/config.json')).toThrow('x/config.json: use_bidirectional_attention is true');
    expect(() => createGemma({ model_type: 'gemma3_text', rope_scaling: { rope_type: 'su', factor: 2 } }, 'x/config.json')).toThrow(/x\/config.json: rope_scaling .*is not supported/);
    expect(() => createGemma({ model_type: 'gemma2', num_hidden_layers: 2, layer_types: ['sliding_attention'] }, 'x/config.json')).toThrow('x/config.json: layer_types has 1 entries for 2 layers');
    expect(() => createGemma({ model_type: 'gemma2', num_hidden_layers: 1, layer_types: ['chunked_attention'] }, 'x/config.json')).toThrow(/layer_types has "chunked_attention"/);
    expect(() => createGemma({ model_type: 'gemma', hidden_activation: 'tanh' }, 'x/config.json')).toThrow(/x\/config.json: hidden_activation "tanh" is not supported/);
    expect(() => createGemma({ model_type: 'gemma2', attn_logit_softcapping: -1 }, 'x/config.json')).toThrow('x/config.json: attn_logit_softcapping must be a positive number, got -1');
  });
});
