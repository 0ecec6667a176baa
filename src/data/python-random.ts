/**
 * CPython's `random` module, as far as the reference calibration samplers use it: MT19937 seeded the
 * way `random.seed(int)` seeds it, and `randint` built on `getrandbits` rejection sampling. With it,
 * shears draws the same calibration windows as SparseGPT's and Wanda's `get_c4`/`get_wikitext2` for the
 * same seed and token stream.
 */
export class PythonRandom {
  private readonly mt = new Uint32Array(624);
  private index = 624;

  constructor(seed: number) {
    this.seed(seed);
  }

  /** random.seed(n) for a non-negative integer n: init_by_array over n's 32-bit words (least significant first). */
  seed(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`seed must be a non-negative integer, got ${n}`);
    const key: number[] = [];
    let v = n;
    do {
      key.push(v % 0x100000000);
      v = Math.floor(v / 0x100000000);
    } while (v > 0);
    this.initByArray(key);
  }

  private initGenrand(s: number): void {
    const mt = this.mt;
    mt[0] = s >>> 0;
    for (let i = 1; i < 624; i++) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
    this.index = 624;
  }

  private initByArray(key: number[]): void {
    const mt = this.mt;
    this.initGenrand(19650218);
    let i = 1;
    let j = 0;
    for (let k = Math.max(624, key.length); k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1664525)) + key[j] + j) >>> 0;
      i++;
      j++;
      if (i >= 624) {
        mt[0] = mt[623];
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = 623; k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1566083941)) - i) >>> 0;
      i++;
      if (i >= 624) {
        mt[0] = mt[623];
        i = 1;
      }
    }
    mt[0] = 0x80000000;
  }

  /** One tempered 32-bit output of MT19937. */
  uint32(): number {
    const mt = this.mt;
    if (this.index >= 624) {
      for (let k = 0; k < 624; k++) {
        const y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7fffffff);
        mt[k] = mt[(k + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.index = 0;
    }
    let y = mt[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** random.getrandbits(k) for 1 <= k <= 32. */
  getrandbits(k: number): number {
    return this.uint32() >>> (32 - k);
  }

  /** random.randint(a, b): uniform integer in [a, b], by rejection on bit_length(b - a + 1) bits. */
  randint(a: number, b: number): number {
    const n = b - a + 1;
    if (n <= 0) throw new RangeError(`empty range for randint(${a}, ${b})`);
    if (n > 0xffffffff) throw new RangeError('randint ranges above 2^32 are not needed here');
    const k = 32 - Math.clz32(n);
    let r = this.getrandbits(k);
    while (r >= n) r = this.getrandbits(k);
    return a + r;
  }

  /** random.random(): 53-bit float in [0, 1). */
  random(): number {
    const a = this.uint32() >>> 5;
    const b = this.uint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }
}
