/** `shears prune <model>`: one-shot pruning into a new HF folder plus shears-report.json. */
import type { CommandModule } from 'yargs';
import { basename } from 'node:path';
import { usageError } from '../errors.js';
import { OWL_DEFAULT_LAMBDA, OWL_DEFAULT_M } from '../prune/owl.js';
import { parseSparsitySpec, describeSpec } from '../prune/spec.js';
import { DEFAULT_MIN_EXPERT_TOKENS, METHODS, type Method } from '../prune/driver.js';
import { runPrune } from '../prune/job.js';
import { checkStructuredArgs, runStructuredPrune } from '../structured/job.js';
import { formatStructuredSummary } from '../structured/summary.js';
import { evaluateModel } from '../eval/evaluate.js';
import { checkDatasetRef } from '../data/datasets.js';
import { formatPruneSummary } from '../report/prune-summary.js';
import { writeLayerPlot } from '../report/layer-plot.js';
import { WEIGHT_FORMATS, type WeightFormat } from '../io/compressed/names.js';

interface Args {
  model: string;
  method: string;
  sparsity?: number;
  pattern?: string;
  out?: string;
  overwrite: boolean;
  calibration: string;
  nsamples: number;
  seqlen?: number;
  seed: number;
  'calib-tokens'?: string;
  'save-calib-tokens'?: string;
  blocksize: number;
  damp: number;
  'true-sequential': boolean;
  'min-expert-tokens': number;
  'include-lm-head': boolean;
  'allow-nonfinite': boolean;
  skip: string[];
  'layer-sparsity'?: string;
  eval?: string;
  'eval-max-tokens'?: number;
  json: boolean;
  format: string;
  wbits?: number;
  plot: boolean;
  refine: boolean;
  owl: boolean;
  'owl-m': number;
  'owl-lambda': number;
  channels?: number;
  heads?: number;
  'drop-blocks'?: number;
  'block-score': string;
}

/** --layer-sparsity: a JSON array (one value per block, null = default) or an object {"block": value}. */
function parseLayerSparsity(text: string | undefined, layers: number | undefined): (number | undefined)[] | undefined {
  if (text === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw usageError(`--layer-sparsity must be JSON (an array or an object of block: sparsity), got ${text}`);
  }
  const out: (number | undefined)[] = [];
  const entries: [string, unknown][] = Array.isArray(v) ? v.map((x, i) => [String(i), x]) : v && typeof v === 'object' ? Object.entries(v) : [];
  if (entries.length === 0) throw usageError('--layer-sparsity must be a non-empty JSON array or object');
  for (const [k, x] of entries) {
    const b = Number(k);
    if (!Number.isInteger(b) || b < 0 || (layers !== undefined && b >= layers)) throw usageError(`--layer-sparsity: "${k}" is not a block index`);
    if (x === null) continue;
    if (typeof x !== 'number' || !(x > 0 && x < 1)) throw usageError(`--layer-sparsity: block ${k} must have a sparsity in (0, 1), got ${JSON.stringify(x)}`);
    out[b] = x;
  }
  return out;
}

