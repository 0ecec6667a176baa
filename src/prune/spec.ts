/**
 * What a pruning method is asked to do, and what it reports back. Methods are pure functions over a
 * weight in nn.Linear orientation [out = rows, in = cols], row-major float32, modified in place.
 */
import { usageError } from '../errors.js';

/** Unstructured: a fraction `sparsity` in (0, 1) of entries is zeroed (per matrix, per row or per
 *  block depending on the method). N:M: in every group of M consecutive input columns of a row,
 *  N entries are zeroed (groups start at column 0; a shorter tail group loses min(N, width)). */
export type SparsitySpec = { kind: 'unstructured'; sparsity: number } | { kind: 'nm'; n: number; m: number };

/** A weight matrix [rows, cols], row-major, nn.Linear orientation [out, in]. */
export interface Weight {
  data: Float32Array;
  rows: number;
  cols: number;
}

export interface PruneResult {
  /** Entries that are exactly 0 after the call (pre-existing zeros included): the realised sparsity
   *  is pruned / total. */
  pruned: number;
  /** rows · cols. */
  total: number;
  /** SparseGPT: the reference's reported error Σ_rows Σ_cols (w − q)² / (2·d²). */
  loss?: number;
  /** SparseGPT: the relative damping (fraction of mean diag H) that finally succeeded. */
  damp?: number;
  /** SparseGPT: how many times the damping was raised 10× after a failed Cholesky. */
  retries?: number;
  /** Anything the user should know about this layer (tail groups, retries, dead columns). */
  notes?: string[];
}

/** The fraction of weights a spec removes (N/M for patterns). */
export function targetSparsity(spec: SparsitySpec): number {
  return spec.kind === 'unstructured' ? spec.sparsity : spec.n / spec.m;
}

/** "50%" or "2:4", for reports and messages. */
export function describeSpec(spec: SparsitySpec): string {
  if (spec.kind === 'nm') return `${spec.n}:${spec.m}`;
  return `${+(spec.sparsity * 100).toPrecision(6)}%`;
}

/** An unstructured sparsity given on the command line: a number strictly between 0 and 1. */
export function parseSparsity(value: number | string, option = '--sparsity'): number {
  const p = typeof value === 'number' ? value : value.trim() === '' ? NaN : Number(value);
  if (!Number.isFinite(p) || p <= 0 || p >= 1) {
    throw usageError(`${option} must be a number strictly between 0 and 1 (got ${JSON.stringify(value)})`);
  }
  return p;
}

/** "N:M" with integers 0 < N < M. */
export function parsePattern(value: string, option = '--pattern'): { kind: 'nm'; n: number; m: number } {
  const match = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(value);
  const n = match ? Number(match[1]) : NaN;
  const m = match ? Number(match[2]) : NaN;
  if (!match || !Number.isSafeInteger(n) || !Number.isSafeInteger(m) || n <= 0 || n >= m) {
    throw usageError(`${option} must be N:M with integers 0 < N < M, e.g. 2:4 (got ${JSON.stringify(value)})`);
  }
  return { kind: 'nm', n, m };
}

/** The spec from `--sparsity p` or `--pattern N:M` (exactly one of them). */
export function parseSparsitySpec(args: { sparsity?: number | string; pattern?: string }): SparsitySpec {
  const hasP = args.sparsity !== undefined;
  const hasNM = args.pattern !== undefined;
  if (hasP && hasNM) throw usageError('give either --sparsity or --pattern, not both');
  if (hasNM) return parsePattern(args.pattern!);
  if (hasP) return { kind: 'unstructured', sparsity: parseSparsity(args.sparsity!) };
  throw usageError('one of --sparsity p or --pattern N:M is required');
}

/** Throws a RangeError for a spec that did not come through the parsers (a caller bug, not a user error). */
export function checkSpec(spec: SparsitySpec): void {
  if (spec.kind === 'unstructured') {
    if (!(spec.sparsity > 0 && spec.sparsity < 1)) throw new RangeError(`sparsity ${spec.sparsity} is not in (0, 1)`);
  } else if (!(Number.isSafeInteger(spec.n) && Number.isSafeInteger(spec.m) && spec.n > 0 && spec.n < spec.m)) {
    throw new RangeError(`invalid N:M pattern ${spec.n}:${spec.m}`);
  }
}

/** Throws a RangeError when `data` is not rows·cols long. */
export function checkWeight(w: Weight): void {
  if (!(Number.isSafeInteger(w.rows) && Number.isSafeInteger(w.cols) && w.rows >= 0 && w.cols >= 0) || w.data.length !== w.rows * w.cols) {
    throw new RangeError(`weight has ${w.data.length} values, not ${w.rows}x${w.cols}`);
  }
}

export function countZeros(a: Float32Array): number {
  let z = 0;
  for (let k = 0; k < a.length; k++) if (a[k] === 0) z++;
  return z;
}

/** A note for layers whose width is not a multiple of M (see SparsitySpec for the tail rule). */
export function tailNote(cols: number, spec: SparsitySpec): string[] {
  if (spec.kind !== 'nm' || cols % spec.m === 0) return [];
  const t = cols % spec.m;
  return [`${cols} columns is not a multiple of ${spec.m}: the last group of ${t} column(s) loses ${Math.min(spec.n, t)}`];
}
