/**
 * Rotary position embeddings as HF's modeling_rope_utils computes them: the config fields, the inverse
 * frequencies of each rope type, and the cos/sin tables [S, rotaryDim] for a window of S tokens (positions
 * 0..S-1) that ops.rotary applies. Every family that uses RoPE reads it here (`readRope`), so a new family only
 * states its head dimension, default theta and max_position_embeddings.
 *
 * Config styles:
 *  - transformers 4: top-level `rope_theta`, `partial_rotary_factor`, `original_max_position_embeddings`, and a
 *    `rope_scaling` object (`rope_type`, or the older `type`) with the variant's fields;
 *  - transformers 5: a `rope_parameters` object holding `rope_type`, `rope_theta` (and optionally
 *    `partial_rotary_factor`, `original_max_position_embeddings`); Gemma 3 writes one such object per layer
 *    type ({full_attention: {...}, sliding_attention: {...}}), picked with `layerType`.
 * The two versions differ in two places, and each style is computed as the version that writes it does:
 *  - yarn: transformers 4 (its releases since DeepSeek-V3 support; earlier ones ignored
 *    original_max_position_embeddings here) replaces `factor` by max_position_embeddings /
 *    original_max_position_embeddings when rope_scaling gives the latter; transformers 5 keeps the explicit
 *    `factor` (the ratio only when absent);
 *  - longrope: transformers 4 takes original_max_position_embeddings from the top level only (else
 *    max_position_embeddings) and then always uses that ratio as the factor; transformers 5 reads it from the top
 *    level first, then rope_parameters, and keeps an explicit `factor`.
 *
 * Types (HF's names), with the inverse frequencies inv[i], i < rotaryDim/2, of the default
 * inv[i] = theta^(-2i/rotaryDim):
 *  - default, linear (inv / factor), dynamic (NTK: for S > max_position_embeddings the base becomes
 *    theta·(factor·S/max − (factor − 1))^(d/(d−2)); at or below it the default table. HF caches the grown table
 *    between calls; shears computes each window as a fresh forward of S tokens would),
 *  - llama3 (low-frequency dims divided by factor, high-frequency dims kept, a smooth blend between),
 *  - yarn (ramp between interpolated and extrapolated frequencies; cos/sin times the attention factor),
 *  - longrope (short_factor for S ≤ original_max_position_embeddings, long_factor above; cos/sin times the
 *    attention factor, √(1 + ln factor / ln original) by default).
 * Any other rope_type is refused by name.
 *
 * Rounding: HF computes inv_freq, the angles and the scaled cos/sin in float32 (no autocast); each step here is
 * rounded to float32 the same way (Math.fround), since at position ~2000 a float32 angle already differs from
 * the exact one by ~1e-4 rad and the model was trained with HF's. cos/sin of the float32 angle are taken in
 * float64 and rounded once.
 */
import { preview } from '../errors.js';
import { ConfigReader } from './config.js';

export const ROPE_TYPES = ['default', 'linear', 'dynamic', 'llama3', 'yarn', 'longrope'] as const;
export type RopeType = (typeof ROPE_TYPES)[number];

/** Layer types that may key a per-layer rope_parameters object (Gemma 3, transformers 5). */
const LAYER_TYPES = ['full_attention', 'sliding_attention'];

export interface RopeTables {
  cos: Float32Array;
  sin: Float32Array;
}

/** A model's (or one layer type's) RoPE: the rotated dims per head and the tables for any window length. */
export interface Rope {
  readonly type: RopeType;
  /** rope_theta: the base of the (unscaled) frequencies. */
  readonly theta: number;
  /** Rotated dims of each head: int(head_dim · partial_rotary_factor). */
  readonly rotaryDim: number;
  /** The config field that set rotaryDim (for messages), e.g. "partial_rotary_factor" or "rotary_pct". */
  readonly rotaryField: string;
  /** The factor cos and sin are multiplied by (yarn, longrope; 1 otherwise). */
  readonly attentionScaling: number;
  /** cos/sin [seq, rotaryDim] for positions 0..seq-1, HF layout (half-table repeated twice). Cached; do not modify. */
  tables(seq: number): RopeTables;
}

export interface RopeOptions {
  /** The family's head dimension. */
  headDim: number;
  /** rope_theta when config.json has none (the config class default). */
  defaultTheta: number;
  /** max_position_embeddings as the adapter read it (with its class default). */
  maxPositions: number;
  /**
   * A rotary fraction the family reads itself (GPT-NeoX's rotary_pct), with its field name for messages;
   * it wins over partial_rotary_factor.
   */
  partialRotary?: { value: number; field: string };
  /** partial_rotary_factor when config.json gives none (GPT-NeoX's class default 0.25); 1 otherwise. */
  defaultPartialRotary?: number;
  /** Which entry of a per-layer-type rope_parameters to read (Gemma 3 in transformers 5). */
  layerType?: string;
  /**
   * Read these RoPE fields instead of the config's rope_scaling / rope_parameters (Gemma 3's sliding layers in
   * transformers 4: rope_local_base_freq, never scaled). `label` names them in messages.
   */
  params?: { label: string; fields: Record<string, unknown> };
}

