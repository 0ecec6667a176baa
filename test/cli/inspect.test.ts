import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/io/checkpoint.js';
import type { DType } from '../../src/io/dtype.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { inspectCheckpoint, type InspectSummary } from '../../src/inspect/summary.js';
import { nmSatisfied } from '../../src/prune/pattern-check.js';
import { REPO, runShears, type Run } from '../helpers/cli.js';

const LLAMA = join(REPO, 'test', 'fixtures', 'llama-tiny-gqa');
const root = mkdtempSync(join(tmpdir(), 'shears-inspect-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function shears(...args: string[]): Promise<Run> {
  return runShears(REPO, ...args);
}

/** Independent N:M check: slice each row into groups of m and count zeros with filter. */
function refNM(values: number[], rows: number, cols: number, n: number, m: number): boolean {
  if (cols % m !== 0) return false;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols; g += m) {
      const group = values.slice(r * cols + g, r * cols + g + m);
      if (group.filter((v) => v === 0).length < n) return false;
    }
  }
  return true;
}

/**
 * A checkpoint with known zeros. Each tensor: dtype, shape, values (exactly representable in the dtype),
 * and the 2:4 / 4:8 answers worked out by hand from how the zeros were placed.
 */
interface Known {
  dtype: DType;
  shape: number[];
  values: number[];
  expect?: { '2:4': boolean; '4:8': boolean };
}
function knownTensors(): Record<string, Known> {
  const grid = (rows: number, cols: number, zero: (r: number, c: number) => boolean, neg = false): number[] =>
    Array.from({ length: rows * cols }, (_, i) => {
      const [r, c] = [Math.floor(i / cols), i % cols];
      return zero(r, c) ? (neg && i % 2 ? -0 : 0) : 1 + ((r + c) % 5) * 0.25;
    });
  return {
    // Columns 1 and 3 of every group of 4 are zero: 2 of every 4 (and 4 of every 8).
    'p.two_four.weight': { dtype: 'F32', shape: [4, 8], values: grid(4, 8, (_, c) => c % 4 === 1 || c % 4 === 3), expect: { '2:4': true, '4:8': true } },
    // Zeros in the first half of every 8: 4:8 holds but the second group of 4 has none.
    'p.four_eight.weight': { dtype: 'F16', shape: [4, 8], values: grid(4, 8, (_, c) => c < 4), expect: { '2:4': false, '4:8': true } },
    // 2:4 everywhere (with -0 zeros) except row 2, columns 4..7, which has a single zero.
    'p.almost.weight': {
      dtype: 'BF16',
      shape: [4, 8],
      values: grid(4, 8, (r, c) => (r === 2 && c >= 4 ? c === 4 : c % 4 < 2), true),
      expect: { '2:4': false, '4:8': false },
    },
    // All zeros, but 6 inputs per row cannot form groups of 4 or 8.
    'p.odd.weight': { dtype: 'F32', shape: [3, 6], values: new Array(18).fill(0), expect: { '2:4': false, '4:8': false } },
    // Half the rows zero (rows 0,1 of every 4): 2:4 along the output dim, not along the inputs.
    'p.rows.weight': { dtype: 'F32', shape: [8, 4], values: grid(8, 4, (r) => r % 4 < 2), expect: { '2:4': false, '4:8': false } },
    'p.bias': { dtype: 'F32', shape: [8], values: [0, 1, 0, 2, 3, -0, 4, 5] },
  };
}

function writeKnown(dir: string, modelType: string, tensors: Record<string, Known>): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: modelType, architectures: ['TestForCausalLM'] }));
  const w = new SafetensorsWriter(
    join(dir, 'model.safetensors'),
    Object.entries(tensors).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape })),
  );
  for (const [name, t] of Object.entries(tensors)) w.write(name, Float32Array.from(t.values));
  w.finish();
}

