/**
 * OWL: the outlier ratio and the per-block sparsities against values derived by hand and a float64
 * transcription of the reference's mapping (luuyin/OWL lib/prune_all.py, all_layer_ratio), the bounds
 * (target ± lambda, mean = target), and the run end to end on stories260K (the ratios are the dense
 * model's, the blocks get them, refusals).
 */
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { blockOutlierRatio, owlSparsities } from '../../src/prune/owl.js';
import { runPrune, type PruneJob } from '../../src/prune/job.js';
import { openModel } from '../../src/model.js';
import { loadWeights, runBlockOver } from '../../src/run/blocks.js';
import { loadCorpus } from '../../src/data/datasets.js';
import { sampleWindows } from '../../src/data/calibration.js';
import { loadTokenizer } from '../../src/tokenize/tokenizer.js';
import { lcg } from './helpers.js';

/** The reference: scale D to [0, 2λ], subtract the mean, add the density 1 − S; sparsity = 1 − density. */
function referenceMapping(d: number[], s: number, lambda: number): number[] {
  const lo = Math.min(...d), hi = Math.max(...d);
  const scaled = d.map((v) => ((v - lo) * (1 / (hi - lo))) * lambda * 2);
  const mean = scaled.reduce((a, b) => a + b, 0) / scaled.length;
  return scaled.map((v) => 1 - (v - mean + (1 - s)));
}

const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;

describe('OWL ratios', () => {
  it('outlier ratio: the share of pooled |W|·sqrt(s) above M × their mean (hand-derived)', () => {
    // Layer A (2×2), s = [4, 1] → sqrt [2, 1]: scores [2·1, 1·1; 2·3, 1·0.5] = [2, 1, 6, 0.5].
    // Layer B (1×3), s = [1, 1, 1]: scores [1, 1, 20.5]. Pooled mean = 32/7 = 4.571…; 2 × mean = 9.14:
    // only 20.5 is above → 1/7. With M = 1: 6 and 20.5 → 2/7.
    const a = { weight: { data: Float32Array.from([1, -1, 3, 0.5]), rows: 2, cols: 2 }, colSq: Float64Array.from([4, 1]) };
    const b = { weight: { data: Float32Array.from([1, 1, -20.5]), rows: 1, cols: 3 }, colSq: Float64Array.from([1, 1, 1]) };
    expect(blockOutlierRatio([a, b], 2)).toBeCloseTo(1 / 7, 15);
    expect(blockOutlierRatio([a, b], 1)).toBeCloseTo(2 / 7, 15);
    expect(blockOutlierRatio([a, b], 5)).toBe(0);
  });

  it('block sparsities equal a hand-derived case', () => {
    // D = [1, 2, 3, 6], S = 0.7, λ = 0.08: scaled 2λ·(D − 1)/5 = [0, 0.032, 0.064, 0.16], mean 0.064,
    // deviations [−0.064, −0.032, 0, 0.096]: 0.096 > λ, so all shrink by 0.08/0.096:
    // sparsities 0.7 − dev·(5/6) = [0.7533…, 0.7266…, 0.7, 0.62].
    const s = owlSparsities([1, 2, 3, 6], 0.7, 0.08);
    const want = [0.7 + 0.064 * (5 / 6), 0.7 + 0.032 * (5 / 6), 0.7, 0.62];
    s.forEach((v, i) => expect(v).toBeCloseTo(want[i], 14));
  });

  it('equals the reference mapping when its deviations fit, and always keeps mean = S within S ± λ', () => {
    // Symmetric spread: the reference's own result.
    const sym = [0.01, 0.02, 0.03, 0.04, 0.05];
    const ours = owlSparsities(sym, 0.6, 0.08);
    referenceMapping(sym, 0.6, 0.08).forEach((v, i) => expect(ours[i]).toBeCloseTo(v, 14));
    // Random ratios, many targets and lambdas.
    const rand = lcg(7);
    for (let trial = 0; trial < 200; trial++) {
      const blocks = 2 + Math.floor(rand() * 40);
      const d = Array.from({ length: blocks }, () => rand() ** 3 * 0.1);
      const target = 0.2 + rand() * 0.6, lambda = rand() * 0.15;
      const s = owlSparsities(d, target, lambda);
      expect(mean(s)).toBeCloseTo(target, 12);
      for (const v of s) {
        expect(v).toBeGreaterThanOrEqual(target - lambda - 1e-12);
        expect(v).toBeLessThanOrEqual(target + lambda + 1e-12);
      }
      // More outliers → lower sparsity (never higher).
      for (let i = 0; i < blocks; i++) for (let j = 0; j < blocks; j++) if (d[i] > d[j]) expect(s[i]).toBeLessThanOrEqual(s[j] + 1e-15);
      // The spread is the reference's 2λ unless shrunk to fit ±λ.
      const ref = referenceMapping(d, target, lambda);
      if (ref.every((v) => Math.abs(v - target) <= lambda)) ref.forEach((v, i) => expect(s[i]).toBeCloseTo(v, 12));
    }
    expect(owlSparsities([0.02, 0.02, 0.02], 0.5, 0.08)).toEqual([0.5, 0.5, 0.5]);
  });
});

