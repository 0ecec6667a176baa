/**
 * The published package, as a user gets it: `npm pack` (which builds dist/), the tarball installed with
 * `npm install` into an empty folder (scripts/pack-install.ts), and the installed `shears` run there on the
 * bundled model. The installed package has no src/ and no tsx (a devDependency), so every run below goes
 * through the compiled JavaScript in one process.
 *
 * - The tarball holds the compiled form of every module under src/ and the data the code reads at run time
 *   (models.json, the calibration texts, the bundled model), and nothing of the repository's development
 *   files.
 * - `npx shears inspect` and a magnitude `prune` work there; the pruned weights are byte for byte those the
 *   TypeScript sources produce in this process.
 * - Every command leaves nothing under TMPDIR or HOME (both fresh and empty).
 * - `shears --help` loads no onnxruntime (its native library is not mapped) and --expose-gc is in effect.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packAndInstall, type Installed } from '../../scripts/pack-install.js';
import { runPrune } from '../../src/prune/job.js';
import { knownModels } from '../../src/registry/models.js';
import { REPO } from '../helpers/cli.js';

const execFileP = promisify(execFile);
const root = mkdtempSync(join(tmpdir(), 'shears-pack-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let inst: Installed;

beforeAll(async () => {
  const dir = join(root, 'install');
  mkdirSync(dir);
  inst = await packAndInstall(dir);
}, 600_000);

type Run = { status: number | null; stdout: string; stderr: string };

/** Runs `cmd args` in the install folder with `env` added (undefined: removed); never rejects. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const full: NodeJS.ProcessEnv = { ...process.env, HF_HUB_OFFLINE: '1', ...env };
    for (const k of Object.keys(full)) if (full[k] === undefined) delete full[k];
    const child = spawn(cmd, args, { cwd: inst.dir, env: full, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

const tracked = (dir: string): string[] => readdirSync(join(REPO, dir), { recursive: true, encoding: 'utf8' }).map((f) => `${dir}/${f}`);
const MODEL = 'node_modules/shears/models/stories260K';

describe('the npm package', () => {
  it('holds dist/ for every src/ module, the run-time data, and no development files', () => {
    const sources = readdirSync(join(REPO, 'src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    expect(sources.length).toBeGreaterThan(50);
    for (const f of sources) expect(inst.files).toContain(`dist/${f.replace(/\.ts$/, '.js')}`);
    const bundled = knownModels().filter((m) => m.bundled).map((m) => m.id);
    expect(bundled).toContain('models/stories260K');
    const data = ['models.json', ...tracked('calibration'), ...bundled.flatMap((id) => tracked(id))];
    for (const f of data) expect(inst.files).toContain(f);
    const others = inst.files.filter((f) => !f.startsWith('dist/') && !data.includes(f));
    expect(others.sort()).toEqual(['README.md', 'bin/node-flags.js', 'bin/shears.js', 'package.json']);
  });

  it('npx shears inspect and a magnitude prune run on the bundled model; the weights equal the sources\'', async () => {
    const inspect = await run('npx', ['--no', 'shears', 'inspect', MODEL, '--json']);
    expect(inspect.status, inspect.stderr).toBe(0);
    const summary = JSON.parse(inspect.stdout) as { model_type?: string; modelType?: string; parameters?: number };
    expect(JSON.stringify(summary)).toContain('llama');

    const prune = await run('npx', ['--no', 'shears', 'prune', MODEL, '--method', 'magnitude', '--sparsity', '0.5', '--out', 'pruned', '--json']);
    expect(prune.status, prune.stderr).toBe(0);
    const report = JSON.parse(prune.stdout) as { sparsity: number; method: string };
    expect(report.method).toBe('magnitude');
    expect(report.sparsity).toBeCloseTo(0.5, 2);

    const reference = join(root, 'reference');
    await runPrune({ model: join(REPO, 'models/stories260K'), out: reference, method: 'magnitude', spec: { kind: 'unstructured', sparsity: 0.5 }, calibration: 'c4', nsamples: 128 });
    const installed = readFileSync(join(inst.dir, 'pruned', 'model.safetensors'));
    expect(installed.equals(readFileSync(join(reference, 'model.safetensors')))).toBe(true);
  });

  it('no command leaves a file under TMPDIR or HOME', async () => {
    const tmp = mkdtempSync(join(root, 'tmp-'));
    const home = mkdtempSync(join(root, 'home-'));
    // Telemetry is off by shears' default, not by the caller's environment.
    const env = { TMPDIR: tmp, HOME: home, XDG_CACHE_HOME: undefined, ORT_DISABLE_TELEMETRY: undefined };
    const commands = [
      ['--help'],
      ['inspect', MODEL],
      ['prune', MODEL, '--method', 'wanda', '--pattern', '2:4', '--calibration', 'tinystories', '--nsamples', '4', '--seqlen', '64', '--out', 'wanda-24'],
      ['eval', 'wanda-24', '--dataset', 'tinystories', '--seqlen', '64', '--max-tokens', '512'],
      ['export', 'wanda-24', '--format', 'sparse-24-bitmask', '--out', 'wanda-24-packed'],
    ];
    for (const args of commands) {
      const r = await run(inst.bin, args, env);
      expect(r.status, `shears ${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    const left = (d: string): string[] => readdirSync(d, { recursive: true, encoding: 'utf8' }).map((f) => relative(d, join(d, f)));
    expect({ tmp: left(tmp), home: left(home) }).toEqual({ tmp: [], home: [] });
  });

  it('--help loads no onnxruntime and runs with --expose-gc in effect, in one process', async () => {
    const probe = `
      process.argv = [process.execPath, 'shears', '--help'];
      process.on('exit', () => {
        const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8');
        process.stderr.write(JSON.stringify({ gc: typeof globalThis.gc, onnxruntime: /onnxruntime/.test(maps) }));
      });
      import(${JSON.stringify(join(inst.pkg, 'bin', 'shears.js'))});
    `;
    const { stdout, stderr } = await execFileP(process.execPath, ['-e', probe], { cwd: inst.dir });
    expect(stdout).toMatch(/^shears <command>\n/);
    expect(JSON.parse(stderr)).toEqual({ gc: 'function', onnxruntime: false });
  });
});
