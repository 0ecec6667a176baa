/**
 * `shears prune --channels / --heads / --drop-blocks`: a smaller dense checkpoint. Checks the request
 * before heavy work, draws the calibration windows, runs the structured driver, and writes the result
 * with its new shapes, renumbered block tensors and reduced config.json (single file or 5 GB shards with
 * their index, as transformers saves). With --sparsity / --pattern as well, the reduced model is written
 * to a temporary folder and then pruned unstructured / N:M into the output by the ordinary job.
 */
import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileError, usageError } from '../errors.js';
import { openModel } from '../model.js';
import { Checkpoint } from '../io/checkpoint.js';
import { architectureFor } from '../arch/registry.js';
import { AtomicDir, tempPathFor, writeFileAtomic } from '../io/atomic.js';
import { withoutCompression } from '../io/compressed/config.js';
import { ShardedSafetensorsWriter } from '../io/safetensors/sharded-writer.js';
import type { TensorSpec } from '../io/safetensors/writer.js';
import { loadCorpus } from '../data/datasets.js';
import { checkWindowArgs, readWindowsFile, sampleWindows, type Windows } from '../data/calibration.js';
import { loadTokenizer } from '../tokenize/tokenizer.js';
import { FiniteGuard, guardedSource, type NonFiniteFault } from '../run/finite.js';
import { SHEARS_VERSION } from '../version.js';
import { runPrune, type PruneJob, type PruneReport } from '../prune/job.js';
import type { SparsitySpec } from '../prune/spec.js';
import type { Architecture } from '../arch/types.js';
import { planChannels, planHeads, reducedConfig, type ChannelPlan, type HeadPlan, type StructuredRequest } from './plan.js';
import { runStructured, type StructuredBlockReport } from './driver.js';
import type { BlockScores } from './rank-blocks.js';
import type { StructuredCriterion } from './solve.js';

/**
 * Ridge of the re-solve, relative to mean(diag G_SS). The re-solve is an ordinary least-squares problem
 * over ≥ thousands of calibration tokens per column, so it needs only enough damping to stay positive
 * definite with dead channels: SparseGPT's 0.01 (tuned for its column-by-column OBS updates) cost the
 * test problems up to 80% more output error than the undamped optimum, 1e-4 stays within 5% of it.
 */
const STRUCTURED_RIDGE = 1e-4;

export const STRUCTURED_METHODS: readonly StructuredCriterion[] = ['magnitude', 'wanda', 'sparsegpt'];

export interface StructuredJob extends Omit<PruneJob, 'spec'>, StructuredRequest {
  /** Unstructured / N:M pruning of the reduced model afterwards, in the same run. */
  spec?: SparsitySpec;
}

export interface StructuredSection {
  method: string;
  channels?: ChannelPlan;
  heads?: Omit<HeadPlan, 'rep'>;
  dropBlocks?: { count: number; metric: 'bi' | 'loss'; dropped: number[]; scores: number[]; denseNll?: number };
  blocks: StructuredBlockReport[];
  /** Parameters (every tensor's elements) of the source and of the reduced checkpoint. */
  params: { before: number; after: number };
  /** Weight bytes written (the reduced checkpoint, before any unstructured pass). */
  fileBytes: number;
  seconds: number;
}

export interface StructuredReport {
  shears: string;
  command: string;
  model: string;
  out: string;
  method: string;
  calibration: { source: string; nsamples: number; seqlen: number; seed: number } | null;
  structured: StructuredSection;
  /** The unstructured / N:M pass afterwards, when asked for (its own per-layer report). */
  unstructured?: Omit<PruneReport, 'structured'>;
  peakRssBytes: number;
  nonFinite: NonFiniteFault[];
}

/** Argument checks of the structured options (exit 2 before any heavy work). */
export function checkStructuredArgs(r: StructuredRequest, method: string): void {
  for (const [opt, v] of [['--channels', r.channels], ['--heads', r.heads]] as const) {
    if (v !== undefined && !(typeof v === 'number' && v > 0 && v < 1)) throw usageError(`${opt} must be a fraction strictly between 0 and 1, got ${v}`);
  }
  if (r.dropBlocks !== undefined && !(Number.isInteger(r.dropBlocks) && r.dropBlocks >= 1)) throw usageError(`--drop-blocks must be a positive integer, got ${r.dropBlocks}`);
  if (r.blockScore !== undefined && !['bi', 'loss'].includes(r.blockScore)) throw usageError(`--block-score must be bi or loss, got ${r.blockScore}`);
  if (!(STRUCTURED_METHODS as readonly string[]).includes(method)) throw usageError(`--method ${method} does not do structured removal (use ${STRUCTURED_METHODS.join(', ')})`);
}

