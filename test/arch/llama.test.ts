/**
 * Llama-family adapter (llama, mistral, qwen2, qwen3) vs the float64 reference in ./reference.ts on tiny
 * random checkpoints held in memory: every block output, the captured linear inputs, logits and nll.
 */
import { describe, expect, it } from 'vitest';
import { createLlama } from '../../src/arch/llama.js';
import { setChunkScoreBytes } from '../../src/arch/ops.js';
import type { Architecture } from '../../src/arch/types.js';
import { act, add, attention, linear, MemoryCheckpoint, randomIds, relErr, rmsNorm, rng, rope, type F64 } from './reference.js';

const TOL = 1e-5;

interface Case {
  title: string;
  config: Record<string, unknown>;
  /** What the reference must know beyond the config (HF class behaviour). */
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  qkNorm: boolean;
  /** HF sliding window of each layer (absent = full causal attention everywhere). */
  windows?: (number | undefined)[];
}

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

const CASES: Case[] = [
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

/** A random checkpoint for the case: matrices N(0, 0.1) so attention is far from uniform, gains 1 + N(0, 0.2). */
function checkpoint(c: Case, seed: number): MemoryCheckpoint {
  const cfg = c.config as Record<string, number>;
  const h = cfg.hidden_size;
  const m = cfg.intermediate_size;
  const H = cfg.num_attention_heads;
  const KV = cfg.num_key_value_heads;
  const D = cfg.head_dim ?? h / H;
  const ck = new MemoryCheckpoint(rng(seed));
  ck.add('model.embed_tokens.weight', [cfg.vocab_size, h], 0, 0.5);
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `model.layers.${i}.`;
    ck.add(`${p}input_layernorm.weight`, [h], 1, 0.2);
    ck.add(`${p}post_attention_layernorm.weight`, [h], 1, 0.2);
    const lin = (name: string, rows: number, cols: number, bias: boolean) => {
      ck.add(`${p}${name}.weight`, [rows, cols], 0, 0.1);
      if (bias) ck.add(`${p}${name}.bias`, [rows], 0, 0.1);
    };
    lin('self_attn.q_proj', H * D, h, c.qkvBias);
    lin('self_attn.k_proj', KV * D, h, c.qkvBias);
    lin('self_attn.v_proj', KV * D, h, c.qkvBias);
    lin('self_attn.o_proj', h, H * D, c.oBias);
    if (c.qkNorm) {
      ck.add(`${p}self_attn.q_norm.weight`, [D], 1, 0.2);
      ck.add(`${p}self_attn.k_norm.weight`, [D], 1, 0.2);
    }
    lin('mlp.gate_proj', m, h, c.mlpBias);
    lin('mlp.up_proj', m, h, c.mlpBias);
    lin('mlp.down_proj', h, m, c.mlpBias);
  }
  ck.add('model.norm.weight', [h], 1, 0.2);
  if (!cfg.tie_word_embeddings) ck.add('lm_head.weight', [cfg.vocab_size, h], 0, 0.1);
  return ck;
}

/** Reference block i: output and the four linear inputs. */
function refBlock(c: Case, ck: MemoryCheckpoint, i: number, x: F64, seq: number, theta: number) {
  const cfg = c.config as Record<string, number>;
  const h = cfg.hidden_size;
  const m = cfg.intermediate_size;
  const H = cfg.num_attention_heads;
  const KV = cfg.num_key_value_heads;
  const D = cfg.head_dim ?? h / H;
  const eps = cfg.rms_norm_eps;
  const T = x.length / h;
  const p = `model.layers.${i}.`;
  const bias = (name: string, has: boolean) => (has ? ck.get(`${p}${name}.bias`) : undefined);
  const lin = (v: F64, name: string, rows: number, cols: number, has: boolean) => linear(v, T, ck.get(`${p}${name}.weight`), rows, cols, bias(name, has));

  const attnIn = rmsNorm(x, h, ck.get(`${p}input_layernorm.weight`), eps);
  let q = lin(attnIn, 'self_attn.q_proj', H * D, h, c.qkvBias);
  let k = lin(attnIn, 'self_attn.k_proj', KV * D, h, c.qkvBias);
  const v = lin(attnIn, 'self_attn.v_proj', KV * D, h, c.qkvBias);
  if (c.qkNorm) {
    q = rmsNorm(q, D, ck.get(`${p}self_attn.q_norm.weight`), eps);
    k = rmsNorm(k, D, ck.get(`${p}self_attn.k_norm.weight`), eps);
  }
  rope(q, T, H, D, seq, theta);
  rope(k, T, KV, D, seq, theta);
  const oIn = attention(q, k, v, T, seq, H, KV, D, 1 / Math.sqrt(D), c.windows?.[i]);
  const hMid = add(x, lin(oIn, 'self_attn.o_proj', h, H * D, c.oBias));
  const mlpIn = rmsNorm(hMid, h, ck.get(`${p}post_attention_layernorm.weight`), eps);
  const gate = lin(mlpIn, 'mlp.gate_proj', m, h, c.mlpBias);
  const up = lin(mlpIn, 'mlp.up_proj', m, h, c.mlpBias);
  const downIn = gate.map((g, j) => act(cfg.hidden_act as unknown as string, g) * up[j]);
  const out = add(hMid, lin(downIn, 'mlp.down_proj', h, m, c.mlpBias));
  return { out, inputs: { attn_in: attnIn, o_in: oIn, mlp_in: mlpIn, down_in: downIn } };
}

