/**
 * RoPE variants (src/arch/rope.ts) on tiny random Llama checkpoints whose config.json carries HF's fields in both
 * styles (transformers 4 `rope_scaling` + top-level rope_theta; transformers 5 `rope_parameters`): every block and
 * the logits against the float64 forward of llama-reference.ts, whose rotary step uses inverse frequencies and
 * attention factors written here from HF's modeling_rope_utils.py in float64. Windows of 8 and 16 tokens, so the
 * length-dependent types (dynamic, longrope) are seen on both sides of their threshold. Also: one BF16 checkpoint
 * read from disk, partial rotary factors, and the refusals.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { architectureFor } from '../../src/arch/registry.js';
import { createLlama } from '../../src/arch/llama.js';
import { ConfigReader } from '../../src/arch/config.js';
import { readRope } from '../../src/arch/rope.js';
import { ShearsError } from '../../src/errors.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { writeFolder } from './gemma-reference.js';
import { expectMatchesReference, llamaCheckpoint, type LlamaCase } from './llama-reference.js';
import { moeCheckpoint, refBlock as moeRefBlock, refEmbed as moeRefEmbed, refLogits as moeRefLogits, shapeOf, type MoeType } from './moe-reference.js';
import { MemoryCheckpoint, randomIds, relErr, rng, ropeInv, type F64 } from './reference.js';
import { defaultInv, dynamicInv, llama3Inv, longropeInv, yarn } from './rope-reference.js';

const TOL = 1e-5;
const D = 8; // head_dim = 32 / 4
const THETA = 100; // small, so that with D = 8 the frequencies span the llama3 / yarn bands

// ---------- cases ----------

const base = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 50,
  rms_norm_eps: 1e-5,
  hidden_act: 'silu',
  attention_bias: false,
  mlp_bias: false,
  tie_word_embeddings: false,
};
const v4 = { ...base, torch_dtype: 'float32', rope_theta: THETA, transformers_version: '4.45.0' };
const v5 = { ...base, dtype: 'float32', transformers_version: '5.0.0' };
const SHORT = [1, 1.5, 2, 3];
const LONG = [1.2, 4, 9, 20];

interface RopeCase {
  title: string;
  config: Record<string, unknown>;
  /** HF's inverse frequencies and attention factor for a window of seq tokens. */
  ref: (seq: number) => { inv: number[]; scale: number };
}

