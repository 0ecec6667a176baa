/**
 * docs/results.md, its plots, and the README's results section, rendered from what scripts/reproduce.ts
 * wrote: its manifest (which runs exist, where their files are, the machine and commit) and the
 * shears-report.json / evaluation / export JSON files the manifest points to. No number is computed
 * anywhere else or typed by hand; the discussion's comparisons are computed from the same files.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { PruneReport } from '../src/prune/job.js';
import { layerPlotSvg } from '../src/report/layer-plot.js';
import { markdownTable, replaceMarked } from '../src/report/markdown.js';
import { lineChart, scatterChart, type Series } from '../src/report/svg/xy.js';
import { knownModels, type KnownModel, type PublishedFigure } from '../src/registry/models.js';
import type { SparseFormat } from '../src/io/compressed/names.js';
import type { Calibration, EvalSettings, MachineInfo, SavedEval, SavedExport } from './experiments.js';

/** What reproduce.ts ran. Paths are relative to the manifest's folder. */
export interface Manifest {
  version: 1;
  quick: boolean;
  /** The command that produced it, e.g. "npx tsx scripts/reproduce.ts". */
  command: string;
  startedAt: string;
  wallSeconds: number;
  shears: string;
  git: { commit: string; dirty: boolean } | null;
  machine: MachineInfo;
  /** The unpruned model: display path, bytes of its weight files, and its two evaluations. */
  model: { name: string; path: string; weightBytes: number; eval: string; contextEval: string };
  calibration: Calibration;
  eval: EvalSettings;
  contextEval: EvalSettings;
  runs: ManifestRun[];
  synthetic: {
    name: string;
    /** The command that generated it. */
    command: string;
    config: Record<string, unknown>;
    parameters: number;
    calibration: Calibration;
    evalSettings: EvalSettings;
    eval: string;
    runs: { method: string; pattern: string; report: string }[];
  } | null;
}

export interface ManifestRun {
  method: string;
  /** "+owl", "+refine", "+owl+refine": the run used those options (tables show method + variant). */
  variant?: string;
  pattern: string;
  checkpoint: string;
  report: string;
  eval: string;
  exports: { format: SparseFormat; file: string }[];
}

export const PLOTS = {
  perplexity: 'perplexity-vs-sparsity.svg',
  layers: 'layers-sparsegpt-50.svg',
  size: 'size-vs-perplexity.svg',
} as const;

/** Perplexity with the precision the tables use (tests read the tolerance back from the printed digits). */
export function fmtPpl(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v >= 1e5) return v.toExponential(2).replace('e+', 'e');
  return v >= 1000 ? v.toFixed(0) : v >= 100 ? v.toFixed(1) : v.toFixed(3);
}
const fmtPct = (f: number): string => `${(100 * f).toFixed(2)}%`;
const fmtKiB = (b: number): string => (b / 1024).toFixed(1);
const fmtS = (s: number): string => s.toFixed(1);
const fmtX = (r: number): string => (r >= 1e5 ? r.toExponential(2).replace('e+', 'e') : r >= 100 ? r.toFixed(0) : r.toFixed(2));

const METHOD_ORDER = ['magnitude', 'random', 'wanda', 'sparsegpt', 'alps'];

/** The fields of the pruned model's config.json the text quotes. */
interface ModelShape {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  vocab_size: number;
}

interface Loaded {
  m: Manifest;
  dir: string;
  /** config.json of the first pruned checkpoint (pruning keeps the architecture). */
  shape: ModelShape | null;
  dense: SavedEval;
  context: SavedEval;
  runs: { run: ManifestRun; report: PruneReport; ev: SavedEval; exports: Map<SparseFormat, SavedExport>; denseFileBytes: number }[];
  synthetic: { eval: SavedEval; reports: PruneReport[] } | null;
}

function read<T>(dir: string, rel: string): T {
  return JSON.parse(readFileSync(join(dir, rel), 'utf8')) as T;
}

