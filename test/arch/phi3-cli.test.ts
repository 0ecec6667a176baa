/**
 * A random Phi-4-mini-style checkpoint (HF config.json and tensor names, fused qkv_proj / gate_up_proj, GQA,
 * partial rotary 0.75, longrope, a sliding window shorter than the windows, BF16 weights, the bundled
 * stories260K tokenizer) through the real CLI: Wanda and SparseGPT at 50% and 2:4, then eval / inspect / export
 * on the results, and --heads refused for the fused qkv_proj. Patterns are checked on the
 * written tensors themselves, the fused ones included; eval's perplexity against the float64 reference of
 * phi3-reference.ts on the pruned weights.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { loadTokenizer } from '../../src/tokenize/tokenizer.js';
import type { InspectSummary } from '../../src/inspect/summary.js';
import { REPO, runShears, type Run } from '../helpers/cli.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { writeFolder } from './gemma-reference.js';
import { checkPattern, refPerplexity } from './moe-cli-helpers.js';
import { phi3Checkpoint, refBlock, refEmbed, refLogits, type Dims, type RefModel } from './phi3-reference.js';
import { randomIds, rng } from './reference.js';

const VOCAB = 512; // the stories260K tokenizer's
const SEQ = 32;
const D: Dims = { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, inter: 96, layers: 2, vocab: VOCAB };
const CONFIG = {
  architectures: ['Phi3ForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 1,
  embd_pdrop: 0.0,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 64,
  initializer_range: 0.02,
  intermediate_size: 96,
  max_position_embeddings: 131072,
  model_type: 'phi3',
  num_attention_heads: 4,
  num_hidden_layers: 2,
  num_key_value_heads: 2,
  original_max_position_embeddings: 4096,
  pad_token_id: 0,
  partial_rotary_factor: 0.75,
  resid_pdrop: 0.0,
  rms_norm_eps: 1e-5,
  rope_scaling: { long_factor: [1, 1.118, 1.25, 1.398, 1.564, 1.75], short_factor: [1, 1.05, 1.1, 1.2, 1.4, 1.9], type: 'longrope' },
  rope_theta: 10000.0,
  sliding_window: 24,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.45.0',
  use_cache: true,
  vocab_size: VOCAB,
};

/** Windows of SEQ ≤ original_max_position_embeddings: short factors; attention factor √(1 + ln(max / original) / ln original). */
const REF_ROPE = { theta: 10000, rotaryDim: 12, factors: CONFIG.rope_scaling.short_factor, scale: Math.sqrt(1 + Math.log(131072 / 4096) / Math.log(4096)) };

const RUNS = { 'wanda-50': ['wanda', '--sparsity', '0.5'], 'wanda-24': ['wanda', '--pattern', '2:4'], 'sparsegpt-50': ['sparsegpt', '--sparsity', '0.5'], 'sparsegpt-24': ['sparsegpt', '--pattern', '2:4'] } as const;
type RunName = keyof typeof RUNS;
const PRUNABLE = ['self_attn.qkv_proj', 'self_attn.o_proj', 'mlp.gate_up_proj', 'mlp.down_proj'];

const WINDOWS = 8;
const calibIds = randomIds(rng(5), WINDOWS * SEQ, VOCAB);
const root = mkdtempSync(join(tmpdir(), 'shears-phi3-cli-'));
const calib = join(root, 'calib.safetensors');
const model = join(root, 'phi3');
const text = join(root, 'eval.txt');
const pruned = new Map<RunName, Run>();
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  writeFileSync(text, readFileSync(join(REPO, 'calibration', 'tinystories-validation.txt'), 'utf8').slice(0, 3000));
  mkdirSync(model);
  writeFolder(model, phi3Checkpoint(D, 71), CONFIG, 'BF16');
  for (const t of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(REPO, 'models', 'stories260K', t), join(model, t));
  const w = new SafetensorsWriter(calib, [{ name: 'input_ids', dtype: 'I32', shape: [WINDOWS, SEQ] }], { format: 'pt' });
  w.write('input_ids', calibIds);
  w.finish();
  const entries = Object.entries(RUNS) as [RunName, readonly string[]][];
  const results = await Promise.all(entries.map(([name, [method, ...pattern]]) => runShears(root, 'prune', 'phi3', '--method', method, ...pattern, '--calib-tokens', calib, '--out', `phi3-${name}`)));
  entries.forEach(([name], i) => pruned.set(name, results[i]));
}, 600_000);


