/**
 * Regenerates every number in docs/results.md and the README's results section.
 *
 *   npx tsx scripts/reproduce.ts [--quick] [--work DIR] [--docs DIR] [--readme FILE|none] [--render-only]
 *
 * Full grid on the bundled stories260K: dense; magnitude, random, Wanda, SparseGPT, ALPS at 50/60/70/80%
 * unstructured and at 2:4 and 4:8 (also Wanda, SparseGPT and ALPS with --owl at the unstructured
 * sparsities, Wanda and SparseGPT with --refine at all of them, and Wanda with both; ALPS ends with the
 * same PCG step, so --refine adds nothing to it); TinyStories calibration 128 × 256, seed 0; perplexity on the whole
 * shipped TinyStories validation text in 256-token windows (and the dense model also at its 512-token
 * context); every pruned checkpoint exported losslessly to sparse-bitmask (and 2:4 ones to
 * sparse-24-bitmask). Then a synthetic ~100M-parameter Llama pruned with magnitude, Wanda and SparseGPT at
 * 50% (calibration reduced to 32 × 256) for timing. Each step writes its JSON beside its checkpoint; the
 * manifest (DIR/manifest.json) lists them, and docs are rendered from those files only.
 *
 * --quick: magnitude and SparseGPT at 50%, 80% and 2:4, 16 × 64 calibration, 4096 evaluation tokens,
 * and a tiny synthetic model — the same code paths in well under a minute (the test suite runs it).
 * Defaults: --work out/reproduce (quick: out/reproduce-quick), --docs docs (quick: DIR/docs),
 * --readme README.md (quick: none). --render-only re-renders the docs from an existing manifest.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { ShearsError } from '../src/errors.js';
import type { SparsitySpec } from '../src/prune/spec.js';
import type { Method } from '../src/prune/driver.js';
import { SHEARS_VERSION } from '../src/version.js';
import {
  BUNDLED_MODEL, ROOT, Progress, variantSuffix, compressedFormatFor, displayPath, evaluate, exportTo, gitState, label, machineInfo, prune, settingId, weightFileBytes, writeJson,
  type Calibration, type EvalSettings, type Setting,
} from './experiments.js';
import { DEFAULT_SYNTHETIC, writeSyntheticLlama, type SyntheticLlama } from './synthetic-model.js';
import { writeDocs, type Manifest, type ManifestRun } from './results-doc.js';
import type { SparseFormat } from '../src/io/compressed/names.js';

interface Plan {
  methods: Method[];
  /** More settings at every spec, after the plain methods: methods with --owl and/or --refine (OWL: unstructured specs only), and ALPS. */
  variants?: Omit<Setting, 'spec'>[];
  specs: SparsitySpec[];
  calibration: Calibration;
  eval: EvalSettings;
  contextEval: EvalSettings;
  synthetic: { config: SyntheticLlama; methods: Method[]; spec: SparsitySpec; calibration: Calibration; eval: EvalSettings } | null;
}

const u = (sparsity: number): SparsitySpec => ({ kind: 'unstructured', sparsity });
const nm = (n: number, m: number): SparsitySpec => ({ kind: 'nm', n, m });

export const FULL: Plan = {
  methods: ['magnitude', 'random', 'wanda', 'sparsegpt'],
  variants: [
    { method: 'wanda', owl: true }, { method: 'sparsegpt', owl: true },
    { method: 'wanda', refine: true }, { method: 'sparsegpt', refine: true }, { method: 'wanda', owl: true, refine: true },
    { method: 'alps' }, { method: 'alps', owl: true },
  ],
  // Issue 12's grid. 90% (in earlier versions) took a fifth of the run and showed nothing new: every method
  // is far from dense there on a model this small.
  specs: [u(0.5), u(0.6), u(0.7), u(0.8), nm(2, 4), nm(4, 8)],
  calibration: { calibration: 'tinystories', nsamples: 128, seqlen: 256, seed: 0 },
  eval: { dataset: 'tinystories', seqlen: 256 },
  contextEval: { dataset: 'tinystories', seqlen: 512 },
  synthetic: {
    config: DEFAULT_SYNTHETIC,
    methods: ['magnitude', 'wanda', 'sparsegpt'],
    spec: u(0.5),
    calibration: { calibration: 'tinystories', nsamples: 32, seqlen: 256, seed: 0 },
    eval: { dataset: 'tinystories', seqlen: 256, maxTokens: 8192 },
  },
};