export async function runStructuredPrune(job: StructuredJob): Promise<StructuredReport> {
  const t0 = performance.now();
  checkStructuredArgs(job, job.method);
  const say = job.onProgress ?? (() => {});
  const { ckpt, arch, src: checkpointSource } = await openModel(job.model, 'prune');
  const finite = new FiniteGuard(job.allowNonfinite ?? false);
  const src = guardedSource(checkpointSource, finite, (n) => ckpt.info(n).file);
  const configPath = join(ckpt.dir, 'config.json');
  let stageDir: string | undefined;
  try {
    const spec = arch.spec;
    const L = spec.numLayers;
    if (job.dropBlocks !== undefined && job.dropBlocks >= L) throw usageError(`--drop-blocks ${job.dropBlocks}: the model has ${L} blocks; at least one must stay`);
    if (!job.spec && ((job.format ?? 'dense') !== 'dense' || job.wbits !== undefined || job.saveCalibTokens !== undefined)) {
      throw usageError('--format, --wbits and --save-calib-tokens apply to an unstructured pass: with --channels / --heads / --drop-blocks give --sparsity or --pattern too');
    }
    const channels = job.channels !== undefined ? planChannels(spec, job.channels) : undefined;
    const heads = job.heads !== undefined ? planHeads(spec, job.heads) : undefined;
    const criterion = job.method as StructuredCriterion;
    const needsWindows = criterion !== 'magnitude' || job.dropBlocks !== undefined;
    const seqlen = job.seqlen ?? Math.min(2048, spec.maxPositions);
    checkWindowArgs(job.nsamples, seqlen, spec.maxPositions);
    // Reduced configs: the same layer count for running blocks, then the output's.
    const base = ckpt.config.quantization_config !== undefined ? withoutCompression(ckpt.config) : ckpt.config;
    const mk = (c: Record<string, unknown>): Architecture => architectureFor(c, configPath, ckpt);
    const headsArch = heads ? mk(reducedConfig(base, spec, { heads })) : arch;
    const reducedArch = channels || heads ? mk(reducedConfig(base, spec, { heads, intermediate: channels?.after })) : arch;

    // With an unstructured pass afterwards the reduced model is staged; the ordinary job writes the output.
    const dir = job.spec ? undefined : new AtomicDir(job.out, { overwrite: job.overwrite, apartFrom: ckpt.dir });
    if (job.spec) {
      // Fail now, not after the structured pass, when the output cannot be written.
      new AtomicDir(job.out, { overwrite: job.overwrite, apartFrom: ckpt.dir }).abort();
      stageDir = tempPathFor(job.out);
    }
    const outPath = dir?.path ?? stageDir!;
    let writer: ShardedSafetensorsWriter | undefined;
    try {
      let windows: Windows | undefined;
      let calibSource = job.calibTokens ?? job.calibration;
      if (needsWindows) {
        if (job.calibTokens) {
          windows = readWindowsFile(job.calibTokens, spec.vocabSize);
          checkWindowArgs(windows.count, windows.seqlen, spec.maxPositions);
        } else {
          say(`drawing ${job.nsamples} calibration windows of ${seqlen} tokens from ${job.calibration}`);
          const corpus = loadCorpus(job.calibration, 'calibration');
          calibSource = corpus.path;
          windows = sampleWindows(corpus, await loadTokenizer(ckpt.dir), job.nsamples, seqlen, job.seed ?? 0);
        }
      }
      if (stageDir) mkdirSync(stageDir);

      // Block ranking happens inside the driver, so the output layout is known only once it has ranked:
      // the writer is created on the first finished block.
      let rename = new Map<string, string>();
      const blockNames = new Set<string>();
      for (let b = 0; b < L; b++) for (const n of arch.blockTensors(b)) blockNames.add(n);
      const startWriter = (kept: number[]): void => {
        const outConfig = reducedConfig(base, spec, { heads, intermediate: channels?.after, kept });
        const outArch = mk(outConfig);
        const specs: TensorSpec[] = [];
        for (const n of ckpt.tensorNames()) if (!blockNames.has(n)) specs.push({ name: n, dtype: ckpt.info(n).dtype, shape: ckpt.info(n).shape });
        for (const [j, b] of kept.entries()) {
          const from = reducedArch.blockTensors(b);
          const to = outArch.blockTensors(j);
          const shapes = shapesOf(outArch, j);
          from.forEach((n, k) => {
            rename.set(`${b}|${n}`, to[k]);
            specs.push({ name: to[k], dtype: ckpt.info(arch.blockTensors(b)[k]).dtype, shape: shapes.get(to[k]) ?? ckpt.info(arch.blockTensors(b)[k]).shape });
          });
        }
        writer = new ShardedSafetensorsWriter(outPath, specs, { metadata: { format: 'pt', producer: `shears ${SHEARS_VERSION}`, shears_method: `${job.method} structured` } });
        for (const n of ckpt.tensorNames()) if (!blockNames.has(n)) writer.write(n, ckpt.readBytes(n));
        writeFileAtomic(join(outPath, 'config.json'), JSON.stringify(outConfig, null, 2) + '\n');
      };

      const result = await runStructured(
        {
          arch, headsArch, reducedArch, src, windows, finite,
          onProgress: say,
          onBlockDone: (b, j, w) => {
            for (const [name, values] of w) writer!.write(rename.get(`${b}|${name}`)!, values);
          },
          onKept: startWriter,
        },
        { channels, heads, dropBlocks: job.dropBlocks, blockScore: job.blockScore ?? 'bi', settings: { criterion, compensate: criterion !== 'magnitude', damp: STRUCTURED_RIDGE } },
      );
      writer!.finish();
      copySideFiles(ckpt.dir, outPath);
      rename = new Map();
      const before = ckpt.tensorNames().reduce((s, n) => s + ckpt.info(n).numel, 0);
      const fileBytes = writer!.files.filter((f) => f.endsWith('.safetensors')).reduce((s, f) => s + statSync(join(outPath, f)).size, 0);
      const after = countParams(outPath);
      const structured: StructuredSection = {
        method: job.method,
        channels,
        heads: heads ? { mode: heads.mode, removePer: heads.removePer, heads: heads.heads, kvHeads: heads.kvHeads, headDim: heads.headDim, note: heads.note } : undefined,
        dropBlocks: result.ranking ? { count: result.dropped.length, metric: result.ranking.metric, dropped: result.dropped, scores: result.ranking.scores, denseNll: result.ranking.denseNll } : undefined,
        blocks: result.blocks,
        params: { before, after },
        fileBytes,
        seconds: (performance.now() - t0) / 1000,
      };
      const calibration = windows ? { source: calibSource, nsamples: windows.count, seqlen: windows.seqlen, seed: job.seed ?? 0 } : null;
      const report: StructuredReport = {
        shears: SHEARS_VERSION, command: job.command ?? '', model: job.model, out: job.out, method: job.method, calibration,
        structured, peakRssBytes: 0, nonFinite: finite.faults,
      };
      if (job.spec) {
        const u = await runPrune({ ...job, spec: job.spec, model: stageDir!, structured });
        report.unstructured = u;
      } else {
        report.peakRssBytes = process.resourceUsage().maxRSS * 1024;
        writeFileAtomic(join(outPath, 'shears-report.json'), JSON.stringify(report, null, 2) + '\n');
        dir!.commit();
      }
      report.peakRssBytes = process.resourceUsage().maxRSS * 1024;
      return report;
    } catch (e) {
      writer?.abort();
      dir?.abort();
      throw e;
    }
  } finally {
    ckpt.close();
    if (stageDir) rmSync(stageDir, { recursive: true, force: true });
  }
}

