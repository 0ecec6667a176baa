/**
 * A plain float64 transcription of the reference SparseGPT.fasterprune (IST-DASLab/sparsegpt),
 * written for the tests only: row-major W [rows, cols], whole-matrix loops, no engine, no blocking
 * tricks beyond the reference's own. Deliberately naive so that it is easy to check by eye.
 */

/** Lower Cholesky factor of a symmetric positive-definite [n, n] matrix; null when not PD. */
export function cholLower(a: Float64Array, n: number): Float64Array | null {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      if (i === j) {
        if (!(s > 0)) return null;
        l[i * n + i] = Math.sqrt(s);
      } else {
        l[i * n + j] = s / l[j * n + j];
      }
    }
  }
  return l;
}

/** Inverse of a lower-triangular matrix. */
function invLower(l: Float64Array, n: number): Float64Array {
  const x = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    for (let i = c; i < n; i++) {
      let s = i === c ? 1 : 0;
      for (let k = c; k < i; k++) s -= l[i * n + k] * x[k * n + c];
      x[i * n + c] = s / l[i * n + i];
    }
  }
  return x;
}

/** torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True), or null. */
export function refInverseUpper(h: Float64Array, n: number): Float64Array | null {
  const l = cholLower(h, n);
  if (!l) return null;
  const li = invLower(l, n);
  // H⁻¹ = L⁻ᵀ L⁻¹
  const hinv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += li[k * n + i] * li[k * n + j];
      hinv[i * n + j] = s;
    }
  }
  const l2 = cholLower(hinv, n);
  if (!l2) return null;
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) u[i * n + j] = l2[j * n + i];
  return u;
}

export type RefSpec = { kind: 'unstructured'; sparsity: number } | { kind: 'nm'; n: number; m: number };

/** Returns the pruned W (float64, row-major), the mask and the reported error. */
export function refSparseGPT(w0: Float32Array, rows: number, cols: number, h0: ArrayLike<number>, spec: RefSpec, blocksize: number, percdamp: number, wbits?: number) {
  const W = Float64Array.from(w0);
  // quant.py's Quantizer.find_params(W, weight=True) on the weights as given (before dead columns are zeroed).
  const quant = wbits === undefined ? undefined : refRowQuantizers(W, rows, cols, wbits);
  const H = Float64Array.from(h0);
  const n = cols;
  for (let j = 0; j < n; j++) {
    if (H[j * n + j] === 0) {
      H[j * n + j] = 1;
      for (let r = 0; r < rows; r++) W[r * n + j] = 0;
    }
  }
  let meanDiag = 0;
  for (let j = 0; j < n; j++) meanDiag += H[j * n + j] / n;
  const damp = percdamp * meanDiag;
  for (let j = 0; j < n; j++) H[j * n + j] += damp;
  const Hinv = refInverseUpper(H, n);
  if (!Hinv) throw new Error('reference: not positive definite');

  const mask = new Uint8Array(rows * n);
  let losses = 0;
  for (let i1 = 0; i1 < n; i1 += blocksize) {
    const i2 = Math.min(i1 + blocksize, n);
    const count = i2 - i1;
    const W1 = (r: number, i: number) => W[r * n + i1 + i];
    const d = (i: number) => Hinv[(i1 + i) * n + i1 + i];
    // W1, Q1, Err1 as [rows][count] copies.
    const w1 = Array.from({ length: rows }, (_, r) => Array.from({ length: count }, (_, i) => W1(r, i)));
    const q1 = Array.from({ length: rows }, () => new Array<number>(count).fill(0));
    const err1 = Array.from({ length: rows }, () => new Array<number>(count).fill(0));
    const mask1 = Array.from({ length: rows }, () => new Array<boolean>(count).fill(false));
    if (spec.kind === 'unstructured') {
      const tmp: number[] = [];
      for (let r = 0; r < rows; r++) for (let i = 0; i < count; i++) tmp.push(w1[r][i] ** 2 / d(i) ** 2);
      const sorted = [...tmp].sort((a, b) => a - b);
      const thresh = sorted[Math.floor(tmp.length * spec.sparsity)];
      for (let r = 0; r < rows; r++) for (let i = 0; i < count; i++) mask1[r][i] = w1[r][i] ** 2 / d(i) ** 2 <= thresh;
    }
    for (let i = 0; i < count; i++) {
      if (spec.kind === 'nm' && i % spec.m === 0) {
        for (let r = 0; r < rows; r++) {
          const width = Math.min(spec.m, count - i);
          const idx = Array.from({ length: width }, (_, j) => j);
          const sc = idx.map((j) => w1[r][i + j] ** 2 / d(i + j) ** 2);
          idx.sort((a, b) => sc[a] - sc[b] || a - b);
          for (const j of idx.slice(0, Math.min(spec.n, width))) mask1[r][i + j] = true;
        }
      }
      for (let r = 0; r < rows; r++) {
        const wv = w1[r][i];
        const q = mask1[r][i] ? 0 : quant ? quant[r](wv) : wv;
        q1[r][i] = q;
        losses += (wv - q) ** 2 / d(i) ** 2 / 2;
        const e = (wv - q) / d(i);
        for (let j = i; j < count; j++) w1[r][j] -= e * Hinv[(i1 + i) * n + i1 + j];
        err1[r][i] = e;
      }
    }
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < count; i++) {
        W[r * n + i1 + i] = q1[r][i];
        mask[r * n + i1 + i] = mask1[r][i] ? 1 : 0;
      }
      for (let c = i2; c < n; c++) {
        let s = 0;
        for (let i = 0; i < count; i++) s += err1[r][i] * Hinv[(i1 + i) * n + c];
        W[r * n + c] -= s;
      }
    }
  }
  return { w: W, mask, loss: losses };
}


/** Per-row asymmetric min-max quantizers (range includes 0; all-zero rows use [-1, 1]); torch.round is half-to-even. */
function refRowQuantizers(W: Float64Array, rows: number, cols: number, bits: number): ((x: number) => number)[] {
  const maxq = 2 ** bits - 1;
  const roundEven = (x: number) => {
    const f = Math.floor(x);
    return x - f < 0.5 ? f : x - f > 0.5 ? f + 1 : f % 2 === 0 ? f : f + 1;
  };
  return Array.from({ length: rows }, (_, r) => {
    let xmin = 0;
    let xmax = 0;
    for (let c = 0; c < cols; c++) {
      xmin = Math.min(xmin, W[r * cols + c]);
      xmax = Math.max(xmax, W[r * cols + c]);
    }
    if (xmin === 0 && xmax === 0) [xmin, xmax] = [-1, 1];
    const scale = (xmax - xmin) / maxq;
    const zero = roundEven(-xmin / scale);
    return (x: number) => scale * (Math.min(maxq, Math.max(0, roundEven(x / scale) + zero)) - zero);
  });
}
