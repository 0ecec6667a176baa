/**
 * Mixture-of-Experts decoders with a Llama-style attention half: the block is
 *   h   = x + o_proj(attn(rope(q), rope(k), v))              on RMSNorm(x), q/k per-head RMSNorm for qwen3_moe
 *   n   = RMSNorm(h);  p = softmax(n·routerᵀ) (float32);  the top-k experts of each token, weights p_top
 *         (renormalised to sum 1: always for mixtral, with norm_topk_prob for qwen)
 *   out = h + Σ_top-k p_e · down_e(act(gate_e(n)) · up_e(n))  [+ sigmoid(n·shared_gateᵀ) · shared_expert(n)]
 * (HF modeling_mixtral / modeling_qwen2_moe / modeling_qwen3_moe). The family files (mixtral.ts,
 * qwen2-moe.ts, qwen3-moe.ts) read config.json into MoeOptions; this file runs them.
 *
 * The block runs as two kinds of graph: the attention half with the router logits (and the dense shared
 * expert) over all tokens, then one small expert graph per routed expert over only the tokens sent to it,
 * gathered and scattered back in JS (the top-k is data-dependent, and running every expert on every token
 * would cost num_experts/top_k times the work). Captured inputs are per expert: an expert's gate/up input
 * holds exactly its routed tokens, its down input act(gate)·up on those tokens, so its statistics come only
 * from the calibration tokens the router sends it. Routers (and qwen2_moe's shared-expert gate) are not
 * prunable linears: they stay dense.
 *
 * Checkpoint layouts: per-expert tensors (`experts.<e>.w1/w2/w3` for Mixtral, `experts.<e>.gate_proj/
 * up_proj/down_proj` for Qwen, transformers 4) or the fused 3-D tensors transformers 5 writes
 * (`mlp.experts.gate_up_proj` [E, 2·I, H] with gate rows first, `mlp.experts.down_proj` [E, H, I]); a fused
 * expert's gate, up and down are contiguous runs of the 3-D tensor (LinearLayer.part), so both layouts are
 * pruned in place and written back as stored.
 */
import { GraphBuilder } from '../engine/graph.js';
import { tensor, type Feeds } from '../engine/session.js';
import { ConfigReader, readHeads } from './config.js';
import { ACTIVATIONS, activation, attentionInputs, causalAttention, causalMask, isActivation, linear, rmsNorm, rotary, splitHeads, type Activation } from './ops.js';
import { readRope, requireWholeHead, type Rope } from './rope.js';
import { HeadedArchitecture, finishBlock, embedRows, runBlockGraph, tokensOf, weightFeed, type HeadGraph } from './runtime.js';
import type { Architecture, BlockResult, LinearLayer, ModelSpec, RoutedExperts, Routing, Weights } from './types.js';

/** How a family names and stores its experts. */
export type ExpertLayout =
  /** transformers 4 Mixtral: <moe>.experts.<e>.w1 (gate), w3 (up), w2 (down). */
  | 'w1w3w2'
  /** transformers 4 Qwen: <moe>.experts.<e>.gate_proj / up_proj / down_proj. */
  | 'proj'
  /** transformers 5: <moe>.experts.gate_up_proj [E, 2I, H] and <moe>.experts.down_proj [E, H, I]. */
  | 'fused';

export interface MoeOptions {
  eps: number;
  rope: Rope;
  act: Activation;
  qkvBias: boolean;
  qkNorm: boolean;
  /** Sliding window of a layer (undefined = full causal attention). */
  windows: (layer: number) => number | undefined;
  experts: number;
  topK: number;
  /** Renormalise the top-k probabilities to sum 1. */
  normTopK: boolean;
  /** Intermediate width of each routed expert. */
  expertSize: number;
  /** Whether layer i has the MoE block (else a dense gated MLP of width denseSize, Qwen's mlp_only_layers). */
  sparse: (layer: number) => boolean;
  denseSize: number;
  /** Qwen2-MoE's shared expert: intermediate width (it has a [1, hidden] sigmoid gate). */
  sharedSize?: number;
  /** Module holding router and experts: "block_sparse_moe" (Mixtral, transformers 4) or "mlp". */
  moeModule: string;
  layout: ExpertLayout;
}

