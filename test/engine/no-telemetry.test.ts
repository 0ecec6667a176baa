/**
 * onnxruntime telemetry stays off: a real session runs in a child process with a fresh TMPDIR and a fresh
 * HOME, and neither gets a file. A user's explicit ORT_DISABLE_TELEMETRY=0 reaches onnxruntime unchanged.
 * (Whether onnxruntime then writes its files depends on the machine: CI machines without a CA bundle or a
 * writable cache get none, so the test checks the variable the library reads, not the files.)
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO } from '../helpers/cli.js';

const made: string[] = [];
afterAll(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** Every file and folder under `dir`, relative to it. */
function listAll(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort();
}

/** A ReLU graph through src/engine/session.ts, in a child with its own TMPDIR and HOME; what each holds afterwards. */
async function runSession(telemetryEnv: string | undefined): Promise<{ tmp: string[]; home: string[]; seen: string | null }> {
  const tmp = mkdtempSync(join(tmpdir(), 'shears-telemetry-tmp-'));
  const home = mkdtempSync(join(tmpdir(), 'shears-telemetry-home-'));
  made.push(tmp, home);
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp, HOME: home, TSX_DISABLE_CACHE: '1' };
  // tsx would keep its transform cache in $TMPDIR; that is tsx's (the published package runs compiled JS).
  delete env.ORT_DISABLE_TELEMETRY;
  delete env.XDG_CACHE_HOME;
  if (telemetryEnv !== undefined) env.ORT_DISABLE_TELEMETRY = telemetryEnv;
  const script = `
    import { GraphBuilder } from ${JSON.stringify(join(REPO, 'src/engine/graph.ts'))};
    import { session, tensor } from ${JSON.stringify(join(REPO, 'src/engine/session.ts'))};
    const g = new GraphBuilder('probe');
    g.output(g.op('Relu', [g.input('x', 'float32', [3])]), 'float32', [3], 'y');
    const s = await session('probe', () => g.toBytes());
    const r = await s.run({ x: tensor(Float32Array.of(-1, 0.5, 2), [3]) });
    process.stdout.write(JSON.stringify({ y: Array.from(r.y.data), seen: process.env.ORT_DISABLE_TELEMETRY ?? null }));
  `;
  const loader = join(REPO, 'node_modules/tsx/dist/loader.mjs');
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', loader, '--input-type=module', '-e', script], { cwd: home, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`child exited ${code}: ${stderr}`))));
  });
  // The session really ran: ReLU of the input.
  const { y, seen } = JSON.parse(out) as { y: number[]; seen: string | null };
  expect(y).toEqual([0, 0.5, 2]);
  return { tmp: listAll(tmp), home: listAll(home), seen };
}

describe('onnxruntime telemetry', () => {
  it('writes nothing to TMPDIR or HOME when the user did not set ORT_DISABLE_TELEMETRY', async () => {
    const left = await runSession(undefined);
    expect(left).toEqual({ tmp: [], home: [], seen: '1' });
  });

  it('is the user\'s to turn on: ORT_DISABLE_TELEMETRY=0 reaches onnxruntime as the user set it', async () => {
    const left = await runSession('0');
    expect(left.seen).toBe('0');
  });

  it('only src/engine/session.ts loads onnxruntime-node, and it imports no-telemetry.ts first', () => {
    const files = ['src', 'scripts', 'test', 'bin'].flatMap((d) =>
      readdirSync(join(REPO, d), { recursive: true, encoding: 'utf8' })
        .filter((f) => /\.(ts|js|mjs)$/.test(f))
        .map((f) => join(REPO, d, f)),
    );
    // A value import (not `import type`), a dynamic import or a require of the package.
    const loads = /^\s*import\s+(?!type\b)[^;]*?from\s+['"]onnxruntime-node['"]|^\s*import\s+['"]onnxruntime-node['"]|import\(\s*['"]onnxruntime-node['"]\s*\)|require\(\s*['"]onnxruntime-node['"]\s*\)/m;
    const loaders = files.filter((f) => f !== join(REPO, 'test/engine/no-telemetry.test.ts') && loads.test(readFileSync(f, 'utf8')));
    expect(loaders.map((f) => relative(REPO, f))).toEqual(['src/engine/session.ts']);
    const session = readFileSync(join(REPO, 'src/engine/session.ts'), 'utf8');
    const first = session.search(/^import\s+['"]\.\/no-telemetry\.js['"]/m);
    expect(first).toBeGreaterThan(-1);
    expect(first).toBeLessThan(session.search(/^import\s+ort\s+from\s+['"]onnxruntime-node['"]/m));
  });
});
