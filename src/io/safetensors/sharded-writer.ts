/**
 * Writes a checkpoint's weights as HuggingFace does: one `model.safetensors` when everything fits in one
 * shard, otherwise `model-0000i-of-0000n.safetensors` shards plus `model.safetensors.index.json`.
 * Tensors go to shards in name order, a new shard starting when the next tensor would push the current
 * one past `maxShardBytes` (a tensor larger than that gets a shard of its own). Shard files are opened on
 * the first write into them and finished as soon as their last tensor arrives, so few files are open at once.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileError } from '../../errors.js';
import { INDEX_FILE_NAME, SINGLE_FILE_NAME, shardFileName, writeSafetensorsIndex } from './index-file.js';
import { SafetensorsWriter, sortedSpecs, specBytes, type TensorData, type TensorSpec } from './writer.js';

/** Default shard size, as transformers' save_pretrained (5 GB). */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

export interface ShardedWriterOptions {
  /** Largest data size per shard in bytes (headers not counted). Default 5 GB. */
  maxShardBytes?: number;
  /** Header `__metadata__` of every shard (e.g. {format: 'pt'}). */
  metadata?: Record<string, string>;
}

/** Split name-sorted specs into shards of at most `maxShardBytes` of data each. */
export function planShards(sorted: readonly TensorSpec[], maxShardBytes: number): TensorSpec[][] {
  const shards: TensorSpec[][] = [[]];
  let size = 0;
  for (const s of sorted) {
    const b = specBytes(s);
    const cur = shards[shards.length - 1];
    if (cur.length > 0 && size + b > maxShardBytes) {
      shards.push([s]);
      size = b;
    } else {
      cur.push(s);
      size += b;
    }
  }
  return shards;
}

interface Shard {
  file: string;
  specs: TensorSpec[];
  remaining: Set<string>;
  writer?: SafetensorsWriter;
  done: boolean;
}

export class ShardedSafetensorsWriter {
  readonly dir: string;
  /** File names (in `dir`) this writer produces, shards first then the index if any. */
  readonly files: string[];
  /** Tensor name → shard file name. */
  readonly weightMap: Map<string, string>;
  /** Sum of all tensors' data bytes (the index's total_size). */
  readonly totalSize: number;
  private readonly shards: Shard[];
  private readonly shardOf: Map<string, Shard>;
  private readonly metadata?: Record<string, string>;
  private state: 'open' | 'finished' | 'aborted' = 'open';

  constructor(dir: string, specs: readonly TensorSpec[], opts: ShardedWriterOptions = {}) {
    this.dir = dir;
    this.metadata = opts.metadata;
    const max = opts.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
    if (!(max > 0)) throw fileError(dir, `maximum shard size must be positive (got ${max})`);
    const sorted = sortedSpecs(join(dir, SINGLE_FILE_NAME), specs);
    const plan = planShards(sorted, max);
    this.shards = plan.map((group, i) => ({
      file: plan.length === 1 ? SINGLE_FILE_NAME : shardFileName(i, plan.length),
      specs: group,
      remaining: new Set(group.map((s) => s.name)),
      done: false,
    }));
    this.shardOf = new Map();
    this.weightMap = new Map();
    let total = 0;
    for (const shard of this.shards) {
      for (const s of shard.specs) {
        this.shardOf.set(s.name, shard);
        this.weightMap.set(s.name, shard.file);
        total += specBytes(s);
      }
    }
    this.totalSize = total;
    this.files = this.shards.map((s) => s.file);
    if (this.shards.length > 1) this.files.push(INDEX_FILE_NAME);
  }

  write(name: string, data: TensorData): void {
    if (this.state !== 'open') throw fileError(this.dir, `cannot write tensor "${name}": writer already ${this.state}`);
    const shard = this.shardOf.get(name);
    if (!shard) throw fileError(this.dir, `cannot write tensor "${name}": not in the list of tensors given when the output was started`);
    if (!shard.remaining.has(name)) throw fileError(join(this.dir, shard.file), `tensor "${name}" was already written`);
    shard.writer ??= new SafetensorsWriter(join(this.dir, shard.file), shard.specs, this.metadata);
    try {
      shard.writer.write(name, data);
      shard.remaining.delete(name);
      if (shard.remaining.size === 0) {
        shard.writer.finish();
        shard.done = true;
      }
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  /** Bytes [start, start + bytes.length) of a tensor's stored data (SafetensorsWriter.writeBytes). */
  writeBytes(name: string, start: number, bytes: Uint8Array): void {
    if (this.state !== 'open') throw fileError(this.dir, `cannot write tensor "${name}": writer already ${this.state}`);
    const shard = this.shardOf.get(name);
    if (!shard) throw fileError(this.dir, `cannot write tensor "${name}": not in the list of tensors given when the output was started`);
    if (!shard.remaining.has(name)) throw fileError(join(this.dir, shard.file), `tensor "${name}" was already written`);
    shard.writer ??= new SafetensorsWriter(join(this.dir, shard.file), shard.specs, this.metadata);
    try {
      shard.writer.writeBytes(name, start, bytes);
      if (!shard.writer.missing().includes(name)) shard.remaining.delete(name);
      if (shard.remaining.size === 0) {
        shard.writer.finish();
        shard.done = true;
      }
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  /** Finish: refuses while tensors are missing; writes the index when there are several shards. */
  finish(): void {
    if (this.state !== 'open') throw fileError(this.dir, `cannot finish: writer already ${this.state}`);
    const missing = this.shards.flatMap((s) => [...s.remaining]);
    if (missing.length > 0) {
      throw fileError(this.dir, `cannot finish: ${missing.length} tensor(s) not written (${missing.slice(0, 3).map((n) => `"${n}"`).join(', ')}${missing.length > 3 ? ', …' : ''})`);
    }
    try {
      for (const shard of this.shards) {
        // Only a checkpoint with no tensors at all has a shard nobody wrote into.
        if (!shard.done) {
          shard.writer ??= new SafetensorsWriter(join(this.dir, shard.file), shard.specs, this.metadata);
          shard.writer.finish();
          shard.done = true;
        }
      }
      if (this.shards.length > 1) writeSafetensorsIndex(join(this.dir, INDEX_FILE_NAME), this.totalSize, this.weightMap);
    } catch (e) {
      this.abort();
      throw e;
    }
    this.state = 'finished';
  }

  /** Remove every file this writer created (temporary and finished shards alike). */
  abort(): void {
    if (this.state === 'finished') return;
    for (const shard of this.shards) {
      shard.writer?.abort();
      if (shard.done) rmSync(join(this.dir, shard.file), { force: true });
    }
    this.state = 'aborted';
  }
}
