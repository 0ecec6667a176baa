/**
 * Benchmark of the engine's linear-algebra primitives against plain JavaScript in the same process.
 *
 *   npx tsx scripts/bench-engine.ts [--quick] [--full] [--json out.json]
 *
 * For each primitive: time (best of a few steady-state runs), GFLOP/s, the same computation as a
 * straightforward JS loop, and the error against a float64 reference. JS baselines at large sizes are
 * time-boxed: timed at a smaller size and extrapolated by the operation count (marked "extrapolated");
 * --full runs them for real (minutes). --quick skips the largest sizes. All figures go to a JSON file
 * (default out/bench-engine.json).
 *
 * Errors: products are checked on 2000 sampled entries against float64 dot products of the same float32
 * inputs; choleskyInverseUpper against an unblocked float64 JS factorisation where that runs, and otherwise
 * (sizes whose JS baseline is extrapolated) by the residual max |U·H·Uᵀ − I| on 64 sampled columns.
 * Relative error = max |x − ref| / max |ref|.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { gemmInto, serial } from '../src/engine/gemm.js';
import { rng } from './bench-common.js';
import { accumulateGram, choleskyInverseUpper, matmul } from '../src/engine/linalg.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const full = args.includes('--full');
const jsonAt = args.indexOf('--json');
const jsonPath = jsonAt >= 0 ? args[jsonAt + 1] : 'out/bench-engine.json';
if (jsonAt >= 0 && !jsonPath) throw new Error('--json needs a path');


function randomF32(len: number, seed: number): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(len);
  for (let i = 0; i < len; i++) a[i] = r();
  return a;
}

/**
 * Best wall time of `reps` runs, in ms. The process CPU time (all threads) of that run is kept in
 * `lastCpuMs`: on a shared machine, wall time ≫ CPU time / threads flags a run that waited for cores.
 */
let lastCpuMs = 0;
async function bestOf(reps: number, fn: () => Promise<unknown> | unknown): Promise<number> {
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    const t = performance.now() - t0;
    if (t < best) {
      best = t;
      const c = process.cpuUsage(c0);
      lastCpuMs = (c.user + c.system) / 1000;
    }
  }
  return best;
}

const gflops = (flops: number, ms: number) => flops / ms / 1e6;
const fmt = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : '–');
const sci = (x: number) => (Number.isFinite(x) ? x.toExponential(1) : '–');

interface JsBaseline {
  ms: number;
  gflops: number;
  /** Size the JS loop actually ran at; the time is scaled by the operation count when it differs. */
  measuredAt: string;
  extrapolated: boolean;
}

// ---------------------------------------------------------------------------------------------- matmul

/** The straightforward JS product (i-k-j order, so the inner loop walks rows). */
function jsMatmul(a: Float32Array, b: Float32Array, c: Float32Array, n: number): void {
  c.fill(0);
  for (let i = 0; i < n; i++) {
    const ci = i * n;
    for (let k = 0; k < n; k++) {
      const aik = a[ci + k];
      const bk = k * n;
      for (let j = 0; j < n; j++) c[ci + j] += aik * b[bk + j];
    }
  }
}

/** max |C − ref| / max |ref| over sampled entries of C = op(A)·B, with ref(i, j) a float64 dot product. */
function sampledError(c: ArrayLike<number>, n: number, ref: (i: number, j: number) => number, m = n): number {
  const r = rng(99);
  let err = 0;
  let mag = 0;
  for (let s = 0; s < 2000; s++) {
    const i = Math.floor((r() + 0.5) * m);
    const j = Math.floor((r() + 0.5) * n);
    const want = ref(i, j);
    err = Math.max(err, Math.abs(c[i * n + j] - want));
    mag = Math.max(mag, Math.abs(want));
  }
  return err / mag;
}