/** Which layout a checkpoint uses: fused when block `layer`'s gate_up_proj exists. */
export function detectLayout(tensors: { has(name: string): boolean } | undefined, layer: number, perExpert: ExpertLayout): ExpertLayout {
  return tensors?.has(`model.layers.${layer}.mlp.experts.gate_up_proj`) ? 'fused' : perExpert;
}

/**
 * HF's router on float32 logits [T, E]: softmax (float32 in HF; here float64, then rounded), the k largest
 * probabilities (ties: lower expert first), divided by their sum when `normalize`.
 */
export function route(logits: Float32Array, E: number, k: number, normalize: boolean): Routing {
  const T = logits.length / E;
  const experts = new Int32Array(T * k);
  const weights = new Float32Array(T * k);
  const p = new Float64Array(E);
  const order = Array.from({ length: E }, (_, e) => e);
  for (let t = 0; t < T; t++) {
    let max = -Infinity;
    for (let e = 0; e < E; e++) max = Math.max(max, logits[t * E + e]);
    let sum = 0;
    for (let e = 0; e < E; e++) sum += p[e] = Math.exp(logits[t * E + e] - max);
    for (let e = 0; e < E; e++) p[e] /= sum;
    order.sort((a, b) => p[b] - p[a] || a - b);
    let top = 0;
    for (let j = 0; j < k; j++) top += p[order[j]];
    for (let j = 0; j < k; j++) {
      experts[t * k + j] = order[j];
      weights[t * k + j] = normalize ? p[order[j]] / top : p[order[j]];
    }
  }
  return { experts, weights, k };
}

export class MoeArchitecture extends HeadedArchitecture implements Architecture, RoutedExperts {
  protected readonly head: HeadGraph;
  readonly routed: RoutedExperts = this;
  private readonly key: string;

  constructor(
    readonly spec: ModelSpec,
    private readonly o: MoeOptions,
  ) {
    super();
    const s = spec;
    this.key = `moe|h${s.hiddenSize}|H${s.numHeads}|kv${s.numKvHeads}|d${s.headDim}|eps${o.eps}|${o.act}|b${+o.qkvBias}|qk${+o.qkNorm}|E${o.experts}|sh${o.sharedSize ?? 0}`;
    this.head = {
      key: `llama-head|h${s.hiddenSize}|v${s.vocabSize}|eps${o.eps}`,
      hidden: s.hiddenSize,
      vocab: s.vocabSize,
      headWeight: s.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight',
      final: (g, x) => rmsNorm(g, x, g.input('norm_w', 'float32', [s.hiddenSize]), o.eps),
      finalFeeds: (w) => ({ norm_w: weightFeed(w, 'model.norm.weight', [s.hiddenSize]) }),
    };
  }

  private p(i: number): string {
    if (!Number.isInteger(i) || i < 0 || i >= this.spec.numLayers) throw new Error(`block ${i} is outside 0..${this.spec.numLayers - 1}`);
    return `model.layers.${i}.`;
  }

  private attentionLayers(p: string): LinearLayer[] {
    const { hiddenSize: h, numHeads, numKvHeads, headDim } = this.spec;
    const l = (name: string, rows: number, cols: number, input: string, stage: number): LinearLayer => ({ name, tensor: `${p}${name}.weight`, rows, cols, transposed: false, input, stage });
    return [
      l('self_attn.q_proj', numHeads * headDim, h, 'attn_in', 0),
      l('self_attn.k_proj', numKvHeads * headDim, h, 'attn_in', 0),
      l('self_attn.v_proj', numKvHeads * headDim, h, 'attn_in', 0),
      l('self_attn.o_proj', h, numHeads * headDim, 'o_in', 1),
    ];
  }

