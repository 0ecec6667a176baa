/**
 * The main job (`npm start`): prune the bundled stories260K Llama with magnitude, Wanda and SparseGPT at
 * 50% unstructured and at 2:4, evaluate the dense model and every pruned one on TinyStories validation
 * text, write each pruned checkpoint also in a compressed format, and print one table: method, pattern,
 * realised sparsity, perplexity, size on disk (dense and compressed), time. Everything lands in out/demo/
 * (replaced on every run); the table is built from the JSON files written there, and saved as
 * out/demo/results.md.
 *
 *   npx tsx scripts/demo.ts [--out out/demo] [--max-tokens 65536]
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ShearsError } from '../src/errors.js';
import type { PruneReport } from '../src/prune/job.js';
import { describeSpec, type SparsitySpec } from '../src/prune/spec.js';
import { table } from '../src/report/format.js';
import { markdownTable } from '../src/report/markdown.js';
import {
  BUNDLED_MODEL, ROOT, Progress, compressedFormatFor, displayPath, evaluate, evalCommand, exportTo, label, machineInfo, prune, readJson, settingId, weightFileBytes,
  type Calibration, type EvalSettings, type SavedEval, type SavedExport, type Setting,
} from './experiments.js';

const CALIBRATION: Calibration = { calibration: 'tinystories', nsamples: 128, seqlen: 256, seed: 0 };
const SPECS: SparsitySpec[] = [
  { kind: 'unstructured', sparsity: 0.5 },
  { kind: 'nm', n: 2, m: 4 },
];
const METHODS = ['magnitude', 'wanda', 'sparsegpt'] as const;

function parseArgs(argv: string[]): { out: string; maxTokens: number } {
  let out = join(ROOT, 'out', 'demo');
  // 256 windows of 256 tokens: the first third of the shipped validation text, so that seven evaluations
  // fit the two-minute budget on two cores (the whole text takes ~45 s per model there).
  let maxTokens = 65536;
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (argv[i] === '--out' && v) (out = v), i++;
    else if (argv[i] === '--max-tokens' && v && Number.isInteger(Number(v)) && Number(v) > 0) (maxTokens = Number(v)), i++;
    else throw new ShearsError(`demo: unknown or incomplete option ${argv[i]} (options: --out DIR, --max-tokens N)`, 2);
  }
  return { out, maxTokens };
}

const kib = (bytes: number): string => `${(bytes / 1024).toFixed(0)} KiB`;

async function main(): Promise<void> {
  const t0 = performance.now();
  const { out, maxTokens } = parseArgs(process.argv.slice(2));
  const EVAL: EvalSettings = { dataset: 'tinystories', seqlen: 256, maxTokens };
  const settings: Setting[] = SPECS.flatMap((spec) => METHODS.map((method) => ({ method, spec })));
  const model = BUNDLED_MODEL;
  const evalFile = (id: string): string => join(out, 'evals', `${id}.json`);
  const exportDir = (s: Setting): string => join(out, `${settingId(s)}-${compressedFormatFor(s.spec)}`);
  const exportFile = (s: Setting): string => join(out, 'exports', `${settingId(s)}-${compressedFormatFor(s.spec)}.json`);

  process.stdout.write(
    [
      'shears demo: one-shot pruning of a real Llama (stories260K: 5 blocks, hidden 64, 260K parameters, trained on TinyStories)',
      `  methods     ${METHODS.join(', ')}, each at ${SPECS.map(describeSpec).join(' and ')}`,
      `  calibration ${CALIBRATION.nsamples} windows x ${CALIBRATION.seqlen} tokens of TinyStories train text, seed ${CALIBRATION.seed}`,
      `  evaluation  perplexity on the first ${maxTokens} tokens of the TinyStories validation text, ${EVAL.seqlen}-token windows`,
      `  output      ${displayPath(out)}/ (replaced on every run)`,
      '',
    ].join('\n') + '\n',
  );

  const progress = new Progress(1 + settings.length * 3);
  let say = progress.begin('dense model: evaluating');
  const dense = await evaluate(model, EVAL, evalFile('dense'), say);
  progress.end(`perplexity ${dense.perplexity.toFixed(3)} (${dense.seconds.toFixed(1)} s)`);
  for (const s of settings) {
    const dir = join(out, settingId(s));
    say = progress.begin(`${label(s)}: pruning`);
    const r = await prune(model, s, CALIBRATION, dir, say);
    progress.end(`${(100 * r.sparsity).toFixed(2)}% zeros in ${r.timings.total.toFixed(1)} s`);
    say = progress.begin(`${label(s)}: evaluating`);
    const e = await evaluate(dir, EVAL, evalFile(settingId(s)), say);
    progress.end(`perplexity ${e.perplexity.toFixed(3)} (${e.seconds.toFixed(1)} s)`);
    say = progress.begin(`${label(s)}: writing ${compressedFormatFor(s.spec)}`);
    const x = await exportTo(dir, compressedFormatFor(s.spec), exportDir(s), exportFile(s));
    progress.end(`${kib(x.fileBytes)} (dense ${kib(weightFileBytes(dir))})`);
  }

  // The table is built from the files just written, not from the values in memory.
  const d = readJson<SavedEval>(evalFile('dense'));
  const denseBytes = weightFileBytes(model);
  const rows = [['method', 'pattern', 'sparsity', 'perplexity', 'x dense', 'dense file', 'compressed file', 'format', 'prune s', 'eval s']];
  rows.push(['dense', '-', '0.00%', d.perplexity.toFixed(3), '1.00', kib(denseBytes), '-', '-', '-', d.seconds.toFixed(1)]);
  for (const s of settings) {
    const dir = join(out, settingId(s));
    const r = readJson<PruneReport>(join(dir, 'shears-report.json'));
    const e = readJson<SavedEval>(evalFile(settingId(s)));
    const x = readJson<SavedExport>(exportFile(s));
    rows.push([
      r.method,
      r.pattern,
      `${(100 * r.sparsity).toFixed(2)}%`,
      e.perplexity.toFixed(3),
      (e.perplexity / d.perplexity).toFixed(2),
      kib(weightFileBytes(dir)),
      kib(x.fileBytes),
      x.format,
      r.timings.total.toFixed(1),
      e.seconds.toFixed(1),
    ]);
  }
  const wall = (performance.now() - t0) / 1000;
  const machine = machineInfo();
  const about =
    `Perplexity: first ${d.tokens} tokens of ${displayPath(d.datasetPath)} in ${d.windows} windows of ${d.seqlen} tokens (lower is better). ` +
    `Sparsity: zeros over the pruned linear layers (embeddings, norms and the tied LM head stay dense). ` +
    `Files: the weights' safetensors files, dense float32 as pruned and in the compressed-tensors format named (lossless). ` +
    `Times in seconds on ${machine.logicalCores} cores of ${machine.cpuModel}; shared CPUs make them noisy.`;
  writeFileSync(join(out, 'results.md'), `# shears demo results\n\n${markdownTable(rows)}\n${about}\n\nTotal wall time ${wall.toFixed(0)} s.\n`);

  const ex = join(out, settingId({ method: 'sparsegpt', spec: SPECS[0] }));
  const ex24 = join(out, settingId({ method: 'sparsegpt', spec: SPECS[1] }));
  process.stdout.write(
    [
      '',
      table(rows).trimEnd(),
      '',
      about,
      '',
      `Done in ${wall.toFixed(0)} s. Outputs in ${displayPath(out)}/:`,
      `  <method>-<pattern>/            pruned checkpoint (HF safetensors, float32) + shears-report.json (per-layer sparsity, loss, times)`,
      `  <method>-<pattern>-<format>/   the same weights in a compressed format (sparse-bitmask, or sparse-24-bitmask for 2:4)`,
      `  evals/, exports/               the JSON results the table is built from; results.md is the table`,
      '',
      'Next:',
      `  npx shears inspect ${displayPath(ex24)}          # per-tensor sparsity and the 2:4 check`,
      `  ${evalCommand(ex, EVAL)}   # the perplexity above`,
      `  ${evalCommand(ex, { ...EVAL, maxTokens: undefined })}   # the whole validation text (slower)`,
      `  npx shears prune models/stories260K --method sparsegpt --sparsity 0.7 --calibration tinystories --seqlen 256 --out out/sparsegpt-70 --plot`,
      `  npx tsx scripts/reproduce.ts                  # the full grid behind docs/results.md (about 11 minutes on two cores)`,
      '  In Python (pip install transformers torch):',
      '    from transformers import AutoModelForCausalLM, AutoTokenizer',
      `    model = AutoModelForCausalLM.from_pretrained("${displayPath(ex)}")`,
      `    tok = AutoTokenizer.from_pretrained("${displayPath(ex)}")`,
      '    ids = tok("Once upon a time", return_tensors="pt").input_ids',
      '    print(tok.decode(model.generate(ids, max_new_tokens=40)[0]))',
      '',
    ].join('\n'),
  );
}

main().catch((err: unknown) => {
  if (err instanceof ShearsError) {
    process.stderr.write(`\ndemo: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  process.stderr.write(`\ndemo: internal error: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(70);
});