const llama3 = { factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
const CASES: RopeCase[] = [
  {
    title: 'llama3, transformers 4 (rope_scaling with rope_type)',
    config: { ...v4, max_position_embeddings: 512, rope_scaling: { ...llama3, rope_type: 'llama3' } },
    ref: () => ({ inv: llama3Inv(THETA, D, 8, 1, 4, 64), scale: 1 }),
  },
  {
    title: 'llama3, transformers 5 (rope_parameters)',
    config: { ...v5, max_position_embeddings: 512, rope_parameters: { ...llama3, rope_type: 'llama3', rope_theta: THETA } },
    ref: () => ({ inv: llama3Inv(THETA, D, 8, 1, 4, 64), scale: 1 }),
  },
  {
    title: 'linear, transformers 4 (the older "type" key)',
    config: { ...v4, max_position_embeddings: 64, rope_scaling: { type: 'linear', factor: 4 } },
    ref: () => ({ inv: defaultInv(THETA, D).map((v) => v / 4), scale: 1 }),
  },
  {
    title: 'linear, transformers 5',
    config: { ...v5, max_position_embeddings: 64, rope_parameters: { rope_type: 'linear', factor: 2.5, rope_theta: THETA } },
    ref: () => ({ inv: defaultInv(THETA, D).map((v) => v / 2.5), scale: 1 }),
  },
  {
    title: 'dynamic NTK, transformers 4: default at 8 tokens (= max_position_embeddings), a larger base at 16',
    config: { ...v4, max_position_embeddings: 8, rope_scaling: { rope_type: 'dynamic', factor: 3 } },
    ref: (seq) => ({ inv: dynamicInv(THETA, D, 3, seq, 8), scale: 1 }),
  },
  {
    title: 'dynamic NTK, transformers 5',
    config: { ...v5, max_position_embeddings: 12, rope_parameters: { rope_type: 'dynamic', factor: 2, rope_theta: THETA } },
    ref: (seq) => ({ inv: dynamicInv(THETA, D, 2, seq, 12), scale: 1 }),
  },
  {
    title: 'yarn, transformers 4 (Qwen-style: factor 4 = max / original)',
    config: { ...v4, max_position_embeddings: 256, rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 64 } },
    ref: () => {
      const y = yarn(THETA, D, 4, 64);
      return { inv: y.inv, scale: y.attention };
    },
  },
  {
    title: 'yarn, transformers 4: factor replaced by max_position_embeddings / original_max_position_embeddings',
    config: { ...v4, max_position_embeddings: 128, rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 64, beta_fast: 16, beta_slow: 2 } },
    ref: () => {
      const y = yarn(THETA, D, 2, 64, { betaFast: 16, betaSlow: 2 });
      return { inv: y.inv, scale: y.attention };
    },
  },
  {
    title: 'yarn, transformers 5: explicit factor kept, truncate false, mscale / mscale_all_dim',
    config: { ...v5, max_position_embeddings: 128, rope_parameters: { rope_type: 'yarn', rope_theta: THETA, factor: 4, original_max_position_embeddings: 64, truncate: false, mscale: 1, mscale_all_dim: 0.5 } },
    ref: () => {
      const y = yarn(THETA, D, 4, 64, { truncate: false, mscale: 1, mscaleAll: 0.5 });
      return { inv: y.inv, scale: y.attention };
    },
  },
  {
    title: 'yarn, transformers 5: attention_factor given, no original (= max_position_embeddings)',
    config: { ...v5, max_position_embeddings: 32, rope_parameters: { rope_type: 'yarn', rope_theta: THETA, factor: 3, attention_factor: 1.25 } },
    ref: () => {
      const y = yarn(THETA, D, 3, 32, { attention: 1.25 });
      return { inv: y.inv, scale: y.attention };
    },
  },
  {
    title: 'longrope, transformers 4 (Phi-3 style): short factors at 8 tokens, long at 16 > original 8',
    config: { ...v4, max_position_embeddings: 32, original_max_position_embeddings: 8, rope_scaling: { type: 'longrope', short_factor: SHORT, long_factor: LONG } },
    ref: (seq) => ({ inv: longropeInv(THETA, D, seq > 8 ? LONG : SHORT), scale: Math.sqrt(1 + Math.log(32 / 8) / Math.log(8)) }),
  },
  {
    title: 'longrope, transformers 5: original in rope_parameters, attention factor from max / original',
    config: { ...v5, max_position_embeddings: 40, rope_parameters: { rope_type: 'longrope', rope_theta: THETA, short_factor: SHORT, long_factor: LONG, original_max_position_embeddings: 10 } },
    ref: (seq) => ({ inv: longropeInv(THETA, D, seq > 10 ? LONG : SHORT), scale: Math.sqrt(1 + Math.log(40 / 10) / Math.log(10)) }),
  },
];

const llamaCase = (config: Record<string, unknown>): LlamaCase => ({ title: '', config, qkvBias: false, oBias: false, mlpBias: false, qkNorm: false });

function rotateWith(ref: RopeCase['ref']) {
  return (x: Float64Array, T: number, heads: number, d: number, seq: number) => {
    const r = ref(seq);
    ropeInv(x, T, heads, d, seq, r.inv, r.scale);
  };
}

describe.each(CASES)('$title', (c) => {
  it.each([8, 16])('blocks and logits match the float64 reference on windows of %i tokens', async (seq) => {
    const lc = llamaCase(c.config);
    const ck = llamaCheckpoint(lc, 7);
    const refLogits = await expectMatchesReference(lc, createLlama(c.config, 'config.json'), ck, seq, rotateWith(c.ref), TOL);
    // Where the variant differs from plain RoPE (same theta), it does so far beyond the tolerance; where HF's
    // formula reduces to plain RoPE (dynamic within max_position_embeddings), so does shears.
    const plain = await expectMatchesReference(lc, createLlama({ ...v4, max_position_embeddings: 512 }, 'config.json'), ck, seq, rotateWith(() => ({ inv: defaultInv(THETA, D), scale: 1 })), TOL);
    const r = c.ref(seq);
    const isPlain = r.scale === 1 && r.inv.every((v, i) => Math.abs(v - defaultInv(THETA, D)[i]) < 1e-12 * v);
    if (isPlain) expect(relErr(plain, refLogits)).toBeLessThanOrEqual(TOL);
    else expect(relErr(plain, refLogits)).toBeGreaterThan(100 * TOL);
  });
});

