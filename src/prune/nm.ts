/**
 * N:M group selection shared by the methods. Groups are M consecutive input columns of one row,
 * starting at column 0 (the references loop `for i in range(cols): if i % M == 0`).
 *
 * Within a group the N lowest scores are pruned, as torch.topk(scores, N, largest=False). torch does
 * not specify which of equal scores topk returns; we take ties in index order (lowest column first),
 * the same rule as the stable sort Wanda uses for unstructured masks, and NaN as larger than anything.
 *
 * Tail rule, when cols is not a multiple of M: the last group is the t = cols mod M columns that
 * exist (the references slice `[:, i:i+M]`, which is shorter there). For t >= N the references
 * prune the N lowest of those t, and so do we; for t < N torch.topk raises, and we prune all t,
 * i.e. every group loses min(N, width) entries.
 */

type Floats = Float32Array | Float64Array;

/** a sorts before b: smaller first, NaN after every number (torch's order). */
function before(a: number, b: number): boolean {
  return a < b || (b !== b && a === a);
}

/**
 * Sets chosen[at + j] = 1 for the min(n, width) lowest of scores[at .. at+width), ties in index order.
 * Returns how many were chosen. `chosen` is not cleared first.
 */
export function markLowestInGroup(scores: Floats, at: number, width: number, n: number, chosen: Uint8Array): number {
  const k = Math.min(n, width);
  if (k === width) {
    chosen.fill(1, at, at + width);
    return k;
  }
  // Groups are small (M = 4, 8, 16 in practice): k passes of a minimum scan over unchosen entries.
  // `picked` is local so that pre-set entries of `chosen` do not count as taken.
  let picked = 0; // bit set over j; width <= 32 on this path
  if (width <= 32) {
    for (let t = 0; t < k; t++) {
      let best = -1;
      for (let j = 0; j < width; j++) {
        if (picked & (1 << j)) continue;
        if (best < 0 || before(scores[at + j], scores[at + best])) best = j;
      }
      picked |= 1 << best;
      chosen[at + best] = 1;
    }
    return k;
  }
  // Wide groups: a stable sort of the group's indices.
  const idx = Array.from({ length: width }, (_, j) => j);
  idx.sort((p, q) => (before(scores[at + p], scores[at + q]) ? -1 : before(scores[at + q], scores[at + p]) ? 1 : p - q));
  for (let t = 0; t < k; t++) chosen[at + idx[t]] = 1;
  return k;
}

/** The N:M mask of a row-major [rows, cols] score matrix: 1 = prune. */
export function nmMask(scores: Floats, rows: number, cols: number, n: number, m: number): Uint8Array {
  const mask = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let g = 0; g < cols; g += m) markLowestInGroup(scores, row + g, Math.min(m, cols - g), n, mask);
  }
  return mask;
}

/** How many entries an N:M pattern prunes in one row of `cols` columns (tail rule included). */
export function nmPrunedPerRow(cols: number, n: number, m: number): number {
  return Math.floor(cols / m) * n + Math.min(n, cols % m);
}
