/**
 * Mixtral (HF modeling_mixtral): Mistral's attention (GQA, no biases, one sliding window for every layer
 * when `sliding_window` is set) and a sparse MoE block in every layer: num_local_experts SwiGLU experts,
 * the top num_experts_per_tok of the router's softmax, always renormalised to sum 1. No shared expert.
 * Experts as transformers 4 writes them (block_sparse_moe.experts.<e>.w1/w3/w2) or fused as transformers 5
 * does (mlp.experts.gate_up_proj / down_proj, router mlp.gate). Everything else is moe.ts.
 */
import { ConfigReader } from './config.js';
import { MoeArchitecture, detectLayout, readMoeSpec } from './moe.js';
import type { Architecture } from './types.js';

export function createMixtral(config: Record<string, unknown>, configPath: string, tensors?: { has(name: string): boolean }): Architecture {
  const c = new ConfigReader(config, configPath);
  // MixtralConfig defaults: max_position_embeddings 4096·32, rms_norm_eps 1e-5, rope_theta 1e6.
  const { spec, eps, rope, act } = readMoeSpec(c, { maxPositions: 4096 * 32, eps: 1e-5, theta: 1e6 });
  const window = c.has('sliding_window') ? c.int('sliding_window') : undefined;
  const experts = c.int('num_local_experts', 8);
  const topK = c.int('num_experts_per_tok', 2);
  if (topK > experts) throw c.error('num_experts_per_tok', `(${topK}) exceeds num_local_experts (${experts})`);
  const layout = detectLayout(tensors, 0, 'w1w3w2');
  return new MoeArchitecture(spec, {
    eps,
    rope,
    act,
    qkvBias: false,
    qkNorm: false,
    windows: () => window,
    experts,
    topK,
    normTopK: true,
    expertSize: spec.intermediateSize,
    sparse: () => true,
    moeModule: layout === 'fused' ? 'mlp' : 'block_sparse_moe',
    layout,
  });
}