/** The MoE families read RoPE through rope.ts too: HF-style configs with scaled RoPE, blocks and logits. */
const MOE_ATTN = { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 50, hidden_act: 'silu' };
const MOE_CASES: { title: string; type: MoeType; config: Record<string, unknown>; ref: RopeCase['ref'] }[] = [
  {
    title: 'qwen3_moe, transformers 4 yarn (Qwen3-30B-A3B style)',
    type: 'qwen3_moe',
    config: { ...MOE_ATTN, model_type: 'qwen3_moe', head_dim: D, intermediate_size: 40, moe_intermediate_size: 12, num_experts: 4, num_experts_per_tok: 2, norm_topk_prob: true, rms_norm_eps: 1e-6, max_position_embeddings: 128, rope_theta: THETA, rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32 }, torch_dtype: 'bfloat16' },
    ref: () => {
      const y = yarn(THETA, D, 4, 32);
      return { inv: y.inv, scale: y.attention };
    },
  },
  {
    title: 'mixtral, transformers 5 dynamic NTK past max_position_embeddings',
    type: 'mixtral',
    config: { ...MOE_ATTN, model_type: 'mixtral', intermediate_size: 24, num_local_experts: 4, num_experts_per_tok: 2, rms_norm_eps: 1e-5, max_position_embeddings: 12, rope_parameters: { rope_type: 'dynamic', factor: 2, rope_theta: THETA }, dtype: 'float32' },
    ref: (seq) => ({ inv: dynamicInv(THETA, D, 2, seq, 12), scale: 1 }),
  },
  {
    title: 'qwen2_moe, transformers 4 linear',
    type: 'qwen2_moe',
    config: { ...MOE_ATTN, model_type: 'qwen2_moe', intermediate_size: 40, moe_intermediate_size: 12, shared_expert_intermediate_size: 20, num_experts: 4, num_experts_per_tok: 2, rms_norm_eps: 1e-6, max_position_embeddings: 64, rope_theta: THETA, rope_scaling: { type: 'linear', factor: 3 }, torch_dtype: 'float32' },
    ref: () => ({ inv: defaultInv(THETA, D).map((v) => v / 3), scale: 1 }),
  },
];

describe.each(MOE_CASES)('$title', (c) => {
  it('blocks and logits match the float64 MoE reference on windows of 16 tokens', async () => {
    const s = { ...shapeOf(c.type, c.config, false), rotary: rotateWith(c.ref) };
    const ck = moeCheckpoint(s, 9);
    const w = (n: string) => ck.get(n);
    const arch = architectureFor(c.config, 'config.json', ck);
    const seq = 16;
    const ids = randomIds(rng(21), 2 * seq, s.vocab);
    let x = await arch.embed(ck.pick(arch.embedTensors()), ids, seq);
    let ref: F64 = moeRefEmbed(s, w, ids);
    for (let i = 0; i < s.layers; i++) {
      const r = await arch.runBlock(i, ck.pick(arch.blockTensors(i)), x, seq, false);
      const e = moeRefBlock(s, w, i, ref, seq);
      expect(relErr(r.out, e.out), `block ${i}`).toBeLessThanOrEqual(TOL);
      x = r.out;
      ref = e.out;
    }
    expect(relErr(await arch.logits(ck.pick(arch.headTensors()), x, seq), moeRefLogits(s, w, ref))).toBeLessThanOrEqual(TOL);
  });
});