/** Stored shapes of block j's weights and biases in the reduced adapter (nn.Linear rows/cols; GPT-2's Conv1D transposed). */
function shapesOf(a: Architecture, j: number): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const l of a.linears(j)) {
    m.set(l.tensor, l.transposed ? [l.cols, l.rows] : [l.rows, l.cols]);
    m.set(l.tensor.replace(/\.weight$/, '.bias'), [l.rows]);
  }
  return m;
}

/** Parameters of the written checkpoint, read back through the loader: what was written, not what was planned. */
function countParams(dir: string): number {
  const c = Checkpoint.openFolder(dir);
  try {
    return c.tensorNames().reduce((s, n) => s + c.info(n).numel, 0);
  } finally {
    c.close();
  }
}

/** Side files (tokenizer, generation config, …) copied; weights, their index, config.json and reports are written anew. */
function copySideFiles(from: string, to: string): void {
  for (const entry of readdirSync(from)) {
    const path = join(from, entry);
    if (/\.safetensors$|\.safetensors\.index\.json$|^config\.json$|^shears-report\.json$|\.(bin|pt|pth|msgpack|h5|onnx)$/.test(entry) || !statSync(path).isFile()) continue;
    try {
      copyFileSync(path, join(to, entry));
    } catch (e) {
      throw fileError(join(to, entry), `cannot copy ${entry} from ${from} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }
}
