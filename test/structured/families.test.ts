/**
 * MLP channels and block removal for the families with biases (OPT: fc1/fc2, GPT-NeoX: dense_h_to_4h /
 * dense_4h_to_h) on tiny random checkpoints: the config field each family reads (ffn_dim,
 * intermediate_size, num_hidden_layers) is rewritten, weights and biases are cut along the right axes,
 * the result loads back through shears' loader and runs, and the re-solved MLP keeps the block output
 * closer to the dense block's than plain removal does. Also the config rewrite of per-layer lists.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { architectureFor } from '../../src/arch/registry.js';
import type { Architecture } from '../../src/arch/types.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { openModel } from '../../src/model.js';
import { forwardHidden } from '../../src/run/blocks.js';
import { runStructuredPrune, type StructuredJob } from '../../src/structured/job.js';
import { reducedConfig } from '../../src/structured/plan.js';
import { blocksToDrop, rankBlocks } from '../../src/structured/rank-blocks.js';
import { loadWeights, runBlockOver } from '../../src/run/blocks.js';
import { normal, rng } from '../arch/reference.js';

const root = mkdtempSync(join(tmpdir(), 'shears-structured-families-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const VOCAB = 50, HIDDEN = 16, SEQ = 32;

/** A random checkpoint of every tensor the adapter names, shaped from its linear layers and the config. */
function writeModel(dir: string, config: Record<string, unknown>, positions?: { name: string; rows: number }): Architecture {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const arch = architectureFor(config, join(dir, 'config.json'));
  const L = arch.spec.numLayers;
  const names = [...arch.embedTensors(), ...arch.headTensors()];
  for (let b = 0; b < L; b++) names.push(...arch.blockTensors(b));
  const shapes = new Map<string, number[]>();
  for (let b = 0; b < L; b++) {
    for (const l of arch.linears(b)) {
      shapes.set(l.tensor, [l.rows, l.cols]);
      shapes.set(l.tensor.replace(/\.weight$/, '.bias'), [l.rows]);
    }
  }
  const shapeOf = (n: string): number[] => shapes.get(n) ?? (n === positions?.name ? [positions.rows, HIDDEN] : /embed|lm_head/.test(n) ? [VOCAB, HIDDEN] : [HIDDEN]);
  const unique = [...new Set(names)];
  const w = new SafetensorsWriter(join(dir, 'model.safetensors'), unique.map((n) => ({ name: n, dtype: 'F32' as const, shape: shapeOf(n) })), { format: 'pt' });
  const rand = rng(5);
  for (const n of unique) {
    const size = shapeOf(n).reduce((a, d) => a * d, 1);
    w.write(n, /norm.*weight$/.test(n) ? normal(rand, size, 1, 0.1) : normal(rand, size, 0, 0.3));
  }
  w.finish();
  return arch;
}

function idsFile(): string {
  const path = join(root, 'ids.safetensors');
  const w = new SafetensorsWriter(path, [{ name: 'input_ids', dtype: 'I32', shape: [8, SEQ] }], { format: 'pt' });
  w.write('input_ids', Int32Array.from({ length: 8 * SEQ }, (_, i) => (i * 31 + 7 + Math.floor(i / 5)) % VOCAB));
  w.finish();
  return path;
}

/** ‖h_pruned − h_dense‖² over the windows' last hidden states. */
async function hiddenError(dense: string, pruned: string, ids: Int32Array): Promise<number> {
  const run = async (dir: string) => {
    const m = await openModel(dir);
    try {
      return await forwardHidden(m.arch, m.src, ids, SEQ);
    } finally {
      m.ckpt.close();
    }
  };
  const a = await run(dense);
  const b = await run(pruned);
  let e = 0;
  for (let i = 0; i < a.length; i++) e += (a[i] - b[i]) ** 2;
  return e;
}

const families: { name: string; config: Record<string, unknown>; positions?: { name: string; rows: number }; mlp: [string, string]; widthKey: string }[] = [
  {
    name: 'opt',
    config: { model_type: 'opt', hidden_size: HIDDEN, num_attention_heads: 2, num_hidden_layers: 2, ffn_dim: 48, vocab_size: VOCAB, max_position_embeddings: 64, word_embed_proj_dim: HIDDEN, do_layer_norm_before: true, enable_bias: true, activation_function: 'relu' },
    positions: { name: 'model.decoder.embed_positions.weight', rows: 66 },
    mlp: ['model.decoder.layers.0.fc1', 'model.decoder.layers.0.fc2'],
    widthKey: 'ffn_dim',
  },
  {
    name: 'gpt_neox',
    config: { model_type: 'gpt_neox', hidden_size: HIDDEN, num_attention_heads: 2, num_hidden_layers: 2, intermediate_size: 48, vocab_size: VOCAB, max_position_embeddings: 64, rotary_pct: 0.5, hidden_act: 'gelu', use_parallel_residual: true },
    mlp: ['gpt_neox.layers.0.mlp.dense_h_to_4h', 'gpt_neox.layers.0.mlp.dense_4h_to_h'],
    widthKey: 'intermediate_size',
  },
];

