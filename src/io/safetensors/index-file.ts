/**
 * HuggingFace sharded-checkpoint index: `model.safetensors.index.json` =
 * {"metadata": {"total_size": <bytes of all tensor data>}, "weight_map": {tensor name: shard file name}},
 * with shards named `model-00001-of-00003.safetensors`.
 */
import { readJsonObject } from '../json-file.js';
import { fileError } from '../../errors.js';
import { writeFileAtomic } from '../atomic.js';

export const SINGLE_FILE_NAME = 'model.safetensors';
export const INDEX_FILE_NAME = 'model.safetensors.index.json';

/** `model-00002-of-00005.safetensors` for i = 1 (0-based) of 5. */
export function shardFileName(i: number, count: number, prefix = 'model'): string {
  const pad = (k: number): string => String(k).padStart(5, '0');
  return `${prefix}-${pad(i + 1)}-of-${pad(count)}.safetensors`;
}

export interface SafetensorsIndex {
  /** The index's "metadata" object as found (total_size included when present). */
  metadata: Record<string, unknown>;
  /** Tensor name → shard file name (relative to the index's folder). */
  weightMap: Map<string, string>;
}

/** Read and validate an index file. */
export function readSafetensorsIndex(path: string): SafetensorsIndex {
  const json = readJsonObject(path, 'no such file', true);
  const { metadata, weight_map } = json as { metadata?: unknown; weight_map?: unknown };
  if (typeof weight_map !== 'object' || weight_map === null || Array.isArray(weight_map)) {
    throw fileError(path, '"weight_map" is missing or not an object of tensor name → shard file');
  }
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(weight_map as Record<string, unknown>)) {
    if (typeof file !== 'string' || file === '' || file.includes('/') || file.includes('\\') || file.startsWith('.')) {
      throw fileError(path, `weight_map entry for "${name}" is not a plain file name (${JSON.stringify(file)})`);
    }
    weightMap.set(name, file);
  }
  const meta = typeof metadata === 'object' && metadata !== null && !Array.isArray(metadata) ? (metadata as Record<string, unknown>) : {};
  return { metadata: meta, weightMap };
}

/** The index file's text: 2-space indented, keys sorted, trailing newline (as transformers writes it). */
export function formatSafetensorsIndex(totalSize: number, weightMap: ReadonlyMap<string, string>): string {
  const names = [...weightMap.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  // Written by hand: JSON.stringify would put integer-like tensor names first.
  const entries = names.map((n) => `    ${JSON.stringify(n)}: ${JSON.stringify(weightMap.get(n))}`);
  return `{\n  "metadata": {\n    "total_size": ${totalSize}\n  },\n  "weight_map": {\n${entries.join(',\n')}\n  }\n}\n`;
}

/** Write an index file atomically. */
export function writeSafetensorsIndex(path: string, totalSize: number, weightMap: ReadonlyMap<string, string>): void {
  writeFileAtomic(path, formatSafetensorsIndex(totalSize, weightMap));
}
