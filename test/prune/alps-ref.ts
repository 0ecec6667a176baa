/**
 * A plain float64 transcription of the reference ALPS_prune.ALPS_admm and cg_batch (mazumder-lab/ALPS,
 * alps.py), written for the tests only. It keeps the reference's layout (B is [cols, rows]: column r of B
 * is output row r), its eigen-free but exact (H + ρI)⁻¹ (Cholesky here, the same matrix as Q diag(1/(λ+ρ)) Qᵀ),
 * and its CG stopping rule on the full residual. Deliberately naive (small layers only).
 */
import { cholLower } from './sparsegpt-ref.js';

function spdInverse(a: Float64Array, n: number): Float64Array {
  const l = cholLower(a, n);
  if (!l) throw new Error('not positive definite');
  // A⁻¹ = L⁻ᵀ L⁻¹: solve L Y = I, then Lᵀ X = Y.
  const x = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    const yv = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = i === c ? 1 : 0;
      for (let k = 0; k < i; k++) s -= l[i * n + k] * yv[k];
      yv[i] = s / l[i * n + i];
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = yv[i];
      for (let k = i + 1; k < n; k++) s -= l[k * n + i] * x[k * n + c];
      x[i * n + c] = s / l[i * n + i];
    }
  }
  return x;
}

/** C [p, q] = A [p, k] · B [k, q]. */
function mul(a: Float64Array, b: Float64Array, p: number, k: number, q: number): Float64Array {
  const c = new Float64Array(p * q);
  for (let i = 0; i < p; i++) for (let t = 0; t < k; t++) {
    const av = a[i * k + t];
    if (av === 0) continue;
    for (let j = 0; j < q; j++) c[i * q + j] += av * b[t * q + j];
  }
  return c;
}

type Spec = { kind: 'unstructured'; sparsity: number } | { kind: 'nm'; n: number; m: number };

/** The projection on [cols, rows] B: topk(-B², count) zeroed, over the flattened matrix or per row group of M. */
function project(bm: Float64Array, cols: number, rows: number, spec: Spec, kSpar: number): Float64Array {
  const d = Float64Array.from(bm);
  if (spec.kind === 'unstructured') {
    const idx = Array.from(d.keys()).sort((p, q) => d[p] * d[p] - d[q] * d[q] || p - q);
    for (let t = 0; t < d.length - kSpar; t++) d[idx[t]] = 0;
  } else {
    // B.t().reshape(new_dim, M): groups of M consecutive input columns of one output row.
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < cols; g += spec.m) {
        const members = Array.from({ length: spec.m }, (_, j) => (g + j) * rows + r);
        members.sort((p, q) => d[p] * d[p] - d[q] * d[q] || p - q);
        for (let t = 0; t < spec.n; t++) d[members[t]] = 0;
      }
    }
  }
  return d;
}

