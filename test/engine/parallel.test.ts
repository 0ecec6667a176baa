/**
 * engine/parallel.ts: passes split over worker threads give, range by range, what the same kernel gives
 * run here over the same range (expected values: the kernel called directly, no worker involved).
 */
import { spawnSync } from 'node:child_process';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { across, maxRanges, sharedF32, sharedF64, stopWorkers } from '../../src/engine/parallel.js';

/** out[k] = x[k]² + 1 and the float64 sum of x over [k0, k1); its range and part come back too. */
function squarePlusOne(x: Float32Array, out: Float64Array, k0: number, k1: number, part: number): [number, number, number, number] {
  let s = 0;
  for (let k = k0; k < k1; k++) {
    out[k] = x[k] * x[k] + 1;
    s += x[k];
  }
  return [s, k0, k1, part];
}

function failing(x: Float32Array, k0: number): number {
  if (k0 > 0) throw new Error(`range at ${k0} refused`);
  return x.length;
}

/** Throws only off this thread (the workers do not have the marker this test sets). */
function failingInWorker(x: Float32Array): number {
  if (!(globalThis as { shearsTestHere?: boolean }).shearsTestHere) throw new Error('refused in a worker');
  for (let k = 0; k < 5e6; k++) x[0] += 0; // slow enough that the worker takes a range
  return x.length;
}

const saved = process.env.SHEARS_THREADS;
afterEach(() => {
  if (saved === undefined) delete process.env.SHEARS_THREADS;
  else process.env.SHEARS_THREADS = saved;
});
afterAll(() => stopWorkers());

describe('across', () => {
  const n = 300_001;
  const x = sharedF32(n);
  for (let k = 0; k < n; k++) x[k] = Math.sin(k * 0.37) * 3;

  for (const threads of [2, 3]) {
    it(`splits [0, n) over ${threads} threads into ordered ranges whose writes and results equal the kernel run here`, async () => {
      process.env.SHEARS_THREADS = String(threads);
      expect(maxRanges()).toBeGreaterThanOrEqual(threads);
      const out = sharedF64(n);
      const results = await across<[number, number, number, number]>(squarePlusOne, n, [x, out]);
      expect(results.length).toBe(maxRanges());
      expect(results.map((r) => r[3])).toEqual([...Array(results.length).keys()]);
      expect(results[0][1]).toBe(0);
      expect(results.at(-1)![2]).toBe(n);
      for (let p = 1; p < results.length; p++) expect(results[p][1]).toBe(results[p - 1][2]);
      const here = new Float64Array(n);
      for (const [s, k0, k1] of results) expect(s).toBe(squarePlusOne(x, here, k0, k1, 0)[0]);
      expect(Buffer.from(out.buffer).equals(Buffer.from(here.buffer))).toBe(true);
    });
  }

  it('runs small passes here in one range', async () => {
    process.env.SHEARS_THREADS = '2';
    const small = new Float32Array([1, 2, 3]); // not shared: allowed, nothing leaves this thread
    const out = new Float64Array(3);
    const results = await across<[number, number, number, number]>(squarePlusOne, 3, [small, out]);
    expect(results).toEqual([[6, 0, 3, 0]]);
    expect([...out]).toEqual([2, 5, 10]);
  });

  it('refuses an array a worker could not write back, and reports a kernel that throws in a worker', async () => {
    process.env.SHEARS_THREADS = '2';
    await expect(across(squarePlusOne, n, [x, new Float64Array(n)])).rejects.toThrow(/squarePlusOne.*not in a SharedArrayBuffer/);
    await expect(across(failing, n, [x])).rejects.toThrow(/range at \d+ refused/);
    (globalThis as { shearsTestHere?: boolean }).shearsTestHere = true;
    await expect(across(failingInWorker, n, [x])).rejects.toThrow(/parallel kernel failed in a worker: .*refused in a worker/);
    // The pool still works afterwards.
    const out = sharedF64(n);
    expect((await across<[number]>(squarePlusOne, n, [x, out])).length).toBe(maxRanges());
  });

  it('idle workers do not keep a process alive', () => {
    const code = `import { across, sharedF32 } from './src/engine/parallel.ts';
      function f(a, k0, k1) { let s = 0; for (let k = k0; k < k1; k++) s += a[k]; return s; }
      const a = sharedF32(1 << 18).fill(1);
      const r = await across(f, a.length, [a]);
      console.log(r.length, r.reduce((x, y) => x + y, 0));`;
    const t0 = Date.now();
    const res = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', env: { ...process.env, SHEARS_THREADS: '2' }, timeout: 60_000 });
    expect(res.stderr).not.toMatch(/Error/);
    expect(res.stdout.trim()).toBe(`8 ${1 << 18}`);
    expect(res.status).toBe(0);
    expect(Date.now() - t0).toBeLessThan(30_000);
  });
});