describe.each(families)('$name: MLP channels with bias compensation, and block removal', (f) => {
  const dense = join(root, `${f.name}-dense`);
  writeModel(dense, f.config, f.positions);
  const calibTokens = idsFile();
  const job = (out: string, o: Partial<StructuredJob>) => ({ model: dense, out, method: 'sparsegpt', calibration: 'tinystories', nsamples: 8, calibTokens, ...o }) as StructuredJob;
  const ids = Int32Array.from({ length: 4 * SEQ }, (_, i) => (i * 17 + 3) % VOCAB);

  it('--channels 0.25: fc1 rows and fc2 columns with their biases; the config width; loads and beats the magnitude baseline', async () => {
    const out = join(root, `${f.name}-ch`);
    const rep = await runStructuredPrune(job(out, { channels: 0.25 }));
    expect(rep.structured.channels).toEqual({ before: 48, after: 36, removed: 12 });
    const c = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(c[f.widthKey]).toBe(36);
    const ck = Checkpoint.openFolder(out);
    try {
      expect(ck.info(`${f.mlp[0]}.weight`).shape).toEqual([36, HIDDEN]);
      expect(ck.info(`${f.mlp[0]}.bias`).shape).toEqual([36]);
      expect(ck.info(`${f.mlp[1]}.weight`).shape).toEqual([HIDDEN, 36]);
      expect(ck.info(`${f.mlp[1]}.bias`).shape).toEqual([HIDDEN]);
    } finally {
      ck.close();
    }
    // Against the calibration-free baseline (weight norms, no re-solve) at the same width: like-for-like
    // compensated vs uncompensated on the same channels is checked against float64 in solve.test.ts.
    const plain = join(root, `${f.name}-ch-plain`);
    await runStructuredPrune(job(plain, { channels: 0.25, method: 'magnitude' }));
    const eComp = await hiddenError(dense, out, ids);
    const ePlain = await hiddenError(dense, plain, ids);
    expect(Number.isFinite(eComp)).toBe(true);
    expect(eComp).toBeLessThan(ePlain);
  });

  it('--drop-blocks 1: one block left, renumbered to 0, num_hidden_layers 1, loads back', async () => {
    const out = join(root, `${f.name}-drop`);
    const rep = await runStructuredPrune(job(out, { dropBlocks: 1 }));
    const kept = 1 - rep.structured.dropBlocks!.dropped[0];
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).num_hidden_layers).toBe(1);
    const a = Checkpoint.openFolder(dense);
    const b = Checkpoint.openFolder(out);
    try {
      const from = `${f.mlp[0].replace('.0.', `.${kept}.`)}.weight`;
      expect(Buffer.from(b.readBytes(`${f.mlp[0]}.weight`)).equals(Buffer.from(a.readBytes(from)))).toBe(true);
      expect(b.tensorNames().some((n) => n.includes('.1.'))).toBe(false);
    } finally {
      a.close();
      b.close();
    }
    const m = await openModel(out);
    expect(m.arch.spec.numLayers).toBe(1);
    m.ckpt.close();
  });
});

describe('reducedConfig: per-layer lists follow the kept blocks', () => {
  it('Qwen2 layer_types and max_window_layers; GPT-2 n_layer; heads with an explicit head_dim', () => {
    const qwen = { model_type: 'qwen2', hidden_size: 64, num_attention_heads: 8, num_key_value_heads: 4, num_hidden_layers: 4, intermediate_size: 100, vocab_size: 10, sliding_window: 16, max_window_layers: 2, layer_types: ['full_attention', 'full_attention', 'sliding_attention', 'sliding_attention'] };
    const spec = architectureFor(qwen, 'config.json').spec;
    const c = reducedConfig(qwen, spec, { kept: [0, 2, 3], intermediate: 60 });
    expect(c.num_hidden_layers).toBe(3);
    expect(c.layer_types).toEqual(['full_attention', 'sliding_attention', 'sliding_attention']);
    expect(c.max_window_layers).toBe(1);
    expect(c.intermediate_size).toBe(60);
    expect(qwen.num_hidden_layers).toBe(4); // the source config is not modified
    const gpt2 = { model_type: 'gpt2', n_embd: 64, n_head: 4, n_layer: 3, n_positions: 32, vocab_size: 10 };
    const c2 = reducedConfig(gpt2, architectureFor(gpt2, 'config.json').spec, { kept: [1], intermediate: 200 });
    expect([c2.n_layer, c2.n_inner, 'num_hidden_layers' in c2]).toEqual([1, 200, false]);
  });
});

describe('Block Influence (ShortGPT): 1 − mean cosine of each token\'s hidden state before and after the block', () => {
  it('matches a float64 computation from the block inputs and outputs; the lowest n are dropped', async () => {
    const m = await openModel(join(import.meta.dirname, '..', '..', 'models', 'stories260K'));
    try {
      const seq = 32;
      const ids = Int32Array.from({ length: 4 * seq }, (_, i) => (i * 13 + 5) % 512);
      const got = await rankBlocks(m.arch, m.src, { ids, seqlen: seq, count: 4 }, 'bi');
      const h = m.arch.spec.hiddenSize;
      let x = await m.arch.embed(loadWeights(m.src, m.arch.embedTensors()), ids, seq);
      for (let b = 0; b < m.arch.spec.numLayers; b++) {
        const y = new Float32Array(x.length);
        await runBlockOver(m.arch, b, loadWeights(m.src, m.arch.blockTensors(b)), x, seq, y);
        let sum = 0;
        for (let t = 0; t < ids.length; t++) {
          let ab = 0, aa = 0, bb = 0;
          for (let j = 0; j < h; j++) {
            const p = x[t * h + j], q = y[t * h + j];
            ab += p * q;
            aa += p * p;
            bb += q * q;
          }
          sum += 1 - ab / Math.sqrt(aa * bb);
        }
        expect(got.scores[b]).toBeCloseTo(sum / ids.length, 10);
        x = y;
      }
      const order = got.scores.map((v, i) => i).sort((a, b) => got.scores[a] - got.scores[b]);
      expect(blocksToDrop(got, 2)).toEqual(order.slice(0, 2).sort((a, b) => a - b));
    } finally {
      m.ckpt.close();
    }
  });
});
