/**
 * `shears prune` on a synthetic ~100M-parameter Llama (scripts/synthetic-model.ts defaults), Wanda,
 * SparseGPT and ALPS at 50 % (ALPS's time as a multiple of SparseGPT's: target ≤ 3×), and a projection of the same run to a 7B Llama from measured per-block costs.
 * Entries like wanda+refine run the method with --refine (or --owl): their refine time is printed beside
 * SparseGPT's pruning time, and they are not projected.
 *
 *   npx tsx scripts/bench-prune.ts [--nsamples 128] [--seqlen 512] [--methods wanda,sparsegpt,alps,wanda+refine]
 *        [--model DIR] [--no-sweep] [--json out/bench-prune.json] [--efficiency-only | --no-efficiency] [--whole-attention]
 *
 * 0. Efficiency (prune-efficiency.ts): 2 blocks of the synthetic ~100M Llama (16 × 512 tokens) and of a
 *    TinyLlama-1.1B-shaped one (2 × 2048 tokens) pruned in this process by Wanda and SparseGPT: FLOPs of each
 *    phase, achieved GFLOP/s, the raw matmul rate at the same shapes in the same run, their ratio, and
 *    projected wall times for TinyLlama-1.1B and Llama-2-7B at 128 × 2048. `--efficiency-only` stops there;
 *    `--no-efficiency` skips it.
 *    `--whole-attention` runs it with attention over whole S × S scores (query chunks off: the path before
 *    ops.attentionChunks), for a before/after on the same machine.
 *
 * 1. Each method runs as `node bin/shears.js prune … --json` in a child process: wall time per stage from
 *    the report (forward, statistics, pruning), its maxRSS, and the process tree's CPU time and peak RSS
 *    sampled from /proc.
 * 2. In this process, the costs that do not scale with one FLOP count are measured at several sizes:
 *    SparseGPT on one layer at a few widths (its damped-inverse Cholesky timed alone), and the Gram
 *    accumulation (XᵀX) at the 100M and 7B widths.
 * 3. The projection to a 7B Llama (hidden 4096, intermediate 11008, 32 layers, 32 heads, 128 × 2048
 *    calibration tokens) scales each stage by its own work measure; the assumptions are printed with it.
 * Other processes on the same cores slow every figure: the 1-minute load average is recorded with them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openModel } from '../src/model.js';
import { setChunkScoreBytes } from '../src/arch/ops.js';
import { windowsPerCall } from '../src/run/blocks.js';
import { accumulateGram, choleskyInverseUpper } from '../src/engine/linalg.js';
import { sparsegptPrune } from '../src/prune/sparsegpt.js';
import type { PruneReport } from '../src/prune/job.js';
import type { Method } from '../src/prune/driver.js';
import type { ModelSpec } from '../src/arch/types.js';
import { DEFAULT_SYNTHETIC, writeSyntheticLlama } from './synthetic-model.js';
import { fixed, option, load1, machineInfo, mib, rng, runAndWriteReport, runCli } from './bench-common.js';
import { SHAPE_100M, SHAPE_7B, SHAPE_TINYLLAMA, measureShape, printProjection, printShape, projectHours } from './prune-efficiency.js';

const args = process.argv.slice(2);
const nsamples = Number(option('--nsamples') ?? 128);
const seqlen = Number(option('--seqlen') ?? 512);
// "wanda+refine", "sparsegpt+owl": the method with those options (reported, not projected to 7B).
const methods = (option('--methods') ?? 'wanda,sparsegpt,alps,wanda+refine').split(',');
const jsonPath = option('--json') ?? 'out/bench-prune.json';
const givenModel = option('--model');
const sweep = !args.includes('--no-sweep');
const efficiencyOnly = args.includes('--efficiency-only');
const efficiency = !args.includes('--no-efficiency');

/** The 7B target of the projection (Llama-2-7B / LLaMA-7B shapes). */
const TARGET = { name: 'Llama 7B', hidden: 4096, intermediate: 11008, layers: 32, heads: 32, kvHeads: 32, nsamples: 128, seqlen: 2048 };

const work = mkdtempSync(join(tmpdir(), 'shears-bench-prune-'));
const modelDir = givenModel ?? join(work, 'synthetic-llama');

