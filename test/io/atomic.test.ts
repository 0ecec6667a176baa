import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AtomicDir, tempPathFor, withAtomicDir, withAtomicFile, writeFileAtomic } from '../../src/io/atomic.js';

const root = mkdtempSync(join(tmpdir(), 'shears-atomic-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => {
  const d = join(root, `d${n++}`);
  mkdirSync(d);
  return d;
};

describe('atomic files', () => {
  it('puts temporary paths next to the target, hidden and unique', () => {
    const a = tempPathFor('/x/y/out.json');
    expect(dirname(a)).toBe('/x/y');
    expect(a).toMatch(/^\/x\/y\/\.tmp-out\.json-\d+-[0-9a-f]{8}$/);
    expect(tempPathFor('/x/y/out.json')).not.toBe(a);
  });

  it('writeFileAtomic replaces the file and leaves nothing else', () => {
    const d = fresh();
    const p = join(d, 'a.json');
    writeFileSync(p, 'old');
    writeFileAtomic(p, '{"new": true}');
    expect(readFileSync(p, 'utf8')).toBe('{"new": true}');
    expect(readdirSync(d)).toEqual(['a.json']);
  });

  it('withAtomicFile removes the temporary file when filling fails', async () => {
    const d = fresh();
    const p = join(d, 'b.bin');
    await expect(
      withAtomicFile(p, (tmp) => {
        writeFileSync(tmp, 'partial');
        throw new Error('disk on fire');
      }),
    ).rejects.toThrow('disk on fire');
    expect(readdirSync(d)).toEqual([]);
    await withAtomicFile(p, (tmp) => writeFileSync(tmp, 'done'));
    expect(readFileSync(p, 'utf8')).toBe('done');
  });
});

describe('atomic folders', () => {
  it('builds under a temporary name and renames on success', async () => {
    const d = fresh();
    const out = join(d, 'pruned');
    const seen = await withAtomicDir(out, (tmp) => {
      expect(dirname(tmp)).toBe(d);
      expect(existsSync(out)).toBe(false);
      writeFileSync(join(tmp, 'config.json'), '{}');
      return readdirSync(d).length;
    });
    expect(seen).toBe(1);
    expect(readdirSync(d)).toEqual(['pruned']);
    expect(readdirSync(out)).toEqual(['config.json']);
  });

  it('removes the temporary folder on failure and leaves no output', async () => {
    const d = fresh();
    const out = join(d, 'pruned');
    await expect(
      withAtomicDir(out, async (tmp) => {
        writeFileSync(join(tmp, 'model.safetensors'), 'half');
        throw new Error('interrupted');
      }),
    ).rejects.toThrow('interrupted');
    expect(readdirSync(d)).toEqual([]);
  });

  it('refuses an existing output unless overwrite, and then replaces it whole', async () => {
    const d = fresh();
    const out = join(d, 'o');
    mkdirSync(out);
    writeFileSync(join(out, 'stale.txt'), 'x');
    expect(() => new AtomicDir(out)).toThrow(`${out}: already exists (choose another output folder or remove it)`);
    await withAtomicDir(out, (tmp) => writeFileSync(join(tmp, 'fresh.txt'), 'y'), { overwrite: true });
    expect(readdirSync(out)).toEqual(['fresh.txt']);
    expect(readdirSync(d)).toEqual(['o']);
  });

  it('AtomicDir.abort after commit is a no-op; commit twice is refused', () => {
    const d = fresh();
    const dir = new AtomicDir(join(d, 'c'));
    dir.commit();
    dir.abort();
    expect(readdirSync(d)).toEqual(['c']);
    expect(() => dir.commit()).toThrow(/already committed/);
  });
});
