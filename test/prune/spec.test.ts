import { describe, expect, it } from 'vitest';
import { ShearsError } from '../../src/errors.js';
import { describeSpec, parsePattern, parseSparsity, parseSparsitySpec, targetSparsity } from '../../src/prune/spec.js';

function usage(f: () => unknown): ShearsError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ShearsError);
    expect((e as ShearsError).exitCode).toBe(2);
    return e as ShearsError;
  }
  throw new Error('expected a usage error');
}

describe('sparsity spec parsing', () => {
  it('accepts p strictly between 0 and 1, as number or string', () => {
    expect(parseSparsitySpec({ sparsity: 0.5 })).toEqual({ kind: 'unstructured', sparsity: 0.5 });
    expect(parseSparsitySpec({ sparsity: '0.7' })).toEqual({ kind: 'unstructured', sparsity: 0.7 });
    expect(parseSparsity(1e-9)).toBe(1e-9);
  });

  it('rejects p outside (0, 1) and non-numbers', () => {
    for (const bad of [0, 1, -0.5, 1.5, NaN, Infinity, '', 'half', '50%']) {
      expect(usage(() => parseSparsity(bad)).message).toMatch(/--sparsity/);
    }
  });

  it('accepts N:M with integers 0 < N < M', () => {
    expect(parseSparsitySpec({ pattern: '2:4' })).toEqual({ kind: 'nm', n: 2, m: 4 });
    expect(parsePattern(' 4 : 8 ')).toEqual({ kind: 'nm', n: 4, m: 8 });
    expect(parsePattern('1:2')).toEqual({ kind: 'nm', n: 1, m: 2 });
  });

  it('rejects malformed patterns', () => {
    for (const bad of ['0:4', '4:4', '5:4', '2.5:4', '2:4.0', '-1:4', '2/4', '2:', ':4', '2:4:8', 'a:b', '']) {
      expect(usage(() => parsePattern(bad)).message).toMatch(/--pattern .*0 < N < M/);
    }
  });

  it('wants exactly one of --sparsity and --pattern', () => {
    expect(usage(() => parseSparsitySpec({ sparsity: 0.5, pattern: '2:4' })).message).toMatch(/not both/);
    expect(usage(() => parseSparsitySpec({})).message).toMatch(/required/);
  });

  it('describes specs', () => {
    expect(describeSpec({ kind: 'unstructured', sparsity: 0.5 })).toBe('50%');
    expect(describeSpec({ kind: 'unstructured', sparsity: 0.7 })).toBe('70%');
    expect(describeSpec({ kind: 'nm', n: 2, m: 4 })).toBe('2:4');
    expect(targetSparsity({ kind: 'nm', n: 4, m: 8 })).toBe(0.5);
  });
});
