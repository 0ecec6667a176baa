/**
 * Lazy, validating safetensors reader.
 *
 * Layout: 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON
 * ({"__metadata__": {str: str}, name: {dtype, shape, data_offsets: [begin, end]}, ...}), then the data buffer;
 * offsets are relative to the buffer. Opening reads and checks only the header; tensors are read on demand
 * by position from one file descriptor, so a multi-GB file is never held in memory.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { fileError, preview, ShearsError } from '../../errors.js';
import {
  decodeFloat32,
  DTYPES,
  dtypeSize,
  isDType,
  numelOf,
  typedView,
  type DType,
  type TypedTensor,
} from '../dtype.js';
import { findDuplicateKey } from './duplicate-keys.js';

/** Largest header accepted (the limit the reference implementation uses). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Where one tensor lives in a file. `start`/`end` are absolute byte offsets in the file. */
export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  numel: number;
  byteLength: number;
  start: number;
  end: number;
  file: string;
}

/** Read exactly `length` bytes at `position`, in chunks (one readSync call is limited to 2 GiB). */
export function readExactly(fd: number, path: string, position: number, length: number, what: string): Uint8Array {
  const out = new Uint8Array(length);
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < length) {
    const got = readSync(fd, out, done, Math.min(CHUNK, length - done), position + done);
    if (got === 0) throw fileError(path, `file ends at byte ${position + done} while reading ${what} (truncated?)`);
    done += got;
  }
  return out;
}

export class SafetensorsReader {
  readonly path: string;
  readonly metadata: Record<string, string>;
  /** Size of the whole file in bytes. */
  readonly fileSize: number;
  /** Absolute offset of the data buffer (8 + header length). */
  readonly dataStart: number;
  /** Tensor infos by name, in name order. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  private fd: number;

  private constructor(path: string, fd: number, fileSize: number, dataStart: number, metadata: Record<string, string>, infos: TensorInfo[]) {
    this.path = path;
    this.fd = fd;
    this.fileSize = fileSize;
    this.dataStart = dataStart;
    this.metadata = metadata;
    const sorted = [...infos].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.tensors = new Map(sorted.map((t) => [t.name, t]));
  }

  /** Open and validate `path`; throws a ShearsError naming the file and the problem. */
  static open(path: string): SafetensorsReader {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw fileError(path, code === 'ENOENT' ? 'no such file' : `cannot open (${code ?? String(e)})`);
    }
    try {
      const fileSize = fstatSync(fd).size;
      const { dataStart, metadata, infos } = parseHeader(fd, path, fileSize);
      return new SafetensorsReader(path, fd, fileSize, dataStart, metadata, infos);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Tensor names, sorted. */
  tensorNames(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw fileError(this.path, `no tensor named ${preview(name)}`);
    return t;
  }

  /** The tensor's raw little-endian bytes, in a fresh buffer that starts at offset 0 (so views are aligned). */
  readBytes(name: string): Uint8Array {
    const t = this.info(name);
    if (this.fd < 0) throw fileError(this.path, `cannot read tensor ${preview(name)}: reader is closed`);
    return readExactly(this.fd, this.path, t.start, t.byteLength, `tensor ${preview(name)}`);
  }

  /** The tensor as float32 (any float dtype exactly; F64 and integers rounded to nearest float32). */
  readFloat32(name: string): Float32Array {
    const t = this.info(name);
    const bytes = this.readBytes(name);
    if (t.dtype === 'F32') return new Float32Array(bytes.buffer, 0, t.numel);
    return decodeFloat32(bytes, t.dtype);
  }

  /** Bytes [start, start + length) of the tensor's stored data. */
  readBytesRange(name: string, start: number, length: number): Uint8Array {
    const t = this.info(name);
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(length) && start >= 0 && length >= 0 && start + length <= t.byteLength)) {
      throw fileError(this.path, `bytes ${start}..${start + length} are outside tensor ${preview(name)} of ${t.byteLength}`);
    }
    if (this.fd < 0) throw fileError(this.path, `cannot read tensor ${preview(name)}: reader is closed`);
    return readExactly(this.fd, this.path, t.start + start, length, `tensor ${preview(name)}`);
  }

  /**
   * Elements [start, start + count) of the tensor (row-major, stored order) as float32: only their bytes
   * are read (one expert's slice of a fused 3-D expert tensor).
   */
  readFloat32Range(name: string, start: number, count: number): Float32Array {
    const t = this.info(name);
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(count) && start >= 0 && count >= 0 && start + count <= t.numel)) {
      throw fileError(this.path, `elements ${start}..${start + count} are outside tensor ${preview(name)} of ${t.numel}`);
    }
    if (this.fd < 0) throw fileError(this.path, `cannot read tensor ${preview(name)}: reader is closed`);
    const size = dtypeSize(t.dtype);
    const bytes = readExactly(this.fd, this.path, t.start + start * size, count * size, `tensor ${preview(name)}`);
    if (t.dtype === 'F32') return new Float32Array(bytes.buffer, 0, count);
    return decodeFloat32(bytes, t.dtype);
  }

  /**
   * The tensor in its dtype's native typed array: Float64Array, Float32Array, BigInt64Array (I64),
   * BigUint64Array (U64), Int32Array, Uint32Array, Int16Array, Uint16Array (U16, and the raw bit patterns of
   * F16/BF16), Int8Array, Uint8Array (U8, BOOL).
   */
  readTyped(name: string): TypedTensor {
    const t = this.info(name);
    return typedView(this.readBytes(name), t.dtype);
  }

  close(): void {
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
    }
  }
}

