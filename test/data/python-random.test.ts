import { describe, expect, it } from 'vitest';
import { PythonRandom } from '../../src/data/python-random.js';

// Expected values printed by CPython 3.11 (an independent implementation), e.g.
//   python3 -c "import random; random.seed(0); print([random.randint(0, 999) for _ in range(5)])"
describe('PythonRandom matches CPython random', () => {
  it('seed 0: randint, getrandbits and random', () => {
    const r = new PythonRandom(0);
    expect([0, 1, 2, 3, 4].map(() => r.randint(0, 999))).toEqual([864, 394, 776, 911, 430]);
    expect([r.getrandbits(32), r.getrandbits(32)]).toEqual([173879092, 1112038970]);
    expect(new PythonRandom(0).random()).toBe(0.8444218515250481);
  });

  it('a seed wider than 32 bits is split into words as CPython does', () => {
    const r = new PythonRandom(12345678901);
    expect([0, 1, 2].map(() => r.randint(0, 356316))).toEqual([312782, 171966, 201216]);
    expect(r.random()).toBe(0.3541497479277771);
  });

  it('randint stays inside its range, including a single value', () => {
    const r = new PythonRandom(7);
    for (let k = 0; k < 1000; k++) {
      const v = r.randint(3, 9);
      expect(v).toBeGreaterThanOrEqual(3);
      expect(v).toBeLessThanOrEqual(9);
    }
    expect(r.randint(5, 5)).toBe(5);
    expect(() => r.randint(5, 4)).toThrow();
  });
});
