/**
 * The structured-pruning table of docs/results.md: perplexity of the bundled stories260K against the
 * parameters removed, for MLP channels, heads, whole blocks and their mix (magnitude baseline against the
 * calibrated criteria), beside unstructured SparseGPT removing the same number of weights (sparsity =
 * parameters removed / parameters of the block linear layers).
 *
 *   npx tsx scripts/structured-results.ts [--work out/structured] [--doc docs/results.md] [--quick]
 *
 * TinyStories calibration 128 × 256, seed 0; perplexity on the whole shipped TinyStories validation text
 * in 256-token windows (as the rest of docs/results.md). The table is written between the
 * <!-- structured:start --> / <!-- structured:end --> markers of the doc (appended when absent), and the
 * runs as JSON to <work>/structured-results.json. --quick: 16 × 64 calibration, 4096 evaluation tokens.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { evaluateModel } from '../src/eval/evaluate.js';
import { runStructuredPrune, type StructuredJob } from '../src/structured/job.js';
import { runPrune } from '../src/prune/job.js';
import { Checkpoint } from '../src/io/checkpoint.js';
import { openModel } from '../src/model.js';
import { BUNDLED_MODEL, ROOT } from './experiments.js';
import { option } from './bench-common.js';

const quick = process.argv.includes('--quick');
const work = option('--work') ?? join(ROOT, 'out', quick ? 'structured-quick' : 'structured');
const docPath = option('--doc') ?? (quick ? join(work, 'results.md') : join(ROOT, 'docs', 'results.md'));
const calib = quick ? { nsamples: 16, seqlen: 64 } : { nsamples: 128, seqlen: 256 };
const maxTokens = quick ? 4096 : undefined;

interface Row {
  kind: string;
  request: string;
  method: string;
  params: number;
  removed: number;
  perplexity: number;
  command: string;
}

const CALIB_ARGS = `--calibration tinystories --nsamples ${calib.nsamples} --seqlen ${calib.seqlen}`;

async function ppl(model: string): Promise<number> {
  return (await evaluateModel({ model, dataset: 'tinystories', seqlen: 256, maxTokens })).perplexity;
}

function paramsOf(dir: string): number {
  const c = Checkpoint.openFolder(dir);
  try {
    return c.tensorNames().reduce((s, n) => s + c.info(n).numel, 0);
  } finally {
    c.close();
  }
}

async function main(): Promise<void> {
  mkdirSync(work, { recursive: true });
  const dense = paramsOf(BUNDLED_MODEL);
  const rows: Row[] = [];
  const densePpl = await ppl(BUNDLED_MODEL);
  rows.push({ kind: 'dense', request: '-', method: '-', params: dense, removed: 0, perplexity: densePpl, command: '' });
  console.log(`dense ${dense} parameters, perplexity ${densePpl.toFixed(3)}`);

  const structured: { kind: string; request: Partial<StructuredJob>; flags: string; methods: string[] }[] = [
    { kind: 'MLP channels', request: { channels: 0.3 }, flags: '--channels 0.3', methods: ['magnitude', 'wanda', 'sparsegpt'] },
    { kind: 'MLP channels', request: { channels: 0.5 }, flags: '--channels 0.5', methods: ['magnitude', 'wanda', 'sparsegpt'] },
    { kind: 'heads', request: { heads: 0.25 }, flags: '--heads 0.25', methods: ['magnitude', 'sparsegpt'] },
    { kind: 'heads', request: { heads: 0.5 }, flags: '--heads 0.5', methods: ['magnitude', 'sparsegpt'] },
    { kind: 'blocks (Block Influence)', request: { dropBlocks: 1 }, flags: '--drop-blocks 1', methods: ['sparsegpt'] },
    { kind: 'blocks (loss increase)', request: { dropBlocks: 1, blockScore: 'loss' }, flags: '--drop-blocks 1 --block-score loss', methods: ['sparsegpt'] },
    { kind: 'blocks (Block Influence)', request: { dropBlocks: 2 }, flags: '--drop-blocks 2', methods: ['sparsegpt'] },
    { kind: 'mix', request: { channels: 0.3, heads: 0.25, dropBlocks: 1 }, flags: '--channels 0.3 --heads 0.25 --drop-blocks 1', methods: ['magnitude', 'sparsegpt'] },
  ];
  for (const s of structured) {
    for (const method of s.methods) {
      const out = join(work, `${method}-${s.flags.replace(/--/g, '').replace(/[ .]+/g, '-')}`);
      rmSync(out, { recursive: true, force: true });
      const rep = await runStructuredPrune({ model: BUNDLED_MODEL, out, method, ...s.request, calibration: 'tinystories', ...calib, seed: 0 } as StructuredJob);
      const p = await ppl(out);
      const removed = rep.structured.params.before - rep.structured.params.after;
      const command = `npx shears prune models/stories260K --method ${method} ${s.flags} ${CALIB_ARGS} --out ${out.replace(ROOT, '')}`;
      rows.push({ kind: s.kind, request: s.flags, method, params: rep.structured.params.after, removed, perplexity: p, command });
      console.log(`${s.kind} ${s.flags} ${method}: ${removed} removed, perplexity ${p.toFixed(3)}`);
    }
  }
  // Unstructured SparseGPT removing as many weights, spread over the block linear layers.
  const { arch, ckpt } = await openModel(BUNDLED_MODEL);
  let linear = 0;
  for (let b = 0; b < arch.spec.numLayers; b++) for (const l of arch.linears(b)) linear += l.rows * l.cols;
  ckpt.close();
  for (const removed of [...new Set(rows.filter((r) => r.removed > 0).map((r) => r.removed))].sort((a, b) => a - b)) {
    const sparsity = +(removed / linear).toFixed(4);
    if (!(sparsity > 0 && sparsity < 1)) continue;
    const out = join(work, `sparsegpt-unstructured-${sparsity}`);
    rmSync(out, { recursive: true, force: true });
    const rep = await runPrune({ model: BUNDLED_MODEL, out, method: 'sparsegpt', spec: { kind: 'unstructured', sparsity }, calibration: 'tinystories', ...calib, seed: 0 });
    const zeros = Math.round(rep.sparsity * linear);
    const p = await ppl(out);
    rows.push({ kind: 'unstructured (zeros)', request: `--sparsity ${sparsity}`, method: 'sparsegpt', params: dense - zeros, removed: zeros, perplexity: p, command: `npx shears prune models/stories260K --method sparsegpt --sparsity ${sparsity} ${CALIB_ARGS}` });
    console.log(`unstructured ${sparsity}: ${zeros} zeros, perplexity ${p.toFixed(3)}`);
  }
  writeFileSync(join(work, 'structured-results.json'), JSON.stringify({ calibration: calib, maxTokens: maxTokens ?? null, rows }, null, 2) + '\n');
  writeSection(rows, dense);
}

function writeSection(rows: Row[], dense: number): void {
  const pct = (r: Row) => `${((100 * r.removed) / dense).toFixed(1)}%`;
  const sorted = [...rows].sort((a, b) => a.removed - b.removed || a.kind.localeCompare(b.kind) || a.perplexity - b.perplexity);
  const lines = [
    '<!-- structured:start -->',
    '## Structured pruning: smaller dense models',
    '',
    `Perplexity of stories260K (TinyStories validation, 256-token windows${maxTokens ? `, first ${maxTokens} tokens` : ''}) after removing MLP channels, attention heads or whole blocks (dense checkpoints with smaller shapes), against unstructured SparseGPT zeroing the same number of weights. Calibration TinyStories ${calib.nsamples} × ${calib.seqlen}, seed 0. Parameters count every tensor (the tied 512 × 64 embedding included: 12.6% of the model, never removed). Generated by \`npx tsx scripts/structured-results.ts\`.`,
    '',
    '| removed | what | request | method | parameters | perplexity |',
    '| ---: | :--- | :--- | :--- | ---: | ---: |',
    ...sorted.map((r) => `| ${pct(r)} | ${r.kind} | \`${r.request}\` | ${r.kind.startsWith('blocks') ? '- (no re-solve)' : r.method} | ${r.params.toLocaleString('en-US')} | ${r.perplexity < 1000 ? r.perplexity.toFixed(3) : r.perplexity.toPrecision(4)} |`),
    '',
    'magnitude: weight-norm criterion, no calibration, no compensation (the baseline). wanda: E[x²]·‖W_col‖² per channel / head (Wanda-sp; variance instead of E[x²] where a bias absorbs the mean, as FLAP). sparsegpt (default): OBS saliency over 8 rounds of greedy removal. Both calibrated criteria re-solve the down / output projection on the Gram matrix of its inputs. Blocks are ranked on the calibration windows whatever the method (also in the magnitude mix row) and removed without re-solving anything. Unstructured rows keep every shape (zeros cost the same in a dense tensor); structured rows are smaller files that run faster (see the README).',
    '<!-- structured:end -->',
  ];
  const section = lines.join('\n');
  const doc = existsSync(docPath) ? readFileSync(docPath, 'utf8') : '';
  const re = /<!-- structured:start -->[\s\S]*?<!-- structured:end -->/;
  const next = re.test(doc) ? doc.replace(re, section) : `${doc.trimEnd()}\n\n${section}\n`;
  writeFileSync(docPath, next);
  console.log(`wrote ${docPath}`);
}

await main();
