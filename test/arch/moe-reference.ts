/**
 * Float64 reference of the MoE decoders (HF modeling_mixtral, modeling_qwen2_moe, modeling_qwen3_moe), written
 * from HF's modeling code as plain loops, and random checkpoints with HF's config fields and tensor names in
 * both layouts: per-expert tensors (transformers 4) and fused 3-D expert tensors (transformers 5).
 *
 * HF semantics reproduced here: router logits = n·Wᵀ; probabilities = softmax over all experts; the top_k
 * largest; mixtral always divides them by their sum, qwen only with norm_topk_prob; out = h + Σ p·expert(n);
 * qwen2_moe adds sigmoid(n·shared_expert_gateᵀ)·shared_expert(n); qwen layers listed in mlp_only_layers,
 * or not on a decoder_sparse_step multiple (layer+1), hold a dense MLP of intermediate_size instead.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { act, add, attention, linear, MemoryCheckpoint, rmsNorm, rng, rope, type F64 } from './reference.js';

export type MoeType = 'mixtral' | 'qwen2_moe' | 'qwen3_moe';

/** What the reference reads from a config, as the HF classes read it (field names and class defaults). */
export interface MoeShape {
  type: MoeType;
  fused: boolean;
  h: number;
  H: number;
  KV: number;
  D: number;
  E: number;
  K: number;
  /** Routed expert width. */
  I: number;
  /** Dense MLP width (qwen mlp_only_layers). */
  dense: number;
  shared: number;
  normTopK: boolean;
  qkvBias: boolean;
  qkNorm: boolean;
  eps: number;
  theta: number;
  layers: number;
  vocab: number;
  tied: boolean;
  sparse: (i: number) => boolean;
  /** HF's sliding window of layer i (mixtral: sliding_window; qwen3_moe: with use_sliding_window; qwen2_moe: layer_types). */
  window: (i: number) => number | undefined;
  act: string;
  /** A scaled RoPE's rotary step on x [T, heads, D] (rope.test.ts); absent: plain RoPE with theta. */
  rotary?: (x: F64, T: number, heads: number, D: number, seq: number) => void;
}

export function shapeOf(type: MoeType, cfg: Record<string, unknown>, fused: boolean): MoeShape {
  const n = (k: string, d?: number) => (cfg[k] ?? d) as number;
  const h = n('hidden_size');
  const H = n('num_attention_heads');
  const rp = cfg.rope_parameters as { rope_theta?: number } | undefined;
  const step = n('decoder_sparse_step', 1);
  const only = (cfg.mlp_only_layers ?? []) as number[];
  return {
    type,
    fused,
    h,
    H,
    KV: n('num_key_value_heads', H),
    D: n('head_dim', h / H),
    E: type === 'mixtral' ? n('num_local_experts', 8) : n('num_experts'),
    K: n('num_experts_per_tok'),
    I: type === 'mixtral' ? n('intermediate_size') : n('moe_intermediate_size'),
    dense: n('intermediate_size'),
    shared: type === 'qwen2_moe' ? n('shared_expert_intermediate_size') : 0,
    normTopK: type === 'mixtral' ? true : ((cfg.norm_topk_prob ?? false) as boolean),
    qkvBias: type === 'qwen2_moe' ? ((cfg.qkv_bias ?? true) as boolean) : false,
    qkNorm: type === 'qwen3_moe',
    eps: n('rms_norm_eps', type === 'mixtral' ? 1e-5 : 1e-6),
    theta: rp?.rope_theta ?? n('rope_theta', type === 'mixtral' ? 1e6 : 10000),
    layers: n('num_hidden_layers'),
    vocab: n('vocab_size'),
    tied: (cfg.tie_word_embeddings ?? false) as boolean,
    sparse: type === 'mixtral' ? () => true : (i) => !only.includes(i) && (i + 1) % step === 0,
    window: (i) => {
      const w = (cfg.sliding_window ?? undefined) as number | undefined;
      if (type === 'mixtral') return w;
      if (type === 'qwen3_moe') return cfg.use_sliding_window ? w : undefined;
      return (cfg.layer_types as string[] | undefined)?.[i] === 'sliding_attention' ? w : undefined;
    },
    act: (cfg.hidden_act ?? 'silu') as string,
  };
}

