/**
 * A HuggingFace checkpoint folder (config.json + safetensors weights), opened from a local path or a Hub
 * id. Only headers are read on open; tensors are read one at a time on request.
 *
 * Which weight files: `model.safetensors` if present (as transformers prefers it), else the shards named by
 * `model.safetensors.index.json`, else every `*.safetensors` in the folder.
 *
 * Compressed checkpoints (sparse-bitmask, sparse-24-bitmask, quantized; see compressed/names.ts) present
 * their dense weights: tensorNames/has/info/read* see `<name>` and decompress it from its stored parts on
 * each read. `raw` gives the tensors exactly as stored, and `compression` describes the stored form.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileError, ShearsError } from '../errors.js';
import { readJsonObject } from './json-file.js';
import { typedView, type DType, type TypedTensor } from './dtype.js';
import { readCompressionSettings } from './compressed/config.js';
import { CompressedView } from './compressed/view.js';
import { looksLikeHubId, resolveHubModel } from './hub.js';
import { INDEX_FILE_NAME, SINGLE_FILE_NAME } from './safetensors/index-file.js';
import type { TensorInfo } from './safetensors/reader.js';
import { TensorSet } from './safetensors/tensor-set.js';

export interface CheckpointOpenOptions {
  /** Hub revision (branch, tag or commit); ignored for local folders. */
  revision?: string;
  /** The shears command being run, used in the hint of Hub errors. */
  command?: string;
}

export class Checkpoint {
  /** The folder holding config.json and the weights (for a Hub id: the cache snapshot folder). */
  readonly dir: string;
  /** config.json as parsed, untouched. */
  readonly config: Record<string, unknown>;
  /** Paths of the safetensors weight files. */
  readonly files: string[];
  /** Total size of the weight files in bytes. */
  readonly fileBytes: number;
  /** The tensors exactly as stored (compressed parts included). */
  readonly raw: TensorSet;
  /** How the weights are compressed; null for a dense checkpoint. */
  readonly compression: CompressedView | null;
  private readonly tensors: TensorSet;

  private constructor(dir: string, config: Record<string, unknown>, tensors: TensorSet) {
    this.dir = dir;
    this.config = config;
    this.tensors = tensors;
    this.raw = tensors;
    this.files = tensors.files;
    this.fileBytes = tensors.fileBytes;
    const configPath = join(dir, 'config.json');
    try {
      this.compression = CompressedView.open(tensors, readCompressionSettings(config, configPath), configPath);
    } catch (e) {
      tensors.close();
      throw e;
    }
  }

  /** Open a local folder, or download / reuse from the HF cache a Hub model `owner/name`. */
  static async open(modelRef: string, opts: CheckpointOpenOptions = {}): Promise<Checkpoint> {
    let dir = modelRef;
    if (!existsSync(modelRef)) {
      if (!looksLikeHubId(modelRef)) {
        throw fileError(modelRef, 'no such folder (and not a HuggingFace Hub id of the form owner/name)');
      }
      dir = await resolveHubModel(modelRef, opts);
    } else if (!statSync(modelRef).isDirectory()) {
      throw fileError(modelRef, 'is a file; pass the model folder (with config.json and the safetensors weights)');
    }
    return Checkpoint.openFolder(dir);
  }

  /** Open a local checkpoint folder (sync: only headers are read). */
  static openFolder(dir: string): Checkpoint {
    const config = readConfig(dir);
    return new Checkpoint(dir, config, openWeights(dir));
  }

  /** Tensor names (compressed weights under their dense names, without their parts), sorted. */
  tensorNames(): string[] {
    return this.compression ? this.compression.logicalNames() : this.tensors.tensorNames();
  }

  has(name: string): boolean {
    const c = this.compression;
    if (c) return c.weights.has(name) || (this.tensors.has(name) && !c.partNames.has(name));
    return this.tensors.has(name);
  }

  /**
   * Where and what a tensor is: dtype, shape, numel, byteLength, file and absolute offsets. A compressed
   * weight reports its dense dtype, shape and size, the file of its bitmask, and start = end = -1.
   */
  info(name: string): TensorInfo {
    if (this.compression?.weights.has(name)) return this.compression.info(name);
    this.checkNotPart(name);
    return this.tensors.info(name);
  }

  /** Distinct dtypes of the (dense) tensors, sorted. */
  dtypes(): DType[] {
    if (!this.compression) return this.tensors.dtypes();
    return [...new Set(this.tensorNames().map((n) => this.info(n).dtype))].sort();
  }

  readFloat32(name: string): Float32Array {
    if (this.compression?.weights.has(name)) return this.compression.readFloat32(name);
    this.checkNotPart(name);
    return this.tensors.readFloat32(name);
  }

  /** Elements [start, start + count) of a tensor as float32 (a compressed weight is decompressed whole first). */
  readFloat32Range(name: string, start: number, count: number): Float32Array {
    if (this.compression?.weights.has(name)) return this.compression.readFloat32(name).slice(start, start + count);
    this.checkNotPart(name);
    return this.tensors.readFloat32Range(name, start, count);
  }

  readTyped(name: string): TypedTensor {
    if (this.compression?.weights.has(name)) return typedView(this.compression.readBytes(name), this.compression.info(name).dtype);
    this.checkNotPart(name);
    return this.tensors.readTyped(name);
  }

  /** The tensor's bytes in its dtype (a compressed weight: decompressed). */
  readBytes(name: string): Uint8Array {
    if (this.compression?.weights.has(name)) return this.compression.readBytes(name);
    this.checkNotPart(name);
    return this.tensors.readBytes(name);
  }

  /** Bytes [start, start + length) of a tensor as stored (a compressed weight: of its decompressed bytes). */
  readBytesRange(name: string, start: number, length: number): Uint8Array {
    if (this.compression?.weights.has(name)) return this.compression.readBytes(name).slice(start, start + length);
    this.checkNotPart(name);
    return this.tensors.readBytesRange(name, start, length);
  }

  /** Parts of compressed weights are reached through `raw` only. */
  private checkNotPart(name: string): void {
    if (this.compression?.partNames.has(name)) {
      throw new ShearsError(`${this.dir}: "${name}" is a part of a compressed weight; read the weight itself, or use Checkpoint.raw`);
    }
  }

  close(): void {
    this.tensors.close();
  }
}

function readConfig(dir: string): Record<string, unknown> {
  return readJsonObject(join(dir, 'config.json'), 'missing (a HuggingFace model folder needs config.json)');
}

function openWeights(dir: string): TensorSet {
  if (existsSync(join(dir, SINGLE_FILE_NAME))) return TensorSet.fromFiles([join(dir, SINGLE_FILE_NAME)]);
  if (existsSync(join(dir, INDEX_FILE_NAME))) return TensorSet.fromIndex(join(dir, INDEX_FILE_NAME));
  const names = readdirSync(dir).filter((f) => f.endsWith('.safetensors') && !f.startsWith('.')).sort();
  if (names.length > 0) return TensorSet.fromFiles(names.map((f) => join(dir, f)));
  const other = readdirSync(dir).filter((f) => /\.(bin|pt|pth|gguf|h5|msgpack)$/.test(f));
  throw new ShearsError(
    `${dir}: no safetensors weights (no ${SINGLE_FILE_NAME}, ${INDEX_FILE_NAME} or *.safetensors)` +
      (other.length ? `; found ${other.slice(0, 2).join(', ')} — convert to safetensors first` : ''),
  );
}
