/**
 * The float64 Llama-family reference forward (HF modeling_llama / qwen2 / qwen3 / mistral) and its tiny random
 * checkpoints, shared by the adapter test and the RoPE-variant tests; the rotary step is given by the caller.
 */
import { expect } from 'vitest';
import type { Architecture } from '../../src/arch/types.js';
import { setChunkScoreBytes } from '../../src/arch/ops.js';
import { act, add, attention, linear, MemoryCheckpoint, randomIds, relErr, rmsNorm, rng, type F64 } from './reference.js';

/** Rotates x [T, heads, D] in place for windows of seq tokens (positions t mod seq). */
export type Rotate = (x: F64, T: number, heads: number, D: number, seq: number) => void;

export interface LlamaCase {
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


/** A random checkpoint for the case: matrices N(0, 0.1) so attention is far from uniform, gains 1 + N(0, 0.2). */
export function llamaCheckpoint(c: LlamaCase, seed: number): MemoryCheckpoint {
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
export function refBlock(c: LlamaCase, ck: MemoryCheckpoint, i: number, x: F64, seq: number, rotate: Rotate) {
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
  rotate(q, T, H, D, seq);
  rotate(k, T, KV, D, seq);
  const oIn = attention(q, k, v, T, seq, H, KV, D, 1 / Math.sqrt(D), c.windows?.[i]);
  const hMid = add(x, lin(oIn, 'self_attn.o_proj', h, H * D, c.oBias));
  const mlpIn = rmsNorm(hMid, h, ck.get(`${p}post_attention_layernorm.weight`), eps);
  const gate = lin(mlpIn, 'mlp.gate_proj', m, h, c.mlpBias);
  const up = lin(mlpIn, 'mlp.up_proj', m, h, c.mlpBias);
  const downIn = gate.map((g, j) => act(cfg.hidden_act as unknown as string, g) * up[j]);
  const out = add(hMid, lin(downIn, 'mlp.down_proj', h, m, c.mlpBias));
  return { out, inputs: { attn_in: attnIn, o_in: oIn, mlp_in: mlpIn, down_in: downIn } };
}

export function refLogits(c: LlamaCase, ck: MemoryCheckpoint, x: F64): F64 {
  const cfg = c.config as Record<string, number>;
  const n = rmsNorm(x, cfg.hidden_size, ck.get('model.norm.weight'), cfg.rms_norm_eps);
  const head = ck.get(cfg.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  return linear(n, x.length / cfg.hidden_size, head, cfg.vocab_size, cfg.hidden_size);
}

/**
 * Runs `arch` block by block on 2 windows of `seq` tokens against the reference: every block output and captured
 * input, then the logits, within `tol` relative. Returns the reference logits.
 */
export async function expectMatchesReference(c: LlamaCase, arch: Architecture, ck: MemoryCheckpoint, seq: number, rotate: Rotate, tol: number): Promise<F64> {
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
    const e = refBlock(c, ck, i, ref, seq, rotate);
    expect(relErr(r.out, e.out), `block ${i} out`).toBeLessThanOrEqual(tol);
    expect(Object.keys(r.inputs).sort()).toEqual(['attn_in', 'down_in', 'mlp_in', 'o_in']);
    for (const [id, v] of Object.entries(e.inputs)) expect(relErr(r.inputs[id], v), `block ${i} ${id}`).toBeLessThanOrEqual(tol);
    // Widths of the captured inputs are the cols of the layers that read them.
    for (const l of arch.linears(i)) expect(r.inputs[l.input].length).toBe(2 * seq * l.cols);
    // Without capture the same graph shape gives the same output (no pruning in between).
    const plain = await arch.runBlock(i, w, x, seq, false);
    expect(relErr(plain.out, r.out)).toBe(0);
    // Attention in query chunks (what long windows get), forced here at this short seq: the same reference.
    const budget = setChunkScoreBytes(0);
    try {
      expect(relErr((await arch.runBlock(i, w, x, seq, false)).out, e.out), `block ${i} out, chunked attention`).toBeLessThanOrEqual(tol);
    } finally {
      setChunkScoreBytes(budget);
    }
    x = r.out;
    ref = e.out;
  }
  const logits = await arch.logits(ck.pick(arch.headTensors()), x, seq);
  const refL = refLogits(c, ck, ref);
  expect(relErr(logits, refL), 'logits').toBeLessThanOrEqual(tol);
  return refL;
}