/** The module holding router and experts, as each layout names it. */
export function moeModule(s: MoeShape): string {
  return s.type === 'mixtral' && !s.fused ? 'block_sparse_moe' : 'mlp';
}

/** A random checkpoint for `s`, HF names: matrices N(0, 0.1), norms 1 + N(0, 0.2), router N(0, 0.5). */
export function moeCheckpoint(s: MoeShape, seed: number): MemoryCheckpoint {
  const ck = new MemoryCheckpoint(rng(seed));
  ck.add('model.embed_tokens.weight', [s.vocab, s.h], 0, 0.5);
  const mod = moeModule(s);
  for (let i = 0; i < s.layers; i++) {
    const p = `model.layers.${i}.`;
    ck.add(`${p}input_layernorm.weight`, [s.h], 1, 0.2);
    ck.add(`${p}post_attention_layernorm.weight`, [s.h], 1, 0.2);
    const lin = (name: string, rows: number, cols: number, bias = false) => {
      ck.add(`${p}${name}.weight`, [rows, cols], 0, 0.1);
      if (bias) ck.add(`${p}${name}.bias`, [rows], 0, 0.1);
    };
    lin('self_attn.q_proj', s.H * s.D, s.h, s.qkvBias);
    lin('self_attn.k_proj', s.KV * s.D, s.h, s.qkvBias);
    lin('self_attn.v_proj', s.KV * s.D, s.h, s.qkvBias);
    lin('self_attn.o_proj', s.h, s.H * s.D);
    if (s.qkNorm) {
      ck.add(`${p}self_attn.q_norm.weight`, [s.D], 1, 0.2);
      ck.add(`${p}self_attn.k_norm.weight`, [s.D], 1, 0.2);
    }
    if (!s.sparse(i)) {
      for (const [n, r, c] of [['gate_proj', s.dense, s.h], ['up_proj', s.dense, s.h], ['down_proj', s.h, s.dense]] as const) lin(`mlp.${n}`, r, c);
      continue;
    }
    ck.add(`${p}${mod}.gate.weight`, [s.E, s.h], 0, 0.5);
    if (s.fused) {
      ck.add(`${p}${mod}.experts.gate_up_proj`, [s.E, 2 * s.I, s.h], 0, 0.1);
      ck.add(`${p}${mod}.experts.down_proj`, [s.E, s.h, s.I], 0, 0.1);
    } else {
      const [g, u, d] = s.type === 'mixtral' ? ['w1', 'w3', 'w2'] : ['gate_proj', 'up_proj', 'down_proj'];
      for (let e = 0; e < s.E; e++) {
        lin(`${mod}.experts.${e}.${g}`, s.I, s.h);
        lin(`${mod}.experts.${e}.${u}`, s.I, s.h);
        lin(`${mod}.experts.${e}.${d}`, s.h, s.I);
      }
    }
    if (s.shared) {
      for (const [n, r, c] of [['gate_proj', s.shared, s.h], ['up_proj', s.shared, s.h], ['down_proj', s.h, s.shared]] as const) lin(`mlp.shared_expert.${n}`, r, c);
      ck.add(`${p}mlp.shared_expert_gate.weight`, [1, s.h], 0, 0.5);
    }
  }
  ck.add('model.norm.weight', [s.h], 1, 0.2);
  if (!s.tied) ck.add('lm_head.weight', [s.vocab, s.h], 0, 0.1);
  return ck;
}

export function writeMoeFolder(dir: string, ck: MemoryCheckpoint, config: Record<string, unknown>, dtype: 'F32' | 'BF16'): void {
  const names = [...ck.tensors.keys()];
  const w = new SafetensorsWriter(join(dir, 'model.safetensors'), names.map((name) => ({ name, dtype, shape: ck.shape(name) })), { format: 'pt' });
  for (const n of names) w.write(n, ck.get(n));
  w.finish();
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
}

