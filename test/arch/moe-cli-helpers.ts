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
