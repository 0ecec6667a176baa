/**
 * Streaming safetensors writer: the header is fixed up front from the tensor specs, so each tensor can be
 * written the moment it is final, in any order, at its own offset — no model is ever held in memory. The
 * file is built under a temporary name in the same folder and renamed by finish().
 *
 * Output is deterministic: tensors (and metadata keys) are laid out sorted by name, the header JSON is
 * compact and padded with spaces to a multiple of 8 bytes so the data buffer starts 8-byte aligned.
 */
import { closeSync, fsyncSync, ftruncateSync, openSync, renameSync, rmSync } from 'node:fs';
import { fileError, ShearsError } from '../../errors.js';
import { releaseTempPath, tempPathFor, writeFully } from '../atomic.js';
import { dtypeSize, encodeFloat, isDType, numelOf, DTYPES, type DType } from '../dtype.js';

/** One tensor to be written: its name, element type and shape. */
export interface TensorSpec {
  name: string;
  dtype: DType;
  shape: readonly number[];
}

/**
 * Data for one tensor: a Float32Array (encoded to the spec's F32/F16/BF16/F64), raw little-endian bytes as a
 * Uint8Array, or the dtype's native typed array (Int32Array for I32, BigInt64Array for I64, Uint16Array for
 * the raw bits of F16/BF16, ...; see SafetensorsReader.readTyped).
 */
export type TensorData =
  | Float32Array
  | Uint8Array
  | Int32Array
  | BigInt64Array
  | Float64Array
  | Uint16Array
  | Int16Array
  | Int8Array
  | Uint32Array
  | BigUint64Array;

const NATIVE: Partial<Record<DType, string>> = {
  F64: 'Float64Array',
  F16: 'Uint16Array',
  BF16: 'Uint16Array',
  U16: 'Uint16Array',
  I64: 'BigInt64Array',
  U64: 'BigUint64Array',
  I32: 'Int32Array',
  U32: 'Uint32Array',
  I16: 'Int16Array',
  I8: 'Int8Array',
};

/** Validate specs (unique names, known dtypes, non-negative integer shapes) and return them sorted by name. */
export function sortedSpecs(path: string, specs: readonly TensorSpec[]): TensorSpec[] {
  const seen = new Set<string>();
  for (const s of specs) {
    if (s.name === '__metadata__') throw fileError(path, 'a tensor cannot be named "__metadata__"');
    if (seen.has(s.name)) throw fileError(path, `tensor "${s.name}" is listed twice`);
    seen.add(s.name);
    if (!isDType(s.dtype)) throw fileError(path, `tensor "${s.name}" has unknown dtype "${s.dtype}" (known: ${DTYPES.join(', ')})`);
    if (!s.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw fileError(path, `tensor "${s.name}" shape ${JSON.stringify(s.shape)} is not a list of non-negative integers`);
    }
  }
  return [...specs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Bytes a spec's data takes. */
export function specBytes(s: TensorSpec): number {
  return numelOf(s.shape) * dtypeSize(s.dtype);
}

/**
 * The header bytes (JSON padded with spaces to a multiple of 8) for sorted specs, and each tensor's
 * [begin, end) within the data buffer. Built by hand rather than JSON.stringify(object) because JS objects
 * enumerate integer-like keys ("0", "12") first, which would break the name order.
 */
export function buildHeader(
  sorted: readonly TensorSpec[],
  metadata?: Record<string, string>,
): { header: Uint8Array; offsets: Map<string, [number, number]>; dataBytes: number } {
  const parts: string[] = [];
  if (metadata && Object.keys(metadata).length > 0) {
    const keys = Object.keys(metadata).sort();
    parts.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(String(metadata[k]))}`).join(',')}}`);
  }
  const offsets = new Map<string, [number, number]>();
  let pos = 0;
  for (const s of sorted) {
    const end = pos + specBytes(s);
    offsets.set(s.name, [pos, end]);
    parts.push(`${JSON.stringify(s.name)}:{"dtype":"${s.dtype}","shape":[${s.shape.join(',')}],"data_offsets":[${pos},${end}]}`);
    pos = end;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded).fill(0x20);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return { header, offsets, dataBytes: pos };
}

/** Convert `data` to the bytes of a tensor of `spec`, checking its type and length. */
export function tensorBytes(path: string, spec: TensorSpec, data: TensorData): Uint8Array {
  const numel = numelOf(spec.shape);
  const t = `tensor "${spec.name}" (${spec.dtype} ${JSON.stringify(spec.shape)})`;
  const kind = data.constructor.name;
  let bytes: Uint8Array;
  if (data instanceof Float32Array) {
    if (data.length !== numel) throw fileError(path, `${t} needs ${numel} values but got ${data.length}`);
    // F32 is written straight from the caller's buffer: no copy of a possibly huge tensor.
    if (spec.dtype === 'F32') bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else if (spec.dtype === 'F16' || spec.dtype === 'BF16') bytes = encodeFloat(data, spec.dtype);
    else if (spec.dtype === 'F64') bytes = new Uint8Array(new Float64Array(data).buffer);
    else throw fileError(path, `${t} cannot be written from a Float32Array; pass ${NATIVE[spec.dtype] ?? 'Uint8Array'} or raw bytes`);
  } else if (data instanceof Uint8Array) {
    bytes = data;
  } else if (NATIVE[spec.dtype] === kind) {
    if (data.length !== numel) throw fileError(path, `${t} needs ${numel} values but got ${data.length}`);
    bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  } else {
    throw fileError(path, `${t} cannot be written from a ${kind}; pass ${NATIVE[spec.dtype] ?? 'Uint8Array'}, raw bytes, or Float32Array for float types`);
  }
  const need = numel * dtypeSize(spec.dtype);
  if (bytes.byteLength !== need) throw fileError(path, `${t} needs ${need} bytes but got ${bytes.byteLength}`);
  return bytes;
}