/** Everything the document shows, read from the files the manifest lists. */
export function loadResults(manifestPath: string): Loaded {
  const dir = join(manifestPath, '..');
  const m = read<Manifest>(dir, relative(dir, manifestPath));
  const runs = m.runs.map((run) => {
    const report = read<PruneReport>(dir, run.report);
    if (report.method !== run.method || report.pattern !== run.pattern) throw new Error(`${run.report}: report is ${report.method} ${report.pattern}, manifest says ${run.method} ${run.pattern}`);
    const exports = new Map(run.exports.map((e) => [e.format, read<SavedExport>(dir, e.file)] as const));
    // The dense (as pruned) checkpoint's size is what the export read: its sourceBytes.
    const first = [...exports.values()][0];
    return { run, report, ev: read<SavedEval>(dir, run.eval), exports, denseFileBytes: first ? first.sourceBytes : NaN };
  });
  const synthetic = m.synthetic ? { eval: read<SavedEval>(dir, m.synthetic.eval), reports: m.synthetic.runs.map((r) => read<PruneReport>(dir, r.report)) } : null;
  const shape = runs.length ? read<ModelShape>(dir, join(runs[0].run.checkpoint, 'config.json')) : null;
  return { m, dir, shape, dense: read<SavedEval>(dir, m.model.eval), context: read<SavedEval>(dir, m.model.contextEval), runs, synthetic };
}

function patterns(L: Loaded): string[] {
  const seen: string[] = [];
  for (const r of L.runs) if (!seen.includes(r.run.pattern)) seen.push(r.run.pattern);
  const unstructured = seen.filter((p) => p.endsWith('%')).sort((a, b) => parseFloat(a) - parseFloat(b));
  return [...unstructured, ...seen.filter((p) => !p.endsWith('%'))];
}

/** A run's row name: its method, then its variant ("wanda+refine"). */
function key(run: ManifestRun): string {
  return run.method + (run.variant ?? '');
}

function methods(L: Loaded): string[] {
  const seen = [...new Set(L.runs.map((r) => key(r.run)))];
  const order = (k: string) => METHOD_ORDER.indexOf(k.split('+')[0]) * 8 + VARIANT_ORDER.indexOf(k.slice(k.split('+')[0].length));
  return seen.sort((a, b) => order(a) - order(b));
}

const VARIANT_ORDER = ['', '+owl', '+refine', '+owl+refine'];

function find(L: Loaded, method: string, pattern: string): Loaded['runs'][number] | undefined {
  return L.runs.find((r) => key(r.run) === method && r.run.pattern === pattern);
}

/** The headline: perplexity per method (rows) and pattern (columns). */
export function gridTable(L: Loaded): string {
  const ps = patterns(L);
  const rows = [['method', ...ps]];
  for (const meth of methods(L)) rows.push([meth, ...ps.map((p) => (find(L, meth, p) ? fmtPpl(find(L, meth, p)!.ev.perplexity) : '–'))]);
  return markdownTable(rows);
}

function denseTable(L: Loaded, published: PublishedFigure | null): string {
  const rows = [['model', 'eval seqlen', 'windows', 'tokens', 'perplexity', 'published']];
  rows.push([L.m.model.name, String(L.dense.seqlen), String(L.dense.windows), String(L.dense.tokens), fmtPpl(L.dense.perplexity), '–']);
  rows.push([L.m.model.name, String(L.context.seqlen), String(L.context.windows), String(L.context.tokens), fmtPpl(L.context.perplexity), published ? `${published.perplexity} (seqlen ${published.seqlen})` : '–']);
  return markdownTable(rows);
}

function runsTable(L: Loaded): string {
  const rows = [['method', 'pattern', 'realised sparsity', 'N:M holds', 'perplexity', '× dense', 'dense KiB', 'sparse-bitmask KiB', 'sparse-24-bitmask KiB', 'prune s', 'eval s']];
  for (const p of patterns(L)) {
    for (const meth of methods(L)) {
      const r = find(L, meth, p);
      if (!r) continue;
      const x = (f: SparseFormat): string => (r.exports.has(f) ? fmtKiB(r.exports.get(f)!.fileBytes) : '–');
      rows.push([
        meth,
        p,
        fmtPct(r.report.sparsity),
        r.report.nmOk === undefined ? '–' : r.report.nmOk ? 'yes' : 'NO',
        fmtPpl(r.ev.perplexity),
        fmtX(r.ev.perplexity / L.dense.perplexity),
        fmtKiB(r.denseFileBytes),
        x('sparse-bitmask'),
        x('sparse-24-bitmask'),
        fmtS(r.report.timings.total),
        fmtS(r.ev.seconds),
      ]);
    }
  }
  return markdownTable(rows);
}

