/**
 * Compressed checkpoints end to end: dense → each compressed format → dense is bit-identical on the
 * bundled stories260K and the llama-tiny-gqa fixture (magnitude-pruned here, exact zeros); the stored
 * parts are checked against an independent decoding; a compressed model gives the same logits as its
 * dense export; damaged files fail with one-line errors naming the file and the tensor.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShearsError } from '../../src/errors.js';
import { exportModel } from '../../src/export/export.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { openModel } from '../../src/model.js';
import { forwardHidden, loadWeights } from '../../src/run/blocks.js';
import { copySideFiles, LLAMA_LINEAR, magnitudePrunedCopy, packbitsLittleRef, parseSafetensors, tensorBytes, writeSafetensors, type RawTensor } from './compressed-helpers.js';

const REPO = join(import.meta.dirname, '..', '..');
const STORIES = join(REPO, 'models', 'stories260K');
const GQA = join(REPO, 'test', 'fixtures', 'llama-tiny-gqa');
const root = mkdtempSync(join(tmpdir(), 'shears-compressed-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const models: Record<string, { dir: string; tensors: Map<string, RawTensor> }> = {};
beforeAll(() => {
  for (const [name, src] of [
    ['stories', STORIES],
    ['gqa', GQA],
  ] as const) {
    for (const mode of ['unstructured', '2:4'] as const) {
      const dir = join(root, `${name}-${mode === '2:4' ? '24' : 'u50'}`);
      mkdirSync(dir);
      models[`${name}-${mode}`] = { dir, tensors: magnitudePrunedCopy(src, dir, mode) };
    }
  }
});

function expectSameTensors(a: Map<string, RawTensor>, b: Map<string, RawTensor>): void {
  expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
  for (const [name, t] of a) {
    const u = b.get(name)!;
    expect({ name, dtype: u.dtype, shape: u.shape }).toEqual({ name, dtype: t.dtype, shape: t.shape });
    expect(u.bytes.equals(t.bytes), name).toBe(true);
  }
}

/** Independent decoding of one sparse-bitmask weight's parts against its dense F32 values. */
function checkBitmaskParts(stored: Map<string, RawTensor>, name: string, dense: RawTensor): void {
  const [rows, cols] = dense.shape;
  const v = new Float32Array(dense.bytes.buffer.slice(dense.bytes.byteOffset, dense.bytes.byteOffset + dense.bytes.byteLength));
  const mask = Array.from({ length: rows }, (_, r) => Array.from({ length: cols }, (_, c) => (v[r * cols + c] !== 0 ? 1 : 0)));
  const shape = stored.get(`${name}.shape`)!;
  expect(shape.dtype).toBe('I64');
  expect(shape.shape).toEqual([2]);
  expect([shape.bytes.readBigInt64LE(0), shape.bytes.readBigInt64LE(8)]).toEqual([BigInt(rows), BigInt(cols)]);
  const bitmask = stored.get(`${name}.bitmask`)!;
  expect(bitmask.dtype).toBe('U8');
  expect(bitmask.shape).toEqual([rows, Math.ceil(cols / 8)]);
  expect(Array.from(bitmask.bytes)).toEqual(packbitsLittleRef(mask).flat());
  const offsets = stored.get(`${name}.row_offsets`)!;
  expect(offsets.dtype).toBe('I64');
  let run = 0;
  for (let r = 0; r < rows; r++) {
    expect(offsets.bytes.readBigInt64LE(8 * r)).toBe(BigInt(run));
    run += mask[r].reduce<number>((a, b) => a + b, 0);
  }
  const compressed = stored.get(`${name}.compressed`)!;
  expect(compressed.dtype).toBe('F32');
  expect(compressed.shape).toEqual([run]);
  const kept = Array.from(v).filter((x) => x !== 0);
  expect(Array.from({ length: run }, (_, i) => compressed.bytes.readFloatLE(4 * i))).toEqual(kept);
}

