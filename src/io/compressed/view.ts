/**
 * The logical (dense) view of a compressed checkpoint: which stored tensors are the parts of which
 * weight, and decompression of one weight on request. Opening checks that every weight has all its parts
 * with consistent dtypes and shapes (cheap: headers plus the tiny `.shape` tensors); reading checks the
 * contents (bitmask counts, row offsets, value counts), so a damaged file fails with a one-line message
 * naming the file and the tensor.
 */
import { fileError, ShearsError } from '../../errors.js';
import { decodeFloat32, dtypeSize, typedView, type DType } from '../dtype.js';
import type { TensorInfo } from '../safetensors/reader.js';
import { bitmaskRowBytes } from './bitmask.js';
import type { CompressionSettings } from './config.js';
import { asItemSize } from './elements.js';
import { PARTS, partsOf, weightOfPrefix, type Part, type SparseFormat } from './names.js';
import { decodeQuantized24, decodeQuantizedBitmask, codes24RowBytes } from './quantized.js';
import { decodeSparseBitmask, type Complain } from './sparse-bitmask.js';
import { decodeSparse24 } from './sparse24.js';
import { dequantize, type QuantizedWeight, type StoredGrid } from '../../quant/stored.js';

/** The stored tensors the view reads from (a TensorSet). */
export interface RawTensors {
  tensorNames(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  readBytes(name: string): Uint8Array;
}

export interface CompressedWeight {
  /** The dense weight's name, e.g. "model.layers.0.mlp.down_proj.weight". */
  name: string;
  format: SparseFormat;
  quantized: boolean;
  /** dtype of the dense weight. */
  dtype: DType;
  shape: [number, number];
  /** Stored tensor name of each part. */
  parts: Partial<Record<Part, string>>;
  /** The file holding the bitmask. */
  file: string;
  /** Bytes of all parts' data. */
  storedBytes: number;
}

export class CompressedView {
  readonly format: SparseFormat;
  /** Bits per code and dense dtype, for quantized checkpoints. */
  readonly quant?: { bits: number; denseDType: DType };
  /** Compressed weights by dense name. */
  readonly weights: ReadonlyMap<string, CompressedWeight>;
  /** Stored names that are parts of a compressed weight. */
  readonly partNames: ReadonlySet<string>;
  private readonly raw: RawTensors;

  private constructor(raw: RawTensors, format: SparseFormat, quant: CompressedView['quant'], weights: Map<string, CompressedWeight>) {
    this.raw = raw;
    this.format = format;
    this.quant = quant;
    this.weights = weights;
    this.partNames = new Set([...weights.values()].flatMap((w) => Object.values(w.parts) as string[]));
  }

  /**
   * The view of `raw`, or null when nothing is compressed. `settings` is what config.json says (null when
   * it says nothing: the format is then recognised from the parts present).
   */
  static open(raw: RawTensors, settings: CompressionSettings | null, configPath: string): CompressedView | null {
    const names = raw.tensorNames();
    const stems = names.filter((n) => n.endsWith('.bitmask')).map((n) => n.slice(0, -'.bitmask'.length));
    const partLike = (n: string): boolean => ['compressed', 'row_offsets', 'codes'].some((p) => n.endsWith(`.${p}`));
    if (stems.length === 0) {
      const orphan = settings ? names.find(partLike) : undefined;
      if (orphan) throw fileError(raw.info(orphan).file, `tensor "${orphan}" has no companion "${orphan.replace(/\.[a-z_]+$/, '.bitmask')}"`);
      return null;
    }
    const format: SparseFormat = settings?.format ?? (raw.has(`${stems[0]}.row_offsets`) ? 'sparse-bitmask' : 'sparse-24-bitmask');
    const quantized = settings?.quant !== undefined;
    if (!quantized && raw.has(`${stems[0]}.codes`)) {
      throw fileError(configPath, `tensor "${stems[0]}.codes" holds quantized codes but quantization_config does not give their bits (expected "quant_method": "shears")`);
    }
    const weights = new Map<string, CompressedWeight>();
    for (const stem of stems) {
      const w = describeWeight(raw, stem, format, settings?.quant);
      if (raw.has(w.name)) throw fileError(raw.info(w.name).file, `tensor "${w.name}" is stored both dense and compressed (as "${stem}.bitmask")`);
      if (weights.has(w.name)) throw fileError(w.file, `two compressed weights decompress to "${w.name}"`);
      weights.set(w.name, w);
    }
    const view = new CompressedView(raw, format, settings?.quant, weights);
    const orphan = names.find((n) => !view.partNames.has(n) && PARTS.some((p) => n.endsWith(`.${p}`)) && partLike(n));
    if (orphan) throw fileError(raw.info(orphan).file, `tensor "${orphan}" has no companion "${orphan.replace(/\.[a-z_]+$/, '.bitmask')}"`);
    return view;
  }

