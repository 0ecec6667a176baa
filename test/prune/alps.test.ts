/**
 * ALPS against a float64 transcription of the reference (alps-ref.ts), its masks, and the point of the
 * method: a layer reconstruction error no larger than SparseGPT's, on random correlated layers and on the
 * real layers of the bundled model. Errors are computed here in float64: Σ_r (w_r − ŵ_r)ᵀ H (w_r − ŵ_r).
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { InverseCache, alpsPrune, normalizeGram } from '../../src/prune/alps.js';
import { WorkArrays } from '../../src/prune/work-arrays.js';
import { sparsegptPrune } from '../../src/prune/sparsegpt.js';
import { GramAccumulator } from '../../src/prune/stats.js';
import type { SparsitySpec } from '../../src/prune/spec.js';
import { openModel } from '../../src/model.js';
import { loadWeights, runBlockOver } from '../../src/run/blocks.js';
import { loadCorpus } from '../../src/data/datasets.js';
import { sampleWindows } from '../../src/data/calibration.js';
import { loadTokenizer } from '../../src/tokenize/tokenizer.js';
import { refAlps } from './alps-ref.js';
import { gaussian, lcg, randomMatrix } from './helpers.js';

const SPECS: [string, SparsitySpec][] = [
  ['50%', { kind: 'unstructured', sparsity: 0.5 }],
  ['70%', { kind: 'unstructured', sparsity: 0.7 }],
  ['2:4', { kind: 'nm', n: 2, m: 4 }],
];

/** Correlated inputs with a few large channels, like LLM activations. */
function correlatedInputs(tokens: number, cols: number, seed: number, rank: number): Float32Array {
  const z = randomMatrix(tokens, rank, seed);
  const a = randomMatrix(rank, cols, seed + 1, 1 / Math.sqrt(rank));
  const g = gaussian(lcg(seed + 2));
  const scale = Array.from({ length: cols }, (_, j) => (j % 7 === 3 ? 8 : 1) * Math.exp(0.5 * g()));
  const x = new Float32Array(tokens * cols);
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < cols; j++) {
      let s = 0.05 * g();
      for (let k = 0; k < rank; k++) s += z[t * rank + k] * a[k * cols + j];
      x[t * cols + j] = s * scale[j];
    }
  }
  return x;
}

async function gramOf(x: Float32Array, tokens: number, cols: number, sequences: number): Promise<Float32Array> {
  const acc = new GramAccumulator(cols);
  const per = tokens / sequences;
  for (let s = 0; s < sequences; s++) await acc.add(x.subarray(s * per * cols, (s + 1) * per * cols), per, 1);
  await acc.finish();
  return acc.result();
}

/** Σ_r (w0_r − w_r)ᵀ H (w0_r − w_r) in float64. */
function reconstructionError(w0: Float32Array, w: ArrayLike<number>, h: Float32Array, rows: number, cols: number): number {
  let e = 0;
  const d = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) d[j] = w0[r * cols + j] - w[r * cols + j];
    for (let i = 0; i < cols; i++) {
      if (d[i] === 0) continue;
      let s = 0;
      for (let j = 0; j < cols; j++) s += h[i * cols + j] * d[j];
      e += d[i] * s;
    }
  }
  return e;
}

/** The mask obeys the spec exactly: the reference's kept count over the layer, or N of every M per row. */
function expectExactMask(w: ArrayLike<number>, rows: number, cols: number, spec: SparsitySpec): void {
  let zeros = 0;
  for (let k = 0; k < rows * cols; k++) if (w[k] === 0) zeros++;
  if (spec.kind === 'unstructured') {
    const kept = Math.round((1 - spec.sparsity) * rows * cols);
    expect(zeros).toBe(rows * cols - kept);
  } else {
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < cols; g += spec.m) {
        let z = 0;
        const width = Math.min(spec.m, cols - g);
        for (let j = 0; j < width; j++) if (w[r * cols + g + j] === 0) z++;
        expect(z).toBe(Math.min(spec.n, width));
      }
    }
  }
}