function syntheticTables(L: Loaded): string {
  if (!L.synthetic || !L.m.synthetic) return '';
  const s = L.m.synthetic;
  const rows = [['method', 'pattern', 'calibration', 'forward s', 'statistics s', 'pruning s', 'total s', 'process peak RSS MiB']];
  for (const r of L.synthetic.reports) {
    rows.push([
      r.method,
      r.pattern,
      r.calibration ? `${r.calibration.nsamples} × ${r.calibration.seqlen}` : 'none',
      fmtS(r.timings.forward),
      fmtS(r.timings.statistics),
      fmtS(r.timings.pruning),
      fmtS(r.timings.total),
      (r.peakRssBytes / 2 ** 20).toFixed(0),
    ]);
  }
  const e = L.synthetic.eval;
  const evalRows = [['model', 'eval seqlen', 'tokens', 'seconds', 'tokens/s'], [s.name, String(e.seqlen), String(e.tokens), fmtS(e.seconds), e.tokensPerSecond.toFixed(0)]];
  return [
    `A synthetic Llama with random weights (${(s.parameters / 1e6).toFixed(1)}M parameters: ${describeConfig(s.config)}; F32), generated by scripts/synthetic-model.ts, shows what pruning costs at a size closer to real models. Its perplexity means nothing (random weights), so only times are reported. Calibration is reduced to ${s.calibration.nsamples} × ${s.calibration.seqlen} tokens (the papers use 128 × 2048) to keep the run short; the forward and statistics times grow linearly with it.`,
    '',
    markdownTable(rows),
    'Peak RSS is the whole reproduce process\'s running maximum (Node reports no per-run peak), so it bounds each run from above.',
    '',
    'Evaluation speed of the dense synthetic model:',
    '',
    markdownTable(evalRows),
  ].join('\n');
}

function describeConfig(c: Record<string, unknown>): string {
  return `hidden ${c.hidden}, ${c.layers} layers, intermediate ${c.intermediate}, ${c.heads} heads, vocab ${c.vocab}`;
}

interface Comparison {
  model: string;
  dataset: string;
  seqlen: number;
  rows: { setting: string; published: number; ours?: number }[];
  dense: number;
  source: string;
}

/** Published figures of the largest model in models.json that has dense and pruned numbers (LLaMA-2-7B). */
function publishedComparison(L: Loaded, models: KnownModel[]): Comparison | null {
  const m = models.find((k) => k.id === 'meta-llama/Llama-2-7b-hf') ?? models.find((k) => Object.keys(k.perplexity.wikitext2 ?? {}).length > 3);
  const w = m?.perplexity.wikitext2;
  if (!m || !w?.dense) return null;
  const rows: Comparison['rows'] = [];
  for (const [setting, f] of Object.entries(w)) {
    if (setting === 'dense' || !f) continue;
    const [method, pattern] = [setting.slice(0, setting.indexOf('-')), setting.slice(setting.indexOf('-') + 1)];
    rows.push({ setting: `${method} ${pattern}`, published: f.perplexity, ours: find(L, method, pattern)?.ev.perplexity });
  }
  return { model: m.id, dataset: 'WikiText-2', seqlen: w.dense.seqlen, rows, dense: w.dense.perplexity, source: w.dense.source };
}

function comparisonTable(L: Loaded, c: Comparison): string {
  const rows = [['setting', `${c.model} (published)`, '× dense', `${L.m.model.name} (ours)`, '× dense']];
  rows.push(['dense', String(c.dense), '1.00', fmtPpl(L.dense.perplexity), '1.00']);
  for (const r of c.rows) {
    rows.push([r.setting, String(r.published), fmtX(r.published / c.dense), r.ours !== undefined ? fmtPpl(r.ours) : '–', r.ours !== undefined ? fmtX(r.ours / L.dense.perplexity) : '–']);
  }
  return markdownTable(rows);
}