async function benchMatmul(n: number, jsPerFlopMs: { v?: number; at?: number }) {
  const a = randomF32(n * n, n);
  const b = randomF32(n * n, n + 1);
  const out = new Float32Array(n * n);
  const flops = 2 * n ** 3;
  await matmul(a, [n, n], b, [n, n], { out });
  const ms = await bestOf(n >= 4096 ? 2 : 5, () => matmul(a, [n, n], b, [n, n], { out }));
  const cpuMs = lastCpuMs;
  const relErr = sampledError(out, n, (i, j) => {
    let s = 0;
    for (let k = 0; k < n; k++) s += a[i * n + k] * b[k * n + j];
    return s;
  });
  let js: JsBaseline;
  if (n <= 512 || full) {
    const c = new Float32Array(n * n);
    const t = await bestOf(n <= 512 ? 2 : 1, () => jsMatmul(a, b, c, n));
    if (!jsPerFlopMs.v) {
      jsPerFlopMs.v = t / flops;
      jsPerFlopMs.at = n;
    }
    js = { ms: t, gflops: gflops(flops, t), measuredAt: `${n}³`, extrapolated: false };
  } else {
    const t = jsPerFlopMs.v! * flops;
    js = { ms: t, gflops: gflops(flops, t), measuredAt: `${jsPerFlopMs.at}³`, extrapolated: true };
  }
  return { n, ms, cpuMs, gflops: gflops(flops, ms), relErr, js };
}

/** float64 GEMM through the same runner, for the precision trade-off (cholesky.ts uses float64 products). */
async function benchMatmul64(n: number) {
  const a = Float64Array.from(randomF32(n * n, 5));
  const b = Float64Array.from(randomF32(n * n, 6));
  const out = new Float64Array(n * n);
  const go = () => serial(() => gemmInto(out, a, [n, n], b, [n, n]));
  await go();
  const ms = await bestOf(3, go);
  return { n, ms, cpuMs: lastCpuMs, gflops: gflops(2 * n ** 3, ms) };
}

// ----------------------------------------------------------------------------------------- accumulateGram

function jsGram(h: Float32Array, n: number, x: Float32Array, rows: number): void {
  for (let r = 0; r < rows; r++) {
    const xr = r * n;
    for (let i = 0; i < n; i++) {
      const xi = x[xr + i];
      const hi = i * n;
      for (let j = 0; j < n; j++) h[hi + j] += xi * x[xr + j];
    }
  }
}

async function benchGram(rows: number, n: number) {
  const x = randomF32(rows * n, rows + n);
  const h = new Float32Array(n * n);
  const flops = 2 * rows * n * n;
  await accumulateGram(h, n, x, rows);
  const ms = await bestOf(n >= 4096 ? 2 : 4, async () => {
    h.fill(0);
    await accumulateGram(h, n, x, rows);
  });
  const cpuMs = lastCpuMs;
  const relErr = sampledError(h, n, (i, j) => {
    let s = 0;
    for (let r = 0; r < rows; r++) s += x[r * n + i] * x[r * n + j];
    return s;
  });
  // JS: all rows with --full, else enough rows for ~0.2 GFLOP and scale linearly in rows.
  const jsRows = full ? rows : Math.max(1, Math.min(rows, Math.round(1e8 / (n * n))));
  const hj = new Float32Array(n * n);
  const t = await bestOf(1, () => jsGram(hj, n, x, jsRows));
  const jsMs = (t * rows) / jsRows;
  const js: JsBaseline = { ms: jsMs, gflops: gflops(flops, jsMs), measuredAt: `${jsRows} of ${rows} rows`, extrapolated: jsRows < rows };
  return { rows, n, ms, cpuMs, gflops: gflops(flops, ms), relErr, js };
}

// ----------------------------------------------------------------------------------- choleskyInverseUpper

/** The same mathematics unblocked in JS float64: flip, row-oriented Cholesky, triangular inverse, flip. */
function jsCholeskyInverseUpper(h: Float32Array, n: number): Float64Array {
  const w = Float64Array.from(h).reverse();
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      let s = w[ri + j];
      for (let k = 0; k < j; k++) s -= w[ri + k] * w[rj + k];
      if (j < i) w[ri + j] = s / w[rj + j];
      else if (s > 0) w[ri + i] = Math.sqrt(s);
      else throw new Error(`JS baseline: not positive definite at ${i}`);
    }
  }
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let k = 0; k < i; k++) {
      const lik = w[ri + k];
      const rk = k * n;
      for (let j = 0; j <= k; j++) m[ri + j] += lik * m[rk + j];
    }
    const inv = 1 / w[ri + i];
    for (let j = 0; j < i; j++) m[ri + j] *= -inv;
    m[ri + i] = inv;
  }
  return m.reverse();
}

