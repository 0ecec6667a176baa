/**
 * BLOOM adapter vs a float64 reference written from HF's modeling_bloom.py (BloomModel / BloomBlock /
 * BloomAttention / bloom_gelu_forward / build_alibi_tensor) on tiny random checkpoints whose config.json and
 * tensor names are HF's: 6 heads (not a power of two) with the bare BloomModel names and the older config
 * field names (n_embed, num_attention_heads), and 4 heads with "transformer." names, hidden_size / n_head,
 * apply_residual_connection_post_layernorm and the weights stored as BF16 on disk.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createBloom } from '../../src/arch/bloom.js';
import { alibiSlopes, setChunkScoreBytes } from '../../src/arch/ops.js';
import { architectureFor } from '../../src/arch/registry.js';
import type { Weights } from '../../src/arch/types.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { bloomCheckpoint, LAYERS, refBlock, refEmbed, refSlopes, writeBloomFolder, type RefModel } from './bloom-reference.js';
import { layerNorm, linear, randomIds, relErr, rng } from './reference.js';

const VOCAB = 50;
const tmp = mkdtempSync(join(tmpdir(), 'shears-bloom-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

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
    writeBloomFolder(dir, bloomCheckpoint(prefix, hidden, VOCAB, heads), config, dtype);
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
        // ALiBi with attention in query chunks (what long windows get), forced here at seq 7: the same reference.
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
