/**
 * Interrupted runs, through the real launcher (`node bin/shears.js`, which starts the CLI in a child
 * process): SIGTERM sent to the launcher alone, or SIGINT to the whole process group as a terminal's
 * Ctrl-C does, in the middle of `prune` or `export` on a synthetic model big enough to still be running.
 * Afterwards the output folder is absent (or, with --overwrite, the previous one is byte for byte intact),
 * no `.tmp-*` file or folder is left, no process of the run survives, and the exit code is 128 + signal.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSyntheticLlama } from '../../scripts/synthetic-model.js';
import { runPrune } from '../../src/prune/job.js';
import { scratchDir } from './fuzz-helpers.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'shears.js');
const root = scratchDir('interrupt');
afterAll(() => rmSync(root, { recursive: true, force: true }));

beforeAll(() => {
  // 13M parameters, 50 MB: SparseGPT takes seconds per block here, so a signal lands mid-run.
  writeSyntheticLlama(join(root, 'model'), { hidden: 512, layers: 4, intermediate: 1376, heads: 8, kvHeads: 8, vocab: 512, dtype: 'F32', maxPositions: 512, seed: 1 });
});

interface Run {
  child: ChildProcess;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the CLI in its own process group (so that the test can signal the group like a terminal). */
function start(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: root, detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, HF_HUB_OFFLINE: '1', ...env } });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return { child, stderr: () => err, exit };
}

async function until(what: string, cond: () => boolean, run: Run, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (run.child.exitCode !== null) throw new Error(`the run ended before ${what}: ${run.stderr()}`);
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}: ${run.stderr()}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const temporaries = (): string[] => readdirSync(root).filter((f) => f.startsWith('.tmp-'));

/** True while any process of the run's group is alive. */
function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

const prune = (method = 'sparsegpt'): string[] => ['prune', 'model', '--method', method, '--sparsity', '0.5', '--calibration', 'tinystories', '--nsamples', '8', '--seqlen', '128'];

describe('interrupted runs leave nothing half-written', () => {
  it('prune, SIGTERM to the launcher during block 1: no output, no temporaries, exit 143', async () => {
    const run = start([...prune(), '--out', 'pruned']);
    await until('block 1', () => run.stderr().includes('block 1/4'), run);
    expect(temporaries().length).toBeGreaterThan(0); // the run was writing
    run.child.kill('SIGTERM');
    const { code } = await run.exit;
    expect(code).toBe(143);
    expect(run.stderr()).toMatch(/shears: interrupted by SIGTERM \(removed \d+ unfinished temporary output\(s\)\)\n$/);
    expect(existsSync(join(root, 'pruned'))).toBe(false);
    expect(temporaries()).toEqual([]);
    expect(groupAlive(run.child.pid!)).toBe(false);
  });

  it('prune --overwrite, Ctrl-C (SIGINT to the process group): the previous output is intact, exit 130', async () => {
    const prev = join(root, 'previous');
    // The previous output: a complete magnitude-pruned folder (made in-process, which is quicker).
    await runPrune({ model: join(root, 'model'), out: prev, method: 'magnitude', spec: { kind: 'unstructured', sparsity: 0.5 }, calibration: 'tinystories', nsamples: 1, seqlen: 16 });
    writeFileSync(join(prev, 'marker.txt'), 'from before');
    const before = readdirSync(prev).map((f) => [f, readFileSync(join(prev, f)).toString('base64')]);

    const run = start([...prune(), '--out', 'previous', '--overwrite']);
    await until('block 1', () => run.stderr().includes('block 1/4'), run);
    process.kill(-run.child.pid!, 'SIGINT');
    const { code } = await run.exit;
    expect(code).toBe(130);
    expect(run.stderr()).toMatch(/shears: interrupted by SIGINT/);
    expect(readdirSync(prev).map((f) => [f, readFileSync(join(prev, f)).toString('base64')])).toEqual(before);
    expect(temporaries()).toEqual([]);
    expect(groupAlive(run.child.pid!)).toBe(false);
  });

  it('export (synchronous work: the CLI cannot run its handler), SIGTERM: the launcher kills it and cleans up', async () => {
    // No grace period: the launcher kills the busy CLI at once and removes what it reported over IPC.
    const run = start(['export', 'model', '--format', 'sparse-bitmask', '--out', 'exported'], { SHEARS_STOP_GRACE_MS: '0' });
    await until('the temporary folder', () => temporaries().length > 0, run);
    run.child.kill('SIGTERM');
    const { code } = await run.exit;
    expect(code).toBe(143);
    expect(run.stderr()).toMatch(/shears: stopped by SIGTERM \(killed after 0 s in uninterruptible work; removed 1 unfinished temporary output\(s\)\)\n$/);
    expect(existsSync(join(root, 'exported'))).toBe(false);
    expect(temporaries()).toEqual([]);
    expect(groupAlive(run.child.pid!)).toBe(false);
  });
});
