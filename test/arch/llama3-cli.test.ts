/**
 * A Llama-3-style checkpoint (config.json with meta-llama/Llama-3.2-1B's fields: rope_type "llama3" in a
 * transformers 4 rope_scaling, rope_theta 500000, GQA, explicit head_dim, tied embeddings; BF16 weights; the bundled
 * stories260K tokenizer) through the real CLI: Wanda and SparseGPT at 50% and 2:4. Patterns are checked on every
 * written prunable tensor, every other tensor byte-identical; eval's perplexity of one output against the float64
 * reference of llama-reference.ts with HF's llama3 frequencies.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { loadTokenizer } from '../../src/tokenize/tokenizer.js';
import { REPO, runShears, type Run } from '../helpers/cli.js';
import { writeFolder } from './gemma-reference.js';
import { llamaCheckpoint, refBlock, refLogits, type LlamaCase } from './llama-reference.js';
import { checkPattern, refPerplexity } from './moe-cli-helpers.js';
import { MemoryCheckpoint, rng, ropeInv, type F64 } from './reference.js';
import { llama3Inv } from './rope-reference.js';

const VOCAB = 512; // the stories260K tokenizer's
const SEQ = 32;
const H = 4;
const KV = 2;
const D = 8;
const HIDDEN = 32;
const INTER = 64;
const LAYERS = 2;

/** meta-llama/Llama-3.2-1B's config.json, scaled down (sizes, vocab and token ids; every field kept). */
const CONFIG = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 1,
  eos_token_id: 2,
  head_dim: D,
  hidden_act: 'silu',
  hidden_size: HIDDEN,
  initializer_range: 0.02,
  intermediate_size: INTER,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: H,
  num_hidden_layers: LAYERS,
  num_key_value_heads: KV,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.45.0.dev0',
  use_cache: true,
  vocab_size: VOCAB,
};
const CASE: LlamaCase = { title: 'llama3', config: CONFIG, qkvBias: false, oBias: false, mlpBias: false, qkNorm: false };

const RUNS = { 'wanda-50': ['wanda', '--sparsity', '0.5'], 'wanda-24': ['wanda', '--pattern', '2:4'], 'sparsegpt-50': ['sparsegpt', '--sparsity', '0.5'], 'sparsegpt-24': ['sparsegpt', '--pattern', '2:4'] } as const;
type RunName = keyof typeof RUNS;
const PRUNABLE: [string, number, number][] = [
  ['self_attn.q_proj', H * D, HIDDEN],
  ['self_attn.k_proj', KV * D, HIDDEN],
  ['self_attn.v_proj', KV * D, HIDDEN],
  ['self_attn.o_proj', HIDDEN, H * D],
  ['mlp.gate_proj', INTER, HIDDEN],
  ['mlp.up_proj', INTER, HIDDEN],
  ['mlp.down_proj', HIDDEN, INTER],
];

const root = mkdtempSync(join(tmpdir(), 'shears-llama3-cli-'));
const model = join(root, 'llama3');
const text = join(root, 'eval.txt');
const pruned = new Map<RunName, Run>();
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  writeFileSync(text, readFileSync(join(REPO, 'calibration', 'tinystories-validation.txt'), 'utf8').slice(0, 3000));
  mkdirSync(model);
  writeFolder(model, llamaCheckpoint(CASE, 31), CONFIG, 'BF16');
  for (const t of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(REPO, 'models', 'stories260K', t), join(model, t));
  const entries = Object.entries(RUNS) as [RunName, readonly string[]][];
  const results = await Promise.all(entries.map(([name, [method, ...pattern]]) => runShears(root, 'prune', 'llama3', '--method', method, ...pattern, '--calibration', 'tinystories', '--nsamples', '8', '--seqlen', String(SEQ), '--out', name)));
  entries.forEach(([name], i) => pruned.set(name, results[i]));
}, 600_000);

describe('a Llama 3 checkpoint (rope_type llama3) through the CLI', () => {
  it.each(Object.keys(RUNS) as RunName[])('prune %s: the pattern holds on every prunable tensor; norms and the tied embedding byte-identical; names, dtypes, config kept', (run) => {
    const r = pruned.get(run)!;
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    const src = Checkpoint.openFolder(model);
    const out = Checkpoint.openFolder(join(root, run));
    try {
      expect(out.tensorNames()).toEqual(src.tensorNames());
      const prunable = new Set<string>();
      for (let b = 0; b < LAYERS; b++) {
        for (const [name, rows, cols] of PRUNABLE) {
          const tensor = `model.layers.${b}.${name}.weight`;
          prunable.add(tensor);
          checkPattern({ label: tensor, tensor, block: b, rows, cols, data: out.readFloat32(tensor) }, run, false);
        }
      }
      for (const t of src.tensorNames()) {
        expect(out.info(t).dtype, t).toBe('BF16');
        expect(out.info(t).shape, t).toEqual(src.info(t).shape);
        if (!prunable.has(t)) expect(Buffer.from(out.readBytes(t)).equals(Buffer.from(src.readBytes(t))), `${t} untouched`).toBe(true);
      }
      expect(src.tensorNames().length).toBe(prunable.size + 2 * LAYERS + 2); // + per-block norms, final norm, embedding
      expect(readFileSync(join(root, run, 'config.json'), 'utf8')).toBe(readFileSync(join(model, 'config.json'), 'utf8'));
    } finally {
      src.close();
      out.close();
    }
  });

  it('eval on the Wanda 2:4 output equals the float64 reference perplexity of its weights with HF llama3 RoPE', async () => {
    const dir = join(root, 'wanda-24');
    const r = await runShears(root, 'eval', dir, '--dataset', text, '--seqlen', String(SEQ), '--max-tokens', '256', '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const got = (JSON.parse(r.stdout) as { perplexity: number }).perplexity;
    const stream = loadTokenizer(dir).encode(readFileSync(text, 'utf8')).subarray(0, 256);
    const ckpt = Checkpoint.openFolder(dir);
    const ck = new MemoryCheckpoint(rng(0));
    for (const n of ckpt.tensorNames()) ck.tensors.set(n, ckpt.readFloat32(n));
    ckpt.close();
    const inv = llama3Inv(500000, D, 32, 1, 4, 8192);
    let x: F64 = new Float64Array(stream.length * HIDDEN);
    const table = ck.get('model.embed_tokens.weight');
    stream.forEach((id, t) => x.set(table.subarray(id * HIDDEN, (id + 1) * HIDDEN), t * HIDDEN));
    for (let b = 0; b < LAYERS; b++) x = refBlock(CASE, ck, b, x, SEQ, (v, T, heads, d, seq) => ropeInv(v, T, heads, d, seq, inv)).out;
    const want = refPerplexity(refLogits(CASE, ck, x), stream, SEQ, VOCAB);
    expect(Math.abs(got - want) / want).toBeLessThanOrEqual(1e-5);
  });
});