  /** Gate, up and down of a gated MLP named `<module>.gate_proj` etc. (dense layers, shared expert). */
  private mlpLayers(p: string, module: string, width: number, input: string, downInput: string): LinearLayer[] {
    const h = this.spec.hiddenSize;
    const l = (name: string, rows: number, cols: number, inp: string, stage: number): LinearLayer => ({ name: `${module}.${name}`, tensor: `${p}${module}.${name}.weight`, rows, cols, transposed: false, input: inp, stage });
    return [l('gate_proj', width, h, input, 2), l('up_proj', width, h, input, 2), l('down_proj', h, width, downInput, 3)];
  }

  /** Routed expert e of block i: [gate, up, down], each with its own input statistic. */
  expertLayers(i: number, e: number): LinearLayer[] {
    const p = this.p(i);
    const { hiddenSize: h } = this.spec;
    const { expertSize: m, experts: E, moeModule: mod, layout } = this.o;
    const input = `expert${e}`;
    const down = `expert${e}.down`;
    if (layout === 'fused') {
      const gu = `${p}${mod}.experts.gate_up_proj`;
      const dn = `${p}${mod}.experts.down_proj`;
      const guShape = [E, 2 * m, h];
      const dnShape = [E, h, m];
      return [
        { name: `${mod}.experts.${e}.gate_proj`, tensor: gu, rows: m, cols: h, transposed: false, input, stage: 2, expert: e, part: { offset: e * 2 * m * h, storedShape: guShape } },
        { name: `${mod}.experts.${e}.up_proj`, tensor: gu, rows: m, cols: h, transposed: false, input, stage: 2, expert: e, part: { offset: (e * 2 + 1) * m * h, storedShape: guShape } },
        { name: `${mod}.experts.${e}.down_proj`, tensor: dn, rows: h, cols: m, transposed: false, input: down, stage: 3, expert: e, part: { offset: e * h * m, storedShape: dnShape } },
      ];
    }
    const [g, u, d] = layout === 'w1w3w2' ? ['w1', 'w3', 'w2'] : ['gate_proj', 'up_proj', 'down_proj'];
    const l = (name: string, rows: number, cols: number, inp: string, stage: number): LinearLayer => {
      const n = `${mod}.experts.${e}.${name}`;
      return { name: n, tensor: `${p}${n}.weight`, rows, cols, transposed: false, input: inp, stage, expert: e };
    };
    return [l(g, m, h, input, 2), l(u, m, h, input, 2), l(d, h, m, down, 3)];
  }

  linears(i: number): LinearLayer[] {
    const p = this.p(i);
    const out = this.attentionLayers(p);
    if (!this.o.sparse(i)) return [...out, ...this.mlpLayers(p, 'mlp', this.o.denseSize, 'mlp_in', 'down_in')];
    for (let e = 0; e < this.o.experts; e++) out.push(...this.expertLayers(i, e));
    if (this.o.sharedSize) out.push(...this.mlpLayers(p, `${this.o.moeModule}.shared_expert`, this.o.sharedSize, 'mlp_in', 'shared_down_in'));
    return out;
  }

  private router(i: number): string {
    return `${this.p(i)}${this.o.moeModule}.gate.weight`;
  }

  private sharedGate(i: number): string {
    return `${this.p(i)}${this.o.moeModule}.shared_expert_gate.weight`;
  }

  blockTensors(i: number): string[] {
    const p = this.p(i);
    const names = [`${p}input_layernorm.weight`, `${p}post_attention_layernorm.weight`];
    if (this.o.qkNorm) names.push(`${p}self_attn.q_norm.weight`, `${p}self_attn.k_norm.weight`);
    if (this.o.qkvBias) for (const n of ['q', 'k', 'v']) names.push(`${p}self_attn.${n}_proj.bias`);
    if (this.o.sparse(i)) {
      names.push(this.router(i));
      if (this.o.sharedSize) names.push(this.sharedGate(i));
    }
    names.push(...this.linears(i).map((l) => l.tensor));
    return [...new Set(names)];
  }

  count(i: number): number {
    return this.o.sparse(i) ? this.o.experts : 0;
  }