describe('ALPS matches a float64 transcription of the reference', () => {
  for (const [name, spec] of SPECS) {
    it(name, async () => {
      const rows = 12, cols = 24, sequences = 4, tokens = 192;
      const x = correlatedInputs(tokens, cols, 11 + cols, 10);
      const h = await gramOf(x, tokens, cols, sequences);
      const w0 = randomMatrix(rows, cols, 5);
      const ref = refAlps(w0, rows, cols, h, spec);
      const w = Float32Array.from(w0);
      const res = await alpsPrune({ data: w, rows, cols }, h, spec);
      expectExactMask(w, rows, cols, spec);
      let mismatch = 0;
      for (let k = 0; k < w.length; k++) if ((w[k] === 0) !== (ref[k] === 0)) mismatch++;
      // float32 products against float64: the mask may differ on a near-tie, not more.
      expect(mismatch).toBeLessThanOrEqual(2);
      const e = reconstructionError(w0, w, h, rows, cols);
      const eRef = reconstructionError(w0, ref, h, rows, cols);
      expect(Math.abs(e - eRef)).toBeLessThanOrEqual(0.02 * eRef);
      // The reported loss is pcg.ts's float32-product measure of the same error.
      expect(Math.abs(res.loss! * 2 - e)).toBeLessThanOrEqual(1e-3 * e);
    });
  }
});

describe('ALPS on random correlated layers', () => {
  it('reconstructs the layer no worse than SparseGPT at 50%, 70% and 2:4, with exact masks, deterministically', async () => {
    const rows = 48, cols = 96, sequences = 4, tokens = 384;
    const x = correlatedInputs(tokens, cols, 2024, 24);
    const h = await gramOf(x, tokens, cols, sequences);
    const w0 = randomMatrix(rows, cols, 77);
    for (const [, spec] of SPECS) {
      const wa = Float32Array.from(w0), ws = Float32Array.from(w0);
      await alpsPrune({ data: wa, rows, cols }, h, spec);
      await sparsegptPrune({ data: ws, rows, cols }, h, spec, { blocksize: 32 });
      expectExactMask(wa, rows, cols, spec);
      expect(reconstructionError(w0, wa, h, rows, cols)).toBeLessThanOrEqual(reconstructionError(w0, ws, h, rows, cols));
      const again = Float32Array.from(w0);
      await alpsPrune({ data: again, rows, cols }, h, spec);
      expect(Buffer.from(again.buffer).equals(Buffer.from(wa.buffer))).toBe(true);
    }
  });

  it('layers sharing an input (one NormalizedGram, inverses kept by rho, work arrays kept) prune as if alone', async () => {
    const cols = 96, sequences = 4, tokens = 384;
    const h = await gramOf(correlatedInputs(tokens, cols, 31, 24), tokens, cols, sequences);
    const shared = normalizeGram(h, cols);
    const spec: SparsitySpec = { kind: 'unstructured', sparsity: 0.6 };
    // q, then a smaller k reading the same input: k reuses q's inverses and q's (larger) work arrays.
    const q = randomMatrix(64, cols, 3), k = randomMatrix(20, cols, 4);
    const qShared = Float32Array.from(q), kShared = Float32Array.from(k);
    const kept = { arrays: new WorkArrays(), inverses: new InverseCache() };
    await alpsPrune({ data: qShared, rows: 64, cols }, shared, spec, kept);
    const rk = await alpsPrune({ data: kShared, rows: 20, cols }, shared, spec, kept);
    // k alone: fresh arrays and inverses.
    const kAlone = Float32Array.from(k);
    const ra = await alpsPrune({ data: kAlone, rows: 20, cols }, normalizeGram(h, cols), spec);
    expect(Buffer.from(kShared.buffer).equals(Buffer.from(kAlone.buffer))).toBe(true);
    expect(rk.notes).toEqual(ra.notes);
    expectExactMask(kShared, 20, cols, spec);
  });

  it('the CG refinement on the final mask lowers the error, and N:M tails lose min(N, width)', async () => {
    const rows = 16, cols = 42, tokens = 256;
    const x = correlatedInputs(tokens, cols, 9, 12);
    const h = await gramOf(x, tokens, cols, 4);
    const w0 = randomMatrix(rows, cols, 3);
    for (const spec of [{ kind: 'unstructured', sparsity: 0.6 }, { kind: 'nm', n: 4, m: 8 }] as SparsitySpec[]) {
      const refined = Float32Array.from(w0), raw = Float32Array.from(w0);
      const r = await alpsPrune({ data: refined, rows, cols }, h, spec);
      await alpsPrune({ data: raw, rows, cols }, h, spec, { cgIter: 0 });
      expectExactMask(refined, rows, cols, spec);
      for (let k = 0; k < raw.length; k++) expect(refined[k] === 0).toBe(raw[k] === 0);
      expect(reconstructionError(w0, refined, h, rows, cols)).toBeLessThan(reconstructionError(w0, raw, h, rows, cols));
      if (spec.kind === 'nm') expect(r.notes!.join(' ')).toMatch(/last group of 2 column/);
    }
  });

  it('gives the same bits with its passes split over two cores as on one, tied thresholds included', async () => {
    // 256 × 320 = 81920 entries: above the size from which engine/parallel.ts splits a pass. Rows 2i and
    // 2i + 1 are equal, so every score comes twice and the threshold is a tie that must be broken in
    // index order (one range); the 2:4 and distinct-row cases split.
    const rows = 256, cols = 320, tokens = 640;
    const h = await gramOf(correlatedInputs(tokens, cols, 5, 40), tokens, cols, 4);
    const distinct = randomMatrix(rows, cols, 8);
    const paired = Float32Array.from(distinct);
    for (let r = 1; r < rows; r += 2) paired.copyWithin(r * cols, (r - 1) * cols, r * cols);
    const saved = process.env.SHEARS_THREADS;
    try {
      // An odd pruned count (40961): the last pair at the threshold loses one of its two equal entries.
      const odd: SparsitySpec = { kind: 'unstructured', sparsity: 0.50001 };
      for (const [w0, spec] of [[distinct, SPECS[0][1]], [paired, odd], [distinct, SPECS[2][1]]] as const) {
        const out: Float32Array[] = [];
        for (const threads of ['1', '2']) {
          process.env.SHEARS_THREADS = threads;
          const w = Float32Array.from(w0);
          await alpsPrune({ data: w, rows, cols }, h, spec, { maxIter: 30 });
          expectExactMask(w, rows, cols, spec);
          out.push(w);
        }
        expect(Buffer.from(out[1].buffer).equals(Buffer.from(out[0].buffer))).toBe(true);
      }
    } finally {
      if (saved === undefined) delete process.env.SHEARS_THREADS;
      else process.env.SHEARS_THREADS = saved;
    }
  });

  it('normalises H to a unit diagonal with the reference damping', () => {
    const h = new Float32Array([4, 1, 1, 9]);
    const g = normalizeGram(h, 2, 0.01);
    const add = 0.01 * 6.5;
    expect(g.added).toBeCloseTo(add, 12);
    expect(g.hn[0]).toBeCloseTo(1, 6);
    expect(g.hn[3]).toBeCloseTo(1, 6);
    expect(g.hn[1]).toBeCloseTo(1 / (Math.sqrt(4 + add) * Math.sqrt(9 + add)), 6);
  });
});