export class SafetensorsWriter {
  /** Final path (the file appears there only after finish()). */
  readonly path: string;
  /** Temporary file being written, in the same folder. */
  readonly tempPath: string;
  /** Size of the finished file in bytes. */
  readonly fileBytes: number;
  private fd: number;
  private readonly specs: Map<string, TensorSpec>;
  private readonly offsets: Map<string, [number, number]>;
  private readonly dataStart: number;
  private readonly pending: Set<string>;
  /** Bytes written so far of tensors written in ranges (writeRange, writeBytes). */
  private readonly partial = new Map<string, number>();
  private state: 'open' | 'finished' | 'aborted' = 'open';

  constructor(path: string, specs: readonly TensorSpec[], metadata?: Record<string, string>) {
    this.path = path;
    const sorted = sortedSpecs(path, specs);
    const { header, offsets, dataBytes } = buildHeader(sorted, metadata);
    this.specs = new Map(sorted.map((s) => [s.name, s]));
    this.offsets = offsets;
    this.pending = new Set(this.specs.keys());
    this.dataStart = header.byteLength;
    this.fileBytes = header.byteLength + dataBytes;
    this.tempPath = tempPathFor(path);
    try {
      this.fd = openSync(this.tempPath, 'wx');
    } catch (e) {
      throw fileError(path, `cannot create output file (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    this.guard(() => {
      writeFully(this.fd, header, 0);
      ftruncateSync(this.fd, this.fileBytes);
    });
  }

  /** Names not yet written. */
  missing(): string[] {
    return [...this.pending];
  }

  /** Write one tensor's data (once per tensor, any order). */
  write(name: string, data: TensorData): void {
    if (this.state !== 'open') throw fileError(this.path, `cannot write tensor "${name}": writer already ${this.state}`);
    const spec = this.specs.get(name);
    if (!spec) throw fileError(this.path, `cannot write tensor "${name}": not in the list of tensors given when the file was started`);
    if (!this.pending.has(name)) throw fileError(this.path, `tensor "${name}" was already written`);
    const bytes = tensorBytes(this.path, spec, data);
    this.guard(() => writeFully(this.fd, bytes, this.dataStart + this.offsets.get(name)![0]));
    this.pending.delete(name);
  }

  /**
   * Writes elements [start, start + values.length) of a float tensor (stored order), e.g. one expert's
   * slice of a fused 3-D expert tensor; the tensor counts as written once every element has been. Ranges
   * must not overlap.
   */
  writeRange(name: string, start: number, values: Float32Array): void {
    const spec = this.specs.get(name);
    if (!spec) throw fileError(this.path, `cannot write tensor "${name}": not in the list of tensors given when the file was started`);
    const size = dtypeSize(spec.dtype);
    this.writeBytes(name, start * size, tensorBytes(this.path, { ...spec, shape: [values.length] }, values));
  }

  /** Bytes [start, start + bytes.length) of a tensor's stored data, as writeRange (copying a large tensor in pieces). */
  writeBytes(name: string, start: number, bytes: Uint8Array): void {
    if (this.state !== 'open') throw fileError(this.path, `cannot write tensor "${name}": writer already ${this.state}`);
    const spec = this.specs.get(name);
    if (!spec) throw fileError(this.path, `cannot write tensor "${name}": not in the list of tensors given when the file was started`);
    if (!this.pending.has(name)) throw fileError(this.path, `tensor "${name}" was already written`);
    const total = specBytes(spec);
    const done = (this.partial.get(name) ?? 0) + bytes.byteLength;
    if (!(Number.isSafeInteger(start) && start >= 0 && start + bytes.byteLength <= total && done <= total)) {
      throw fileError(this.path, `bytes ${start}..${start + bytes.byteLength} of tensor "${name}" do not fit its ${total} (or overlap what was written)`);
    }
    this.guard(() => writeFully(this.fd, bytes, this.dataStart + this.offsets.get(name)![0] + start));
    this.partial.set(name, done);
    if (done === total) {
      this.pending.delete(name);
      this.partial.delete(name);
    }
  }

  /** Flush and rename into place; refuses while tensors are missing. */
  finish(): void {
    if (this.state !== 'open') throw fileError(this.path, `cannot finish: writer already ${this.state}`);
    if (this.pending.size > 0) {
      const list = [...this.pending];
      throw fileError(this.path, `cannot finish: ${list.length} tensor(s) not written (${list.slice(0, 3).map((n) => `"${n}"`).join(', ')}${list.length > 3 ? ', …' : ''})`);
    }
    this.guard(() => {
      fsyncSync(this.fd);
      closeSync(this.fd);
      this.fd = -1;
      renameSync(this.tempPath, this.path);
    });
    releaseTempPath(this.tempPath);
    this.state = 'finished';
  }

  /** Drop the temporary file; safe to call more than once or after a failure. */
  abort(): void {
    if (this.state === 'finished') return;
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {
        // already closed: nothing to release
      }
      this.fd = -1;
    }
    rmSync(this.tempPath, { force: true });
    releaseTempPath(this.tempPath);
    this.state = 'aborted';
  }

  /** Run a filesystem step; on failure remove the temporary file and report it against the output path. */
  private guard(step: () => void): void {
    try {
      step();
    } catch (e) {
      this.abort();
      if (e instanceof ShearsError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      const text = (e as Error).message;
      // Node's errno messages already start with the code ("ENOSPC: no space left on device, write").
      throw fileError(this.path, `write failed (${code && !text.startsWith(code) ? `${code}: ` : ''}${text})`);
    }
  }
}
