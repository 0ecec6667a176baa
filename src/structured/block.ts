/**
 * Structured removal inside one decoder block, on its weights as loaded (full checkpoint names, stored
 * layout): MLP channels (rows of the layers reading the MLP input, columns of the one reading the
 * intermediate activation) and attention heads (rows of q/k/v, columns of the output projection). The
 * layers are found through the adapter's linear layers and their input ids, so every family that names
 * its inputs mlp_in / down_in / attn_in / o_in is handled by the same code. A layer reading the MLP input
 * with k times as many rows as there are channels is k stacked parts (Phi-3's fused gate_up_proj, [gate; up]):
 * channel j owns row j of every part, and its rows go together.
 */
import type { Architecture, LinearLayer, Weights } from '../arch/types.js';
import type { HeadPlan } from './plan.js';
import { removeGroups, type GroupLayout, type StructuredCriterion } from './solve.js';

export interface BlockRemoval {
  /** Removed group indices (channels, or query heads of the source numbering). */
  removed: number[];
  /** ‖ΔW·x̃‖² per calibration token at the re-solved projection (absent without calibration). */
  loss?: number;
}

export interface RemovalSettings {
  criterion: StructuredCriterion;
  compensate: boolean;
  damp: number;
}

/** [rows, cols] nn.Linear view of a stored weight (a copy when stored transposed). */
function view(l: LinearLayer, stored: Float32Array): Float32Array {
  if (!l.transposed) return stored;
  const t = new Float32Array(stored.length);
  for (let c = 0; c < l.cols; c++) for (let r = 0; r < l.rows; r++) t[r * l.cols + c] = stored[c * l.rows + r];
  return t;
}

/** The stored layout of an nn.Linear view [rows, cols]. */
function stored(transposed: boolean, v: Float32Array, rows: number, cols: number): Float32Array {
  if (!transposed) return v;
  const t = new Float32Array(v.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = v[r * cols + c];
  return t;
}

function biasName(l: LinearLayer): string {
  return l.tensor.replace(/\.weight$/, '.bias');
}

/** Keeps rows `keep` of layer l (and of its bias) in w. */
function keepRows(w: Weights, l: LinearLayer, keep: number[]): void {
  const v = view(l, w.get(l.tensor)!);
  const out = new Float32Array(keep.length * l.cols);
  keep.forEach((r, i) => out.set(v.subarray(r * l.cols, (r + 1) * l.cols), i * l.cols));
  w.set(l.tensor, stored(l.transposed, out, keep.length, l.cols));
  const b = w.get(biasName(l));
  if (b) w.set(biasName(l), Float32Array.from(keep, (r) => b[r]));
}

function rowNorms(l: LinearLayer, v: Float32Array): Float64Array {
  const s = new Float64Array(l.rows);
  for (let r = 0; r < l.rows; r++) for (let c = 0; c < l.cols; c++) s[r] += v[r * l.cols + c] ** 2;
  return s;
}

/** Re-solves (or just cuts) the output projection `out` to its kept columns; returns the kept columns' removal result. */
async function reduceProjection(w: Weights, out: LinearLayer, layout: GroupLayout, g: Float64Array | undefined, s: RemovalSettings, otherNorms: Float64Array) {
  const bias = w.get(biasName(out));
  const r = await removeGroups({ w: view(out, w.get(out.tensor)!), rows: out.rows, n: out.cols, bias }, layout, g, { criterion: s.criterion, compensate: s.compensate, damp: s.damp, otherNorms });
  w.set(out.tensor, stored(out.transposed, r.w, out.rows, r.keptCols.length));
  if (bias && r.bias) w.set(biasName(out), r.bias);
  return r;
}

/** Removes `remove` MLP channels of block b; g = AugmentedGram of the intermediate activation (down_in). */
export async function removeChannels(arch: Architecture, b: number, w: Weights, remove: number, g: Float64Array | undefined, s: RemovalSettings): Promise<BlockRemoval> {
  const layers = arch.linears(b);
  const ins = layers.filter((l) => l.input === 'mlp_in');
  const out = layers.find((l) => l.input === 'down_in');
  if (!out || ins.length === 0) throw new Error(`block ${b}: no MLP layers found`);
  const m = out.cols;
  for (const l of ins) if (l.rows % m !== 0) throw new Error(`block ${b}: ${l.tensor} has ${l.rows} rows, not a multiple of the ${m} MLP channels`);
  const other = new Float64Array(m);
  for (const l of ins) rowNorms(l, view(l, w.get(l.tensor)!)).forEach((v, row) => (other[row % m] += v));
  const layout: GroupLayout = { groups: Array.from({ length: m }, (_, j) => [j]), partitions: [Array.from({ length: m }, (_, j) => j)], removePer: remove };
  const r = await reduceProjection(w, out, layout, g, s, other);
  for (const l of ins) keepRows(w, l, Array.from({ length: l.rows / m }, (_, part) => r.keptCols.map((j) => part * m + j)).flat());
  return { removed: r.removed, loss: r.loss };
}

/** Removes heads of block b as `plan` says; g = AugmentedGram of the attention output (o_in). */
export async function removeHeads(arch: Architecture, b: number, w: Weights, plan: HeadPlan, g: Float64Array | undefined, s: RemovalSettings): Promise<BlockRemoval> {
  const layers = arch.linears(b);
  const out = layers.find((l) => l.input === 'o_in');
  const ins = layers.filter((l) => l.input === 'attn_in');
  if (!out || ins.length === 0) throw new Error(`block ${b}: no attention layers found`);
  const { headDim: D, rep } = plan;
  const H = plan.heads.before;
  const KV = plan.kvHeads.before;
  const q = ins.filter((l) => l.rows === H * D);
  const kv = ins.filter((l) => l.rows === KV * D && !q.includes(l));
  const cols = (from: number, count: number) => Array.from({ length: count }, (_, k) => from + k);
  // A group is one query head (per-group) or one KV group's rep query heads (kv-groups).
  const per = plan.mode === 'per-group' ? 1 : rep;
  const layout: GroupLayout = {
    groups: Array.from({ length: H / per }, (_, k) => cols(k * per * D, per * D)),
    partitions: plan.mode === 'per-group' ? Array.from({ length: KV }, (_, k) => cols(k * rep, rep)) : [cols(0, KV)],
    removePer: plan.removePer,
  };
  const other = new Float64Array(layout.groups.length);
  for (const l of q) rowNorms(l, view(l, w.get(l.tensor)!)).forEach((v, r) => (other[Math.floor(r / (per * D))] += v));
  if (plan.mode === 'kv-groups') for (const l of kv) rowNorms(l, view(l, w.get(l.tensor)!)).forEach((v, r) => (other[Math.floor(r / D)] += v));
  const r = await reduceProjection(w, out, layout, g, s, other);
  // Kept o_proj columns are exactly the kept query heads' rows of q_proj.
  for (const l of q) keepRows(w, l, r.keptCols);
  if (plan.mode === 'kv-groups') {
    const gone = new Set(r.removed);
    const keptRows = Array.from({ length: KV }, (_, k) => k).filter((k) => !gone.has(k)).flatMap((k) => cols(k * D, D));
    for (const l of kv) keepRows(w, l, keptRows);
  }
  const removedHeads = r.removed.flatMap((k) => cols(k * per, per));
  return { removed: removedHeads, loss: r.loss };
}
