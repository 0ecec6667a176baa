/**
 * Row-major general matrix products on onnxruntime (MLAS): y = alpha·op(A)·op(B) + beta·C, in float32 or
 * float64, written into caller-owned arrays. This is the one place that talks to ORT for linear algebra;
 * linalg.ts (float32 API) and cholesky.ts (float64 factorisations) build on it.
 *
 * Outputs are produced in row chunks of at most OUT_CHUNK_BYTES. onnxruntime-node 1.30 copies every output,
 * pre-allocated or not, into a new ArrayBuffer after the run (the returned tensor never aliases the buffer we
 * passed, although ORT did write into ours). Above glibc's 32 MiB mmap threshold that ArrayBuffer is fresh
 * pages every time, and first touch costs ~2.6 ms/MiB on this machine: a 2048² float64 product spent ~100 ms
 * in that copy against ~100 ms of arithmetic. Chunks of a few MiB are recycled by malloc and cost ~0.2 ms/MiB.
 */
import type ort from 'onnxruntime-node';
import { GraphBuilder } from './graph.js';
import { scratch32, scratch64 } from './scratch.js';
import { run, session, tensor } from './session.js';

export type FloatArray = Float32Array | Float64Array;
export type Shape2 = readonly [number, number];

/** Largest output written by one ORT run (see the file comment). */
export const OUT_CHUNK_BYTES = 4 << 20;

export interface GemmSpec {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  /** Only used with `c`. */
  beta?: number;
  /** The addend; may be the output array itself (ORT accepts an output buffer that is also an input: tested). */
  c?: FloatArray;
}

function dtypeOf(x: FloatArray): 'float32' | 'float64' {
  return x instanceof Float32Array ? 'float32' : 'float64';
}

/**
 * One session per (dtype, transposes, C present, alpha, beta): alpha and beta are Gemm attributes, so every
 * distinct value compiles a graph (a few ms). Callers use a handful of values (±1, 0, 1).
 */
function gemmSession(dtype: 'float32' | 'float64', transA: boolean, transB: boolean, withC: boolean, alpha: number, beta: number): Promise<ort.InferenceSession> {
  const key = `linalg.gemm:${dtype}:${+transA}${+transB}${+withC}:${alpha}:${beta}`;
  return session(key, () => {
    const g = new GraphBuilder('gemm');
    const inputs = [g.input('a', dtype, ['a0', 'a1']), g.input('b', dtype, ['b0', 'b1'])];
    if (withC) inputs.push(g.input('c', dtype, ['m', 'n']));
    const attrs = { transA: +transA, transB: +transB, alpha: { float: alpha }, beta: { float: beta } };
    g.output(g.op('Gemm', inputs, attrs, 'y'), dtype, ['m', 'n']);
    return g.toBytes();
  });
}

function overlaps(x: FloatArray, y: FloatArray): boolean {
  if (x.buffer !== y.buffer) return false;
  return x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength;
}

/**
 * y[M×N] = alpha·op(A)·op(B) + beta·c. `aShape`/`bShape` are the shapes of the arrays as stored
 * (op(A) = Aᵀ when transA, so aShape = [K, M] then). All arrays share one dtype; y must not overlap a or b
 * (chunks would read rows already overwritten), but may be c itself. With transA and more than one chunk,
 * each chunk's rows of op(A) (columns of A) are gathered into arena scratch of K × rows-per-chunk elements.
 * Call under `serial`.
 */