/** SparseGPT 50% relative to dense for every model in models.json that has both (the size trend). */
function sizeTrendTable(L: Loaded, models: KnownModel[]): string {
  const rows = [['model', 'dataset', 'dense', 'SparseGPT 50%', '× dense', 'source']];
  for (const m of models) {
    for (const [ds, settings] of Object.entries(m.perplexity)) {
      const d = settings?.dense;
      const s = settings?.['sparsegpt-50%'];
      if (d && s) rows.push([m.id, ds, String(d.perplexity), String(s.perplexity), fmtX(s.perplexity / d.perplexity), s.source]);
    }
  }
  const ours = find(L, 'sparsegpt', '50%');
  if (ours) rows.push([`${L.m.model.name} (ours)`, 'tinystories', fmtPpl(L.dense.perplexity), fmtPpl(ours.ev.perplexity), fmtX(ours.ev.perplexity / L.dense.perplexity), 'this page']);
  return markdownTable(rows, ['l', 'l', 'r', 'r', 'r', 'l']);
}

function bestAt(L: Loaded, pattern: string): { method: string; ppl: number } | null {
  let best: { method: string; ppl: number } | null = null;
  for (const meth of methods(L)) {
    const r = find(L, meth, pattern);
    if (r && Number.isFinite(r.ev.perplexity) && (!best || r.ev.perplexity < best.ppl)) best = { method: meth, ppl: r.ev.perplexity };
  }
  return best;
}

