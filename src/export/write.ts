/**
 * Writes a checkpoint in a chosen weight format into a folder, tensor by tensor.
 *
 * A safetensors header is fixed before any data is written, and a compressed weight's size is only known
 * once it is encoded, so the work is two passes over the weights: the first encodes each targeted weight
 * to learn its stored shapes (and the sparsity statistics) and drops the result, the second encodes it
 * again and writes it. Only one weight is in memory at a time.
 */
import { copyFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ShearsError } from '../errors.js';
import type { Checkpoint } from '../io/checkpoint.js';
import { writeFileAtomic } from '../io/atomic.js';
import { decodeFloat32, type DType } from '../io/dtype.js';
import { compressionConfigBlock, STORED_BITS, withoutCompression, type CompressionSettings } from '../io/compressed/config.js';
import type { WeightFormat } from '../io/compressed/names.js';
import { INDEX_FILE_NAME } from '../io/safetensors/index-file.js';
import { SafetensorsReader } from '../io/safetensors/reader.js';
import { ShardedSafetensorsWriter } from '../io/safetensors/sharded-writer.js';
import type { TensorSpec } from '../io/safetensors/writer.js';
import { nmSatisfied } from '../prune/pattern-check.js';
import { codesOf, dequantize, type QuantizedWeight, type StoredGrid } from '../quant/stored.js';
import { encodeWeight, type WeightSource } from './encode.js';
import { headModule, moduleOf, targetsOf, type Target } from './targets.js';

export interface WriteFormatOptions {
  format: WeightFormat;
  /**
   * Store these weights as quantized codes on the given grids (the prune job's --wbits). Each weight's
   * values must already lie on its grid; they are checked to decode to exactly the same bytes.
   */
  quantize?: { bits: number; grids: ReadonlyMap<string, StoredGrid> };
  /** Largest shard in bytes (default: the HF 5 GB). */
  maxShardBytes?: number;
  /** `__metadata__` for every safetensors file (default: the source's first file's, e.g. prune's provenance). */
  metadata?: Record<string, string>;
}

export interface WriteFormatResult {
  format: WeightFormat;
  /** Bits of the stored codes when quantized weights were written in a compressed format. */
  bits?: number;
  /** Weight files written (names in the folder). */
  files: string[];
  /** Bytes of the weight files written. */
  fileBytes: number;
  /** Parameters × 2 bytes: the same model stored dense in fp16. */
  denseFp16Bytes: number;
  parameters: number;
  /** Targeted weights stored compressed / left dense. */
  compressed: number;
  dense: number;
  /** Zeros over the targeted weights. */
  globalSparsity: number;
  sparsityStructure: string;
  /** Modules left dense (compressed-tensors' `ignore`). */
  ignore: string[];
}

/** Side files never copied: weights and their index (rewritten), reports of earlier runs, config (rewritten). */
const NOT_COPIED = /\.safetensors$|^shears-report\.json$|^config\.json$|\.(bin|pt|pth|msgpack|h5|onnx)$/;