/** Expert e's gate, up, down ([I,h], [I,h], [h,I]) as HF reads them: gate_up_proj[e].chunk(2) is (gate, up). */
export function expertWeights(s: MoeShape, w: (n: string) => Float32Array, i: number, e: number): [Float32Array, Float32Array, Float32Array] {
  const p = `model.layers.${i}.${moeModule(s)}.experts.`;
  if (s.fused) {
    const gu = w(`${p}gate_up_proj`).subarray(e * 2 * s.I * s.h, (e + 1) * 2 * s.I * s.h);
    return [gu.subarray(0, s.I * s.h), gu.subarray(s.I * s.h), w(`${p}down_proj`).subarray(e * s.h * s.I, (e + 1) * s.h * s.I)];
  }
  const [g, u, d] = s.type === 'mixtral' ? ['w1', 'w3', 'w2'] : ['gate_proj', 'up_proj', 'down_proj'];
  return [w(`${p}${e}.${g}.weight`), w(`${p}${e}.${u}.weight`), w(`${p}${e}.${d}.weight`)];
}

/** HF's router on n [T, h]: per token the top-k expert ids (largest probability first) and their weights. */
export function refRoute(s: MoeShape, router: Float32Array, n: F64): { experts: number[][]; weights: number[][] } {
  const T = n.length / s.h;
  const logits = linear(n, T, router, s.E, s.h);
  const experts: number[][] = [];
  const weights: number[][] = [];
  for (let t = 0; t < T; t++) {
    const row = Array.from(logits.subarray(t * s.E, (t + 1) * s.E));
    const max = Math.max(...row);
    const ex = row.map((v) => Math.exp(v - max));
    const z = ex.reduce((a, b) => a + b, 0);
    const prob = ex.map((v) => v / z);
    const top = prob.map((p, e) => [p, e]).sort((a, b) => b[0] - a[0]).slice(0, s.K);
    const sum = top.reduce((a, [p]) => a + p, 0);
    experts.push(top.map(([, e]) => e));
    weights.push(top.map(([p]) => (s.normTopK ? p / sum : p)));
  }
  return { experts, weights };
}

function mlp(x: F64, T: number, g: Float32Array, u: Float32Array, d: Float32Array, h: number, m: number, a: string): { y: F64; downIn: F64 } {
  const gate = linear(x, T, g, m, h);
  const up = linear(x, T, u, m, h);
  const downIn = gate.map((v, j) => act(a, v) * up[j]);
  return { y: linear(downIn, T, d, h, m), downIn };
}

export interface RefBlock {
  out: F64;
  attnIn: F64;
  oIn: F64;
  mlpIn: F64;
  /** Sparse layers: the tokens routed to each expert (ascending) and that expert's inputs on them. */
  routed?: number[][];
  expertIn?: F64[];
  expertDownIn?: F64[];
  sharedDownIn?: F64;
  denseDownIn?: F64;
}