function discussion(L: Loaded, c: Comparison | null, models: KnownModel[]): string {
  const d = L.dense.perplexity;
  const ratioOf = (meth: string, p: string): number | undefined => {
    const r = find(L, meth, p);
    return r ? r.ev.perplexity / d : undefined;
  };
  const said = (meth: string, p: string): string => {
    const r = find(L, meth, p);
    return r ? `${fmtPpl(r.ev.perplexity)} (×${fmtX(r.ev.perplexity / d)})` : 'not run';
  };
  const ps = patterns(L).filter((p) => p.endsWith('%'));
  const hi = ps[ps.length - 1];
  const out: string[] = [];
  out.push(
    `**What we measured.** The dense stories260K scores ${fmtPpl(d)} on the evaluation text. At 50% unstructured sparsity ` +
      `magnitude pruning gives ${said('magnitude', '50%')}, Wanda ${said('wanda', '50%')} and SparseGPT ${said('sparsegpt', '50%')}` +
      (find(L, 'random', '50%') ? `; random pruning, the floor, gives ${said('random', '50%')}` : '') +
      `. At ${hi}: magnitude ${said('magnitude', hi)}, Wanda ${said('wanda', hi)}, SparseGPT ${said('sparsegpt', hi)}.`,
  );
  const bests = patterns(L)
    .map((p) => ({ p, b: bestAt(L, p) }))
    .filter((x) => x.b)
    .map((x) => `${x.p}: ${x.b!.method} (${fmtPpl(x.b!.ppl)})`);
  out.push(`The lowest perplexity per pattern: ${bests.join('; ')}.`);
  if (c) {
    const pub = (s: string): string => {
      const r = c.rows.find((x) => x.setting === s);
      return r ? `${r.published} (×${fmtX(r.published / c.dense)})` : 'not published';
    };
    const both = c.rows.filter((r) => r.ours !== undefined);
    const worse = both.filter((r) => r.ours! / d > r.published / c.dense);
    const verdict =
      both.length === 0
        ? 'None of those settings was run here.'
        : worse.length === both.length
          ? `In every setting both have (${both.length}), our tiny model loses more relative to its dense perplexity than ${c.model} does.`
          : `Our tiny model loses more relative to its dense perplexity than ${c.model} in ${worse.length} of the ${both.length} settings both have (${worse.map((r) => r.setting).join(', ') || 'none'}).`;
    out.push(
      '',
      `**What the papers measured on 7B.** For ${c.model} on ${c.dataset} (seqlen ${c.seqlen}; ${c.source}) the dense model scores ${c.dense}; at 50% ` +
        `magnitude gives ${pub('magnitude 50%')}, Wanda ${pub('wanda 50%')}, SparseGPT ${pub('sparsegpt 50%')}; at 2:4 magnitude ${pub('magnitude 2:4')}, ` +
        `Wanda ${pub('wanda 2:4')}, SparseGPT ${pub('sparsegpt 2:4')}. ${verdict} The ratios to dense are the fair comparison, not the raw perplexities, ` +
        'which come from different text (TinyStories vs WikiText-2), tokenizers (512 vs 32,000 tokens) and window lengths.',
    );
  }
  const newer = newerMethods(L);
  if (newer) out.push('', newer);
  const opt = (id: string): number | undefined => {
    const w = models.find((m) => m.id === id)?.perplexity.wikitext2;
    return w?.dense && w['sparsegpt-50%'] ? w['sparsegpt-50%'].perplexity / w.dense.perplexity : undefined;
  };
  const [o125, o13] = [opt('facebook/opt-125m'), opt('facebook/opt-1.3b')];
  const trend =
    o125 !== undefined && o13 !== undefined
      ? ` The models.json figures in the table below show it within one family: SparseGPT at 50% multiplies OPT-125M's perplexity by ${fmtX(o125)} and OPT-1.3B's by ${fmtX(o13)}.`
      : '';
  const [wm, ww, ws] = [ratioOf('magnitude', '50%'), ratioOf('wanda', '50%'), ratioOf('sparsegpt', '50%')];
  const wandaHere =
    wm !== undefined && ww !== undefined && ws !== undefined
      ? ` Here, at 50%, Wanda's ratio to dense is ×${fmtX(ww)} against magnitude's ×${fmtX(wm)} and SparseGPT's ×${fmtX(ws)}.`
      : '';
  out.push(
    '',
    '**Why a 260K-parameter model degrades more than a 7B one.**',
    '',
    L.shape
      ? `- *Little redundancy.* stories260K computes each output of a linear layer from ${L.shape.hidden_size} inputs (${L.shape.intermediate_size} in the MLP down projection); ` +
        `removing half leaves ${L.shape.hidden_size / 2}. LLaMA-2-7B has 4096 (11008) inputs per output. SparseGPT compensates a removed weight by adjusting ` +
        `the remaining weights of the same row; with ${L.shape.hidden_size / 2} survivors there is little to adjust with, and each survivor carries more of the function.`
      : '- *Little redundancy.* A tiny model has few inputs per output to spread a removed weight\'s contribution over.',
    `- *The papers saw the same trend.* In the SparseGPT paper's OPT results (Table 1) the relative cost of pruning shrinks as the models grow.${trend}`,
    "- *Wanda's premise is a large-model phenomenon.* Wanda weights magnitudes by input activation norms because LLMs develop a few input features with very large " +
      `activations (emergent outlier features, reported from about 6.7B parameters by Dettmers et al. 2022); a model this small need not have them.${wandaHere}`,
    '- *Capacity is already spent.* stories260K is trained to fit TinyStories as well as 260K parameters allow; large models are over-parameterised for their data, ' +
      'which is what one-shot pruning without retraining relies on.',
  );
  const s50 = ratioOf('sparsegpt', '50%');
  const sHi = ratioOf('sparsegpt', hi);
  if (s50 !== undefined && sHi !== undefined) {
    out.push(
      '',
      "**The rule of thumb.** The project's seed material says typical networks keep their accuracy at 50% sparsity and lose 1–2% at 90%. That comes from " +
        'pruning with retraining (gradual magnitude pruning, classifier accuracy); shears prunes one-shot without retraining, and perplexity is more sensitive than top-1 accuracy. ' +
        `With SparseGPT we measured ×${fmtX(s50)} perplexity at 50% and ×${fmtX(sHi)} at ${hi} on this model` +
        (s50 > 1.05 ? ', so the rule of thumb does not describe one-shot pruning of a model this small.' : ', close to the rule of thumb at 50%.'),
    );
  }
  return out.join('\n');
}

/**
 * Issue 12's claims, read from the grid: ALPS against SparseGPT, OWL against uniform sparsity, and --refine
 * against the method alone, each where both runs exist. Empty when the grid has none of them.
 */