describe('a BF16 Llama 3 checkpoint read from disk', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shears-rope-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('blocks and logits match the reference on the stored bfloat16 weights', async () => {
    const config = { ...v4, torch_dtype: 'bfloat16', max_position_embeddings: 512, rope_scaling: { ...llama3, rope_type: 'llama3' } };
    const lc = llamaCase(config);
    writeFolder(dir, llamaCheckpoint(lc, 3), config, 'BF16');
    const file = Checkpoint.openFolder(dir);
    const ck = new MemoryCheckpoint(rng(0));
    try {
      for (const n of file.tensorNames()) {
        expect(file.info(n).dtype).toBe('BF16');
        ck.tensors.set(n, file.readFloat32(n));
      }
    } finally {
      file.close();
    }
    const arch = architectureFor(config, join(dir, 'config.json'));
    expect(arch.spec.dtype).toBe('bfloat16');
    await expectMatchesReference(lc, arch, ck, 16, rotateWith(() => ({ inv: llama3Inv(THETA, D, 8, 1, 4, 64), scale: 1 })), TOL);
  });
});

describe('partial rotary factors', () => {
  it('default tables: cos/sin of p·theta^(-2i/R), halves repeated, within float32 angle rounding', () => {
    const S = 64, R = 16, theta = 10000;
    const { cos, sin } = readRope(new ConfigReader({ rope_theta: theta }, 'config.json'), { headDim: R, defaultTheta: 1, maxPositions: S }).tables(S);
    let err = 0;
    for (let p = 0; p < S; p++)
      for (let i = 0; i < R / 2; i++) {
        const a = p * Math.pow(theta, (-2 * i) / R);
        expect(cos[p * R + i]).toBe(cos[p * R + R / 2 + i]);
        expect(sin[p * R + i]).toBe(sin[p * R + R / 2 + i]);
        err = Math.max(err, Math.abs(cos[p * R + i] - Math.cos(a)), Math.abs(sin[p * R + i] - Math.sin(a)));
      }
    // Angles up to 63 rad carry float32 rounding of ~63·2^-24 ≈ 4e-6 (HF computes them in float32 too).
    expect(err).toBeLessThanOrEqual(1e-5);
    expect(err).toBeGreaterThan(0);
  });

  const c = (config: Record<string, unknown>) => new ConfigReader(config, 'config.json');
  it.each([
    ['top level (transformers 4), yarn', { partial_rotary_factor: 0.5, rope_scaling: { rope_type: 'yarn', factor: 2 } }, 8],
    ['inside rope_parameters (transformers 5), linear', { rope_parameters: { rope_type: 'linear', factor: 2, rope_theta: THETA, partial_rotary_factor: 0.25 } }, 4],
    ['int(head_dim · factor) truncates, longrope', { partial_rotary_factor: 0.4, original_max_position_embeddings: 4, rope_scaling: { type: 'longrope', short_factor: [1, 2, 3], long_factor: [2, 3, 4] } }, 6],
  ])('%s: tables [S, int(16 · factor)] of the variant over the rotated dims', (_, fields, rotaryDim) => {
    const config = { rope_theta: THETA, max_position_embeddings: 32, ...fields };
    const rope = readRope(c(config), { headDim: 16, defaultTheta: 10000, maxPositions: 32 });
    expect(rope.rotaryDim).toBe(rotaryDim);
    const seq = 12;
    const t = rope.tables(seq);
    expect(t.cos.length).toBe(seq * rotaryDim);
    const type = (fields as { rope_scaling?: { rope_type?: string; type?: string }; rope_parameters?: { rope_type: string } }).rope_scaling ?? (fields as { rope_parameters: { rope_type: string } }).rope_parameters;
    const kind = (type as { rope_type?: string; type?: string }).rope_type ?? (type as { type?: string }).type;
    const r =
      kind === 'yarn'
        ? (({ inv, attention }) => ({ inv, scale: attention }))(yarn(THETA, rotaryDim, 2, 32))
        : kind === 'linear'
          ? { inv: defaultInv(THETA, rotaryDim).map((v) => v / 2), scale: 1 }
          : { inv: longropeInv(THETA, rotaryDim, [2, 3, 4]), scale: Math.sqrt(1 + Math.log(32 / 4) / Math.log(4)) };
    const half = rotaryDim / 2;
    const cos = new Float64Array(seq * rotaryDim);
    const sin = new Float64Array(seq * rotaryDim);
    for (let p = 0; p < seq; p++) {
      for (let i = 0; i < rotaryDim; i++) {
        cos[p * rotaryDim + i] = Math.cos(p * r.inv[i % half]) * r.scale;
        sin[p * rotaryDim + i] = Math.sin(p * r.inv[i % half]) * r.scale;
      }
    }
    expect(relErr(t.cos, cos)).toBeLessThanOrEqual(TOL);
    expect(relErr(t.sin, sin)).toBeLessThanOrEqual(TOL);
  });

  it('a Llama with a partial rotary factor is refused (HF rotates the whole head there)', () => {
    expect(() => createLlama({ ...v4, max_position_embeddings: 64, partial_rotary_factor: 0.5 }, 'm/config.json')).toThrow(
      'm/config.json: partial_rotary_factor gives 4 rotary dims of 8; llama rotates the whole head',
    );
  });
});

