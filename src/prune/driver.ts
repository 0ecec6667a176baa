/**
 * The layer-sequential driver, the only place that knows the order of work (as in the references):
 * embed the calibration windows; for each decoder block, run the dense block over every window while
 * accumulating each linear input's statistics, prune the block's layers, re-run the pruned block to
 * produce the next block's inputs. --true-sequential prunes the layers stage by stage (attention
 * inputs, attention output, MLP inputs, MLP output), re-collecting statistics after each stage.
 */
import type { Architecture, CaptureReduce, LinearLayer, RoutedExperts, TensorSource, Weights } from '../arch/types.js';
import { loadWeights, runBlockOver, type InputsHook } from '../run/blocks.js';
import { endBlockPass, smallBlockCalls } from '../run/micro-batches.js';
import { reuseStatisticStorage } from './stats.js';
import { loadExpert, runExpertOver, runSharedOver, type LoadedExpert, type SharedPass } from '../run/experts.js';
import { releaseBlockSessions } from '../arch/runtime.js';
import { collectGarbage } from '../run/memory.js';
import type { Windows } from '../data/calibration.js';
import type { SparsitySpec, PruneResult } from './spec.js';
import { PRUNE_METHODS, type Method } from './methods.js';
import { LayerInput } from './layer-input.js';
import { globMatcher } from './glob.js';
import { nmHoldsWithTail } from './pattern-check.js';
import type { FiniteGuard } from '../run/finite.js';
import { ShearsError, usageError } from '../errors.js';
import { refineLayer, type RefineReport } from './refine.js';
import { blockOutlierRatio, OutlierTally, owlSparsities, type OwlLayer, type OwlReport, type OwlSettings } from './owl.js';
import { DEFAULT_DAMP } from './sparsegpt.js';

export { METHODS, type Method } from './methods.js';

export interface PruneOptions {
  method: Method;
  spec: SparsitySpec;
  /** Per-block override of an unstructured sparsity (index = block). */
  layerSparsity?: (number | undefined)[];
  /** Globs over "<block>.<layer name>" (e.g. "*.mlp.down_proj", "0.*") or full tensor names: left dense. */
  skip?: string[];
  trueSequential?: boolean;
  blocksize?: number;
  damp?: number;
  seed?: number;
  /** SparseGPT: quantize jointly inside the column loop to this many bits (other methods: see job.ts). */
  wbits?: number;
  /** Also prune the LM head (refused when it is tied to the embedding). */
  includeLmHead?: boolean;
  /** Hardening: checks activations, statistics and pruned weights for NaN/Inf (weights as read: see job.ts). */
  finite?: FiniteGuard;
  /** MoE: a routed expert that receives fewer calibration tokens than this is pruned by magnitude (default 64). */
  minExpertTokens?: number;
  /** After the method, re-solve each row's kept weights on H by PCG (refine.ts). */
  refine?: boolean;
  /** OWL per-block sparsities from the dense model's outlier ratios (owl.ts); unstructured only. */
  owl?: OwlSettings;
}

/**
 * The fallback rule for rarely routed experts: with fewer routed tokens than this, an expert's statistics
 * describe too few samples to rank its weights (with none, SparseGPT's H is zero and every input is "dead",
 * so the whole matrix would be zeroed), so it is pruned by magnitude instead and the report says so.
 * shears' choice, not from a paper; --min-expert-tokens changes it.
 */
export const DEFAULT_MIN_EXPERT_TOKENS = 64;

export interface LayerReport {
  block: number;
  name: string;
  tensor: string;
  rows: number;
  cols: number;
  skipped: boolean;
  /** Fraction of exact zeros after pruning. */
  sparsity: number;
  /** For N:M: every group of M has at least N zeros. */
  nmOk?: boolean;
  /** SparseGPT's reported reconstruction error, or ‖(W−Ŵ)·X‖² proxy where a method has none. */
  loss?: number;
  damp?: number;
  retries?: number;
  notes?: string[];
  /** MoE routed expert: the calibration tokens the router sent to it (what its statistics hold). */
  routedTokens?: number;
  /** MoE routed expert pruned by the fallback rule (too few routed tokens): the method used instead. */
  fallback?: 'magnitude';
  /** --refine: PCG steps, residual and the reconstruction error before and after. */
  refine?: RefineReport;
  seconds: number;
}