function newerMethods(L: Loaded): string {
  const ppl = (meth: string, p: string): number | undefined => find(L, meth, p)?.ev.perplexity;
  const pairs = (a: string, b: string, ps: string[]): string[] =>
    ps.flatMap((p) => {
      const [x, y] = [ppl(a, p), ppl(b, p)];
      return x === undefined || y === undefined ? [] : [`${p} ${fmtPpl(x)} vs ${fmtPpl(y)}${x < y ? '' : ' (not better)'}`];
    });
  const all = patterns(L);
  const lines: string[] = [];
  const alps = pairs('alps', 'sparsegpt', all);
  if (alps.length) lines.push(`- ALPS against SparseGPT (same calibration): ${alps.join('; ')}.`);
  const owl = [...pairs('sparsegpt+owl', 'sparsegpt', all).map((x) => `SparseGPT ${x}`), ...pairs('wanda+owl', 'wanda', all).map((x) => `Wanda ${x}`), ...pairs('alps+owl', 'alps', all).map((x) => `ALPS ${x}`)];
  if (owl.length) lines.push(`- With --owl against uniform sparsity: ${owl.join('; ')}.`);
  const refine = [...pairs('wanda+refine', 'wanda', all).map((x) => `Wanda ${x}`), ...pairs('sparsegpt+refine', 'sparsegpt', all).map((x) => `SparseGPT ${x}`)];
  if (refine.length) lines.push(`- With --refine against the method alone: ${refine.join('; ')}.`);
  return lines.length ? ['**The newer methods** (perplexity, lower is better; the first figure is the newer one):', '', ...lines].join('\n') : '';
}

function commandsBlock(L: Loaded): string {
  const lines = [L.m.command, '', '# the same, one step at a time:', L.dense.command, L.context.command];
  for (const r of L.runs) {
    lines.push(r.report.command, r.ev.command, ...[...r.exports.values()].map((x) => x.command));
  }
  if (L.synthetic) {
    lines.push(L.m.synthetic!.command);
    lines.push(...L.synthetic.reports.map((r) => r.command), L.synthetic.eval.command);
  }
  return ['```sh', ...lines, '```'].join('\n');
}

/** The three plots, as SVG text by file name. */
export function renderPlots(L: Loaded): Record<string, string> {
  // Random pruning sits orders of magnitude above the rest and would flatten them; the tables have it.
  const ms = methods(L).filter((m) => m !== 'random');
  const ups = patterns(L).filter((p) => p.endsWith('%'));
  const series: Series[] = ms.map((meth) => ({
    name: meth,
    points: ups.flatMap((p) => {
      const r = find(L, meth, p);
      return r ? [{ x: 100 * r.report.sparsity, y: r.ev.perplexity }] : [];
    }),
  }));
  const ctx = `${L.m.model.name}, ${L.dense.dataset} validation text (${L.dense.tokens} tokens, ${L.dense.seqlen}-token windows); calibration ${L.m.calibration.nsamples} × ${L.m.calibration.seqlen}`;
  const perplexity = lineChart({
    title: 'Perplexity vs unstructured sparsity, per pruning method',
    subtitle: ctx + (methods(L).includes('random') ? '; random pruning, orders of magnitude higher, is left to the tables' : ''),
    xLabel: 'realised sparsity of the pruned layers (%)',
    yLabel: 'perplexity (log scale, lower is better)',
    yScale: 'log',
    // the requested sparsities, padded by 5 points: realised values sit within a point of them
    xDomain: ups.length ? [Math.min(...ups.map(parseFloat)) - 5, Math.max(...ups.map(parseFloat)) + 5] : undefined,
    series,
    references: [{ name: `dense (${fmtPpl(L.dense.perplexity)})`, y: L.dense.perplexity }],
  });

  const sg = find(L, 'sparsegpt', '50%') ?? L.runs.find((r) => r.run.method === 'sparsegpt' && !r.run.variant);
  const layers = sg ? layerPlotSvg({ ...sg.report, model: L.m.model.name }, `${L.m.model.name}, SparseGPT ${sg.run.pattern}: realised sparsity and reconstruction loss per layer`) : '';

  const sgRuns = L.runs.filter((r) => r.run.method === 'sparsegpt' && !r.run.variant);
  const formats: { name: string; pick: (r: Loaded['runs'][number]) => number | undefined }[] = [
    { name: 'dense float32 (as pruned)', pick: (r) => r.denseFileBytes },
    { name: 'sparse-bitmask', pick: (r) => r.exports.get('sparse-bitmask')?.fileBytes },
    { name: 'sparse-24-bitmask (2:4 only)', pick: (r) => r.exports.get('sparse-24-bitmask')?.fileBytes },
  ];
  const sizeSeries: Series[] = formats.map((f, i) => ({
    name: f.name,
    // 2:4 points of the two compressed formats sit side by side: label the smaller one on its left.
    labelSide: f.name.startsWith('sparse-24') ? ('left' as const) : ('right' as const),
    points: [
      ...(i === 0 ? [{ x: L.m.model.weightBytes / 1024, y: L.dense.perplexity, label: 'unpruned' }] : []),
      ...sgRuns.flatMap((r) => {
        const b = f.pick(r);
        return b === undefined || !Number.isFinite(b) ? [] : [{ x: b / 1024, y: r.ev.perplexity, label: r.run.pattern }];
      }),
    ],
  }));
  const size = scatterChart({
    title: 'Weight file size vs perplexity, per storage format (SparseGPT runs)',
    subtitle: `${L.m.model.name}; the compressed formats are lossless, so a run keeps its perplexity in every format`,
    xLabel: 'weight files on disk (KiB)',
    yLabel: 'perplexity (log scale, lower is better)',
    yScale: 'log',
    xIncludeZero: true,
    series: sizeSeries,
  });
  return { [PLOTS.perplexity]: perplexity, ...(layers ? { [PLOTS.layers]: layers } : {}), [PLOTS.size]: size };
}

