import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ShearsError } from '../../src/errors.js';
import type { DType } from '../../src/io/dtype.js';
import { formatSafetensorsIndex, readSafetensorsIndex, shardFileName } from '../../src/io/safetensors/index-file.js';
import { SafetensorsReader } from '../../src/io/safetensors/reader.js';
import { planShards, ShardedSafetensorsWriter } from '../../src/io/safetensors/sharded-writer.js';
import { TensorSet } from '../../src/io/safetensors/tensor-set.js';
import { SafetensorsWriter, type TensorData, type TensorSpec } from '../../src/io/safetensors/writer.js';

const root = mkdtempSync(join(tmpdir(), 'shears-writer-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshDir = (): string => {
  const d = join(root, `d${n++}`);
  mkdirSync(d);
  return d;
};

/** Independent parse of a safetensors file: header JSON + raw data slices. */
function parseByHand(path: string): { headerLen: number; header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>; meta?: Record<string, string>; keys: string[]; data: Buffer } {
  const buf = readFileSync(path);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const text = buf.subarray(8, 8 + headerLen).toString('utf8');
  const json = JSON.parse(text);
  const keys = [...text.matchAll(/"([^"]+)":\{"dtype"/g)].map((m) => m[1]);
  const { __metadata__, ...rest } = json;
  return { headerLen, header: rest, meta: __metadata__, keys, data: buf.subarray(8 + headerLen) };
}

/** Random test data for each dtype, in its native typed array, and its values as JS numbers. */
function sample(dtype: DType, count: number, seed: number): { native: TensorData; values: number[] } {
  let s = seed;
  const rnd = (): number => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31;
  };
  const ints = (lo: number, hi: number): number[] => Array.from({ length: count }, () => Math.floor(lo + rnd() * (hi - lo)));
  switch (dtype) {
    case 'F64': {
      const a = Float64Array.from({ length: count }, () => (rnd() - 0.5) * 1e10);
      return { native: a, values: [...a] };
    }
    case 'F32': {
      const a = Float32Array.from({ length: count }, () => rnd() - 0.5);
      return { native: a, values: [...a] };
    }
    case 'F16':
    case 'BF16':
    case 'U16': {
      const a = Uint16Array.from(ints(0, 65536).map((v) => (dtype === 'U16' ? v : v & 0x7bff))); // finite patterns
      return { native: a, values: [...a] };
    }
    case 'I64': {
      const a = BigInt64Array.from(ints(-1e9, 1e9).map((v) => BigInt(v) * 12345n));
      return { native: a, values: [...a].map(Number) };
    }
    case 'U64': {
      const a = BigUint64Array.from(ints(0, 1e9).map((v) => BigInt(v) * 99999n));
      return { native: a, values: [...a].map(Number) };
    }
    case 'I32':
      return { native: Int32Array.from(ints(-(2 ** 31), 2 ** 31)), values: [] };
    case 'U32':
      return { native: Uint32Array.from(ints(0, 2 ** 32)), values: [] };
    case 'I16':
      return { native: Int16Array.from(ints(-32768, 32768)), values: [] };
    case 'I8':
      return { native: Int8Array.from(ints(-128, 128)), values: [] };
    case 'U8':
      return { native: Uint8Array.from(ints(0, 256)), values: [] };
    case 'BOOL':
      return { native: Uint8Array.from(ints(0, 2)), values: [] };
  }
}

const ALL: DType[] = ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL', 'U16', 'U32', 'U64'];