  sharedTensors(i: number): string[] {
    const experts = new Set<string>();
    for (let e = 0; e < this.count(i); e++) for (const l of this.expertLayers(i, e)) experts.add(l.tensor);
    return this.blockTensors(i).filter((n) => !experts.has(n));
  }

  embedTensors(): string[] {
    return ['model.embed_tokens.weight'];
  }

  headTensors(): string[] {
    return ['model.norm.weight', this.head.headWeight];
  }

  async embed(w: Weights, ids: Int32Array, seq: number): Promise<Float32Array> {
    return embedRows(w, 'model.embed_tokens.weight', this.spec.hiddenSize, ids, seq);
  }

  /**
   * The attention half, then either the dense MLP (out = the block output) or, for an MoE layer, the
   * experts' input and the router logits as extra outputs (out = h + the shared expert's gated output; the
   * routed experts are added to it one by one, so the sum is (h + shared) + Σ p·expert rather than HF's
   * h + (Σ p·expert + shared): the same up to float32 rounding).
   */
  private build(sparse: boolean, capture: boolean) {
    const { hiddenSize: h, numHeads: H, numKvHeads: KV, headDim: D } = this.spec;
    const o = this.o;
    const g = new GraphBuilder('moe_block');
    const x = g.input('x', 'float32', ['tokens', h]);
    const att = attentionInputs(g, D);
    const weight = (name: string, dims: number[]) => g.input(name, 'float32', dims);
    const lin = (input: string, name: string, rows: number, cols: number, bias = false) => linear(g, input, weight(`${name}.w`, [rows, cols]), bias ? weight(`${name}.b`, [rows]) : undefined);
    const mlp = (input: string, name: string, width: number) => {
      const downIn = g.op('Mul', [activation(g, lin(input, `${name}gate`, width, h), o.act), lin(input, `${name}up`, width, h)]);
      return { downIn, y: lin(downIn, `${name}down`, h, width) };
    };

    const attnIn = rmsNorm(g, x, weight('ln1', [h]), o.eps);
    let q = splitHeads(g, lin(attnIn, 'q', H * D, h, o.qkvBias), att.seq, H, D);
    let k = splitHeads(g, lin(attnIn, 'k', KV * D, h, o.qkvBias), att.seq, KV, D);
    const v = splitHeads(g, lin(attnIn, 'v', KV * D, h, o.qkvBias), att.seq, KV, D);
    if (o.qkNorm) {
      q = rmsNorm(g, q, weight('q_norm', [D]), o.eps);
      k = rmsNorm(g, k, weight('k_norm', [D]), o.eps);
    }
    q = rotary(g, q, att.cos!, att.sin!, D, D);
    k = rotary(g, k, att.cos!, att.sin!, D, D);
    const oIn = causalAttention(g, q, k, v, att, { numHeads: H, numKvHeads: KV, headDim: D });
    const hMid = g.op('Add', [x, lin(oIn, 'o', h, H * D)]);
    const mlpIn = rmsNorm(g, hMid, weight('ln2', [h]), o.eps);
    const captured: Record<string, readonly [string, number]> = capture ? { attn_in: [attnIn, h], o_in: [oIn, H * D] } : {};
    if (!sparse) {
      const m = mlp(mlpIn, '', o.denseSize);
      const out = g.op('Add', [hMid, m.y]);
      if (capture) Object.assign(captured, { mlp_in: [mlpIn, h], down_in: [m.downIn, o.denseSize] });
      return finishBlock(g, x, out, h, capture, captured);
    }
    captured.moe_in = [mlpIn, h];
    captured.router_logits = [lin(mlpIn, 'router', o.experts, h), o.experts];
    let out = hMid;
    if (o.sharedSize) {
      const m = mlp(mlpIn, 'shared_', o.sharedSize);
      const gate = g.op('Sigmoid', [lin(mlpIn, 'shared_expert_gate', 1, h)]);
      out = g.op('Add', [hMid, g.op('Mul', [gate, m.y])]);
      if (capture) captured.shared_down_in = [m.downIn, o.sharedSize];
    }
    return finishBlock(g, x, out, h, true, captured);
  }