function machineLine(L: Loaded): string {
  const mi = L.m.machine;
  return `${mi.logicalCores} logical cores of ${mi.cpuModel}, ${(mi.memoryBytes / 2 ** 30).toFixed(1)} GiB memory, Node.js ${mi.node}, ${mi.os}`;
}

function gitLine(L: Loaded): string {
  if (!L.m.git) return 'not run from a git checkout';
  return `commit \`${L.m.git.commit}\`${L.m.git.dirty ? ' (the working tree had uncommitted changes)' : ''}`;
}

export function renderResults(L: Loaded): string {
  const models = knownModels();
  const own = models.find((k) => k.bundled && k.id.endsWith(L.m.model.name));
  const published = own?.perplexity.tinystories?.dense ?? null;
  const c = publishedComparison(L, models);
  const e = L.m.eval;
  const parts = [
    '# Results',
    '',
    `Generated by \`${L.m.command}\` on ${L.m.startedAt.slice(0, 10)} (${fmtS(L.m.wallSeconds / 60)} minutes). Do not edit: every number on this page is read from the`,
    'shears-report.json, evaluation and export files that the script wrote (paths in its manifest.json), and rewritten on each run.',
    L.m.quick ? '\n**Quick mode** (reduced grid and samples, for the test suite): these numbers are not the published results.\n' : '',
    `- shears ${L.m.shears}, ${gitLine(L)}`,
    `- machine: ${machineLine(L)}. Other jobs shared these cores while it ran, so times are noisy; compare them within a table, not across machines.`,
    `- model: \`${L.m.model.path}\` (Karpathy's llama2.c stories260K, trained on TinyStories${L.shape ? `: Llama, ${L.shape.num_hidden_layers} blocks, hidden ${L.shape.hidden_size}, MLP ${L.shape.intermediate_size}, ${L.shape.num_attention_heads} heads / ${L.shape.num_key_value_heads} KV heads, vocab ${L.shape.vocab_size}` : ''})`,
    `- calibration: ${L.m.calibration.nsamples} windows × ${L.m.calibration.seqlen} tokens of ${L.m.calibration.calibration} train text, seed ${L.m.calibration.seed}`,
    `- evaluation: perplexity on ${e.maxTokens !== undefined ? `the first ${e.maxTokens} tokens of ` : ''}the shipped TinyStories validation text (${L.dense.tokens} tokens in ${L.dense.windows} non-overlapping windows of ${L.dense.seqlen}), as the SparseGPT/Wanda papers evaluate`,
    '- sparsity: exact zeros over all pruned linear layers (embeddings, norms and the tied LM head stay dense); file sizes are the weight files (safetensors) in KiB',
    '',
    '## Perplexity after pruning',
    '',
    gridTable(L),
    `Dense model: ${fmtPpl(L.dense.perplexity)}. ![Perplexity vs sparsity](${PLOTS.perplexity})`,
    '',
    '## Dense model',
    '',
    denseTable(L, published),
    published
      ? `Published: ${published.source}${published.note ? `; ${published.note}` : ''}. The second row uses the published window length (${published.seqlen}) on the text shears ships.`
      : '',
    '',
    '## Every run',
    '',
    runsTable(L),
    '"N:M holds": every group of M consecutive weights of every row has at least N zeros. Sizes: the pruned checkpoint as written (dense float32) and exported losslessly to ' +
      'compressed-tensors formats with `shears export` (sparse-24-bitmask only where the weights are exactly 2:4). Embeddings, norms and the LM head stay dense in every format. ' +
      'Realised sparsity differs from the target where the rules say so: Wanda removes a whole number of weights per row (⌊sparsity × inputs⌋, as its reference code does), ' +
      'which falls short of the target when sparsity × inputs is not a whole number; an N:M tail group shorter than M (a row length that is not a multiple of M) loses min(N, its length).',
    '',
    `![Weight file size vs perplexity](${PLOTS.size})`,
    '',
    `![Per-layer sparsity and reconstruction loss](${PLOTS.layers})`,
    '',
    '## Timing on a ~100M-parameter model',
    '',
    syntheticTables(L),
    '',
    '## Compared with the published 7B results',
    '',
    c ? comparisonTable(L, c) : 'models.json has no published pruning figures.',
    c ? `Published figures from models.json (${c.source}; WikiText-2, seqlen ${c.seqlen}). Ours: ${L.m.model.name} on TinyStories as above.` : '',
    '',
    discussion(L, c, models),
    '',
    sizeTrendTable(L, models),
    '',
    '## Commands',
    '',
    'Everything above, regenerated (outputs under the manifest\'s folder):',
    '',
    commandsBlock(L),
    '',
  ];
  return parts.join('\n').replace(/\n{3,}/g, '\n\n');
}

