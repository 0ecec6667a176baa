/**
 * `prune` and `export` through the real CLI refuse an output folder that is the model folder, lies inside
 * it or contains it, with or without --overwrite and through symlinks: exit 2, one line, and every file
 * under the scratch folder (the model included) exactly as before. A sibling whose name merely starts with
 * the model's is accepted.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, runShears, type Run } from '../helpers/cli.js';

const root = mkdtempSync(join(tmpdir(), 'shears-apart-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const model = join(root, 'work', 'm');

/** Every file under `dir` with its bytes, and every folder, so that any change shows. */
function snapshot(dir: string): Map<string, string> {
  const s = new Map<string, string>();
  for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort()) {
    const p = join(dir, f);
    s.set(f, statSync(p).isDirectory() ? 'dir' : readFileSync(p).toString('base64'));
  }
  return s;
}

const prune = ['prune', '--method', 'magnitude', '--sparsity', '0.5'];
const exportTo = ['export', '--format', 'sparse-bitmask'];

interface Case {
  what: string;
  command: string[];
  model: string;
  out: string;
  overwrite?: boolean;
  /** How the message places the output (the words before the model's name). */
  where: 'is the model folder' | 'lies inside the model folder' | 'contains the model folder';
}

const REFUSED: Case[] = [
  { what: 'prune --out the model, --overwrite', command: prune, model, out: model, overwrite: true, where: 'is the model folder' },
  { what: 'prune --out the model with a trailing /.', command: prune, model, out: `${model}/.`, where: 'is the model folder' },
  { what: 'prune --out the model by a relative path with ..', command: prune, model: 'work/m', out: 'work/../work/m', overwrite: true, where: 'is the model folder' },
  { what: 'prune --out a new folder inside the model', command: prune, model, out: join(model, 'pruned'), where: 'lies inside the model folder' },
  { what: 'prune --out the folder holding the model, --overwrite', command: prune, model, out: join(root, 'work'), overwrite: true, where: 'contains the model folder' },
  { what: 'prune of a symlink to the model, --out the real folder', command: prune, model: join(root, 'link'), out: model, overwrite: true, where: 'is the model folder' },
  { what: 'prune --out inside the model through a symlink', command: prune, model, out: join(root, 'link', 'sub', 'deeper'), where: 'lies inside the model folder' },
  { what: 'export --out the model, --overwrite', command: exportTo, model, out: model, overwrite: true, where: 'is the model folder' },
  { what: 'export --out inside the model', command: exportTo, model, out: join(model, 'sb'), where: 'lies inside the model folder' },
  { what: 'export --out the folder holding the model, --overwrite', command: exportTo, model, out: join(root, 'work'), overwrite: true, where: 'contains the model folder' },
];

const argsOf = (c: Case): string[] => [...c.command, c.model, '--out', c.out, ...(c.overwrite ? ['--overwrite'] : [])];

let before: Map<string, string>;
let runs: Run[];
let sibling: Run;

beforeAll(async () => {
  mkdirSync(model, { recursive: true });
  const bundled = join(REPO, 'models', 'stories260K');
  for (const f of readdirSync(bundled)) copyFileSync(join(bundled, f), join(model, f));
  symlinkSync(model, join(root, 'link'));
  before = snapshot(root);
  runs = [];
  // Two at a time: each run is mostly process start-up.
  for (let i = 0; i < REFUSED.length; i += 2) runs.push(...(await Promise.all(REFUSED.slice(i, i + 2).map((c) => runShears(root, ...argsOf(c))))));
  sibling = await runShears(root, ...prune, model, '--out', join(root, 'work', 'm2'));
}, 300_000);

describe('an output folder apart from the model', () => {
  REFUSED.forEach((c, i) => {
    it(`refuses ${c.what}`, () => {
      const r = runs[i]!;
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toBe(`shears: output folder ${c.out} ${c.where} ${c.model}; choose an output folder apart from the model (--overwrite never replaces the model)\n`);
      expect(r.stdout).toBe('');
    });
  });

  it('leaves every file as it was (the model, its parent, no temporaries)', () => {
    const after = snapshot(root);
    after.delete(join('work', 'm2')); // the accepted sibling run below
    for (const k of [...after.keys()]) if (k.startsWith(join('work', 'm2') + '/')) after.delete(k);
    expect([...after.keys()]).toEqual([...before.keys()]);
    expect(after).toEqual(before);
  });

  it('accepts a sibling whose name starts with the model folder\'s (m2 is not inside m)', () => {
    expect(sibling.status, sibling.stderr).toBe(0);
    expect(readdirSync(join(root, 'work', 'm2'))).toContain('model.safetensors');
  });
});
