/**
 * Non-finite values (NaN, ±Inf) in weights or activations: found where they enter (a tensor as it is read,
 * a block's output, a layer's input statistics), named, and refused — a pruned model or a perplexity built
 * on NaNs is worthless and the cause is far from where it shows. `allow` (--allow-nonfinite) records them
 * and lets the run go on.
 */
import { ShearsError } from '../errors.js';
import type { TensorSource } from '../arch/types.js';

/** One place where non-finite values were found. */
export interface NonFiniteFault {
  /** What holds them, e.g. `tensor "model.layers.3.mlp.up_proj.weight"` or `block 3 output`. */
  where: string;
  /** How many values are NaN or ±Inf, and of how many. */
  count: number;
  total: number;
  /** The first such value's flat index and value ("NaN", "Infinity", "-Infinity"). */
  firstIndex: number;
  firstValue: string;
}

/** Index of the first NaN/±Inf in `a`, or -1. One multiply-add per value on the common, clean path. */
export function firstNonFinite(a: Float32Array | Float64Array): number {
  // x * 0 is 0 for every finite x and NaN otherwise, so the sum is NaN iff some value is not finite.
  let probe = 0;
  for (let k = 0; k < a.length; k++) probe += a[k] * 0;
  if (probe === 0) return -1;
  for (let k = 0; k < a.length; k++) if (!Number.isFinite(a[k])) return k;
  return -1;
}

export class FiniteGuard {
  readonly faults: NonFiniteFault[] = [];

  /** `allow`: record faults and go on (--allow-nonfinite) instead of stopping at the first. */
  constructor(readonly allow = false) {}

  /**
   * Checks `a`; on a non-finite value throws a ShearsError naming `where` (plus `hint` on what it means),
   * or with `allow` records it once per `where` and returns false. True when all values are finite.
   */
  check(where: string, a: Float32Array | Float64Array, hint = ''): boolean {
    const first = firstNonFinite(a);
    if (first < 0) return true;
    let count = 0;
    for (let k = first; k < a.length; k++) if (!Number.isFinite(a[k])) count++;
    const fault: NonFiniteFault = { where, count, total: a.length, firstIndex: first, firstValue: String(a[first]) };
    if (!this.allow) {
      throw new ShearsError(
        `${where} has ${count} non-finite value(s) of ${a.length} (first: ${fault.firstValue} at index ${first})${hint ? `; ${hint}` : ''}; pass --allow-nonfinite to go on anyway`,
      );
    }
    if (!this.faults.some((f) => f.where === where)) this.faults.push(fault);
    return false;
  }
}

/** `src` with every tensor checked as it is read; `fileOf` names the file holding a tensor. */
export function guardedSource(src: TensorSource, guard: FiniteGuard, fileOf?: (name: string) => string): TensorSource {
  return {
    has: (n) => src.has(n),
    shape: (n) => src.shape(n),
    readFloat32: (n) => {
      const a = src.readFloat32(n);
      guard.check(`${fileOf ? `${fileOf(n)}: ` : ''}tensor "${n}"`, a, 'the checkpoint itself holds them');
      return a;
    },
    readFloat32Range: (n, start, count) => {
      const a = src.readFloat32Range(n, start, count);
      guard.check(`${fileOf ? `${fileOf(n)}: ` : ''}tensor "${n}" (elements ${start}..${start + count})`, a, 'the checkpoint itself holds them');
      return a;
    },
  };
}