describe('--owl through shears prune (stories260K)', () => {
  const model = join(import.meta.dirname, '..', '..', 'models', 'stories260K');
  const tmp = mkdtempSync(join(tmpdir(), 'shears-owl-'));
  let k = 0;
  const job = (over: Partial<PruneJob>): PruneJob => ({
    model, out: join(tmp, `o${k++}`), method: 'wanda', spec: { kind: 'unstructured', sparsity: 0.7 },
    calibration: 'tinystories', nsamples: 4, seqlen: 32, seed: 0, owl: { m: 5, lambda: 0.08 }, ...over,
  });

  it('ratios come from the dense model, each block is pruned to its sparsity, mean = target', async () => {
    const r = await runPrune(job({ method: 'magnitude' }));
    const owl = r.owl!;
    expect(owl).toMatchObject({ m: 5, lambda: 0.08 });
    // Reference ratios: dense blocks in turn, column norms of each linear input, pooled scores.
    const { ckpt, arch, src } = await openModel(model);
    try {
      const windows = sampleWindows(loadCorpus('tinystories', 'calibration'), await loadTokenizer(ckpt.dir), 4, 32, 0);
      const x = await arch.embed(loadWeights(src, arch.embedTensors()), windows.ids, windows.seqlen);
      for (let b = 0; b < arch.spec.numLayers; b++) {
        const w = loadWeights(src, arch.blockTensors(b));
        const sums = new Map<string, Float64Array>();
        let seqs = 0;
        await runBlockOver(arch, b, w, x, windows.seqlen, x, (inputs, n) => {
          seqs += n;
          for (const [id, v] of Object.entries(inputs)) {
            const cols = arch.linears(b).find((l) => l.input === id)?.cols;
            if (!cols) continue;
            const s = sums.get(id) ?? new Float64Array(cols);
            for (let i = 0; i < v.length; i++) s[i % cols] += v[i] * v[i];
            sums.set(id, s);
          }
        });
        const scores: number[] = [];
        for (const l of arch.linears(b)) {
          const wt = w.get(l.tensor)!;
          const s = sums.get(l.input)!;
          for (let r0 = 0; r0 < l.rows; r0++) for (let j = 0; j < l.cols; j++) scores.push(Math.abs(wt[r0 * l.cols + j]) * Math.sqrt(s[j] / seqs));
        }
        const m = mean(scores);
        const want = scores.filter((v) => v > 5 * m).length / scores.length;
        expect(Math.abs(owl.outlierRatios[b] - want)).toBeLessThanOrEqual(2 / scores.length); // float32 scores vs float64
      }
    } finally {
      ckpt.close();
    }
    expect(mean(owl.sparsities)).toBeCloseTo(0.7, 12);
    expect(new Set(owl.sparsities.map((s) => s.toFixed(6))).size).toBeGreaterThan(1);
    for (const l of r.layers) expect(l.sparsity).toBeCloseTo(owl.sparsities[l.block], 2);
  });

  it('refuses N:M and --layer-sparsity with one line (exit 2) and writes nothing', async () => {
    const nm = job({ spec: { kind: 'nm', n: 2, m: 4 } });
    await expect(runPrune(nm)).rejects.toMatchObject({ exitCode: 2, message: expect.stringMatching(/--owl needs --sparsity/) });
    const ls = job({ layerSparsity: [0.5] });
    await expect(runPrune(ls)).rejects.toMatchObject({ exitCode: 2, message: expect.stringMatching(/--layer-sparsity/) });
    const wide = job({ owl: { m: 5, lambda: 0.4 } });
    await expect(runPrune(wide)).rejects.toMatchObject({ exitCode: 2 });
    for (const j of [nm, ls, wide]) expect(existsSync(j.out)).toBe(false);
  });
});