/** SparseGPT-like Hessian: 2/N·XᵀX + damp·mean(diag)·I, X = low-rank (n/8) mixing + noise, outlier channels. */
async function hessian(n: number, damp = 0.01): Promise<Float32Array> {
  const samples = n;
  const rank = Math.max(1, n >> 3);
  const z = randomF32(samples * rank, 1);
  const mix = randomF32(rank * n, 2);
  const x = await matmul(z, [samples, rank], mix, [rank, n]);
  const r = rng(3);
  const scale = Float32Array.from({ length: n }, () => Math.exp(4 * r()));
  for (let s = 0; s < samples; s++) for (let j = 0; j < n; j++) x[s * n + j] = (x[s * n + j] + 0.05 * r()) * scale[j];
  const h = new Float32Array(n * n);
  await accumulateGram(h, n, x, samples);
  let mean = 0;
  for (let i = 0; i < n * n; i++) h[i] *= 2 / samples;
  for (let i = 0; i < n; i++) mean += h[i * n + i] / n;
  for (let i = 0; i < n; i++) h[i * n + i] += damp * mean;
  return h;
}

/** cond(H) by power iteration on H and on H⁻¹ = UᵀU (O(n²) per step). */
function conditionEstimate(h: Float32Array, u: Float64Array, n: number): number {
  const power = (apply: (v: Float64Array) => Float64Array): number => {
    let v: Float64Array = Float64Array.from({ length: n }, rng(7));
    let lambda = 0;
    for (let it = 0; it < 40; it++) {
      const w = apply(v);
      let norm = 0;
      for (let i = 0; i < n; i++) norm += w[i] * w[i];
      norm = Math.sqrt(norm);
      lambda = norm;
      for (let i = 0; i < n; i++) w[i] /= norm;
      v = w;
    }
    return lambda;
  };
  const hv = (v: Float64Array) => {
    const w = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += h[i * n + j] * v[j];
      w[i] = s;
    }
    return w;
  };
  const hinvv = (v: Float64Array) => {
    const t = new Float64Array(n); // U·v
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = i; j < n; j++) s += u[i * n + j] * v[j];
      t[i] = s;
    }
    const w = new Float64Array(n); // Uᵀ·t
    for (let i = 0; i < n; i++) {
      const ti = t[i];
      for (let j = i; j < n; j++) w[j] += u[i * n + j] * ti;
    }
    return w;
  };
  return power(hv) * power(hinvv);
}

/** max |U·H·Uᵀ − I| over 64 sampled columns, in float64 (H⁻¹ = UᵀU ⇔ U·H·Uᵀ = I). */
async function residual(h: Float32Array, u: Float64Array, n: number): Promise<number> {
  const k = Math.min(64, n);
  const r = rng(11);
  const cols = Array.from({ length: k }, () => Math.floor((r() + 0.5) * n));
  const ut = new Float64Array(n * k); // Uᵀ[:, cols] as [n × k]: row i holds U[cols, i]
  for (let i = 0; i < n; i++) for (let c = 0; c < k; c++) ut[i * k + c] = u[cols[c] * n + i];
  const h64 = Float64Array.from(h);
  const hu = new Float64Array(n * k);
  const uhu = new Float64Array(n * k);
  await serial(async () => {
    await gemmInto(hu, h64, [n, n], ut, [n, k]);
    await gemmInto(uhu, u, [n, n], hu, [n, k]);
  });
  let worst = 0;
  for (let i = 0; i < n; i++) for (let c = 0; c < k; c++) worst = Math.max(worst, Math.abs(uhu[i * k + c] - (i === cols[c] ? 1 : 0)));
  return worst;
}