describe('round trips', () => {
  for (const model of ['stories', 'gqa']) {
    it(`${model}: dense → sparse-bitmask → dense is bit-identical, and the parts decode independently`, async () => {
      const src = models[`${model}-unstructured`];
      const sb = join(root, `${model}-sb`);
      const back = join(root, `${model}-sb-dense`);
      const r = await exportModel({ model: src.dir, format: 'sparse-bitmask', out: sb });
      const targets = [...src.tensors.keys()].filter((n) => LLAMA_LINEAR.test(n));
      expect(r.compressed).toBe(targets.length);
      expect(r.dense).toBe(0);
      const stored = tensorBytes(sb);
      for (const n of targets) {
        expect(stored.has(n)).toBe(false);
        checkBitmaskParts(stored, n, src.tensors.get(n)!);
      }
      for (const [n, t] of src.tensors) if (!LLAMA_LINEAR.test(n)) expect(stored.get(n)!.bytes.equals(t.bytes)).toBe(true);
      const cfg = JSON.parse(readFileSync(join(sb, 'config.json'), 'utf8'));
      const zeros = targets.reduce((a, n) => a + Array.from(new Float32Array(new Uint8Array(src.tensors.get(n)!.bytes).buffer)).filter((x) => x === 0).length, 0);
      const total = targets.reduce((a, n) => a + src.tensors.get(n)!.bytes.length / 4, 0);
      expect(cfg.quantization_config).toEqual({
        quant_method: 'compressed-tensors',
        sparsity_config: { format: 'sparse-bitmask', global_sparsity: zeros / total, sparsity_structure: 'unstructured', targets: ['Linear'], ignore: ['lm_head'] },
      });
      expect(r.fileBytes).toBeLessThan(r.sourceBytes);

      const ck = Checkpoint.openFolder(sb);
      try {
        expect(ck.tensorNames()).toEqual([...src.tensors.keys()].sort());
        for (const n of targets) {
          expect(ck.info(n)).toMatchObject({ dtype: 'F32', shape: src.tensors.get(n)!.shape });
          expect(Buffer.from(ck.readBytes(n)).equals(src.tensors.get(n)!.bytes)).toBe(true);
        }
        expect(ck.compression?.format).toBe('sparse-bitmask');
        expect(() => ck.readBytes(`${targets[0]}.bitmask`)).toThrow(/part of a compressed weight/);
        expect(ck.raw.has(`${targets[0]}.bitmask`)).toBe(true);
      } finally {
        ck.close();
      }

      await exportModel({ model: sb, format: 'dense', out: back });
      expectSameTensors(src.tensors, tensorBytes(back));
      expect(JSON.parse(readFileSync(join(back, 'config.json'), 'utf8')).quantization_config).toBeUndefined();
    });

    it(`${model}: dense → sparse-24-bitmask → sparse-bitmask → dense is bit-identical`, async () => {
      const src = models[`${model}-2:4`];
      const s24 = join(root, `${model}-out24`);
      const r = await exportModel({ model: src.dir, format: 'sparse-24-bitmask', out: s24 });
      const targets = [...src.tensors.keys()].filter((n) => LLAMA_LINEAR.test(n));
      expect(r.compressed).toBe(targets.length);
      const stored = tensorBytes(s24);
      for (const n of targets) {
        const prefix = n.slice(0, -'.weight'.length);
        const [rows, cols] = src.tensors.get(n)!.shape;
        expect(stored.get(`${prefix}.shape`)).toMatchObject({ dtype: 'I64', shape: [2, 1] });
        expect(stored.get(`${prefix}.compressed`)).toMatchObject({ dtype: 'F32', shape: [rows, cols / 2] });
        expect(stored.get(`${prefix}.bitmask`)).toMatchObject({ dtype: 'U8', shape: [rows, Math.ceil(cols / 8)] });
        // Every row keeps its non-zeros in order (this pruning leaves exactly 2 per group).
        const v = new Float32Array(new Uint8Array(src.tensors.get(n)!.bytes).buffer);
        const c = stored.get(`${prefix}.compressed`)!.bytes;
        expect(Array.from({ length: c.length / 4 }, (_, i) => c.readFloatLE(4 * i))).toEqual(Array.from(v).filter((x) => x !== 0));
      }
      const cfg = JSON.parse(readFileSync(join(s24, 'config.json'), 'utf8'));
      expect(cfg.quantization_config.sparsity_config).toMatchObject({ format: 'sparse-24-bitmask', sparsity_structure: '2:4' });
      const sb = join(root, `${model}-out24-sb`);
      await exportModel({ model: s24, format: 'sparse-bitmask', out: sb });
      const back = join(root, `${model}-out24-dense`);
      await exportModel({ model: sb, format: 'dense', out: back });
      expectSameTensors(src.tensors, tensorBytes(back));
    });
  }

  it('sparse-24-bitmask leaves a weight that is not exactly 2:4 (here: a -0.0 third entry) dense, lists it in ignore, and stays lossless', async () => {
    const base = models['gqa-2:4'];
    const dir = join(root, 'gqa-negzero');
    mkdirSync(dir);
    copySideFiles(GQA, dir);
    const tensors = new Map(base.tensors);
    const name = 'model.layers.1.mlp.up_proj.weight';
    const t = tensors.get(name)!;
    const bytes = Buffer.from(t.bytes);
    // Find a zero and make it -0.0: its group now has three non-zero bit patterns.
    const at = Array.from({ length: bytes.length / 4 }, (_, i) => i).find((i) => bytes.readFloatLE(4 * i) === 0)!;
    bytes.writeFloatLE(-0, 4 * at);
    tensors.set(name, { ...t, bytes });
    writeSafetensors(join(dir, 'model.safetensors'), tensors);
    const out = join(root, 'gqa-negzero-24');
    const r = await exportModel({ model: dir, format: 'sparse-24-bitmask', out });
    expect(r.dense).toBe(1);
    expect(r.ignore).toEqual(['model.layers.1.mlp.up_proj', 'lm_head']);
    expect(tensorBytes(out).get(name)!.bytes.equals(bytes)).toBe(true);
    const back = join(root, 'gqa-negzero-back');
    await exportModel({ model: out, format: 'dense', out: back });
    expectSameTensors(tensors, tensorBytes(back));
    // sparse-bitmask keeps -0.0 as a stored value.
    const sb = join(root, 'gqa-negzero-sb');
    await exportModel({ model: dir, format: 'sparse-bitmask', out: sb });
    const ck = Checkpoint.openFolder(sb);
    try {
      expect(Object.is(ck.readFloat32(name)[at], -0)).toBe(true);
    } finally {
      ck.close();
    }
  });

  it('refuses sparse-24-bitmask for a model with no 2:4 weight', async () => {
    await expect(exportModel({ model: models['stories-unstructured'].dir, format: 'sparse-24-bitmask', out: join(root, 'no24') })).rejects.toThrow(/no linear weight is exactly 2:4/);
  });
});