type Json = Record<string, unknown>;

/** The RoPE of config.json (see the file header). Every problem is a one-line error naming the file and field. */
export function readRope(c: ConfigReader, o: RopeOptions): Rope {
  const { label, fields, legacy } = o.params ? { ...o.params, legacy: true } : ropeFields(c, o.layerType);
  const p = new ConfigReader(fields, c.path);
  const err = (field: string, problem: string) => c.error(`${label}.${field}`, problem);
  const num = (field: string, ok: (v: number) => boolean, what: string): number | undefined => {
    const v = fields[field];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) throw err(field, `must be ${what}, got ${preview(v)}`);
    return v;
  };
  const positive = (field: string) => num(field, (v) => v > 0, 'a positive number');
  const required = (field: string, v: number | undefined) => {
    if (v === undefined) throw c.error(label, `(rope_type "${type}") needs ${field}`);
    return v;
  };

  const typeField = p.has('rope_type') ? 'rope_type' : p.has('type') ? 'type' : undefined;
  const rawType = typeField ? fields[typeField] : 'default';
  if (!(ROPE_TYPES as readonly unknown[]).includes(rawType)) {
    throw c.error(label, `${typeField ?? 'rope_type'} ${preview(rawType)} is not supported (supported: ${ROPE_TYPES.join(', ')})`);
  }
  const type = rawType as RopeType;

  const theta = positive('rope_theta') ?? c.positive('rope_theta', o.defaultTheta);
  const { dim: rotaryDim, field: rotaryField } = readRotaryDim(c, o, fields, label);
  const at: RopeFacts = { type, theta, rotaryDim, rotaryField };
  const half = rotaryDim / 2;
  const maxPos = o.maxPositions;
  const f = Math.fround;
  const defaultInv = (base: number) => Float32Array.from({ length: half }, (_, i) => f(1 / f(Math.pow(base, f((2 * i) / rotaryDim)))));
  // HF's original_max_position_embeddings for llama3 / yarn / longrope (see the header for the two styles).
  const topOriginal = c.has('original_max_position_embeddings') ? c.int('original_max_position_embeddings') : undefined;
  const ownOriginal = num('original_max_position_embeddings', (v) => Number.isInteger(v) && v > 0, 'a positive integer');

  switch (type) {
    case 'default':
      return fixed(at, () => defaultInv(theta), 1);
    case 'linear': {
      const factor = required('factor', num('factor', (v) => v >= 1, 'a number ≥ 1'));
      return fixed(at, () => defaultInv(theta).map((v) => f(v / f(factor))), 1);
    }
    case 'dynamic': {
      const factor = required('factor', num('factor', (v) => v >= 1, 'a number ≥ 1'));
      const short = once(() => defaultInv(theta));
      const d = rotaryDim;
      // The base grows only for windows past max_position_embeddings, in float32 tensor arithmetic.
      const invFor = (seq: number) => (seq <= maxPos ? short() : defaultInv(f(theta * f(Math.pow(f(f(f(f(factor) * seq) / maxPos) - f(factor - 1)), d / (d - 2))))));
      return new CachedRope(at, 1, invFor);
    }
    case 'llama3': {
      const factor = required('factor', positive('factor'));
      const low = required('low_freq_factor', positive('low_freq_factor'));
      const high = required('high_freq_factor', positive('high_freq_factor'));
      const old = required('original_max_position_embeddings', legacy ? ownOriginal : (topOriginal ?? ownOriginal ?? maxPos));
      if (!(high > low)) throw err('high_freq_factor', `(${high}) must be greater than low_freq_factor (${low})`);
      return fixed(at, () => llama3Inv(defaultInv(theta), factor, low, high, old), 1);
    }
    case 'yarn': {
      let factor = num('factor', (v) => v > 0, 'a positive number');
      let original: number;
      if (legacy) {
        if (ownOriginal !== undefined) factor = maxPos / ownOriginal;
        original = ownOriginal ?? maxPos;
      } else {
        original = topOriginal ?? ownOriginal ?? maxPos;
        factor ??= maxPos / original;
      }
      factor = required('factor', factor);
      const mscale = num('mscale', () => true, 'a number');
      const mscaleAll = num('mscale_all_dim', () => true, 'a number');
      const mscaleOf = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
      const attention = positive('attention_factor') ?? (mscale && mscaleAll ? mscaleOf(factor, mscale) / mscaleOf(factor, mscaleAll) : mscaleOf(factor));
      const betaFast = num('beta_fast', () => true, 'a number') || 32;
      const betaSlow = num('beta_slow', () => true, 'a number') || 1;
      const truncate = p.bool('truncate', true);
      return fixed(at, () => yarnInv(theta, rotaryDim, factor, betaFast, betaSlow, original, truncate), attention);
    }
    case 'longrope': {
      let factor = num('factor', (v) => v > 0, 'a positive number');
      let original: number;
      if (legacy) {
        original = topOriginal ?? maxPos;
        if (topOriginal !== undefined) factor = maxPos / topOriginal;
      } else {
        original = topOriginal ?? ownOriginal ?? maxPos;
        factor ??= maxPos / original;
      }
      const given = positive('attention_factor');
      if (given === undefined && factor === undefined) throw c.error(label, '(rope_type "longrope") needs factor or attention_factor when there is no original_max_position_embeddings');
      const attention = given ?? (factor! <= 1 ? 1 : Math.sqrt(1 + Math.log(factor!) / Math.log(original)));
      const inv = (field: 'short_factor' | 'long_factor') => {
        const list = fields[field];
        if (!Array.isArray(list) || list.length !== half || list.some((x) => typeof x !== 'number' || !Number.isFinite(x) || x <= 0)) {
          throw err(field, `must be a list of ${half} positive numbers (rotary dims / 2), got ${preview(list)}`);
        }
        return Float32Array.from({ length: half }, (_, i) => f(1 / f(f(list[i] as number) * f(Math.pow(theta, f((2 * i) / rotaryDim))))));
      };
      const short = inv('short_factor');
      const long = inv('long_factor');
      return new CachedRope(at, attention, (seq) => (seq > original ? long : short));
    }
  }
}