function parseHeader(
  fd: number,
  path: string,
  fileSize: number,
): { dataStart: number; metadata: Record<string, string>; infos: TensorInfo[] } {
  const bad = (problem: string): ShearsError => fileError(path, problem);
  if (fileSize < 8) throw bad(`file is ${fileSize} bytes, too short for the 8-byte header length (truncated?)`);
  const lenBytes = readExactly(fd, path, 0, 8, 'the header length');
  const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw bad(`header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
  }
  const n = Number(headerLen);
  if (8 + n > fileSize) {
    throw bad(`header length ${n} runs past the end of the file (${fileSize} bytes; truncated?)`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(readExactly(fd, path, 8, n, 'the header'));
  } catch (e) {
    if (e instanceof ShearsError) throw e;
    throw bad('header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw bad(`header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw bad(`header is not a JSON object (found ${Array.isArray(json) ? 'an array' : json === null ? 'null' : typeof json})`);
  }
  const dup = findDuplicateKey(text);
  if (dup !== undefined) throw bad(`header has the key ${preview(dup)} twice`);

  const dataStart = 8 + n;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const infos: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
        throw bad('__metadata__ must be an object mapping strings to strings');
      }
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string') {
          throw bad(`__metadata__ must map strings to strings, but ${preview(k)} is ${v === null ? 'null' : Array.isArray(v) ? 'an array' : `a ${typeof v}`}`);
        }
        metadata[k] = v;
      }
      continue;
    }
    infos.push(parseEntry(name, entry, bad, dataStart, dataSize, path));
  }
  checkCoverage(infos, dataStart, dataSize, bad);
  return { dataStart, metadata, infos };
}

function parseEntry(
  name: string,
  entry: unknown,
  bad: (p: string) => ShearsError,
  dataStart: number,
  dataSize: number,
  path: string,
): TensorInfo {
  const t = `tensor ${preview(name)}`;
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw bad(`${t} entry is not an object`);
  const e = entry as Record<string, unknown>;
  if (!isDType(e.dtype)) {
    throw bad(`${t} has unknown dtype ${preview(e.dtype)} (known: ${DTYPES.join(', ')})`);
  }
  const dtype = e.dtype;
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    throw bad(`${t} shape ${preview(shape)} is not an array of non-negative integers`);
  }
  const offs = e.data_offsets;
  if (
    !Array.isArray(offs) ||
    offs.length !== 2 ||
    !offs.every((o) => Number.isSafeInteger(o) && (o as number) >= 0) ||
    (offs[0] as number) > (offs[1] as number)
  ) {
    throw bad(`${t} data_offsets ${preview(offs)} is not a pair [begin, end] of integers with 0 <= begin <= end`);
  }
  const [begin, end] = offs as [number, number];
  if (end > dataSize) {
    throw bad(`${t} data_offsets [${begin}, ${end}] run past the end of the data buffer (${dataSize} bytes; truncated?)`);
  }
  const numel = numelOf(shape as number[]);
  const need = numel * dtypeSize(dtype);
  if (end - begin !== need) {
    throw bad(`${t} data_offsets [${begin}, ${end}] give ${end - begin} bytes but ${dtype} [${(shape as number[]).join(', ')}] needs ${need}`);
  }
  return { name, dtype, shape: shape as number[], numel, byteLength: need, start: dataStart + begin, end: dataStart + end, file: path };
}

/** Tensors must tile the data buffer exactly: from 0, no overlap, no gap, nothing left over at the end. */
function checkCoverage(infos: TensorInfo[], dataStart: number, dataSize: number, bad: (p: string) => ShearsError): void {
  const sorted = [...infos].sort((a, b) => a.start - b.start || a.end - b.end);
  let pos = 0; // relative to the data buffer
  let prev: TensorInfo | undefined;
  for (const t of sorted) {
    const begin = t.start - dataStart;
    const end = t.end - dataStart;
    if (begin < pos) {
      throw bad(`tensor ${preview(t.name)} data_offsets [${begin}, ${end}] overlap tensor ${preview(prev!.name)} (which ends at ${pos})`);
    }
    if (begin > pos) {
      throw bad(`gap of ${begin - pos} unused bytes at data offset ${pos}, before tensor ${preview(t.name)} (offsets must be contiguous)`);
    }
    pos = end;
    if (t.byteLength > 0) prev = t;
  }
  if (pos !== dataSize) {
    throw bad(`tensors cover ${pos} bytes but the data buffer has ${dataSize} (${dataSize - pos} trailing bytes)`);
  }
}
