import { describe, expect, it } from 'vitest';
import { WorkArrays } from '../../src/prune/work-arrays.js';

describe('WorkArrays', () => {
  it('keeps each named array at its longest length and hands out views of it', () => {
    const set = new WorkArrays();
    const a = set.f32('a', 10);
    a.fill(7);
    const shorter = set.f32('a', 4);
    expect(shorter.length).toBe(4);
    expect(shorter.buffer).toBe(a.buffer);
    expect(Array.from(shorter)).toEqual([7, 7, 7, 7]); // what the last user left
    const longer = set.f32('a', 12);
    expect(longer.length).toBe(12);
    expect(longer.buffer).not.toBe(a.buffer);
    expect(set.f64('b', 3)).toBeInstanceOf(Float64Array);
    expect(set.u8('c', 3)).toBeInstanceOf(Uint8Array);
    expect(set.f32('b32', 3).buffer).not.toBe(set.f64('b', 3).buffer);
  });

  it('lends its arrays to one user at a time', () => {
    const set = new WorkArrays();
    const first = set.lease();
    expect(first).toBe(set);
    const second = set.lease();
    expect(second).not.toBe(set);
    expect(second.f32('x', 4).buffer).not.toBe(first.f32('x', 4).buffer);
    first.release();
    expect(set.lease()).toBe(set);
  });
});
