/**
 * Random Mixtral checkpoints through the real CLI: the transformers 4 layout in BF16 (Wanda and SparseGPT,
 * 50% and 2:4) and the transformers 5 fused layout in F32 (SparseGPT 50%, Wanda 2:4). Checked on the written
 * tensors: the realised pattern of every prunable matrix (each expert's), routers / norms / embeddings
 * byte-identical, the layout kept; in the report: each expert's routed-token count equals the count the
 * float64 reference router gives, and the experts under --min-expert-tokens are pruned by magnitude. eval of
 * a pruned BF16 output equals the reference perplexity of its weights.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { loadTokenizer } from '../../src/tokenize/tokenizer.js';
import type { InspectSummary } from '../../src/inspect/summary.js';
import { REPO, runShears, type Run } from '../helpers/cli.js';
import { randomIds, rng, type F64 } from './reference.js';
import { moeCheckpoint, refBlock, refEmbed, refLogits, shapeOf, writeMoeFolder, type MoeShape } from './moe-reference.js';
import { checkMoeOutput, refPerplexity, type ReportLayer } from './moe-cli-helpers.js';

const VOCAB = 512; // the stories260K tokenizer's
const base = { architectures: ['MixtralForCausalLM'], model_type: 'mixtral', hidden_size: 32, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: VOCAB, max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 1e6, num_local_experts: 4, num_experts_per_tok: 2, sliding_window: null, router_jitter_noise: 0, hidden_act: 'silu', bos_token_id: 1, eos_token_id: 2, tie_word_embeddings: false };
const V4 = { ...base, torch_dtype: 'bfloat16', transformers_version: '4.46.0' };
const V5 = { ...base, dtype: 'float32', rope_theta: undefined, rope_parameters: { rope_type: 'default', rope_theta: 1e6 }, transformers_version: '5.0.0' };
const RUNS: Record<string, { model: 'v4' | 'v5'; args: string[] }> = {
  'wanda-50': { model: 'v4', args: ['wanda', '--sparsity', '0.5'] },
  'wanda-24': { model: 'v4', args: ['wanda', '--pattern', '2:4'] },
  'sparsegpt-50': { model: 'v4', args: ['sparsegpt', '--sparsity', '0.5'] },
  'sparsegpt-24': { model: 'v4', args: ['sparsegpt', '--pattern', '2:4'] },
  'fused-sparsegpt-50': { model: 'v5', args: ['sparsegpt', '--sparsity', '0.5'] },
  'fused-wanda-24': { model: 'v5', args: ['wanda', '--pattern', '2:4'] },
};
const SEQ = 32;
const WINDOWS = 8;

const root = mkdtempSync(join(tmpdir(), 'shears-mixtral-cli-'));
const models = { v4: join(root, 'mixtral-v4'), v5: join(root, 'mixtral-v5') };
const shapes: Record<'v4' | 'v5', MoeShape> = { v4: shapeOf('mixtral', V4, false), v5: shapeOf('mixtral', V5, true) };
const calib = join(root, 'calib.safetensors');
const text = join(root, 'eval.txt');
const ids = randomIds(rng(21), WINDOWS * SEQ, VOCAB);
let minTokens = 0;
let results: Record<string, Run>;
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  for (const [k, cfg, dtype, seed] of [['v4', V4, 'BF16', 3], ['v5', V5, 'F32', 4]] as const) {
    mkdirSync(models[k]);
    writeMoeFolder(models[k], moeCheckpoint(shapes[k], seed), cfg, dtype);
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(REPO, 'models', 'stories260K', f), join(models[k], f));
  }
  const w = new SafetensorsWriter(calib, [{ name: 'input_ids', dtype: 'I32', shape: [WINDOWS, SEQ] }], { format: 'pt' });
  w.write('input_ids', ids);
  w.finish();
  writeFileSync(text, readFileSync(join(REPO, 'calibration', 'tinystories-validation.txt'), 'utf8').slice(0, 3000));
  // The threshold is the most-routed expert's count in block 0 of the v4 model: at least that expert keeps
  // its method, and any expert below it falls back, so both sides of the rule are exercised.
  const src = Checkpoint.openFolder(models.v4);
  const r0 = refBlock(shapes.v4, (n) => src.readFloat32(n), 0, refEmbed(shapes.v4, (n) => src.readFloat32(n), ids), SEQ);
  src.close();
  minTokens = Math.max(...r0.routed!.map((t) => t.length));
  const entries = Object.entries(RUNS);
  const runs = await Promise.all(
    entries.map(([name, { model, args: [method, ...pattern] }]) => runShears(root, 'prune', models[model], '--method', method, ...pattern, '--calib-tokens', calib, '--min-expert-tokens', String(minTokens), '--out', name)),
  );
  results = Object.fromEntries(entries.map(([name], i) => [name, runs[i]]));
}, 240_000);


describe('Mixtral through the CLI', () => {
  it.each(Object.keys(RUNS))('prune %s: pattern on every expert and attention matrix, routers/norms/embeddings untouched, routed-token counts from the reference router', (name) => {
    const r = results[name];
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    const { model } = RUNS[name];
    const s = shapes[model];
    const src = Checkpoint.openFolder(models[model]);
    const out = Checkpoint.openFolder(join(root, name));
    try {
      const report = JSON.parse(readFileSync(join(root, name, 'shears-report.json'), 'utf8')) as { layers: ReportLayer[] };
      const counts = checkMoeOutput(s, src, out, report, name.replace('fused-', ''), ids, SEQ, minTokens);
      expect(counts[0].some((c) => c < minTokens)).toBe(true); // the fallback ran at least once
      // Among the tensors that must come out byte-identical: routers, norms, embeddings, the LM head.
      expect(src.tensorNames()).toEqual(expect.arrayContaining(['model.embed_tokens.weight', 'model.norm.weight', 'lm_head.weight', `model.layers.1.${s.fused ? 'mlp' : 'block_sparse_moe'}.gate.weight`, 'model.layers.0.input_layernorm.weight']));
      for (const f of ['config.json', 'tokenizer.json']) expect(readFileSync(join(root, name, f), 'utf8')).toBe(readFileSync(join(models[model], f), 'utf8'));
    } finally {
      src.close();
      out.close();
    }
  });

  it('a fallback expert is pruned by magnitude: its kept weights are the largest |W| of the matrix', () => {
    const src = Checkpoint.openFolder(models.v4);
    const out = Checkpoint.openFolder(join(root, 'wanda-50'));
    try {
      const report = JSON.parse(readFileSync(join(root, 'wanda-50', 'shears-report.json'), 'utf8')) as { layers: ReportLayer[] };
      const fell = report.layers.filter((l) => l.fallback);
      expect(fell.length).toBeGreaterThan(0);
      for (const l of fell) {
        const before = src.readFloat32(l.tensor);
        const after = out.readFloat32(l.tensor);
        let maxPruned = 0;
        let minKept = Infinity;
        for (let k = 0; k < before.length; k++) {
          if (after[k] === 0) maxPruned = Math.max(maxPruned, Math.abs(before[k]));
          else minKept = Math.min(minKept, Math.abs(before[k]));
        }
        expect(maxPruned, l.tensor).toBeLessThanOrEqual(minKept);
      }
    } finally {
      src.close();
      out.close();
    }
  });

  it('eval of the BF16 SparseGPT 50% output equals the float64 reference perplexity of its weights', async () => {
    const dir = join(root, 'sparsegpt-50');
    const r = await runShears(root, 'eval', dir, '--dataset', text, '--seqlen', '32', '--max-tokens', '256', '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const got = JSON.parse(r.stdout) as { perplexity: number };
    const stream = loadTokenizer(dir).encode(readFileSync(text, 'utf8')).subarray(0, 256);
    const ckpt = Checkpoint.openFolder(dir);
    const w = (n: string) => ckpt.readFloat32(n);
    const s = shapes.v4;
    let x: F64 = refEmbed(s, w, stream);
    for (let b = 0; b < s.layers; b++) x = refBlock(s, w, b, x, 32).out;
    const ppl = refPerplexity(refLogits(s, w, x), stream, 32, VOCAB);
    ckpt.close();
    expect(Math.abs(got.perplexity - ppl) / ppl).toBeLessThanOrEqual(1e-5);
  });

  it('inspect reads the fused output; export to sparse-bitmask and back gives the same tensors', async () => {
    const dir = join(root, 'fused-wanda-24');
    const ins = await runShears(root, 'inspect', dir, '--json');
    expect(ins.status).toBe(0);
    const s = JSON.parse(ins.stdout) as InspectSummary;
    expect(s.tensors.find((t) => t.name === 'model.layers.0.mlp.experts.gate_up_proj')).toMatchObject({ dtype: 'F32', shape: [4, 48, 32] });
    const sb = await runShears(root, 'export', dir, '--format', 'sparse-bitmask', '--out', 'sb');
    expect(sb.stderr).toBe('');
    expect(sb.status).toBe(0);
    const back = await runShears(root, 'export', join(root, 'sb'), '--format', 'dense', '--out', 'sb-dense');
    expect(back.status).toBe(0);
    const a = Checkpoint.openFolder(dir);
    const b = Checkpoint.openFolder(join(root, 'sb-dense'));
    try {
      expect(b.tensorNames()).toEqual(a.tensorNames());
      for (const t of a.tensorNames()) expect(Buffer.from(b.readBytes(t)).equals(Buffer.from(a.readBytes(t))), t).toBe(true);
    } finally {
      a.close();
      b.close();
    }
  });
});