export interface Timings {
  forward: number;
  statistics: number;
  pruning: number;
  /** --refine's share of `pruning`. */
  refine?: number;
  /** --owl: the pass over the dense model before pruning (forward and scores). */
  owl?: number;
}

export interface DriverHooks {
  /** A block's tensors are final (stored layout, float32): write them out and let them go (MoE: all but its routed experts). */
  onBlockDone(block: number, weights: Weights): Promise<void> | void;
  /** MoE: a routed expert's tensors (or its slices of the fused ones, at `expert.starts`) are final. */
  onExpertDone(block: number, expert: LoadedExpert): Promise<void> | void;
  onProgress?(event: { block: number; blocks: number; stage: string }): void;
}

export function needsCalibration(opts: Pick<PruneOptions, 'method' | 'refine' | 'owl'>): boolean {
  return PRUNE_METHODS[opts.method].statistic !== 'none' || !!opts.refine || !!opts.owl;
}

/** A fresh statistic for one layer input, holding what the chosen method (and --refine: H, kept readable) reads. */
function newInput(opts: PruneOptions, cols: number): LayerInput {
  const statistic = PRUNE_METHODS[opts.method].statistic;
  const refine = !!opts.refine;
  return new LayerInput(cols, { columnNorms: statistic === 'column-norms', gram: statistic === 'gram' || refine, keepGram: refine });
}

/** [rows, cols] nn.Linear view of a stored weight (a copy when stored transposed). */
function linearView(layer: LinearLayer, stored: Float32Array): Float32Array {
  if (!layer.transposed) return stored;
  const { rows, cols } = layer;
  const t = new Float32Array(rows * cols);
  for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) t[r * cols + c] = stored[c * rows + r];
  return t;
}

/** A layer's values within its stored tensor (a fused expert tensor holds several layers). */
export function layerData(l: LinearLayer, w: Weights): Float32Array {
  const stored = w.get(l.tensor);
  if (!stored) throw new Error(`block weights lack "${l.tensor}"`);
  return l.part ? stored.subarray(l.part.offset, l.part.offset + l.rows * l.cols) : stored;
}

function storeBack(layer: LinearLayer, view: Float32Array, stored: Float32Array): void {
  if (!layer.transposed) return;
  const { rows, cols } = layer;
  for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) stored[c * rows + r] = view[r * cols + c];
}

export function blockSpec(opts: PruneOptions, block: number): SparsitySpec {
  const s = opts.layerSparsity?.[block];
  return s === undefined ? opts.spec : { kind: 'unstructured', sparsity: s };
}

/** What every block of one run shares. `x` holds the calibration windows' hidden states entering the next block. */
interface Run {
  arch: Architecture;
  src: TensorSource;
  opts: PruneOptions;
  hooks: DriverHooks;
  skip: (name: string) => boolean;
  calibrated: boolean;
  seq: number;
  x?: Float32Array;
  layers: LayerReport[];
  timings: Timings;
}