// ------------------------------------------------------------------------------------------- shapes

interface BlockShape {
  hidden: number;
  intermediate: number;
  kv: number;
  heads: number;
  headDim: number;
}

/** The seven linear layers of a Llama block as [rows = out, cols = in]. */
function linears(s: BlockShape): { name: string; rows: number; cols: number }[] {
  return [
    { name: 'q_proj', rows: s.heads * s.headDim, cols: s.hidden },
    { name: 'k_proj', rows: s.kv, cols: s.hidden },
    { name: 'v_proj', rows: s.kv, cols: s.hidden },
    { name: 'o_proj', rows: s.hidden, cols: s.heads * s.headDim },
    { name: 'gate_proj', rows: s.intermediate, cols: s.hidden },
    { name: 'up_proj', rows: s.intermediate, cols: s.hidden },
    { name: 'down_proj', rows: s.hidden, cols: s.intermediate },
  ];
}

/** Widths of the four distinct linear inputs (attn_in, o_in, mlp_in, down_in): one statistic each. */
function inputWidths(s: BlockShape): number[] {
  return [s.hidden, s.heads * s.headDim, s.hidden, s.intermediate];
}

function blockParams(s: BlockShape): number {
  return linears(s).reduce((a, l) => a + l.rows * l.cols, 0);
}

/** FLOPs of one block over `tokens` tokens in windows of `seq`: linear 2·params, attention 2·(seq+1)·(heads·headDim) (causal: keys at or before each query). */
function blockFlops(s: BlockShape, tokens: number, seq: number): number {
  return tokens * (2 * blockParams(s) + 2 * (seq + 1) * s.heads * s.headDim);
}

function shapeOf(spec: ModelSpec): BlockShape {
  return { hidden: spec.hiddenSize, intermediate: spec.intermediateSize, kv: spec.numKvHeads * spec.headDim, heads: spec.numHeads, headDim: spec.headDim };
}

const target: BlockShape = { hidden: TARGET.hidden, intermediate: TARGET.intermediate, kv: TARGET.kvHeads * (TARGET.hidden / TARGET.heads), heads: TARGET.heads, headDim: TARGET.hidden / TARGET.heads };

// --------------------------------------------------------------------------------- measurements


/** A Gram matrix (2/N)·XᵀX of random correlated-enough inputs [2·cols, cols], as the accumulator hands it over. */
async function randomHessian(cols: number, seed: number): Promise<Float32Array> {
  const r = rng(seed);
  const tokens = 2 * cols;
  const x = new Float32Array(tokens * cols);
  for (let i = 0; i < x.length; i++) x[i] = r();
  const h = new Float32Array(cols * cols);
  await accumulateGram(h, cols, x, tokens);
  for (let k = 0; k < h.length; k++) h[k] *= 2 / 128;
  return h;
}

interface LayerTiming {
  rows: number;
  cols: number;
  totalSeconds: number;
  /** Float64 copy + damping + choleskyInverseUpper, as sparsegptPrune does it. */
  choleskySeconds: number;
  /** total − Cholesky: in-block JS loops, lazy batch updates (ORT), copies. */
  restSeconds: number;
}

async function timeSparseGptLayer(rows: number, cols: number): Promise<LayerTiming> {
  const h = await randomHessian(cols, rows * 7 + cols);
  const r = rng(cols);
  const w = new Float32Array(rows * cols);
  for (let i = 0; i < w.length; i++) w[i] = 0.04 * r();
  let chol = Infinity;
  let total = Infinity;
  for (let rep = 0; rep < 2; rep++) {
    let t = performance.now();
    const hd = Float64Array.from(h);
    let diag = 0;
    for (let j = 0; j < cols; j++) diag += hd[j * cols + j];
    for (let j = 0; j < cols; j++) hd[j * cols + j] += (0.01 * diag) / cols;
    await choleskyInverseUpper(hd, cols, { out: hd });
    chol = Math.min(chol, (performance.now() - t) / 1000);
    const data = w.slice();
    t = performance.now();
    await sparsegptPrune({ data, rows, cols }, h, { kind: 'unstructured', sparsity: 0.5 });
    total = Math.min(total, (performance.now() - t) / 1000);
  }
  return { rows, cols, totalSeconds: total, choleskySeconds: chol, restSeconds: Math.max(0, total - chol) };
}

