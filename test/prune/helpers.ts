/** Test data: a tiny seeded generator independent of src/prune/random.ts, and reference helpers. */

export function lcg(seed: number): () => number {
  // 32-bit LCG (Numerical Recipes constants) followed by a xorshift: plenty for test matrices.
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    let z = s ^ (s >>> 13);
    z = Math.imul(z, 0x5bd1e995) >>> 0;
    return ((z ^ (z >>> 15)) >>> 0) / 4294967296;
  };
}

export function gaussian(rand: () => number): () => number {
  return () => {
    const u = 1 - rand();
    const v = rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
}

export function randomMatrix(rows: number, cols: number, seed: number, scale = 1): Float32Array {
  const g = gaussian(lcg(seed));
  const a = new Float32Array(rows * cols);
  for (let i = 0; i < a.length; i++) a[i] = g() * scale;
  return a;
}

/** Values drawn from a handful of levels (signs included), so that ties are everywhere. */
export function tiedMatrix(rows: number, cols: number, seed: number, levels = 4): Float32Array {
  const r = lcg(seed);
  const a = new Float32Array(rows * cols);
  for (let i = 0; i < a.length; i++) {
    const v = Math.floor(r() * levels) * 0.25;
    a[i] = r() < 0.5 ? -v : v;
  }
  return a;
}

/** Indices 0..n-1 ordered by key ascending, ties by index (a stable sort). NaN last. */
export function stableOrder(key: (i: number) => number, n: number): number[] {
  const rank = (v: number) => (v !== v ? 1 : 0);
  return Array.from({ length: n }, (_, i) => i).sort((a, b) => {
    const ka = key(a), kb = key(b);
    if (rank(ka) !== rank(kb)) return rank(ka) - rank(kb);
    if (ka < kb) return -1;
    if (ka > kb) return 1;
    return a - b;
  });
}

export function zeros(a: ArrayLike<number>): number {
  let z = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === 0) z++;
  return z;
}
