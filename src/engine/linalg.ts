/**
 * Linear-algebra primitives of the execution engine. Matrices are dense, row-major typed arrays with
 * their shape passed alongside; every O(n³) operation runs as an onnxruntime (MLAS) product, JS loops only do
 * O(n²) work (a plain JS triple loop reaches 1–9 GFLOP/s, MLAS 150–340 on the same two cores).
 *
 * Products here are float32 in, float32 out (MLAS accumulates in float32 with FMA). The Cholesky family
 * (cholesky.ts) works in float64; see the precision note there.
 */
import { OUT_CHUNK_BYTES, gemmInto, serial, type Shape2 } from './gemm.js';
import { GraphBuilder } from './graph.js';
import { accumulatePacked, addUnfolded, gramChunks, packedLength } from './gram.js';
import { scratch32 } from './scratch.js';
import { run, session, tensor } from './session.js';

export { NotPositiveDefiniteError, cholesky, choleskyInverseUpper, invertSpd, type FactorOptions } from './cholesky.js';
export { releaseScratch } from './scratch.js';
export type { Shape2 } from './gemm.js';

export interface ProductOptions {
  /** Multiply by Aᵀ: `a` is stored as [K, M]. */
  transA?: boolean;
  /** Multiply by Bᵀ: `b` is stored as [N, K]. */
  transB?: boolean;
}

function productShape(aShape: Shape2, bShape: Shape2, opts: ProductOptions): [number, number] {
  const [m, k] = opts.transA ? [aShape[1], aShape[0]] : aShape;
  const [k2, n] = opts.transB ? [bShape[1], bShape[0]] : bShape;
  if (k !== k2) {
    throw new RangeError(`matmul: op(A) is ${m}×${k} but op(B) is ${k2}×${n} (shapes [${aShape}], [${bShape}], transA=${!!opts.transA}, transB=${!!opts.transB})`);
  }
  return [m, n];
}

/**
 * C = op(A)·op(B) in float32. The result goes into `out` when given (it must have M·N elements; reuse it
 * across calls: fresh memory costs ~2.6 ms/MiB of page faults here), else into a new array.
 */
export function matmul(
  a: Float32Array,
  aShape: Shape2,
  b: Float32Array,
  bShape: Shape2,
  opts: ProductOptions & { out?: Float32Array } = {},
): Promise<Float32Array> {
  const [m, n] = productShape(aShape, bShape, opts);
  if (opts.out && opts.out.length !== m * n) throw new RangeError(`matmul: out has ${opts.out.length} elements, expected ${m}×${n}`);
  const out = opts.out ?? new Float32Array(m * n);
  return serial(async () => {
    await gemmInto(out, a, aShape, b, bShape, opts);
    return out;
  });
}

/**
 * c = alpha·op(A)·op(B) + beta·c in place, float32 (alpha = 1, beta = 1 by default). With beta = 0 the old
 * contents of c are ignored (not multiplied, so NaNs there do not survive).
 * Example: SparseGPT's lazy batch update W[:, i2:] −= Err·Hinv[i1:i2, i2:] is alpha = −1, beta = 1.
 * alpha and beta are compiled into a cached ORT graph: use a few distinct values, not one per call.
 */
export function gemmAccumulate(
  c: Float32Array,
  cShape: Shape2,
  a: Float32Array,
  aShape: Shape2,
  b: Float32Array,
  bShape: Shape2,
  opts: ProductOptions & { alpha?: number; beta?: number } = {},
): Promise<void> {
  const [m, n] = productShape(aShape, bShape, opts);
  if (cShape[0] !== m || cShape[1] !== n) throw new RangeError(`gemmAccumulate: C is [${cShape}] but op(A)·op(B) is ${m}×${n}`);
  if (c.length !== m * n) throw new RangeError(`gemmAccumulate: C has ${c.length} elements, shape [${cShape}]`);
  const beta = opts.beta ?? 1;
  const spec = { transA: opts.transA, transB: opts.transB, alpha: opts.alpha ?? 1, beta, c: beta === 0 ? undefined : c };
  return serial(() => gemmInto(c, a, aShape, b, bShape, spec));
}

/**
 * h[n×n] += xᵀ·x for x [rows, n], in place and in float32. When h fits one ORT output (n ≤ 1024) this is one
 * Gemm (transA = 1, beta = 1) whose output buffer is also its C input: onnxruntime accepts that aliasing
 * (the tests check the sums). Larger h would have to be produced in row chunks anyway (gemm.ts), and then
 * the symmetry pays: only the lower triangle's chunks are multiplied (gram.ts), then added and mirrored.
 */
export function accumulateGram(h: Float32Array, n: number, x: Float32Array, rows: number): Promise<void> {
  if (h.length !== n * n) throw new RangeError(`accumulateGram: h has ${h.length} elements, expected ${n}×${n}`);
  if (x.length !== rows * n) throw new RangeError(`accumulateGram: x has ${x.length} elements, expected ${rows}×${n}`);
  if (rows === 0) return Promise.resolve();
  const shape: Shape2 = [rows, n];
  if (n * n <= GRAM_CHUNK_ELEMS || rows < SYMMETRIC_MIN_ROWS) {
    return serial(() => gemmInto(h, x, shape, x, shape, { transA: true, c: h, beta: 1 }));
  }
  return serial(() => gramBySymmetry(h, n, x, rows));
}

const GRAM_CHUNK_ELEMS = OUT_CHUNK_BYTES / 4;

/**
 * Below this many rows the O(n²) JS mirroring costs more than the halved product saves (break-even was
 * ~256 rows at n = 4096 here; at 512 rows the symmetric path took 270 ms against 480 ms).
 */
const SYMMETRIC_MIN_ROWS = 512;

/** h += xᵀx through the packed lower triangle (gram.ts) in scratch, added into h and mirrored. */
async function gramBySymmetry(h: Float32Array, n: number, x: Float32Array, rows: number): Promise<void> {
  const chunks = gramChunks(n);
  const mark = scratch32.mark();
  try {
    const packed = scratch32.alloc(packedLength(chunks)).fill(0);
    await accumulatePacked(packed, n, chunks, x, rows);
    addUnfolded(h, n, packed, chunks);
  } finally {
    scratch32.release(mark);
  }
}

/**
 * sums[j] += Σ_t x[t, j]² for x [rows, n]: one onnxruntime ReduceSumSquare over the rows (float32 sums of
 * the float32 squares, as torch computes Wanda's ‖X_j‖²), each run's [n] result added into the float64
 * `sums`. Wanda's statistic without a JS loop over tokens × features.
 */
export function addColumnSquares(sums: Float64Array, x: Float32Array, rows: number): Promise<void> {
  const n = sums.length;
  if (x.length !== rows * n) throw new RangeError(`addColumnSquares: x has ${x.length} elements, expected ${rows}×${n}`);
  if (rows === 0) return Promise.resolve();
  return serial(async () => {
    const s = await session('linalg.column-squares', () => {
      const g = new GraphBuilder('column_squares');
      g.output(g.op('ReduceSumSquare', [g.input('x', 'float32', ['rows', 'n'])], { axes: [0], keepdims: 0 }, 'y'), 'float32', ['n']);
      return g.toBytes();
    });
    const y = new Float32Array(n);
    await run(s, { x: tensor(x, [rows, n]) }, { y: tensor(y, [n]) });
    for (let j = 0; j < n; j++) sums[j] += y[j];
  });
}