  /** One routed expert over its tokens: y = down(act(gate(x)) · up(x)); down_in captured on request. */
  private buildExpert(capture: boolean) {
    const { hiddenSize: h } = this.spec;
    const m = this.o.expertSize;
    const g = new GraphBuilder('moe_expert');
    const x = g.input('x', 'float32', ['tokens', h]);
    const w = (name: string, dims: number[]) => g.input(name, 'float32', dims);
    const downIn = g.op('Mul', [activation(g, linear(g, x, w('gate.w', [m, h])), this.o.act), linear(g, x, w('up.w', [m, h]))]);
    const y = linear(g, downIn, w('down.w', [h, m]));
    return finishBlock(g, x, y, h, capture, { down_in: [downIn, m] });
  }

  /** `out` null (a statistics pass) is treated as absent: the experts need the block's routing either way. */
  async runBlock(i: number, w: Weights, x: Float32Array, seq: number, capture: boolean, outOrNull?: Float32Array | null): Promise<BlockResult> {
    const out = outOrNull ?? undefined;
    const o = this.o;
    if (!o.sparse(i)) {
      const { feeds, widths, tokens } = this.attentionFeeds(i, w, x, seq);
      const [gate, up, down] = this.mlpLayers(this.p(i), 'mlp', o.denseSize, 'mlp_in', 'down_in');
      for (const [short, l] of [['gate', gate], ['up', up], ['down', down]] as const) feeds[`${short}.w`] = weightFeed(w, l.tensor, [l.rows, l.cols]);
      Object.assign(widths, { mlp_in: this.spec.hiddenSize, down_in: o.denseSize });
      return runBlockGraph({ key: `${this.key}|dense|m${o.denseSize}`, build: (cap) => this.build(false, cap), feeds, tokens, hidden: this.spec.hiddenSize, capture, widths, out });
    }
    // Every expert loaded: the shared part, then the experts in order, as run/experts.ts streams them.
    const h = this.spec.hiddenSize;
    const { experts: E, expertSize: m } = o;
    const half = await this.runShared(i, w, x, seq, capture, out);
    const { inputs, routing } = half;
    const sequences: Record<string, number> = {};
    const byExpert = routedTokens(routing, E);
    for (let e = 0; e < E; e++) {
      const { tokens: tok } = byExpert[e];
      if (capture) {
        sequences[`expert${e}`] = sequences[`expert${e}.down`] = new Set(Array.from(tok, (t) => Math.floor(t / seq))).size;
        inputs[`expert${e}`] = new Float32Array(tok.length * h);
        inputs[`expert${e}.down`] = new Float32Array(tok.length * m);
      }
      if (tok.length === 0) continue; // as HF: an expert no token chose is not run
      const xe = pickRows(half.moeIn, h, tok, capture ? inputs[`expert${e}`] : undefined);
      const y = await this.runExpert(i, e, w, this.expertLayers(i, e), xe, capture);
      if (capture) inputs[`expert${e}.down`].set(y.downIn!);
      addWeighted(half.out, y.y, h, byExpert[e], routing);
    }
    return capture ? { out: half.out, inputs, sequences } : { out: half.out, inputs };
  }

  /** Feeds and capture widths of the attention half of block i on x. */
  private attentionFeeds(i: number, w: Weights, x: Float32Array, seq: number): { feeds: Feeds; widths: Record<string, number>; tokens: number } {
    const { hiddenSize: h, numHeads: H, headDim: D } = this.spec;
    const o = this.o;
    const tokens = tokensOf(x, h, seq);
    const p = this.p(i);
    const rope = o.rope.tables(seq);
    const feeds: Feeds = {
      x: tensor(x, [tokens, h]),
      mask: tensor(causalMask(seq, o.windows(i)), [seq, seq]),
      cos: tensor(rope.cos, [seq, D]),
      sin: tensor(rope.sin, [seq, D]),
      ln1: weightFeed(w, `${p}input_layernorm.weight`, [h]),
      ln2: weightFeed(w, `${p}post_attention_layernorm.weight`, [h]),
    };
    if (o.qkNorm) {
      feeds.q_norm = weightFeed(w, `${p}self_attn.q_norm.weight`, [D]);
      feeds.k_norm = weightFeed(w, `${p}self_attn.k_norm.weight`, [D]);
    }
    const [q, k, v, oProj] = this.attentionLayers(p);
    for (const [short, l] of [['q', q], ['k', k], ['v', v], ['o', oProj]] as const) feeds[`${short}.w`] = weightFeed(w, l.tensor, [l.rows, l.cols]);
    if (o.qkvBias) for (const [short, l] of [['q', q], ['k', k], ['v', v]] as const) feeds[`${short}.b`] = weightFeed(w, `${p}${l.name}.bias`, [l.rows]);
    return { feeds, widths: { attn_in: h, o_in: H * D }, tokens };
  }

