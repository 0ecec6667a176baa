/**
 * Typed reading of config.json. Every failure is a one-line ShearsError naming the file and the field,
 * e.g. `config.json: num_attention_heads must be a positive integer, got "x"`.
 *
 * Accepts both formats HF writes: transformers 4 (`torch_dtype`, top-level `rope_theta`, `rope_scaling`,
 * keys equal to the class default left out) and transformers 5 (`dtype`, a `rope_parameters` object,
 * `tie_word_embeddings` written out).
 */
import { fileError, preview, type ShearsError } from '../errors.js';

type Json = Record<string, unknown>;

/** A value from config.json in a message: cut short, safe on any value (see preview). */
function show(v: unknown): string {
  return preview(v);
}

export class ConfigReader {
  constructor(
    readonly config: Json,
    readonly path: string,
  ) {}

  /** An error about `field` in this config file. */
  error(field: string, problem: string): ShearsError {
    return fileError(this.path, `${field} ${problem}`);
  }

  /** True when the key is present with a non-null value. */
  has(field: string): boolean {
    return this.config[field] !== undefined && this.config[field] !== null;
  }

  /** The first present field of `fields` (aliases such as n_embd / hidden_size), or undefined. */
  private pick(fields: string | string[]): { field: string; value: unknown } | undefined {
    const list = Array.isArray(fields) ? fields : [fields];
    for (const field of list) if (this.has(field)) return { field, value: this.config[field] };
    return undefined;
  }

  private missing(fields: string | string[]): ShearsError {
    const list = Array.isArray(fields) ? fields : [fields];
    return fileError(this.path, `missing ${list.length > 1 ? `${list.join(' / ')} (one is required)` : list[0]}`);
  }

  /** A positive integer field; `fallback` when absent (or null), else an error. */
  int(fields: string | string[], fallback?: number): number {
    const got = this.pick(fields);
    if (!got) {
      if (fallback !== undefined) return fallback;
      throw this.missing(fields);
    }
    if (typeof got.value !== 'number' || !Number.isInteger(got.value) || got.value <= 0) {
      throw this.error(got.field, `must be a positive integer, got ${show(got.value)}`);
    }
    return got.value;
  }

  /** A non-negative integer field (token ids), or undefined when absent; lists (several eos ids) give their first. */
  tokenId(field: string): number | undefined {
    const got = this.pick(field);
    if (!got) return undefined;
    const v = Array.isArray(got.value) ? got.value[0] : got.value;
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw this.error(field, `must be a token id, got ${show(got.value)}`);
    return v;
  }

  /** A positive finite number field. */
  positive(fields: string | string[], fallback?: number): number {
    const got = this.pick(fields);
    if (!got) {
      if (fallback !== undefined) return fallback;
      throw this.missing(fields);
    }
    if (typeof got.value !== 'number' || !Number.isFinite(got.value) || got.value <= 0) {
      throw this.error(got.field, `must be a positive number, got ${show(got.value)}`);
    }
    return got.value;
  }

  /** A number in (0, 1]. */
  fraction(field: string, fallback: number): number {
    const v = this.positive(field, fallback);
    if (v > 1) throw this.error(field, `must be in (0, 1], got ${show(v)}`);
    return v;
  }

  bool(field: string, fallback: boolean): boolean {
    const got = this.pick(field);
    if (!got) return fallback;
    if (typeof got.value !== 'boolean') throw this.error(field, `must be true or false, got ${show(got.value)}`);
    return got.value;
  }

  str(fields: string | string[], fallback?: string): string {
    const got = this.pick(fields);
    if (!got) {
      if (fallback !== undefined) return fallback;
      throw this.missing(fields);
    }
    if (typeof got.value !== 'string') throw this.error(got.field, `must be a string, got ${show(got.value)}`);
    return got.value;
  }

  /** A string field restricted to `allowed`, with a message listing them. */
  oneOf<T extends string>(field: string, allowed: readonly T[], fallback: T): T {
    const v = this.str(field, fallback);
    if (!(allowed as readonly string[]).includes(v)) {
      throw this.error(field, `${show(v)} is not supported (supported: ${allowed.join(', ')})`);
    }
    return v as T;
  }

  /** An array of strings, or undefined when absent. */
  strings(field: string): string[] | undefined {
    const got = this.pick(field);
    if (!got) return undefined;
    if (!Array.isArray(got.value) || got.value.some((x) => typeof x !== 'string')) {
      throw this.error(field, `must be a list of strings, got ${show(got.value)}`);
    }
    return got.value as string[];
  }

  /** The stored dtype: `dtype` (transformers 5) or `torch_dtype` (4). */
  dtype(): string | undefined {
    const got = this.pick(['dtype', 'torch_dtype']);
    return typeof got?.value === 'string' ? got.value : undefined;
  }
}

/** Attention head layout checked against the hidden size. */
export interface HeadLayout {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
}

/**
 * Heads and kv heads from config: kv heads must divide heads; without an explicit head_dim, heads must
 * divide hidden (head_dim = hidden / heads). Field names are given so GPT-2's n_head etc. can be used.
 */
export function readHeads(
  c: ConfigReader,
  hidden: number,
  fields: { heads: string | string[]; kvHeads?: string; headDim?: string },
): HeadLayout {
  const headsField = Array.isArray(fields.heads) ? fields.heads[0] : fields.heads;
  const numHeads = c.int(fields.heads);
  const numKvHeads = fields.kvHeads ? c.int(fields.kvHeads, numHeads) : numHeads;
  if (numHeads % numKvHeads !== 0) {
    throw c.error(fields.kvHeads ?? 'num_key_value_heads', `(${numKvHeads}) must divide ${headsField} (${numHeads})`);
  }
  if (fields.headDim && c.has(fields.headDim)) return { numHeads, numKvHeads, headDim: c.int(fields.headDim) };
  if (hidden % numHeads !== 0) throw c.error(headsField, `(${numHeads}) must divide the hidden size (${hidden})`);
  return { numHeads, numKvHeads, headDim: hidden / numHeads };
}
