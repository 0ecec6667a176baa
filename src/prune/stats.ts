/**
 * Input statistics of one linear layer's input, fed by the block runner one batch at a time.
 *
 * `add(x, tokens, sequences)`: x is [tokens, cols] row-major, the inputs of `sequences` calibration
 * windows stacked. N counts sequences, not tokens, as in the references (their nsamples is the batch
 * dimension; every token of a window goes into the sums).
 *
 * The references keep running means (H *= n/(n+b); H += (2/(n+b)) XᵀX); we keep plain sums and divide
 * once at the end, which is the same quantity with fewer roundings.
 */
import { accumulateGram, addColumnSquares } from '../engine/linalg.js';
import { serial } from '../engine/gemm.js';
import { accumulatePacked, gramChunks, unfoldInPlace, type GramChunk } from '../engine/gram.js';

/**
 * Rows stacked before one XᵀX product. Block calls hand over 256–2048 tokens; at 512 rows the product ran at
 * about half the same-shape matmul rate (2048 columns: the symmetric path mirrors cols² values per call;
 * 768 columns: MLAS's fixed costs per call), at 2048 rows at or above it. The stack is capped at 64 MiB per
 * input (an 11008-wide input stacks 1524 rows).
 */
const STACK_ROWS = 2048;
const STACK_BYTES = 64 * 2 ** 20;

/**
 * Stacks and Gram buffers let go by finished accumulators, for the next block's accumulators of the same
 * width: fresh ones are fresh pages (~2.6 ms/MiB to touch here; at hidden 768 that was a fifth of a block's
 * statistics time). Only while `reuseStatisticStorage(true)` (the prune driver, for models whose block calls
 * are small: a wide model's would be held while its layers are pruned, at its memory peak), and at most
 * KEPT_BYTES of each kind.
 */
const KEPT_BYTES = 64 * 2 ** 20;
let reuse = false;

/** One kind of kept storage: items of any size, at most KEPT_BYTES together. */
class Kept<T extends { byteLength: number }> {
  private readonly items: T[] = [];

  /** A kept item of exactly `bytes` bytes, taken out, or undefined. */
  take(bytes: number): T | undefined {
    const k = this.items.findIndex((s) => s.byteLength === bytes);
    return k >= 0 ? this.items.splice(k, 1)[0] : undefined;
  }

  give(item: T): void {
    const kept = this.items.reduce((a, b) => a + b.byteLength, 0);
    if (reuse && kept + item.byteLength <= KEPT_BYTES) this.items.push(item);
  }

  clear(): void {
    this.items.length = 0;
  }
}

/** Row stacks (given back by finish()) and cols² double buffers (by release(), once no layer reads H). */
const keptStacks = new Kept<Float32Array>();
const keptBuffers = new Kept<ArrayBuffer>();

/** Turns the reuse on or off; off drops what is kept. */
export function reuseStatisticStorage(on: boolean): void {
  reuse = on;
  if (!on) {
    keptStacks.clear();
    keptBuffers.clear();
  }
}

function takeBuffer(bytes: number): ArrayBuffer {
  const b = keptBuffers.take(bytes);
  if (!b) return new ArrayBuffer(bytes);
  // Only the float32 half is read before being written (the sum starts at zero); the rest is overwritten.
  new Float32Array(b, 0, bytes / 8).fill(0);
  return b;
}

/** SparseGPT's H = (2/N) Σ XᵀX, [cols, cols]. */
export class GramAccumulator {
  readonly cols: number;
  /** Σ XᵀX, then H in place once result() was called. float32 like the reference: cols² doubles
   *  would be 1 GiB for an 11008-wide input. Each batch's XᵀX is added by engine gemms (beta = 1): one over
   *  the whole matrix, or for an input too wide for one ORT output, one per row chunk of the lower triangle,
   *  packed at the start of `sum` (engine/gram.ts) and unfolded in place by result(). */
  private readonly sum: Float32Array;
  /** The packed lower triangle's chunks; undefined when the whole matrix is one product. */
  private readonly chunks?: GramChunk[];
  /**
   * Room for cols² doubles, of which `sum` is the first half. The other half is never touched (its pages
   * cost no memory) until takeFloat64() widens H in place, so that the float32 H and its float64 copy are
   * never resident together: for a 5504-wide input that is 121 MiB less at SparseGPT's peak.
   */
  private readonly buffer: ArrayBuffer;
  private n = 0;
  private tokenCount = 0;
  private final = false;
  private taken = false;
  private released = false;
  /** Rows waiting for the next product (see STACK_ROWS), allocated on first use, let go by finish(). */
  private stack?: Float32Array;
  private stacked = 0;
  private readonly stackRows: number;

  /** `stackRows` overrides the rows stacked per product, `chunkElems` the size of the triangle's chunks (tests). */
  constructor(cols: number, opts: { stackRows?: number; chunkElems?: number } = {}) {
    if (!(Number.isSafeInteger(cols) && cols > 0)) throw new RangeError(`invalid column count ${cols}`);
    this.cols = cols;
    this.buffer = takeBuffer(cols * cols * Float64Array.BYTES_PER_ELEMENT);
    this.sum = new Float32Array(this.buffer, 0, cols * cols);
    const chunks = gramChunks(cols, opts.chunkElems);
    if (chunks.length > 1) this.chunks = chunks;
    this.stackRows = opts.stackRows ?? Math.max(1, Math.min(STACK_ROWS, Math.floor(STACK_BYTES / (cols * 4))));
  }

