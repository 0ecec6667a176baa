/**
 * Shared by the MoE CLI tests: the prunable tensors of an MoE checkpoint (each expert's gate/up/down as a
 * [rows, cols] view, fused or not), the pattern checks on them, and the routed-token counts of every
 * expert derived independently from the float64 reference router.
 */
import { expect } from 'vitest';
import type { F64 } from './reference.js';
import { expertWeights, refBlock, refEmbed, type MoeShape } from './moe-reference.js';

export interface PrunableView {
  /** Layer name as the report gives it (block prefix aside). */
  label: string;
  tensor: string;
  block: number;
  expert?: number;
  rows: number;
  cols: number;
  data: Float32Array;
}

/** Every prunable matrix of block i of a checkpoint read through `w`, expert slices included. */
export function prunables(s: MoeShape, w: (n: string) => Float32Array, i: number): PrunableView[] {
  const p = `model.layers.${i}.`;
  const out: PrunableView[] = [];
  const add = (tensor: string, rows: number, cols: number, data: Float32Array, expert?: number) => out.push({ label: tensor, tensor, block: i, expert, rows, cols, data });
  add(`${p}self_attn.q_proj.weight`, s.H * s.D, s.h, w(`${p}self_attn.q_proj.weight`));
  add(`${p}self_attn.k_proj.weight`, s.KV * s.D, s.h, w(`${p}self_attn.k_proj.weight`));
  add(`${p}self_attn.v_proj.weight`, s.KV * s.D, s.h, w(`${p}self_attn.v_proj.weight`));
  add(`${p}self_attn.o_proj.weight`, s.h, s.H * s.D, w(`${p}self_attn.o_proj.weight`));
  if (!s.sparse(i)) {
    for (const [n, r, c] of [['gate_proj', s.dense, s.h], ['up_proj', s.dense, s.h], ['down_proj', s.h, s.dense]] as const) add(`${p}mlp.${n}.weight`, r, c, w(`${p}mlp.${n}.weight`));
    return out;
  }
  for (let e = 0; e < s.E; e++) {
    const [g, u, d] = expertWeights(s, w, i, e);
    add(`expert ${e} gate`, s.I, s.h, g, e);
    add(`expert ${e} up`, s.I, s.h, u, e);
    add(`expert ${e} down`, s.h, s.I, d, e);
  }
  if (s.shared) {
    for (const [n, r, c] of [['gate_proj', s.shared, s.h], ['up_proj', s.shared, s.h], ['down_proj', s.h, s.shared]] as const) add(`${p}mlp.shared_expert.${n}.weight`, r, c, w(`${p}mlp.shared_expert.${n}.weight`));
  }
  return out;
}

export function zeros(a: Float32Array): number {
  let z = 0;
  for (const v of a) if (v === 0) z++;
  return z;
}

/** The realised pattern of one run on one matrix; `magnitude` = pruned by the per-matrix magnitude rule. */
export function checkPattern(v: PrunableView, run: string, magnitude: boolean): void {
  const { rows, cols, data } = v;
  if (run.endsWith('-24')) {
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c += 4) expect(zeros(data.subarray(r * cols + c, r * cols + c + 4)), `${v.label} row ${r} cols ${c}..`).toBeGreaterThanOrEqual(2);
  } else if (run.startsWith('wanda') && !magnitude) {
    for (let r = 0; r < rows; r++) expect(zeros(data.subarray(r * cols, (r + 1) * cols)), `${v.label} row ${r}`).toBe(cols / 2);
  } else {
    expect(zeros(data) / data.length, v.label).toBeGreaterThanOrEqual(0.5);
    expect(zeros(data) / data.length, v.label).toBeLessThan(0.51);
  }
}

/**
 * Calibration tokens the router sends to each expert of each sparse block during the prune: block b's
 * statistics are collected on its dense weights (`dense`), from the output of blocks 0..b-1 as pruned
 * (`pruned`), as the layer-sequential driver does. counts[b][e].
 */