describe('ALPS on the real layers of stories260K', () => {
  const MODEL = join(import.meta.dirname, '..', '..', 'models', 'stories260K');
  /** Per block b of {0, 3}: each linear's dense weight and its input's H, from the dense model on TinyStories windows. */
  const layers: { name: string; rows: number; cols: number; w: Float32Array; h: Float32Array }[] = [];

  beforeAll(async () => {
    const model = await openModel(MODEL);
    const { arch, src } = model;
    const windows = sampleWindows(loadCorpus('tinystories', 'calibration'), await loadTokenizer(MODEL), 16, 128, 0);
    let x = await arch.embed(loadWeights(src, arch.embedTensors()), windows.ids, windows.seqlen);
    for (let b = 0; b <= 3; b++) {
      const w = loadWeights(src, arch.blockTensors(b));
      if (b === 0 || b === 3) {
        const acc = new Map<string, GramAccumulator>();
        for (const l of arch.linears(b)) if (!acc.has(l.input)) acc.set(l.input, new GramAccumulator(l.cols));
        await runBlockOver(arch, b, w, x, windows.seqlen, null, async (inputs, n) => {
          for (const [id, a] of acc) await a.add(inputs[id], inputs[id].length / a.cols, n);
        });
        for (const a of acc.values()) await a.finish();
        for (const l of arch.linears(b)) layers.push({ name: `${b}.${l.name}`, rows: l.rows, cols: l.cols, w: w.get(l.tensor)!, h: acc.get(l.input)!.result() });
      }
      const next = new Float32Array(x.length);
      await runBlockOver(arch, b, w, x, windows.seqlen, next);
      x = next;
    }
    model.ckpt.close();
  });

  for (const [name, spec] of SPECS) {
    it(`error ≤ SparseGPT's on every linear of blocks 0 and 3 at ${name}, exact masks`, async () => {
      expect(layers).toHaveLength(14);
      for (const l of layers) {
        const wa = Float32Array.from(l.w), ws = Float32Array.from(l.w);
        await alpsPrune({ data: wa, rows: l.rows, cols: l.cols }, l.h, spec);
        await sparsegptPrune({ data: ws, rows: l.rows, cols: l.cols }, l.h, spec);
        expectExactMask(wa, l.rows, l.cols, spec);
        const ea = reconstructionError(l.w, wa, l.h, l.rows, l.cols);
        const es = reconstructionError(l.w, ws, l.h, l.rows, l.cols);
        expect(ea, l.name).toBeLessThanOrEqual(es);
      }
    });
  }
});