  async add(x: Float32Array, tokens: number, sequences: number): Promise<void> {
    if (this.final) throw new Error('GramAccumulator.add after result()');
    checkBatch(x, tokens, sequences, this.cols);
    this.n += sequences;
    this.tokenCount += tokens;
    const { cols, stackRows } = this;
    let t = 0;
    while (t < tokens) {
      if (this.stacked === 0 && tokens - t >= stackRows) {
        // A batch that fills the stack by itself goes to the product directly.
        await this.product(x.subarray(t * cols, tokens * cols), tokens - t);
        return;
      }
      this.stack ??= keptStacks.take(stackRows * cols * 4) ?? new Float32Array(stackRows * cols);
      const r = Math.min(stackRows - this.stacked, tokens - t);
      this.stack.set(x.subarray(t * cols, (t + r) * cols), this.stacked * cols);
      this.stacked += r;
      t += r;
      if (this.stacked === stackRows) await this.flush();
    }
  }

  private product(x: Float32Array, rows: number): Promise<void> {
    const chunks = this.chunks;
    if (!chunks) return accumulateGram(this.sum, this.cols, x, rows);
    return serial(() => accumulatePacked(this.sum, this.cols, chunks, x, rows));
  }

  /** Adds the stacked rows' XᵀX to the sum. */
  private async flush(): Promise<void> {
    if (this.stacked > 0) await this.product(this.stack!.subarray(0, this.stacked * this.cols), this.stacked);
    this.stacked = 0;
  }

  /** Call once every batch was added: the last stacked rows go into the sum, and the stack is let go (kept for reuse while small). */
  async finish(): Promise<void> {
    await this.flush();
    if (this.stack) keptStacks.give(this.stack);
    this.stack = undefined;
  }

  /**
   * Hands the storage back for the next block's accumulator of this width (kept while small, as the stacks).
   * Only once nothing reads H or its float64 form any more (SparseGPT's factor lives in it); no use after.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.final = true;
    this.taken = true;
    keptBuffers.give(this.buffer);
  }

  /** Sequences seen (the N of 2/N). */
  get sequences(): number {
    return this.n;
  }

  get tokens(): number {
    return this.tokenCount;
  }

  /** H = (2/N) Σ XᵀX (all zeros when nothing was added). The same array on every call: the layers
   *  that share this input read it, and sparsegptPrune does not modify it. No add() after this; finish()
   *  must have been awaited since the last add(). */
  result(): Float32Array {
    if (this.taken) throw new Error('GramAccumulator.result after takeFloat64()');
    if (this.stacked > 0) throw new Error('GramAccumulator.result before finish(): rows are still stacked');
    if (!this.final) {
      this.final = true;
      if (this.chunks) unfoldInPlace(this.sum, this.cols, this.chunks);
      if (this.n > 0) {
        const scale = 2 / this.n;
        for (let k = 0; k < this.sum.length; k++) this.sum[k] *= scale;
      }
    }
    return this.sum;
  }

  /**
   * H as float64, widened in place for the last layer that reads it, which may then overwrite it (SparseGPT
   * factors it in place). The float32 H is gone afterwards: no result() or add() after this.
   */
  takeFloat64(): Float64Array {
    const h32 = this.result();
    this.taken = true;
    const h64 = new Float64Array(this.buffer);
    // Backwards: double k covers floats 2k and 2k+1, both already read (at steps 2k, 2k+1 ≥ k; k = 0 reads first).
    for (let k = h32.length - 1; k >= 0; k--) h64[k] = h32[k];
    return h64;
  }
}

/** Wanda's s_j = (1/N) Σ_sequences Σ_tokens x_j², per-batch float32 sums accumulated in float64. */
export class ColumnNormAccumulator {
  readonly cols: number;
  private readonly sum: Float64Array;
  private n = 0;
  private tokenCount = 0;

  constructor(cols: number) {
    if (!(Number.isSafeInteger(cols) && cols > 0)) throw new RangeError(`invalid column count ${cols}`);
    this.cols = cols;
    this.sum = new Float64Array(cols);
  }

  /** Each batch's column sums of squares are float32 sums (in onnxruntime, like torch's), added in float64. */
  async add(x: Float32Array, tokens: number, sequences: number): Promise<void> {
    checkBatch(x, tokens, sequences, this.cols);
    await addColumnSquares(this.sum, x, tokens);
    this.n += sequences;
    this.tokenCount += tokens;
  }

  /**
   * A batch already reduced to its column sums of squares (float32, computed in the block graph by the same
   * ReduceSumSquare as add() runs), over `tokens` rows from `sequences` windows.
   */
  addSums(sums: Float32Array, tokens: number, sequences: number): void {
    if (sums.length !== this.cols) throw new RangeError(`column sums have ${sums.length} values, not ${this.cols}`);
    for (let j = 0; j < this.cols; j++) this.sum[j] += sums[j];
    this.n += sequences;
    this.tokenCount += tokens;
  }

  get sequences(): number {
    return this.n;
  }

  get tokens(): number {
    return this.tokenCount;
  }

  /** s_j, a fresh array (zeros when nothing was added). */
  result(): Float64Array {
    const s = new Float64Array(this.cols);
    if (this.n > 0) for (let j = 0; j < this.cols; j++) s[j] = this.sum[j] / this.n;
    return s;
  }
}

function checkBatch(x: Float32Array, tokens: number, sequences: number, cols: number): void {
  if (!(Number.isSafeInteger(tokens) && tokens >= 0 && Number.isSafeInteger(sequences) && sequences >= 0)) {
    throw new RangeError(`invalid batch: ${tokens} tokens, ${sequences} sequences`);
  }
  if (x.length !== tokens * cols) throw new RangeError(`batch has ${x.length} values, not ${tokens}x${cols}`);
}
