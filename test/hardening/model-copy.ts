/** Copies of the bundled stories260K with edited weights, for the numeric-fault and failure tests. */
import { mkdirSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsReader } from '../../src/io/safetensors/reader.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';

export const BUNDLED = join(import.meta.dirname, '..', '..', 'models', 'stories260K');

/** Writes `dir` = stories260K with `edit` applied to the float32 values of the named tensors. */
export function editedModel(dir: string, edits: Record<string, (values: Float32Array) => void> = {}): string {
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) copyFileSync(join(BUNDLED, f), join(dir, f));
  const r = SafetensorsReader.open(join(BUNDLED, 'model.safetensors'));
  try {
    const names = r.tensorNames();
    const w = new SafetensorsWriter(join(dir, 'model.safetensors'), names.map((n) => ({ name: n, dtype: r.info(n).dtype, shape: r.info(n).shape })), { format: 'pt' });
    for (const n of names) {
      const edit = edits[n];
      if (!edit) {
        w.write(n, r.readBytes(n));
        continue;
      }
      const v = r.readFloat32(n);
      edit(v);
      w.write(n, v);
    }
    w.finish();
  } finally {
    r.close();
  }
  return dir;
}