export async function gemmInto(
  y: FloatArray,
  a: FloatArray,
  aShape: Shape2,
  b: FloatArray,
  bShape: Shape2,
  spec: GemmSpec = {},
): Promise<void> {
  const transA = spec.transA ?? false;
  const transB = spec.transB ?? false;
  const alpha = spec.alpha ?? 1;
  const c = spec.c;
  const beta = c ? (spec.beta ?? 1) : 0;
  const [M, K] = transA ? [aShape[1], aShape[0]] : aShape;
  const [K2, N] = transB ? [bShape[1], bShape[0]] : bShape;
  const dtype = dtypeOf(y);
  if (K !== K2) throw new RangeError(`gemm: inner dimensions differ: op(A) is ${M}×${K}, op(B) is ${K2}×${N}`);
  if (a.length !== aShape[0] * aShape[1]) throw new RangeError(`gemm: A has ${a.length} elements, shape [${aShape}]`);
  if (b.length !== bShape[0] * bShape[1]) throw new RangeError(`gemm: B has ${b.length} elements, shape [${bShape}]`);
  if (y.length !== M * N) throw new RangeError(`gemm: output has ${y.length} elements, expected ${M}×${N}`);
  if (c && c.length !== M * N) throw new RangeError(`gemm: C has ${c.length} elements, expected ${M}×${N}`);
  for (const x of c ? [a, b, c] : [a, b]) {
    if (dtypeOf(x) !== dtype) throw new TypeError('gemm: all operands must share one dtype');
  }
  if (overlaps(y, a) || overlaps(y, b)) throw new RangeError('gemm: output overlaps an input factor');
  if (c && overlaps(c, y) && (c.byteOffset !== y.byteOffset || c.length !== y.length)) {
    throw new RangeError('gemm: C overlaps the output without being the same array');
  }
  if (M === 0 || N === 0) return;
  if (K === 0) {
    // ORT's behaviour on empty inner dimensions is not worth depending on: the product is zero.
    if (!c || beta === 0) y.fill(0);
    else for (let i = 0; i < y.length; i++) y[i] = beta * c[i];
    return;
  }

  const s = await gemmSession(dtype, transA, transB, !!c, alpha, beta);
  const bT = floatTensor(b, bShape);
  const rowsMax = Math.max(1, Math.floor(OUT_CHUNK_BYTES / (N * y.BYTES_PER_ELEMENT)));
  const chunks = Math.ceil(M / rowsMax);
  const rows = Math.ceil(M / chunks);
  const arena = dtype === 'float32' ? scratch32 : scratch64;
  const mark = arena.mark();
  try {
    const slab = transA && chunks > 1 ? arena.alloc(K * rows) : undefined;
    for (let r0 = 0; r0 < M; r0 += rows) {
      const r = Math.min(rows, M - r0);
      let aT: ort.Tensor;
      if (!transA) {
        aT = floatTensor(a.subarray(r0 * K, (r0 + r) * K), [r, K]);
      } else if (!slab) {
        aT = floatTensor(a, aShape);
      } else {
        // op(A) rows r0..r0+r are columns of A [K, M]: gather them as a [K, r] block.
        const sl = slab.subarray(0, K * r);
        for (let k = 0; k < K; k++) sl.set(a.subarray(k * M + r0, k * M + r0 + r), k * r);
        aT = floatTensor(sl, [K, r]);
      }
      const yT = floatTensor(y.subarray(r0 * N, (r0 + r) * N), [r, N]);
      const feeds: Record<string, ort.Tensor> = { a: aT, b: bT };
      if (c) feeds.c = c === y ? yT : floatTensor(c.subarray(r0 * N, (r0 + r) * N), [r, N]);
      await run(s, feeds, { y: yT });
    }
  } finally {
    arena.release(mark);
  }
}

function floatTensor(x: FloatArray, dims: readonly number[]): ort.Tensor {
  return x instanceof Float32Array ? tensor(x, dims) : tensor(x, dims);
}

let tail: Promise<unknown> = Promise.resolve();

/**
 * Runs `fn` after every earlier call has settled. The module-level scratch buffers are shared, and with
 * two cores nothing is gained by overlapping ORT runs anyway.
 */
export function serial<T>(fn: () => Promise<T>): Promise<T> {
  const p = tail.then(fn);
  tail = p.catch(() => undefined);
  return p;
}
