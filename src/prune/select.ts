/**
 * Order statistics without a full sort: the references sort whole matrices (torch.sort) only to read
 * one element or the first k indices; a linear-time selection gives the same answer on large layers.
 */

type Floats = Float32Array | Float64Array;

/**
 * The value at index k of `a` sorted ascending (torch.sort(a)[0][k]). `a` is scratch: its contents
 * afterwards are unspecified. NaN must have been replaced by the caller (torch sorts NaN last: +Infinity
 * is the usual stand-in).
 *
 * Large arrays: the answer is bracketed by order statistics of a sample, one branch-free pass counts the
 * values below the bracket and those inside it (whether a value is below the k-th is a coin flip near
 * it: a branch on it mispredicts half the time), and only the bracket's values, moved to the front, are
 * selected from: 5 ms against 25 ms for quickselect over the whole array at 1.5 M values here (a
 * down_proj of the ~100M model). A bracket that misses (it spans five standard deviations of the
 * sampled rank each way) leaves `a` untouched and the whole array is selected from. Either way the
 * value is the same.
 */
export function kthSmallest(a: Floats, k: number): number {
  if (!(k >= 0 && k < a.length)) throw new RangeError(`index ${k} outside 0..${a.length - 1}`);
  const n = a.length;
  if (n < SAMPLED_FROM) return quickselect(a, k);
  const size = Math.min(SAMPLE, n >> 4);
  const sample = new Float64Array(size);
  let seed = 0x2545f491 ^ n;
  for (let i = 0; i < size; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) | 0;
    sample[i] = a[(seed >>> 1) % n];
  }
  sample.sort();
  // The k-th value's rank in the sample is ≈ k/n·size with standard deviation ≈ √(size·f(1 − f)); the
  // bracket spans five of those each way.
  const f = k / n;
  const margin = Math.ceil(5 * Math.sqrt(size * f * (1 - f))) + 4;
  const at = Math.floor(f * size);
  const lo = at - margin >= 0 ? sample[at - margin] : -Infinity;
  const hi = at + margin < size ? sample[at + margin] : Infinity;
  let below = 0, inside = 0;
  for (let i = 0; i < n; i++) {
    const v = a[i];
    below += +(v < lo);
    inside += +(v >= lo) & +(v <= hi);
  }
  if (!(below <= k && k < below + inside)) return quickselect(a, k);
  let w = 0;
  for (let i = 0; i < n; i++) {
    const v = a[i];
    a[w] = v;
    w += +(v >= lo) & +(v <= hi);
  }
  // A bracket that did not narrow much (many equal values) is finished by quickselect, whose three-way
  // partitioning is linear on them.
  const window = a.subarray(0, inside);
  return inside <= n >> 2 ? kthSmallest(window, k - below) : quickselect(window, k - below);
}

/** Arrays at least this long are bracketed from a sample first. */
const SAMPLED_FROM = 1 << 15;
/** Sample size (at most a sixteenth of the array). */
const SAMPLE = 4096;

/**
 * The value at index k of `a` sorted ascending, reordering `a` in place (quickselect). Three-way
 * partitioning keeps runs of equal values (zeros in already-sparse weights) linear.
 */
function quickselect(a: Floats, k: number): number {
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
