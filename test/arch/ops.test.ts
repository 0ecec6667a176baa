/**
 * The graph building blocks on their own, against float64 formulas: every activation (the erf and tanh
 * GELU forms told apart, which the fixture tolerance cannot do), partial rotary, RMSNorm over heads,
 * and the mask fed to attention (RoPE tables: rope.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { ACTIVATIONS, activation, alibiKeyBias, alibiSlopes, attentionChunks, attentionInputs, causalAttention, causalMask, rmsNorm, rotary, setChunkScoreBytes, splitHeads, type AttentionShape } from '../../src/arch/ops.js';
import { ConfigReader } from '../../src/arch/config.js';
import { readRope } from '../../src/arch/rope.js';
import { GraphBuilder } from '../../src/engine/graph.js';
import { run, session, tensor } from '../../src/engine/session.js';
import { act, attention, erf, normal, relErr, rng } from './reference.js';

/** x on [-8, 8] with the region around -2.7 (largest erf/tanh gap) sampled densely. */
const XS = Float32Array.from([...Array.from({ length: 1601 }, (_, i) => -8 + i / 100), ...Array.from({ length: 200 }, (_, i) => -3 + i / 200)]);

async function runActivation(name: (typeof ACTIVATIONS)[number]): Promise<Float32Array> {
  const out = await session(`test-act-${name}`, () => {
    const g = new GraphBuilder('act');
    const x = g.input('x', 'float32', ['n']);
    g.output(activation(g, x, name), 'float32', ['n'], 'y');
    return g.toBytes();
  }).then((s) => run(s, { x: tensor(XS, [XS.length]) }, {}, ['y']));
  return out.y.data as Float32Array;
}

function maxAbsDiff(got: Float32Array, f: (x: number) => number): number {
  let m = 0;
  for (let i = 0; i < XS.length; i++) m = Math.max(m, Math.abs(got[i] - f(XS[i])));
  return m;
}

describe('activations', () => {
  it('the float64 erf used as reference is accurate', () => {
    // Published values (Abramowitz & Stegun table 7.1 / any erf table).
    expect(erf(0.5)).toBeCloseTo(0.5204998778130465, 15);
    expect(erf(1)).toBeCloseTo(0.8427007929497149, 15);
    expect(erf(2)).toBeCloseTo(0.9953222650189527, 15);
    expect(erf(3.5)).toBeCloseTo(0.9999992569016276, 15);
    expect(erf(-1)).toBeCloseTo(-0.8427007929497149, 15);
  });

  it.each(ACTIVATIONS)('%s matches its float64 formula to float32 rounding', async (name) => {
    const got = await runActivation(name);
    expect(maxAbsDiff(got, (x) => act(name, x))).toBeLessThanOrEqual(4e-6);
  });

  it('erf GELU and tanh GELU are told apart: each is far (> 1e-4) from the other form', async () => {
    const exact = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));
    const tanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
    const gelu = await runActivation('gelu');
    const geluNew = await runActivation('gelu_new');
    const geluTorchTanh = await runActivation('gelu_pytorch_tanh');
    expect(maxAbsDiff(gelu, exact)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(geluNew, tanh)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(geluTorchTanh, tanh)).toBeLessThanOrEqual(1e-6);
    // The largest gap between the forms is ~4.7e-4 near x = -2.7 (fixtures README).
    expect(maxAbsDiff(gelu, tanh)).toBeGreaterThan(4e-4);
    expect(maxAbsDiff(geluNew, exact)).toBeGreaterThan(4e-4);
  });
});

