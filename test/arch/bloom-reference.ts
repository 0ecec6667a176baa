/**
 * A float64 BLOOM forward written from HF's modeling_bloom.py (BloomModel / BloomBlock / BloomAttention /
 * bloom_gelu_forward / build_alibi_tensor), and tiny random checkpoints with HF's config and tensor names,
 * for the BLOOM adapter and CLI tests.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { add, attention, layerNorm, linear, MemoryCheckpoint, rng, type F64 } from './reference.js';

export const LAYERS = 2;

/** A random BLOOM with HF's tensor names ("transformer." or none) and shapes; no lm_head (tied). */
export function bloomCheckpoint(prefix: string, hidden: number, vocab: number, seed: number): MemoryCheckpoint {
  const ck = new MemoryCheckpoint(rng(seed));
  ck.add(`${prefix}word_embeddings.weight`, [vocab, hidden], 0, 0.5);
  ck.add(`${prefix}word_embeddings_layernorm.weight`, [hidden], 1, 0.2);
  ck.add(`${prefix}word_embeddings_layernorm.bias`, [hidden], 0, 0.1);
  for (let i = 0; i < LAYERS; i++) {
    const p = `${prefix}h.${i}.`;
    for (const ln of ['input_layernorm', 'post_attention_layernorm']) {
      ck.add(`${p}${ln}.weight`, [hidden], 1, 0.2);
      ck.add(`${p}${ln}.bias`, [hidden], 0, 0.1);
    }
    const lin = (name: string, out: number, inp: number) => {
      ck.add(`${p}${name}.weight`, [out, inp], 0, 0.25);
      ck.add(`${p}${name}.bias`, [out], 0, 0.1);
    };
    lin('self_attention.query_key_value', 3 * hidden, hidden);
    lin('self_attention.dense', hidden, hidden);
    lin('mlp.dense_h_to_4h', 4 * hidden, hidden);
    lin('mlp.dense_4h_to_h', hidden, 4 * hidden);
  }
  ck.add(`${prefix}ln_f.weight`, [hidden], 1, 0.2);
  ck.add(`${prefix}ln_f.bias`, [hidden], 0, 0.1);
  return ck;
}

/** Writes ck as an HF folder (config.json + model.safetensors in `dtype`); returns the folder. */
export function writeBloomFolder(dir: string, ck: MemoryCheckpoint, config: Record<string, unknown>, dtype: 'F32' | 'BF16'): string {
  const names = [...ck.tensors.keys()];
  const w = new SafetensorsWriter(join(dir, 'model.safetensors'), names.map((name) => ({ name, dtype, shape: ck.shape(name) })), { format: 'pt' });
  for (const n of names) w.write(n, ck.get(n));
  w.finish();
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  return dir;
}

/** HF build_alibi_tensor's slopes, in float64: 2^(-8/p)^k for p = largest power of two ≤ heads, then odd powers of 2^(-4/p). */
export function refSlopes(heads: number): number[] {
  const p = 2 ** Math.floor(Math.log2(heads));
  const base = 2 ** -(2 ** -(Math.log2(p) - 3));
  const slopes = Array.from({ length: p }, (_, k) => base ** (k + 1));
  const extraBase = 2 ** -(2 ** -(Math.log2(2 * p) - 3));
  for (let k = 0; k < Math.min(p, heads - p); k++) slopes.push(extraBase ** (2 * k + 1));
  return slopes;
}

const bloomGelu = (x: number): number => x * 0.5 * (1 + Math.tanh(0.79788456 * x * (1 + 0.044715 * x * x)));

export interface RefModel {
  w: (name: string) => Float32Array;
  prefix: string;
  hidden: number;
  heads: number;
  eps: number;
  postLn: boolean;
}

export function refEmbed(m: RefModel, ids: Int32Array): F64 {
  const wte = m.w(`${m.prefix}word_embeddings.weight`);
  const e = new Float64Array(ids.length * m.hidden);
  ids.forEach((id, t) => {
    for (let j = 0; j < m.hidden; j++) e[t * m.hidden + j] = wte[id * m.hidden + j];
  });
  return layerNorm(e, m.hidden, m.w(`${m.prefix}word_embeddings_layernorm.weight`), m.w(`${m.prefix}word_embeddings_layernorm.bias`), m.eps);
}

/** BloomBlock.forward in float64 on windows of `seq` tokens. */
export function refBlock(m: RefModel, i: number, x: F64, seq: number) {
  const { hidden: h, heads: H } = m;
  const D = h / H;
  const T = x.length / h;
  const p = `${m.prefix}h.${i}.`;
  const lin = (v: F64, name: string, out: number, inp: number) => linear(v, T, m.w(`${p}${name}.weight`), out, inp, m.w(`${p}${name}.bias`));
  const attnIn = layerNorm(x, h, m.w(`${p}input_layernorm.weight`), m.w(`${p}input_layernorm.bias`), m.eps);
  // _reshape: fused_qkv.view(B, S, heads, 3, D); q/k/v = [..., 0|1|2, :].
  const fused = lin(attnIn, 'self_attention.query_key_value', 3 * h, h);
  const part = (which: number) => {
    const out = new Float64Array(T * h);
    for (let t = 0; t < T; t++) for (let hd = 0; hd < H; hd++) for (let d = 0; d < D; d++) out[(t * H + hd) * D + d] = fused[t * 3 * h + (hd * 3 + which) * D + d];
    return out;
  };
  const slopes = refSlopes(H);
  // alibi.baddbmm(q, kᵀ, beta=1, alpha=1/√D): slope_h · (key position j) + q·k/√D.
  const oIn = attention(part(0), part(1), part(2), T, seq, H, H, D, 1 / Math.sqrt(D), Infinity, (hd, _i, j) => slopes[hd] * j);
  const hMid = add(m.postLn ? attnIn : x, lin(oIn, 'self_attention.dense', h, h));
  const mlpIn = layerNorm(hMid, h, m.w(`${p}post_attention_layernorm.weight`), m.w(`${p}post_attention_layernorm.bias`), m.eps);
  const downIn = lin(mlpIn, 'mlp.dense_h_to_4h', 4 * h, h).map(bloomGelu);
  const out = add(m.postLn ? mlpIn : hMid, lin(downIn, 'mlp.dense_4h_to_h', h, 4 * h));
  return { out, inputs: { attn_in: attnIn, o_in: oIn, mlp_in: mlpIn, down_in: downIn } };
}

/** Logits [ids.length, vocab] of the whole model on windows of `seq` tokens (tied head). */
export function refLogits(m: RefModel, ids: Int32Array, seq: number, vocab: number): F64 {
  let x = refEmbed(m, ids);
  for (let i = 0; i < LAYERS; i++) x = refBlock(m, i, x, seq).out;
  const normed = layerNorm(x, m.hidden, m.w(`${m.prefix}ln_f.weight`), m.w(`${m.prefix}ln_f.bias`), m.eps);
  return linear(normed, ids.length, m.w(`${m.prefix}word_embeddings.weight`), vocab, m.hidden);
}
