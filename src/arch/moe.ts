/**
 * Mixture-of-Experts decoders with a Llama-style attention half: the block is
 *   h   = x + o_proj(attn(rope(q), rope(k), v))              on RMSNorm(x), q/k per-head RMSNorm for qwen3_moe
 *   n   = RMSNorm(h);  p = softmax(n·routerᵀ) (float32);  the top-k experts of each token, weights p_top
 *         (renormalised to sum 1: always for mixtral, with norm_topk_prob for qwen)
 *   out = h + Σ_top-k p_e · down_e(act(gate_e(n)) · up_e(n))  [+ sigmoid(n·shared_gateᵀ) · shared_expert(n)]
 * (HF modeling_mixtral / modeling_qwen2_moe / modeling_qwen3_moe). The family files (mixtral.ts,
 * qwen-moe.ts) read config.json into MoeOptions; this file runs them on Llama's decoder (llama.ts): the
 * attention half, the dense layers, embedding and head are Llama's, and only the MoE part is stated here.
 *
 * The block runs as two kinds of graph: the shared part (the attention half with the router logits and
 * the dense shared expert, a decoder.ts block layout) over all tokens, then one small expert graph per
 * routed expert over only the tokens sent to it (run/experts.ts streams them one at a time),
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
import { gatedMlp, linearDefs, type BlockGraph, type BlockLayout, type BlockOutputs } from './block-graph.js';
import { LlamaArchitecture } from './llama.js';
import { ACTIVATIONS, activation, isActivation, linear, type Activation } from './ops.js';
import { readRope, requireWholeHead, type Rope } from './rope.js';
import { finishBlock, runBlockGraph, weightFeed } from './runtime.js';
import type { BlockResult, CaptureReduce, LinearLayer, ModelSpec, RoutedExperts, Routing, Weights } from './types.js';

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
  /** Whether layer i has the MoE block (else Llama's gated MLP of intermediate_size, Qwen's mlp_only_layers). */
  sparse: (layer: number) => boolean;
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

/**
 * Llama's decoder (llama.ts: attention, norms, embedding, head; also every dense layer) with routed experts
 * in place of the MLP of sparse layers. A sparse layer's block graph is its shared part: attention, then
 * on n = RMSNorm(h) the router logits and (qwen2_moe) the shared expert; the experts run apart.
 */
export class MoeArchitecture extends LlamaArchitecture implements RoutedExperts {
  readonly routed: RoutedExperts = this;
  private readonly sparseLayout: BlockLayout;

  constructor(
    spec: ModelSpec,
    private readonly o: MoeOptions,
  ) {
    super(spec, { eps: o.eps, rope: o.rope, act: o.act, qkvBias: o.qkvBias, oBias: false, mlpBias: false, qkNorm: o.qkNorm, windows: o.windows });
    const dense = super.layout(0);
    const { hiddenSize: h } = spec;
    const { experts: E, sharedSize: S, moeModule: mod } = o;
    this.sparseLayout = {
      ...dense,
      key: `${dense.key}|moe-E${E}|shared${S ?? 0}`,
      linears: [
        ...dense.linears.filter((l) => l.name.startsWith('self_attn.')),
        ...(S
          ? linearDefs([
              [`${mod}.shared_expert.gate_proj`, S, h, 'mlp_in', 2, false],
              [`${mod}.shared_expert.up_proj`, S, h, 'mlp_in', 2, false],
              [`${mod}.shared_expert.down_proj`, h, S, 'shared_down_in', 3, false],
            ])
          : []),
      ],
      fixed: [{ name: `${mod}.gate`, rows: E, cols: h }, ...(S ? [{ name: `${mod}.shared_expert_gate`, rows: 1, cols: h }] : [])],
    };
  }

  protected override layout(i: number): BlockLayout {
    return this.o.sparse(i) ? this.sparseLayout : super.layout(i);
  }

  /**
   * A sparse layer's shared part: out = h (+ sigmoid(n·shared_gateᵀ) · shared_expert(n)), with the experts'
   * input n (as mlp_in) and the router logits as outputs. The routed experts are added to out one by one, so the sum is
   * (h + shared) + Σ p·expert rather than HF's h + (Σ p·expert + shared): the same up to float32 rounding.
   */
  protected override body(b: BlockGraph): BlockOutputs {
    if (b.layout !== this.sparseLayout) return super.body(b);
    const { eps, act, sharedSize: S, moeModule: mod } = this.o;
    const a = b.rmsNorm(b.x, 'input_layernorm', eps);
    const attn = this.attention(b, a);
    const h = b.add(b.x, attn.out);
    const n = b.rmsNorm(h, 'post_attention_layernorm', eps);
    // mlp_in: the routed experts' input (and the shared expert's, whose statistic it is).
    const inputs = { attn_in: a, ...attn.inputs, mlp_in: n, router_logits: b.fixedLinear(n, `${mod}.gate`) };
    if (!S) return { out: h, inputs };
    const shared = gatedMlp(b, n, { gate: `${mod}.shared_expert.gate_proj`, up: `${mod}.shared_expert.up_proj`, down: `${mod}.shared_expert.down_proj`, act, width: S });
    const gate = b.g.op('Sigmoid', [b.fixedLinear(n, `${mod}.shared_expert_gate`)]);
    return { out: b.add(h, b.g.op('Mul', [gate, shared.out])), inputs: { ...inputs, shared_down_in: shared.inputs.down_in } };
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

  private allExpertLayers(i: number): LinearLayer[] {
    return Array.from({ length: this.count(i) }, (_, e) => this.expertLayers(i, e)).flat();
  }

  override linears(i: number): LinearLayer[] {
    return [...super.linears(i), ...this.allExpertLayers(i)];
  }

  override blockTensors(i: number): string[] {
    return [...new Set([...super.blockTensors(i), ...this.allExpertLayers(i).map((l) => l.tensor)])];
  }

  count(i: number): number {
    return this.o.sparse(i) ? this.o.experts : 0;
  }

  sharedTensors(i: number): string[] {
    return super.blockTensors(i);
  }

  /** `out` null (a statistics pass) is treated as absent: the experts need the block's routing either way. */
  override async runBlock(i: number, w: Weights, x: Float32Array, seq: number, capture: boolean, outOrNull?: Float32Array | null, reduce?: CaptureReduce): Promise<BlockResult> {
    if (!this.o.sparse(i)) return super.runBlock(i, w, x, seq, capture, outOrNull, reduce);
    // Every expert loaded: the shared part, then the experts in order, as run/experts.ts streams them.
    const h = this.spec.hiddenSize;
    const { experts: E, expertSize: m } = this.o;
    const half = await this.runShared(i, w, x, seq, capture, outOrNull ?? undefined);
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

  /** `moeIn` is a scratch buffer that the next runShared call of the block's shape overwrites. */
  async runShared(i: number, w: Weights, x: Float32Array, seq: number, capture: boolean, out?: Float32Array): Promise<BlockResult & { moeIn: Float32Array; routing: Routing }> {
    const o = this.o;
    if (!o.sparse(i)) throw new Error(`block ${i} has no routed experts`);
    const r = await this.runBody(i, w, x, seq, capture, out, { mlp_in: this.spec.hiddenSize, router_logits: o.experts });
    const { router_logits: logits, ...inputs } = r.inputs;
    const moeIn = inputs.mlp_in;
    if (!capture || !o.sharedSize) delete inputs.mlp_in; // a statistic only of the shared expert
    return { out: r.out, inputs, moeIn, routing: route(logits, o.experts, o.topK, o.normTopK) };
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