describe('refusals name config.json and the field', () => {
  const fail = (config: Record<string, unknown>): string => {
    try {
      architectureFor(config, 'models/x/config.json');
    } catch (e) {
      expect(e).toBeInstanceOf(ShearsError);
      return (e as Error).message;
    }
    throw new Error('expected a ShearsError');
  };
  it.each([
    [{ ...v4, rope_scaling: { type: 'su', short_factor: SHORT, long_factor: LONG } }, 'models/x/config.json: rope_scaling type "su" is not supported (supported: default, linear, dynamic, llama3, yarn, longrope)'],
    [{ ...v5, rope_parameters: { rope_type: 'mrope', rope_theta: 1e4 } }, 'models/x/config.json: rope_parameters rope_type "mrope" is not supported (supported: default, linear, dynamic, llama3, yarn, longrope)'],
    [{ ...v4, rope_scaling: { rope_type: 'linear' } }, 'models/x/config.json: rope_scaling (rope_type "linear") needs factor'],
    [{ ...v4, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 } }, 'models/x/config.json: rope_scaling (rope_type "llama3") needs original_max_position_embeddings'],
    [{ ...v4, rope_scaling: { rope_type: 'dynamic', factor: 0.5 } }, 'models/x/config.json: rope_scaling.factor must be a number ≥ 1, got 0.5'],
    [{ ...v4, original_max_position_embeddings: 8, rope_scaling: { type: 'longrope', short_factor: [1, 2], long_factor: LONG } }, 'models/x/config.json: rope_scaling.short_factor must be a list of 4 positive numbers (rotary dims / 2), got [1,2]'],
    [{ ...v4, rope_scaling: 'yarn' }, 'models/x/config.json: rope_scaling must be an object, got "yarn"'],
    [
      { model_type: 'gemma3_text', head_dim: 16, rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 1e6 }, sliding_attention: { rope_type: 'default', rope_theta: 1e4, partial_rotary_factor: 0.5 } } },
      'models/x/config.json: rope_parameters.sliding_attention.partial_rotary_factor gives 8 rotary dims of 16; gemma3_text rotates the whole head',
    ],
    [{ ...v4, model_type: 'qwen3_moe', num_experts: 4, num_experts_per_tok: 2, head_dim: 16, partial_rotary_factor: 0.5 }, 'models/x/config.json: partial_rotary_factor gives 8 rotary dims of 16; qwen3_moe rotates the whole head'],
  ])('%#', (config, message) => {
    expect(fail(config)).toBe(message);
  });

  it('shears prune stops with that one line (exit 1, a bad file) and writes nothing for an unknown rope type', async () => {
    const { runShears } = await import('../helpers/cli.js');
    const dir = mkdtempSync(join(tmpdir(), 'shears-rope-bad-'));
    try {
      const config = { ...v4, max_position_embeddings: 64, rope_scaling: { rope_type: 'ntk-by-parts', factor: 2 } };
      writeFolder(dir, llamaCheckpoint(llamaCase(config), 1), config, 'F32');
      const r = await runShears(dir, 'prune', '.', '--method', 'magnitude', '--sparsity', '0.5', '--out', 'out');
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(existsSync(join(dir, 'out'))).toBe(false);
      expect(r.stderr).toContain('config.json: rope_scaling rope_type "ntk-by-parts" is not supported');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
