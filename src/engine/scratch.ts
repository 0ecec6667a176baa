/**
 * A grow-only stack of scratch memory, kept for the life of the process. First touch of fresh memory costs
 * ~2.6 ms/MiB here (a 4096² float64 matrix: ~340 ms), so the temporaries of the blocked factorisations are
 * carved out of one buffer that is reused from call to call.
 *
 * Usage is strictly LIFO: `const m = arena.mark(); const x = arena.alloc(n); …; arena.release(m)`.
 * When a call needs more than the buffer holds, the excess is served by ordinary allocations and the buffer
 * is enlarged to the high-water mark once the stack is empty again, so the next call of that size is free.
 * Callers must serialise (see gemm.ts `serial`): two interleaved users would share memory.
 */
export class ScratchArena<T extends Float32Array | Float64Array> {
  private buf: T;
  private top = 0;
  private high = 0;

  constructor(private readonly make: (length: number) => T) {
    this.buf = make(0);
  }

  mark(): number {
    return this.top;
  }

  /** `length` elements of scratch; contents are whatever the last user left (not zeroed). */
  alloc(length: number): T {
    const start = this.top;
    this.top += length;
    this.high = Math.max(this.high, this.top);
    if (this.top <= this.buf.length) return this.buf.subarray(start, this.top) as T;
    return this.make(length);
  }

  /**
   * Makes the buffer hold at least `length` elements, so that a caller that knows its high-water mark is
   * served entirely from the buffer (never by throwaway allocations). Only while the arena is unused.
   */
  reserve(length: number): void {
    if (this.top !== 0) throw new RangeError('scratch arena reserved while in use');
    if (length > this.buf.length) this.buf = this.make(length);
  }

  /** The most elements in use at once since the last clear(). */
  get highWater(): number {
    return this.high;
  }

  release(mark: number): void {
    if (mark > this.top) throw new RangeError('scratch arena released out of order');
    this.top = mark;
    if (this.top === 0 && this.high > this.buf.length) this.buf = this.make(this.high);
  }

  /** Drops the buffer (e.g. after the largest layer has been processed). */
  clear(): void {
    if (this.top !== 0) throw new RangeError('scratch arena cleared while in use');
    this.buf = this.make(0);
    this.high = 0;
  }

  get capacity(): number {
    return this.buf.length;
  }
}

export const scratch64 = new ScratchArena((n) => new Float64Array(n));
export const scratch32 = new ScratchArena((n) => new Float32Array(n));

/** Frees the retained scratch memory of the linear-algebra primitives. */
export function releaseScratch(): void {
  scratch64.clear();
  scratch32.clear();
}
