/**
 * One linear-layer input's statistics for the layers that read it (q/k/v share one, gate/up another):
 * the column norms and/or the Gram matrix, accumulated over the calibration windows, plus the values
 * methods derive from them once per input (SparseGPT's inverse factor).
 */
import { ColumnNormAccumulator, GramAccumulator } from './stats.js';

export interface InputNeeds {
  columnNorms: boolean;
  gram: boolean;
  /** H must stay readable after a method has used it (--refine reads it after the pruning). */
  keepGram: boolean;
}

export class LayerInput {
  readonly cols: number;
  private readonly norms?: ColumnNormAccumulator;
  private readonly gramAcc?: GramAccumulator;
  private readonly keepGram: boolean;
  private readonly derived = new Map<string, Promise<unknown>>();
  private tokenCount = 0;

  constructor(cols: number, needs: InputNeeds) {
    this.cols = cols;
    if (needs.columnNorms) this.norms = new ColumnNormAccumulator(cols);
    if (needs.gram) this.gramAcc = new GramAccumulator(cols);
    this.keepGram = needs.keepGram;
  }

  async add(x: Float32Array, tokens: number, sequences: number): Promise<void> {
    this.tokenCount += tokens;
    await this.norms?.add(x, tokens, sequences);
    await this.gramAcc?.add(x, tokens, sequences);
  }

  /** A batch given as its column sums of squares (reduced captures): only for an input that needs nothing else. */
  addColumnSquares(sums: Float32Array, tokens: number, sequences: number): void {
    if (!this.norms || this.gramAcc) throw new Error('column sums alone cannot feed this input\'s statistics');
    this.tokenCount += tokens;
    this.norms.addSums(sums, tokens, sequences);
  }

  /** Only column norms are wanted: a pass may hand over reduced captures. */
  get columnNormsOnly(): boolean {
    return !!this.norms && !this.gramAcc;
  }

  /** Calibration tokens added (rows of x). */
  get tokens(): number {
    return this.tokenCount;
  }

  /** After the last add(): statistics that batch their work complete it. */
  async finish(): Promise<void> {
    await this.gramAcc?.finish();
  }

  /** Wanda's s_j (a fresh array). */
  columnNorms(): Float64Array {
    if (!this.norms) throw new Error('column norms were not collected for this input');
    return this.norms.result();
  }

  /** H = (2/N) Σ XᵀX, float32, shared: callers must not modify it. */
  gram(): Float32Array {
    if (!this.gramAcc) throw new Error('the Gram matrix was not collected for this input');
    return this.gramAcc.result();
  }

  /**
   * H in float64 for a caller that factors it in place: the accumulator's own storage (widened in place, no
   * copy) unless H must stay readable, then a copy.
   */
  gramForFactoring(): Float64Array {
    if (!this.gramAcc) throw new Error('the Gram matrix was not collected for this input');
    return this.keepGram ? Float64Array.from(this.gramAcc.result()) : this.gramAcc.takeFloat64();
  }

  /** No layer reads this input's statistics any more: its Gram storage may serve the next block. */
  release(): void {
    this.derived.clear();
    this.gramAcc?.release();
  }

  /** `make()` once per input and key; the layers sharing the input get the same value. */
  shared<T>(key: string, make: () => Promise<T>): Promise<T> {
    let p = this.derived.get(key) as Promise<T> | undefined;
    if (!p) this.derived.set(key, (p = make()));
    return p;
  }

  /** The collected statistics, for the non-finite check. */
  results(): (Float32Array | Float64Array)[] {
    const out: (Float32Array | Float64Array)[] = [];
    if (this.norms) out.push(this.norms.result());
    if (this.gramAcc) out.push(this.gramAcc.result());
    return out;
  }
}
