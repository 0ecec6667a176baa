/**
 * Random pruning, the baseline no reference ships: positions chosen uniformly by our own seeded PRNG,
 * so that a seed reproduces the same mask on every platform.
 *
 * Unstructured: exactly int(numel · p) entries per matrix (the count magnitude/Wanda aim at, without
 * their tie surplus). N:M: min(N, width) distinct positions per group, uniformly (nm.ts tail rule).
 */
import { type PruneResult, type SparsitySpec, type Weight, checkSpec, checkWeight, countZeros, tailNote } from './spec.js';
import type { PruneMethod } from './method.js';

/** Each layer gets its own stream: seed·1000003 + the layer's position in the run. */
export const random: PruneMethod = { statistic: 'none', prune: (w, _input, spec, opts, index) => randomPrune(w, spec, (opts.seed ?? 0) * 1_000_003 + index) };

/** xoshiro128** (Blackman & Vigna), seeded through splitmix32: small, fast, good enough for masks. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new RangeError(`seed ${seed} is not a finite number`);
    // Both 32-bit halves of an integer seed up to 2^53 take part, so seed·k + i never aliases early.
    const s = Math.trunc(seed);
    let x = (s >>> 0) ^ Math.imul(Math.floor(s / 4294967296) | 0, 0x85ebca6b);
    const next = () => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
      z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
      return (z ^ (z >>> 15)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** A uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** A uniform double in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** A uniform integer in [0, n), n <= 2^53. */
  below(n: number): number {
    return Math.floor(this.nextFloat() * n);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

export function randomPrune(w: Weight, spec: SparsitySpec, seed: number): PruneResult {
  checkWeight(w);
  checkSpec(spec);
  const a = w.data;
  const total = a.length;
  const rng = new Rng(seed);
  if (spec.kind === 'nm') {
    const { n, m } = spec;
    const idx = new Int32Array(m);
    for (let r = 0; r < w.rows; r++) {
      for (let g = 0; g < w.cols; g += m) {
        const width = Math.min(m, w.cols - g);
        // Partial Fisher–Yates: the first min(n, width) of a shuffled group.
        for (let j = 0; j < width; j++) idx[j] = j;
        const k = Math.min(n, width);
        for (let t = 0; t < k; t++) {
          const u = t + rng.below(width - t);
          const v = idx[u];
          idx[u] = idx[t];
          idx[t] = v;
          a[r * w.cols + g + v] = 0;
        }
      }
    }
    const notes = tailNote(w.cols, spec);
    return { pruned: countZeros(a), total, ...(notes.length ? { notes } : {}) };
  }
  const count = Math.min(Math.floor(total * spec.sparsity), total);
  // Rejection sampling of the smaller side (pruned or kept) never needs more than ~2 draws per pick
  // and only a byte per weight, where a full index permutation would need four.
  const pickPruned = count <= total - count;
  const picks = pickPruned ? count : total - count;
  const picked = new Uint8Array(total);
  for (let got = 0; got < picks; ) {
    const k = rng.below(total);
    if (!picked[k]) {
      picked[k] = 1;
      got++;
    }
  }
  const want = pickPruned ? 1 : 0;
  for (let k = 0; k < total; k++) if (picked[k] === want) a[k] = 0;
  return { pruned: countZeros(a), total };
}