  /** `moeIn` is a scratch buffer that the next runShared call of the block's shape overwrites. */
  async runShared(i: number, w: Weights, x: Float32Array, seq: number, capture: boolean, out?: Float32Array): Promise<BlockResult & { moeIn: Float32Array; routing: Routing }> {
    const { hiddenSize: h } = this.spec;
    const o = this.o;
    if (!o.sparse(i)) throw new Error(`block ${i} has no routed experts`);
    const p = this.p(i);
    const { feeds, widths, tokens } = this.attentionFeeds(i, w, x, seq);
    feeds['router.w'] = weightFeed(w, this.router(i), [o.experts, h]);
    Object.assign(widths, { moe_in: h, router_logits: o.experts });
    if (o.sharedSize) {
      const [gate, up, down] = this.mlpLayers(p, `${o.moeModule}.shared_expert`, o.sharedSize, 'mlp_in', 'shared_down_in');
      for (const [short, l] of [['shared_gate', gate], ['shared_up', up], ['shared_down', down]] as const) feeds[`${short}.w`] = weightFeed(w, l.tensor, [l.rows, l.cols]);
      feeds['shared_expert_gate.w'] = weightFeed(w, this.sharedGate(i), [1, h]);
      widths.shared_down_in = o.sharedSize;
    }
    const half = await runBlockGraph({ key: `${this.key}|moe${+capture}`, build: () => this.build(true, capture), feeds, tokens, hidden: h, capture: true, widths, out });
    const inputs: Record<string, Float32Array> = {};
    if (capture) {
      inputs.attn_in = half.inputs.attn_in;
      inputs.o_in = half.inputs.o_in;
      if (o.sharedSize) {
        inputs.mlp_in = half.inputs.moe_in;
        inputs.shared_down_in = half.inputs.shared_down_in;
      }
    }
    return { out: half.out, inputs, moeIn: half.inputs.moe_in, routing: route(half.inputs.router_logits, o.experts, o.topK, o.normTopK) };
  }

  async runExpert(_i: number, _e: number, w: Weights, layers: LinearLayer[], xe: Float32Array, capture: boolean): Promise<{ y: Float32Array; downIn?: Float32Array }> {
    const { hiddenSize: h } = this.spec;
    const m = this.o.expertSize;
    const [gate, up, down] = layers;
    const feeds: Feeds = { x: tensor(xe, [xe.length / h, h]) };
    for (const [short, l] of [['gate', gate], ['up', up], ['down', down]] as const) feeds[`${short}.w`] = partFeed(w, l);
    const r = await runBlockGraph({ key: `moe-expert|h${h}|m${m}|${this.o.act}`, build: (cap) => this.buildExpert(cap), feeds, tokens: xe.length / h, hidden: h, capture, widths: { down_in: m } });
    return capture ? { y: r.out, downIn: r.inputs.down_in } : { y: r.out };
  }
}

/** The tokens routed to each expert (ascending) and the routing slot (t·k + j) of each. */
export function routedTokens(r: Routing, E: number): { tokens: Int32Array; slots: Int32Array }[] {
  const n = new Int32Array(E);
  for (const e of r.experts) n[e]++;
  const out = Array.from(n, (c) => ({ tokens: new Int32Array(c), slots: new Int32Array(c) }));
  const fill = new Int32Array(E);
  for (let s = 0; s < r.experts.length; s++) {
    const e = r.experts[s];
    out[e].tokens[fill[e]] = Math.floor(s / r.k);
    out[e].slots[fill[e]++] = s;
  }
  return out;
}

