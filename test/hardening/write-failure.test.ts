/**
 * A disk that fills up mid-run: node:fs's write calls are wrapped so that, once a byte budget is spent,
 * they fail with ENOSPC as the kernel reports it. Wherever the failure lands (the first header, the middle
 * of the weights, the copied side files, the report), the run ends in one ShearsError line naming the
 * output, the output folder is absent (or the previous one untouched with overwrite), and no temporary
 * file or folder is left.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';

const disk = vi.hoisted(() => ({ budget: Infinity, failures: 0 }));

vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const spend = (bytes: number): void => {
    disk.budget -= bytes;
    if (disk.budget < 0) {
      disk.failures++;
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    }
  };
  const size = (data: unknown): number => (typeof data === 'string' ? Buffer.byteLength(data) : (data as ArrayBufferView).byteLength);
  const mocked = {
    ...fs,
    writeSync: ((fd: number, data: ArrayBufferView | string, ...rest: unknown[]) => {
      spend(typeof rest[1] === 'number' ? rest[1] : size(data));
      return (fs.writeSync as (...a: unknown[]) => number)(fd, data, ...rest);
    }) as typeof fs.writeSync,
    writeFileSync: ((path: unknown, data: unknown, ...rest: unknown[]) => {
      spend(size(data));
      return (fs.writeFileSync as (...a: unknown[]) => void)(path, data, ...rest);
    }) as typeof fs.writeFileSync,
    copyFileSync: ((src: string, dst: string, mode?: number) => {
      spend(fs.statSync(src).size);
      return fs.copyFileSync(src, dst, mode);
    }) as typeof fs.copyFileSync,
  };
  return { ...mocked, default: mocked };
});

// Imported after the mock is declared (vi.mock is hoisted): shears sees the failing disk.
const { runPrune } = await import('../../src/prune/job.js');
const { ShearsError } = await import('../../src/errors.js');
const { scratchDir } = await import('./fuzz-helpers.js');
const { BUNDLED } = await import('./model-copy.js');

const root = scratchDir('enospc');
afterAll(() => rmSync(root, { recursive: true, force: true }));
beforeEach(() => {
  disk.budget = Infinity;
  disk.failures = 0;
});

const job = (out: string, overwrite = false) => ({
  model: BUNDLED, out, overwrite, method: 'magnitude' as const, spec: { kind: 'unstructured' as const, sparsity: 0.5 },
  calibration: 'tinystories', nsamples: 2, seqlen: 32,
});

/** Bytes a complete run writes, and of those the report's (written last): measured once on a disk that never fills. */
async function bytesOfOneRun(): Promise<{ total: number; report: number }> {
  disk.budget = 1e12;
  const out = join(root, 'measure');
  await runPrune(job(out));
  const used = 1e12 - disk.budget;
  const report = statSync(join(out, 'shears-report.json')).size;
  rmSync(out, { recursive: true });
  disk.budget = Infinity;
  return { total: used, report };
}

describe('running out of disk space', () => {
  it('fails cleanly wherever the disk fills: first bytes, mid-weights, side files, report', async () => {
    const { total, report } = await bytesOfOneRun();
    expect(total).toBeGreaterThan(1_000_000); // the 1 MB model is rewritten
    expect(report).toBeGreaterThan(1000);
    // Budgets from nothing to just short of the end, so that the last failures hit the side files and the
    // report. The report's length varies by a few bytes from run to run (it records times), so the last
    // budget stops halfway through it rather than at its last byte.
    const budgets = [0, 1000, total * 0.3, total * 0.7, total - 20_000, total - report - 200, total - report / 2];
    for (const [k, budget] of budgets.entries()) {
      const out = join(root, `full-${k}`);
      disk.budget = budget;
      disk.failures = 0;
      const e = await runPrune(job(out)).then(() => undefined, (err: unknown) => err);
      disk.budget = Infinity;
      expect(disk.failures, `budget ${budget}`).toBeGreaterThan(0);
      expect(e, `budget ${budget}: ${String(e)}`).toBeInstanceOf(ShearsError);
      const msg = (e as Error).message;
      expect(msg).toMatch(/ENOSPC/);
      expect(msg).not.toMatch(/\n/);
      expect(msg.startsWith(root), msg).toBe(true); // names the file being written
      expect(existsSync(out)).toBe(false);
      expect(readdirSync(root).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
    }
  });

  it('with overwrite, the previous output is left exactly as it was', async () => {
    const out = join(root, 'previous');
    await runPrune(job(out));
    const before = readdirSync(out).map((f) => [f, readFileSync(join(out, f)).toString('base64')]);
    disk.budget = 500_000;
    const e = await runPrune(job(out, true)).then(() => undefined, (err: unknown) => err);
    disk.budget = Infinity;
    expect(e).toBeInstanceOf(ShearsError);
    expect(readdirSync(out).map((f) => [f, readFileSync(join(out, f)).toString('base64')])).toEqual(before);
    expect(readdirSync(root).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
  });
});
