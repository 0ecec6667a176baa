import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ShearsError } from '../../src/errors.js';
import { SafetensorsReader } from '../../src/io/safetensors/reader.js';

const dir = mkdtempSync(join(tmpdir(), 'shears-reader-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A file from raw parts, written by hand (no use of the writer under test). */
function rawFile(name: string, headerText: string, data: Uint8Array | number, headerLength?: bigint): string {
  const header = Buffer.from(headerText, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLength ?? BigInt(header.length));
  const body = typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data);
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat([len, header, body]));
  return path;
}

function failure(path: string): string {
  try {
    SafetensorsReader.open(path).close();
  } catch (e) {
    expect(e).toBeInstanceOf(ShearsError);
    const msg = (e as Error).message;
    expect(msg.startsWith(`${path}: `)).toBe(true);
    expect(msg).not.toContain('\n');
    return msg.slice(path.length + 2);
  }
  throw new Error(`${path} opened without error`);
}

const t = (dtype: string, shape: number[], offsets: number[]): object => ({ dtype, shape, data_offsets: offsets });

describe('SafetensorsReader on valid files', () => {
  it('reads metadata, infos and data by offset', () => {
    const a = new Float32Array([1, -2, 3.5, 0.25]);
    const b = new Int32Array([7, -8]);
    const c = new BigInt64Array([-5n, 2n ** 40n]);
    const data = new Uint8Array(32);
    data.set(new Uint8Array(c.buffer), 0);
    data.set(new Uint8Array(a.buffer), 16);
    // Header written with unsorted keys and padding spaces, which the format allows.
    const header = JSON.stringify({ 'z.a': t('F32', [2, 2], [16, 32]), b: t('I32', [2], [32, 40]), __metadata__: { format: 'pt' }, c: t('I64', [2], [0, 16]) });
    const path = rawFile('ok.safetensors', header + '   ', new Uint8Array([...data, ...new Uint8Array(b.buffer)]));
    const r = SafetensorsReader.open(path);
    try {
      expect(r.metadata).toEqual({ format: 'pt' });
      expect(r.tensorNames()).toEqual(['b', 'c', 'z.a']);
      const start = 8 + Buffer.byteLength(header + '   ');
      expect(r.info('z.a')).toMatchObject({ dtype: 'F32', shape: [2, 2], numel: 4, byteLength: 16, start: start + 16, end: start + 32, file: path });
      expect(Array.from(r.readFloat32('z.a'))).toEqual([1, -2, 3.5, 0.25]);
      expect(Array.from(r.readTyped('b') as Int32Array)).toEqual([7, -8]);
      expect(Array.from(r.readFloat32('b'))).toEqual([7, -8]);
      expect(Array.from(r.readTyped('c') as BigInt64Array)).toEqual([-5n, 2n ** 40n]);
      expect(Array.from(r.readBytes('b'))).toEqual(Array.from(new Uint8Array(b.buffer)));
      expect(() => r.info('nope')).toThrow(`${path}: no tensor named "nope"`);
    } finally {
      r.close();
    }
  });

  it('accepts an empty file header and zero-size tensors', () => {
    expect(SafetensorsReader.open(rawFile('empty.safetensors', '{}', 0)).tensorNames()).toEqual([]);
    const r = SafetensorsReader.open(rawFile('zero.safetensors', JSON.stringify({ e: t('F32', [0, 3], [0, 0]), x: t('U8', [2], [0, 2]) }), 2));
    expect(r.readFloat32('e').length).toBe(0);
    r.close();
  });
});

