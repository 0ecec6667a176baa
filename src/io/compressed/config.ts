/**
 * The `quantization_config` block of config.json that marks a compressed checkpoint.
 *
 * Sparse only — compressed-tensors' own layout, so transformers / vLLM recognise the checkpoint:
 *   "quantization_config": {
 *     "quant_method": "compressed-tensors",
 *     "sparsity_config": {"format": "sparse-bitmask" | "sparse-24-bitmask", "global_sparsity": 0.5,
 *                         "sparsity_structure": "unstructured" | "2:4" | "4:8", "targets": ["Linear"],
 *                         "ignore": [module names left dense]}
 *   }
 * Sparse + quantized codes — a layout of shears' own, so it says so (a tool that does not know it refuses
 * the checkpoint instead of loading codes as weights):
 *   "quantization_config": {
 *     "quant_method": "shears", "format": <the sparse format>,
 *     "weights": {"num_bits": 4, "type": "int", "symmetric": false, "strategy": "channel",
 *                 "observer": "minmax", "dense_dtype": "F16"},
 *     "sparsity_config": {...as above...}
 *   }
 * global_sparsity is the fraction of exact zeros over the targeted weights (the decoder blocks' linear
 * layers), as a fraction in [0, 1] like llm-compressor writes it.
 */
import { fileError } from '../../errors.js';
import { isDType, isFloatDType, type DType } from '../dtype.js';
import { isSparseFormat, type SparseFormat } from './names.js';

export const QUANT_METHOD_SPARSE = 'compressed-tensors';
export const QUANT_METHOD_QUANTIZED = 'shears';
/** Bit widths of stored codes. */
export const STORED_BITS: readonly number[] = [2, 4, 8];

export interface CompressionSettings {
  format: SparseFormat;
  /** Present for quantized checkpoints: bits per code and the dtype of the dense weights they stand for. */
  quant?: { bits: number; denseDType: DType };
}

export interface SparsityStats {
  globalSparsity: number;
  sparsityStructure: string;
  ignore: string[];
}

/** The quantization_config value for config.json. */
export function compressionConfigBlock(s: CompressionSettings, stats: SparsityStats): Record<string, unknown> {
  const sparsity = {
    format: s.format,
    global_sparsity: stats.globalSparsity,
    sparsity_structure: stats.sparsityStructure,
    targets: ['Linear'],
    ignore: stats.ignore,
  };
  if (!s.quant) return { quant_method: QUANT_METHOD_SPARSE, sparsity_config: sparsity };
  return {
    quant_method: QUANT_METHOD_QUANTIZED,
    format: s.format,
    weights: { num_bits: s.quant.bits, type: 'int', symmetric: false, strategy: 'channel', observer: 'minmax', dense_dtype: s.quant.denseDType },
    sparsity_config: sparsity,
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * What config.json says about compression: null for a dense checkpoint (no block, a block of another
 * quantization method, or a compressed-tensors block whose sparsity format is dense).
 */
export function readCompressionSettings(config: Record<string, unknown>, configPath: string): CompressionSettings | null {
  const q = config.quantization_config;
  if (!isObject(q)) return null;
  const sc = isObject(q.sparsity_config) ? q.sparsity_config : undefined;
  if (q.quant_method === QUANT_METHOD_SPARSE) {
    const groups = q.config_groups;
    if (isObject(groups) && Object.keys(groups).length > 0) {
      throw fileError(configPath, 'compressed-tensors quantized weights (quantization_config.config_groups) are not supported; shears reads sparse-bitmask and sparse-24-bitmask sparsity');
    }
    if (!sc || sc.format === 'dense' || sc.format === undefined) return null;
    if (!isSparseFormat(sc.format)) {
      throw fileError(configPath, `quantization_config.sparsity_config.format ${JSON.stringify(sc.format)} is not supported (supported: dense, sparse-bitmask, sparse-24-bitmask)`);
    }
    return { format: sc.format };
  }
  if (q.quant_method === QUANT_METHOD_QUANTIZED) {
    const format = q.format ?? sc?.format;
    if (!isSparseFormat(format)) throw fileError(configPath, `quantization_config.format ${JSON.stringify(format)} is not sparse-bitmask or sparse-24-bitmask`);
    const w = isObject(q.weights) ? q.weights : {};
    const bits = w.num_bits;
    if (typeof bits !== 'number' || !STORED_BITS.includes(bits)) {
      throw fileError(configPath, `quantization_config.weights.num_bits ${JSON.stringify(bits)} is not one of ${STORED_BITS.join(', ')}`);
    }
    const dt = w.dense_dtype;
    if (!isDType(dt) || !isFloatDType(dt)) throw fileError(configPath, `quantization_config.weights.dense_dtype ${JSON.stringify(dt)} is not a float dtype (F32, F16, BF16, F64)`);
    return { format, quant: { bits, denseDType: dt } };
  }
  return null;
}

/** config.json without a compression block (for a dense export). */
export function withoutCompression(config: Record<string, unknown>): Record<string, unknown> {
  const q = config.quantization_config;
  if (!isObject(q) || (q.quant_method !== QUANT_METHOD_SPARSE && q.quant_method !== QUANT_METHOD_QUANTIZED)) return { ...config };
  const { quantization_config: _dropped, ...rest } = config;
  return rest;
}
