/**
 * scripts/reproduce.ts --quick, run as a user runs it, into a temporary folder. Every table in the
 * results.md it writes is parsed back and each number compared with the files it claims to come from:
 * shears-report.json, the evaluation and export JSON, models.json, and the weight files themselves
 * (sizes from the file system, sparsity by counting zeros in one checkpoint). Each SVG must parse as XML
 * and have a title, axis labels with units and a legend.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { byClass, parseXml, textOf, type XmlElement } from '../report/xml.js';

const ROOT = join(import.meta.dirname, '..', '..');
const work = mkdtempSync(join(tmpdir(), 'shears-reproduce-'));
const docs = join(work, 'docs');

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const readJson = (p: string): Json => JSON.parse(readFileSync(p, 'utf8')) as Json;

/** Markdown tables under each "## " heading, as arrays of row objects keyed by header cell. */
function tablesBySection(md: string): Map<string, Record<string, string>[][]> {
  const out = new Map<string, Record<string, string>[][]>();
  let section = '';
  let block: string[] = [];
  const flush = (): void => {
    if (block.length >= 2) {
      const cells = (line: string): string[] =>
        line
          .trim()
          .replace(/^\||\|$/g, '')
          .split(/(?<!\\)\|/)
          .map((c) => c.trim().replace(/\\\|/g, '|'));
      const head = cells(block[0]);
      expect(cells(block[1]).every((c) => /^:?-{3,}:?$/.test(c))).toBe(true);
      const rows = block.slice(2).map((l) => Object.fromEntries(cells(l).map((c, i) => [head[i], c])));
      out.set(section, [...(out.get(section) ?? []), rows]);
    }
    block = [];
  };
  for (const line of md.split('\n')) {
    if (line.startsWith('## ')) {
      flush();
      section = line.slice(3).trim();
    } else if (line.startsWith('|')) block.push(line);
    else flush();
  }
  flush();
  return out;
}

/** A printed number agrees with the true value to the precision it was printed with. */
function agrees(printed: string, value: number, scale = 1): void {
  const s = printed.replace(/[%,]/g, '');
  const m = /^-?\d+(?:\.(\d+))?(?:e(-?\d+))?$/.exec(s);
  expect(m, `"${printed}" is a number`).not.toBeNull();
  // the last printed digit's place: 10^-decimals, shifted by an exponent ("6.34e9": 10^7)
  const place = 10 ** (Number(m![2] ?? 0) - (m![1]?.length ?? 0));
  expect(Math.abs(Number(s) - value * scale)).toBeLessThanOrEqual(0.5 * place * (1 + 1e-9) + 1e-9);
}

function weightBytes(dir: string): number {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .reduce((s, f) => s + statSync(join(dir, f)).size, 0);
}

let manifest: Json;
let md: string;
let tables: Map<string, Record<string, string>[][]>;
const at = (rel: string): string => join(work, rel);

beforeAll(() => {
  const tsx = createRequire(import.meta.url).resolve('tsx/cli');
  const r = spawnSync(process.execPath, [tsx, join(ROOT, 'scripts', 'reproduce.ts'), '--quick', '--work', work, '--docs', docs, '--readme', 'none'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 110_000,
  });
  if (r.status !== 0) throw new Error(`reproduce --quick failed (${r.status}): ${r.stderr.slice(-2000)}`);
  manifest = readJson(join(work, 'manifest.json'));
  md = readFileSync(join(docs, 'results.md'), 'utf8');
  tables = tablesBySection(md);
}, 120_000);

function run(method: string, pattern: string): Json {
  const r = (manifest.runs as Json[]).find((x) => x.method === method && x.pattern === pattern);
  expect(r, `${method} ${pattern} in the manifest`).toBeDefined();
  return r!;
}

