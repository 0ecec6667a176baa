/**
 * What `shears inspect` reports about a checkpoint: identity from config.json, sizes, and per-tensor
 * sparsity and N:M pattern checks. Tensors are streamed one at a time (read, summarize, dropped), so this
 * works on checkpoints larger than memory.
 */
import type { Checkpoint } from '../io/checkpoint.js';
import type { DType } from '../io/dtype.js';
import type { WeightFormat } from '../io/compressed/names.js';
import { nmSatisfied } from '../prune/pattern-check.js';

/** The N:M patterns inspect checks, as [N, M]. */
export const NM_PATTERNS = [
  [2, 4],
  [4, 8],
] as const;

export interface TensorSummary {
  name: string;
  dtype: DType;
  shape: number[];
  numel: number;
  /** Number of exact zeros (+0 and -0). */
  zeros: number;
  /** zeros / numel (0 for an empty tensor). */
  sparsity: number;
  /**
   * 2-D tensors only (null otherwise): whether every group of M consecutive weights along the input
   * dimension has at least N zeros, keyed "2:4" and "4:8".
   */
  nm: Record<string, boolean> | null;
  /** 2-D tensors: the dimension holding the inputs, along which N:M groups run (1 for nn.Linear [out, in]). */
  inputDim: 0 | 1 | null;
}

export interface MatrixTotals {
  /** Number of 2-D tensors. */
  count: number;
  parameters: number;
  zeros: number;
  sparsity: number;
  /** How many 2-D tensors satisfy each pattern, keyed "2:4", "4:8". */
  nm: Record<string, number>;
}

/** How the weights are stored, and what that costs on disk against plain fp16. */
export interface StorageSummary {
  format: WeightFormat;
  /** Bits per stored code, for quantized checkpoints. */
  bits?: number;
  /** Weights stored compressed. */
  compressedWeights: number;
  /** Bytes of the safetensors weight files. */
  fileBytes: number;
  /** Parameters × 2: the same tensors stored dense in fp16. */
  denseFp16Bytes: number;
}

export interface InspectSummary {
  /** The model argument as given. */
  model: string;
  /** Folder the checkpoint was read from. */
  dir: string;
  modelType: string | null;
  architectures: string[];
  /** Total number of elements over all tensors. */
  parameters: number;
  /** Parameters per dtype. */
  dtypes: Partial<Record<DType, number>>;
  /** Bytes of the safetensors weight files on disk. */
  fileBytes: number;
  files: number;
  storage: StorageSummary;
  tensors: TensorSummary[];
  totals: {
    tensors: number;
    parameters: number;
    zeros: number;
    sparsity: number;
    /** Over 2-D tensors (the weight matrices; embeddings included). */
    matrices: MatrixTotals;
  };
}

/** Compare names so that "layers.2" sorts before "layers.10". */
export function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/**
 * GPT-2 stores its linear layers as HF Conv1D, [in, out], so their inputs run along dim 0.
 * TODO(arch): ask the architecture registry instead once it exposes the layout of each weight.
 */
function inputDimOf(modelType: string | null, name: string): 0 | 1 {
  if (modelType === 'gpt2' && /\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/.test(name)) return 0;
  return 1;
}

function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) t[c * rows + r] = w[base + c];
  }
  return t;
}

function countZeros(values: Float32Array): number {
  let z = 0;
  for (let i = 0; i < values.length; i++) if (values[i] === 0) z++;
  return z;
}

export function summarizeTensor(name: string, dtype: DType, shape: number[], values: Float32Array, modelType: string | null): TensorSummary {
  const zeros = countZeros(values);
  let nm: Record<string, boolean> | null = null;
  let inputDim: 0 | 1 | null = null;
  if (shape.length === 2) {
    inputDim = inputDimOf(modelType, name);
    const [rows, cols] = shape;
    // Groups run along the inputs: for [in, out] layouts, check the transpose.
    const w = inputDim === 1 ? values : transpose(values, rows, cols);
    const [r, c] = inputDim === 1 ? [rows, cols] : [cols, rows];
    nm = {};
    for (const [n, m] of NM_PATTERNS) nm[`${n}:${m}`] = values.length > 0 && nmSatisfied(w, r, c, n, m);
  }
  return { name, dtype, shape, numel: values.length, zeros, sparsity: values.length ? zeros / values.length : 0, nm, inputDim };
}

/** Read every tensor of `ckpt` once and summarize it. `onTensor` sees progress (i of n). */
export function inspectCheckpoint(ckpt: Checkpoint, model: string, onTensor?: (i: number, n: number, name: string) => void): InspectSummary {
  const cfg = ckpt.config;
  const modelType = typeof cfg.model_type === 'string' ? cfg.model_type : null;
  const architectures = Array.isArray(cfg.architectures) ? cfg.architectures.filter((a): a is string => typeof a === 'string') : [];
  const names = ckpt.tensorNames().sort(naturalCompare);
  const tensors: TensorSummary[] = [];
  const dtypes: Partial<Record<DType, number>> = {};
  const matrices: MatrixTotals = { count: 0, parameters: 0, zeros: 0, sparsity: 0, nm: {} };
  for (const [n, m] of NM_PATTERNS) matrices.nm[`${n}:${m}`] = 0;
  let parameters = 0;
  let zeros = 0;
  names.forEach((name, i) => {
    onTensor?.(i, names.length, name);
    const info = ckpt.info(name);
    const s = summarizeTensor(name, info.dtype, info.shape, ckpt.readFloat32(name), modelType);
    tensors.push(s);
    parameters += s.numel;
    zeros += s.zeros;
    dtypes[s.dtype] = (dtypes[s.dtype] ?? 0) + s.numel;
    if (s.nm) {
      matrices.count++;
      matrices.parameters += s.numel;
      matrices.zeros += s.zeros;
      for (const k of Object.keys(s.nm)) if (s.nm[k]) matrices.nm[k]++;
    }
  });
  matrices.sparsity = matrices.parameters ? matrices.zeros / matrices.parameters : 0;
  return {
    model,
    dir: ckpt.dir,
    modelType,
    architectures,
    parameters,
    dtypes,
    fileBytes: ckpt.fileBytes,
    files: ckpt.files.length,
    storage: {
      format: ckpt.compression?.format ?? 'dense',
      ...(ckpt.compression?.quant ? { bits: ckpt.compression.quant.bits } : {}),
      compressedWeights: ckpt.compression?.weights.size ?? 0,
      fileBytes: ckpt.fileBytes,
      denseFp16Bytes: parameters * 2,
    },
    tensors,
    totals: { tensors: tensors.length, parameters, zeros, sparsity: parameters ? zeros / parameters : 0, matrices },
  };
}