describe('same logits', () => {
  it('a sparse-bitmask stories260K gives exactly the logits of its dense export', async () => {
    const sb = join(root, 'logits-sb');
    const dense = join(root, 'logits-dense');
    await exportModel({ model: models['stories-unstructured'].dir, format: 'sparse-bitmask', out: sb });
    await exportModel({ model: sb, format: 'dense', out: dense });
    const seq = 32;
    const ids = Int32Array.from({ length: 2 * seq }, (_, i) => (i * 37 + 1) % 512);
    const logits = async (dir: string): Promise<Float32Array> => {
      const { ckpt, arch, src } = await openModel(dir);
      try {
        const x = await forwardHidden(arch, src, ids, seq);
        return await arch.logits(loadWeights(src, arch.headTensors()), x, seq);
      } finally {
        ckpt.close();
      }
    };
    const a = await logits(sb);
    const b = await logits(dense);
    expect(a.length).toBe(2 * seq * 512);
    expect(Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))).toBe(true);
    // And they are the pruned model's logits, not the unpruned one's.
    const c = await logits(STORIES);
    expect(Buffer.from(c.buffer).equals(Buffer.from(a.buffer))).toBe(false);
  });
});

describe('damaged compressed files', () => {
  const W = 'model.layers.0.mlp.down_proj.weight'; // [64, 172]: 172 columns leave 4 padding bits per row
  let good: Map<string, RawTensor>;
  let meta: Record<string, string>;
  let good24: Map<string, RawTensor>;
  beforeAll(async () => {
    const sb = join(root, 'dmg-sb');
    await exportModel({ model: models['stories-unstructured'].dir, format: 'sparse-bitmask', out: sb });
    ({ tensors: good, metadata: meta } = parseSafetensors(join(sb, 'model.safetensors')));
    const s24 = join(root, 'dmg-24');
    await exportModel({ model: models['stories-2:4'].dir, format: 'sparse-24-bitmask', out: s24 });
    good24 = parseSafetensors(join(s24, 'model.safetensors')).tensors;
  });

  let k = 0;
  /** A copy of a compressed checkpoint with its tensors changed by `edit`; returns the weights file path. */
  function damaged(base: Map<string, RawTensor>, format: string, edit: (t: Map<string, RawTensor>) => void): { dir: string; file: string } {
    const dir = join(root, `dmg-${k++}`);
    mkdirSync(dir);
    copySideFiles(STORIES, dir);
    const cfg = JSON.parse(readFileSync(join(STORIES, 'config.json'), 'utf8'));
    cfg.quantization_config = { quant_method: 'compressed-tensors', sparsity_config: { format, targets: ['Linear'] } };
    writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
    const t = new Map([...base].map(([n, v]) => [n, { ...v, bytes: Buffer.from(v.bytes) }]));
    edit(t);
    const file = join(dir, 'model.safetensors');
    writeSafetensors(file, t, meta);
    return { dir, file };
  }

  /** The error of `fn`, checked to be a one-line ShearsError naming `file` and the tensor. */
  function oneLineError(fn: () => unknown, file: string, tensor: string): string {
    let err: unknown;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ShearsError);
    const msg = (err as Error).message;
    expect(msg).not.toContain('\n');
    expect(msg.startsWith(`${file}: `)).toBe(true);
    expect(msg).toContain(`"${tensor}"`);
    return msg;
  }

  const read = (dir: string, name = W) => () => {
    const ck = Checkpoint.openFolder(dir);
    try {
      return ck.readFloat32(name);
    } finally {
      ck.close();
    }
  };

  it('compressed holds fewer values than the bitmask has set bits', () => {
    const { dir, file } = damaged(good, 'sparse-bitmask', (t) => {
      const c = t.get(`${W}.compressed`)!;
      t.set(`${W}.compressed`, { ...c, shape: [c.shape[0] - 1], bytes: c.bytes.subarray(0, c.bytes.length - 4) });
    });
    expect(oneLineError(read(dir), file, `${W}.compressed`)).toMatch(/holds \d+ values but the bitmask has \d+ set bits/);
  });

  it('row_offsets not monotone, and monotone but inconsistent with the bitmask', () => {
    const swap = damaged(good, 'sparse-bitmask', (t) => {
      const o = t.get(`${W}.row_offsets`)!.bytes;
      const a = o.readBigInt64LE(8 * 3);
      o.writeBigInt64LE(o.readBigInt64LE(8 * 4), 8 * 3);
      o.writeBigInt64LE(a, 8 * 4);
    });
    expect(oneLineError(read(swap.dir), swap.file, `${W}.row_offsets`)).toMatch(/not monotone: row 4/);
    const off = damaged(good, 'sparse-bitmask', (t) => {
      const o = t.get(`${W}.row_offsets`)!.bytes;
      o.writeBigInt64LE(o.readBigInt64LE(8 * 5) + 1n, 8 * 5);
    });
    expect(oneLineError(read(off.dir), off.file, `${W}.row_offsets`)).toMatch(/row 5 starts at \d+ but the bitmask rows before it hold \d+ values/);
  });

  it('a bitmask bit set in the padding beyond the last column', () => {
    const { dir, file } = damaged(good, 'sparse-bitmask', (t) => {
      const b = t.get(`${W}.bitmask`)!.bytes;
      b[21] |= 0x80; // row 0, byte 21 holds columns 168..171 in its low 4 bits
    });
    expect(oneLineError(read(dir), file, `${W}.bitmask`)).toMatch(/row 0 has bits set beyond column 171/);
  });

  it('shape that disagrees with the bitmask (reported on open)', () => {
    const { dir, file } = damaged(good, 'sparse-bitmask', (t) => {
      t.get(`${W}.shape`)!.bytes.writeBigInt64LE(180n, 8);
    });
    expect(oneLineError(() => Checkpoint.openFolder(dir), file, `${W}.bitmask`)).toMatch(/has shape \[64, 22\] but ".*\.shape" says \[64, 180\], which needs \[64, 23\]/);
  });

  it('a missing companion tensor (reported on open), and parts without a bitmask', () => {
    const a = damaged(good, 'sparse-bitmask', (t) => t.delete(`${W}.row_offsets`));
    expect(oneLineError(() => Checkpoint.openFolder(a.dir), a.file, `${W}.row_offsets`)).toMatch(/has no companion/);
    const b = damaged(good, 'sparse-bitmask', (t) => {
      for (const p of ['bitmask', 'shape', 'row_offsets']) t.delete(`${W}.${p}`);
    });
    expect(oneLineError(() => Checkpoint.openFolder(b.dir), b.file, `${W}.compressed`)).toMatch(/has no companion ".*\.bitmask"/);
  });

  it('a 2:4 bitmask with three kept positions in a group', () => {
    const P = 'model.layers.0.mlp.gate_proj';
    const { dir, file } = damaged(good24, 'sparse-24-bitmask', (t) => {
      const b = t.get(`${P}.bitmask`)!.bytes;
      b[0] |= 0x0f; // columns 0..3 of row 0 all set
    });
    expect(oneLineError(read(dir, `${P}.weight`), file, `${P}.bitmask`)).toMatch(/row 0, columns 0\.\.3 have 4 set bits, not 2/);
  });
});