/**
 * For families whose apply_rotary_pos_emb rotates the whole head (Llama, Gemma, the MoE models): a partial
 * rotary factor would not run in HF, so it is refused rather than guessed.
 */
export function requireWholeHead(c: ConfigReader, rope: Rope, headDim: number, modelType: string): void {
  if (rope.rotaryDim !== headDim) throw c.error(rope.rotaryField, `gives ${rope.rotaryDim} rotary dims of ${headDim}; ${modelType} rotates the whole head`);
}

/**
 * Where the RoPE fields are: rope_parameters (transformers 5; one entry of it for a per-layer-type object),
 * else rope_scaling (transformers 4, `legacy`), else nothing (an unscaled rope from the top-level fields).
 */
function ropeFields(c: ConfigReader, layerType: string | undefined): { label: string; fields: Json; legacy: boolean } {
  const params = c.config.rope_parameters;
  if (params !== undefined && params !== null) {
    if (!isObject(params)) throw c.error('rope_parameters', `must be an object, got ${preview(params)}`);
    const keys = Object.keys(params);
    if (keys.length > 0 && keys.every((k) => LAYER_TYPES.includes(k))) {
      if (layerType === undefined) throw c.error('rope_parameters', `has one entry per layer type (${keys.join(', ')}); this model type has one RoPE`);
      const entry = params[layerType];
      if (entry === undefined || entry === null) return { label: `rope_parameters.${layerType}`, fields: {}, legacy: false };
      if (!isObject(entry)) throw c.error(`rope_parameters.${layerType}`, `must be an object, got ${preview(entry)}`);
      return { label: `rope_parameters.${layerType}`, fields: entry, legacy: false };
    }
    return { label: 'rope_parameters', fields: params, legacy: false };
  }
  const scaling = c.config.rope_scaling;
  if (scaling !== undefined && scaling !== null) {
    if (!isObject(scaling)) throw c.error('rope_scaling', `must be an object, got ${preview(scaling)}`);
    return { label: 'rope_scaling', fields: scaling, legacy: true };
  }
  return { label: 'rope_scaling', fields: {}, legacy: true };
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** int(head_dim · partial_rotary_factor): the family's own fraction, else the top level, else the rope fields. */
function readRotaryDim(c: ConfigReader, o: RopeOptions, fields: Json, label: string): { dim: number; field: string } {
  let factor = o.defaultPartialRotary ?? 1;
  let field = 'partial_rotary_factor';
  if (o.partialRotary) ({ value: factor, field } = o.partialRotary);
  else if (c.has('partial_rotary_factor')) factor = c.fraction('partial_rotary_factor', 1);
  else if (fields.partial_rotary_factor !== undefined && fields.partial_rotary_factor !== null) {
    field = `${label}.partial_rotary_factor`;
    factor = new ConfigReader({ [field]: fields.partial_rotary_factor }, c.path).fraction(field, 1);
  }
  // HF truncates the float product: dim = int(head_dim * partial_rotary_factor).
  const dim = Math.floor(o.headDim * factor);
  if (dim < 2 || dim % 2 !== 0) throw c.error(field, `(${factor}) gives ${dim} rotary dims of the head's ${o.headDim}; an even number ≥ 2 is required`);
  return { dim, field };
}

/** Llama 3.1's frequency-dependent scaling, step by step in float32 as HF's tensors compute it. */
function llama3Inv(inv: Float32Array, factor: number, low: number, high: number, old: number): Float32Array {
  const f = Math.fround;
  const lowWavelen = old / low;
  const highWavelen = old / high;
  return inv.map((v) => {
    const wavelen = f(f(1 / v) * f(2 * Math.PI)); // python scalar / tensor = reciprocal · scalar
    const scaled = wavelen > lowWavelen ? f(v / f(factor)) : v;
    if (wavelen < highWavelen || wavelen > lowWavelen) return scaled;
    const smooth = f(f(f(f(1 / wavelen) * f(old)) - f(low)) / f(high - low));
    return f(f(f(f(1 - smooth) * scaled) / f(factor)) + f(smooth * scaled));
  });
}

/** YaRN's blend of interpolated (inv / factor) and extrapolated (inv) frequencies over a linear ramp of dims. */
function yarnInv(theta: number, dim: number, factor: number, betaFast: number, betaSlow: number, original: number, truncate: boolean): Float32Array {
  const f = Math.fround;
  const correctionDim = (rotations: number) => (dim * Math.log(original / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = correctionDim(betaFast);
  let high = correctionDim(betaSlow);
  if (truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001; // HF: prevent a zero-width ramp
  return Float32Array.from({ length: dim / 2 }, (_, i) => {
    const pos = f(Math.pow(theta, f((2 * i) / dim)));
    const extrapolation = f(1 / pos);
    const interpolation = f(1 / f(f(factor) * pos));
    const ramp = Math.min(1, Math.max(0, f(f(i - f(low)) / f(high - low))));
    const keep = f(1 - ramp); // the extrapolation share
    return f(f(interpolation * f(1 - keep)) + f(extrapolation * keep));
  });
}

/**
 * A rope whose frequencies do not depend on the window. They are computed at the first `tables` call, not when
 * config.json is read: a config whose head_dim is absurd is refused by the weight-shape check first.
 */
function fixed(at: RopeFacts, inv: () => Float32Array, attention: number): Rope {
  return new CachedRope(at, attention, once(inv));
}

function once<T>(make: () => T): () => T {
  let v: T | undefined;
  return () => (v ??= make());
}

type RopeFacts = Pick<Rope, 'type' | 'theta' | 'rotaryDim' | 'rotaryField'>;

class CachedRope implements Rope {
  private readonly cache = new Map<number, RopeTables>();
  readonly type: RopeType;
  readonly theta: number;
  readonly rotaryDim: number;
  readonly rotaryField: string;
  constructor(
    at: RopeFacts,
    readonly attentionScaling: number,
    /** The inverse frequencies [rotaryDim/2] for a window of seq tokens. */
    private readonly invFor: (seq: number) => Float32Array,
  ) {
    ({ type: this.type, theta: this.theta, rotaryDim: this.rotaryDim, rotaryField: this.rotaryField } = at);
  }

  tables(seq: number): RopeTables {
    let t = this.cache.get(seq);
    if (!t) {
      t = ropeTablesFrom(this.invFor(seq), seq, this.attentionScaling);
      this.cache.set(seq, t);
    }
    return t;
  }
}

/**
 * cos/sin [seq, 2·inv.length] of the float32 angles p·inv[i] (HF's float32 matmul of positions and inverse
 * frequencies), the half-table repeated twice; times `scale` in float32 when it is not 1.
 */
function ropeTablesFrom(inv: Float32Array, seq: number, scale = 1): RopeTables {
  const f = Math.fround;
  const half = inv.length;
  const R = 2 * half;
  const s32 = f(scale);
  const cos = new Float32Array(seq * R);
  const sin = new Float32Array(seq * R);
  for (let p = 0; p < seq; p++) {
    for (let i = 0; i < half; i++) {
      const angle = f(p * inv[i]);
      const c = scale === 1 ? Math.cos(angle) : f(f(Math.cos(angle)) * s32);
      const s = scale === 1 ? Math.sin(angle) : f(f(Math.sin(angle)) * s32);
      cos[p * R + i] = cos[p * R + half + i] = c;
      sin[p * R + i] = sin[p * R + half + i] = s;
    }
  }
  return { cos, sin };
}
