/**
 * A float64 Gemma / Gemma 2 / Gemma 3 text forward written from HF's modeling_gemma.py, modeling_gemma2.py and
 * modeling_gemma3.py (GemmaRMSNorm's (1 + w), the GeGLU MLP, the √hidden embedding normalizer, Gemma2's
 * sandwich norms and tanh soft-capping, Gemma3's q/k norms and two RoPEs), and tiny random checkpoints with
 * HF's tensor names, for the Gemma adapter and CLI tests. Layer settings (windows, RoPE) are given per layer by
 * the test, written out from the config by hand.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { act, add, attention, linear, MemoryCheckpoint, rng, rope, type F64 } from './reference.js';

export type GemmaType = 'gemma' | 'gemma2' | 'gemma3_text';

import type { Dims } from './reference.js';
export type { Dims };

/** A random Gemma checkpoint with HF's names (GemmaForCausalLM / Gemma2… / Gemma3ForCausalLM); tied, no lm_head. */
export function gemmaCheckpoint(type: GemmaType, d: Dims, seed: number, attentionBias = false): MemoryCheckpoint {
  const ck = new MemoryCheckpoint(rng(seed));
  ck.add('model.embed_tokens.weight', [d.vocab, d.hidden], 0, 0.5);
  for (let i = 0; i < d.layers; i++) {
    const p = `model.layers.${i}.`;
    // Norm weights are offsets from 1 in Gemma: draw them around 0.
    const norms = ['input_layernorm', 'post_attention_layernorm'];
    if (type !== 'gemma') norms.push('pre_feedforward_layernorm', 'post_feedforward_layernorm');
    for (const n of norms) ck.add(`${p}${n}.weight`, [d.hidden], 0, 0.2);
    if (type === 'gemma3_text') for (const n of ['q_norm', 'k_norm']) ck.add(`${p}self_attn.${n}.weight`, [d.headDim], 0, 0.2);
    const attn: [string, number, number][] = [
      ['q_proj', d.heads * d.headDim, d.hidden],
      ['k_proj', d.kvHeads * d.headDim, d.hidden],
      ['v_proj', d.kvHeads * d.headDim, d.hidden],
      ['o_proj', d.hidden, d.heads * d.headDim],
    ];
    for (const [n, out, inp] of attn) {
      ck.add(`${p}self_attn.${n}.weight`, [out, inp], 0, 0.25);
      if (attentionBias) ck.add(`${p}self_attn.${n}.bias`, [out], 0, 0.1);
    }
    ck.add(`${p}mlp.gate_proj.weight`, [d.inter, d.hidden], 0, 0.25);
    ck.add(`${p}mlp.up_proj.weight`, [d.inter, d.hidden], 0, 0.25);
    ck.add(`${p}mlp.down_proj.weight`, [d.hidden, d.inter], 0, 0.25);
  }
  ck.add('model.norm.weight', [d.hidden], 0, 0.2);
  return ck;
}

/** Writes ck as an HF folder (config.json + model.safetensors in `dtype`); returns the folder. */
export function writeFolder(dir: string, ck: MemoryCheckpoint, config: Record<string, unknown>, dtype: 'F32' | 'BF16'): string {
  const names = [...ck.tensors.keys()];
  const w = new SafetensorsWriter(join(dir, 'model.safetensors'), names.map((name) => ({ name, dtype, shape: ck.shape(name) })), { format: 'pt' });
  for (const n of names) w.write(n, ck.get(n));
  w.finish();
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  return dir;
}

/** x rounded to bfloat16 (round to nearest even on the float32 bits), as torch.tensor(x, dtype=torch.bfloat16). */
export function toBf16(x: number): number {
  const b = new Uint32Array(new Float32Array([x]).buffer)[0];
  const r = (b + 0x7fff + ((b >>> 16) & 1)) & 0xffff0000;
  return new Float32Array(new Uint32Array([r >>> 0]).buffer)[0];
}

export interface RefModel {
  w: (name: string) => Float32Array;
  type: GemmaType;
  d: Dims;
  eps: number;
  activation: string;
  /** The attention scale: head_dim^-½ (Gemma) or query_pre_attn_scalar^-½. */
  scale: number;
  attnCap?: number;
  finalCap?: number;
  /** The embedding normalizer as the model's dtype holds √hidden. */
  normalizer: number;
  attentionBias?: boolean;
  /** Sliding window of layer i (Infinity = full attention). */
  window: (i: number) => number;
  /** RoPE base and linear factor of layer i. */
  rope: (i: number) => { theta: number; factor: number };
}