async function benchCholesky(n: number, jsPerFlopMs: { v?: number; at?: number }) {
  const h = await hessian(n);
  // Cholesky n³/3 + triangular inverse n³/3: the count LAPACK would need, used for every GFLOP/s figure here.
  const flops = (2 * n ** 3) / 3;
  const t0 = performance.now();
  const first = await choleskyInverseUpper(h, n);
  const msFirst = performance.now() - t0;
  const out = new Float64Array(n * n);
  const ms = await bestOf(n >= 4096 ? 2 : 3, () => choleskyInverseUpper(h, n, { out }));
  const cpuMs = lastCpuMs;
  const msFreshOut = await bestOf(1, () => choleskyInverseUpper(h, n));
  let js: JsBaseline;
  let relErr: number | null = null;
  if (n <= 1024 || full) {
    let ref: Float64Array = new Float64Array(0);
    const t = await bestOf(1, () => {
      ref = jsCholeskyInverseUpper(h, n);
    });
    if (!jsPerFlopMs.v) {
      jsPerFlopMs.v = t / flops;
      jsPerFlopMs.at = n;
    }
    js = { ms: t, gflops: gflops(flops, t), measuredAt: `n = ${n}`, extrapolated: false };
    let err = 0;
    let mag = 0;
    for (let i = 0; i < n * n; i++) {
      err = Math.max(err, Math.abs(out[i] - ref[i]), Math.abs(first[i] - ref[i]));
      mag = Math.max(mag, Math.abs(ref[i]));
    }
    relErr = err / mag;
  } else {
    const t = jsPerFlopMs.v! * flops;
    js = { ms: t, gflops: gflops(flops, t), measuredAt: `n = ${jsPerFlopMs.at}`, extrapolated: true };
  }
  return {
    n,
    ms,
    cpuMs,
    msFreshOut,
    msFirst,
    gflops: gflops(flops, ms),
    relErr,
    residual: await residual(h, out, n),
    cond: conditionEstimate(h, out, n),
    js,
  };
}

/** Accuracy of choleskyInverseUpper against the float64 JS factorisation as damping shrinks (cond grows). */
async function precisionSweep(n: number) {
  const rows = [];
  for (const damp of [1e-2, 1e-3, 1e-4, 1e-5]) {
    const h = await hessian(n, damp);
    const u = await choleskyInverseUpper(h, n);
    const ref = jsCholeskyInverseUpper(h, n);
    let err = 0;
    let mag = 0;
    for (let i = 0; i < n * n; i++) {
      err = Math.max(err, Math.abs(u[i] - ref[i]));
      mag = Math.max(mag, Math.abs(ref[i]));
    }
    rows.push({ n, damp, cond: conditionEstimate(h, u, n), relErr: err / mag });
  }
  return rows;
}

// ------------------------------------------------------------------------------------------------- main

const jsLine = (js: JsBaseline) => `JS ${fmt(js.ms, 0)} ms (${fmt(js.gflops, 2)} GFLOP/s${js.extrapolated ? `, extrapolated from ${js.measuredAt}` : ''})`;

const loadBefore = loadavg()[0];
console.log(
  `bench-engine: ${cpus()[0]?.model ?? 'cpu'}, ${availableParallelism()} threads, load average ${loadBefore.toFixed(2)}` +
    `${quick ? ', quick' : ''}${full ? ', full JS baselines' : ''}`,
);

const matmulSizes = quick ? [512, 1024, 2048] : [512, 1024, 2048, 4096];
const jsMm: { v?: number; at?: number } = {};
const matmulResults = [];
for (const n of matmulSizes) {
  const r = await benchMatmul(n, jsMm);
  matmulResults.push(r);
  console.log(`matmul f32 ${n}³: ${fmt(r.ms)} ms (cpu ${fmt(r.cpuMs, 0)}), ${fmt(r.gflops, 0)} GFLOP/s, rel err ${sci(r.relErr)} | ${jsLine(r.js)}`);
}
const mm64 = await benchMatmul64(quick ? 1024 : 2048);
console.log(`matmul f64 ${mm64.n}³: ${fmt(mm64.ms)} ms (cpu ${fmt(mm64.cpuMs, 0)}), ${fmt(mm64.gflops, 0)} GFLOP/s (float64 products, used by the Cholesky family)`);

