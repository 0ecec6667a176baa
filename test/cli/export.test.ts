/**
 * `shears export` and `shears inspect` on compressed checkpoints through the real CLI: output folders,
 * sizes against dense fp16 (worked out from the files), JSON, and one-line errors.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExportReport } from '../../src/export/export.js';
import type { InspectSummary } from '../../src/inspect/summary.js';
import { magnitudePrunedCopy, parseSafetensors, writeSafetensors } from '../io/compressed-helpers.js';
import { REPO, runShears, type Run } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'shears-export-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function shears(...args: string[]): Promise<Run> {
  return runShears(root, ...args);
}

const pruned = join(root, 'stories-50');
/** Parameters of stories260K from its own header: every tensor's element count. */
let parameters = 0;
let runs: Record<string, Run>;

beforeAll(async () => {
  mkdirSync(pruned);
  magnitudePrunedCopy(join(REPO, 'models', 'stories260K'), pruned, 'unstructured');
  for (const t of parseSafetensors(join(pruned, 'model.safetensors')).tensors.values()) parameters += t.shape.reduce((a, b) => a * b, 1);
  mkdirSync(join(root, 'taken'));
  const [sb, sbJson, badFormat, taken, missing] = await Promise.all([
    shears('export', pruned, '--format', 'sparse-bitmask'),
    shears('export', pruned, '--format', 'sparse-bitmask', '--out', 'sb-json', '--json'),
    shears('export', pruned, '--format', 'sparse-8-bitmask'),
    shears('export', pruned, '--format', 'dense', '--out', 'taken'),
    shears('export', join(root, 'nope'), '--format', 'dense'),
  ]);
  runs = { sb, sbJson, badFormat, taken, missing };
}, 120_000);

describe('shears export', () => {
  it('writes <model>-<format> next to the current folder and reports sizes', () => {
    const r = runs.sb;
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = join(root, 'stories-50-sparse-bitmask');
    expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
    expect(readdirSync(out).sort()).toEqual(['README.md', 'config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    expect(readdirSync(root).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`wrote stories-50-sparse-bitmask  (sparse-bitmask; from dense ${pruned})`);
    expect(lines[1]).toMatch(/^weights {5}35 compressed, 0 left dense; sparsity 50\.\d\d% \(unstructured\)$/);
    const size = statSync(join(out, 'model.safetensors')).size;
    expect(lines[2]).toContain(`${size.toLocaleString('en-US')} bytes`);
    expect(lines[3]).toContain(`${(parameters * 2).toLocaleString('en-US')} bytes`);
    expect(lines[3]).toContain(`${((100 * size) / (parameters * 2)).toFixed(2)}% of it`);
  });

  it('--json reports the same numbers as the files', () => {
    const r = runs.sbJson;
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout) as ExportReport;
    expect(j).toMatchObject({ format: 'sparse-bitmask', sourceFormat: 'dense', out: 'sb-json', compressed: 35, dense: 0, parameters, denseFp16Bytes: parameters * 2, ignore: ['lm_head'] });
    expect(j.fileBytes).toBe(statSync(join(root, 'sb-json', 'model.safetensors')).size);
    expect(j.sourceBytes).toBe(statSync(join(pruned, 'model.safetensors')).size);
  });

  it('fails with one line: unknown format (usage, exit 2), existing output, missing model', () => {
    expect(runs.badFormat.status).toBe(2);
    expect(runs.badFormat.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(runs.badFormat.stderr).toMatch(/^shears: .*sparse-8-bitmask/);
    expect(runs.taken.status).toBe(1);
    expect(runs.taken.stderr).toBe('shears: taken: already exists (choose another output folder or remove it)\n');
    expect(runs.missing.status).toBe(1);
    expect(runs.missing.stderr).toBe(`shears: ${join(root, 'nope')}: no such folder (and not a HuggingFace Hub id of the form owner/name)\n`);
  });
});

describe('shears inspect on a compressed checkpoint', () => {
  it('lists the dense weights and compares the bytes on disk with dense fp16', async () => {
    const dir = join(root, 'sb-json');
    const [table, json] = await Promise.all([shears('inspect', dir), shears('inspect', dir, '--json')]);
    expect(json.status).toBe(0);
    const s = JSON.parse(json.stdout) as InspectSummary;
    const size = statSync(join(dir, 'model.safetensors')).size;
    expect(s.storage).toEqual({ format: 'sparse-bitmask', compressedWeights: 35, fileBytes: size, denseFp16Bytes: parameters * 2 });
    expect(s.parameters).toBe(parameters);
    expect(s.tensors.some((t) => t.name.endsWith('.bitmask'))).toBe(false);
    expect(s.tensors.find((t) => t.name === 'model.layers.0.mlp.down_proj.weight')).toMatchObject({ dtype: 'F32', shape: [64, 172] });
    expect(table.status).toBe(0);
    const lines = table.stdout.split('\n');
    expect(lines).toContain('format      sparse-bitmask (35 weights compressed)');
    expect(lines).toContain(`dense fp16  ${(parameters * 2).toLocaleString('en-US')} bytes (${((parameters * 2) / 1024).toFixed(1)} KiB); on disk is ${((100 * size) / (parameters * 2)).toFixed(2)}% of it`);
  });

  it('a damaged file gives one line naming the file and the tensor', async () => {
    const dir = join(root, 'damaged');
    mkdirSync(dir);
    const src = join(root, 'sb-json');
    for (const f of readdirSync(src)) if (f !== 'model.safetensors') copyFileSync(join(src, f), join(dir, f));
    const { tensors, metadata } = parseSafetensors(join(src, 'model.safetensors'));
    const name = 'model.layers.3.self_attn.o_proj.weight.compressed';
    const c = tensors.get(name)!;
    tensors.set(name, { ...c, shape: [c.shape[0] + 1], bytes: Buffer.concat([c.bytes, Buffer.alloc(4)]) });
    const file = join(dir, 'model.safetensors');
    writeSafetensors(file, tensors, metadata);
    const r = await shears('inspect', dir);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^shears: ${file}: tensor "${name.replace(/\./g, '\\.')}" holds \\d+ values but the bitmask has \\d+ set bits\\n$`));
  });
});
