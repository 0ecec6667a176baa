/**
 * Shared pieces of the hardening tests: a seeded generator, a scratch folder on tmpfs when there is one,
 * and the check that a failure is one of ours — a ShearsError whose single line starts with the file.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { ShearsError } from '../../src/errors.js';

/** mulberry32: a tiny, fixed-seed generator so every run mutates the same way. */
export function seeded(seed: number): { next(): number; int(lo: number, hi: number): number; pick<T>(xs: readonly T[]): T } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1));
  return { next, int, pick: (xs) => xs[int(0, xs.length - 1)]! };
}

/** A fresh scratch folder, in /dev/shm when available (the fuzzers write thousands of small files). */
export function scratchDir(tag: string): string {
  const base = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();
  return mkdtempSync(join(base, `shears-${tag}-`));
}

/** Longest message we accept as "one readable line". */
export const MAX_MESSAGE = 600;

/**
 * Runs `f`; returns 'ok' when it succeeds, else checks that it threw our error type with a one-line message
 * starting with `prefix` (the file the user must fix; any of them when several) and returns the message.
 */
export function outcome(f: () => void, prefix: string | readonly string[]): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (!(e instanceof ShearsError)) {
      throw new Error(`raw exception instead of a ShearsError: ${e instanceof Error ? e.stack : String(e)}`);
    }
    const msg = e.message;
    expect(msg, msg.slice(0, 300)).not.toMatch(/[\n\r]/);
    expect(msg.length, msg.slice(0, 300)).toBeLessThanOrEqual(MAX_MESSAGE);
    const prefixes = typeof prefix === 'string' ? [prefix] : prefix;
    expect(prefixes.some((p) => msg.startsWith(p)), `"${msg.slice(0, 300)}" should start with one of ${prefixes.join(' | ')}`).toBe(true);
    return msg;
  }
}

/** Same for async work. */
export async function outcomeAsync(f: () => Promise<unknown>, prefix: string | readonly string[]): Promise<string> {
  let err: unknown;
  try {
    await f();
    return 'ok';
  } catch (e) {
    err = e;
  }
  return outcome(() => {
    throw err;
  }, prefix);
}

/** Odd values a JSON field can take: wrong types, out-of-range numbers, long strings, deep nesting. */
export function oddValue(rng: ReturnType<typeof seeded>): unknown {
  switch (rng.int(0, 17)) {
    case 0: return null;
    case 1: return rng.next() * 1e6 - 5e5;
    case 2: return -rng.int(1, 1000);
    case 3: return 2 ** rng.int(31, 1023);
    case 4: return 1.5;
    case 5: return 'x'.repeat(rng.int(0, 40));
    case 6: return [];
    case 7: return [rng.int(0, 10), 'a'];
    case 8: return String(rng.int(0, 100));
    case 9: return { a: 1 };
    case 10: return rng.next() < 0.5;
    case 11: return 0;
    case 12: return rng.int(1, 7);
    case 13: return 'y'.repeat(rng.int(10_000, 200_000));
    case 14: return [1, 2, 3];
    case 15: return rng.int(1, 1_000_000_000);
    case 16: {
      let v: unknown = 1;
      for (let k = rng.int(100, 1500); k > 0; k--) v = [v]; // deeper values: see the safetensors fuzzer
      return v;
    }
    default: return rng.int(100, 5000);
  }
}

/**
 * A copy of `obj` with one random edit at a random depth: a field deleted, set to an odd value, or (for
 * arrays) an element dropped. Returns the copy and a description of the edit.
 */
export function mutateJson(obj: unknown, rng: ReturnType<typeof seeded>): { value: unknown; edit: string } {
  const copy = structuredClone(obj);
  let node = copy as Record<string, unknown> | unknown[];
  let path = '';
  for (;;) {
    const keys = Array.isArray(node) ? node.map((_, i) => String(i)) : Object.keys(node);
    if (keys.length === 0) return { value: oddValue(rng), edit: `${path} replaced` };
    const k = rng.pick(keys);
    const child = (node as Record<string, unknown>)[k];
    if (child !== null && typeof child === 'object' && rng.next() < 0.55) {
      node = child as Record<string, unknown> | unknown[];
      path += `.${k}`;
      continue;
    }
    if (rng.next() < 0.3) {
      if (Array.isArray(node)) node.splice(Number(k), 1);
      else delete node[k];
      return { value: copy, edit: `${path}.${k} deleted` };
    }
    const v = oddValue(rng);
    (node as Record<string, unknown>)[k] = v;
    return { value: copy, edit: `${path}.${k} = ${typeof v === 'string' ? `string(${v.length})` : Array.isArray(v) ? 'array' : String(v)}` };
  }
}

