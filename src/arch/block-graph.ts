/**
 * The decoder-block patterns that families share, over the graph ops of ops.ts. A family describes its
 * block as a `BlockLayout` (its linear layers and norms, by HF module name) and writes the block body with a
 * `BlockGraph`, which declares each weight as a graph input named after its tensor inside the block
 * ("self_attn.q_proj.weight"), so that decoder.ts can feed any block from the layout alone.
 *
 * Patterns (each a few lines of the body):
 *  - norms:            b.rmsNorm(x, 'input_layernorm', eps), b.layerNorm(x, 'ln_1', eps)
 *  - projections:      b.linear(x, 'self_attn.q_proj') (bias when the layout says so; Conv1D when transposed)
 *  - fused projections: b.splitColumns(t, [q, k, v]) for [q | k | v] blocks of columns (GPT-2, Phi-3),
 *                      b.splitPerHead(t, heads, [D, D, D]) for per-head interleaved rows (GPT-NeoX, BLOOM)
 *  - attention:        b.heads(t, n, D), b.rotary(t) (RoPE tables fed by decoder.ts), b.attention(q, k, v, shape)
 *  - MLPs:             gatedMlp (act(gate)·up, separate or fused gate_up), plainMlp (act(up))
 *  - residual blocks:  residualBlock: pre-norm, parallel (GPT-NeoX), residual from the normed input (BLOOM),
 *                      and optional norms on each branch's output (Gemma 2/3's post-norms)
 * Shapes as in ops.ts: 2-D activations [T, width], heads [B, S, heads, headDim].
 */
import { GraphBuilder } from '../engine/graph.js';
import { activation, attentionInputs, causalAttention, layerNorm, linear, rmsNorm, rotary, splitHeads, type Activation, type AttentionInputs, type AttentionShape } from './ops.js';

/** A prunable linear layer of the block. */
export interface LinearDef {
  /** HF module name inside the block, e.g. "self_attn.q_proj" (tensors <name>.weight and <name>.bias). */
  name: string;
  /** nn.Linear view: out_features, in_features. */
  rows: number;
  cols: number;
  /** Id of the activation feeding it (layers with one id share statistics): attn_in, o_in, mlp_in, down_in. */
  input: string;
  /** True-sequential stage. */
  stage: number;
  bias: boolean;
}

/** A norm of the block with a gain (<name>.weight) and optionally a bias (<name>.bias), both [width]. */
export interface NormDef {
  name: string;
  width: number;
  bias: boolean;
}

/** What one decoder block holds; every listed tensor must be used by the block body. */
export interface BlockLayout {
  /** Session cache key of the block graph: family and every dimension or option the body depends on. */
  key: string;
  linears: LinearDef[];
  norms: NormDef[];
  /** Weights stored [in, out] (GPT-2's Conv1D). */
  transposed?: boolean;
  /** Rotated dims of each head when the block uses RoPE; the tables come from the adapter's `rope`. */
  rotaryDim?: number;
  headDim: number;
  /** Linear weights that are never pruned (MoE routers), [rows, cols] by module name: b.fixedLinear reads them. */
  fixed?: { name: string; rows: number; cols: number }[];
}

/** Shorthand for a layout's linear layers: [name, rows, cols, input id, stage, bias]. */
export function linearDefs(rows: [string, number, number, string, number, boolean][]): LinearDef[] {
  return rows.map(([name, r, c, input, stage, bias]) => ({ name, rows: r, cols: c, input, stage, bias }));
}

/** Shorthand for norms of one width: names → NormDef. */
export function normDefs(names: string[], width: number, bias: boolean): NormDef[] {
  return names.map((name) => ({ name, width, bias }));
}

/** The block body's result: output [T, hidden] and the value feeding each input id of the layout. */
export interface BlockOutputs {
  out: string;
  inputs: Record<string, string>;
}

export class BlockGraph {
  readonly g: GraphBuilder;
  /** The block input [T, hidden]. */
  readonly x: string;
  /** mask, seq, and cos/sin when the layout has rotaryDim. */
  readonly att: AttentionInputs;
  private readonly declared = new Set<string>();
  private readonly linearsByName: Map<string, LinearDef>;
  private readonly normsByName: Map<string, NormDef>;

  constructor(
    name: string,
    hidden: number,
    readonly layout: BlockLayout,
    /** Query chunks of the block's attention (ops.attentionChunks); the session key must include it. */
    attentionChunks = 1,
  ) {
    this.g = new GraphBuilder(name);
    this.x = this.g.input('x', 'float32', ['tokens', hidden]);
    this.att = attentionInputs(this.g, layout.rotaryDim, attentionChunks);
    this.linearsByName = new Map(layout.linears.map((l) => [l.name, l]));
    this.normsByName = new Map(layout.norms.map((n) => [n.name, n]));
  }

  /** The graph input for tensor `<local>` of the block (declared on first use). */
  weight(local: string, dims: number[]): string {
    if (!this.declared.has(local)) {
      this.declared.add(local);
      this.g.input(local, 'float32', dims);
    }
    return local;
  }

  private linearDef(name: string): LinearDef {
    const l = this.linearsByName.get(name);
    if (!l) throw new Error(`block layout has no linear layer ${name}`);
    return l;
  }

  private normDef(name: string): NormDef {
    const n = this.normsByName.get(name);
    if (!n) throw new Error(`block layout has no norm ${name}`);
    return n;
  }

  /** The layout's linear layer `name` on x [T, cols] → [T, rows], with its bias when it has one. */
  linear(x: string, name: string): string {
    const l = this.linearDef(name);
    const t = this.layout.transposed ?? false;
    const w = this.weight(`${name}.weight`, t ? [l.cols, l.rows] : [l.rows, l.cols]);
    return linear(this.g, x, w, l.bias ? this.weight(`${name}.bias`, [l.rows]) : undefined, t);
  }

