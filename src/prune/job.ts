/**
 * One `shears prune` run end to end: check every argument before heavy work, draw (or read) the
 * calibration windows, prune block by block while streaming the result into a temporary folder,
 * write shears-report.json, and rename the folder into place only when everything succeeded.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { usageError } from '../errors.js';
import { openModel } from '../model.js';
import { AtomicDir, tempPathFor, writeFileAtomic } from '../io/atomic.js';
import { Checkpoint } from '../io/checkpoint.js';
import { withoutCompression } from '../io/compressed/config.js';
import type { WeightFormat } from '../io/compressed/names.js';
import { writeFormat } from '../export/write.js';
import { quantizeBlock } from '../quant/block.js';
import type { StoredGrid } from '../quant/stored.js';
import { globMatcher } from './glob.js';
import { CheckpointWriter } from '../io/checkpoint-writer.js';
import { SafetensorsWriter } from '../io/safetensors/writer.js';
import { loadCorpus } from '../data/datasets.js';
import { checkWindowArgs, readWindowsFile, sampleWindows, type Windows } from '../data/calibration.js';
import { loadTokenizer } from '../tokenize/tokenizer.js';
import { needsCalibration, pruneBlocks, type LayerReport, type PruneOptions, type Timings } from './driver.js';
import { describeSpec } from './spec.js';
import { REFINE_SETTINGS } from './refine.js';
import { checkOwl, type OwlReport } from './owl.js';
import { SHEARS_VERSION } from '../version.js';
import { FiniteGuard, guardedSource, type NonFiniteFault } from '../run/finite.js';

export interface PruneJob extends PruneOptions {
  model: string;
  out: string;
  overwrite?: boolean;
  calibration: string;
  nsamples: number;
  seqlen?: number;
  calibTokens?: string;
  saveCalibTokens?: string;
  /** Weight format of the output (default dense). */
  format?: WeightFormat;
  /** The command line, recorded in the report. */
  command?: string;
  /** Go on past NaN/Inf in weights or activations (recorded in the report) instead of stopping. */
  allowNonfinite?: boolean;
  onProgress?: (message: string) => void;
  /** What a structured pass before this one removed (src/structured/job.ts), recorded in the report. */
  structured?: unknown;
}

export interface PruneReport {
  shears: string;
  command: string;
  model: string;
  out: string;
  method: string;
  pattern: string;
  calibration: { source: string; nsamples: number; seqlen: number; seed: number } | null;
  options: { blocksize?: number; damp?: number; trueSequential: boolean; skip: string[]; refine?: typeof REFINE_SETTINGS };
  layers: LayerReport[];
  /** --owl: M, lambda, each block's outlier ratio on the dense model and the sparsity it got. */
  owl?: OwlReport;
  /** Zeros over all prunable (non-skipped) linear weights. */
  sparsity: number;
  nmOk?: boolean;
  format: WeightFormat;
  wbits?: number;
  /** Bytes of the weight files written, and the same model dense in fp16 (parameters × 2). */
  storage?: { fileBytes: number; denseFp16Bytes: number };
  timings: Timings & { total: number };
  peakRssBytes: number;
  /** Where NaN/Inf were found (only with allowNonfinite; otherwise the run stops at the first). */
  nonFinite: NonFiniteFault[];
  /** The structured pass that made the model pruned here (--channels / --heads / --drop-blocks). */
  structured?: unknown;
}