export function expectedRouted(s: MoeShape, dense: (n: string) => Float32Array, pruned: (n: string) => Float32Array, ids: Int32Array, seq: number): number[][] {
  let x: F64 = refEmbed(s, dense, ids);
  const counts: number[][] = [];
  for (let b = 0; b < s.layers; b++) {
    const r = refBlock(s, dense, b, x, seq);
    counts.push(r.routed ? r.routed.map((t) => t.length) : []);
    if (b + 1 < s.layers) x = refBlock(s, pruned, b, x, seq).out;
  }
  return counts;
}

export interface ReportLayer {
  block: number;
  name: string;
  tensor: string;
  routedTokens?: number;
  fallback?: string;
  notes?: string[];
}

/**
 * One pruned output against its source: same names, dtypes and shapes; the pattern of `run` ("wanda-50",
 * "sparsegpt-24", ...) on every prunable matrix; every other tensor (routers, shared-expert gate, norms,
 * embeddings, head) byte-identical; each expert's reported routed tokens equal to the reference router's
 * count, and the magnitude fallback exactly below `minTokens`. Returns the expected counts.
 */
export function checkMoeOutput(
  s: MoeShape,
  src: { tensorNames(): string[]; readFloat32(n: string): Float32Array; readBytes(n: string): Uint8Array; info(n: string): { dtype: string; shape: number[] } },
  out: { tensorNames(): string[]; readFloat32(n: string): Float32Array; readBytes(n: string): Uint8Array; info(n: string): { dtype: string; shape: number[] } },
  report: { layers: ReportLayer[] },
  run: string,
  ids: Int32Array,
  seq: number,
  minTokens: number,
): number[][] {
  expect(out.tensorNames()).toEqual(src.tensorNames());
  const counts = expectedRouted(s, (n) => src.readFloat32(n), (n) => out.readFloat32(n), ids, seq);
  const touched = new Set<string>();
  for (let b = 0; b < s.layers; b++) {
    for (const v of prunables(s, (n) => out.readFloat32(n), b)) {
      if (v.expert === undefined) touched.add(v.tensor);
      checkPattern(v, run, v.expert !== undefined && counts[b][v.expert] < minTokens);
    }
    const layers = report.layers.filter((l) => l.block === b && /experts\.\d+\./.test(l.name));
    expect(layers.length).toBe(s.sparse(b) ? 3 * s.E : 0);
    for (const l of layers) {
      const e = Number(/experts\.(\d+)\./.exec(l.name)![1]);
      expect(l.routedTokens, `${l.name} routed tokens`).toBe(counts[b][e]);
      expect(l.fallback === 'magnitude', `${l.name} fallback`).toBe(counts[b][e] < minTokens);
      if (l.fallback) expect(l.notes?.join(' ')).toContain(`received ${counts[b][e]} calibration tokens`);
    }
    if (s.sparse(b)) expect(counts[b].reduce((a, c) => a + c, 0)).toBe(ids.length * s.K);
  }
  for (const t of src.tensorNames()) {
    expect(out.info(t).dtype, t).toBe(src.info(t).dtype);
    expect(out.info(t).shape, t).toEqual(src.info(t).shape);
    if (touched.has(t) || t.includes('.experts.')) continue;
    expect(Buffer.from(out.readBytes(t)).equals(Buffer.from(src.readBytes(t))), `${t} untouched`).toBe(true);
  }
  return counts;
}

/** Perplexity of the reference logits [T, vocab] over next tokens within windows of `seq`. */
export function refPerplexity(logits: F64, stream: Int32Array, seq: number, vocab: number): number {
  let nll = 0;
  let n = 0;
  for (let t = 0; t < stream.length; t++) {
    if ((t + 1) % seq === 0) continue; // the last token of a window has no target inside it
    const row = logits.subarray(t * vocab, (t + 1) * vocab);
    const max = Math.max(...row);
    nll += max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0)) - row[stream[t + 1]];
    n++;
  }
  return Math.exp(nll / n);
}