describe('SafetensorsWriter', () => {
  it('round-trips every dtype through the reader', () => {
    const dir = freshDir();
    const path = join(dir, 'all.safetensors');
    const specs: TensorSpec[] = ALL.map((d, i) => ({ name: `t.${d}`, dtype: d, shape: [3, 1 + (i % 3)] }));
    const data = new Map(specs.map((s, i) => [s.name, sample(s.dtype, 3 * s.shape[1], 17 + i)]));
    const w = new SafetensorsWriter(path, specs, { format: 'pt' });
    for (const s of specs) w.write(s.name, data.get(s.name)!.native);
    w.finish();
    const r = SafetensorsReader.open(path);
    try {
      expect(r.metadata).toEqual({ format: 'pt' });
      for (const s of specs) {
        const { native } = data.get(s.name)!;
        expect(r.info(s.name)).toMatchObject({ dtype: s.dtype, shape: s.shape });
        const typed = r.readTyped(s.name);
        expect(typed.constructor).toBe(native.constructor);
        expect(Array.from(typed as ArrayLike<number | bigint>)).toEqual(Array.from(native as ArrayLike<number | bigint>));
        const bytes = r.readBytes(s.name);
        expect(Buffer.from(bytes).equals(Buffer.from(native.buffer, native.byteOffset, native.byteLength))).toBe(true);
      }
      // Float view of the integer and 64-bit types agrees with plain JS conversion.
      expect(Array.from(r.readFloat32('t.I64'))).toEqual(data.get('t.I64')!.values.map(Math.fround));
      expect(Array.from(r.readFloat32('t.F64'))).toEqual(data.get('t.F64')!.values.map(Math.fround));
      expect(Array.from(r.readFloat32('t.I16'))).toEqual(Array.from(data.get('t.I16')!.native as Int16Array));
    } finally {
      r.close();
    }
  });

  it('writes a Float32Array as F32, F16, BF16 or F64', () => {
    const dir = freshDir();
    const path = join(dir, 'f.safetensors');
    const v = new Float32Array([1, -2.5, 0.1, 65504, 1e-7, -0]);
    const specs: TensorSpec[] = (['F32', 'F16', 'BF16', 'F64'] as const).map((d) => ({ name: d, dtype: d, shape: [6] }));
    const w = new SafetensorsWriter(path, specs);
    for (const s of specs) w.write(s.name, v);
    w.finish();
    const r = SafetensorsReader.open(path);
    expect(Array.from(r.readFloat32('F32'))).toEqual(Array.from(v));
    expect(Array.from(r.readFloat32('F64'))).toEqual(Array.from(v));
    // Values exactly representable in each format come back exactly; 0.1 and 1e-7 are rounded.
    const f16 = r.readFloat32('F16');
    expect([f16[0], f16[1], f16[3]]).toEqual([1, -2.5, 65504]);
    expect(Math.abs(f16[2] - 0.1)).toBeLessThanOrEqual(2 ** -14); // half an ulp at 0.1 is 2^-15
    expect(Object.is(f16[5], -0)).toBe(true);
    const bf = r.readFloat32('BF16');
    expect([bf[0], bf[1]]).toEqual([1, -2.5]);
    expect(Math.abs(bf[2] - 0.1) / 0.1).toBeLessThan(2 ** -8);
    r.close();
  });

  it('lays out the header sorted by name, padded with spaces to a multiple of 8', () => {
    const dir = freshDir();
    const path = join(dir, 'h.safetensors');
    const specs: TensorSpec[] = [
      { name: 'b', dtype: 'F32', shape: [2] },
      { name: '10', dtype: 'I8', shape: [1] },
      { name: 'a', dtype: 'F16', shape: [3] },
      { name: '2', dtype: 'U8', shape: [] },
    ];
    const w = new SafetensorsWriter(path, specs, { z: '1', a: 'x' });
    const bytes: Record<string, number> = { b: 8, '10': 1, a: 6, '2': 1 };
    for (const s of specs) w.write(s.name, new Uint8Array(bytes[s.name]).fill(1));
    w.finish();
    const { headerLen, header, meta, keys, data } = parseByHand(path);
    expect(headerLen % 8).toBe(0);
    const text = readFileSync(path).subarray(8, 8 + headerLen).toString();
    expect(text.trimEnd().endsWith('}')).toBe(true);
    expect(/^ *$/.test(text.slice(text.trimEnd().length))).toBe(true);
    expect(text.startsWith('{"__metadata__":{"a":"x","z":"1"}')).toBe(true);
    // Plain code-unit order, even for integer-like names that JS objects would enumerate first.
    expect(keys).toEqual(['10', '2', 'a', 'b']);
    expect(header['10'].data_offsets).toEqual([0, 1]);
    expect(header['2']).toEqual({ dtype: 'U8', shape: [], data_offsets: [1, 2] });
    expect(header.a.data_offsets).toEqual([2, 8]);
    expect(header.b.data_offsets).toEqual([8, 16]);
    expect(meta).toEqual({ a: 'x', z: '1' });
    expect(data.length).toBe(16);
  });

  it('gives identical bytes whatever the order of writes', () => {
    const specs: TensorSpec[] = Array.from({ length: 6 }, (_, i) => ({ name: `w${i}`, dtype: i % 2 ? 'BF16' : 'F32', shape: [5, i + 1] }));
    const values = specs.map((s, i) => Float32Array.from({ length: 5 * (i + 1) }, (_, k) => Math.sin(k + i)));
    const paths = [freshDir(), freshDir()].map((d) => join(d, 'm.safetensors'));
    const order = [[0, 1, 2, 3, 4, 5], [5, 3, 1, 0, 2, 4]];
    paths.forEach((p, j) => {
      const w = new SafetensorsWriter(p, specs, { format: 'pt' });
      for (const i of order[j]) w.write(specs[i].name, values[i]);
      w.finish();
    });
    expect(readFileSync(paths[0]).equals(readFileSync(paths[1]))).toBe(true);
  });

  it('refuses double writes, unknown names, wrong sizes and finish with tensors missing', () => {
    const dir = freshDir();
    const path = join(dir, 'x.safetensors');
    const w = new SafetensorsWriter(path, [
      { name: 'a', dtype: 'F32', shape: [2] },
      { name: 'b', dtype: 'I32', shape: [2] },
      { name: 'c', dtype: 'I64', shape: [1] },
    ]);
    w.write('a', new Float32Array([1, 2]));
    expect(() => w.write('a', new Float32Array([1, 2]))).toThrow(`${path}: tensor "a" was already written`);
    expect(() => w.write('zz', new Float32Array(2))).toThrow(/cannot write tensor "zz": not in the list/);
    expect(() => w.write('b', new Float32Array(2))).toThrow(/tensor "b" \(I32 \[2\]\) cannot be written from a Float32Array; pass Int32Array/);
    expect(() => w.write('b', new Int32Array(3))).toThrow(/needs 2 values but got 3/);
    expect(() => w.write('b', new Uint8Array(7))).toThrow(/needs 8 bytes but got 7/);
    expect(() => w.write('c', new Int32Array(2))).toThrow(/cannot be written from a Int32Array; pass BigInt64Array/);
    w.write('b', new Int32Array([3, 4]));
    expect(() => w.finish()).toThrow(`${path}: cannot finish: 1 tensor(s) not written ("c")`);
    expect(existsSync(path)).toBe(false);
    w.write('c', new BigInt64Array([9n]));
    w.finish();
    expect(readdirSync(dir)).toEqual(['x.safetensors']); // temp file renamed, nothing left over
  });

  it('writes a tensor in ranges (elements as float32, or stored bytes), in any order; reads ranges back', () => {
    const specs: TensorSpec[] = [
      { name: 'fused', dtype: 'BF16', shape: [3, 4, 5] },
      { name: 'big', dtype: 'F32', shape: [7, 3] },
    ];
    const fused = Float32Array.from({ length: 60 }, (_, k) => Math.sin(k) * 3);
    const big = Float32Array.from({ length: 21 }, (_, k) => k / 7);
    const [whole, ranged] = [freshDir(), freshDir()].map((d) => join(d, 'm.safetensors'));
    const a = new SafetensorsWriter(whole, specs);
    a.write('fused', fused);
    a.write('big', big);
    a.finish();
    const b = new SafetensorsWriter(ranged, specs);
    // One "expert" slice at a time, last first, as the MoE driver writes a fused tensor.
    for (const e of [2, 0, 1]) b.writeRange('fused', e * 20, fused.subarray(e * 20, (e + 1) * 20));
    const bytes = new Uint8Array(big.buffer);
    b.writeBytes('big', 40, bytes.subarray(40));
    expect(b.missing()).toEqual(['big']); // written only once every byte is
    expect(() => b.writeBytes('big', 0, bytes.subarray(0, 44))).toThrow(`${ranged}: bytes 0..44 of tensor "big" do not fit its 84 (or overlap what was written)`);
    expect(() => b.writeRange('fused', 0, fused.subarray(0, 20))).toThrow(`${ranged}: tensor "fused" was already written`);
    b.writeBytes('big', 0, bytes.subarray(0, 40));
    b.finish();
    expect(readFileSync(ranged).equals(readFileSync(whole))).toBe(true);
    const r = SafetensorsReader.open(ranged);
    try {
      const f = r.readFloat32('fused');
      expect([...r.readFloat32Range('fused', 20, 20)]).toEqual([...f.subarray(20, 40)]);
      expect(Buffer.from(r.readBytesRange('big', 8, 12)).equals(Buffer.from(bytes.subarray(8, 20)))).toBe(true);
      expect(() => r.readFloat32Range('fused', 50, 11)).toThrow(/elements 50\.\.61 are outside tensor "fused" of 60/);
    } finally {
      r.close();
    }
  });

  it('rejects bad specs', () => {
    const dir = freshDir();
    const p = join(dir, 's.safetensors');
    expect(() => new SafetensorsWriter(p, [{ name: 'a', dtype: 'F32', shape: [1] }, { name: 'a', dtype: 'F32', shape: [1] }])).toThrow('tensor "a" is listed twice');
    expect(() => new SafetensorsWriter(p, [{ name: 'a', dtype: 'Q4' as DType, shape: [1] }])).toThrow('unknown dtype "Q4"');
    expect(() => new SafetensorsWriter(p, [{ name: 'a', dtype: 'F32', shape: [-1] }])).toThrow('shape [-1] is not a list of non-negative integers');
    expect(() => new SafetensorsWriter(p, [{ name: '__metadata__', dtype: 'F32', shape: [1] }])).toThrow(ShearsError);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('is atomic: nothing at the final path until finish, abort removes the temporary file', () => {
    const dir = freshDir();
    const path = join(dir, 'model.safetensors');
    writeFileSync(path, 'previous version');
    const w = new SafetensorsWriter(path, [{ name: 'a', dtype: 'F32', shape: [4] }]);
    expect(existsSync(w.tempPath)).toBe(true);
    expect(w.tempPath.startsWith(dir)).toBe(true);
    w.write('a', new Float32Array(4));
    w.abort();
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
    expect(readFileSync(path, 'utf8')).toBe('previous version');
    expect(() => w.write('a', new Float32Array(4))).toThrow(/writer already aborted/);
    w.abort(); // idempotent
  });
});

describe('sharded writing and reading', () => {
  const specs: TensorSpec[] = Array.from({ length: 7 }, (_, i) => ({ name: `layers.${i}.weight`, dtype: 'F32', shape: [4, 8] })); // 128 bytes each
  const valueOf = (i: number): Float32Array => Float32Array.from({ length: 32 }, (_, k) => i * 100 + k);

  it('plans shards greedily in name order; an oversized tensor gets its own shard', () => {
    const s = (name: string, n: number): TensorSpec => ({ name, dtype: 'U8', shape: [n] });
    expect(planShards([s('a', 4), s('b', 4), s('c', 4), s('d', 20), s('e', 1)], 10).map((g) => g.map((x) => x.name))).toEqual([['a', 'b'], ['c'], ['d'], ['e']]);
    expect(shardFileName(0, 3)).toBe('model-00001-of-00003.safetensors');
    expect(shardFileName(11, 12)).toBe('model-00012-of-00012.safetensors');
  });

  it('splits into HF-named shards with an index, and reads them back', () => {
    const dir = freshDir();
    const w = new ShardedSafetensorsWriter(dir, specs, { maxShardBytes: 300, metadata: { format: 'pt' } });
    for (const i of [6, 0, 3, 5, 1, 2, 4]) w.write(specs[i].name, valueOf(i));
    w.finish();
    expect(readdirSync(dir).sort()).toEqual([
      'model-00001-of-00004.safetensors',
      'model-00002-of-00004.safetensors',
      'model-00003-of-00004.safetensors',
      'model-00004-of-00004.safetensors',
      'model.safetensors.index.json',
    ]);
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
    expect(index.metadata).toEqual({ total_size: 7 * 128 });
    expect(Object.keys(index.weight_map)).toEqual(specs.map((s) => s.name));
    expect(index.weight_map['layers.0.weight']).toBe('model-00001-of-00004.safetensors');
    expect(index.weight_map['layers.1.weight']).toBe('model-00001-of-00004.safetensors');
    expect(index.weight_map['layers.2.weight']).toBe('model-00002-of-00004.safetensors');
    expect(index.weight_map['layers.6.weight']).toBe('model-00004-of-00004.safetensors');
    expect(parseByHand(join(dir, 'model-00002-of-00004.safetensors')).meta).toEqual({ format: 'pt' });

    const set = TensorSet.fromIndex(join(dir, 'model.safetensors.index.json'));
    expect(set.tensorNames()).toEqual(specs.map((s) => s.name));
    for (let i = 0; i < 7; i++) expect(Array.from(set.readFloat32(specs[i].name))).toEqual(Array.from(valueOf(i)));
    expect(set.info('layers.5.weight').file).toBe(join(dir, 'model-00003-of-00004.safetensors'));
    set.close();
  });

  it('writes one model.safetensors with no index when everything fits', () => {
    const dir = freshDir();
    const w = new ShardedSafetensorsWriter(dir, specs, { maxShardBytes: 10_000 });
    specs.forEach((s, i) => w.write(s.name, valueOf(i)));
    w.finish();
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
  });

  it('produces identical bytes for identical input', () => {
    const dirs = [freshDir(), freshDir()];
    for (const [j, dir] of dirs.entries()) {
      const w = new ShardedSafetensorsWriter(dir, j ? [...specs].reverse() : specs, { maxShardBytes: 300 });
      const order = j ? [3, 1, 6, 0, 2, 5, 4] : [0, 1, 2, 3, 4, 5, 6];
      for (const i of order) w.write(specs[i].name, valueOf(i));
      w.finish();
    }
    for (const f of readdirSync(dirs[0])) expect(readFileSync(join(dirs[0], f)).equals(readFileSync(join(dirs[1], f)))).toBe(true);
  });

  it('abort removes finished shards and temporary files', () => {
    const dir = freshDir();
    const w = new ShardedSafetensorsWriter(dir, specs, { maxShardBytes: 300 });
    w.write(specs[0].name, valueOf(0));
    w.write(specs[1].name, valueOf(1)); // completes shard 1
    w.write(specs[2].name, valueOf(2)); // opens shard 2
    expect(readdirSync(dir).length).toBe(2);
    expect(() => w.finish()).toThrow(/cannot finish: 4 tensor\(s\) not written/);
    w.abort();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('reports a missing shard and a tensor absent from its shard', () => {
    const dir = freshDir();
    const w = new ShardedSafetensorsWriter(dir, specs, { maxShardBytes: 300 });
    specs.forEach((s, i) => w.write(s.name, valueOf(i)));
    w.finish();
    const indexPath = join(dir, 'model.safetensors.index.json');
    const { weightMap } = readSafetensorsIndex(indexPath);

    weightMap.set('extra.weight', 'model-00001-of-00004.safetensors');
    writeFileSync(indexPath, formatSafetensorsIndex(1, weightMap));
    expect(() => TensorSet.fromIndex(indexPath)).toThrow(
      `${join(dir, 'model-00001-of-00004.safetensors')}: tensor "extra.weight" listed in model.safetensors.index.json is not in this shard`,
    );

    weightMap.delete('extra.weight');
    weightMap.set('layers.6.weight', 'model-00009-of-00009.safetensors');
    writeFileSync(indexPath, formatSafetensorsIndex(1, weightMap));
    expect(() => TensorSet.fromIndex(indexPath)).toThrow(`${indexPath}: shard "model-00009-of-00009.safetensors" (holding tensor "layers.6.weight") does not exist in ${dir}`);

    writeFileSync(indexPath, '{"weight_map": {"a": "../etc/passwd"}}');
    expect(() => TensorSet.fromIndex(indexPath)).toThrow(/weight_map entry for "a" is not a plain file name/);
    writeFileSync(indexPath, '{"metadata": {}}');
    expect(() => TensorSet.fromIndex(indexPath)).toThrow(`${indexPath}: "weight_map" is missing or not an object`);
    writeFileSync(indexPath, '{"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}}');
    expect(() => TensorSet.fromIndex(indexPath)).toThrow(`${indexPath}: the key "a" appears twice`);
  });
});