export async function runPrune(job: PruneJob): Promise<PruneReport> {
  const t0 = performance.now();
  const say = job.onProgress ?? (() => {});
  const { ckpt, arch, src: checkpointSource } = await openModel(job.model, 'prune');
  // Hardening: every weight is checked for NaN/Inf as it is read (the driver checks activations).
  const finite = new FiniteGuard(job.allowNonfinite ?? false);
  const src = guardedSource(checkpointSource, finite, (n) => ckpt.info(n).file);
  try {
    const calibrated = needsCalibration(job);
    const seqlen = job.seqlen ?? Math.min(2048, arch.spec.maxPositions);
    checkWindowArgs(job.nsamples, seqlen, arch.spec.maxPositions);
    if (job.spec.kind === 'nm' && job.method === 'sparsegpt' && (job.blocksize ?? 128) % job.spec.m !== 0) {
      throw usageError(`--blocksize ${job.blocksize} must be a multiple of M = ${job.spec.m} for N:M SparseGPT`);
    }
    if (job.owl) {
      if (job.spec.kind !== 'unstructured') throw usageError(`--owl needs --sparsity, not --pattern ${describeSpec(job.spec)}: OWL's N:M mode changes N from block to block, which breaks the N:M pattern`);
      if (job.layerSparsity) throw usageError('--owl and --layer-sparsity both set the per-block sparsity: give one of them');
      checkOwl(job.owl, job.spec.sparsity);
    }
    if (job.wbits !== undefined && ![4, 8].includes(job.wbits)) throw usageError(`--wbits must be 4 or 8, got ${job.wbits}`);
    const format = job.format ?? 'dense';
    if (format === 'sparse-24-bitmask' && !(job.spec.kind === 'nm' && job.spec.m === 4 && job.spec.n >= 2)) {
      throw usageError('--format sparse-24-bitmask needs --pattern 2:4 (it stores exactly 2 of every 4 weights)');
    }
    const dir = new AtomicDir(job.out, { overwrite: job.overwrite, apartFrom: ckpt.dir });
    let writer: CheckpointWriter | undefined;
    // A compressed output is written dense into a staging folder first, then encoded into the output.
    const stage = format === 'dense' ? dir.path : tempPathFor(job.out);
    try {
      if (stage !== dir.path) mkdirSync(stage);
      let windows: Windows | undefined;
      let calibSource = job.calibTokens ?? job.calibration;
      if (calibrated || job.saveCalibTokens) {
        if (job.calibTokens) {
          windows = readWindowsFile(job.calibTokens, arch.spec.vocabSize);
          checkWindowArgs(windows.count, windows.seqlen, arch.spec.maxPositions);
        } else {
          say(`drawing ${job.nsamples} calibration windows of ${seqlen} tokens from ${job.calibration}`);
          const corpus = loadCorpus(job.calibration, 'calibration');
          calibSource = corpus.path;
          const tok = await loadTokenizer(ckpt.dir);
          windows = sampleWindows(corpus, tok, job.nsamples, seqlen, job.seed ?? 0);
        }
        if (job.saveCalibTokens) saveWindows(job.saveCalibTokens, windows);
      }

      const pattern = describeSpec(job.spec);
      writer = new CheckpointWriter(ckpt, stage, {
        shears_version: SHEARS_VERSION,
        shears_method: job.method,
        shears_pattern: pattern,
        shears_calibration: windows ? `${calibSource} (${windows.count} x ${windows.seqlen}, seed ${job.seed ?? 0})` : 'none',
      });
      const blockNames = new Set<string>();
      for (let b = 0; b < arch.spec.numLayers; b++) for (const n of arch.blockTensors(b)) blockNames.add(n);
      if (job.includeLmHead) blockNames.add(arch.headLinear().tensor); // written once pruned, after the blocks
      for (const n of ckpt.tensorNames()) if (!blockNames.has(n)) writer.copy(n);

      const w = writer;
      const skip = globMatcher(job.skip ?? []);
      const grids = new Map<string, StoredGrid>();
      // Blocks cost about the same, so the mean so far predicts the rest.
      const started = performance.now();
      const eta = (done: number, total: number): string => {
        if (done === 0) return '';
        const left = ((performance.now() - started) / done) * (total - done);
        return `, about ${Math.ceil(left / 1000)} s left`;
      };
      const { layers, timings, owl } = await pruneBlocks(arch, src, windows, { ...job, finite }, {
        onBlockDone: (b, weights) => {
          // Block linears only: an LM head pruned with --include-lm-head (b = numLayers) stays unquantized.
          if (job.wbits !== undefined && b < arch.spec.numLayers) {
            // The layers whose tensors come here (an MoE block's routed experts come through onExpertDone).
            const g = quantizeBlock(arch.linears(b).filter((l) => weights.has(l.tensor)), weights, (t) => src.readFloat32(t), job.wbits, (l) => skip(`${b}.${l.name}`) || skip(l.tensor));
            for (const [t, grid] of g) grids.set(t, grid);
          }
          for (const [name, values] of weights) w.write(name, values);
          say(b < arch.spec.numLayers ? `block ${b + 1}/${arch.spec.numLayers} pruned${eta(b + 1, arch.spec.numLayers)}` : 'lm_head pruned');
        },
        onExpertDone: (b, ex) => {
          if (job.wbits !== undefined) {
            // Each expert layer on its own grid, from its original values (its range of the stored tensor).
            const g = quantizeBlock(ex.layers, ex.w, (t) => src.readFloat32Range(t, ex.starts.get(t)!, ex.w.get(t)!.length), job.wbits, (l) => skip(`${b}.${l.name}`) || skip(l.tensor));
            for (const [t, grid] of g) grids.set(t, grid);
          }
          for (const [name, values] of ex.w) w.writeRange(name, ex.starts.get(name)!, values);
        },
        onProgress: (e) => say(`block ${e.block + 1}/${e.blocks}: ${e.stage === 'all' ? (windows ? `calibrating on ${windows.count} windows and pruning` : 'pruning') : e.stage}${eta(e.block, e.blocks)}`),
      });
      writer.finish();
      let storage: PruneReport['storage'];
      if (stage !== dir.path) {
        const staged = Checkpoint.openFolder(stage);
        try {
          const r = writeFormat(staged, dir.path, { format, quantize: job.wbits !== undefined ? { bits: job.wbits, grids } : undefined });
          storage = { fileBytes: r.fileBytes, denseFp16Bytes: r.denseFp16Bytes };
        } finally {
          staged.close();
        }
        rmSync(stage, { recursive: true, force: true });
      } else if (ckpt.config.quantization_config !== undefined) {
        // The source was compressed: its copied config.json must not describe the dense output as compressed.
        writeFileAtomic(join(dir.path, 'config.json'), JSON.stringify(withoutCompression(ckpt.config), null, 2) + '\n');
      }

      const pruned = layers.filter((l) => !l.skipped);
      const total = pruned.reduce((s, l) => s + l.rows * l.cols, 0);
      const zeros = pruned.reduce((s, l) => s + l.sparsity * l.rows * l.cols, 0);
      const report: PruneReport = {
        shears: SHEARS_VERSION,
        command: job.command ?? '',
        model: job.model,
        out: job.out,
        method: job.method,
        pattern,
        calibration: windows ? { source: calibSource, nsamples: windows.count, seqlen: windows.seqlen, seed: job.seed ?? 0 } : null,
        options: { blocksize: job.blocksize, damp: job.damp, trueSequential: job.trueSequential ?? false, skip: job.skip ?? [], ...(job.refine ? { refine: REFINE_SETTINGS } : {}) },
        ...(owl ? { owl } : {}),
        layers,
        sparsity: total ? zeros / total : 0,
        nmOk: job.spec.kind === 'nm' ? pruned.every((l) => l.nmOk) : undefined,
        format,
        wbits: job.wbits,
        storage,
        timings: { ...timings, total: (performance.now() - t0) / 1000 },
        peakRssBytes: process.resourceUsage().maxRSS * 1024,
        nonFinite: finite.faults,
        ...(job.structured !== undefined ? { structured: job.structured } : {}),
      };
      // writeFileAtomic: a failed write (ENOSPC) is a one-line error, and the folder is then removed below.
      writeFileAtomic(join(dir.path, 'shears-report.json'), JSON.stringify(report, null, 2) + '\n');
      dir.commit();
      return report;
    } catch (e) {
      writer?.abort();
      if (stage !== dir.path) rmSync(stage, { recursive: true, force: true });
      dir.abort();
      throw e;
    }
  } finally {
    ckpt.close();
  }
}

function saveWindows(path: string, w: Windows): void {
  const out = new SafetensorsWriter(path, [{ name: 'input_ids', dtype: 'I32', shape: [w.count, w.seqlen] }], { format: 'pt', producer: 'shears' });
  try {
    out.write('input_ids', w.ids);
    out.finish();
  } catch (e) {
    out.abort();
    throw e;
  }
}