/** Seconds per (token · cols²) of accumulateGram at width `cols`, fed `rows` tokens per call. */
async function timeGram(cols: number, rows: number): Promise<{ cols: number; rows: number; seconds: number; secondsPerTokenCol2: number }> {
  const r = rng(cols + 1);
  const x = new Float32Array(rows * cols);
  for (let i = 0; i < x.length; i++) x[i] = r();
  const h = new Float32Array(cols * cols);
  const calls = Math.max(2, Math.ceil(8192 / rows));
  await accumulateGram(h, cols, x, rows); // warm the session and scratch
  const t = performance.now();
  for (let c = 0; c < calls; c++) await accumulateGram(h, cols, x, rows);
  const seconds = (performance.now() - t) / 1000 / calls;
  return { cols, rows, seconds, secondsPerTokenCol2: seconds / (rows * cols * cols) };
}

/** Least squares for y ≈ Σ_k c_k·f_k(x) with a small number of basis functions (normal equations). */
function leastSquares(rowsF: number[][], y: number[]): number[] {
  const k = rowsF[0].length;
  const a = Array.from({ length: k }, () => new Array<number>(k + 1).fill(0));
  for (let i = 0; i < y.length; i++) {
    for (let p = 0; p < k; p++) {
      for (let q = 0; q < k; q++) a[p][q] += rowsF[i][p] * rowsF[i][q];
      a[p][k] += rowsF[i][p] * y[i];
    }
  }
  for (let p = 0; p < k; p++) {
    let piv = p;
    for (let r = p + 1; r < k; r++) if (Math.abs(a[r][p]) > Math.abs(a[piv][p])) piv = r;
    [a[p], a[piv]] = [a[piv], a[p]];
    for (let r = 0; r < k; r++) {
      if (r === p) continue;
      const f = a[r][p] / a[p][p];
      for (let c = p; c <= k; c++) a[r][c] -= f * a[p][c];
    }
  }
  return a.map((row, p) => row[k] / row[p]);
}

// ------------------------------------------------------------------------------------------- main