describe('rotary and per-head RMSNorm', () => {
  it('rotates only the first rotaryDim dims of each head (rotate_half) and passes the rest through', async () => {
    const B = 2, S = 5, Hh = 3, D = 10, R = 4, theta = 10000;
    const rand = rng(21);
    const x = normal(rand, B * S * Hh * D, 0, 1);
    const s = await session('test-rotary-partial', () => {
      const g = new GraphBuilder('rot');
      const xi = g.input('x', 'float32', ['t', Hh * D]);
      const att = attentionInputs(g, R);
      g.output(rotary(g, splitHeads(g, xi, att.seq, Hh, D), att.cos!, att.sin!, D, R), 'float32', undefined, 'y');
      return g.toBytes();
    });
    const t = readRope(new ConfigReader({ rope_theta: theta }, 'config.json'), { headDim: R, defaultTheta: theta, maxPositions: S }).tables(S);
    const out = await run(s, { x: tensor(x, [B * S, Hh * D]), mask: tensor(causalMask(S), [S, S]), cos: tensor(t.cos, [S, R]), sin: tensor(t.sin, [S, R]) }, {}, ['y']);
    expect(out.y.dims).toEqual([B, S, Hh, D]);
    const y = out.y.data as Float32Array;
    let err = 0;
    for (let b = 0; b < B; b++)
      for (let p = 0; p < S; p++)
        for (let h = 0; h < Hh; h++) {
          const o = ((b * S + p) * Hh + h) * D;
          for (let i = 0; i < R / 2; i++) {
            const a = p * Math.pow(theta, (-2 * i) / R);
            const x1 = x[o + i], x2 = x[o + R / 2 + i];
            err = Math.max(err, Math.abs(y[o + i] - (x1 * Math.cos(a) - x2 * Math.sin(a))));
            err = Math.max(err, Math.abs(y[o + R / 2 + i] - (x2 * Math.cos(a) + x1 * Math.sin(a))));
          }
          for (let i = R; i < D; i++) expect(y[o + i]).toBe(x[o + i]);
        }
    expect(err).toBeLessThanOrEqual(2e-6);
  });

  it('rmsNorm normalises the last axis of a [B, S, H, D] tensor with a [D] gain', async () => {
    const rows = 12, D = 8, eps = 1e-6;
    const rand = rng(22);
    const x = normal(rand, rows * D, 0, 3);
    const gain = normal(rand, D, 1, 0.2);
    const s = await session('test-rms-4d', () => {
      const g = new GraphBuilder('rms');
      const xi = g.input('x', 'float32', [2, 3, 2, D]);
      g.output(rmsNorm(g, xi, g.input('g', 'float32', [D]), eps), 'float32', undefined, 'y');
      return g.toBytes();
    });
    const y = (await run(s, { x: tensor(x, [2, 3, 2, D]), g: tensor(gain, [D]) }, {}, ['y'])).y.data as Float32Array;
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      for (let i = 0; i < D; i++) ss += x[r * D + i] ** 2;
      const inv = 1 / Math.sqrt(ss / D + eps);
      for (let i = 0; i < D; i++) expect(Math.abs(y[r * D + i] - x[r * D + i] * inv * gain[i])).toBeLessThanOrEqual(2e-6);
    }
  });
});

describe('attention feeds', () => {
  it('causalMask: 0 on and below the diagonal within the window, -inf elsewhere', () => {
    const m = causalMask(4);
    expect(Array.from(m)).toEqual([0, -Infinity, -Infinity, -Infinity, 0, 0, -Infinity, -Infinity, 0, 0, 0, -Infinity, 0, 0, 0, 0]);
    const w = causalMask(4, 2); // HF: key j visible to query i iff i - j < 2
    expect(Array.from(w)).toEqual([0, -Infinity, -Infinity, -Infinity, 0, 0, -Infinity, -Infinity, -Infinity, 0, 0, -Infinity, -Infinity, -Infinity, 0, 0]);
    expect(causalMask(4, 9)).toBe(causalMask(4));
  });
});