describe('Phi-3 through the CLI', () => {
  it.each(Object.keys(RUNS) as RunName[])('prune %s: the pattern holds on every prunable tensor, fused ones included; norms, embeddings and head byte-identical; names, shapes, dtypes and config kept', (run) => {
    const r = pruned.get(run)!;
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    const src = Checkpoint.openFolder(model);
    const out = Checkpoint.openFolder(join(root, `phi3-${run}`));
    try {
      expect(out.tensorNames()).toEqual(src.tensorNames());
      const prunable = new Set<string>();
      for (let b = 0; b < D.layers; b++) for (const l of PRUNABLE) prunable.add(`model.layers.${b}.${l}.weight`);
      expect(src.tensorNames().filter((t) => !prunable.has(t)).sort()).toEqual(
        ['lm_head.weight', 'model.embed_tokens.weight', 'model.norm.weight', ...[0, 1].flatMap((b) => ['input_layernorm', 'post_attention_layernorm'].map((n) => `model.layers.${b}.${n}.weight`))].sort(),
      );
      for (const t of src.tensorNames()) {
        expect(out.info(t).dtype, t).toBe('BF16');
        expect(out.info(t).shape, t).toEqual(src.info(t).shape);
        if (!prunable.has(t)) {
          expect(Buffer.from(out.readBytes(t)).equals(Buffer.from(src.readBytes(t))), `${t} untouched`).toBe(true);
          continue;
        }
        const [rows, cols] = out.info(t).shape;
        // Wanda: half of every row, in every part of a fused matrix; SparseGPT: half of each column block.
        checkPattern({ label: t, tensor: t, block: 0, rows, cols, data: out.readFloat32(t) }, run, false);
      }
      for (const f of ['config.json', 'tokenizer.json']) expect(readFileSync(join(root, `phi3-${run}`, f), 'utf8')).toBe(readFileSync(join(model, f), 'utf8'));
      const report = JSON.parse(readFileSync(join(root, `phi3-${run}`, 'shears-report.json'), 'utf8')) as { layers: { tensor: string }[] };
      expect(new Set(report.layers.map((l) => l.tensor))).toEqual(prunable);
    } finally {
      src.close();
      out.close();
    }
  });

  it('Wanda 50% in block 0: every layer, the fused ones included, keeps the half of each row that a float64 Wanda with one column-norm statistic per input keeps', () => {
    const src = Checkpoint.openFolder(model);
    const out = Checkpoint.openFolder(join(root, 'phi3-wanda-50'));
    try {
      const m: RefModel = { w: (n) => src.readFloat32(n), d: D, eps: 1e-5, activation: 'silu', window: 24, rope: REF_ROPE, tied: false };
      // Block 0 sees the embeddings; Wanda gathers all of its statistics in one pass of the dense block.
      const { inputs } = refBlock(m, 0, refEmbed(m, calibIds), SEQ);
      const layers: [string, string][] = [['self_attn.qkv_proj', 'attn_in'], ['self_attn.o_proj', 'o_in'], ['mlp.gate_up_proj', 'mlp_in'], ['mlp.down_proj', 'down_in']];
      for (const [layer, input] of layers) {
        const t = `model.layers.0.${layer}.weight`;
        const [rows, cols] = src.info(t).shape;
        const x = inputs[input as keyof typeof inputs];
        const norm = new Float64Array(cols);
        for (let i = 0; i < x.length; i++) norm[i % cols] += x[i] ** 2;
        const W = src.readFloat32(t);
        const kept = out.readFloat32(t);
        let checked = 0;
        for (let r = 0; r < rows; r++) {
          const score = Array.from({ length: cols }, (_, j) => Math.abs(W[r * cols + j]) * Math.sqrt(norm[j]));
          const sorted = [...score].sort((a, b) => a - b);
          const cut = (sorted[cols / 2 - 1] + sorted[cols / 2]) / 2;
          for (let j = 0; j < cols; j++) {
            // Scores within 1e-5 of the cut could fall either way in float32 statistics: not asserted.
            if (Math.abs(score[j] - cut) <= 1e-5 * cut) continue;
            expect(kept[r * cols + j] !== 0, `${t} row ${r} col ${j}`).toBe(score[j] > cut);
            checked++;
          }
        }
        expect(checked, t).toBeGreaterThan(0.99 * rows * cols);
      }
    } finally {
      src.close();
      out.close();
    }
  });

  it('eval on the SparseGPT 50% output equals the float64 reference perplexity of its weights', async () => {
    const dir = join(root, 'phi3-sparsegpt-50');
    const r = await runShears(root, 'eval', dir, '--dataset', text, '--seqlen', String(SEQ), '--max-tokens', '256', '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const got = JSON.parse(r.stdout) as { perplexity: number };
    const stream = loadTokenizer(dir).encode(readFileSync(text, 'utf8')).subarray(0, 256);
    const ckpt = Checkpoint.openFolder(dir);
    const m: RefModel = { w: (n) => ckpt.readFloat32(n), d: D, eps: 1e-5, activation: 'silu', window: 24, rope: REF_ROPE, tied: false };
    const logits = refLogits(m, stream, SEQ);
    ckpt.close();
    const want = refPerplexity(logits, stream, SEQ, VOCAB);
    expect(Math.abs(got.perplexity - want) / want).toBeLessThanOrEqual(1e-5);
  });

  it('inspect reads the 2:4 output: 2:4 on every fused and plain prunable tensor, names, shapes and dtypes', async () => {
    const ins = await runShears(root, 'inspect', join(root, 'phi3-sparsegpt-24'), '--json');
    expect(ins.status).toBe(0);
    const s = JSON.parse(ins.stdout) as InspectSummary;
    expect(s.tensors.find((t) => t.name === 'model.layers.1.self_attn.qkv_proj.weight')).toMatchObject({ dtype: 'BF16', shape: [(4 + 2 * 2) * 16, 64] });
    expect(s.tensors.find((t) => t.name === 'model.layers.1.mlp.gate_up_proj.weight')).toMatchObject({ dtype: 'BF16', shape: [192, 64] });
    for (let b = 0; b < D.layers; b++) for (const l of PRUNABLE) expect(s.tensors.find((t) => t.name === `model.layers.${b}.${l}.weight`)?.nm?.['2:4'], l).toBe(true);
    expect(s.tensors.find((t) => t.name === 'model.embed_tokens.weight')?.nm?.['2:4']).toBe(false);
  });

  it('export to sparse-24-bitmask and back to dense gives the same tensors and config', async () => {
    const dir = join(root, 'phi3-sparsegpt-24');
    const sb = await runShears(root, 'export', dir, '--format', 'sparse-24-bitmask', '--out', 'phi3-sb24');
    expect(sb.stderr).toBe('');
    expect(sb.status).toBe(0);
    const back = await runShears(root, 'export', join(root, 'phi3-sb24'), '--format', 'dense', '--out', 'phi3-sb24-dense');
    expect(back.stderr).toBe('');
    expect(back.status).toBe(0);
    const a = Checkpoint.openFolder(dir);
    const b = Checkpoint.openFolder(join(root, 'phi3-sb24-dense'));
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

  it('prune --heads is refused with exit 2 and writes nothing (q, k and v are one fused matrix)', async () => {
    const r = await runShears(root, 'prune', 'phi3', '--heads', '0.25', '--calibration', 'tinystories', '--nsamples', '2', '--seqlen', String(SEQ), '--out', 'phi3-refused');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--heads: phi3 stores q, k and v fused in self_attn\.qkv_proj/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(join(root, 'phi3-refused'))).toBe(false);
  });
});
