/**
 * BLOOM adapter vs a float64 reference written from HF's modeling_bloom.py (BloomModel / BloomBlock /
 * BloomAttention / bloom_gelu_forward / build_alibi_tensor) on tiny random checkpoints whose config.json and
 * tensor names are HF's: 6 heads (not a power of two) with the bare BloomModel names and the older config
 * field names (n_embed, num_attention_heads), and 4 heads with "transformer." names, hidden_size / n_head,
 * apply_residual_connection_post_layernorm and the weights stored as BF16 on disk.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createBloom } from '../../src/arch/bloom.js';
import { alibiSlopes } from '../../src/arch/ops.js';
import { architectureFor } from '../../src/arch/registry.js';
import type { Weights } from '../../src/arch/types.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { add, attention, layerNorm, linear, MemoryCheckpoint, randomIds, relErr, rng, type F64 } from './reference.js';

const VOCAB = 50;
const LAYERS = 2;
const tmp = mkdtempSync(join(tmpdir(), 'shears-bloom-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A random BLOOM with HF's tensor names ("transformer." or none) and shapes; no lm_head (tied). */
export function bloomCheckpoint(prefix: string, hidden: number, seed: number): MemoryCheckpoint {
  const ck = new MemoryCheckpoint(rng(seed));
  ck.add(`${prefix}word_embeddings.weight`, [VOCAB, hidden], 0, 0.5);
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
function refSlopes(heads: number): number[] {
  const p = 2 ** Math.floor(Math.log2(heads));
  const base = 2 ** -(2 ** -(Math.log2(p) - 3));
  const slopes = Array.from({ length: p }, (_, k) => base ** (k + 1));
  const extraBase = 2 ** -(2 ** -(Math.log2(2 * p) - 3));
  for (let k = 0; k < Math.min(p, heads - p); k++) slopes.push(extraBase ** (2 * k + 1));
  return slopes;
}

const bloomGelu = (x: number): number => x * 0.5 * (1 + Math.tanh(0.79788456 * x * (1 + 0.044715 * x * x)));

interface RefModel {
  w: (name: string) => Float32Array;
  prefix: string;
  hidden: number;
  heads: number;
  eps: number;
  postLn: boolean;
}

function refEmbed(m: RefModel, ids: Int32Array): F64 {
  const wte = m.w(`${m.prefix}word_embeddings.weight`);
  const e = new Float64Array(ids.length * m.hidden);
  ids.forEach((id, t) => {
    for (let j = 0; j < m.hidden; j++) e[t * m.hidden + j] = wte[id * m.hidden + j];
  });
  return layerNorm(e, m.hidden, m.w(`${m.prefix}word_embeddings_layernorm.weight`), m.w(`${m.prefix}word_embeddings_layernorm.bias`), m.eps);
}

/** BloomBlock.forward in float64 on windows of `seq` tokens. */
function refBlock(m: RefModel, i: number, x: F64, seq: number) {
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

describe('bloom adapter', () => {
  it('ALiBi slopes are the paper\'s geometric sequences: 8 heads 2^-1..2^-8; 6 heads 2^-2,-4,-6,-8 then 2^-1, 2^-3', () => {
    expect(Array.from(alibiSlopes(8))).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((k) => 2 ** -k));
    expect(Array.from(alibiSlopes(6))).toEqual([2, 4, 6, 8, 1, 3].map((k) => 2 ** -k));
    for (const heads of [12, 16, 112]) {
      const want = refSlopes(heads);
      // torch rounds the base to float32 before raising it to powers up to 2·64: up to ~100 float32 ulps.
      Array.from(alibiSlopes(heads)).forEach((s, k) => expect(Math.abs(s - want[k]) / want[k], `${heads} heads, slope ${k}`).toBeLessThanOrEqual(1e-5));
    }
  });

  it.each([
    {
      label: '6 heads, bare BloomModel names, n_embed / num_attention_heads, F32',
      heads: 6,
      hidden: 48,
      prefix: '',
      dtype: 'F32' as const,
      config: { model_type: 'bloom', n_embed: 48, num_attention_heads: 6, n_layer: LAYERS, vocab_size: VOCAB, layer_norm_epsilon: 1e-5, offset_alibi: 100, pretraining_tp: 1, slow_but_exact: false, n_inner: null, torch_dtype: 'float32' },
    },
    {
      label: '4 heads, "transformer." names, hidden_size / n_head, post-LN residual, BF16',
      heads: 4,
      hidden: 32,
      prefix: 'transformer.',
      dtype: 'BF16' as const,
      config: { model_type: 'bloom', hidden_size: 32, n_head: 4, n_layer: LAYERS, vocab_size: VOCAB, layer_norm_epsilon: 1e-4, apply_residual_connection_post_layernorm: true, torch_dtype: 'bfloat16' },
    },
  ])('$label: embeddings, blocks, captured inputs and logits match float64', async ({ heads, hidden, prefix, dtype, config }) => {
    const dir = mkdtempSync(join(tmp, 'model-'));
    writeBloomFolder(dir, bloomCheckpoint(prefix, hidden, heads), config, dtype);
    const ckpt = Checkpoint.openFolder(dir);
    try {
      const arch = architectureFor(ckpt.config, join(dir, 'config.json'), ckpt);
      expect(arch.spec).toMatchObject({ family: 'bloom', hiddenSize: hidden, numHeads: heads, numLayers: LAYERS, intermediateSize: 4 * hidden, maxPositions: 2048, tieWordEmbeddings: true });
      expect(arch.headLinear()).toMatchObject({ tensor: `${prefix}word_embeddings.weight`, tied: true });
      const load = (names: string[]): Weights => new Map(names.map((n) => [n, ckpt.readFloat32(n)]));
      // The reference reads the same (BF16-rounded) values.
      const m: RefModel = { w: (n) => ckpt.readFloat32(n), prefix, hidden, heads, eps: config.layer_norm_epsilon, postLn: config.apply_residual_connection_post_layernorm === true };
      const seq = 7;
      const ids = randomIds(rng(heads + 20), 3 * seq, VOCAB);
      let x = await arch.embed(load(arch.embedTensors()), ids, seq);
      let ref = refEmbed(m, ids);
      expect(relErr(x, ref)).toBeLessThanOrEqual(1e-6);
      for (let i = 0; i < LAYERS; i++) {
        const r = await arch.runBlock(i, load(arch.blockTensors(i)), x, seq, true);
        const e = refBlock(m, i, ref, seq);
        expect(relErr(r.out, e.out), `block ${i}`).toBeLessThanOrEqual(1e-5);
        for (const [id, v] of Object.entries(e.inputs)) expect(relErr(r.inputs[id], v), `block ${i} ${id}`).toBeLessThanOrEqual(1e-5);
        x = r.out;
        ref = e.out;
      }
      const logits = await arch.logits(load(arch.headTensors()), x, seq);
      const normed = layerNorm(ref, hidden, m.w(`${prefix}ln_f.weight`), m.w(`${prefix}ln_f.bias`), m.eps);
      expect(relErr(logits, linear(normed, ids.length, m.w(`${prefix}word_embeddings.weight`), VOCAB, hidden))).toBeLessThanOrEqual(1e-5);
    } finally {
      ckpt.close();
    }
  });

  it('linear layers: fused query_key_value [3·hidden, hidden] sharing one input, stages 0..3; config defaults and seq_length', () => {
    const arch = createBloom({ model_type: 'bloom', hidden_size: 64, n_layer: 3, seq_length: 4096 }, 'config.json');
    expect(arch.spec).toMatchObject({ numHeads: 8, headDim: 8, numLayers: 3, vocabSize: 250880, maxPositions: 4096, bosTokenId: 1, eosTokenId: 2 });
    expect(arch.linears(2).map((l) => `${l.tensor}:${l.rows}x${l.cols}:${l.input}:${l.stage}:${l.transposed}`)).toEqual([
      'transformer.h.2.self_attention.query_key_value.weight:192x64:attn_in:0:false',
      'transformer.h.2.self_attention.dense.weight:64x64:o_in:1:false',
      'transformer.h.2.mlp.dense_h_to_4h.weight:256x64:mlp_in:2:false',
      'transformer.h.2.mlp.dense_4h_to_h.weight:64x256:down_in:3:false',
    ]);
    expect(arch.embedTensors()).toEqual(['transformer.word_embeddings.weight', 'transformer.word_embeddings_layernorm.weight', 'transformer.word_embeddings_layernorm.bias']);
    expect(arch.headTensors()).toEqual(['transformer.ln_f.weight', 'transformer.ln_f.bias', 'transformer.word_embeddings.weight']);
    expect(createBloom({ model_type: 'bloom', tie_word_embeddings: false }, 'config.json').headLinear()).toMatchObject({ tensor: 'lm_head.weight', tied: false });
    expect(() => createBloom({ model_type: 'bloom', hidden_size: 64, n_head: 6 }, 'x/config.json')).toThrow('x/config.json: n_head (6) must divide the hidden size (64)');
  });
});