/** The README's results section: the headline table and a pointer to the rest. */
export function renderReadmeSection(L: Loaded): string {
  const sg = find(L, 'sparsegpt', '50%');
  const c = publishedComparison(L, knownModels());
  const pub = c?.rows.find((r) => r.setting === 'sparsegpt 50%');
  return [
    `Perplexity of the bundled stories260K on TinyStories validation text after one-shot pruning (dense: ${fmtPpl(L.dense.perplexity)}; calibration ${L.m.calibration.nsamples} × ${L.m.calibration.seqlen}, ${L.dense.seqlen}-token windows), generated by \`${L.m.command}\`:`,
    '',
    gridTable(L).trimEnd(),
    '',
    sg && c && pub
      ? `SparseGPT at 50% multiplies perplexity by ${fmtX(sg.ev.perplexity / L.dense.perplexity)} here and by ${fmtX(pub.published / c.dense)} for ${c.model} (published)` +
        (sg.ev.perplexity / L.dense.perplexity > pub.published / c.dense ? ': a 260K-parameter model has far less redundancy to lose than a 7B one. ' : '. ') +
        'Machine, commands, file sizes, per-layer plots, timing on a ~100M model and the discussion: [docs/results.md](docs/results.md).'
      : 'Machine, commands, file sizes, plots and timings: [docs/results.md](docs/results.md).',
    '',
    `![Perplexity vs sparsity](docs/${PLOTS.perplexity})`,
  ].join('\n');
}

/** Write results.md and the plots into `docsDir`, and the README section when a README path is given. */
export function writeDocs(manifestPath: string, docsDir: string, readme: string | null): { files: string[]; readmeUpdated: boolean } {
  const L = loadResults(manifestPath);
  mkdirSync(docsDir, { recursive: true });
  const files: string[] = [];
  for (const [name, svg] of Object.entries(renderPlots(L))) {
    writeFileSync(join(docsDir, name), svg);
    files.push(join(docsDir, name));
  }
  // Sections written by other scripts (structured: scripts/structured-results.ts) are kept across re-renders.
  const previous = existsSync(join(docsDir, 'results.md')) ? readFileSync(join(docsDir, 'results.md'), 'utf8') : '';
  const kept = ['structured'].map((k) => new RegExp(`<!-- ${k}:start -->[\\s\\S]*?<!-- ${k}:end -->`).exec(previous)?.[0]).filter((x) => x);
  writeFileSync(join(docsDir, 'results.md'), renderResults(L) + kept.map((x) => `\n${x}\n`).join(''));
  files.push(join(docsDir, 'results.md'));
  let readmeUpdated = false;
  if (readme) {
    const doc = readFileSync(readme, 'utf8');
    const next = replaceMarked(doc, 'results', renderReadmeSection(L));
    if (next === null) throw new Error(`${readme}: no <!-- results:start --> / <!-- results:end --> markers to write the results between`);
    writeFileSync(readme, next);
    readmeUpdated = true;
  }
  return { files, readmeUpdated };
}
