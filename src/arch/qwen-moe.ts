/**
 * Qwen MoE decoders (HF modeling_qwen2_moe, modeling_qwen3_moe): Llama-style attention — qwen2_moe with
 * q/k/v biases (`qkv_bias`, default true), qwen3_moe with per-head q/k RMSNorm and no biases — and an MoE
 * block of num_experts SwiGLU experts of moe_intermediate_size on every decoder_sparse_step-th layer not
 * listed in mlp_only_layers (the others hold a dense MLP of intermediate_size). The router's top
 * num_experts_per_tok probabilities are renormalised only with norm_topk_prob (default false). qwen2_moe
 * adds a shared expert (shared_expert_intermediate_size) on every token, scaled by sigmoid(shared_expert_gate).
 * Experts per expert (mlp.experts.<e>.gate_proj/up_proj/down_proj, transformers 4) or fused (transformers 5).
 */
import { ConfigReader } from './config.js';
import { MoeArchitecture, detectLayout, qwenSparseLayers, readMoeSpec } from './moe.js';
import type { Architecture } from './types.js';

export function createQwenMoe(config: Record<string, unknown>, configPath: string, tensors?: { has(name: string): boolean }): Architecture {
  const c = new ConfigReader(config, configPath);
  const type = c.str('model_type');
  if (type !== 'qwen2_moe' && type !== 'qwen3_moe') throw c.error('model_type', `"${type}" is not a Qwen MoE model`);
  const v2 = type === 'qwen2_moe';
  const { spec, eps, rope, act } = readMoeSpec(c, { maxPositions: 32768, eps: 1e-6, theta: 10000 });
  const experts = c.int('num_experts', v2 ? 60 : 128);
  const topK = c.int('num_experts_per_tok', v2 ? 4 : 8);
  if (topK > experts) throw c.error('num_experts_per_tok', `(${topK}) exceeds num_experts (${experts})`);
  if (!v2 && c.bool('attention_bias', false)) throw c.error('attention_bias', 'true is not supported for qwen3_moe');
  const sparse = qwenSparseLayers(c);
  let first = 0;
  while (first < spec.numLayers - 1 && !sparse(first)) first++;
  const layout = detectLayout(tensors, first, 'proj');
  return new MoeArchitecture(spec, {
    eps,
    rope,
    act,
    qkvBias: v2 && c.bool('qkv_bias', true),
    qkNorm: !v2,
    windows: slidingWindows(c, v2, spec.numLayers),
    experts,
    topK,
    normTopK: c.bool('norm_topk_prob', false),
    expertSize: c.int('moe_intermediate_size', v2 ? 1408 : 768),
    sparse,
    sharedSize: v2 ? c.int('shared_expert_intermediate_size', 5632) : undefined,
    moeModule: 'mlp',
    layout,
  });
}

/**
 * qwen3_moe: `sliding_window` in every layer when use_sliding_window is set. qwen2_moe: per layer_types
 * ("sliding_attention"); with use_sliding_window but no layer_types the rule differs between transformers
 * versions, so that is refused by name rather than guessed.
 */
function slidingWindows(c: ConfigReader, v2: boolean, layers: number): (layer: number) => number | undefined {
  const none = () => undefined;
  if (!v2) return c.bool('use_sliding_window', false) && c.has('sliding_window') ? ((w) => () => w)(c.int('sliding_window')) : none;
  const types = c.strings('layer_types');
  if (types) {
    if (types.length !== layers) throw c.error('layer_types', `has ${types.length} entries for ${layers} layers`);
    if (!types.includes('sliding_attention')) return none;
    const window = c.int('sliding_window');
    return (i) => (types[i] === 'sliding_attention' ? window : undefined);
  }
  if (c.bool('use_sliding_window', false)) throw c.error('use_sliding_window', 'true without layer_types is not supported');
  return none;
}