export const pruneCommand: CommandModule<object, Args> = {
  builder: (y) =>
    y
      .positional('model', { type: 'string', demandOption: true, describe: 'HF model folder or hub id' })
      .option('method', { type: 'string', default: 'sparsegpt', choices: METHODS as unknown as string[], describe: 'pruning method' })
      .option('sparsity', { type: 'number', describe: 'unstructured sparsity in (0, 1), e.g. 0.5' })
      .option('pattern', { type: 'string', describe: 'N:M semi-structured pattern, e.g. 2:4' })
      .option('out', { type: 'string', describe: 'output folder (default: <model>-<method>-<pattern>)' })
      .option('overwrite', { type: 'boolean', default: false, describe: 'replace an existing output folder' })
      .option('calibration', { type: 'string', default: 'c4', describe: 'c4 | wikitext2 | tinystories | a .txt/.jsonl file' })
      .option('nsamples', { type: 'number', default: 128, describe: 'calibration windows' })
      .option('seqlen', { type: 'number', describe: 'calibration window length (default min(2048, max positions))' })
      .option('seed', { type: 'number', default: 0, describe: 'seed for calibration sampling and --method random' })
      .option('calib-tokens', { type: 'string', describe: 'use exactly these windows (safetensors, one I32/I64 [nsamples, seqlen] tensor)' })
      .option('save-calib-tokens', { type: 'string', describe: 'save the drawn windows to this safetensors file' })
      .option('blocksize', { type: 'number', default: 128, describe: 'SparseGPT column block size' })
      .option('damp', { type: 'number', default: 0.01, describe: 'SparseGPT (and --refine) dampening, fraction of mean(diag H)' })
      .option('owl', { type: 'boolean', default: false, describe: 'OWL: per-block sparsity from each block\'s outlier ratio on the dense model (unstructured only)' })
      .option('owl-m', { type: 'number', default: OWL_DEFAULT_M, describe: 'OWL: a score is an outlier above M x the block\'s mean Wanda score' })
      .option('owl-lambda', { type: 'number', default: OWL_DEFAULT_LAMBDA, describe: 'OWL: block sparsities stay within the target +/- lambda' })
      .option('refine', { type: 'boolean', default: false, describe: 'after the method, re-solve the kept weights of each row on H (PCG, 10 steps, tolerance 1e-4)' })
      .option('allow-nonfinite', { type: 'boolean', default: false, describe: 'go on past NaN/Inf in weights or activations (listed in shears-report.json)' })
      .option('include-lm-head', { type: 'boolean', default: false, describe: 'also prune the LM head (not when tied to the embedding)' })
      .option('true-sequential', { type: 'boolean', default: false, describe: 'prune attention/MLP sub-groups in order, re-running between them' })
      .option('min-expert-tokens', { type: 'number', default: DEFAULT_MIN_EXPERT_TOKENS, describe: 'MoE: an expert routed fewer calibration tokens is pruned by magnitude' })
      .option('skip', { type: 'string', array: true, default: [], describe: 'globs over "<block>.<layer>" or tensor names to keep dense' })
      .option('layer-sparsity', { type: 'string', describe: 'JSON per-block sparsity, e.g. [0.3,0.5,0.6] or {"0":0.3}' })
      .option('eval', { type: 'string', describe: 'evaluate dense and pruned perplexity on this dataset afterwards' })
      .option('eval-max-tokens', { type: 'number', describe: 'with --eval: only the first N tokens' })
      .option('format', { type: 'string', default: 'dense', choices: WEIGHT_FORMATS as unknown as string[], describe: 'weight format of the output (see shears export)' })
      .option('wbits', { type: 'number', choices: [4, 8], describe: 'also quantize the pruned weights to 4 or 8 bits (per-row asymmetric grid)' })
      .option('plot', { type: 'boolean', default: false, describe: 'also write the per-layer plot (shears-layers.svg) beside the report' })
      .option('channels', { type: 'number', describe: 'structured: fraction of MLP intermediate channels removed (same count in every block)' })
      .option('heads', { type: 'number', describe: 'structured: fraction of attention heads removed (rounded to keep GQA groups uniform)' })
      .option('drop-blocks', { type: 'number', describe: 'structured: remove this many whole decoder blocks' })
      .option('block-score', { type: 'string', default: 'bi', choices: ['bi', 'loss'], describe: 'rank blocks by Block Influence or by measured calibration-loss increase' })
      .option('json', { type: 'boolean', default: false, describe: 'print the summary as one JSON object' }),
  handler: async (a) => {
    if (a.channels !== undefined || a.heads !== undefined || a['drop-blocks'] !== undefined) return structuredPrune(a);
    const spec = parseSparsitySpec({ sparsity: a.sparsity, pattern: a.pattern });
    const method = a.method as Method;
    if (!Number.isInteger(a.blocksize) || a.blocksize < 1) throw usageError(`--blocksize must be a positive integer, got ${a.blocksize}`);
    if (!Number.isInteger(a['min-expert-tokens']) || a['min-expert-tokens'] < 0) throw usageError(`--min-expert-tokens must be a non-negative integer, got ${a['min-expert-tokens']}`);
    if (!(a.damp >= 0)) throw usageError(`--damp must be >= 0, got ${a.damp}`);
    if (!Number.isInteger(a.seed) || a.seed < 0) throw usageError(`--seed must be a non-negative integer, got ${a.seed}`);
    // Datasets are checked before the model is opened: an --eval typo must not surface after the pruning.
    if (!a['calib-tokens']) checkDatasetRef(a.calibration, '--calibration dataset');
    if (a.eval !== undefined) checkDatasetRef(a.eval, '--eval dataset');
    const out = a.out ?? `${basename(a.model.replace(/\/+$/, ''))}-${method}-${describeSpec(spec).replace(/[:%]/g, '')}`;
    const progress = a.json ? undefined : (m: string) => process.stderr.write(`\r${m}\x1b[K`);
    const report = await runPrune({
      model: a.model, out, overwrite: a.overwrite, method, spec,
      layerSparsity: parseLayerSparsity(a['layer-sparsity'], undefined),
      skip: a.skip, trueSequential: a['true-sequential'], includeLmHead: a['include-lm-head'], blocksize: a.blocksize, damp: a.damp, seed: a.seed,
      minExpertTokens: a['min-expert-tokens'],
      calibration: a.calibration, nsamples: a.nsamples, seqlen: a.seqlen,
      calibTokens: a['calib-tokens'], saveCalibTokens: a['save-calib-tokens'],
      format: a.format as WeightFormat, wbits: a.wbits, refine: a.refine,
      owl: a.owl ? { m: a['owl-m'], lambda: a['owl-lambda'] } : undefined,
      command: ['shears', ...process.argv.slice(2)].join(' '),
      allowNonfinite: a['allow-nonfinite'],
      onProgress: progress,
    });
    const plot = a.plot ? writeLayerPlot(report, out) : undefined;
    let evals;
    if (a.eval) {
      const allowNonfinite = a['allow-nonfinite'];
      const dense = await evaluateModel({ model: a.model, dataset: a.eval, maxTokens: a['eval-max-tokens'], allowNonfinite, onProgress: progress });
      const pruned = await evaluateModel({ model: out, dataset: a.eval, maxTokens: a['eval-max-tokens'], allowNonfinite, onProgress: progress });
      evals = { dense, pruned };
    }
    if (progress) process.stderr.write('\r\x1b[K');
    const f = report.nonFinite[0];
    if (f) process.stderr.write(`shears: warning: NaN/Inf found in ${report.nonFinite.length} place(s), first in ${f.where} (see "nonFinite" in shears-report.json)\n`);
    process.stdout.write(a.json ? JSON.stringify({ ...report, eval: evals, plot }, null, 2) + '\n' : formatPruneSummary(report, evals) + (plot ? `per-layer plot: ${plot}\n` : ''));
  },
};