export async function pruneBlocks(arch: Architecture, src: TensorSource, windows: Windows | undefined, opts: PruneOptions, hooks: DriverHooks): Promise<{ layers: LayerReport[]; timings: Timings; owl?: OwlReport }> {
  const calibrated = needsCalibration(opts);
  if (calibrated && !windows) throw new Error(`${opts.method} needs calibration windows`);
  // OWL: a whole pass over the dense model comes first; its per-block sparsities then drive the pruning.
  let owl: OwlReport | undefined;
  let owlSeconds: number | undefined;
  if (opts.owl) {
    const t0 = performance.now();
    owl = await owlPass(arch, src, windows!, opts, hooks);
    owlSeconds = (performance.now() - t0) / 1000;
    opts = { ...opts, layerSparsity: owl.sparsities };
  }
  const run: Run = {
    arch, src, opts, hooks, calibrated,
    skip: globMatcher(opts.skip ?? []),
    seq: windows?.seqlen ?? 0,
    layers: [],
    timings: { forward: 0, statistics: 0, pruning: 0, ...(owlSeconds !== undefined ? { owl: owlSeconds } : {}) },
  };

  const t = performance.now();
  if (calibrated) run.x = await arch.embed(loadWeights(src, arch.embedTensors()), windows!.ids, run.seq);
  run.timings.forward += (performance.now() - t) / 1000;
  if (run.x) opts.finite?.check('the embeddings of the calibration windows (input of block 0)', run.x); // hardening: non-finite

  // A function call per block and per stage, so that a finished block's weights and Gram matrices are
  // unreachable once it returns: locals of this frame would stay alive (in its registers) while the next
  // block loads, which held two blocks and the widest Hessian at the peak.
  reuseStatisticStorage(calibrated && smallBlockCalls(arch, run.seq));
  try {
    for (let b = 0; b < arch.spec.numLayers; b++) await pruneBlock(run, b);
    if (opts.includeLmHead) await pruneHead(run, windows?.count ?? 0);
  } finally {
    reuseStatisticStorage(false);
  }
  return { layers: run.layers, timings: run.timings, ...(owl ? { owl } : {}) };
}

/**
 * OWL's pass: the dense model over the calibration windows, block by block (one block's weights and the
 * windows' hidden states in memory), pooling each block's Wanda scores into its outlier ratio.
 */
async function owlPass(arch: Architecture, src: TensorSource, windows: Windows, opts: PruneOptions, hooks: DriverHooks): Promise<OwlReport> {
  const { m, lambda } = opts.owl!;
  if (opts.spec.kind !== 'unstructured') throw usageError('--owl needs --sparsity: per-block N:M would change N from block to block');
  const seq = windows.seqlen;
  const x = await arch.embed(loadWeights(src, arch.embedTensors()), windows.ids, seq);
  const ratios: number[] = [];
  for (let b = 0; b < arch.spec.numLayers; b++) ratios.push(await owlBlock(arch, src, b, x, seq, m, hooks));
  return { m, lambda, outlierRatios: ratios, sparsities: owlSparsities(ratios, opts.spec.sparsity, lambda) };
}

async function owlBlock(arch: Architecture, src: TensorSource, b: number, x: Float32Array, seq: number, m: number, hooks: DriverHooks): Promise<number> {
  collectGarbage();
  hooks.onProgress?.({ block: b, blocks: arch.spec.numLayers, stage: 'OWL outlier ratios on the dense model' });
  const norms = (ls: LinearLayer[]) => new Map<string, LayerInput>(ls.map((l) => [l.input, new LayerInput(l.cols, { columnNorms: true, gram: false, keepGram: false })]));
  const collect = (stats: Map<string, LayerInput>): InputsHook => (inputs, n, sequences, reduced) => addInputs(stats, inputs, n, seq, sequences, reduced);
  const finish = async (stats: Map<string, LayerInput>) => {
    for (const acc of stats.values()) await acc.finish();
  };
  const owlLayer = (l: LinearLayer, w: Weights, stats: Map<string, LayerInput>): OwlLayer => ({ weight: { data: linearView(l, layerData(l, w)), rows: l.rows, cols: l.cols }, colSq: stats.get(l.input)!.columnNorms() });
  const routed = arch.routed;
  if (!routed || routed.count(b) === 0) {
    const w = loadWeights(src, arch.blockTensors(b));
    const all = arch.linears(b);
    const stats = norms(all);
    await runBlockOver(arch, b, w, x, seq, x, collect(stats), 'column-squares');
    await endBlockPass(arch, seq);
    await finish(stats);
    return blockOutlierRatio(all.map((l) => owlLayer(l, w, stats)), m);
  }
  // MoE: the shared part, then one expert at a time; the experts are read again for the second pass of
  // the tally (the threshold needs every score first). The same order as blockOutlierRatio on the whole block.
  const w = loadWeights(src, routed.sharedTensors(b));
  const shared = arch.linears(b).filter((l) => l.expert === undefined);
  const stats = norms(shared);
  const pass = await runSharedOver(arch, routed, b, w, x, seq, x, collect(stats), true);
  await finish(stats);
  const tally = new OutlierTally();
  for (const l of shared) tally.add(owlLayer(l, w, stats));
  const expertStats: Map<string, LayerInput>[] = [];
  for (let e = 0; e < routed.count(b); e++) {
    const ex = loadExpert(src, routed.expertLayers(b, e));
    const es = norms(ex.layers);
    await runExpertOver(routed, b, e, ex, pass, arch.spec.hiddenSize, seq, x, collect(es));
    await finish(es);
    for (const l of ex.layers) tally.add(owlLayer(l, ex.w, es));
    expertStats.push(es);
  }
  await releaseBlockSessions();
  const threshold = tally.threshold(m);
  for (const l of shared) tally.countAbove(owlLayer(l, w, stats), threshold);
  for (let e = 0; e < routed.count(b); e++) {
    const ex = loadExpert(src, routed.expertLayers(b, e));
    for (const l of ex.layers) tally.countAbove(owlLayer(l, ex.w, expertStats[e]), threshold);
  }
  return tally.ratio();
}