describe('nmSatisfied', () => {
  it('agrees with the independent check on random sparse matrices', () => {
    let s = 12345;
    const rnd = (): number => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let trial = 0; trial < 300; trial++) {
      const rows = 1 + Math.floor(rnd() * 4);
      const cols = [4, 8, 12, 16, 6][trial % 5];
      const p = [0.3, 0.5, 0.7, 0.9][trial % 4];
      const v = Array.from({ length: rows * cols }, () => (rnd() < p ? 0 : rnd() - 0.5));
      for (const [n, m] of [[2, 4], [4, 8], [1, 2]]) expect(nmSatisfied(Float32Array.from(v), rows, cols, n, m)).toBe(refNM(v, rows, cols, n, m));
    }
  });
});

describe('shears inspect', () => {
  const known = knownTensors();
  const knownDir = join(root, 'known');
  const missing = join(root, 'nothing-here');
  let runs: Record<'llamaJson' | 'knownJson' | 'knownTable' | 'missing', Run>;
  beforeAll(async () => {
    writeKnown(knownDir, 'llama', known);
    const [llamaJson, knownJson, knownTable, miss] = await Promise.all([
      shears('inspect', LLAMA, '--json'),
      shears('inspect', knownDir, '--json'),
      shears('inspect', knownDir),
      shears('inspect', missing),
    ]);
    runs = { llamaJson, knownJson, knownTable, missing: miss };
  }, 60_000);

  it('--json on llama-tiny-gqa: parameter count, sizes and identity', () => {
    const r = runs.llamaJson;
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const s = JSON.parse(r.stdout) as InspectSummary;

    // Parameters computed independently from the file's own header.
    const buf = readFileSync(join(LLAMA, 'model.safetensors'));
    const header = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString('utf8'));
    delete header.__metadata__;
    const sizes = Object.values<{ shape: number[] }>(header).map((t) => t.shape.reduce((a, b) => a * b, 1));
    expect(s.parameters).toBe(sizes.reduce((a, b) => a + b, 0));
    expect(s.parameters).toBe(95168); // README: 2*101*64 + 64 + 2*(64*64*2 + 16*64*2 + 160*64*3 + 2*64)

    expect(s.modelType).toBe('llama');
    expect(s.architectures).toEqual(['LlamaForCausalLM']);
    expect(s.fileBytes).toBe(statSync(join(LLAMA, 'model.safetensors')).size);
    expect(s.dtypes).toEqual({ F32: 95168 });
    expect(s.tensors.length).toBe(21);
    expect(s.tensors.map((t) => t.name)).toContain('model.layers.1.self_attn.k_proj.weight');
    expect(s.tensors.find((t) => t.name === 'model.layers.0.self_attn.k_proj.weight')).toMatchObject({ dtype: 'F32', shape: [16, 64], numel: 1024 });
    // Random weights: no zeros, no N:M pattern; 1-D gains have no pattern entry.
    for (const t of s.tensors) {
      expect(t.sparsity).toBe(0);
      if (t.shape.length === 2) expect(t.nm).toEqual({ '2:4': false, '4:8': false });
      else expect(t.nm).toBeNull();
    }
    expect(s.totals.matrices.count).toBe(16);
    expect(s.totals.sparsity).toBe(0);
  });

  it('--json reports sparsity and 2:4 / 4:8 for a checkpoint with known zeros', () => {
    const r = runs.knownJson;
    expect(r.status).toBe(0);
    const s = JSON.parse(r.stdout) as InspectSummary;
    let matZeros = 0;
    let matParams = 0;
    let allZeros = 0;
    for (const [name, k] of Object.entries(known)) {
      const t = s.tensors.find((x) => x.name === name)!;
      const zeros = k.values.filter((v) => v === 0).length;
      expect(t.zeros).toBe(zeros);
      expect(t.sparsity).toBeCloseTo(zeros / k.values.length, 12);
      expect(t.dtype).toBe(k.dtype);
      allZeros += zeros;
      if (k.expect) {
        // The hand-worked answer and the independent check agree, and inspect says the same.
        const [rows, cols] = k.shape;
        expect({ '2:4': refNM(k.values, rows, cols, 2, 4), '4:8': refNM(k.values, rows, cols, 4, 8) }).toEqual(k.expect);
        expect(t.nm).toEqual(k.expect);
        matZeros += zeros;
        matParams += k.values.length;
      } else {
        expect(t.nm).toBeNull();
      }
    }
    expect(known['p.bias'].values.filter((v) => v === 0).length).toBe(3);
    expect(s.totals.matrices).toEqual({ count: 5, parameters: matParams, zeros: matZeros, sparsity: matZeros / matParams, nm: { '2:4': 1, '4:8': 2 } });
    expect(s.totals.zeros).toBe(allZeros);
    expect(s.parameters).toBe(4 * 8 * 3 + 18 + 32 + 8);
    expect(s.dtypes).toEqual({ F32: 32 + 18 + 32 + 8, F16: 32, BF16: 32 });
  });

  it('prints an aligned table with totals', () => {
    const r = runs.knownTable;
    expect(r.status).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(/^model\s+.*known/);
    expect(lines[1]).toBe('model_type  llama  (TestForCausalLM)');
    expect(lines).toContain('parameters  154');
    const head = lines.findIndex((l) => l.startsWith('tensor'));
    expect(lines[head]).toMatch(/^tensor\s+dtype\s+shape\s+sparsity\s+2:4\s+4:8$/);
    const row = (name: string): string[] => lines.find((l) => l.startsWith(name + ' '))!.trim().split(/\s{2,}/);
    expect(row('p.two_four.weight')).toEqual(['p.two_four.weight', 'F32', '[4, 8]', '50.00%', 'yes', 'yes']);
    expect(row('p.four_eight.weight')).toEqual(['p.four_eight.weight', 'F16', '[4, 8]', '50.00%', 'no', 'yes']);
    expect(row('p.bias')).toEqual(['p.bias', 'F32', '[8]', '37.50%', '-', '-']);
    // Columns line up: every row's dtype starts where the header's does.
    const col = lines[head].indexOf('dtype');
    for (const l of lines.slice(head + 1, head + 7)) expect(l.slice(col, col + 1)).toMatch(/[FB]/);
    const mats = Object.values(known).filter((k) => k.expect);
    const zeros = mats.reduce((a, k) => a + k.values.filter((v) => v === 0).length, 0);
    const params = mats.reduce((a, k) => a + k.values.length, 0);
    expect(params).toBe(146);
    const pct = ((100 * zeros) / params).toFixed(2);
    expect(lines).toContain(`2-D weights  5 tensors, 146 parameters, sparsity ${pct}%; 2:4 in 1/5, 4:8 in 2/5`);
  });

  it('fails with one line for a missing model', () => {
    const r = runs.missing;
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`shears: ${missing}: no such folder (and not a HuggingFace Hub id of the form owner/name)\n`);
  });

  it('checks GPT-2 Conv1D weights ([in, out]) along their input dimension', async () => {
    const dir = join(root, 'gpt2ish');
    // Rows 0,1 of every 4 are zero: along dim 0 (the inputs of a Conv1D [in, out]) that is exactly 2:4.
    const v = Array.from({ length: 32 }, (_, i) => (Math.floor(i / 4) % 4 < 2 ? 0 : 1));
    writeKnown(dir, 'gpt2', {
      'h.0.mlp.c_fc.weight': { dtype: 'F32', shape: [8, 4], values: v },
      'h.0.other.weight': { dtype: 'F32', shape: [8, 4], values: v },
    });
    const ckpt = await Checkpoint.open(dir);
    const s = inspectCheckpoint(ckpt, dir);
    ckpt.close();
    expect(s.tensors.find((t) => t.name === 'h.0.mlp.c_fc.weight')).toMatchObject({ inputDim: 0, nm: { '2:4': true, '4:8': true } });
    expect(s.tensors.find((t) => t.name === 'h.0.other.weight')).toMatchObject({ inputDim: 1, nm: { '2:4': false, '4:8': false } });
  });
});
