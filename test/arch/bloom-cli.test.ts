/**
 * A random BLOOM (6 heads, bigscience/bloom-560m's naming: no "transformer." prefix, older config field names,
 * BF16 weights, the bundled stories260K tokenizer) through the real CLI: Wanda and SparseGPT at 50% and 2:4,
 * then eval / inspect / export on the result. Patterns are checked on the written tensors themselves; eval's
 * perplexity against the float64 reference of bloom-reference.ts on the pruned weights.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { loadTokenizer } from '../../src/tokenize/tokenizer.js';
import type { InspectSummary } from '../../src/inspect/summary.js';
import { REPO, runShears, type Run } from '../helpers/cli.js';
import { bloomCheckpoint, refLogits, writeBloomFolder, type RefModel } from './bloom-reference.js';

const HIDDEN = 48;
const HEADS = 6;
const VOCAB = 512; // the stories260K tokenizer's
const CONFIG = { architectures: ['BloomForCausalLM'], model_type: 'bloom', n_embed: HIDDEN, num_attention_heads: HEADS, n_layer: 2, vocab_size: VOCAB, layer_norm_epsilon: 1e-5, bos_token_id: 1, eos_token_id: 2, offset_alibi: 100, pretraining_tp: 1, slow_but_exact: false, n_inner: null, torch_dtype: 'bfloat16' };
const RUNS = { 'wanda-50': ['wanda', '--sparsity', '0.5'], 'wanda-24': ['wanda', '--pattern', '2:4'], 'sparsegpt-50': ['sparsegpt', '--sparsity', '0.5'], 'sparsegpt-24': ['sparsegpt', '--pattern', '2:4'] } as const;
type RunName = keyof typeof RUNS;

const root = mkdtempSync(join(tmpdir(), 'shears-bloom-cli-'));
const model = join(root, 'bloom-tiny');
const text = join(root, 'eval.txt');
let pruned: Record<RunName, Run>;
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  mkdirSync(model);
  writeBloomFolder(model, bloomCheckpoint('', HIDDEN, VOCAB, 11), CONFIG, 'BF16');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(REPO, 'models', 'stories260K', f), join(model, f));
  writeFileSync(text, readFileSync(join(REPO, 'calibration', 'tinystories-validation.txt'), 'utf8').slice(0, 3000));
  const entries = Object.entries(RUNS) as [RunName, readonly string[]][];
  const results = await Promise.all(
    entries.map(([name, [method, ...pattern]]) => runShears(root, 'prune', model, '--method', method, ...pattern, '--calibration', 'tinystories', '--nsamples', '8', '--seqlen', '32', '--out', name)),
  );
  pruned = Object.fromEntries(entries.map(([name], i) => [name, results[i]])) as Record<RunName, Run>;
}, 240_000);

function zeros(a: Float32Array): number {
  let z = 0;
  for (const v of a) if (v === 0) z++;
  return z;
}

describe('BLOOM through the CLI', () => {
  it.each(Object.keys(RUNS) as RunName[])('prune %s: the pattern holds on every prunable tensor; everything else is byte-identical, names, shapes, dtypes and config kept', (name) => {
    const r = pruned[name];
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    const src = Checkpoint.openFolder(model);
    const out = Checkpoint.openFolder(join(root, name));
    try {
      expect(out.tensorNames()).toEqual(src.tensorNames());
      // Among the tensors that must come out byte-identical: the embedding, its LayerNorm, every norm and bias.
      expect(src.tensorNames()).toEqual(expect.arrayContaining(['word_embeddings.weight', 'word_embeddings_layernorm.weight', 'word_embeddings_layernorm.bias', 'ln_f.weight', 'h.0.input_layernorm.bias', 'h.1.self_attention.query_key_value.bias']));
      const prunable = new Set<string>();
      for (let b = 0; b < 2; b++) {
        for (const l of ['self_attention.query_key_value', 'self_attention.dense', 'mlp.dense_h_to_4h', 'mlp.dense_4h_to_h']) prunable.add(`h.${b}.${l}.weight`);
      }
      for (const t of src.tensorNames()) {
        expect(out.info(t).dtype, t).toBe('BF16');
        expect(out.info(t).shape, t).toEqual(src.info(t).shape);
        if (!prunable.has(t)) {
          expect(Buffer.from(out.readBytes(t)).equals(Buffer.from(src.readBytes(t))), `${t} untouched`).toBe(true);
          continue;
        }
        const w = out.readFloat32(t);
        const [rows, cols] = out.info(t).shape;
        if (name.endsWith('-24')) {
          for (let r0 = 0; r0 < rows; r0++) {
            for (let c = 0; c < cols; c += 4) expect(zeros(w.subarray(r0 * cols + c, r0 * cols + c + 4)), `${t} row ${r0} cols ${c}..${c + 3}`).toBeGreaterThanOrEqual(2);
          }
        } else if (name.startsWith('wanda')) {
          // Wanda compares weights within each output row: exactly half of every row.
          for (let r0 = 0; r0 < rows; r0++) expect(zeros(w.subarray(r0 * cols, (r0 + 1) * cols)), `${t} row ${r0}`).toBe(cols / 2);
        } else {
          // SparseGPT picks half of each 128-column block over all rows.
          expect(zeros(w) / w.length, t).toBeGreaterThanOrEqual(0.5);
          expect(zeros(w) / w.length, t).toBeLessThan(0.51);
        }
      }
      for (const f of ['config.json', 'tokenizer.json']) expect(readFileSync(join(root, name, f), 'utf8')).toBe(readFileSync(join(model, f), 'utf8'));
      const report = JSON.parse(readFileSync(join(root, name, 'shears-report.json'), 'utf8')) as { layers: { tensor: string }[] };
      expect(new Set(report.layers.map((l) => l.tensor))).toEqual(prunable);
    } finally {
      src.close();
      out.close();
    }
  });

  it('eval on the SparseGPT 50% output equals the float64 reference perplexity of its weights', async () => {
    const dir = join(root, 'sparsegpt-50');
    const r = await runShears(root, 'eval', dir, '--dataset', text, '--seqlen', '32', '--max-tokens', '256', '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const got = JSON.parse(r.stdout) as { perplexity: number };
    const stream = loadTokenizer(dir).encode(readFileSync(text, 'utf8')).subarray(0, 256);
    const ckpt = Checkpoint.openFolder(dir);
    const m: RefModel = { w: (n) => ckpt.readFloat32(n), prefix: '', hidden: HIDDEN, heads: HEADS, eps: 1e-5, postLn: false };
    const logits = refLogits(m, stream, 32, VOCAB);
    ckpt.close();
    let nll = 0;
    let n = 0;
    for (let t = 0; t < stream.length; t++) {
      if ((t + 1) % 32 === 0) continue; // the last token of a window has no target inside it
      const row = logits.subarray(t * VOCAB, (t + 1) * VOCAB);
      const max = Math.max(...row);
      nll += max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0)) - row[stream[t + 1]];
      n++;
    }
    expect(Math.abs(got.perplexity - Math.exp(nll / n)) / Math.exp(nll / n)).toBeLessThanOrEqual(1e-5);
  });

  it('inspect reports the 2:4 output; export to sparse-24-bitmask and back to dense gives the same tensors and config', async () => {
    const dir = join(root, 'sparsegpt-24');
    const ins = await runShears(root, 'inspect', dir, '--json');
    expect(ins.status).toBe(0);
    const s = JSON.parse(ins.stdout) as InspectSummary;
    const qkv = s.tensors.find((t) => t.name === 'h.1.self_attention.query_key_value.weight');
    expect(qkv).toMatchObject({ dtype: 'BF16', shape: [3 * HIDDEN, HIDDEN] });
    expect(s.tensors.find((t) => t.name === 'word_embeddings_layernorm.weight')).toMatchObject({ dtype: 'BF16', shape: [HIDDEN] });

    const sb = await runShears(root, 'export', dir, '--format', 'sparse-24-bitmask', '--out', 'sb24');
    expect(sb.stderr).toBe('');
    expect(sb.status).toBe(0);
    const back = await runShears(root, 'export', join(root, 'sb24'), '--format', 'dense', '--out', 'sb24-dense');
    expect(back.stderr).toBe('');
    expect(back.status).toBe(0);
    const a = Checkpoint.openFolder(dir);
    const b = Checkpoint.openFolder(join(root, 'sb24-dense'));
    try {
      expect(b.tensorNames()).toEqual(a.tensorNames());
      for (const t of a.tensorNames()) {
        expect(b.info(t).dtype).toBe(a.info(t).dtype);
        expect(Buffer.from(b.readBytes(t)).equals(Buffer.from(a.readBytes(t))), t).toBe(true);
      }
      expect(b.config).toEqual(a.config);
    } finally {
      a.close();
      b.close();
    }
  });
});