async function main(): Promise<Record<string, unknown>> {
  const machine = machineInfo();
  console.log(`machine: ${machine.cpu}, ${machine.cores} cores, node ${machine.node}, onnxruntime-node ${machine.onnxruntime}, threads ${machine.threads}; load ${load1()}`);
  const efficiencyResult = efficiency ? await efficiencySection((['wanda', 'sparsegpt'] as Method[]).filter((m) => methods.includes(m))) : undefined;
  if (efficiencyOnly) return { machine, efficiency: efficiencyResult };
  let generated: { params: number } | undefined;
  if (!givenModel) {
    generated = { params: writeSyntheticLlama(modelDir, DEFAULT_SYNTHETIC).params };
    console.log(`synthetic Llama: ${(generated.params / 1e6).toFixed(1)}M parameters`);
  }
  const { ckpt, arch } = await openModel(modelDir);
  ckpt.close();
  const spec = arch.spec;
  const shape = shapeOf(spec);
  const L = spec.numLayers;
  const tokens = nsamples * seqlen;
  console.log(`calibration: ${nsamples} × ${seqlen} tokens of tinystories; ${windowsPerCall(arch, seqlen)} window(s) per block call`);

  // 1. The CLI, one child process per method.
  const runs: Record<string, { report: PruneReport; wallSeconds: number; cpuSeconds: number; sampledPeakRssBytes: number; load1Before: number; load1After: number }> = {};
  for (const method of methods) {
    const out = join(work, `out-${method.replace(/\+/g, '-')}`);
    const [base, ...flags] = method.split('+');
    const c = await runCli(['prune', modelDir, '--method', base, ...flags.map((f) => `--${f}`), '--sparsity', '0.5', '--calibration', 'tinystories', '--nsamples', String(nsamples), '--seqlen', String(seqlen), '--out', out, '--overwrite', '--json']);
    const report = JSON.parse(c.stdout) as PruneReport;
    runs[method] = { report, wallSeconds: c.wallSeconds, cpuSeconds: c.cpuSeconds, sampledPeakRssBytes: c.peakRssBytes, load1Before: c.load1Before, load1After: c.load1After };
    rmSync(out, { recursive: true, force: true });
    const t = report.timings;
    console.log(`${method.padEnd(9)} forward ${fixed(t.forward, 1)} s, statistics ${fixed(t.statistics, 1)} s, pruning ${fixed(t.pruning, 1)} s, total ${fixed(t.total, 1)} s (${fixed(c.wallSeconds, 1)} s end to end, cpu ${fixed(c.cpuSeconds, 1)} s); peak RSS ${mib(report.peakRssBytes)}; load ${c.load1Before} → ${c.load1After}`);
    if (t.refine !== undefined || t.owl !== undefined) console.log(`${''.padEnd(9)} of which${t.refine !== undefined ? ` refine (PCG) ${fixed(t.refine, 1)} s` : ''}${t.owl !== undefined ? ` OWL dense pass ${fixed(t.owl, 1)} s` : ''}`);
  }
  const sgPruning = runs.sparsegpt?.report.timings.pruning;
  for (const [method, { report }] of Object.entries(runs)) {
    if (report.timings.refine !== undefined && sgPruning !== undefined) console.log(`${method}: refine ${fixed(report.timings.refine, 1)} s beside SparseGPT's pruning ${fixed(sgPruning, 1)} s (${fixed(report.timings.refine / sgPruning, 2)}x)`);
  }

  // ALPS against SparseGPT, same model, calibration and machine (the target is ≤ 3× SparseGPT's time).
  let alpsVsSparsegpt: { pruning: number; total: number } | undefined;
  if (runs.alps && runs.sparsegpt) {
    const a = runs.alps.report.timings, g = runs.sparsegpt.report.timings;
    alpsVsSparsegpt = { pruning: a.pruning / g.pruning, total: a.total / g.total };
    console.log(`alps / sparsegpt: pruning ${fixed(alpsVsSparsegpt.pruning, 2)}×, whole run ${fixed(alpsVsSparsegpt.total, 2)}× (target ≤ 3×)`);
  }

  // 2. Per-layer SparseGPT and Gram speeds at several widths.
  const layerTimings: LayerTiming[] = [];
  const grams: Awaited<ReturnType<typeof timeGram>>[] = [];
  if (sweep) {
    console.log('\nSparseGPT on one layer (unstructured 50 %, blocksize 128), best of 2:');
    console.log('   rows × cols    total   Cholesky   rest (in-block JS + lazy update + copies)');
    const shapes: [number, number][] = [[768, 768], [2048, 768], [768, 2048], [1536, 1536], [3072, 3072], [1024, 4096]];
    for (const [rows, cols] of shapes) {
      const lt = await timeSparseGptLayer(rows, cols);
      layerTimings.push(lt);
      console.log(`  ${String(rows).padStart(5)} × ${String(cols).padEnd(5)} ${fixed(lt.totalSeconds).padStart(7)} s ${fixed(lt.choleskySeconds).padStart(7)} s ${fixed(lt.restSeconds).padStart(7)} s`);
    }
    const callRows = windowsPerCall(arch, seqlen) * seqlen;
    for (const [cols, rows] of [[768, callRows], [2048, callRows], [4096, 2048]]) grams.push(await timeGram(cols, rows));
    console.log('Gram accumulation h += XᵀX: ' + grams.map((g) => `${g.cols} cols × ${g.rows} rows ${fixed(g.seconds * 1000, 1)} ms (${fixed((2 * g.rows * g.cols * g.cols) / g.seconds / 1e9, 0)} GFLOP/s of the full product)`).join('; '));
  }

  // 3. Projection to 7B.
  const projection = project(spec, shape, L, tokens, runs, layerTimings, grams);
  return {
    machine,
    model: { dir: givenModel ?? 'synthetic (temporary)', generated, spec, blockParams: blockParams(shape) },
    setup: { calibration: 'tinystories', nsamples, seqlen, tokens, windowsPerCall: windowsPerCall(arch, seqlen) },
    runs: Object.fromEntries(
      Object.entries(runs).map(([m, r]) => [m, {
        timings: r.report.timings, peakRssBytes: r.report.peakRssBytes, sampledPeakRssBytes: r.sampledPeakRssBytes, wallSeconds: r.wallSeconds, cpuSeconds: r.cpuSeconds,
        load1Before: r.load1Before, load1After: r.load1After, sparsity: r.report.sparsity,
        perBlock: { forward: r.report.timings.forward / L, statistics: r.report.timings.statistics / L, pruning: r.report.timings.pruning / L },
        layerSeconds: byLayerName(r.report),
      }]),
    ),
    alpsVsSparsegpt,
    sparsegptLayers: layerTimings,
    gram: grams,
    projection,
    efficiency: efficiencyResult,
  };
}

