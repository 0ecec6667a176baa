/**
 * Named typed arrays that a method keeps from one layer to the next. First touch of fresh memory costs
 * ~3 ms/MiB here (see engine/scratch.ts), so a method that needs a dozen rows × cols arrays per layer
 * spends a good part of a layer on page faults when it allocates them anew each time (ALPS: ≈ 0.4 s per
 * MLP layer of the ~100M model). Each name keeps the longest array asked for so far; a request returns
 * a view of its first `length` elements, holding whatever the last user left there.
 *
 * Memory: a set lives as long as its holder. ALPS keeps one per layer input (LayerInput.shared), so the
 * layers reading one input share it, and it becomes garbage with the input (the driver drops an input
 * after its last layer). One user at a time: `lease()` gives the set, or a fresh one while it is out.
 */
import { sharedF32, sharedF64, sharedU8 } from '../engine/parallel.js';

export class WorkArrays {
  private readonly arrays = new Map<string, Float32Array | Float64Array | Uint8Array>();
  private out = false;

  /** This set if it is free (until `release()`), else a new, unshared one. */
  lease(): WorkArrays {
    if (this.out) return new WorkArrays();
    this.out = true;
    return this;
  }

  release(): void {
    this.out = false;
  }

  f32(name: string, length: number): Float32Array {
    return this.get(name, length, (n) => new Float32Array(n)) as Float32Array;
  }

  f64(name: string, length: number): Float64Array {
    return this.get(name, length, (n) => new Float64Array(n)) as Float64Array;
  }

  /** In a SharedArrayBuffer, for kernels that engine/parallel.ts runs on every core. */
  sharedF32(name: string, length: number): Float32Array {
    return this.get(`shared:${name}`, length, sharedF32) as Float32Array;
  }

  sharedF64(name: string, length: number): Float64Array {
    return this.get(`shared:${name}`, length, sharedF64) as Float64Array;
  }

  sharedU8(name: string, length: number): Uint8Array {
    return this.get(`shared:${name}`, length, sharedU8) as Uint8Array;
  }

  u8(name: string, length: number): Uint8Array {
    return this.get(name, length, (n) => new Uint8Array(n)) as Uint8Array;
  }

  private get(name: string, length: number, make: (n: number) => Float32Array | Float64Array | Uint8Array): Float32Array | Float64Array | Uint8Array {
    let a = this.arrays.get(name);
    if (!a || a.length < length) {
      a = undefined;
      this.arrays.delete(name); // the old one can be collected before the larger one is touched
      a = make(length);
      this.arrays.set(name, a);
    }
    return a.subarray(0, length);
  }
}