/** Block b: statistics, pruning (stage by stage with --true-sequential), then the pruned re-run that feeds block b+1. */
async function pruneBlock(run: Run, b: number): Promise<void> {
  const { arch, opts, hooks, timings } = run;
  const routed = arch.routed;
  if (routed && routed.count(b) > 0) return pruneRoutedBlock(run, b, routed);
  collectGarbage(); // the previous block's
  const w = loadWeights(run.src, arch.blockTensors(b));
  const all = arch.linears(b);
  const isSkipped = (l: LinearLayer) => run.skip(`${b}.${l.name}`) || run.skip(l.tensor);
  const stages = opts.trueSequential ? [...new Set(all.map((l) => l.stage))].sort((p, q) => p - q) : [undefined];

  for (const stage of stages) {
    const todo = all.filter((l) => (stage === undefined || l.stage === stage) && !isSkipped(l));
    hooks.onProgress?.({ block: b, blocks: arch.spec.numLayers, stage: stage === undefined ? 'all' : `stage ${stage}` });
    await pruneStage(run, b, w, todo, (onInputs, reduce) => runBlockOver(arch, b, w, run.x!, run.seq, null, onInputs, reduce));
  }
  for (const l of all.filter(isSkipped)) {
    run.layers.push({ block: b, name: l.name, tensor: l.tensor, rows: l.rows, cols: l.cols, skipped: true, sparsity: zeroFraction(layerData(l, w)), seconds: 0 });
  }
  if (run.calibrated) {
    const t = performance.now();
    await runBlockOver(arch, b, w, run.x!, run.seq, run.x!);
    await endBlockPass(arch, run.seq); // see collectStats
    timings.forward += (performance.now() - t) / 1000;
    opts.finite?.check(`block ${b}: its output on the calibration windows`, run.x!, 'the activations overflow float32 in this block'); // hardening
  }
  await hooks.onBlockDone(b, w);
}

/**
 * An MoE block: its shared parts (attention, norms, router, shared expert) stay loaded; its routed experts
 * are read, calibrated, pruned, run and written one at a time. The shared layers come first (no routed
 * expert feeds one of them), then the shared part's pruned output pass, which leaves in x the residual plus
 * shared expert and gives the experts' input and routing of every token; each expert then adds its share.
 * An expert's statistics come from the dense block (from the first pass, kept for it) or, with
 * --true-sequential, from the block with its attention pruned (the output pass) and its gate/up pruned
 * before its down input is taken, as the whole-block order gives them.
 */