/** GemmaRMSNorm: x / sqrt(mean(x²) + eps) · (1 + w), over rows of n. */
export function gemmaNorm(x: F64, n: number, w: Float32Array, eps: number): F64 {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / n; r++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[r * n + i] ** 2;
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) y[r * n + i] = x[r * n + i] * inv * (1 + w[i]);
  }
  return y;
}

export function refEmbed(m: RefModel, ids: Int32Array): F64 {
  const h = m.d.hidden;
  const wte = m.w('model.embed_tokens.weight');
  const e = new Float64Array(ids.length * h);
  ids.forEach((id, t) => {
    for (let j = 0; j < h; j++) e[t * h + j] = wte[id * h + j] * m.normalizer;
  });
  return e;
}

/** Gemma{,2,3}DecoderLayer.forward in float64 on windows of `seq` tokens. */
export function refBlock(m: RefModel, i: number, x: F64, seq: number) {
  const { hidden: h, heads: H, kvHeads: KV, headDim: D, inter } = m.d;
  const T = x.length / h;
  const p = `model.layers.${i}.`;
  const sandwich = m.type !== 'gemma';
  const norm = (v: F64, name: string, n = h) => gemmaNorm(v, n, m.w(`${p}${name}.weight`), m.eps);
  const lin = (v: F64, name: string, out: number, inp: number, bias = false) => linear(v, T, m.w(`${p}${name}.weight`), out, inp, bias ? m.w(`${p}${name}.bias`) : undefined);
  const b = m.attentionBias === true;
  const attnIn = norm(x, 'input_layernorm');
  let q = lin(attnIn, 'self_attn.q_proj', H * D, h, b);
  let k = lin(attnIn, 'self_attn.k_proj', KV * D, h, b);
  const v = lin(attnIn, 'self_attn.v_proj', KV * D, h, b);
  if (m.type === 'gemma3_text') {
    q = norm(q, 'self_attn.q_norm', D);
    k = norm(k, 'self_attn.k_norm', D);
  }
  const r = m.rope(i);
  rope(q, T, H, D, seq, r.theta, r.factor);
  rope(k, T, KV, D, seq, r.theta, r.factor);
  const oIn = attention(q, k, v, T, seq, H, KV, D, m.scale, m.window(i), undefined, m.attnCap);
  const attnOut = lin(oIn, 'self_attn.o_proj', h, H * D, b);
  const hMid = add(x, sandwich ? norm(attnOut, 'post_attention_layernorm') : attnOut);
  const mlpIn = norm(hMid, sandwich ? 'pre_feedforward_layernorm' : 'post_attention_layernorm');
  const gate = lin(mlpIn, 'mlp.gate_proj', inter, h);
  const up = lin(mlpIn, 'mlp.up_proj', inter, h);
  const downIn = gate.map((g, j) => act(m.activation, g) * up[j]);
  const mlpOut = lin(downIn, 'mlp.down_proj', h, inter);
  const out = add(hMid, sandwich ? norm(mlpOut, 'post_feedforward_layernorm') : mlpOut);
  return { out, inputs: { attn_in: attnIn, o_in: oIn, mlp_in: mlpIn, down_in: downIn } };
}

/** Logits from the last hidden states: final (1 + w) norm, tied head, then final soft-capping if any. */
export function refHead(m: RefModel, x: F64): F64 {
  const h = m.d.hidden;
  const normed = gemmaNorm(x, h, m.w('model.norm.weight'), m.eps);
  const logits = linear(normed, x.length / h, m.w('model.embed_tokens.weight'), m.d.vocab, h);
  const cap = m.finalCap;
  return cap === undefined ? logits : logits.map((z) => cap * Math.tanh(z / cap));
}

/** Logits [ids.length, vocab] of the whole model on windows of `seq` tokens. */
export function refLogits(m: RefModel, ids: Int32Array, seq: number): F64 {
  let x = refEmbed(m, ids);
  for (let i = 0; i < m.d.layers; i++) x = refBlock(m, i, x, seq).out;
  return refHead(m, x);
}
