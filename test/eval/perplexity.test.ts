import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { openModel } from '../../src/model.js';
import { perplexity } from '../../src/eval/perplexity.js';
import { SafetensorsReader } from '../../src/io/safetensors/reader.js';

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'llama-tiny-gqa');

/** Mean next-token NLL from the oracle logits (llama2.c's PyTorch forward), in float64. */
function oracleMeanNll(ids: BigInt64Array, logits: Float32Array, windows: number, seq: number, vocab: number): number {
  let sum = 0;
  let n = 0;
  for (let w = 0; w < windows; w++) {
    for (let t = 0; t < seq - 1; t++) {
      const row = logits.subarray((w * seq + t) * vocab, (w * seq + t + 1) * vocab);
      let max = -Infinity;
      for (const v of row) max = Math.max(max, v);
      let z = 0;
      for (const v of row) z += Math.exp(v - max);
      const target = Number(ids[w * seq + t + 1]);
      sum += -(row[target] - max - Math.log(z));
      n++;
    }
  }
  return sum / n;
}

describe('perplexity (SparseGPT/Wanda protocol)', () => {
  const exp = SafetensorsReader.open(join(FIXTURE, 'expected.safetensors'));
  const ids = exp.readTyped('input_ids') as BigInt64Array;
  const logits = exp.readFloat32('logits');
  const stream = Int32Array.from(ids, Number);

  it('equals exp(mean NLL) computed from independent oracle logits', async () => {
    const { arch, src, ckpt } = await openModel(FIXTURE);
    const r = await perplexity(arch, src, stream, 24);
    const want = oracleMeanNll(ids, logits, 2, 24, 101);
    expect(r.windows).toBe(2);
    expect(r.predicted).toBe(46);
    expect(Math.abs(r.meanNll - want)).toBeLessThan(1e-5);
    expect(r.perplexity).toBeCloseTo(Math.exp(want), 4);
    ckpt.close();
  });

  it('drops the remainder, honours maxTokens, and gives the same answer in window groups', async () => {
    const { arch, src, ckpt } = await openModel(FIXTURE);
    const whole = await perplexity(arch, src, stream, 24);
    const longer = new Int32Array(stream.length + 7);
    longer.set(stream);
    expect((await perplexity(arch, src, longer, 24)).meanNll).toBeCloseTo(whole.meanNll, 10);
    const first = await perplexity(arch, src, stream, 24, { maxTokens: 30 });
    expect(first.windows).toBe(1);
    expect(Math.abs(first.meanNll - oracleMeanNll(ids, logits, 1, 24, 101))).toBeLessThan(1e-5);
    const grouped = await perplexity(arch, src, stream, 24, { activationBudgetBytes: 1 });
    expect(grouped.meanNll).toBeCloseTo(whole.meanNll, 6);
    await expect(perplexity(arch, src, stream.subarray(0, 10), 24)).rejects.toThrow(/fewer than one window of 24/);
    ckpt.close();
  });
});
