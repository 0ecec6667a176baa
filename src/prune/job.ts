/**
 * One `shears prune` run end to end: check every argument before heavy work, draw (or read) the
 * calibration windows, prune block by block while streaming the result into a temporary folder,
 * write shears-report.json, and rename the folder into place only when everything succeeded.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { usageError } from '../errors.js';
import { openModel } from '../model.js';
import { AtomicDir } from '../io/atomic.js';
import { CheckpointWriter } from '../io/checkpoint-writer.js';
import { SafetensorsWriter } from '../io/safetensors/writer.js';
import { loadCorpus } from '../data/datasets.js';
import { checkWindowArgs, readWindowsFile, sampleWindows, type Windows } from '../data/calibration.js';
import { loadTokenizer } from '../tokenize/tokenizer.js';
import { needsCalibration, pruneBlocks, type LayerReport, type PruneOptions, type Timings } from './driver.js';
import { describeSpec } from './spec.js';
import { SHEARS_VERSION } from '../version.js';

export interface PruneJob extends PruneOptions {
  model: string;
  out: string;
  overwrite?: boolean;
  calibration: string;
  nsamples: number;
  seqlen?: number;
  calibTokens?: string;
  saveCalibTokens?: string;
  /** The command line, recorded in the report. */
  command?: string;
  onProgress?: (message: string) => void;
}

export interface PruneReport {
  shears: string;
  command: string;
  model: string;
  out: string;
  method: string;
  pattern: string;
  calibration: { source: string; nsamples: number; seqlen: number; seed: number } | null;
  options: { blocksize?: number; damp?: number; trueSequential: boolean; skip: string[] };
  layers: LayerReport[];
  /** Zeros over all prunable (non-skipped) linear weights. */
  sparsity: number;
  nmOk?: boolean;
  timings: Timings & { total: number };
  peakRssBytes: number;
}

export async function runPrune(job: PruneJob): Promise<PruneReport> {
  const t0 = performance.now();
  const say = job.onProgress ?? (() => {});
  const { ckpt, arch, src } = await openModel(job.model, 'prune');
  try {
    const calibrated = needsCalibration(job.method);
    const seqlen = job.seqlen ?? Math.min(2048, arch.spec.maxPositions);
    checkWindowArgs(job.nsamples, seqlen, arch.spec.maxPositions);
    if (job.spec.kind === 'nm' && job.method === 'sparsegpt' && (job.blocksize ?? 128) % job.spec.m !== 0) {
      throw usageError(`--blocksize ${job.blocksize} must be a multiple of M = ${job.spec.m} for N:M SparseGPT`);
    }
    const dir = new AtomicDir(job.out, { overwrite: job.overwrite });
    let writer: CheckpointWriter | undefined;
    try {
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
      writer = new CheckpointWriter(ckpt, dir.path, {
        shears_version: SHEARS_VERSION,
        shears_method: job.method,
        shears_pattern: pattern,
        shears_calibration: windows ? `${calibSource} (${windows.count} x ${windows.seqlen}, seed ${job.seed ?? 0})` : 'none',
      });
      const blockNames = new Set<string>();
      for (let b = 0; b < arch.spec.numLayers; b++) for (const n of arch.blockTensors(b)) blockNames.add(n);
      for (const n of ckpt.tensorNames()) if (!blockNames.has(n)) writer.copy(n);

      const w = writer;
      const { layers, timings } = await pruneBlocks(arch, src, windows, job, {
        onBlockDone: (b, weights) => {
          for (const [name, values] of weights) w.write(name, values);
          say(`block ${b + 1}/${arch.spec.numLayers} pruned`);
        },
        onProgress: (e) => say(`block ${e.block + 1}/${e.blocks}: ${e.stage === 'all' ? 'calibrating and pruning' : e.stage}`),
      });
      writer.finish();

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
        options: { blocksize: job.blocksize, damp: job.damp, trueSequential: job.trueSequential ?? false, skip: job.skip ?? [] },
        layers,
        sparsity: total ? zeros / total : 0,
        nmOk: job.spec.kind === 'nm' ? pruned.every((l) => l.nmOk) : undefined,
        timings: { ...timings, total: (performance.now() - t0) / 1000 },
        peakRssBytes: process.resourceUsage().maxRSS * 1024,
      };
      writeFileSync(join(dir.path, 'shears-report.json'), JSON.stringify(report, null, 2) + '\n');
      dir.commit();
      return report;
    } catch (e) {
      writer?.abort();
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
