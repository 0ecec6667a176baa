/**
 * Order statistics without a full sort: the references sort whole matrices (torch.sort) only to read
 * one element or the first k indices; a linear-time selection gives the same answer on large layers.
 */

type Floats = Float32Array | Float64Array;

/**
 * The value at index k of `a` sorted ascending (torch.sort(a)[0][k]), reordering `a` in place.
 * NaN must have been replaced by the caller (torch sorts NaN last: +Infinity is the usual stand-in).
 * Three-way partitioning keeps runs of equal values (zeros in already-sparse weights) linear.
 */
export function kthSmallest(a: Floats, k: number): number {
  if (!(k >= 0 && k < a.length)) throw new RangeError(`index ${k} outside 0..${a.length - 1}`);
  let lo = 0;
  let hi = a.length - 1;
  let seed = 0x9e3779b9 ^ a.length;
  while (lo < hi) {
    // A pseudo-random pivot: median-of-three alone degrades to quadratic on crafted orders.
    seed = (Math.imul(seed, 1103515245) + 12345) | 0;
    const r = lo + ((seed >>> 8) % (hi - lo + 1));
    const mid = (lo + hi) >>> 1;
    const x = a[lo], y = a[r], z = a[mid];
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let lt = lo, i = lo, gt = hi;
    while (i <= gt) {
      const v = a[i];
      if (v < pivot) {
        a[i] = a[lt];
        a[lt] = v;
        lt++;
        i++;
      } else if (v > pivot) {
        a[i] = a[gt];
        a[gt] = v;
        gt--;
      } else {
        i++;
      }
    }
    // Now a[lo..lt-1] < pivot, a[lt..gt] == pivot, a[gt+1..hi] > pivot.
    if (k < lt) hi = lt - 1;
    else if (k > gt) lo = gt + 1;
    else return pivot;
  }
  return a[k];
}

/**
 * Marks (mask[maskAt + j] = 1) the k smallest of values[at .. at+len), with ties taken in index
 * order: exactly the first k indices of torch.sort(row, stable=True). NaN counts as larger than
 * everything (torch's order), ties among NaN in index order. `scratch` needs len entries.
 */
export function markSmallestStable(values: Floats, at: number, len: number, k: number, mask: Uint8Array, maskAt: number, scratch: Floats): void {
  if (k <= 0) return;
  if (k >= len) {
    mask.fill(1, maskAt, maskAt + len);
    return;
  }
  for (let j = 0; j < len; j++) {
    const v = values[at + j];
    scratch[j] = v !== v ? Infinity : v;
  }
  const kth = kthSmallest(scratch.subarray(0, len), k - 1);
  let below = 0;
  for (let j = 0; j < len; j++) if (values[at + j] < kth) below++;
  let ties = k - below;
  for (let j = 0; j < len; j++) {
    const v = values[at + j];
    if (v < kth) mask[maskAt + j] = 1;
    else if (v === kth && ties > 0) {
      mask[maskAt + j] = 1;
      ties--;
    }
  }
  // NaN stood in as +Infinity for the selection but sorts after it: fill what is left in index order.
  if (kth === Infinity) {
    for (let j = 0; j < len && ties > 0; j++) {
      const v = values[at + j];
      if (v !== v) {
        mask[maskAt + j] = 1;
        ties--;
      }
    }
  }
}