  /** Stored names that are not parts, plus the compressed weights' dense names, sorted. */
  logicalNames(): string[] {
    const out = this.raw.tensorNames().filter((n) => !this.partNames.has(n));
    out.push(...this.weights.keys());
    return out.sort();
  }

  /** The dense weight's description; start/end are -1 (its bytes are not one range of a file). */
  info(name: string): TensorInfo {
    const w = this.weight(name);
    const numel = w.shape[0] * w.shape[1];
    return { name, dtype: w.dtype, shape: [...w.shape], numel, byteLength: numel * dtypeSize(w.dtype), start: -1, end: -1, file: w.file };
  }

  /** The dense weight's bytes (its dtype, row-major). */
  readBytes(name: string): Uint8Array {
    const w = this.weight(name);
    if (w.quantized) return dequantize(this.readQuantized(name), w.dtype).bytes;
    const [rows, cols] = w.shape;
    const item = asItemSize(dtypeSize(w.dtype));
    const complain = this.complainer(w);
    const compressed = this.raw.readBytes(w.parts.compressed!);
    const bitmask = this.raw.readBytes(w.parts.bitmask!);
    if (w.format === 'sparse-24-bitmask') return decodeSparse24({ bitmask, compressed }, item, rows, cols, complain);
    const rowOffsets = typedView(this.raw.readBytes(w.parts.row_offsets!), 'I64') as BigInt64Array;
    return decodeSparseBitmask({ bitmask, rowOffsets, compressed }, item, rows, cols, complain);
  }

  readFloat32(name: string): Float32Array {
    const w = this.weight(name);
    if (w.quantized) return dequantize(this.readQuantized(name), w.dtype).values;
    return decodeFloat32(this.readBytes(name), w.dtype);
  }

  /** A quantized weight's codes and grid (stored layout). */
  readQuantized(name: string): QuantizedWeight {
    const w = this.weight(name);
    if (!w.quantized || !this.quant) throw new ShearsError(`${w.file}: weight "${name}" is not quantized`);
    const [rows, cols] = w.shape;
    const complain = this.complainer(w);
    const scaleInfo = this.raw.info(w.parts.scale!);
    const scale = typedView(this.raw.readBytes(w.parts.scale!), 'F32') as Float32Array;
    const zero = this.raw.readBytes(w.parts.zero_point!);
    const bits = this.quant.bits;
    const maxq = 2 ** bits - 1;
    for (let k = 0; k < scale.length; k++) {
      if (!(scale[k] > 0 && Number.isFinite(scale[k]))) throw complain('scale', `entry ${k} is ${scale[k]}, not a positive finite number`);
      if (zero[k] > maxq) throw complain('zero_point', `entry ${k} is ${zero[k]}, above ${maxq} for ${bits}-bit codes`);
    }
    const grid: StoredGrid = { bits, axis: scaleInfo.shape[0] === rows && scaleInfo.shape[1] === 1 ? 0 : 1, scale, zero };
    const bitmask = this.raw.readBytes(w.parts.bitmask!);
    const codes = this.raw.readBytes(w.parts.codes!);
    if (w.format === 'sparse-24-bitmask') return decodeQuantized24({ bitmask, codes }, grid, rows, cols, complain);
    const rowOffsets = typedView(this.raw.readBytes(w.parts.row_offsets!), 'I64') as BigInt64Array;
    return decodeQuantizedBitmask({ bitmask, rowOffsets, codes }, grid, rows, cols, complain);
  }

  private weight(name: string): CompressedWeight {
    const w = this.weights.get(name);
    if (!w) throw new ShearsError(`no compressed weight named "${name}"`);
    return w;
  }