/** Decoder layer i on x [T, h] (windows of `seq` tokens), weights read through `w`. */
export function refBlock(s: MoeShape, w: (n: string) => Float32Array, i: number, x: F64, seq: number): RefBlock {
  const { h, H, KV, D, eps } = s;
  const T = x.length / h;
  const p = `model.layers.${i}.`;
  const lin = (v: F64, name: string, rows: number, cols: number, bias = false) => linear(v, T, w(`${p}${name}.weight`), rows, cols, bias ? w(`${p}${name}.bias`) : undefined);
  const attnIn = rmsNorm(x, h, w(`${p}input_layernorm.weight`), eps);
  let q = lin(attnIn, 'self_attn.q_proj', H * D, h, s.qkvBias);
  let k = lin(attnIn, 'self_attn.k_proj', KV * D, h, s.qkvBias);
  const v = lin(attnIn, 'self_attn.v_proj', KV * D, h, s.qkvBias);
  if (s.qkNorm) {
    q = rmsNorm(q, D, w(`${p}self_attn.q_norm.weight`), eps);
    k = rmsNorm(k, D, w(`${p}self_attn.k_norm.weight`), eps);
  }
  const rotate = s.rotary ?? ((x: F64, n: number, heads: number, d: number, len: number) => rope(x, n, heads, d, len, s.theta));
  rotate(q, T, H, D, seq);
  rotate(k, T, KV, D, seq);
  const oIn = attention(q, k, v, T, seq, H, KV, D, 1 / Math.sqrt(D), s.window(i));
  const hMid = add(x, lin(oIn, 'self_attn.o_proj', h, H * D));
  const mlpIn = rmsNorm(hMid, h, w(`${p}post_attention_layernorm.weight`), eps);
  if (!s.sparse(i)) {
    const m = mlp(mlpIn, T, w(`${p}mlp.gate_proj.weight`), w(`${p}mlp.up_proj.weight`), w(`${p}mlp.down_proj.weight`), h, s.dense, s.act);
    return { out: add(hMid, m.y), attnIn, oIn, mlpIn, denseDownIn: m.downIn };
  }
  const mod = moeModule(s);
  const r = refRoute(s, w(`${p}${mod}.gate.weight`), mlpIn);
  const moe = new Float64Array(T * h);
  const routed: number[][] = [];
  const expertIn: F64[] = [];
  const expertDownIn: F64[] = [];
  for (let e = 0; e < s.E; e++) {
    const toks: number[] = [];
    const wts: number[] = [];
    for (let t = 0; t < T; t++) {
      const j = r.experts[t].indexOf(e);
      if (j >= 0) {
        toks.push(t);
        wts.push(r.weights[t][j]);
      }
    }
    routed.push(toks);
    const xe = new Float64Array(toks.length * h);
    toks.forEach((t, k2) => xe.set(mlpIn.subarray(t * h, (t + 1) * h), k2 * h));
    expertIn.push(xe);
    const [g, u, d] = expertWeights(s, w, i, e);
    const m = mlp(xe, toks.length, g, u, d, h, s.I, s.act);
    expertDownIn.push(m.downIn);
    toks.forEach((t, k2) => {
      for (let c = 0; c < h; c++) moe[t * h + c] += wts[k2] * m.y[k2 * h + c];
    });
  }
  let sharedDownIn: F64 | undefined;
  if (s.shared) {
    const m = mlp(mlpIn, T, w(`${p}mlp.shared_expert.gate_proj.weight`), w(`${p}mlp.shared_expert.up_proj.weight`), w(`${p}mlp.shared_expert.down_proj.weight`), h, s.shared, s.act);
    sharedDownIn = m.downIn;
    const gate = linear(mlpIn, T, w(`${p}mlp.shared_expert_gate.weight`), 1, h);
    for (let t = 0; t < T; t++) for (let c = 0; c < h; c++) moe[t * h + c] += (1 / (1 + Math.exp(-gate[t]))) * m.y[t * h + c];
  }
  return { out: add(hMid, moe), attnIn, oIn, mlpIn, routed, expertIn, expertDownIn, sharedDownIn };
}

export function refEmbed(s: MoeShape, w: (n: string) => Float32Array, ids: Int32Array): F64 {
  const table = w('model.embed_tokens.weight');
  const x = new Float64Array(ids.length * s.h);
  ids.forEach((id, t) => x.set(table.subarray(id * s.h, (id + 1) * s.h), t * s.h));
  return x;
}

export function refLogits(s: MoeShape, w: (n: string) => Float32Array, x: F64): F64 {
  const n = rmsNorm(x, s.h, w('model.norm.weight'), s.eps);
  return linear(n, x.length / s.h, w(s.tied ? 'model.embed_tokens.weight' : 'lm_head.weight'), s.vocab, s.h);
}