/** Section 0: per-phase FLOPs and rates against the same run's raw matmul rate, and the projections. */
async function efficiencySection(ms: Method[]): Promise<Record<string, unknown>> {
  // Before/after: the whole-matrix attention that long windows used before query chunks.
  if (args.includes('--whole-attention')) setChunkScoreBytes(Infinity);
  console.log(`\nefficiency (in-process driver, unstructured 50 %; attention ${args.includes('--whole-attention') ? 'over whole S × S scores (--whole-attention)' : 'in query chunks at long windows'}; FLOPs: linears as computed, attention as causal attention needs it):`);
  const small = await measureShape(SHAPE_100M, 4, 16, 512, ms);
  printShape(small);
  const tiny = await measureShape(SHAPE_TINYLLAMA, 2, 2, 2048, ms);
  printShape(tiny);
  const projections = { tinyllama: projectHours(tiny, SHAPE_TINYLLAMA), llama7b: projectHours(tiny, SHAPE_7B) };
  printProjection(tiny, SHAPE_TINYLLAMA, projections.tinyllama);
  printProjection(tiny, SHAPE_7B, projections.llama7b);
  console.log('  (7B: forward and statistics at the TinyLlama-shaped rates; SparseGPT pruning scaled by Σ rows·cols² + Σ cols³, Wanda by parameters; 2 cores as here)');
  // The README's "how long" table: model × method × calibration, from the same measured per-block costs.
  const table: { model: string; calibration: string; hours: Record<string, number> }[] = [];
  for (const [from, target] of [[small, SHAPE_100M], [tiny, SHAPE_TINYLLAMA], [tiny, SHAPE_7B]] as const) {
    for (const [n, s] of [[32, 2048], [128, 2048]] as const) {
      const p = projectHours(from, target, n, s);
      table.push({ model: `${target.name} (${target.layers} blocks)`, calibration: `${n} × ${s}`, hours: Object.fromEntries(Object.entries(p).map(([m, h]) => [m, h.total])) });
    }
  }
  console.log('\n  how long, whole model (2 cores as here):');
  console.log(`  ${'model'.padEnd(36)} ${'calibration'.padEnd(12)} ${ms.map((m) => m.padStart(10)).join(' ')}`);
  for (const r of table) console.log(`  ${r.model.padEnd(36)} ${r.calibration.padEnd(12)} ${ms.map((m) => duration(r.hours[m]).padStart(10)).join(' ')}`);
  return { small, tiny, projectionsHours: projections, howLong: table };
}

/** Mean seconds per layer name over the blocks. */
function byLayerName(r: PruneReport): Record<string, number> {
  const sums = new Map<string, [number, number]>();
  for (const l of r.layers) {
    if (l.skipped) continue;
    const s = sums.get(l.name) ?? [0, 0];
    sums.set(l.name, [s[0] + l.seconds, s[1] + 1]);
  }
  return Object.fromEntries([...sums].map(([k, [s, n]]) => [k, s / n]));
}

