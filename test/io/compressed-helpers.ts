/**
 * Test helpers for the compressed formats, written independently of src/io/compressed: a plain
 * safetensors parser (Buffer + JSON.parse), a packbits(bitorder="little") reference built from bit
 * strings, and in-test magnitude pruning that produces exact zeros.
 */
import { copyFileSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import type { DType } from '../../src/io/dtype.js';

export interface RawTensor {
  dtype: DType;
  shape: number[];
  bytes: Buffer;
}

/** Every tensor of a safetensors file, in header order, plus its metadata. */
export function parseSafetensors(path: string): { tensors: Map<string, RawTensor>; metadata: Record<string, string> } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: DType; shape: number[]; data_offsets: [number, number] }>;
  const tensors = new Map<string, RawTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = e as unknown as Record<string, string>;
      continue;
    }
    tensors.set(name, { dtype: e.dtype, shape: e.shape, bytes: buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]) });
  }
  return { tensors, metadata };
}

/** Write tensors with shears' writer (tested on its own) — used to build damaged files. */
export function writeSafetensors(path: string, tensors: Map<string, RawTensor>, metadata: Record<string, string> = {}): void {
  const w = new SafetensorsWriter(path, [...tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape })), metadata);
  for (const [name, t] of tensors) w.write(name, new Uint8Array(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength));
  w.finish();
}

/**
 * numpy.packbits(mask, axis=-1, bitorder="little") written from its definition: each row is cut into
 * runs of 8 entries (the last one padded with zeros); the first entry of a run is the least significant
 * bit, so the run read backwards is the byte in binary.
 */
export function packbitsLittleRef(mask: number[][]): number[][] {
  return mask.map((row) => {
    const out: number[] = [];
    for (let k = 0; k < row.length; k += 8) {
      const run = row.slice(k, k + 8).map((b) => (b ? '1' : '0'));
      while (run.length < 8) run.push('0');
      out.push(parseInt(run.reverse().join(''), 2));
    }
    return out;
  });
}

/** The block linear weights of a HF Llama checkpoint. */
export const LLAMA_LINEAR = /^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/;

/**
 * Copy a Llama F32 checkpoint folder with its block linear weights magnitude-pruned (exact +0 zeros):
 * 'unstructured' zeroes the `fraction` smallest |w| of each weight; '2:4' zeroes the 2 smallest of every
 * aligned group of 4 along each row.
 */
export function magnitudePrunedCopy(src: string, dst: string, mode: 'unstructured' | '2:4', fraction = 0.5): Map<string, RawTensor> {
  const { tensors, metadata } = parseSafetensors(join(src, 'model.safetensors'));
  const out = new Map<string, RawTensor>();
  for (const [name, t] of tensors) {
    if (!LLAMA_LINEAR.test(name) || t.dtype !== 'F32') {
      out.set(name, t);
      continue;
    }
    const v = new Float32Array(t.bytes.buffer.slice(t.bytes.byteOffset, t.bytes.byteOffset + t.bytes.byteLength));
    if (mode === 'unstructured') {
      const order = Array.from(v.keys()).sort((a, b) => Math.abs(v[a]) - Math.abs(v[b]) || a - b);
      for (const i of order.slice(0, Math.floor(v.length * fraction))) v[i] = 0;
    } else {
      for (let g = 0; g < v.length; g += 4) {
        const idx = [0, 1, 2, 3].sort((a, b) => Math.abs(v[g + a]) - Math.abs(v[g + b]) || a - b);
        v[g + idx[0]] = 0;
        v[g + idx[1]] = 0;
      }
    }
    out.set(name, { dtype: 'F32', shape: t.shape, bytes: Buffer.from(v.buffer) });
  }
  copySideFiles(src, dst);
  writeSafetensors(join(dst, 'model.safetensors'), out, metadata);
  return out;
}

/** Copy every non-weight file (config, tokenizer, ...) of a model folder. */
export function copySideFiles(src: string, dst: string): void {
  for (const f of readdirSync(src)) if (!f.endsWith('.safetensors')) copyFileSync(join(src, f), join(dst, f));
}

/** Tensors of a folder's model.safetensors, name → bytes (for bit-exact comparisons). */
export function tensorBytes(dir: string): Map<string, RawTensor> {
  return parseSafetensors(join(dir, 'model.safetensors')).tensors;
}
