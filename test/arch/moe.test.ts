/**
 * MoE adapters (mixtral, qwen2_moe, qwen3_moe) vs the float64 reference of ./moe-reference.ts on tiny random
 * checkpoints with HF's config fields and tensor names, in both expert layouts: every block output, the
 * captured inputs (each expert's exactly on its routed tokens), the windows counted per expert, and logits.
 */
import { describe, expect, it } from 'vitest';
import { architectureFor } from '../../src/arch/registry.js';
import { route } from '../../src/arch/moe.js';
import { randomIds, relErr, rng, type F64 } from './reference.js';
import { moeCheckpoint, refBlock, refEmbed, refLogits, refRoute, shapeOf, type MoeType } from './moe-reference.js';

const TOL = 1e-5;

interface Case {
  title: string;
  type: MoeType;
  fused: boolean;
  config: Record<string, unknown>;
}

const attn = { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 50, max_position_embeddings: 64, hidden_act: 'silu' };

export const MOE_CASES: Case[] = [
  {
    title: 'mixtral (transformers 4): block_sparse_moe.experts.<e>.w1/w3/w2, 4 experts top-2, sliding window 5',
    type: 'mixtral',
    fused: false,
    config: { ...attn, model_type: 'mixtral', architectures: ['MixtralForCausalLM'], intermediate_size: 24, num_local_experts: 4, num_experts_per_tok: 2, rms_norm_eps: 1e-5, rope_theta: 1e6, sliding_window: 5, router_jitter_noise: 0, torch_dtype: 'float32', tie_word_embeddings: false },
  },
  {
    title: 'mixtral (transformers 5): fused mlp.experts.gate_up_proj / down_proj, head_dim 16, 5 experts top-3, tied head',
    type: 'mixtral',
    fused: true,
    config: { ...attn, model_type: 'mixtral', architectures: ['MixtralForCausalLM'], head_dim: 16, intermediate_size: 20, num_local_experts: 5, num_experts_per_tok: 3, rms_norm_eps: 1e-5, rope_parameters: { rope_type: 'default', rope_theta: 10000 }, sliding_window: null, dtype: 'bfloat16', tie_word_embeddings: true },
  },
  {
    title: 'qwen2_moe (transformers 4): shared expert with its sigmoid gate, q/k/v biases, layer 0 in mlp_only_layers',
    type: 'qwen2_moe',
    fused: false,
    config: { ...attn, model_type: 'qwen2_moe', architectures: ['Qwen2MoeForCausalLM'], intermediate_size: 40, moe_intermediate_size: 12, shared_expert_intermediate_size: 28, num_experts: 6, num_experts_per_tok: 2, norm_topk_prob: false, decoder_sparse_step: 1, mlp_only_layers: [0], rms_norm_eps: 1e-6, rope_theta: 1e6, use_sliding_window: false, sliding_window: 4096, max_window_layers: 21, torch_dtype: 'bfloat16', tie_word_embeddings: false },
  },
  {
    title: 'qwen2_moe (transformers 5): fused experts, decoder_sparse_step 2 (layer 0 dense), norm_topk_prob, qkv_bias false',
    type: 'qwen2_moe',
    fused: true,
    config: { ...attn, model_type: 'qwen2_moe', architectures: ['Qwen2MoeForCausalLM'], intermediate_size: 40, moe_intermediate_size: 12, shared_expert_intermediate_size: 20, num_experts: 5, num_experts_per_tok: 3, norm_topk_prob: true, decoder_sparse_step: 2, qkv_bias: false, rms_norm_eps: 1e-6, rope_parameters: { rope_type: 'default', rope_theta: 10000 }, layer_types: ['full_attention', 'full_attention'], dtype: 'float32', tie_word_embeddings: true },
  },
  {
    title: 'qwen3_moe (transformers 4): q/k RMSNorm, head_dim 16, norm_topk_prob, 8 experts top-2',
    type: 'qwen3_moe',
    fused: false,
    config: { ...attn, model_type: 'qwen3_moe', architectures: ['Qwen3MoeForCausalLM'], head_dim: 16, intermediate_size: 40, moe_intermediate_size: 12, num_experts: 8, num_experts_per_tok: 2, norm_topk_prob: true, decoder_sparse_step: 1, mlp_only_layers: [], attention_bias: false, rms_norm_eps: 1e-6, rope_theta: 1e6, use_sliding_window: false, torch_dtype: 'bfloat16', tie_word_embeddings: false },
  },
  {
    title: 'qwen3_moe (transformers 5): fused experts, top-3 of 6 without renormalisation, sliding window 5',
    type: 'qwen3_moe',
    fused: true,
    config: { ...attn, model_type: 'qwen3_moe', architectures: ['Qwen3MoeForCausalLM'], intermediate_size: 40, moe_intermediate_size: 16, num_experts: 6, num_experts_per_tok: 3, norm_topk_prob: false, rms_norm_eps: 1e-6, rope_parameters: { rope_type: 'default', rope_theta: 10000 }, use_sliding_window: true, sliding_window: 5, dtype: 'float32', tie_word_embeddings: false },
  },
];

function archOf(c: Case, ck: { has(n: string): boolean }) {
  return architectureFor(c.config, 'config.json', ck);
}