function project(
  spec: ModelSpec,
  shape: BlockShape,
  L: number,
  tokens: number,
  runs: Record<string, { report: PruneReport }>,
  layerTimings: LayerTiming[],
  grams: { cols: number; secondsPerTokenCol2: number }[],
): Record<string, unknown> {
  const tTokens = TARGET.nsamples * TARGET.seqlen;
  const assumptions: string[] = [
    `forward: two block passes per block (dense with capture, then pruned), scaled by FLOPs = tokens × (2·block params + 2·(seq+1)·hidden, causal attention); the effective GFLOP/s of the ${(blockParams(shape) * L / 1e6).toPrecision(3)}M-parameter run is assumed to hold at 7B (MLAS runs these shapes near its peak already; causal attention at seq 2048 is 4 % of the 7B FLOPs, computed in query chunks that skip the masked half)`,
    'statistics (SparseGPT): Σ over the 4 linear inputs of tokens × cols², at the Gram speed measured here at 4096 columns (the 11008-wide down_proj input assumed as fast per FLOP); (Wanda): the JS column-norm loop, scaled by tokens × Σ cols',
    'pruning (SparseGPT): per layer, Cholesky of the damped H⁻¹ (float64, ∝ cols³, fitted on the widths measured; run once per layer, also for q/k/v sharing one H) + the rest ∝ rows·cols·(β + γ·cols) (in-block JS loops ∝ rows·cols·blocksize, lazy updates ∝ rows·cols²), both least-squares fits to the one-layer timings',
    '(Wanda): per-layer time from the run ∝ rows·cols',
    'statistics (ALPS): as SparseGPT; pruning (ALPS): the run\'s time per Σ rows·cols² (its ADMM and PCG products), with as many iterations as here',
    'no reading/writing of weights beyond what the 100M run did per parameter; 2 cores as here, idle (the measured runs were not)',
  ];
  const fwdFlopsMeasured = 2 * L * blockFlops(shape, tokens, seqlen);
  const fwdFlopsTarget = 2 * TARGET.layers * blockFlops(target, tTokens, TARGET.seqlen);
  const result: Record<string, unknown> = { target: TARGET, assumptions };

  // SparseGPT per-layer model fits.
  let cholFit: number[] | undefined;
  let restFit: number[] | undefined;
  if (layerTimings.length >= 2) {
    cholFit = leastSquares(layerTimings.map((l) => [l.cols ** 3, l.cols ** 2]), layerTimings.map((l) => l.choleskySeconds));
    restFit = leastSquares(layerTimings.map((l) => [l.rows * l.cols, l.rows * l.cols * l.cols]), layerTimings.map((l) => l.restSeconds));
  }
  const sgptLayerSeconds = (rows: number, cols: number): number =>
    cholFit && restFit ? Math.max(0, cholFit[0] * cols ** 3 + cholFit[1] * cols ** 2) + Math.max(0, restFit[0] * rows * cols + restFit[1] * rows * cols * cols) : NaN;
  const gram4096 = grams.find((g) => g.cols === 4096)?.secondsPerTokenCol2;

  const table: Record<string, Record<string, number>> = {};
  console.log(`\nprojection to ${TARGET.name} (hidden ${TARGET.hidden}, intermediate ${TARGET.intermediate}, ${TARGET.layers} layers, ${TARGET.nsamples} × ${TARGET.seqlen} calibration):`);
  console.log('  method     stage        measured here   per block here   projected 7B');
  for (const [method, { report }] of Object.entries(runs)) {
    if (method.includes('+')) continue; // variants: measured above, not projected
    const t = report.timings;
    const fwdRate = fwdFlopsMeasured / t.forward;
    const forward = fwdFlopsTarget / fwdRate;
    let statistics: number;
    let pruning: number;
    let note: string | undefined;
    if (method === 'sparsegpt' || method === 'alps') {
      const fromRun = t.statistics / (L * tokens * inputWidths(shape).reduce((a, c) => a + c * c, 0));
      const targetWork = TARGET.layers * tTokens * inputWidths(target).reduce((a, c) => a + c * c, 0);
      statistics = targetWork * (gram4096 ?? fromRun);
      // The run's own rate (narrow 768-column inputs, no symmetric half-product, the run's load) as a bound.
      if (method === 'sparsegpt') table.sparsegptStatisticsFromRun = { seconds: targetWork * fromRun };
      if (method === 'sparsegpt' && gram4096 !== undefined) note = `  (SparseGPT statistics at the measured run's own Gram rate instead: ${hours(targetWork * fromRun)})`;
      const products = (s: BlockShape) => linears(s).reduce((a, l) => a + l.rows * l.cols * l.cols, 0);
      pruning = method === 'alps'
        ? (t.pruning / (L * products(shape))) * TARGET.layers * products(target)
        : TARGET.layers * linears(target).reduce((a, l) => a + sgptLayerSeconds(l.rows, l.cols), 0);
    } else {
      const widthSum = (s: BlockShape) => inputWidths(s).reduce((a, c) => a + c, 0);
      statistics = (t.statistics / (L * tokens * widthSum(shape))) * TARGET.layers * tTokens * widthSum(target);
      const perParam = t.pruning / (L * blockParams(shape));
      pruning = perParam * TARGET.layers * blockParams(target);
    }
    table[method] = { forward, statistics, pruning, total: forward + statistics + pruning, forwardGflops: fwdRate / 1e9 };
    const rows: [string, number, number][] = [['forward', t.forward, forward], ['statistics', t.statistics, statistics], ['pruning', t.pruning, pruning]];
    for (const [stage, here, proj] of rows) {
      console.log(`  ${method.padEnd(10)} ${stage.padEnd(12)} ${fixed(here, 1).padStart(10)} s ${fixed(here / L, 2).padStart(13)} s ${hours(proj).padStart(14)}`);
    }
    console.log(`  ${method.padEnd(10)} ${'total'.padEnd(12)} ${fixed(t.forward + t.statistics + t.pruning, 1).padStart(10)} s ${''.padStart(15)} ${hours(forward + statistics + pruning).padStart(14)}   (forward at ${fixed(fwdRate / 1e9, 0)} GFLOP/s effective)`);
    if (note) console.log(note);
  }
  if (cholFit && restFit) {
    const per = linears(target).map((l) => ({ ...l, seconds: sgptLayerSeconds(l.rows, l.cols) }));
    console.log('  SparseGPT per 7B layer: ' + per.map((l) => `${l.name} ${fixed(l.seconds, 1)} s`).join(', '));
    result.sparsegptLayerModel = { choleskySeconds: `${cholFit[0].toExponential(3)}·cols³ + ${cholFit[1].toExponential(3)}·cols²`, restSeconds: `${restFit[0].toExponential(3)}·rows·cols + ${restFit[1].toExponential(3)}·rows·cols²`, perTargetLayer: per };
  }
  // Memory at 7B, estimated from the buffers the driver keeps (not measured).
  const x = tTokens * TARGET.hidden * 4;
  const weights = blockParams(target) * 4;
  const gramBytes = inputWidths(target).reduce((a, c) => a + c * c * 4, 0);
  const sgptWork = TARGET.intermediate ** 2 * 8 + TARGET.intermediate * TARGET.hidden * 4 * 2;
  const perCall = TARGET.seqlen * (TARGET.hidden * 8 + TARGET.intermediate * 4) * 4 + 3 * TARGET.heads * TARGET.seqlen ** 2 * 4;
  result.memoryEstimate7B = { activationsBytes: x, blockWeightsBytes: weights, sparsegptGramBytes: gramBytes, sparsegptLayerWorkBytes: sgptWork, perCallBytes: perCall, totalSparsegptBytes: x + weights + gramBytes + sgptWork + perCall };
  console.log(`  memory at 7B (estimate): activations ${mib(x)}, one block's weights ${mib(weights)}, SparseGPT Grams ${mib(gramBytes)} + down_proj work ${mib(sgptWork)}, per block call ~${mib(perCall)}: ~${(((x + weights + gramBytes + sgptWork + perCall) / 2 ** 30) + 0.3).toFixed(1)} GiB with the runtime`);
  console.log('  assumptions:');
  for (const a of assumptions) console.log(`   - ${a}`);
  result.seconds = table;
  return result;
}

function hours(seconds: number): string {
  if (!Number.isFinite(seconds)) return '–';
  return seconds >= 3600 ? `${(seconds / 3600).toFixed(1)} h` : seconds >= 60 ? `${(seconds / 60).toFixed(1)} min` : `${seconds.toFixed(1)} s`;
}

// Last, so that every module-level constant above is initialised before main() runs.
await runAndWriteReport(main, jsonPath, work);

/** Hours as "1.23 h" or, under an hour, "12 min". */
function duration(hours: number | undefined): string {
  if (hours === undefined) return '–';
  return hours >= 1 ? `${fixed(hours, 2)} h` : `${fixed(hours * 60, 0)} min`;
}
