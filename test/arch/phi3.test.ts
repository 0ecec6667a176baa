/**
 * Phi-3 / Phi-4 adapter vs the float64 reference of phi3-reference.ts (written from HF's modeling_phi3.py) on
 * tiny random checkpoints whose config.json fields and tensor names are HF's: a Phi-3-mini-4k-style
 * transformers 4 config (sliding window shorter than the window), a Phi-4-mini-style one (GQA, partial rotary
 * 0.75 at the top level, tied embeddings, BF16 on disk), and a transformers 5 config (`dtype`,
 * rope_parameters with rope_theta and partial_rotary_factor inside); then longrope (Phi3RotaryEmbedding with
 * _compute_longrope_parameters: short or long factors by window length against original_max_position_embeddings,
 * cos/sin times √(1 + ln(max / original) / ln original)) in three styles: Phi-3-mini-128k's first config
 * (type "su"), Phi-4-mini's (partial rotary, BF16), and transformers 5's rope_parameters.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createPhi3 } from '../../src/arch/phi3.js';
import { architectureFor } from '../../src/arch/registry.js';
import type { Weights } from '../../src/arch/types.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { runStructuredPrune, type StructuredJob } from '../../src/structured/job.js';
import { planHeads } from '../../src/structured/plan.js';
import { writeFolder } from './gemma-reference.js';
import { phi3Checkpoint, refBlock, refEmbed, refHead, type Dims, type RefModel, type RefRope } from './phi3-reference.js';
import { randomIds, relErr, rng } from './reference.js';

const VOCAB = 64;
const tmp = mkdtempSync(join(tmpdir(), 'shears-phi3-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Case {
  label: string;
  d: Dims;
  dtype: 'F32' | 'BF16';
  tied: boolean;
  config: Record<string, unknown>;
  window: number;
  rope: RefRope;
}

const CASES: Case[] = [
  {
    label: 'Phi-3-mini-4k style (transformers 4): MHA, sliding_window 5 < window, F32',
    d: { hidden: 32, heads: 4, kvHeads: 4, headDim: 8, inter: 48, layers: 2, vocab: VOCAB },
    dtype: 'F32',
    tied: false,
    config: { architectures: ['Phi3ForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 1, embd_pdrop: 0.0, eos_token_id: 32000, hidden_act: 'silu', hidden_size: 32, initializer_range: 0.02, intermediate_size: 48, max_position_embeddings: 4096, model_type: 'phi3', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 4, original_max_position_embeddings: 4096, pad_token_id: 32000, resid_pdrop: 0.0, rms_norm_eps: 1e-5, rope_scaling: null, rope_theta: 10000.0, sliding_window: 5, tie_word_embeddings: false, torch_dtype: 'float32', transformers_version: '4.40.2', use_cache: true, vocab_size: VOCAB },
    window: 5,
    rope: { theta: 10000, rotaryDim: 8 },
  },
  {
    label: 'Phi-4-mini style (transformers 4): GQA 4/2, head_dim 16 (hidden / heads), partial_rotary_factor 0.75, tied, BF16',
    d: { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, inter: 64, layers: 2, vocab: VOCAB },
    dtype: 'BF16',
    tied: true,
    config: { architectures: ['Phi3ForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 199999, embd_pdrop: 0.0, eos_token_id: 199999, full_attn_mod: 1, hidden_act: 'silu', hidden_size: 64, initializer_range: 0.02, intermediate_size: 64, interpolate_factor: 1, lm_head_bias: false, max_position_embeddings: 131072, mlp_bias: false, model_type: 'phi3', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 2, original_max_position_embeddings: 4096, pad_token_id: 199999, partial_rotary_factor: 0.75, resid_pdrop: 0.0, rms_norm_eps: 1e-5, rope_scaling: null, rope_theta: 10000.0, sliding_window: 262144, tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.45.0', use_cache: true, vocab_size: VOCAB },
    window: Infinity,
    rope: { theta: 10000, rotaryDim: 12 },
  },
  {
    label: 'transformers 5: dtype, rope_parameters { rope_theta 250000, partial_rotary_factor 0.5 }, no window',
    d: { hidden: 32, heads: 2, kvHeads: 1, headDim: 16, inter: 40, layers: 2, vocab: VOCAB },
    dtype: 'F32',
    tied: false,
    config: { architectures: ['Phi3ForCausalLM'], attention_dropout: 0.0, bos_token_id: 100257, dtype: 'float32', embd_pdrop: 0.0, eos_token_id: 100265, hidden_act: 'silu', hidden_size: 32, initializer_range: 0.02, intermediate_size: 40, max_position_embeddings: 16384, model_type: 'phi3', num_attention_heads: 2, num_hidden_layers: 2, num_key_value_heads: 1, original_max_position_embeddings: 16384, pad_token_id: 100349, resid_pdrop: 0.0, rms_norm_eps: 1e-5, rope_parameters: { partial_rotary_factor: 0.5, rope_theta: 250000.0, rope_type: 'default' }, sliding_window: null, tie_word_embeddings: false, transformers_version: '5.0.0', use_cache: true, vocab_size: VOCAB },
    window: Infinity,
    rope: { theta: 250000, rotaryDim: 8 },
  },
  {
    label: 'Phi-3-mini-128k style (transformers 4): rope_scaling type "su" (= longrope), window past original_max_position_embeddings: long factors, attention factor √2',
    d: { hidden: 32, heads: 4, kvHeads: 4, headDim: 8, inter: 48, layers: 2, vocab: VOCAB },
    dtype: 'F32',
    tied: false,
    config: { architectures: ['Phi3ForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 1, embd_pdrop: 0.0, eos_token_id: 32000, hidden_act: 'silu', hidden_size: 32, initializer_range: 0.02, intermediate_size: 48, max_position_embeddings: 64, model_type: 'phi3', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 4, original_max_position_embeddings: 8, pad_token_id: 32000, resid_pdrop: 0.0, rms_norm_eps: 1e-5, rope_scaling: { long_factor: [1.0, 1.5, 3.0, 6.0], short_factor: [1.0, 1.02, 1.1, 1.3], type: 'su' }, rope_theta: 10000.0, sliding_window: 262144, tie_word_embeddings: false, torch_dtype: 'float32', transformers_version: '4.40.2', use_cache: true, vocab_size: VOCAB },
    window: Infinity,
    // factor = 64 / 8 = 8: attention factor √(1 + ln 8 / ln 8).
    rope: { theta: 10000, rotaryDim: 8, factors: [1.0, 1.5, 3.0, 6.0], scale: Math.SQRT2 },
  },
  {
    label: 'Phi-4-mini style (transformers 4): longrope with partial_rotary_factor 0.75, window within original_max_position_embeddings: short factors, BF16',
    d: { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, inter: 64, layers: 2, vocab: VOCAB },
    dtype: 'BF16',
    tied: true,
    config: { architectures: ['Phi3ForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 199999, embd_pdrop: 0.0, eos_token_id: 199999, full_attn_mod: 1, hidden_act: 'silu', hidden_size: 64, initializer_range: 0.02, intermediate_size: 64, interpolate_factor: 1, lm_head_bias: false, max_position_embeddings: 131072, mlp_bias: false, model_type: 'phi3', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 2, original_max_position_embeddings: 4096, pad_token_id: 199999, partial_rotary_factor: 0.75, resid_pdrop: 0.0, rms_norm_eps: 1e-5, rope_scaling: { long_factor: [1, 1.118, 1.25, 1.398, 1.564, 1.75], short_factor: [1, 1.05, 1.1, 1.2, 1.4, 1.9], type: 'longrope' }, rope_theta: 10000.0, sliding_window: 262144, tie_word_embeddings: true, torch_dtype: 'bfloat16', transformers_version: '4.45.0', use_cache: true, vocab_size: VOCAB },
    window: Infinity,
    // factor = 131072 / 4096 = 32: attention factor √(1 + ln 32 / ln 4096).
    rope: { theta: 10000, rotaryDim: 12, factors: [1, 1.05, 1.1, 1.2, 1.4, 1.9], scale: Math.sqrt(1 + Math.log(32) / Math.log(4096)) },
  },
  {
    label: 'transformers 5: rope_parameters { rope_type "longrope", factors, rope_theta }, top-level original_max_position_embeddings: long factors',
    d: { hidden: 32, heads: 2, kvHeads: 1, headDim: 16, inter: 40, layers: 2, vocab: VOCAB },
    dtype: 'F32',
    tied: false,
    config: { architectures: ['Phi3ForCausalLM'], attention_dropout: 0.0, bos_token_id: 1, dtype: 'float32', embd_pdrop: 0.0, eos_token_id: 32000, hidden_act: 'silu', hidden_size: 32, initializer_range: 0.02, intermediate_size: 40, max_position_embeddings: 32, model_type: 'phi3', num_attention_heads: 2, num_hidden_layers: 2, num_key_value_heads: 1, original_max_position_embeddings: 8, pad_token_id: 32000, resid_pdrop: 0.0, rms_norm_eps: 1e-5, rope_parameters: { long_factor: [1, 1.2, 1.6, 2.2, 3.0, 4.5, 7.0, 9.0], partial_rotary_factor: 1.0, rope_theta: 10000.0, rope_type: 'longrope', short_factor: [1, 1, 1, 1, 1.1, 1.1, 1.2, 1.3] }, sliding_window: null, tie_word_embeddings: false, transformers_version: '5.0.0', use_cache: true, vocab_size: VOCAB },
    window: Infinity,
    // factor = 32 / 8 = 4: attention factor √(1 + ln 4 / ln 8).
    rope: { theta: 10000, rotaryDim: 16, factors: [1, 1.2, 1.6, 2.2, 3.0, 4.5, 7.0, 9.0], scale: Math.sqrt(1 + Math.log(4) / Math.log(8)) },
  },
];

describe('phi3 adapter', () => {
  it.each(CASES)('$label: embeddings, blocks, captured inputs and logits match float64', async (c) => {
    const dir = join(tmp, `case-${CASES.indexOf(c)}`);
    mkdirSync(dir);
    writeFolder(dir, phi3Checkpoint(c.d, c.d.hidden + c.d.kvHeads, c.tied), c.config, c.dtype);
    const ckpt = Checkpoint.openFolder(dir);
    try {
      const arch = architectureFor(ckpt.config, join(dir, 'config.json'), ckpt);
      expect(arch.spec).toMatchObject({ family: 'phi3', modelType: 'phi3', hiddenSize: c.d.hidden, numHeads: c.d.heads, numKvHeads: c.d.kvHeads, headDim: c.d.headDim, intermediateSize: c.d.inter, numLayers: 2, tieWordEmbeddings: c.tied });
      const load = (names: string[]): Weights => new Map(names.map((n) => [n, ckpt.readFloat32(n)]));
      // The reference reads the same stored (for BF16: rounded) values.
      const m: RefModel = { w: (n) => ckpt.readFloat32(n), d: c.d, eps: 1e-5, activation: 'silu', window: c.window, rope: c.rope, tied: c.tied };
      const seq = 9;
      const ids = randomIds(rng(c.d.hidden), 2 * seq, VOCAB);
      let x = await arch.embed(load(arch.embedTensors()), ids, seq);
      let ref = refEmbed(m, ids);
      expect(relErr(x, ref)).toBe(0);
      for (let i = 0; i < c.d.layers; i++) {
        const r = await arch.runBlock(i, load(arch.blockTensors(i)), x, seq, true);
        const e = refBlock(m, i, ref, seq);
        expect(relErr(r.out, e.out), `block ${i}`).toBeLessThanOrEqual(1e-5);
        for (const [id, v] of Object.entries(e.inputs)) expect(relErr(r.inputs[id], v), `block ${i} ${id}`).toBeLessThanOrEqual(1e-5);
        x = r.out;
        ref = e.out;
      }
      const logits = await arch.logits(load(arch.headTensors()), x, seq);
      expect(relErr(logits, refHead(m, ref))).toBeLessThanOrEqual(1e-5);
    } finally {
      ckpt.close();
    }
  });

  it('the sliding window matters: without it block 0 of the first case differs from the reference', async () => {
    const c = CASES[0];
    const ck = phi3Checkpoint(c.d, 5);
    const m: RefModel = { w: (n) => ck.get(n), d: c.d, eps: 1e-5, activation: 'silu', window: Infinity, rope: c.rope, tied: false };
    const seq = 9;
    const ids = randomIds(rng(3), seq, VOCAB);
    const x = refEmbed(m, ids);
    const windowed = await createPhi3(c.config, 'config.json').runBlock(0, ck.pick(createPhi3(c.config, 'config.json').blockTensors(0)), Float32Array.from(x), seq, false);
    expect(relErr(windowed.out, refBlock(m, 0, x, seq).out)).toBeGreaterThan(1e-3);
  });

  it('longrope without original_max_position_embeddings takes Phi3Config\'s 4096: a 9-token window uses the short factors, attention factor √(1 + ln(8192/4096) / ln 4096)', () => {
    const arch = createPhi3({ model_type: 'phi3', hidden_size: 32, num_attention_heads: 4, max_position_embeddings: 8192, rope_scaling: { type: 'longrope', short_factor: [1, 2, 3, 4], long_factor: [5, 6, 7, 8] } }, 'config.json');
    const cos = (arch as unknown as { rope(i: number, seq: number): { cos: Float32Array } }).rope(0, 9).cos;
    const scale = Math.sqrt(1 + Math.log(2) / Math.log(4096));
    // position 8, dim 1: angle 8 / (2 · 10000^(2/8)), short factor 2.
    expect(cos[8 * 8 + 1]).toBeCloseTo(Math.cos(8 / (2 * Math.pow(10000, 0.25))) * scale, 6);
  });

  it('linear layers: fused qkv_proj [(H + 2·KV)·D, hidden] and gate_up_proj [2·I, hidden], one input each; config defaults', () => {
    const arch = createPhi3({ model_type: 'phi3', hidden_size: 64, num_attention_heads: 8, num_key_value_heads: 2, intermediate_size: 96, num_hidden_layers: 3 }, 'config.json');
    expect(arch.linears(2).map((l) => `${l.tensor}:${l.rows}x${l.cols}:${l.input}:${l.stage}`)).toEqual([
      'model.layers.2.self_attn.qkv_proj.weight:96x64:attn_in:0',
      'model.layers.2.self_attn.o_proj.weight:64x64:o_in:1',
      'model.layers.2.mlp.gate_up_proj.weight:192x64:mlp_in:2',
      'model.layers.2.mlp.down_proj.weight:64x96:down_in:3',
    ]);
    expect(arch.blockTensors(0)).toEqual(['input_layernorm', 'post_attention_layernorm', 'self_attn.qkv_proj', 'self_attn.o_proj', 'mlp.gate_up_proj', 'mlp.down_proj'].map((n) => `model.layers.0.${n}.weight`));
    expect(arch.headTensors()).toEqual(['model.norm.weight', 'lm_head.weight']);
    // Phi3Config's defaults: the Phi-3-mini-4k shape.
    expect(createPhi3({ model_type: 'phi3' }, 'config.json').spec).toMatchObject({ hiddenSize: 3072, numLayers: 32, numHeads: 32, numKvHeads: 32, headDim: 96, intermediateSize: 8192, vocabSize: 32064, maxPositions: 4096, tieWordEmbeddings: false, bosTokenId: 1, eosTokenId: 32000 });
  });

  it('bad configs: one line naming the file and the field', () => {
    expect(() => createPhi3({ model_type: 'phi3', hidden_size: 64, num_attention_heads: 8, partial_rotary_factor: 0.1 }, 'm/config.json')).toThrow("m/config.json: partial_rotary_factor (0.1) gives 0 rotary dims of the head's 8; an even number ≥ 2 is required");
    expect(() => createPhi3({ model_type: 'phi3', rope_scaling: { type: 'dynamic', factor: 2 } }, 'm/config.json')).toThrow('m/config.json: rope_scaling rope type "dynamic" is not one Phi-3 uses (Phi3Config accepts "default" and "longrope")');
    expect(() => createPhi3({ model_type: 'phi3', hidden_size: 64, num_attention_heads: 8, rope_scaling: { type: 'longrope', short_factor: [1, 1], long_factor: [1, 1, 1, 1] } }, 'm/config.json')).toThrow('m/config.json: rope_scaling.short_factor must be a list of 4 positive numbers');
    expect(() => createPhi3({ model_type: 'phi3', hidden_size: 64, num_attention_heads: 8, partial_rotary_factor: 1.5 }, 'm/config.json')).toThrow('m/config.json: partial_rotary_factor must be in (0, 1], got 1.5');
    expect(() => createPhi3({ model_type: 'phi3', hidden_size: 64, num_attention_heads: 6 }, 'm/config.json')).toThrow('m/config.json: num_attention_heads (6) must divide the hidden size (64)');
    expect(() => createPhi3({ model_type: 'phi3', sliding_window: 0 }, 'm/config.json')).toThrow('m/config.json: sliding_window must be a positive integer, got 0');
  });

  it('structured --heads is refused for the fused qkv_proj (exit 2), naming the tensor', () => {
    const spec = createPhi3({ model_type: 'phi3', hidden_size: 64, num_attention_heads: 8 }, 'config.json').spec;
    expect(() => planHeads(spec, 0.25)).toThrow(/--heads: phi3 stores q, k and v fused in self_attn.qkv_proj/);
    const thrown = (f: () => unknown): unknown => {
      try {
        f();
      } catch (e) {
        return e;
      }
      return undefined;
    };
    expect(thrown(() => planHeads(spec, 0.25))).toMatchObject({ exitCode: 2 });
  });

  it('structured --channels 0.25 cuts the same channels from the gate and up parts of gate_up_proj and from down_proj; intermediate_size follows; the result runs as HF would run it', async () => {
    const c = CASES[1]; // GQA, partial rotary, BF16 on disk, tied
    const d: Dims = { ...c.d, inter: 48 };
    const config = { ...c.config, intermediate_size: 48, torch_dtype: 'float32' };
    const dense = join(tmp, 'channels-dense');
    mkdirSync(dense);
    writeFolder(dense, phi3Checkpoint(d, 9, true), config, 'F32');
    const ids = join(tmp, 'channels-ids.safetensors');
    const w = new SafetensorsWriter(ids, [{ name: 'input_ids', dtype: 'I32', shape: [4, 16] }], { format: 'pt' });
    w.write('input_ids', randomIds(rng(2), 64, VOCAB));
    w.finish();
    const job = (out: string, method: string) => ({ model: dense, out, method, calibration: 'tinystories', nsamples: 4, seqlen: 16, calibTokens: ids, channels: 0.25 }) as StructuredJob;
    // magnitude: channels ranked by weight norms and cut without re-solving, so every kept value is a copy.
    const out = join(tmp, 'channels-magnitude');
    const rep = await runStructuredPrune(job(out, 'magnitude'));
    expect(rep.structured.channels).toEqual({ before: 48, after: 36, removed: 12 });
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).intermediate_size).toBe(36);
    const src = Checkpoint.openFolder(dense);
    const got = Checkpoint.openFolder(out);
    try {
      for (let b = 0; b < d.layers; b++) {
        const p = `model.layers.${b}.`;
        expect(got.info(`${p}mlp.gate_up_proj.weight`).shape).toEqual([72, d.hidden]);
        expect(got.info(`${p}mlp.down_proj.weight`).shape).toEqual([d.hidden, 36]);
        // The kept channels, read off down_proj's columns; then row j of gate and row 48 + j of up for each.
        const down = src.readFloat32(`${p}mlp.down_proj.weight`);
        const downCut = got.readFloat32(`${p}mlp.down_proj.weight`);
        const column = (m: Float32Array, width: number, j: number) => Array.from({ length: d.hidden }, (_, r) => m[r * width + j]).join(',');
        const bySignature = new Map(Array.from({ length: 48 }, (_, j) => [column(down, 48, j), j]));
        const kept = Array.from({ length: 36 }, (_, j) => bySignature.get(column(downCut, 36, j))!);
        expect(kept.every((j) => j !== undefined)).toBe(true);
        expect(new Set(kept).size).toBe(36);
        const gateUp = src.readFloat32(`${p}mlp.gate_up_proj.weight`);
        const gateUpCut = got.readFloat32(`${p}mlp.gate_up_proj.weight`);
        const row = (m: Float32Array, r: number) => Array.from(m.subarray(r * d.hidden, (r + 1) * d.hidden));
        kept.forEach((j, k) => {
          expect(row(gateUpCut, k), `${p} gate row of channel ${j}`).toEqual(row(gateUp, j));
          expect(row(gateUpCut, 36 + k), `${p} up row of channel ${j}`).toEqual(row(gateUp, 48 + j));
        });
      }
    } finally {
      src.close();
      got.close();
    }
    // The re-solved variant loads with the narrower config and matches the float64 Phi-3 forward of its weights.
    const solved = join(tmp, 'channels-sparsegpt');
    await runStructuredPrune(job(solved, 'sparsegpt'));
    const ck = Checkpoint.openFolder(solved);
    try {
      const arch = architectureFor(ck.config, join(solved, 'config.json'), ck);
      expect(arch.spec.intermediateSize).toBe(36);
      const m: RefModel = { w: (n) => ck.readFloat32(n), d: { ...d, inter: 36 }, eps: 1e-5, activation: 'silu', window: c.window, rope: c.rope, tied: true };
      const seq = 9;
      const tokens = randomIds(rng(4), seq, VOCAB);
      const x = await arch.embed(new Map([['model.embed_tokens.weight', ck.readFloat32('model.embed_tokens.weight')]]), tokens, seq);
      const r = await arch.runBlock(0, new Map(arch.blockTensors(0).map((n) => [n, ck.readFloat32(n)])), x, seq, false);
      expect(relErr(r.out, refBlock(m, 0, refEmbed(m, tokens), seq).out)).toBeLessThanOrEqual(1e-5);
    } finally {
      ck.close();
    }
  });
});
