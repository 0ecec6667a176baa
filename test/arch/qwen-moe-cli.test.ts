/**
 * Random qwen2_moe (shared expert, layer 0 in mlp_only_layers) and qwen3_moe (q/k norms, norm_topk_prob)
 * checkpoints through the real CLI, per-expert layout in BF16 and fused layout in F32: Wanda and SparseGPT at
 * 50% and 2:4. Checked as for Mixtral (moe-cli-helpers.ts): the pattern of every prunable matrix, routers,
 * shared-expert gates, norms and embeddings byte-identical, and each expert's routed-token count equal to the
 * float64 reference router's.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { REPO, runShears, type Run } from '../helpers/cli.js';
import { randomIds, rng } from './reference.js';
import { moeCheckpoint, shapeOf, writeMoeFolder, type MoeShape, type MoeType } from './moe-reference.js';
import { checkMoeOutput, type ReportLayer } from './moe-cli-helpers.js';

const VOCAB = 512;
const attn = { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: VOCAB, max_position_embeddings: 64, hidden_act: 'silu', rms_norm_eps: 1e-6, bos_token_id: 1, eos_token_id: 2, tie_word_embeddings: false };
const MODELS: Record<string, { type: MoeType; fused: boolean; dtype: 'BF16' | 'F32'; config: Record<string, unknown> }> = {
  'qwen2-v4': { type: 'qwen2_moe', fused: false, dtype: 'BF16', config: { ...attn, model_type: 'qwen2_moe', intermediate_size: 40, moe_intermediate_size: 12, shared_expert_intermediate_size: 28, num_experts: 4, num_experts_per_tok: 2, norm_topk_prob: false, decoder_sparse_step: 1, mlp_only_layers: [0], rope_theta: 1e6, use_sliding_window: false, torch_dtype: 'bfloat16' } },
  'qwen2-v5': { type: 'qwen2_moe', fused: true, dtype: 'F32', config: { ...attn, model_type: 'qwen2_moe', intermediate_size: 40, moe_intermediate_size: 12, shared_expert_intermediate_size: 28, num_experts: 4, num_experts_per_tok: 2, norm_topk_prob: true, decoder_sparse_step: 1, mlp_only_layers: [], rope_parameters: { rope_type: 'default', rope_theta: 1e6 }, dtype: 'float32' } },
  'qwen3-v4': { type: 'qwen3_moe', fused: false, dtype: 'BF16', config: { ...attn, model_type: 'qwen3_moe', head_dim: 16, intermediate_size: 40, moe_intermediate_size: 12, num_experts: 4, num_experts_per_tok: 2, norm_topk_prob: true, decoder_sparse_step: 1, mlp_only_layers: [], rope_theta: 1e6, torch_dtype: 'bfloat16' } },
  'qwen3-v5': { type: 'qwen3_moe', fused: true, dtype: 'F32', config: { ...attn, model_type: 'qwen3_moe', intermediate_size: 40, moe_intermediate_size: 12, num_experts: 4, num_experts_per_tok: 2, norm_topk_prob: false, rope_parameters: { rope_type: 'default', rope_theta: 1e6 }, dtype: 'float32' } },
};
const RUNS: Record<string, { model: string; run: string; args: string[] }> = {};
for (const fam of ['qwen2', 'qwen3']) {
  RUNS[`${fam}-wanda-50`] = { model: `${fam}-v4`, run: 'wanda-50', args: ['wanda', '--sparsity', '0.5'] };
  RUNS[`${fam}-sparsegpt-24`] = { model: `${fam}-v4`, run: 'sparsegpt-24', args: ['sparsegpt', '--pattern', '2:4'] };
  RUNS[`${fam}-sparsegpt-50`] = { model: `${fam}-v5`, run: 'sparsegpt-50', args: ['sparsegpt', '--sparsity', '0.5'] };
  RUNS[`${fam}-wanda-24`] = { model: `${fam}-v5`, run: 'wanda-24', args: ['wanda', '--pattern', '2:4'] };
}
const SEQ = 32;
const WINDOWS = 8;
const MIN_TOKENS = 100; // about the mean routed count (8·32·2/4 = 128): some experts fall back, most do not

const root = mkdtempSync(join(tmpdir(), 'shears-qwen-moe-cli-'));
const calib = join(root, 'calib.safetensors');
const ids = randomIds(rng(31), WINDOWS * SEQ, VOCAB);
const shapes: Record<string, MoeShape> = {};
let results: Record<string, Run>;
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  let seed = 50;
  for (const [name, m] of Object.entries(MODELS)) {
    shapes[name] = shapeOf(m.type, m.config, m.fused);
    mkdirSync(join(root, name));
    writeMoeFolder(join(root, name), moeCheckpoint(shapes[name], seed++), m.config, m.dtype);
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(REPO, 'models', 'stories260K', f), join(root, name, f));
  }
  const w = new SafetensorsWriter(calib, [{ name: 'input_ids', dtype: 'I32', shape: [WINDOWS, SEQ] }], { format: 'pt' });
  w.write('input_ids', ids);
  w.finish();
  const entries = Object.entries(RUNS);
  const runs = await Promise.all(entries.map(([name, r]) => runShears(root, 'prune', join(root, r.model), '--method', ...r.args, '--calib-tokens', calib, '--min-expert-tokens', String(MIN_TOKENS), '--out', name)));
  results = Object.fromEntries(entries.map(([name], i) => [name, runs[i]]));
}, 300_000);

describe('Qwen MoE through the CLI', () => {
  it.each(Object.keys(RUNS))('prune %s: pattern on every matrix, routers/shared gate/norms/embeddings untouched, routed-token counts from the reference router', (name) => {
    const r = results[name];
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.status).toBe(0);
    const { model, run } = RUNS[name];
    const src = Checkpoint.openFolder(join(root, model));
    const out = Checkpoint.openFolder(join(root, name));
    try {
      const report = JSON.parse(readFileSync(join(root, name, 'shears-report.json'), 'utf8')) as { layers: ReportLayer[] };
      checkMoeOutput(shapes[model], src, out, report, run, ids, SEQ, MIN_TOKENS);
      expect(src.tensorNames()).toEqual(expect.arrayContaining(['model.embed_tokens.weight', 'model.layers.1.mlp.gate.weight', 'model.layers.1.post_attention_layernorm.weight']));
      if (MODELS[model].type === 'qwen2_moe') expect(src.tensorNames()).toContain('model.layers.1.mlp.shared_expert_gate.weight');
    } finally {
      src.close();
      out.close();
    }
  });
});
