/**
 * Llama-family adapter (llama, mistral, qwen2, qwen3) vs the float64 reference in ./reference.ts on tiny
 * random checkpoints held in memory: every block output, the captured linear inputs, logits and nll.
 */
import { describe, expect, it } from 'vitest';
import { createLlama } from '../../src/arch/llama.js';
import type { Architecture } from '../../src/arch/types.js';
import { expectMatchesReference, llamaCheckpoint, type LlamaCase } from './llama-reference.js';
import { rope } from './reference.js';

const TOL = 1e-5;

const base = {
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 50,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-6,
  hidden_act: 'silu',
  torch_dtype: 'float32',
};

const CASES: LlamaCase[] = [
  {
    title: 'qwen2: q/k/v biases, no o bias, untied head',
    config: { ...base, model_type: 'qwen2', rope_theta: 1000000, tie_word_embeddings: false, use_sliding_window: false, sliding_window: 4 },
    qkvBias: true,
    oBias: false,
    mlpBias: false,
    qkNorm: false,
  },
  {
    title: 'qwen3 (transformers 5 config): per-head q/k RMSNorm, head_dim 16 ≠ hidden/heads, tied head',
    config: {
      ...base,
      torch_dtype: undefined,
      dtype: 'bfloat16',
      model_type: 'qwen3',
      head_dim: 16,
      num_key_value_heads: 1,
      rope_parameters: { rope_type: 'default', rope_theta: 5000 },
      tie_word_embeddings: true,
      attention_bias: false,
    },
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    qkNorm: true,
  },
  {
    title: 'mistral: sliding window 3 shorter than the 8-token windows',
    config: { ...base, model_type: 'mistral', rope_theta: 10000, sliding_window: 3, tie_word_embeddings: false },
    qkvBias: false,
    oBias: false,
    mlpBias: false,
    qkNorm: false,
    windows: [3, 3],
  },
  {
    title: 'qwen2 with use_sliding_window: window 3 only from layer max_window_layers = 1 on',
    config: { ...base, model_type: 'qwen2', use_sliding_window: true, sliding_window: 3, max_window_layers: 1 },
    qkvBias: true,
    oBias: false,
    mlpBias: false,
    qkNorm: false,
    windows: [undefined, 3],
  },
  {
    title: 'llama: attention_bias and mlp_bias, gelu_pytorch_tanh, plain multi-head attention',
    config: {
      ...base,
      model_type: 'llama',
      num_key_value_heads: 4,
      attention_bias: true,
      mlp_bias: true,
      hidden_act: 'gelu_pytorch_tanh',
      rope_theta: 500000,
      rope_scaling: null,
    },
    qkvBias: true,
    oBias: true,
    mlpBias: true,
    qkNorm: false,
  },
];

describe.each(CASES)('$title', (c) => {
  it('matches the float64 reference: every block, captured inputs, logits', async () => {
    const ck = llamaCheckpoint(c, 7);
    const arch: Architecture = createLlama(c.config, 'config.json');
    const cfg = c.config as Record<string, unknown>;
    const theta = (cfg.rope_theta ?? (cfg.rope_parameters as { rope_theta?: number } | undefined)?.rope_theta ?? 10000) as number; // HF default 10000
    await expectMatchesReference(c, arch, ck, 8, (x, T, heads, D, seq) => rope(x, T, heads, D, seq, theta), TOL);
  });
});

describe('llama adapter layout', () => {
  it('lists block tensors, linear layers, stages and inputs the way HF names them', () => {
    const arch = createLlama(CASES[0].config, 'config.json');
    const names = arch.linears(1).map((l) => `${l.name}:${l.rows}x${l.cols}:${l.input}:${l.stage}:${l.transposed}`);
    expect(names).toEqual([
      'self_attn.q_proj:32x32:attn_in:0:false',
      'self_attn.k_proj:16x32:attn_in:0:false',
      'self_attn.v_proj:16x32:attn_in:0:false',
      'self_attn.o_proj:32x32:o_in:1:false',
      'mlp.gate_proj:48x32:mlp_in:2:false',
      'mlp.up_proj:48x32:mlp_in:2:false',
      'mlp.down_proj:32x48:down_in:3:false',
    ]);
    expect(arch.linears(1)[0].tensor).toBe('model.layers.1.self_attn.q_proj.weight');
    const ck = llamaCheckpoint(CASES[0], 1);
    expect(arch.blockTensors(1).every((n) => ck.has(n))).toBe(true);
    expect([...ck.tensors.keys()].filter((n) => n.startsWith('model.layers.1.')).sort()).toEqual([...arch.blockTensors(1)].sort());
    expect(arch.headTensors()).toEqual(['model.norm.weight', 'lm_head.weight']);
    expect(arch.spec.modelType).toBe('qwen2');
    expect(arch.spec.family).toBe('llama');
  });

  it('qwen3 without head_dim uses the class default 128', () => {
    const arch = createLlama({ ...base, model_type: 'qwen3', hidden_size: 64 }, 'config.json');
    expect(arch.spec.headDim).toBe(128);
    expect(arch.linears(0)[0].rows).toBe(4 * 128);
  });
});
