/**
 * --refine after every method (ALPS included): the layer reconstruction error ‖(W0 − Ŵ)X‖², computed here in float64 from
 * the layer inputs X themselves, is no larger after refining than before, the mask (zero pattern) is the
 * method's, and the errors refine reports are that same quantity. On synthetic correlated inputs and on
 * the real inputs of the bundled model's second block.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PRUNE_METHODS, type Method } from '../../src/prune/methods.js';
import { LayerInput } from '../../src/prune/layer-input.js';
import { refineLayer } from '../../src/prune/refine.js';
import type { SparsitySpec } from '../../src/prune/spec.js';
import { openModel } from '../../src/model.js';
import { loadWeights, runBlockOver } from '../../src/run/blocks.js';
import { loadCorpus } from '../../src/data/datasets.js';
import { sampleWindows } from '../../src/data/calibration.js';
import { loadTokenizer } from '../../src/tokenize/tokenizer.js';
import { runPrune } from '../../src/prune/job.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gaussian, lcg, randomMatrix } from './helpers.js';

const METHODS: Method[] = ['magnitude', 'random', 'wanda', 'sparsegpt', 'alps'];
const SPECS: SparsitySpec[] = [{ kind: 'unstructured', sparsity: 0.5 }, { kind: 'unstructured', sparsity: 0.7 }, { kind: 'nm', n: 2, m: 4 }];

/** (2/sequences) Σ_t ((w0 − w)_r · x_t)² over rows r, in float64. */
function layerError(x: Float32Array, tokens: number, sequences: number, w0: Float32Array, w: Float32Array, rows: number, cols: number): number {
  const d = new Float64Array(rows * cols);
  for (let i = 0; i < d.length; i++) d[i] = w0[i] - w[i];
  let e = 0;
  for (let t = 0; t < tokens; t++) {
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let j = 0; j < cols; j++) s += d[r * cols + j] * x[t * cols + j];
      e += s * s;
    }
  }
  return (2 / sequences) * e;
}

/** Prunes a copy of `w0` with `method`, then refines a copy of that; checks the three claims. */
async function check(method: Method, spec: SparsitySpec, w0: Float32Array, rows: number, cols: number, x: Float32Array, tokens: number, sequences: number): Promise<{ before: number; after: number }> {
  const input = new LayerInput(cols, { columnNorms: true, gram: true, keepGram: true });
  await input.add(x, tokens, sequences);
  await input.finish();
  const w = { data: Float32Array.from(w0), rows, cols };
  await PRUNE_METHODS[method].prune(w, input, spec, { seed: 0 }, 3);
  const unrefined = Float32Array.from(w.data);
  const r = await refineLayer(w, w0, input, 0.01);
  const before = layerError(x, tokens, sequences, w0, unrefined, rows, cols);
  const after = layerError(x, tokens, sequences, w0, w.data, rows, cols);
  const where = `${method} ${spec.kind === 'nm' ? `${spec.n}:${spec.m}` : spec.sparsity}`;
  expect(after, where).toBeLessThanOrEqual(before);
  for (let i = 0; i < w0.length; i++) if ((w.data[i] === 0) !== (unrefined[i] === 0)) throw new Error(`${where}: refine changed the mask at ${i}`);
  expect(Math.abs(r.errorBefore - before) / before, where).toBeLessThan(1e-3);
  expect(Math.abs(r.errorAfter - after) / after, where).toBeLessThan(1e-3);
  expect(r.iterations).toBeLessThanOrEqual(10);
  return { before, after };
}

describe('--refine', () => {
  it('never raises the reconstruction error of any method, keeps its mask, on correlated inputs', async () => {
    const rows = 24, cols = 64, tokens = 512, sequences = 8;
    const g = gaussian(lcg(21));
    const z = randomMatrix(tokens, 24, 22);
    const a = randomMatrix(24, cols, 23, 0.2);
    const x = new Float32Array(tokens * cols);
    for (let t = 0; t < tokens; t++) {
      for (let j = 0; j < cols; j++) {
        let s = 0.05 * g();
        for (let k = 0; k < 24; k++) s += z[t * 24 + k] * a[k * cols + j];
        x[t * cols + j] = s * (j % 9 === 4 ? 10 : 1);
      }
    }
    const w0 = randomMatrix(rows, cols, 24);
    for (const method of METHODS) {
      for (const spec of SPECS) {
        const { before, after } = await check(method, spec, w0, rows, cols, x, tokens, sequences);
        // Refining gains most where the method does not update the kept weights.
        if (method !== 'sparsegpt' && method !== 'alps') expect(after).toBeLessThan(0.9 * before);
      }
    }
  });

  it('on the real inputs of stories260K block 1: every method, 50%, 70% and 2:4', async () => {
    const model = join(import.meta.dirname, '..', '..', 'models', 'stories260K');
    const { ckpt, arch, src } = await openModel(model);
    try {
      const tok = await loadTokenizer(ckpt.dir);
      const windows = sampleWindows(loadCorpus('tinystories', 'calibration'), tok, 8, 64, 0);
      const x = await arch.embed(loadWeights(src, arch.embedTensors()), windows.ids, windows.seqlen);
      await runBlockOver(arch, 0, loadWeights(src, arch.blockTensors(0)), x, windows.seqlen, x);
      const w = loadWeights(src, arch.blockTensors(1));
      const captured = new Map<string, Float32Array[]>();
      await runBlockOver(arch, 1, w, x, windows.seqlen, null, (inputs) => {
        for (const [id, v] of Object.entries(inputs)) captured.set(id, [...(captured.get(id) ?? []), Float32Array.from(v)]);
      });
      const tokens = windows.count * windows.seqlen;
      for (const l of arch.linears(1).filter((l) => ['self_attn.q_proj', 'self_attn.o_proj', 'mlp.down_proj'].includes(l.name))) {
        const parts = captured.get(l.input)!;
        const xs = new Float32Array(tokens * l.cols);
        let o = 0;
        for (const p of parts) xs.set(p, o), (o += p.length);
        const stored = w.get(l.tensor)!;
        expect(l.transposed).toBe(false);
        for (const method of METHODS) for (const spec of SPECS) await check(method, spec, stored, l.rows, l.cols, xs, tokens, windows.count);
      }
    } finally {
      ckpt.close();
    }
  });

  it('through shears prune: 2:4 still holds, each layer reports its PCG steps and errors, the settings are in the report', async () => {
    const model = join(import.meta.dirname, '..', '..', 'models', 'stories260K');
    const out = join(mkdtempSync(join(tmpdir(), 'shears-refine-')), 'out');
    const r = await runPrune({ model, out, method: 'magnitude', spec: { kind: 'nm', n: 2, m: 4 }, calibration: 'tinystories', nsamples: 4, seqlen: 32, seed: 0, refine: true });
    expect(r.nmOk).toBe(true);
    expect(r.calibration).not.toBeNull(); // magnitude needs no calibration, refine does
    expect(r.options.refine).toEqual({ iterations: 10, tolerance: 1e-4 });
    for (const l of r.layers) {
      expect(l.sparsity).toBeCloseTo(0.5, 10);
      expect(l.refine!.errorAfter).toBeLessThan(l.refine!.errorBefore);
      expect(l.refine!.iterations).toBeGreaterThan(0);
    }
    expect(r.timings.refine).toBeGreaterThan(0);
  });
});