describe('SafetensorsReader rejects malformed files with one line naming the file and problem', () => {
  const okHeader = JSON.stringify({ a: t('F32', [2], [0, 8]) });

  it('truncated file (shorter than the length prefix)', () => {
    const path = join(dir, 'trunc.safetensors');
    writeFileSync(path, Buffer.from([1, 0, 0]));
    expect(failure(path)).toMatch(/file is 3 bytes, too short for the 8-byte header length/);
  });

  it('missing file', () => {
    expect(failure(join(dir, 'absent.safetensors'))).toBe('no such file');
  });

  it('header length past the end of the file', () => {
    expect(failure(rawFile('past.safetensors', okHeader, 8, 5000n))).toMatch(/header length 5000 runs past the end of the file \(\d+ bytes/);
  });

  it('huge header length', () => {
    expect(failure(rawFile('huge.safetensors', okHeader, 8, 2n ** 40n))).toMatch(/header length 1099511627776 exceeds the 100000000-byte limit/);
    expect(failure(rawFile('huge2.safetensors', okHeader, 8, 2n ** 64n - 1n))).toMatch(/exceeds the 100000000-byte limit/);
  });

  it('tensor data cut off (file truncated inside the data)', () => {
    expect(failure(rawFile('short-data.safetensors', okHeader, 5))).toMatch(/tensor "a" data_offsets \[0, 8\] run past the end of the data buffer \(5 bytes/);
  });

  it('bad JSON', () => {
    expect(failure(rawFile('badjson.safetensors', '{"a": {"dtype": "F32",', 0))).toMatch(/^header is not valid JSON \(/);
  });

  it('header not UTF-8', () => {
    const path = join(dir, 'latin1.safetensors');
    const header = Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]); // {"\xff":1}
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    writeFileSync(path, Buffer.concat([len, header]));
    expect(failure(path)).toBe('header is not valid UTF-8');
  });

  it('non-object JSON', () => {
    expect(failure(rawFile('array.safetensors', '[1, 2]', 0))).toBe('header is not a JSON object (found an array)');
    expect(failure(rawFile('null.safetensors', 'null', 0))).toBe('header is not a JSON object (found null)');
    expect(failure(rawFile('num.safetensors', '42', 0))).toBe('header is not a JSON object (found number)');
  });

  it('duplicate keys, including escaped spellings of the same key', () => {
    const entry = JSON.stringify(t('F32', [2], [0, 8]));
    expect(failure(rawFile('dup.safetensors', `{"a":${entry},"a":${entry}}`, 8))).toBe('header has the key "a" twice');
    expect(failure(rawFile('dup2.safetensors', `{"ab":${entry}, "\\u0061b" :${entry}}`, 8))).toBe('header has the key "ab" twice');
    expect(failure(rawFile('dup3.safetensors', `{"__metadata__":{"k":"1","k":"2"},"a":${entry}}`, 8))).toBe('header has the key "k" twice');
    // Same name in different objects, and a quote-escaped lookalike, are not duplicates.
    const ok = rawFile('nodup.safetensors', `{"__metadata__":{"a":"x \\" y","b\\"":"a"},"a":${entry}}`, 8);
    expect(SafetensorsReader.open(ok).metadata).toEqual({ a: 'x " y', 'b"': 'a' });
  });

  it('bad __metadata__', () => {
    expect(failure(rawFile('meta1.safetensors', JSON.stringify({ __metadata__: { format: 1 }, a: t('F32', [2], [0, 8]) }), 8))).toBe(
      '__metadata__ must map strings to strings, but "format" is a number',
    );
    expect(failure(rawFile('meta2.safetensors', JSON.stringify({ __metadata__: ['x'] }), 0))).toBe('__metadata__ must be an object mapping strings to strings');
    expect(failure(rawFile('meta3.safetensors', JSON.stringify({ __metadata__: { n: null } }), 0))).toMatch(/"n" is null/);
  });

  it('unknown dtype', () => {
    expect(failure(rawFile('dtype.safetensors', JSON.stringify({ a: t('F8_E4M3', [2], [0, 2]) }), 2))).toMatch(/^tensor "a" has unknown dtype "F8_E4M3" \(known: F64, F32/);
    expect(failure(rawFile('dtype2.safetensors', JSON.stringify({ a: { shape: [1], data_offsets: [0, 4] } }), 4))).toMatch(/^tensor "a" has unknown dtype undefined/);
  });

  it('bad shape', () => {
    expect(failure(rawFile('shape1.safetensors', JSON.stringify({ a: t('F32', [2, -1], [0, 8]) }), 8))).toBe('tensor "a" shape [2,-1] is not an array of non-negative integers');
    expect(failure(rawFile('shape2.safetensors', JSON.stringify({ a: t('F32', [2.5], [0, 8]) }), 8))).toMatch(/shape \[2.5\] is not/);
    expect(failure(rawFile('shape3.safetensors', JSON.stringify({ a: { dtype: 'F32', shape: '2', data_offsets: [0, 8] } }), 8))).toMatch(/shape "2" is not/);
  });

  it('bad data_offsets', () => {
    expect(failure(rawFile('offs1.safetensors', JSON.stringify({ a: t('F32', [2], [8, 0]) }), 8))).toMatch(/data_offsets \[8,0\] is not a pair \[begin, end\]/);
    expect(failure(rawFile('offs2.safetensors', JSON.stringify({ a: t('F32', [2], [0]) }), 8))).toMatch(/data_offsets \[0\] is not a pair/);
    expect(failure(rawFile('offs3.safetensors', JSON.stringify({ a: 'x' }), 0))).toBe('tensor "a" entry is not an object');
  });

  it('shape and byte count disagree', () => {
    expect(failure(rawFile('mismatch.safetensors', JSON.stringify({ 'a.weight': t('F32', [2, 2], [0, 12]) }), 12))).toBe(
      'tensor "a.weight" data_offsets [0, 12] give 12 bytes but F32 [2, 2] needs 16',
    );
  });

  it('overlapping offsets', () => {
    const h = JSON.stringify({ a: t('F32', [4], [0, 16]), b: t('F32', [4], [8, 24]) });
    expect(failure(rawFile('overlap.safetensors', h, 24))).toBe('tensor "b" data_offsets [8, 24] overlap tensor "a" (which ends at 16)');
  });

  it('offsets past the end of the data', () => {
    const h = JSON.stringify({ a: t('F32', [2], [0, 8]), b: t('F32', [2], [8, 16]) });
    expect(failure(rawFile('pastend.safetensors', h, 12))).toBe('tensor "b" data_offsets [8, 16] run past the end of the data buffer (12 bytes; truncated?)');
  });

  it('a gap between tensors, or data not starting at 0', () => {
    const h = JSON.stringify({ a: t('F32', [2], [0, 8]), b: t('F32', [2], [16, 24]) });
    expect(failure(rawFile('gap.safetensors', h, 24))).toBe('gap of 8 unused bytes at data offset 8, before tensor "b" (offsets must be contiguous)');
    expect(failure(rawFile('gap0.safetensors', JSON.stringify({ a: t('F32', [2], [4, 12]) }), 12))).toMatch(/^gap of 4 unused bytes at data offset 0, before tensor "a"/);
  });

  it('data buffer not covered to its end', () => {
    expect(failure(rawFile('trailing.safetensors', JSON.stringify({ a: t('F32', [2], [0, 8]) }), 16))).toBe(
      'tensors cover 8 bytes but the data buffer has 16 (8 trailing bytes)',
    );
  });
});