/** Rows `tokens` of x [T, h] → [tokens.length, h] (into `dst` when given). */
export function pickRows(x: Float32Array, h: number, tokens: Int32Array, dst: Float32Array = new Float32Array(tokens.length * h)): Float32Array {
  for (let k = 0; k < tokens.length; k++) dst.set(x.subarray(tokens[k] * h, (tokens[k] + 1) * h), k * h);
  return dst;
}

/** out[t] += p_slot · y[k] for the k-th routed token t of an expert (float32, as HF's index_add_). */
export function addWeighted(out: Float32Array, y: Float32Array, h: number, routed: { tokens: Int32Array; slots: Int32Array }, r: Routing): void {
  for (let k = 0; k < routed.tokens.length; k++) {
    const wt = r.weights[routed.slots[k]];
    const o = routed.tokens[k] * h;
    for (let c = 0; c < h; c++) out[o + c] += Math.fround(y[k * h + c] * wt);
  }
}

/** A linear layer's weight as a [rows, cols] feed, also when it is a run of a fused 3-D tensor. */
function partFeed(w: Weights, l: LinearLayer) {
  if (!l.part) return weightFeed(w, l.tensor, [l.rows, l.cols]);
  const whole = w.get(l.tensor);
  if (!whole) throw new Error(`tensor "${l.tensor}" was not loaded`);
  return tensor(whole.subarray(l.part.offset, l.part.offset + l.rows * l.cols), [l.rows, l.cols]);
}

/** What every MoE family reads the same way from config.json (HF names and each class's defaults). */
export function readMoeSpec(
  c: ConfigReader,
  defaults: { maxPositions: number; eps: number; theta: number },
): { spec: ModelSpec; eps: number; rope: Rope; act: Activation } {
  const hiddenSize = c.int('hidden_size');
  const act = c.str('hidden_act', 'silu');
  if (!isActivation(act)) throw c.error('hidden_act', `"${act}" is not supported (supported: ${ACTIVATIONS.join(', ')})`);
  const spec: ModelSpec = {
    family: 'moe',
    modelType: c.str('model_type'),
    hiddenSize,
    numLayers: c.int('num_hidden_layers'),
    ...readHeads(c, hiddenSize, { heads: 'num_attention_heads', kvHeads: 'num_key_value_heads', headDim: 'head_dim' }),
    intermediateSize: c.int('intermediate_size'),
    vocabSize: c.int('vocab_size'),
    maxPositions: c.int('max_position_embeddings', defaults.maxPositions),
    tieWordEmbeddings: c.bool('tie_word_embeddings', false),
    bosTokenId: c.tokenId('bos_token_id'),
    eosTokenId: c.tokenId('eos_token_id'),
    dtype: c.dtype(),
  };
  const rope = readRope(c, { headDim: spec.headDim, defaultTheta: defaults.theta, maxPositions: spec.maxPositions });
  requireWholeHead(c, rope, spec.headDim, spec.modelType);
  return { spec, eps: c.positive('rms_norm_eps', defaults.eps), rope, act };
}

/** Qwen's layer choice: MoE unless listed in mlp_only_layers, on every decoder_sparse_step-th layer. */
export function qwenSparseLayers(c: ConfigReader): (layer: number) => boolean {
  const step = c.int('decoder_sparse_step', 1);
  const only = c.config.mlp_only_layers ?? [];
  if (!Array.isArray(only) || only.some((v) => typeof v !== 'number' || !Number.isInteger(v) || v < 0)) {
    throw c.error('mlp_only_layers', 'must be a list of layer indices');
  }
  const dense = new Set(only as number[]);
  const experts = c.has('num_experts') ? (c.config.num_experts as number) : 1;
  return (i) => !dense.has(i) && experts > 0 && (i + 1) % step === 0;
}
