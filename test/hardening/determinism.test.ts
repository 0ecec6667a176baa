/**
 * The same prune command twice gives byte-identical output files. The one exception is by design:
 * shears-report.json records how long each step took and the peak memory, so its "timings",
 * "peakRssBytes" and per-layer "seconds" differ between runs — and nothing else in it does.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runPrune, type PruneJob } from '../../src/prune/job.js';
import { scratchDir } from './fuzz-helpers.js';
import { BUNDLED } from './model-copy.js';

const root = scratchDir('determinism');
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Every file of a folder, by name, as bytes. */
function snapshot(dir: string): Map<string, Buffer> {
  return new Map(readdirSync(dir).sort().map((f) => [f, readFileSync(join(dir, f))]));
}

/** The report without the fields that measure the run rather than describe its result. */
function withoutMeasurements(text: string): unknown {
  const r = JSON.parse(text) as Record<string, unknown> & { layers: Record<string, unknown>[] };
  delete r.timings;
  delete r.peakRssBytes;
  for (const l of r.layers) delete l.seconds;
  return r;
}

describe('determinism', () => {
  for (const [method, spec] of [
    ['sparsegpt', { kind: 'unstructured', sparsity: 0.6 }],
    ['wanda', { kind: 'nm', n: 2, m: 4 }],
    ['random', { kind: 'unstructured', sparsity: 0.5 }],
  ] as const) {
    it(`${method}: two runs of the same command write the same bytes (report: only time and memory differ)`, async () => {
      const job: PruneJob = { model: BUNDLED, out: join(root, method), overwrite: true, method, spec, calibration: 'c4', nsamples: 8, seqlen: 64, seed: 3, command: `same command (${method})` };
      await runPrune(job);
      const first = snapshot(job.out);
      await runPrune(job);
      const second = snapshot(job.out);
      expect([...second.keys()]).toEqual([...first.keys()]);
      expect([...first.keys()]).toContain('model.safetensors');
      for (const [name, bytes] of first) {
        if (name === 'shears-report.json') continue;
        expect(second.get(name)!.equals(bytes), name).toBe(true);
      }
      const a = first.get('shears-report.json')!.toString('utf8');
      const b = second.get('shears-report.json')!.toString('utf8');
      expect(withoutMeasurements(b)).toEqual(withoutMeasurements(a));
    });
  }
});
