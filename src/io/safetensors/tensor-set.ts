/**
 * Several safetensors files seen as one set of named tensors: the shards of a sharded checkpoint (resolved
 * through its index) or a plain list of files. Each file is opened (header read and validated) once, up
 * front, so a broken shard is reported before any work starts; tensors are still read lazily.
 */
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileError } from '../../errors.js';
import type { DType, TypedTensor } from '../dtype.js';
import { readSafetensorsIndex } from './index-file.js';
import { SafetensorsReader, type TensorInfo } from './reader.js';

export class TensorSet {
  /** Paths of the weight files, in the order opened. */
  readonly files: string[];
  /** Total size of the weight files in bytes. */
  readonly fileBytes: number;
  private readonly readers: SafetensorsReader[];
  private readonly owner: Map<string, SafetensorsReader>;

  private constructor(readers: SafetensorsReader[], owner: Map<string, SafetensorsReader>) {
    this.readers = readers;
    this.owner = owner;
    this.files = readers.map((r) => r.path);
    this.fileBytes = readers.reduce((s, r) => s + r.fileSize, 0);
  }

  /** Open the shards named by an index file (`model.safetensors.index.json`). */
  static fromIndex(indexPath: string): TensorSet {
    const { weightMap } = readSafetensorsIndex(indexPath);
    if (weightMap.size === 0) throw fileError(indexPath, 'weight_map lists no tensors');
    const dir = dirname(indexPath);
    const byFile = new Map<string, string[]>();
    for (const [name, file] of weightMap) {
      const list = byFile.get(file);
      if (list) list.push(name);
      else byFile.set(file, [name]);
    }
    const readers: SafetensorsReader[] = [];
    const owner = new Map<string, SafetensorsReader>();
    try {
      for (const [file, names] of byFile) {
        const path = join(dir, file);
        if (!existsSync(path)) {
          throw fileError(indexPath, `shard "${file}" (holding tensor "${names[0]}") does not exist in ${dir}`);
        }
        const r = SafetensorsReader.open(path);
        readers.push(r);
        for (const name of names) {
          if (!r.has(name)) throw fileError(path, `tensor "${name}" listed in ${basename(indexPath)} is not in this shard`);
          owner.set(name, r);
        }
      }
    } catch (e) {
      for (const r of readers) r.close();
      throw e;
    }
    return new TensorSet(readers, owner);
  }

  /** Open a list of files whose tensors together form the set (a name in two files is an error). */
  static fromFiles(paths: readonly string[]): TensorSet {
    const readers: SafetensorsReader[] = [];
    const owner = new Map<string, SafetensorsReader>();
    try {
      for (const path of paths) {
        const r = SafetensorsReader.open(path);
        readers.push(r);
        for (const name of r.tensorNames()) {
          const other = owner.get(name);
          if (other) throw fileError(path, `tensor "${name}" is also in ${other.path}`);
          owner.set(name, r);
        }
      }
    } catch (e) {
      for (const r of readers) r.close();
      throw e;
    }
    return new TensorSet(readers, owner);
  }

  /** Tensor names, sorted. */
  tensorNames(): string[] {
    return [...this.owner.keys()].sort();
  }

  has(name: string): boolean {
    return this.owner.has(name);
  }

  info(name: string): TensorInfo {
    return this.reader(name).info(name);
  }

  /** Distinct dtypes of the tensors, sorted. */
  dtypes(): DType[] {
    const set = new Set<DType>();
    for (const [name, r] of this.owner) set.add(r.info(name).dtype);
    return [...set].sort();
  }

  readBytes(name: string): Uint8Array {
    return this.reader(name).readBytes(name);
  }

  readFloat32(name: string): Float32Array {
    return this.reader(name).readFloat32(name);
  }

  readBytesRange(name: string, start: number, length: number): Uint8Array {
    return this.reader(name).readBytesRange(name, start, length);
  }

  readFloat32Range(name: string, start: number, count: number): Float32Array {
    return this.reader(name).readFloat32Range(name, start, count);
  }

  readTyped(name: string): TypedTensor {
    return this.reader(name).readTyped(name);
  }

  close(): void {
    for (const r of this.readers) r.close();
  }

  private reader(name: string): SafetensorsReader {
    const r = this.owner.get(name);
    if (!r) throw fileError(this.files.length === 1 ? this.files[0] : dirname(this.files[0] ?? '.'), `no tensor named "${name}"`);
    return r;
  }
}