describe.each(MOE_CASES)('$title', (c) => {
  it('matches the float64 reference: every block, per-expert captured inputs and window counts, logits', async () => {
    const s = shapeOf(c.type, c.config, c.fused);
    const ck = moeCheckpoint(s, 5);
    const arch = archOf(c, ck);
    const w = (n: string) => ck.get(n);
    const seq = 8;
    const ids = randomIds(rng(13), 3 * seq, s.vocab);
    let x = await arch.embed(ck.pick(arch.embedTensors()), ids, seq);
    let ref: F64 = refEmbed(s, w, ids);
    for (let i = 0; i < s.layers; i++) {
      const wb = ck.pick(arch.blockTensors(i));
      const r = await arch.runBlock(i, wb, x, seq, true);
      const e = refBlock(s, w, i, ref, seq);
      expect(relErr(r.out, e.out), `block ${i} out`).toBeLessThanOrEqual(TOL);
      expect(relErr(r.inputs.attn_in, e.attnIn)).toBeLessThanOrEqual(TOL);
      expect(relErr(r.inputs.o_in, e.oIn)).toBeLessThanOrEqual(TOL);
      if (e.denseDownIn) expect(relErr(r.inputs.down_in, e.denseDownIn), `block ${i} dense down in`).toBeLessThanOrEqual(TOL);
      if (e.denseDownIn || e.sharedDownIn) expect(relErr(r.inputs.mlp_in, e.mlpIn), `block ${i} mlp in`).toBeLessThanOrEqual(TOL);
      if (e.sharedDownIn) expect(relErr(r.inputs.shared_down_in, e.sharedDownIn), `block ${i} shared down in`).toBeLessThanOrEqual(TOL);
      if (e.routed) {
        let total = 0;
        for (let k = 0; k < s.E; k++) {
          const got = r.inputs[`expert${k}`];
          expect(got.length / s.h, `block ${i} expert ${k} tokens`).toBe(e.routed[k].length);
          total += e.routed[k].length;
          if (e.routed[k].length) {
            expect(relErr(got, e.expertIn![k]), `expert ${k} in`).toBeLessThanOrEqual(TOL);
            expect(relErr(r.inputs[`expert${k}.down`], e.expertDownIn![k]), `expert ${k} down in`).toBeLessThanOrEqual(TOL);
          }
          const windows = new Set(e.routed[k].map((t) => Math.floor(t / seq))).size;
          expect(r.sequences?.[`expert${k}`]).toBe(windows);
          expect(r.sequences?.[`expert${k}.down`]).toBe(windows);
        }
        expect(total).toBe(3 * seq * s.K);
      }
      // Every linear's input was captured at its width.
      for (const l of arch.linears(i)) expect(r.inputs[l.input].length % l.cols, l.name).toBe(0);
      const plain = await arch.runBlock(i, wb, x, seq, false);
      expect(relErr(plain.out, r.out)).toBe(0);
      x = r.out;
      ref = e.out;
    }
    expect(relErr(await arch.logits(ck.pick(arch.headTensors()), x, seq), refLogits(s, w, ref))).toBeLessThanOrEqual(TOL);
  });

  it('names block tensors and prunable layers as HF does; routers are not prunable', () => {
    const s = shapeOf(c.type, c.config, c.fused);
    const ck = moeCheckpoint(s, 1);
    const arch = archOf(c, ck);
    for (let i = 0; i < s.layers; i++) {
      expect([...arch.blockTensors(i)].sort()).toEqual([...ck.tensors.keys()].filter((n) => n.startsWith(`model.layers.${i}.`)).sort());
      const tensors = arch.linears(i).map((l) => l.tensor);
      expect(tensors.some((t) => t.endsWith('.gate.weight') || t.includes('shared_expert_gate'))).toBe(false);
      // Every expert has its own gate/up input and down input.
      const experts = arch.linears(i).filter((l) => l.expert !== undefined);
      expect(experts.length).toBe(s.sparse(i) ? 3 * s.E : 0);
      expect(new Set(experts.map((l) => l.input)).size).toBe(s.sparse(i) ? 2 * s.E : 0);
    }
  });
});

describe('router', () => {
  it('top-k of the softmax, renormalised or not, as the float64 reference computes it', () => {
    const rand = rng(3);
    const E = 6;
    const T = 20;
    const logits = Float32Array.from({ length: T * E }, () => 4 * rand() - 2);
    for (const norm of [true, false]) {
      const got = route(logits, E, 2, norm);
      const s = { ...shapeOf('qwen3_moe', { hidden_size: E, num_attention_heads: 1, num_experts: E, num_experts_per_tok: 2, norm_topk_prob: norm }, false), h: E };
      // The reference routes n·routerᵀ; an identity router gives the logits themselves.
      const eye = new Float32Array(E * E);
      for (let e = 0; e < E; e++) eye[e * E + e] = 1;
      const ref = refRoute(s, eye, Float64Array.from(logits));
      for (let t = 0; t < T; t++) {
        expect(Array.from(got.experts.subarray(t * 2, t * 2 + 2))).toEqual(ref.experts[t]);
        for (let j = 0; j < 2; j++) expect(Math.abs(got.weights[t * 2 + j] - ref.weights[t][j])).toBeLessThan(1e-7);
      }
      if (norm) for (let t = 0; t < T; t++) expect(got.weights[t * 2] + got.weights[t * 2 + 1]).toBeCloseTo(1, 6);
    }
  });
});