const gramShapes: [number, number][] = quick ? [[4096, 1024]] : [[4096, 1024], [2048, 4096]];
const gramResults = [];
for (const [rows, n] of gramShapes) {
  const r = await benchGram(rows, n);
  gramResults.push(r);
  console.log(`accumulateGram X ${rows}×${n}: ${fmt(r.ms)} ms (cpu ${fmt(r.cpuMs, 0)}), ${fmt(r.gflops, 0)} GFLOP/s at 2·rows·n², rel err ${sci(r.relErr)} | ${jsLine(r.js)}`);
}

const cholSizes = quick ? [1024, 2048] : [1024, 2048, 4096];
const jsCh: { v?: number; at?: number } = {};
const cholResults = [];
for (const n of cholSizes) {
  const r = await benchCholesky(n, jsCh);
  cholResults.push(r);
  console.log(
    `choleskyInverseUpper ${n}: ${fmt(r.ms, 0)} ms (cpu ${fmt(r.cpuMs, 0)}; fresh result array ${fmt(r.msFreshOut, 0)} ms, first call ${fmt(r.msFirst, 0)} ms), ` +
      `${fmt(r.gflops, 0)} GFLOP/s at 2n³/3, cond ≈ ${sci(r.cond)}, ` +
      `${r.relErr === null ? '' : `rel err ${sci(r.relErr)}, `}residual ${sci(r.residual)} | ${jsLine(r.js)}`,
  );
}

const sweep = await precisionSweep(quick ? 512 : 1024);
for (const r of sweep) console.log(`precision n = ${r.n}, damping ${r.damp}: cond ≈ ${sci(r.cond)}, rel err ${sci(r.relErr)} vs float64 JS`);

const mm2048 = matmulResults.find((r) => r.n === 2048);
const ch4096 = cholResults.find((r) => r.n === 4096);
/** null = not measured in this mode. */
const checks: Record<string, boolean | null> = {
  'matmul 2048 >= 150 GFLOP/s': mm2048 ? mm2048.gflops >= 150 : null,
  'XtX >= 100 GFLOP/s': gramResults.every((r) => r.gflops >= 100),
  'errors <= 1e-5 relative':
    [...matmulResults, ...gramResults, ...cholResults, ...sweep].every((r) => r.relErr === null || r.relErr <= 1e-5) &&
    cholResults.every((r) => r.residual <= 1e-5),
  'choleskyInverseUpper 4096 < 2.5 s (allocating its result)': ch4096 ? ch4096.msFreshOut < 2500 : null,
};
for (const [what, ok] of Object.entries(checks)) console.log(`${ok === null ? 'SKIP' : ok ? 'PASS' : 'FAIL'} ${what}`);
const loadAfter = loadavg()[0];
if (Math.max(loadBefore, loadAfter) > 1.5) console.log(`note: load average ${loadBefore.toFixed(2)} → ${loadAfter.toFixed(2)}: other processes shared the cores, times are pessimistic`);

const report = {
  date: new Date().toISOString(),
  cpu: cpus()[0]?.model ?? null,
  threads: availableParallelism(),
  loadAverage: { before: loadBefore, after: loadAfter },
  options: { quick, full },
  notes: [
    'ms = best of several steady-state runs; GFLOP/s from that time; cpuMs = process CPU time (all threads) of that run',
    'JS baselines marked extrapolated were timed at measuredAt and scaled by the operation count',
    'accumulateGram GFLOP/s counts the full 2·rows·n² product although for n > 1024 (and ≥ 512 rows) only the lower half is multiplied',
    'choleskyInverseUpper GFLOP/s counts 2n³/3 (Cholesky + triangular inverse); ms reuses the result array, msFreshOut allocates it',
    'relErr = max|x − ref|/max|ref| against float64 (sampled entries for products); residual = max|U·H·Uᵀ − I| on 64 columns',
  ],
  matmul: matmulResults,
  matmulFloat64: mm64,
  accumulateGram: gramResults,
  choleskyInverseUpper: cholResults,
  precisionSweep: sweep,
  checks,
};
mkdirSync(dirname(jsonPath), { recursive: true });
writeFileSync(jsonPath, JSON.stringify(report, null, 2) + '\n');
console.log(`wrote ${jsonPath}`);
