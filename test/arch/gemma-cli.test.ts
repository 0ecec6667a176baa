/**
 * Random Gemma, Gemma 2 and Gemma 3 text checkpoints (HF config.json and tensor names, BF16 weights, the bundled
 * stories260K tokenizer) through the real CLI: Wanda and SparseGPT at 50% and 2:4 for each, then eval / inspect /
 * export on the results. Patterns are checked on the written tensors themselves; eval's perplexity against the
 * float64 reference of gemma-reference.ts on the pruned weights.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { loadTokenizer } from '../../src/tokenize/tokenizer.js';
import type { InspectSummary } from '../../src/inspect/summary.js';
import { REPO, runShears, type Run } from '../helpers/cli.js';
import { gemmaCheckpoint, refLogits, toBf16, writeFolder, type Dims, type GemmaType, type RefModel } from './gemma-reference.js';

const VOCAB = 512; // the stories260K tokenizer's
const SEQ = 32;
const inf = Infinity;

interface Family {
  type: GemmaType;
  dims: Dims;
  config: Record<string, unknown>;
  ref: Omit<RefModel, 'w' | 'type' | 'd'>;
}

const FAMILIES: Family[] = [
  {
    type: 'gemma',
    dims: { hidden: 48, heads: 4, kvHeads: 1, headDim: 16, inter: 96, layers: 2, vocab: VOCAB },
    config: { architectures: ['GemmaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 1, eos_token_id: 2, head_dim: 16, hidden_act: 'gelu', hidden_activation: 'gelu_pytorch_tanh', hidden_size: 48, intermediate_size: 96, max_position_embeddings: 8192, model_type: 'gemma', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 1, pad_token_id: 0, rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: 10000.0, torch_dtype: 'bfloat16', vocab_size: VOCAB },
    ref: { eps: 1e-6, activation: 'gelu_pytorch_tanh', scale: 0.25, normalizer: toBf16(Math.sqrt(48)), window: () => inf, rope: () => ({ theta: 10000, factor: 1 }) },
  },
  {
    type: 'gemma2',
    dims: { hidden: 32, heads: 4, kvHeads: 2, headDim: 16, inter: 64, layers: 2, vocab: VOCAB },
    config: { architectures: ['Gemma2ForCausalLM'], attention_bias: false, attn_logit_softcapping: 50.0, bos_token_id: 1, cache_implementation: 'hybrid', eos_token_id: 2, final_logit_softcapping: 30.0, head_dim: 16, hidden_act: 'gelu_pytorch_tanh', hidden_activation: 'gelu_pytorch_tanh', hidden_size: 32, intermediate_size: 64, max_position_embeddings: 8192, model_type: 'gemma2', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 2, pad_token_id: 0, query_pre_attn_scalar: 16, rms_norm_eps: 1e-6, rope_theta: 10000.0, sliding_window: 8, torch_dtype: 'bfloat16', vocab_size: VOCAB },
    ref: { eps: 1e-6, activation: 'gelu_pytorch_tanh', scale: 0.25, attnCap: 50, finalCap: 30, normalizer: toBf16(Math.sqrt(32)), window: (i) => (i % 2 === 0 ? 8 : inf), rope: () => ({ theta: 10000, factor: 1 }) },
  },
  {
    type: 'gemma3_text',
    dims: { hidden: 32, heads: 4, kvHeads: 1, headDim: 16, inter: 64, layers: 2, vocab: VOCAB },
    config: { architectures: ['Gemma3ForCausalLM'], attention_bias: false, attn_logit_softcapping: null, bos_token_id: 1, eos_token_id: 2, final_logit_softcapping: null, head_dim: 16, hidden_activation: 'gelu_pytorch_tanh', hidden_size: 32, intermediate_size: 64, max_position_embeddings: 32768, model_type: 'gemma3_text', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 1, pad_token_id: 0, query_pre_attn_scalar: 16, rms_norm_eps: 1e-6, rope_local_base_freq: 10000.0, rope_scaling: { factor: 8.0, rope_type: 'linear' }, rope_theta: 1000000.0, sliding_window: 8, sliding_window_pattern: 2, torch_dtype: 'bfloat16', vocab_size: VOCAB },
    ref: { eps: 1e-6, activation: 'gelu_pytorch_tanh', scale: 0.25, normalizer: toBf16(Math.sqrt(32)), window: (i) => (i === 0 ? 8 : inf), rope: (i) => (i === 0 ? { theta: 10000, factor: 1 } : { theta: 1e6, factor: 8 }) },
  },
];

const RUNS = { 'wanda-50': ['wanda', '--sparsity', '0.5'], 'wanda-24': ['wanda', '--pattern', '2:4'], 'sparsegpt-50': ['sparsegpt', '--sparsity', '0.5'], 'sparsegpt-24': ['sparsegpt', '--pattern', '2:4'] } as const;
type RunName = keyof typeof RUNS;
const PRUNABLE = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];

const root = mkdtempSync(join(tmpdir(), 'shears-gemma-cli-'));
const text = join(root, 'eval.txt');
const pruned = new Map<string, Run>();
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  writeFileSync(text, readFileSync(join(REPO, 'calibration', 'tinystories-validation.txt'), 'utf8').slice(0, 3000));
  for (const f of FAMILIES) {
    const model = join(root, f.type);
    mkdirSync(model);
    writeFolder(model, gemmaCheckpoint(f.type, f.dims, f.dims.hidden + 7), f.config, 'BF16');
    for (const t of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(REPO, 'models', 'stories260K', t), join(model, t));
  }
  // One model type at a time, its four prunes side by side.
  for (const f of FAMILIES) {
    const entries = Object.entries(RUNS) as [RunName, readonly string[]][];
    const results = await Promise.all(
      entries.map(([name, [method, ...pattern]]) => runShears(root, 'prune', f.type, '--method', method, ...pattern, '--calibration', 'tinystories', '--nsamples', '8', '--seqlen', String(SEQ), '--out', `${f.type}-${name}`)),
    );
    entries.forEach(([name], i) => pruned.set(`${f.type}-${name}`, results[i]));
  }
}, 600_000);

function zeros(a: Float32Array): number {
  let z = 0;
  for (const v of a) if (v === 0) z++;
  return z;
}

const PRUNE_CASES = FAMILIES.flatMap((f) => (Object.keys(RUNS) as RunName[]).map((run) => ({ type: f.type, run, layers: f.dims.layers })));

describe('Gemma 1, 2 and 3 through the CLI', () => {
  it.each(PRUNE_CASES)('$type prune $run: the pattern holds on every prunable tensor; norms and embeddings byte-identical; names, shapes, dtypes and config kept', ({ type, run, layers }) => {
    const r = pruned.get(`${type}-${run}`)!;
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    const src = Checkpoint.openFolder(join(root, type));
    const out = Checkpoint.openFolder(join(root, `${type}-${run}`));
    try {
      expect(out.tensorNames()).toEqual(src.tensorNames());
      const norms = src.tensorNames().filter((t) => t.includes('norm'));
      expect(norms.length).toBe(1 + layers * (type === 'gemma' ? 2 : type === 'gemma2' ? 4 : 6));
      const prunable = new Set<string>();
      for (let b = 0; b < layers; b++) for (const l of PRUNABLE) prunable.add(`model.layers.${b}.${l}.weight`);
      for (const t of src.tensorNames()) {
        expect(out.info(t).dtype, t).toBe('BF16');
        expect(out.info(t).shape, t).toEqual(src.info(t).shape);
        if (!prunable.has(t)) {
          // Every norm and the (tied) embedding come out byte-identical.
          expect(Buffer.from(out.readBytes(t)).equals(Buffer.from(src.readBytes(t))), `${t} untouched`).toBe(true);
          continue;
        }
        const w = out.readFloat32(t);
        const [rows, cols] = out.info(t).shape;
        if (run.endsWith('-24')) {
          for (let r0 = 0; r0 < rows; r0++) {
            for (let c = 0; c < cols; c += 4) expect(zeros(w.subarray(r0 * cols + c, r0 * cols + c + 4)), `${t} row ${r0} cols ${c}..${c + 3}`).toBeGreaterThanOrEqual(2);
          }
        } else if (run.startsWith('wanda')) {
          // Wanda compares weights within each output row: exactly half of every row.
          for (let r0 = 0; r0 < rows; r0++) expect(zeros(w.subarray(r0 * cols, (r0 + 1) * cols)), `${t} row ${r0}`).toBe(cols / 2);
        } else {
          // SparseGPT picks half of each 128-column block over all rows.
          expect(zeros(w) / w.length, t).toBeGreaterThanOrEqual(0.5);
          expect(zeros(w) / w.length, t).toBeLessThan(0.51);
        }
      }
      for (const f of ['config.json', 'tokenizer.json']) expect(readFileSync(join(root, `${type}-${run}`, f), 'utf8')).toBe(readFileSync(join(root, type, f), 'utf8'));
      const report = JSON.parse(readFileSync(join(root, `${type}-${run}`, 'shears-report.json'), 'utf8')) as { layers: { tensor: string }[] };
      expect(new Set(report.layers.map((l) => l.tensor))).toEqual(prunable);
    } finally {
      src.close();
      out.close();
    }
  });

  it.each(FAMILIES)('$type: eval on the SparseGPT 50% output equals the float64 reference perplexity of its weights', async (f) => {
    const dir = join(root, `${f.type}-sparsegpt-50`);
    const r = await runShears(root, 'eval', dir, '--dataset', text, '--seqlen', String(SEQ), '--max-tokens', '256', '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const got = JSON.parse(r.stdout) as { perplexity: number };
    const stream = loadTokenizer(dir).encode(readFileSync(text, 'utf8')).subarray(0, 256);
    const ckpt = Checkpoint.openFolder(dir);
    const m: RefModel = { w: (n) => ckpt.readFloat32(n), type: f.type, d: f.dims, ...f.ref };
    const logits = refLogits(m, stream, SEQ);
    ckpt.close();
    let nll = 0;
    let n = 0;
    for (let t = 0; t < stream.length; t++) {
      if ((t + 1) % SEQ === 0) continue; // the last token of a window has no target inside it
      const row = logits.subarray(t * VOCAB, (t + 1) * VOCAB);
      const max = Math.max(...row);
      nll += max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0)) - row[stream[t + 1]];
      n++;
    }
    expect(Math.abs(got.perplexity - Math.exp(nll / n)) / Math.exp(nll / n)).toBeLessThanOrEqual(1e-5);
  });

  it.each(FAMILIES)('$type: inspect reads the 2:4 output: 2:4 on every prunable tensor, names, shapes and dtypes', async (f) => {
    const ins = await runShears(root, 'inspect', join(root, `${f.type}-sparsegpt-24`), '--json');
    expect(ins.status).toBe(0);
    const s = JSON.parse(ins.stdout) as InspectSummary;
    expect(s.tensors.find((t) => t.name === 'model.layers.1.mlp.down_proj.weight')).toMatchObject({ dtype: 'BF16', shape: [f.dims.hidden, f.dims.inter] });
    expect(s.tensors.find((t) => t.name === 'model.norm.weight')).toMatchObject({ dtype: 'BF16', shape: [f.dims.hidden] });
    for (let b = 0; b < f.dims.layers; b++) for (const l of PRUNABLE) expect(s.tensors.find((t) => t.name === `model.layers.${b}.${l}.weight`)?.nm?.['2:4'], l).toBe(true);
    expect(s.tensors.find((t) => t.name === 'model.embed_tokens.weight')?.nm?.['2:4']).toBe(false);
  });

  // Export depends on the family only through the adapter's layer list, which the three model types share.
  it('gemma3_text: export to sparse-24-bitmask and back to dense gives the same tensors and config', async () => {
    const f = FAMILIES[2];
    const dir = join(root, `${f.type}-sparsegpt-24`);
    const sb = await runShears(root, 'export', dir, '--format', 'sparse-24-bitmask', '--out', `${f.type}-sb24`);
    expect(sb.stderr).toBe('');
    expect(sb.status).toBe(0);
    const back = await runShears(root, 'export', join(root, `${f.type}-sb24`), '--format', 'dense', '--out', `${f.type}-sb24-dense`);
    expect(back.stderr).toBe('');
    expect(back.status).toBe(0);
    const a = Checkpoint.openFolder(dir);
    const b = Checkpoint.openFolder(join(root, `${f.type}-sb24-dense`));
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
