/**
 * Bad arguments through the real launcher (`node bin/shears.js`): each ends with exactly one line on
 * stderr that says what is wrong, exit code 2 for a usage error or 1 for a bad file, and no output folder
 * (nor any temporary) left behind. Runs are started a few at a time to overlap their start-up.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { scratchDir } from './fuzz-helpers.js';

const REPO = join(import.meta.dirname, '..', '..');
const BIN = join(REPO, 'bin', 'shears.js');
const MODEL = join(REPO, 'models', 'stories260K');
const cwd = scratchDir('cli-args');
afterAll(() => rmSync(cwd, { recursive: true, force: true }));
writeFileSync(join(cwd, 'short.txt'), 'Once upon a time there was a cat.\n');

interface Case {
  args: string[];
  code: 1 | 2;
  stderr: RegExp;
}

/** `prune MODEL` with small calibration defaults, each overridden by a later `--option value` pair in `extra`. */
function prune(...extra: string[]): string[] {
  const opts = new Map<string, string>([['--calibration', 'tinystories'], ['--nsamples', '2'], ['--seqlen', '32']]);
  const rest: string[] = [];
  for (let k = 0; k < extra.length; k += 2) {
    if (opts.has(extra[k]!)) opts.set(extra[k]!, extra[k + 1]!);
    else rest.push(extra[k]!, extra[k + 1]!);
  }
  return ['prune', MODEL, ...[...opts].flat(), ...rest];
}

/** [what, args, exit code, the message (after "shears: ")]; every prune case names its own --out. */
const CASES: [string, Case][] = [
  ['sparsity above 1', { args: prune('--sparsity', '1.5'), code: 2, stderr: /^--sparsity must be a number strictly between 0 and 1 \(got 1\.5\)$/ }],
  ['sparsity 0', { args: prune('--sparsity', '0'), code: 2, stderr: /^--sparsity must be a number strictly between 0 and 1 \(got 0\)$/ }],
  ['N = M', { args: prune('--pattern', '4:4'), code: 2, stderr: /^--pattern must be N:M with integers 0 < N < M, e\.g\. 2:4 \(got "4:4"\)$/ }],
  ['seqlen past the model', { args: prune('--sparsity', '0.5', '--seqlen', '1024'), code: 2, stderr: /^--seqlen 1024 is longer than the model supports \(512\)$/ }],
  ['nsamples 0', { args: prune('--sparsity', '0.5', '--nsamples', '0'), code: 2, stderr: /^--nsamples must be a positive integer, got 0$/ }],
  ['calibration text shorter than a window', { args: prune('--sparsity', '0.5', '--calibration', 'short.txt', '--seqlen', '128'), code: 1, stderr: /^short\.txt: has \d+ tokens, fewer than one calibration window of 128 \+ 1$/ }],
  ['unknown method', { args: prune('--sparsity', '0.5', '--method', 'obs'), code: 2, stderr: /^Invalid values: Argument: method, Given: "obs", Choices: "magnitude", "random", "wanda", "sparsegpt", "alps"$/ }],
  ['unknown calibration dataset', { args: prune('--sparsity', '0.5', '--calibration', 'pile'), code: 2, stderr: /^unknown --calibration dataset "pile": use one of tinystories, wikitext2, c4 or the path of a \.txt or \.jsonl file$/ }],
  ['unknown eval dataset (checked before pruning)', { args: prune('--sparsity', '0.5', '--eval', 'ptb'), code: 2, stderr: /^unknown --eval dataset "ptb"/ }],
  ['an option given twice', { args: prune('--sparsity', '0.5', '--method', 'wanda', '--method', 'magnitude'), code: 2, stderr: /^--method was given 2 times; give it once$/ }],
  ['missing model folder', { args: ['prune', join(cwd, 'no', 'such', 'model'), '--sparsity', '0.5'], code: 1, stderr: /\/no\/such\/model: no such folder \(and not a HuggingFace Hub id of the form owner\/name\)$/ }],
  ['eval: seqlen past the model', { args: ['eval', MODEL, '--dataset', 'tinystories', '--seqlen', '4096'], code: 2, stderr: /^--seqlen must be an integer in \[2, 512\], got 4096$/ }],
];

function run(args: string[]): Promise<{ code: number | null; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, HF_HUB_OFFLINE: '1' } });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr, ms: Date.now() - t0 }));
  });
}

/** Progress lines ("\r...\x1b[K") are overwritten on a terminal; what stays is the error. */
const visible = (stderr: string): string[] => stderr.replace(/\r[^\r\n]*\x1b\[K/g, '').split('\n').filter((l) => l !== '');

describe('bad arguments: one line, exit 2 (1 for a bad file), nothing written', () => {
  it(`${CASES.length} cases`, async () => {
    const results: { what: string; c: Case; out: string; r: Awaited<ReturnType<typeof run>> }[] = [];
    const queue = CASES.map(([what, c], k) => ({ what, c, out: join(cwd, `out-${k}`) }));
    const worker = async (): Promise<void> => {
      for (let job = queue.shift(); job; job = queue.shift()) {
        const args = job.c.args[0] === 'prune' ? [...job.c.args, '--out', job.out] : job.c.args;
        results.push({ ...job, r: await run(args) });
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    for (const { what, c, out, r } of results) {
      const lines = visible(r.stderr);
      expect(lines, what).toHaveLength(1);
      expect(lines[0]!.startsWith('shears: '), what).toBe(true);
      expect(lines[0]!.slice('shears: '.length), what).toMatch(c.stderr);
      expect(r.code, `${what}: ${lines[0]}`).toBe(c.code);
      expect(existsSync(out), what).toBe(false);
      // Refused before any heavy work: start-up (tsx, onnxruntime) dominates.
      expect(r.ms, what).toBeLessThan(30_000);
    }
    expect(readdirSync(cwd).sort()).toEqual(['short.txt']);
  });
});