function refLogits(c: Case, ck: MemoryCheckpoint, x: F64): F64 {
  const cfg = c.config as Record<string, number>;
  const n = rmsNorm(x, cfg.hidden_size, ck.get('model.norm.weight'), cfg.rms_norm_eps);
  const head = ck.get(cfg.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  return linear(n, x.length / cfg.hidden_size, head, cfg.vocab_size, cfg.hidden_size);
}

describe.each(CASES)('$title', (c) => {
  it('matches the float64 reference: every block, captured inputs, logits', async () => {
    const ck = checkpoint(c, 7);
    const arch: Architecture = createLlama(c.config, 'config.json');
    const cfg = c.config as Record<string, unknown>;
    const theta = (cfg.rope_theta ?? (cfg.rope_parameters as { rope_theta?: number } | undefined)?.rope_theta ?? 10000) as number; // HF default 10000
    const seq = 8;
    const ids = randomIds(rng(11), 2 * seq, arch.spec.vocabSize);

    let x = await arch.embed(ck.pick(arch.embedTensors()), ids, seq);
    const table = ck.get('model.embed_tokens.weight');
    const h = arch.spec.hiddenSize;
    let ref: F64 = new Float64Array(ids.length * h);
    ids.forEach((id, t) => ref.set(table.subarray(id * h, (id + 1) * h), t * h));
    expect(relErr(x, ref)).toBe(0);

    for (let i = 0; i < arch.spec.numLayers; i++) {
      const w = ck.pick(arch.blockTensors(i));
      const r = await arch.runBlock(i, w, x, seq, true);
      const e = refBlock(c, ck, i, ref, seq, theta);
      expect(relErr(r.out, e.out), `block ${i} out`).toBeLessThanOrEqual(TOL);
      expect(Object.keys(r.inputs).sort()).toEqual(['attn_in', 'down_in', 'mlp_in', 'o_in']);
      for (const [id, v] of Object.entries(e.inputs)) expect(relErr(r.inputs[id], v), `block ${i} ${id}`).toBeLessThanOrEqual(TOL);
      // Widths of the captured inputs are the cols of the layers that read them.
      for (const l of arch.linears(i)) expect(r.inputs[l.input].length).toBe(2 * seq * l.cols);
      // Without capture the same graph shape gives the same output (no pruning in between).
      const plain = await arch.runBlock(i, w, x, seq, false);
      expect(relErr(plain.out, r.out)).toBe(0);
      // Attention in query chunks (what long windows get), forced here at seq 8: the same reference.
      const budget = setChunkScoreBytes(0);
      try {
        expect(relErr((await arch.runBlock(i, w, x, seq, false)).out, e.out), `block ${i} out, chunked attention`).toBeLessThanOrEqual(TOL);
      } finally {
        setChunkScoreBytes(budget);
      }
      x = r.out;
      ref = e.out;
    }
    const logits = await arch.logits(ck.pick(arch.headTensors()), x, seq);
    expect(relErr(logits, refLogits(c, ck, ref))).toBeLessThanOrEqual(TOL);
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
    const ck = checkpoint(CASES[0], 1);
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