/** Returns Ŵ [rows, cols] row-major. h: Σ XᵀX (any scale) [cols, cols]. */
export function refAlps(w: Float32Array, rows: number, cols: number, h: Float32Array, spec: Spec): Float64Array {
  let rho = 0.1;
  const maxIter = 300, updateIter = 3, switchIter = 30;
  const xtx = Float64Array.from(h);
  let mean = 0;
  for (let j = 0; j < cols; j++) mean += xtx[j * cols + j] / cols;
  for (let j = 0; j < cols; j++) xtx[j * cols + j] += 0.01 * mean;
  const xn = Array.from({ length: cols }, (_, j) => Math.sqrt(xtx[j * cols + j]) + 1e-8);
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) xtx[i * cols + j] /= xn[i] * xn[j];
  // B = (W * X_norm)ᵀ, [cols, rows]; YtXᵀ = XtX · B_orig.
  const bOrig = new Float64Array(cols * rows);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) bOrig[j * rows + r] = w[r * cols + j] * xn[j];
  const ytxT = mul(xtx, bOrig, cols, cols, rows);
  const inverse = (rh: number) => {
    const a = Float64Array.from(xtx);
    for (let j = 0; j < cols; j++) a[j * cols + j] += rh;
    return spdInverse(a, cols);
  };
  let inv = inverse(rho);
  const total = cols * rows;
  const kSpar = spec.kind === 'unstructured' ? Math.round((1 - spec.sparsity) * total) : (total * spec.n) / spec.m;
  let b: Float64Array = Float64Array.from(bOrig);
  let v: Float64Array = new Float64Array(total);
  let d: Float64Array = project(bOrig, cols, rows, spec, spec.kind === 'unstructured' ? kSpar : 0);
  const dInit = Float64Array.from(d);
  const supp = (x: Float64Array) => Array.from(x, (t) => (t === 0 ? 1 : 0));
  let suppPrev = supp(d);
  let initRho = false;
  const proj = (x: Float64Array) => project(x, cols, rows, spec, spec.kind === 'unstructured' ? kSpar : 0);
  for (let i = 0; i < maxIter; i++) {
    const rhs = new Float64Array(total);
    for (let k = 0; k < total; k++) rhs[k] = ytxT[k] - v[k] + rho * d[k];
    b = mul(inv, rhs, cols, cols, rows);
    const z = new Float64Array(total);
    for (let k = 0; k < total; k++) z[k] = (v[k] + rho * b[k]) / rho;
    d = proj(z);
    for (let k = 0; k < total; k++) v[k] += rho * (b[k] - d[k]);
    if ((i + 1) % updateIter === 0) {
      const s = supp(d);
      let change = 0;
      for (let k = 0; k < total; k++) change += (s[k] - suppPrev[k]) ** 2;
      if (change / kSpar > 0.1) {
        initRho = true;
        rho *= 1.3;
      } else if (change / kSpar > 0.005) {
        initRho = true;
        rho *= 1.2;
      } else if (change > 0.5) {
        if (initRho) rho *= 1.1;
        else {
          rho /= 5;
          b = Float64Array.from(bOrig);
          d = Float64Array.from(dInit);
          v = new Float64Array(total);
        }
      } else if (initRho) break;
      else rho /= 5;
      suppPrev = s;
      if (rho > 1e6) rho = 1e6;
      inv = inverse(rho);
      if (i >= switchIter && change / kSpar < 0.0003) break;
    }
  }
  b = proj(b);
  // cg_batch(A = XtX, B = YtXᵀ, A_supp = (B != 0), X0 = B, rtol 1e-4, maxiter 10), identity preconditioner.
  const keep = Array.from(b, (t) => (t !== 0 ? 1 : 0));
  let x = Float64Array.from(b);
  const ax = mul(xtx, x, cols, cols, rows);
  let res = new Float64Array(total);
  for (let k = 0; k < total; k++) res[k] = (ytxT[k] - ax[k]) * keep[k];
  let p = new Float64Array(total);
  let resPrev = res;
  const colDot = (a: Float64Array, c: Float64Array) => {
    const out = new Float64Array(rows);
    for (let k = 0; k < total; k++) out[k % rows] += a[k] * c[k];
    return out;
  };
  const bNorm = new Float64Array(cols);
  for (let j = 0; j < cols; j++) for (let r = 0; r < rows; r++) bNorm[j] += ytxT[j * rows + r] ** 2;
  for (let it = 1; it <= 10; it++) {
    if (it === 1) p = Float64Array.from(res);
    else {
      const den = colDot(resPrev, resPrev).map((t) => (t === 0 ? 1e-8 : t));
      const num = colDot(res, res);
      const np = new Float64Array(total);
      for (let k = 0; k < total; k++) np[k] = res[k] + (num[k % rows] / den[k % rows]) * p[k];
      p = np;
    }
    const ap = mul(xtx, p, cols, cols, rows);
    const den = colDot(p, ap).map((t) => (t === 0 ? 1e-8 : t));
    const alpha = colDot(res, res).map((t, r) => t / den[r]);
    const nx = new Float64Array(total);
    const nr = new Float64Array(total);
    for (let k = 0; k < total; k++) {
      nx[k] = x[k] + alpha[k % rows] * p[k];
      nr[k] = (res[k] - alpha[k % rows] * ap[k]) * keep[k];
    }
    resPrev = res;
    x = nx;
    res = nr;
    // Stop when every input column's full residual is within rtol of YtXᵀ's (never, off the mask, in practice).
    const full = mul(xtx, x, cols, cols, rows);
    let done = true;
    for (let j = 0; j < cols && done; j++) {
      let s = 0;
      for (let r = 0; r < rows; r++) s += (full[j * rows + r] - ytxT[j * rows + r]) ** 2;
      if (s > 1e-8 * bNorm[j]) done = false;
    }
    if (done) break;
  }
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) out[r * cols + j] = x[j * rows + r] / xn[j];
  return out;
}