  private complainer(w: CompressedWeight): Complain {
    return (part, problem) => {
      const t = w.parts[part] ?? `${w.name}.${part}`;
      const file = this.raw.has(t) ? this.raw.info(t).file : w.file;
      return fileError(file, `tensor "${t}" ${problem}`);
    };
  }
}

/** Find and check the parts of the weight whose bitmask is `<stem>.bitmask` (headers and `.shape` only). */
function describeWeight(raw: RawTensors, stem: string, format: SparseFormat, quant: CompressionSettings['quant']): CompressedWeight {
  const quantized = quant !== undefined;
  const bitmaskName = `${stem}.bitmask`;
  const file = raw.info(bitmaskName).file;
  const parts: Partial<Record<Part, string>> = {};
  const need = partsOf(format, quantized);
  for (const p of need) {
    const n = `${stem}.${p}`;
    if (!raw.has(n)) {
      const other = quantized ? 'compressed' : 'codes';
      const hint = raw.has(`${stem}.${other}`) ? ` (it has "${stem}.${other}": config.json's quantization_config does not match the weights)` : '';
      throw fileError(file, `tensor "${bitmaskName}" has no companion "${n}" (a ${format}${quantized ? ' quantized' : ''} weight needs ${need.map((q) => `.${q}`).join(', ')})${hint}`);
    }
    parts[p] = n;
  }
  const at = (p: Part): TensorInfo => raw.info(parts[p]!);
  const bad = (p: Part, problem: string): ShearsError => fileError(at(p).file, `tensor "${parts[p]}" ${problem}`);
  const shapeInfo = at('shape');
  if (shapeInfo.dtype !== 'I64' || shapeInfo.numel !== 2) throw bad('shape', `must be I64 with 2 entries (rows, columns), found ${shapeInfo.dtype} [${shapeInfo.shape.join(', ')}]`);
  const dims = typedView(raw.readBytes(parts.shape!), 'I64') as BigInt64Array;
  const rows = Number(dims[0]);
  const cols = Number(dims[1]);
  if (!(Number.isSafeInteger(rows) && Number.isSafeInteger(cols) && rows > 0 && cols > 0)) throw bad('shape', `holds [${dims[0]}, ${dims[1]}], not a positive 2-D shape`);
  const expect = (p: Part, dtype: DType | null, shape: number[] | null, what = ''): void => {
    const i = at(p);
    if (dtype && i.dtype !== dtype) throw bad(p, `has dtype ${i.dtype}, expected ${dtype}${what}`);
    if (shape && (i.shape.length !== shape.length || i.shape.some((d, k) => d !== shape[k]))) {
      throw bad(p, `has shape [${i.shape.join(', ')}] but "${parts.shape}" says [${rows}, ${cols}], which needs [${shape.join(', ')}]${what}`);
    }
  };
  expect('bitmask', 'U8', [rows, bitmaskRowBytes(cols)]);
  if (format === 'sparse-24-bitmask' && cols % 4 !== 0) throw bad('shape', `gives ${cols} columns, not a multiple of 4 as sparse-24-bitmask needs`);
  if (format === 'sparse-bitmask') expect('row_offsets', 'I64', [rows]);
  let dtype: DType;
  if (quant) {
    dtype = quant.denseDType;
    const bits = quant.bits;
    const s = at('scale');
    const perRow = s.shape.length === 2 && s.shape[0] === rows && s.shape[1] === 1;
    const perCol = s.shape.length === 2 && s.shape[0] === 1 && s.shape[1] === cols;
    if (s.dtype !== 'F32' || !(perRow || perCol)) throw bad('scale', `must be F32 [${rows}, 1] or [1, ${cols}], found ${s.dtype} [${s.shape.join(', ')}]`);
    expect('zero_point', 'U8', s.shape);
    const c = at('codes');
    if (c.dtype !== 'U8') throw bad('codes', `has dtype ${c.dtype}, expected U8`);
    if (format === 'sparse-bitmask' && c.shape.length !== 1) throw bad('codes', `has shape [${c.shape.join(', ')}], expected 1-D`);
    if (format === 'sparse-24-bitmask') expect('codes', null, [rows, codes24RowBytes(cols, bits)], ` for ${bits}-bit codes`);
  } else {
    const c = at('compressed');
    dtype = c.dtype;
    if (format === 'sparse-bitmask' && c.shape.length !== 1) throw bad('compressed', `has shape [${c.shape.join(', ')}], expected 1-D (the stored values)`);
    if (format === 'sparse-24-bitmask') expect('compressed', null, [rows, cols / 2]);
  }
  const storedBytes = Object.values(parts).reduce((s, n) => s + raw.info(n as string).byteLength, 0);
  return { name: weightOfPrefix(stem, format), format, quantized, dtype, shape: [rows, cols], parts, file, storedBytes };
}