describe('reproduce --quick', () => {
  it('ran the quick grid and says so', () => {
    expect(manifest.quick).toBe(true);
    expect(md).toMatch(/Quick mode/);
    expect((manifest.runs as Json[]).map((r) => `${r.method} ${r.pattern}`).sort()).toEqual(
      ['magnitude 50%', 'magnitude 80%', 'magnitude 2:4', 'sparsegpt 50%', 'sparsegpt 80%', 'sparsegpt 2:4'].sort(),
    );
    expect(md).toContain(manifest.git ? manifest.git.commit : 'not run from a git checkout');
    expect(md).toContain(`Node.js ${process.version}`);
    expect(md).toContain(`shears ${readJson(join(ROOT, 'package.json')).version}`);
  });

  it('every pruning report matches its checkpoint and its manifest entry', () => {
    for (const r of manifest.runs as Json[]) {
      const report = readJson(at(r.report));
      expect([report.method, report.pattern]).toEqual([r.method, r.pattern]);
    }
    // Realised sparsity recounted from the weights of one checkpoint.
    const r = run('sparsegpt', '50%');
    const report = readJson(at(r.report));
    const ckpt = Checkpoint.openFolder(at(r.checkpoint));
    try {
      let zeros = 0;
      let total = 0;
      for (const l of report.layers as Json[]) {
        const w = ckpt.readFloat32(l.tensor);
        total += w.length;
        for (const v of w) if (v === 0) zeros++;
      }
      expect(zeros / total).toBeCloseTo(report.sparsity, 12);
    } finally {
      ckpt.close();
    }
  });

  it('the headline table is the evaluated perplexity of each run', () => {
    const [grid] = tables.get('Perplexity after pruning')!;
    expect(grid.map((row) => row.method)).toEqual(['magnitude', 'sparsegpt']);
    for (const row of grid) {
      for (const pattern of ['50%', '80%', '2:4']) agrees(row[pattern], readJson(at(run(row.method, pattern).eval)).perplexity);
    }
    agrees(/Dense model: ([\d.]+)\./.exec(md)![1], readJson(at(manifest.model.eval)).perplexity);
  });

  it('the dense table matches both dense evaluations and the published figure in models.json', () => {
    const [dense] = tables.get('Dense model')!;
    const evals = [readJson(at(manifest.model.eval)), readJson(at(manifest.model.contextEval))];
    expect(dense.length).toBe(2);
    dense.forEach((row, i) => {
      expect(Number(row['eval seqlen'])).toBe(evals[i].seqlen);
      expect(Number(row.windows)).toBe(evals[i].windows);
      expect(Number(row.tokens)).toBe(evals[i].tokens);
      agrees(row.perplexity, evals[i].perplexity);
    });
    const published = readJson(join(ROOT, 'models.json')).models['models/stories260K'].perplexity.tinystories.dense.perplexity;
    expect(dense[1].published).toContain(String(published));
  });

  it('the table of every run matches the reports, evaluations, exports and files on disk', () => {
    const [rows] = tables.get('Every run')!;
    expect(rows.length).toBe(manifest.runs.length);
    const densePpl = readJson(at(manifest.model.eval)).perplexity;
    for (const row of rows) {
      const r = run(row.method, row.pattern);
      const report = readJson(at(r.report));
      const ev = readJson(at(r.eval));
      agrees(row['realised sparsity'], report.sparsity, 100);
      expect(row['N:M holds']).toBe(report.nmOk === undefined ? '–' : report.nmOk ? 'yes' : 'NO');
      agrees(row.perplexity, ev.perplexity);
      agrees(row['× dense'], ev.perplexity / densePpl);
      agrees(row['dense KiB'], weightBytes(at(r.checkpoint)) / 1024);
      agrees(row['prune s'], report.timings.total);
      agrees(row['eval s'], ev.seconds);
      for (const format of ['sparse-bitmask', 'sparse-24-bitmask']) {
        const x = (r.exports as Json[]).find((e) => e.format === format);
        if (!x) {
          expect(row[`${format} KiB`]).toBe('–');
          continue;
        }
        const exp = readJson(at(x.file));
        agrees(row[`${format} KiB`], exp.fileBytes / 1024);
        // the export report's size is the size of the files it wrote
        expect(weightBytes(exp.out)).toBe(exp.fileBytes);
      }
    }
    // 2:4 runs have both compressed formats, the others only the bitmask one
    expect(rows.filter((r) => r.pattern === '2:4').every((r) => r['sparse-24-bitmask KiB'] !== '–')).toBe(true);
  });

  it('the timing tables match the synthetic model\'s reports', () => {
    const [prunes, evalRows] = tables.get('Timing on a ~100M-parameter model')!;
    const reports = (manifest.synthetic.runs as Json[]).map((r) => readJson(at(r.report)));
    expect(prunes.length).toBe(reports.length);
    prunes.forEach((row, i) => {
      const rep = reports[i];
      expect([row.method, row.pattern]).toEqual([rep.method, rep.pattern]);
      expect(row.calibration).toBe(rep.calibration ? `${rep.calibration.nsamples} × ${rep.calibration.seqlen}` : 'none');
      agrees(row['forward s'], rep.timings.forward);
      agrees(row['statistics s'], rep.timings.statistics);
      agrees(row['pruning s'], rep.timings.pruning);
      agrees(row['total s'], rep.timings.total);
      agrees(row['process peak RSS MiB'], rep.peakRssBytes / 2 ** 20);
    });
    const ev = readJson(at(manifest.synthetic.eval));
    expect(Number(evalRows[0].tokens)).toBe(ev.tokens);
    agrees(evalRows[0]['tokens/s'], ev.tokensPerSecond);
  });

  it('the comparison with published 7B figures quotes models.json and our evaluations', () => {
    const [cmp, trend] = tables.get('Compared with the published 7B results')!;
    const llama = readJson(join(ROOT, 'models.json')).models['meta-llama/Llama-2-7b-hf'].perplexity.wikitext2;
    const densePpl = readJson(at(manifest.model.eval)).perplexity;
    const pubCol = Object.keys(cmp[0]).find((k) => k.endsWith('(published)'))!;
    const oursCol = Object.keys(cmp[0]).find((k) => k.endsWith('(ours)'))!;
    for (const row of cmp) {
      const key = row.setting === 'dense' ? 'dense' : row.setting.replace(' ', '-');
      expect(Number(row[pubCol])).toBe(llama[key].perplexity);
      if (row.setting === 'dense') agrees(row[oursCol], densePpl);
      else {
        const [method, pattern] = row.setting.split(' ');
        const r = (manifest.runs as Json[]).find((x) => x.method === method && x.pattern === pattern);
        if (r) agrees(row[oursCol], readJson(at(r.eval)).perplexity);
        else expect(row[oursCol]).toBe('–');
      }
    }
    const models = readJson(join(ROOT, 'models.json')).models;
    for (const row of trend.filter((r) => !r.model.endsWith('(ours)'))) {
      const p = models[row.model].perplexity[row.dataset];
      expect(Number(row.dense)).toBe(p.dense.perplexity);
      expect(Number(row['SparseGPT 50%'])).toBe(p['sparsegpt-50%'].perplexity);
    }
  });

  it('every command the page lists is one the reports recorded', () => {
    const block = /```sh\n([\s\S]*?)```/.exec(md)![1];
    for (const r of manifest.runs as Json[]) {
      expect(block).toContain(readJson(at(r.report)).command);
      expect(block).toContain(readJson(at(r.eval)).command);
    }
  });

  it('writes three SVG plots that parse as XML, each with a title, labelled axes with units, and a legend', () => {
    const svgs = readdirSync(docs).filter((f) => f.endsWith('.svg')).sort();
    expect(svgs).toEqual(['layers-sparsegpt-50.svg', 'perplexity-vs-sparsity.svg', 'size-vs-perplexity.svg']);
    for (const f of svgs) {
      const root: XmlElement = parseXml(readFileSync(join(docs, f), 'utf8'));
      expect(root.name).toBe('svg');
      expect(textOf(root.children.find((c) => c.name === 'title')!).length).toBeGreaterThan(5);
      expect(textOf(byClass(root, 'title')[0]).length).toBeGreaterThan(5);
      for (const axis of ['x', 'y']) expect(textOf(byClass(root, 'axis-label', axis)[0])).toMatch(/\(.+\)/);
      expect(byClass(root, 'legend-item').length).toBeGreaterThanOrEqual(2);
      expect(md).toContain(`](${f})`);
    }
    // one line per method in the perplexity plot, one marker per unstructured run
    const ppl = parseXml(readFileSync(join(docs, 'perplexity-vs-sparsity.svg'), 'utf8'));
    const series = byClass(ppl, 'series');
    expect(series.length).toBe(2);
    expect(series.flatMap((s) => s.children.filter((c) => c.name !== 'path')).length).toBe(4);
  });
});