async function pruneRoutedBlock(run: Run, b: number, routed: RoutedExperts): Promise<void> {
  const { arch, opts, hooks, timings } = run;
  collectGarbage(); // the previous block's
  const w = loadWeights(run.src, routed.sharedTensors(b));
  const all = arch.linears(b);
  const isSkipped = (l: LinearLayer) => run.skip(`${b}.${l.name}`) || run.skip(l.tensor);
  const stages = opts.trueSequential ? [...new Set(all.map((l) => l.stage))].sort((p, q) => p - q) : [undefined];
  // Without --true-sequential the experts' statistics come from the dense block: its pass keeps their input.
  let dense: SharedPass | undefined;
  const keep = !opts.trueSequential;
  const sharedPass = async (onInputs?: InputsHook) => {
    dense = await runSharedOver(arch, routed, b, w, run.x!, run.seq, null, onInputs, keep);
  };
  for (const stage of stages) {
    const todo = all.filter((l) => l.expert === undefined && (stage === undefined || l.stage === stage) && !isSkipped(l));
    hooks.onProgress?.({ block: b, blocks: arch.spec.numLayers, stage: stage === undefined ? 'all' : `stage ${stage}` });
    await pruneStage(run, b, w, todo, sharedPass);
  }
  if (run.calibrated && keep && !dense) await sharedPass();
  for (const l of all.filter((l) => l.expert === undefined && isSkipped(l))) {
    run.layers.push({ block: b, name: l.name, tensor: l.tensor, rows: l.rows, cols: l.cols, skipped: true, sparsity: zeroFraction(layerData(l, w)), seconds: 0 });
  }
  let out: SharedPass | undefined;
  if (run.calibrated) {
    const t = performance.now();
    out = await runSharedOver(arch, routed, b, w, run.x!, run.seq, run.x!, undefined, true);
    timings.forward += (performance.now() - t) / 1000;
  }
  for (let e = 0; e < routed.count(b); e++) {
    hooks.onProgress?.({ block: b, blocks: arch.spec.numLayers, stage: `expert ${e + 1}/${routed.count(b)}` });
    await pruneExpert(run, b, routed, e, dense ?? out, out);
  }
  await releaseBlockSessions();
  if (run.calibrated) opts.finite?.check(`block ${b}: its output on the calibration windows`, run.x!, 'the activations overflow float32 in this block'); // hardening
  await hooks.onBlockDone(b, w);
}

/** Routed expert e: read, statistics from `stats`, pruned, its output added to x from `out`, written, let go. */
async function pruneExpert(run: Run, b: number, routed: RoutedExperts, e: number, stats: SharedPass | undefined, out: SharedPass | undefined): Promise<void> {
  const { arch, opts, timings } = run;
  const h = arch.spec.hiddenSize;
  const ex = loadExpert(run.src, routed.expertLayers(b, e));
  const isSkipped = (l: LinearLayer) => run.skip(`${b}.${l.name}`) || run.skip(l.tensor);
  const stages = opts.trueSequential ? [...new Set(ex.layers.map((l) => l.stage))].sort((p, q) => p - q) : [undefined];
  for (const stage of stages) {
    const todo = ex.layers.filter((l) => (stage === undefined || l.stage === stage) && !isSkipped(l));
    await pruneStage(run, b, ex.w, todo, (onInputs) => runExpertOver(routed, b, e, ex, stats!, h, run.seq, null, onInputs));
  }
  for (const l of ex.layers.filter(isSkipped)) {
    run.layers.push({ block: b, name: l.name, tensor: l.tensor, rows: l.rows, cols: l.cols, skipped: true, sparsity: zeroFraction(layerData(l, ex.w)), seconds: 0 });
  }
  if (out) {
    const t = performance.now();
    await runExpertOver(routed, b, e, ex, out, h, run.seq, run.x!);
    timings.forward += (performance.now() - t) / 1000;
  }
  await run.hooks.onExpertDone(b, ex);
}

/**
 * A capturing forward over the calibration windows that hands each micro-batch's inputs to `onInputs`
 * (the block, or a part of it, as it is now); its output is not kept.
 */
type StatsPass = (onInputs: InputsHook, reduce?: CaptureReduce) => Promise<unknown>;

/**
 * One micro-batch's captured inputs into their statistics: rows, or (reduced captures) column sums of squares
 * over n windows of `seq` tokens. An MoE expert's input holds only its routed tokens, from the windows that
 * routed any (`sequences`).
 */