/** --channels / --heads / --drop-blocks (optionally with --sparsity / --pattern afterwards): src/structured. */
async function structuredPrune(a: Args): Promise<void> {
  const method = a.method;
  checkStructuredArgs({ channels: a.channels, heads: a.heads, dropBlocks: a['drop-blocks'], blockScore: a['block-score'] as 'bi' | 'loss' }, method);
  const spec = a.sparsity === undefined && a.pattern === undefined ? undefined : parseSparsitySpec({ sparsity: a.sparsity, pattern: a.pattern });
  if (!(a.damp >= 0)) throw usageError(`--damp must be >= 0, got ${a.damp}`);
  if (!Number.isInteger(a.seed) || a.seed < 0) throw usageError(`--seed must be a non-negative integer, got ${a.seed}`);
  if (!a['calib-tokens']) checkDatasetRef(a.calibration, '--calibration dataset');
  if (a.eval !== undefined) checkDatasetRef(a.eval, '--eval dataset');
  const parts = [a.channels !== undefined ? `ch${a.channels}` : '', a.heads !== undefined ? `h${a.heads}` : '', a['drop-blocks'] !== undefined ? `b${a['drop-blocks']}` : ''].filter(Boolean);
  const out = a.out ?? `${basename(a.model.replace(/\/+$/, ''))}-${method}-${parts.join('-')}${spec ? `-${describeSpec(spec).replace(/[:%]/g, '')}` : ''}`;
  const progress = a.json ? undefined : (m: string) => process.stderr.write(`\r${m}\x1b[K`);
  const report = await runStructuredPrune({
    model: a.model, out, overwrite: a.overwrite, method: method as Method, spec,
    channels: a.channels, heads: a.heads, dropBlocks: a['drop-blocks'], blockScore: a['block-score'] as 'bi' | 'loss',
    layerSparsity: parseLayerSparsity(a['layer-sparsity'], undefined),
    skip: a.skip, trueSequential: a['true-sequential'], includeLmHead: a['include-lm-head'], blocksize: a.blocksize, damp: a.damp, seed: a.seed,
    calibration: a.calibration, nsamples: a.nsamples, seqlen: a.seqlen,
    calibTokens: a['calib-tokens'], saveCalibTokens: a['save-calib-tokens'],
    format: a.format as WeightFormat, wbits: a.wbits, refine: a.refine,
    command: ['shears', ...process.argv.slice(2)].join(' '),
    allowNonfinite: a['allow-nonfinite'],
    onProgress: progress,
  });
  let evals;
  if (a.eval) {
    const allowNonfinite = a['allow-nonfinite'];
    const dense = await evaluateModel({ model: a.model, dataset: a.eval, maxTokens: a['eval-max-tokens'], allowNonfinite, onProgress: progress });
    const pruned = await evaluateModel({ model: out, dataset: a.eval, maxTokens: a['eval-max-tokens'], allowNonfinite, onProgress: progress });
    evals = { dense, pruned };
  }
  if (progress) process.stderr.write('\r\x1b[K');
  process.stdout.write(a.json ? JSON.stringify({ ...report, eval: evals }, null, 2) + '\n' : formatStructuredSummary(report, evals));
}
