/**
 * Writes a checkpoint with the same layout as its source: the same weight files (shards) holding the
 * same tensors under the same names and dtypes, the index and the side files (config, tokenizer,
 * generation config) copied. Tensors are written one at a time as they become final; the caller owns
 * the (temporary) output folder.
 */
import { copyFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileError, ShearsError } from '../errors.js';
import type { Checkpoint } from './checkpoint.js';
import { SafetensorsWriter } from './safetensors/writer.js';

/** Side files never copied: weights (rewritten) and reports of earlier runs. */
const NOT_COPIED = /\.safetensors$|^shears-report\.json$|\.(bin|pt|pth|msgpack|h5|onnx)$/;

export class CheckpointWriter {
  private readonly byTensor = new Map<string, SafetensorsWriter>();
  private readonly writers: SafetensorsWriter[] = [];

  constructor(
    private readonly src: Checkpoint,
    private readonly outDir: string,
    metadata: Record<string, string>,
  ) {
    const byFile = new Map<string, string[]>();
    for (const name of src.tensorNames()) {
      const f = src.info(name).file;
      if (!byFile.has(f)) byFile.set(f, []);
      byFile.get(f)!.push(name);
    }
    for (const [file, names] of byFile) {
      const specs = names.map((n) => {
        const i = src.info(n);
        return { name: n, dtype: i.dtype, shape: i.shape };
      });
      const w = new SafetensorsWriter(join(outDir, basename(file)), specs, { format: 'pt', ...metadata });
      this.writers.push(w);
      for (const n of names) this.byTensor.set(n, w);
    }
  }

  /** A float tensor's final values (converted to the tensor's stored dtype). */
  write(name: string, values: Float32Array): void {
    this.writerOf(name).write(name, values);
  }

  /** Elements [start, start + values.length) of a float tensor (one expert's slice of a fused tensor). */
  writeRange(name: string, start: number, values: Float32Array): void {
    this.writerOf(name).writeRange(name, start, values);
  }

  /** Copies a tensor's stored bytes unchanged. */
  copy(name: string): void {
    this.writerOf(name).write(name, this.src.readBytes(name));
  }

  /** Names not written yet. */
  missing(): string[] {
    return this.writers.flatMap((w) => w.missing());
  }

  finish(): void {
    for (const w of this.writers) w.finish();
    for (const entry of readdirSync(this.src.dir)) {
      const from = join(this.src.dir, entry);
      if (NOT_COPIED.test(entry) || !statSync(from).isFile()) continue;
      try {
        copyFileSync(from, join(this.outDir, entry));
      } catch (e) {
        // A full disk (ENOSPC) or a read-only folder: one line naming the file, not a raw errno exception.
        throw fileError(join(this.outDir, entry), `cannot copy ${entry} from ${this.src.dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
    }
  }

  abort(): void {
    for (const w of this.writers) w.abort();
  }

  private writerOf(name: string): SafetensorsWriter {
    const w = this.byTensor.get(name);
    if (!w) throw new ShearsError(`tensor "${name}" is not in the source checkpoint`);
    return w;
  }
}