export const QUICK: Plan = {
  methods: ['magnitude', 'sparsegpt'],
  specs: [u(0.5), u(0.8), nm(2, 4)],
  calibration: { calibration: 'tinystories', nsamples: 16, seqlen: 64, seed: 0 },
  eval: { dataset: 'tinystories', seqlen: 128, maxTokens: 4096 },
  contextEval: { dataset: 'tinystories', seqlen: 512, maxTokens: 4096 },
  synthetic: {
    config: { ...DEFAULT_SYNTHETIC, hidden: 64, layers: 2, intermediate: 128, heads: 4, kvHeads: 4, maxPositions: 512 },
    methods: ['sparsegpt'],
    spec: u(0.5),
    calibration: { calibration: 'tinystories', nsamples: 8, seqlen: 64, seed: 0 },
    eval: { dataset: 'tinystories', seqlen: 64, maxTokens: 1024 },
  },
};

interface Args {
  quick: boolean;
  work: string;
  docs: string;
  readme: string | null;
  renderOnly: boolean;
}

function parseArgs(argv: string[]): Args {
  const quick = argv.includes('--quick');
  const a: Args = { quick, work: join(ROOT, 'out', quick ? 'reproduce-quick' : 'reproduce'), docs: '', readme: quick ? null : join(ROOT, 'README.md'), renderOnly: false };
  let docs: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--quick':
        break;
      case '--render-only':
        a.renderOnly = true;
        break;
      case '--work':
        if (!v) throw new ShearsError('reproduce: --work needs a folder', 2);
        a.work = resolve(v), i++;
        break;
      case '--docs':
        if (!v) throw new ShearsError('reproduce: --docs needs a folder', 2);
        docs = resolve(v), i++;
        break;
      case '--readme':
        if (!v) throw new ShearsError('reproduce: --readme needs a file or "none"', 2);
        a.readme = v === 'none' ? null : resolve(v), i++;
        break;
      default:
        throw new ShearsError(`reproduce: unknown option ${argv[i]} (options: --quick, --work DIR, --docs DIR, --readme FILE|none, --render-only)`, 2);
    }
  }
  a.docs = docs ?? (quick ? join(a.work, 'docs') : join(ROOT, 'docs'));
  return a;
}