describe('causal attention in query chunks', () => {
  const B = 2, H = 4, KV = 2, D = 8;

  /** causalAttention over q [B·S, H·D], k/v [B·S, KV·D] with `chunks` query chunks; key bias fed when `alibi`. */
  async function attend(S: number, chunks: number, o: { window?: number; cap?: number; alibi?: boolean }, q: Float32Array, k: Float32Array, v: Float32Array): Promise<Float32Array> {
    const key = `test-attn-chunks-${chunks}-${o.cap ?? ''}-${o.alibi ? 'alibi' : ''}`;
    const s = await session(key, () => {
      const g = new GraphBuilder('attn');
      const att = attentionInputs(g, undefined, chunks);
      const heads = (name: string, n: number) => splitHeads(g, g.input(name, 'float32', ['t', n * D]), att.seq, n, D);
      const shape: AttentionShape = { numHeads: H, numKvHeads: KV, headDim: D, softcap: o.cap, keyBias: o.alibi ? g.input('bias', 'float32', [H, 'seq']) : undefined };
      g.output(causalAttention(g, heads('q', H), heads('k', KV), heads('v', KV), att, shape), 'float32', undefined, 'y');
      return g.toBytes();
    });
    const feeds = { q: tensor(q, [B * S, H * D]), k: tensor(k, [B * S, KV * D]), v: tensor(v, [B * S, KV * D]), mask: tensor(causalMask(S, o.window), [S, S]), ...(o.alibi ? { bias: tensor(alibiKeyBias(S, H), [H, S]) } : {}) };
    return (await run(s, feeds, {}, ['y'])).y.data as Float32Array;
  }

  // S = 13 is not a multiple of any chunk count; 16 chunks of one query leave three empty.
  it.each([
    { chunks: 3, o: {} },
    { chunks: 4, o: { window: 5 } },
    { chunks: 16, o: { cap: 2 } },
    { chunks: 5, o: { alibi: true } },
  ])('$chunks chunks, $o: matches the float64 reference and the unchunked graph', async ({ chunks, o }) => {
    const S = 13;
    const rand = rng(31 + chunks);
    const q = normal(rand, B * S * H * D, 0, 1.5);
    const k = normal(rand, B * S * KV * D, 0, 1.5);
    const v = normal(rand, B * S * KV * D, 0, 1);
    const slopes = alibiSlopes(H);
    const bias = o.alibi ? (h: number, _i: number, j: number) => slopes[h] * j : undefined;
    const ref = attention(Float64Array.from(q), Float64Array.from(k), Float64Array.from(v), B * S, S, H, KV, D, 1 / Math.sqrt(D), o.window ?? Infinity, bias, o.cap);
    const whole = await attend(S, 1, o, q, k, v);
    const chunked = await attend(S, chunks, o, q, k, v);
    expect(relErr(chunked, ref)).toBeLessThanOrEqual(1e-6);
    expect(relErr(whole, ref)).toBeLessThanOrEqual(1e-6);
    // Same sums of the same non-zero terms: at most a few float32 roundings apart.
    expect(relErr(chunked, whole)).toBeLessThanOrEqual(1e-6);
  });

  it('one chunked graph serves windows shorter than its chunk count (S = 1, 2)', async () => {
    for (const S of [1, 2]) {
      const rand = rng(40 + S);
      const q = normal(rand, B * S * H * D, 0, 1);
      const k = normal(rand, B * S * KV * D, 0, 1);
      const v = normal(rand, B * S * KV * D, 0, 1);
      const ref = attention(Float64Array.from(q), Float64Array.from(k), Float64Array.from(v), B * S, S, H, KV, D, 1 / Math.sqrt(D));
      expect(relErr(await attend(S, 16, {}, q, k, v), ref)).toBeLessThanOrEqual(1e-6);
    }
  });

  it('attentionChunks: 1 while one window\'s scores fit the budget, else the power of two that fits them', () => {
    expect(attentionChunks(12, 512)).toBe(1); // 12 MiB of scores
    expect(attentionChunks(32, 2048)).toBe(16); // 512 MiB → 32 MiB per chunk
    expect(attentionChunks(32, 1024)).toBe(4);
    const old = setChunkScoreBytes(Infinity);
    try {
      expect(attentionChunks(32, 2048)).toBe(1);
    } finally {
      setChunkScoreBytes(old);
    }
  });
});
