/**
 * A float64 Phi-3 forward written from HF's modeling_phi3.py (Phi3Attention's fused qkv_proj sliced q | k | v,
 * Phi3MLP's gate_up_proj chunked gate | up with up · act(gate), apply_rotary_pos_emb's partial rotary on the
 * first cos.shape[-1] dims, Phi3RotaryEmbedding's inverse frequencies and cos/sin scaling), and tiny random
 * checkpoints with HF's tensor names, for the Phi-3 adapter and CLI tests.
 */
import { act, add, attention, linear, MemoryCheckpoint, rmsNorm, rng, ropeInv, type F64 } from './reference.js';
import { defaultInv, longropeInv } from './rope-reference.js';

import type { Dims } from './reference.js';
export type { Dims };

/** A random Phi3ForCausalLM checkpoint (no biases); lm_head unless tied. */
export function phi3Checkpoint(d: Dims, seed: number, tied = false): MemoryCheckpoint {
  const ck = new MemoryCheckpoint(rng(seed));
  ck.add('model.embed_tokens.weight', [d.vocab, d.hidden], 0, 0.5);
  for (let i = 0; i < d.layers; i++) {
    const p = `model.layers.${i}.`;
    for (const n of ['input_layernorm', 'post_attention_layernorm']) ck.add(`${p}${n}.weight`, [d.hidden], 1, 0.2);
    ck.add(`${p}self_attn.qkv_proj.weight`, [(d.heads + 2 * d.kvHeads) * d.headDim, d.hidden], 0, 0.25);
    ck.add(`${p}self_attn.o_proj.weight`, [d.hidden, d.heads * d.headDim], 0, 0.25);
    ck.add(`${p}mlp.gate_up_proj.weight`, [2 * d.inter, d.hidden], 0, 0.25);
    ck.add(`${p}mlp.down_proj.weight`, [d.hidden, d.inter], 0, 0.25);
  }
  ck.add('model.norm.weight', [d.hidden], 1, 0.2);
  if (!tied) ck.add('lm_head.weight', [d.vocab, d.hidden], 0, 0.25);
  return ck;
}

/**
 * The rotary embedding as Phi3RotaryEmbedding computes it for a window: inverse frequencies
 * 1 / (factor_i · theta^(2i/rotaryDim)) (factor_i = 1 for default RoPE; longrope's short or long factors) and
 * cos/sin multiplied by `scale` (longrope's attention factor; 1 otherwise).
 */
export interface RefRope {
  theta: number;
  rotaryDim: number;
  factors?: number[];
  scale?: number;
}

export interface RefModel {
  w: (name: string) => Float32Array;
  d: Dims;
  eps: number;
  activation: string;
  /** Sliding window (Infinity = none). */
  window: number;
  rope: RefRope;
  tied: boolean;
}

/** apply_rotary_pos_emb in place on x [T, heads, D]: rotate_half over the first rotaryDim dims, position t mod seq. */
export function partialRope(x: F64, T: number, heads: number, D: number, seq: number, r: RefRope): void {
  ropeInv(x, T, heads, D, seq, r.factors ? longropeInv(r.theta, r.rotaryDim, r.factors) : defaultInv(r.theta, r.rotaryDim), r.scale);
}

/** Columns [from, from + n) of rows of width `width`. */
function cols(x: F64, width: number, from: number, n: number): F64 {
  const T = x.length / width;
  const y = new Float64Array(T * n);
  for (let t = 0; t < T; t++) for (let j = 0; j < n; j++) y[t * n + j] = x[t * width + from + j];
  return y;
}

/** Phi3DecoderLayer.forward in float64 on windows of `seq` tokens. */
export function refBlock(m: RefModel, i: number, x: F64, seq: number) {
  const { hidden: h, heads: H, kvHeads: KV, headDim: D, inter } = m.d;
  const T = x.length / h;
  const p = `model.layers.${i}.`;
  const attnIn = rmsNorm(x, h, m.w(`${p}input_layernorm.weight`), m.eps);
  const qkvRows = (H + 2 * KV) * D;
  const qkv = linear(attnIn, T, m.w(`${p}self_attn.qkv_proj.weight`), qkvRows, h);
  const q = cols(qkv, qkvRows, 0, H * D);
  const k = cols(qkv, qkvRows, H * D, KV * D);
  const v = cols(qkv, qkvRows, (H + KV) * D, KV * D);
  partialRope(q, T, H, D, seq, m.rope);
  partialRope(k, T, KV, D, seq, m.rope);
  const oIn = attention(q, k, v, T, seq, H, KV, D, 1 / Math.sqrt(D), m.window);
  const hMid = add(x, linear(oIn, T, m.w(`${p}self_attn.o_proj.weight`), h, H * D));
  const mlpIn = rmsNorm(hMid, h, m.w(`${p}post_attention_layernorm.weight`), m.eps);
  const gateUp = linear(mlpIn, T, m.w(`${p}mlp.gate_up_proj.weight`), 2 * inter, h);
  const gate = cols(gateUp, 2 * inter, 0, inter);
  const up = cols(gateUp, 2 * inter, inter, inter);
  const downIn = up.map((u, j) => u * act(m.activation, gate[j]));
  const out = add(hMid, linear(downIn, T, m.w(`${p}mlp.down_proj.weight`), h, inter));
  return { out, inputs: { attn_in: attnIn, o_in: oIn, mlp_in: mlpIn, down_in: downIn } };
}

export function refEmbed(m: RefModel, ids: Int32Array): F64 {
  const h = m.d.hidden;
  const wte = m.w('model.embed_tokens.weight');
  const e = new Float64Array(ids.length * h);
  ids.forEach((id, t) => {
    for (let j = 0; j < h; j++) e[t * h + j] = wte[id * h + j];
  });
  return e;
}

export function refHead(m: RefModel, x: F64): F64 {
  const h = m.d.hidden;
  const normed = rmsNorm(x, h, m.w('model.norm.weight'), m.eps);
  return linear(normed, x.length / h, m.w(m.tied ? 'model.embed_tokens.weight' : 'lm_head.weight'), m.d.vocab, h);
}

/** Logits [ids.length, vocab] of the whole model on windows of `seq` tokens. */
export function refLogits(m: RefModel, ids: Int32Array, seq: number): F64 {
  let x = refEmbed(m, ids);
  for (let i = 0; i < m.d.layers; i++) x = refBlock(m, i, x, seq).out;
  return refHead(m, x);
}