async function addInputs(stats: Map<string, LayerInput>, inputs: Record<string, Float32Array>, n: number, seq: number, sequences?: Record<string, number>, reduced?: CaptureReduce): Promise<void> {
  for (const [id, acc] of stats) {
    if (reduced) acc.addColumnSquares(inputs[id], n * seq, sequences?.[id] ?? n);
    else await acc.add(inputs[id], inputs[id].length / acc.cols, sequences?.[id] ?? n);
  }
}

/** Collects the statistics of `todo`'s inputs with `pass`, then prunes each layer of `todo`. */
async function pruneStage(run: Run, b: number, w: Weights, todo: LinearLayer[], pass: StatsPass): Promise<void> {
  const { opts, timings } = run;
  const spec = blockSpec(opts, b);
  const stats = run.calibrated && todo.length > 0 ? await collectStats(run, b, todo, pass) : new Map<string, LayerInput>();
  for (const [k, l] of todo.entries()) {
    const t = performance.now();
    const r = await pruneLayer(l, layerData(l, w), stats, spec, opts, run.layers.length, run.calibrated);
    if (r.refine) timings.refine = (timings.refine ?? 0) + r.refine.seconds;
    // A statistic is dropped after the last layer that reads it (a Gram matrix is cols² floats).
    if (!todo.slice(k + 1).some((m) => m.input === l.input)) {
      stats.get(l.input)?.release();
      stats.delete(l.input);
    }
    opts.finite?.check(`block ${b}: the pruned weights of ${l.tensor}`, layerData(l, w)); // hardening: non-finite
    const seconds = (performance.now() - t) / 1000;
    run.layers.push({ block: b, ...r, seconds });
    timings.pruning += seconds;
  }
}

/** One statistic per distinct input of `todo`, accumulated over every calibration window. */
async function collectStats(run: Run, b: number, todo: LinearLayer[], pass: StatsPass): Promise<Map<string, LayerInput>> {
  const { opts, timings } = run;
  const stats = new Map<string, LayerInput>(todo.map((l) => [l.input, newInput(opts, l.cols)]));
  let statSeconds = 0;
  const t = performance.now();
  // Only the forward's output is thrown away here: the next block's inputs come from the pruned re-run.
  // Performance: null drops it (no x-sized scratch per block: fresh pages cost ~3.5 ms/MiB here).
  // Column norms alone (Wanda) are reduced inside the block graph: the rows never leave onnxruntime.
  const reduce = [...stats.values()].every((s) => s.columnNormsOnly) ? 'column-squares' : undefined;
  await pass(async (inputs, n, sequences, reduced) => {
    const s0 = performance.now();
    await addInputs(stats, inputs, n, run.seq, sequences, reduced);
    statSeconds += (performance.now() - s0) / 1000;
  }, reduce);
  const s0 = performance.now();
  for (const acc of stats.values()) await acc.finish();
  statSeconds += (performance.now() - s0) / 1000;
  // The block session's memory arena keeps the high-water mark of its activations for the life of the
  // session (~250 MiB at hidden 2048, 1024 tokens a call). Released after each pass, it is not held while
  // the layers are pruned; rebuilding the session costs ~0.2 s a pass at hidden 2048. Small ones are kept
  // (endBlockPass): there the rebuild is the larger cost.
  await endBlockPass(run.arch, run.seq);
  collectGarbage(); // onnxruntime's copies of the captured inputs, before the pruning allocates
  timings.statistics += statSeconds;
  timings.forward += (performance.now() - t) / 1000 - statSeconds;
  // Hardening: an input that overflowed float32 is named here, before it poisons a mask.
  for (const [id, acc] of stats) {
    const names = todo.filter((l) => l.input === id).map((l) => l.name).join(', ');
    for (const r of acc.results()) opts.finite?.check(`block ${b}: the input statistics of ${names}`, r, 'the activations entering these layers are not finite');
  }
  return stats;
}

/**
 * --include-lm-head: the LM head is pruned last, calibrated on the final hidden states of the pruned
 * model (through the final norm), and handed to onBlockDone as block L.
 */