  /** x [T, cols] times the layout's fixed (never pruned) weight `name` → [T, rows]. */
  fixedLinear(x: string, name: string): string {
    const f = this.layout.fixed?.find((d) => d.name === name);
    if (!f) throw new Error(`block layout has no fixed weight ${name}`);
    return linear(this.g, x, this.weight(`${name}.weight`, [f.rows, f.cols]));
  }

  private gain(name: string): { w: string; b?: string } {
    const n = this.normDef(name);
    return { w: this.weight(`${name}.weight`, [n.width]), b: n.bias ? this.weight(`${name}.bias`, [n.width]) : undefined };
  }

  layerNorm(x: string, name: string, eps: number): string {
    const { w, b } = this.gain(name);
    return layerNorm(this.g, x, w, b, eps);
  }

  /** `unitOffset`: the gain is 1 + w (Gemma's norms; see ops.rmsNorm). */
  rmsNorm(x: string, name: string, eps: number, unitOffset = false): string {
    return rmsNorm(this.g, x, this.gain(name).w, eps, unitOffset);
  }

  add(a: string, b: string): string {
    return this.g.op('Add', [a, b]);
  }

  /** [T, n·headDim] → [B, S, n, headDim]. */
  heads(x: string, n: number, headDim = this.layout.headDim): string {
    return splitHeads(this.g, x, this.att.seq, n, headDim);
  }

  /** RoPE on the first rotaryDim dims of each head of x [B, S, n, headDim]. */
  rotary(x: string): string {
    const r = this.layout.rotaryDim;
    if (r === undefined || !this.att.cos || !this.att.sin) throw new Error('block layout has no rotaryDim');
    return rotary(this.g, x, this.att.cos, this.att.sin, this.layout.headDim, r);
  }

  /** Causal attention (ops.causalAttention) with the block's mask and query chunks → [T, heads·headDim]. */
  attention(q: string, k: string, v: string, shape: AttentionShape): string {
    return causalAttention(this.g, q, k, v, this.att, shape);
  }

  /** A fused projection's output [T, Σ sizes] split into column blocks (e.g. [q | k | v], [gate | up]). */
  splitColumns(x: string, sizes: number[]): string[] {
    return this.g.opN('Split', [x, this.g.ints(sizes)], sizes.length, { axis: 1 });
  }

  /** A fused projection whose rows are grouped per head ([q_j | k_j | v_j] for head j) → [B, S, heads, part] each. */
  splitPerHead(x: string, heads: number, parts: number[]): string[] {
    const grouped = splitHeads(this.g, x, this.att.seq, heads, parts.reduce((a, b) => a + b, 0));
    return this.g.opN('Split', [grouped, this.g.ints(parts)], parts.length, { axis: -1 });
  }
}

/** A branch of a residual block: its output and the captured input of its last linear layer. */
export interface Branch {
  out: string;
  /** Input id → value for the layers inside the branch (e.g. o_in, down_in). */
  inputs: Record<string, string>;
}

/**
 * down(act(gate(x)) · up(x)) (Llama, Gemma), or with `gateUp` a fused [gate | up] projection split in
 * halves (Phi-3). Captures down's input as `down_in`.
 */
export function gatedMlp(b: BlockGraph, x: string, o: { gate?: string; up?: string; gateUp?: string; down: string; act: Activation; width: number }): Branch {
  let gate: string;
  let up: string;
  if (o.gateUp) [gate, up] = b.splitColumns(b.linear(x, o.gateUp), [o.width, o.width]);
  else [gate, up] = [b.linear(x, o.gate!), b.linear(x, o.up!)];
  const downIn = b.g.op('Mul', [activation(b.g, gate, o.act), up]);
  return { out: b.linear(downIn, o.down), inputs: { down_in: downIn } };
}

/** down(act(up(x))) (GPT-2, OPT, GPT-NeoX, BLOOM). Captures down's input as `down_in`. */
export function plainMlp(b: BlockGraph, x: string, o: { up: string; down: string; act: Activation }): Branch {
  const downIn = activation(b.g, b.linear(x, o.up), o.act);
  return { out: b.linear(downIn, o.down), inputs: { down_in: downIn } };
}

/**
 * The residual block of pre-norm decoders:
 *   a = norm1(x);  h = r1 + post1(attn(a));  m = norm2(parallel ? x : h);  out = r2 + post2(mlp(m))
 * with r1 = x, r2 = h, or (residualFromNorm, BLOOM's apply_residual_connection_post_layernorm) r1 = a, r2 = m.
 * post1/post2 are optional norms on the branch outputs (Gemma 2/3). Captures attn_in = a and mlp_in = m,
 * plus what the branches capture.
 */
export function residualBlock(
  b: BlockGraph,
  o: {
    norm1: (x: string) => string;
    attention: (a: string) => Branch;
    norm2: (x: string) => string;
    mlp: (m: string) => Branch;
    parallel?: boolean;
    residualFromNorm?: boolean;
    post1?: (y: string) => string;
    post2?: (y: string) => string;
  },
): BlockOutputs {
  const a = o.norm1(b.x);
  const attn = o.attention(a);
  const h = b.add(o.residualFromNorm ? a : b.x, o.post1 ? o.post1(attn.out) : attn.out);
  const m = o.norm2(o.parallel ? b.x : h);
  const mlp = o.mlp(m);
  const out = b.add(o.residualFromNorm ? m : h, o.post2 ? o.post2(mlp.out) : mlp.out);
  return { out, inputs: { attn_in: a, mlp_in: m, ...attn.inputs, ...mlp.inputs } };
}