/** Write `ckpt` into the existing, empty folder `outDir` in `opts.format`. */
export function writeFormat(ckpt: Checkpoint, outDir: string, opts: WriteFormatOptions): WriteFormatResult {
  const { format } = opts;
  const targets = targetsOf(ckpt);
  const sourceQuant = ckpt.compression?.quant;
  const bits = opts.quantize?.bits ?? sourceQuant?.bits;
  if (opts.quantize && !STORED_BITS.includes(opts.quantize.bits)) throw new ShearsError(`${opts.quantize.bits}-bit codes cannot be stored (supported: ${STORED_BITS.join(', ')})`);

  /** The weight as the encoder takes it; quantized when it has codes (stored) or a grid (given). */
  const sourceOf = (t: Target): WeightSource => {
    const info = ckpt.info(t.tensor);
    const [rows, cols] = info.shape;
    const cw = ckpt.compression?.weights.get(t.tensor);
    if (cw?.quantized) return { kind: 'quantized', dtype: cw.dtype, q: ckpt.compression!.readQuantized(t.tensor) };
    const bytes = ckpt.readBytes(t.tensor);
    const grid = opts.quantize?.grids.get(t.tensor);
    if (!grid) return { kind: 'dense', dtype: info.dtype, rows, cols, bytes };
    const q: QuantizedWeight = { rows, cols, grid, codes: codesOf(decodeFloat32(bytes, info.dtype), rows, cols, grid) };
    const back = dequantize(q, info.dtype).bytes;
    if (!Buffer.from(back.buffer, back.byteOffset, back.byteLength).equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))) {
      throw new ShearsError(`weight "${t.tensor}" is not on its ${grid.bits}-bit quantization grid, so its codes would change it`);
    }
    return { kind: 'quantized', dtype: info.dtype, q };
  };

  // Pass 1: stored shapes, and the statistics for config.json.
  const names = ckpt.tensorNames();
  const specs: TensorSpec[] = [];
  const compressedNames = new Set<string>();
  const ignore: string[] = [];
  const denseDTypes = new Set<DType>();
  let parameters = 0;
  let targetNumel = 0;
  let targetZeros = 0;
  const nm = { '2:4': true, '4:8': true };
  let anyQuantized = false;
  for (const name of names) {
    const info = ckpt.info(name);
    parameters += info.numel;
    const t = targets.byName.get(name);
    if (!t) {
      specs.push({ name, dtype: info.dtype, shape: info.shape });
      continue;
    }
    const src = sourceOf(t);
    const values = src.kind === 'dense' ? decodeFloat32(src.bytes, src.dtype) : dequantize(src.q, src.dtype).values;
    targetNumel += values.length;
    for (let i = 0; i < values.length; i++) if (values[i] === 0) targetZeros++;
    const [rows, cols] = info.shape;
    const linear = t.transposed ? transpose(values, rows, cols) : values;
    const [lr, lc] = t.transposed ? [cols, rows] : [rows, cols];
    if (nm['2:4']) nm['2:4'] = nmSatisfied(linear, lr, lc, 2, 4);
    if (nm['4:8']) nm['4:8'] = nmSatisfied(linear, lr, lc, 4, 8);
    const parts = format === 'dense' ? null : encodeWeight(name, src, format);
    if (parts) {
      compressedNames.add(name);
      if (src.kind === 'quantized') anyQuantized = true;
      denseDTypes.add(src.dtype);
      for (const p of parts) specs.push({ name: p.name, dtype: p.dtype, shape: p.shape });
    } else {
      if (format !== 'dense') ignore.push(moduleOf(name));
      specs.push({ name, dtype: info.dtype, shape: info.shape });
    }
  }
  if (format === 'sparse-24-bitmask' && compressedNames.size === 0 && targets.byName.size > 0) {
    throw new ShearsError(`${ckpt.dir}: no linear weight is exactly 2:4 sparse along its rows, so sparse-24-bitmask would store nothing compressed (use sparse-bitmask)`);
  }
  if (anyQuantized && denseDTypes.size > 1) {
    throw new ShearsError(`${ckpt.dir}: quantized weights of several dtypes (${[...denseDTypes].join(', ')}) cannot share one quantization_config`);
  }

  // Pass 2: write.
  const metadata = opts.metadata ?? sourceMetadata(ckpt);
  const writer = new ShardedSafetensorsWriter(outDir, specs, { maxShardBytes: opts.maxShardBytes, metadata: { format: 'pt', ...metadata } });
  try {
    for (const name of names) {
      const t = targets.byName.get(name);
      if (t && compressedNames.has(name)) {
        const parts = encodeWeight(name, sourceOf(t), format as Exclude<WeightFormat, 'dense'>);
        if (!parts) throw new ShearsError(`weight "${name}" encoded differently on the second pass`);
        for (const p of parts) writer.write(p.name, p.data);
      } else {
        copyInPieces(ckpt, writer, name);
      }
    }
    writer.finish();
  } catch (e) {
    writer.abort();
    throw e;
  }

  const globalSparsity = targetNumel ? targetZeros / targetNumel : 0;
  const sparsityStructure = format === 'sparse-24-bitmask' || nm['2:4'] ? '2:4' : nm['4:8'] ? '4:8' : 'unstructured';
  ignore.push(headModule(targets.family));
  let config = withoutCompression(ckpt.config);
  if (format !== 'dense') {
    const settings: CompressionSettings = { format, ...(anyQuantized ? { quant: { bits: bits!, denseDType: [...denseDTypes][0] } } : {}) };
    config = { ...config, quantization_config: compressionConfigBlock(settings, { globalSparsity, sparsityStructure, ignore }) };
  }
  writeFileAtomic(join(outDir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  for (const entry of readdirSync(ckpt.dir)) {
    const from = join(ckpt.dir, entry);
    if (NOT_COPIED.test(entry) || entry === INDEX_FILE_NAME || entry.startsWith('.') || !statSync(from).isFile()) continue;
    copyFileSync(from, join(outDir, entry));
  }
  const files = writer.files.filter((f) => f.endsWith('.safetensors'));
  return {
    format,
    ...(format !== 'dense' && anyQuantized ? { bits } : {}),
    files,
    fileBytes: files.reduce((s, f) => s + statSync(join(outDir, f)).size, 0),
    denseFp16Bytes: parameters * 2,
    parameters,
    compressed: compressedNames.size,
    dense: targets.byName.size - compressedNames.size,
    globalSparsity,
    sparsityStructure,
    ignore: format === 'dense' ? [] : ignore,
  };
}

/** The header metadata of the source's first weight file (provenance such as shears_method). */
function sourceMetadata(ckpt: Checkpoint): Record<string, string> {
  if (ckpt.files.length === 0) return {};
  const r = SafetensorsReader.open(ckpt.files[0]);
  try {
    return { ...r.metadata };
  } finally {
    r.close();
  }
}

function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
  return t;
}

/**
 * Bytes of a tensor copied unchanged per write: a larger one (a fused 3-D MoE expert tensor holds every
 * expert of a block, an embedding the whole vocabulary) goes in pieces, so export never holds it whole.
 */
let copyPieceBytes = 64 * 2 ** 20;

/** Changes the piece size (tests use it to exercise the pieces); returns the previous value. */
export function setCopyPieceBytes(n: number): number {
  const old = copyPieceBytes;
  copyPieceBytes = n;
  return old;
}

function copyInPieces(ckpt: Checkpoint, writer: ShardedSafetensorsWriter, name: string): void {
  const bytes = ckpt.info(name).byteLength;
  if (bytes <= copyPieceBytes || ckpt.compression?.weights.has(name)) return writer.write(name, ckpt.readBytes(name));
  for (let at = 0; at < bytes; at += copyPieceBytes) writer.writeBytes(name, at, ckpt.readBytesRange(name, at, Math.min(copyPieceBytes, bytes - at)));
}