async function pruneHead(run: Run, windows: number): Promise<void> {
  const { arch, src, x, seq, opts, hooks, layers, timings } = run;
  const head = arch.headLinear();
  if (head.tied) throw usageError(`--include-lm-head: ${head.tensor} is tied to the input embedding, so pruning the head would prune the embedding too`);
  const L = arch.spec.numLayers;
  hooks.onProgress?.({ block: L, blocks: L, stage: 'lm_head' });
  const hw = loadWeights(src, arch.headTensors());
  const stats = new Map<string, LayerInput>();
  let t = performance.now();
  if (x) {
    const acc = newInput(opts, head.cols);
    const hidden = arch.spec.hiddenSize;
    for (let w0 = 0; w0 < windows; w0++) {
      const inp = await arch.headInput(hw, x.subarray(w0 * seq * hidden, (w0 + 1) * seq * hidden));
      await acc.add(inp, seq, 1);
    }
    await acc.finish();
    stats.set(head.input, acc);
    timings.statistics += (performance.now() - t) / 1000;
  }
  t = performance.now();
  const weight = hw.get(head.tensor)!;
  const r = await pruneLayer(head, weight, stats, opts.spec, opts, layers.length);
  if (r.refine) timings.refine = (timings.refine ?? 0) + r.refine.seconds;
  const seconds = (performance.now() - t) / 1000;
  layers.push({ block: L, ...r, seconds });
  timings.pruning += seconds;
  await hooks.onBlockDone(L, new Map([[head.tensor, weight]]));
}

/**
 * Prunes one linear layer in place (stored layout) with the chosen method, reading its input's statistic
 * from `stats`; `index` seeds --method random.
 */
async function pruneLayer(l: LinearLayer, stored: Float32Array, stats: Map<string, LayerInput>, spec: SparsitySpec, opts: PruneOptions, index: number, calibrated = false): Promise<Omit<LayerReport, 'block' | 'seconds'>> {
  const view = linearView(l, stored);
  const weight = { data: view, rows: l.rows, cols: l.cols };
  const input = stats.get(l.input) ?? newInput(opts, l.cols);
  // MoE: a routed expert's statistic counts its routed tokens; too few → the documented fallback (magnitude).
  const routedTokens = l.expert !== undefined && calibrated ? input.tokens : undefined;
  const minTokens = opts.minExpertTokens ?? DEFAULT_MIN_EXPERT_TOKENS;
  const fallback = routedTokens !== undefined && routedTokens < minTokens;
  // A fallback expert is not refined: its H holds too few tokens to say anything.
  const dense = opts.refine && !fallback ? Float32Array.from(view) : undefined;
  let r: PruneResult;
  let refine: RefineReport | undefined;
  try {
    r = fallback ? await PRUNE_METHODS.magnitude.prune(weight, input, spec, opts, index) : await PRUNE_METHODS[opts.method].prune(weight, input, spec, opts, index);
    if (dense) refine = await refineLayer(weight, dense, input, opts.damp ?? DEFAULT_DAMP);
  } catch (e) {
    if (e instanceof ShearsError) throw new ShearsError(`${l.tensor}: ${e.message}`, e.exitCode);
    throw e;
  }
  storeBack(l, view, stored);
  return {
    name: l.name, tensor: l.tensor, rows: l.rows, cols: l.cols, skipped: false,
    sparsity: zeroFraction(view),
    nmOk: spec.kind === 'nm' ? nmHoldsWithTail(view, l.rows, l.cols, spec.n, spec.m) : undefined,
    loss: r.loss, damp: r.damp, retries: r.retries, refine,
    notes: fallback ? [...(r.notes ?? []), `expert received ${routedTokens} calibration tokens (fewer than ${minTokens}): pruned by magnitude`] : r.notes,
    ...(routedTokens !== undefined ? { routedTokens } : {}),
    ...(fallback ? { fallback: 'magnitude' as const } : {}),
  };
}

export function zeroFraction(a: Float32Array): number {
  let z = 0;
  for (let k = 0; k < a.length; k++) if (a[k] === 0) z++;
  return a.length ? z / a.length : 0;
}