/** Run the plan, writing every result under `work`; returns the manifest's path. */
export async function runPlan(plan: Plan, work: string, command: string, quick: boolean): Promise<string> {
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  mkdirSync(work, { recursive: true });
  const rel = (p: string): string => relative(work, p);
  const model = BUNDLED_MODEL;
  const settings: Setting[] = plan.specs.flatMap((spec) => [
    ...plan.methods.map((method) => ({ method, spec })),
    ...(plan.variants ?? []).filter((v) => !v.owl || spec.kind === 'unstructured').map((v) => ({ ...v, spec })),
  ]);
  const syn = plan.synthetic;
  const progress = new Progress(2 + settings.length * 3 + (syn ? 2 + syn.methods.length : 0));

  let say = progress.begin(`dense stories260K: evaluating (${plan.eval.seqlen}-token windows)`);
  const denseEval = join(work, 'evals', 'dense.json');
  let e = await evaluate(model, plan.eval, denseEval, say);
  progress.end(`perplexity ${e.perplexity.toFixed(3)} over ${e.tokens} tokens (${e.seconds.toFixed(1)} s)`);
  say = progress.begin(`dense stories260K: evaluating (${plan.contextEval.seqlen}-token windows)`);
  const contextEval = join(work, 'evals', `dense-seqlen${plan.contextEval.seqlen}.json`);
  e = await evaluate(model, plan.contextEval, contextEval, say);
  progress.end(`perplexity ${e.perplexity.toFixed(3)} over ${e.tokens} tokens (${e.seconds.toFixed(1)} s)`);

  const runs: ManifestRun[] = [];
  for (const s of settings) {
    const id = settingId(s);
    const dir = join(work, 'stories260K', id);
    say = progress.begin(`${label(s)}: pruning`);
    const r = await prune(model, s, plan.calibration, dir, say);
    progress.end(`${(100 * r.sparsity).toFixed(2)}% zeros in ${r.timings.total.toFixed(1)} s`);
    say = progress.begin(`${label(s)}: evaluating`);
    const evalFile = join(work, 'evals', `${id}.json`);
    e = await evaluate(dir, plan.eval, evalFile, say);
    progress.end(`perplexity ${e.perplexity.toFixed(3)} (${e.seconds.toFixed(1)} s)`);
    const formats: SparseFormat[] = compressedFormatFor(s.spec) === 'sparse-24-bitmask' ? ['sparse-bitmask', 'sparse-24-bitmask'] : ['sparse-bitmask'];
    progress.begin(`${label(s)}: exporting ${formats.join(', ')}`);
    const exports: ManifestRun['exports'] = [];
    const sizes: string[] = [];
    for (const f of formats) {
      const file = join(work, 'exports', `${id}-${f}.json`);
      const x = await exportTo(dir, f, join(work, 'stories260K', `${id}-${f}`), file);
      exports.push({ format: f, file: rel(file) });
      sizes.push(`${f} ${(x.fileBytes / 1024).toFixed(0)} KiB`);
    }
    progress.end(sizes.join(', '));
    runs.push({ method: s.method, ...(variantSuffix(s) ? { variant: variantSuffix(s) } : {}), pattern: r.pattern, checkpoint: rel(dir), report: rel(join(dir, 'shears-report.json')), eval: rel(evalFile), exports });
  }

  let synthetic: Manifest['synthetic'] = null;
  if (syn) {
    const c = syn.config;
    const name = `synthetic-llama-${quick ? 'tiny' : '100m'}`;
    const dir = join(work, name);
    const genCommand = `npx tsx scripts/synthetic-model.ts ${displayPath(dir)} --hidden ${c.hidden} --layers ${c.layers} --intermediate ${c.intermediate} --heads ${c.heads} --kv-heads ${c.kvHeads} --seqlen ${c.maxPositions} --seed ${c.seed}`;
    progress.begin(`synthetic Llama: generating`);
    const g = writeSyntheticLlama(dir, c);
    progress.end(`${(g.params / 1e6).toFixed(1)}M parameters, ${(g.bytes / 2 ** 20).toFixed(0)} MiB`);
    say = progress.begin(`synthetic Llama: evaluation speed`);
    const evalFile = join(work, 'evals', `${name}.json`);
    e = await evaluate(dir, syn.eval, evalFile, say);
    progress.end(`${e.tokensPerSecond.toFixed(0)} tokens/s`);
    const reports: { method: string; pattern: string; report: string }[] = [];
    for (const method of syn.methods) {
      const s: Setting = { method, spec: syn.spec };
      const out = join(work, `${name}-${settingId(s)}`);
      say = progress.begin(`synthetic Llama ${label(s)}: pruning`);
      const r = await prune(dir, s, syn.calibration, out, say);
      progress.end(`${r.timings.total.toFixed(1)} s (forward ${r.timings.forward.toFixed(1)}, statistics ${r.timings.statistics.toFixed(1)}, pruning ${r.timings.pruning.toFixed(1)})`);
      reports.push({ method, pattern: r.pattern, report: rel(join(out, 'shears-report.json')) });
    }
    synthetic = { name, command: genCommand, config: { ...c }, parameters: g.params, calibration: syn.calibration, evalSettings: syn.eval, eval: rel(evalFile), runs: reports };
  }

  const manifest: Manifest = {
    version: 1,
    quick,
    command,
    startedAt,
    wallSeconds: (performance.now() - t0) / 1000,
    shears: SHEARS_VERSION,
    git: gitState(),
    machine: machineInfo(),
    model: { name: 'stories260K', path: displayPath(model), weightBytes: weightFileBytes(model), eval: rel(denseEval), contextEval: rel(contextEval) },
    calibration: plan.calibration,
    eval: plan.eval,
    contextEval: plan.contextEval,
    runs,
    synthetic,
  };
  const path = join(work, 'manifest.json');
  writeJson(path, manifest);
  return path;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const manifest = join(a.work, 'manifest.json');
  const command = ['npx tsx scripts/reproduce.ts', ...process.argv.slice(2)].join(' ');
  if (a.renderOnly) {
    if (!existsSync(manifest)) throw new ShearsError(`${manifest}: no manifest to render (run without --render-only first)`);
  } else {
    process.stderr.write(`reproduce: ${a.quick ? 'quick grid' : 'full grid (tens of minutes on two cores)'}; outputs under ${displayPath(a.work)}/\n`);
    await runPlan(a.quick ? QUICK : FULL, a.work, command, a.quick);
  }
  const { files, readmeUpdated } = writeDocs(manifest, a.docs, a.readme);
  process.stdout.write(`wrote ${files.map(displayPath).join(', ')}${readmeUpdated ? `, and the results section of ${displayPath(a.readme!)}` : ''}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(ROOT, 'scripts', 'reproduce.ts')) {
  main().catch((err: unknown) => {
    if (err instanceof ShearsError) {
      process.stderr.write(`\nreproduce: ${err.message}\n`);
      process.exit(err.exitCode);
    }
    process.stderr.write(`\nreproduce: internal error: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(70);
  });
}
