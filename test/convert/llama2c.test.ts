/**
 * The llama2.c → HF converter on synthetic checkpoints written here (GQA, shared and separate classifier)
 * with the real stories260K tokenizer, and the bundled models/stories260K folder.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { convertLlama2c } from '../../src/convert/llama2c.js';
import { ShearsError } from '../../src/errors.js';
import { SafetensorsReader } from '../../src/io/safetensors/reader.js';

const TOK = 'test/tokenize/tok512.bin';
const work = mkdtempSync(join(tmpdir(), 'shears-l2c-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Dims {
  dim: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  seq: number;
  shared: boolean;
  theta?: number;
}

/** A llama2.c legacy file with deterministic pseudo-random weights; returns the bytes and each array by name. */
function makeCheckpoint(d: Dims): { bytes: Buffer; arrays: Record<string, Float32Array> } {
  const hd = d.dim / d.heads;
  const kv = hd * d.kvHeads;
  let seed = 7;
  const rnd = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
  const fill = (n: number) => Float32Array.from({ length: n }, rnd);
  const theta = d.theta ?? 10000;
  const re = new Float32Array(d.seq * (hd / 2));
  const im = new Float32Array(d.seq * (hd / 2));
  for (let p = 0; p < d.seq; p++) {
    for (let i = 0; i < hd / 2; i++) {
      const a = p * Math.pow(theta, (-2 * i) / hd);
      re[p * (hd / 2) + i] = Math.cos(a);
      im[p * (hd / 2) + i] = Math.sin(a);
    }
  }
  const L = d.layers;
  const arrays: Record<string, Float32Array> = {
    tok_embeddings: fill(d.vocab * d.dim),
    rms_att: fill(L * d.dim),
    wq: fill(L * d.dim * d.dim),
    wk: fill(L * kv * d.dim),
    wv: fill(L * kv * d.dim),
    wo: fill(L * d.dim * d.dim),
    rms_ffn: fill(L * d.dim),
    w1: fill(L * d.hidden * d.dim),
    w2: fill(L * d.dim * d.hidden),
    w3: fill(L * d.hidden * d.dim),
    rms_final: fill(d.dim),
    freq_cis_real: re,
    freq_cis_imag: im,
  };
  if (!d.shared) arrays.wcls = fill(d.vocab * d.dim);
  const header = Buffer.alloc(28);
  [d.dim, d.hidden, d.layers, d.heads, d.kvHeads, d.shared ? d.vocab : -d.vocab, d.seq].forEach((v, i) => header.writeInt32LE(v, i * 4));
  const bytes = Buffer.concat([header, ...Object.values(arrays).map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))]);
  return { bytes, arrays };
}

const GQA: Dims = { dim: 32, hidden: 40, layers: 2, heads: 4, kvHeads: 2, vocab: 512, seq: 16, shared: false };

function writeCheckpoint(name: string, d: Dims) {
  const made = makeCheckpoint(d);
  const path = join(work, name);
  writeFileSync(path, made.bytes);
  return { path, ...made };
}

function errorOf(f: () => unknown): ShearsError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ShearsError);
    expect((e as Error).message).not.toContain('\n');
    return e as ShearsError;
  }
  throw new Error('expected a ShearsError');
}

/** Expected HF tensor shapes from a config.json alone. */
function shapesFromConfig(cfg: Record<string, any>): Map<string, number[]> {
  const D = cfg.hidden_size;
  const hd = D / cfg.num_attention_heads;
  const kv = hd * cfg.num_key_value_heads;
  const F = cfg.intermediate_size;
  const m = new Map<string, number[]>([
    ['model.embed_tokens.weight', [cfg.vocab_size, D]],
    ['model.norm.weight', [D]],
  ]);
  for (let l = 0; l < cfg.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    m.set(`${p}input_layernorm.weight`, [D]);
    m.set(`${p}post_attention_layernorm.weight`, [D]);
    m.set(`${p}self_attn.q_proj.weight`, [D, D]);
    m.set(`${p}self_attn.k_proj.weight`, [kv, D]);
    m.set(`${p}self_attn.v_proj.weight`, [kv, D]);
    m.set(`${p}self_attn.o_proj.weight`, [D, D]);
    m.set(`${p}mlp.gate_proj.weight`, [F, D]);
    m.set(`${p}mlp.up_proj.weight`, [F, D]);
    m.set(`${p}mlp.down_proj.weight`, [D, F]);
  }
  if (!cfg.tie_word_embeddings) m.set('lm_head.weight', [cfg.vocab_size, D]);
  return m;
}

function expectShapesMatchConfig(dir: string) {
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const r = SafetensorsReader.open(join(dir, 'model.safetensors'));
  try {
    const want = shapesFromConfig(cfg);
    expect(new Set(r.tensors.keys())).toEqual(new Set(want.keys()));
    for (const [name, shape] of want) {
      expect(r.info(name).shape, name).toEqual(shape);
      expect(r.info(name).dtype).toBe('F32');
    }
    expect(r.metadata).toEqual({ format: 'pt' });
  } finally {
    r.close();
  }
}

describe('convertLlama2c', () => {
  const src = writeCheckpoint('gqa.bin', GQA);
  const out = join(work, 'gqa-hf');
  convertLlama2c(src.path, TOK, out);
  const r = SafetensorsReader.open(join(out, 'model.safetensors'));
  afterAll(() => r.close());
  const hd = GQA.dim / GQA.heads;
  const kv = hd * GQA.kvHeads;

  it('writes a LlamaForCausalLM config whose tensor shapes match the safetensors', () => {
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      hidden_size: 32,
      intermediate_size: 40,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      vocab_size: 512,
      max_position_embeddings: 16,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      hidden_act: 'silu',
      tie_word_embeddings: false,
      bos_token_id: 1,
      eos_token_id: 2,
      torch_dtype: 'float32',
    });
    expectShapesMatchConfig(out);
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'README.md']) expect(existsSync(join(out, f))).toBe(true);
  });

  it('puts llama2.c row 2i+a of each head at HF row a*head_dim/2+i (q per query head, k per key/value head)', () => {
    for (let l = 0; l < GQA.layers; l++) {
      for (const [name, hfName, heads, rows] of [
        ['wq', 'q_proj', GQA.heads, GQA.dim],
        ['wk', 'k_proj', GQA.kvHeads, kv],
      ] as const) {
        const hf = r.readFloat32(`model.layers.${l}.self_attn.${hfName}.weight`);
        const orig = src.arrays[name]!.subarray(l * rows * GQA.dim, (l + 1) * rows * GQA.dim);
        for (let h = 0; h < heads; h++) {
          for (let a = 0; a < 2; a++) {
            for (let i = 0; i < hd / 2; i++) {
              const hfRow = h * hd + a * (hd / 2) + i;
              const l2cRow = h * hd + 2 * i + a;
              expect(hf.subarray(hfRow * GQA.dim, (hfRow + 1) * GQA.dim)).toEqual(orig.subarray(l2cRow * GQA.dim, (l2cRow + 1) * GQA.dim));
            }
          }
        }
      }
    }
  });

  it('gives the same attention scores under HF rotate_half RoPE as the original under llama2.c interleaved RoPE', () => {
    // float64: q·k for positions (m, n), every query head against its key/value head.
    const x = Array.from({ length: GQA.dim }, (_, i) => Math.sin(i + 1));
    const y = Array.from({ length: GQA.dim }, (_, i) => Math.cos(3 * i + 2));
    const matvec = (w: ArrayLike<number>, v: number[], rows: number) =>
      Array.from({ length: rows }, (_, o) => v.reduce((s, vi, j) => s + w[o * GQA.dim + j]! * vi, 0));
    const angle = (p: number, i: number) => p * Math.pow(10000, (-2 * i) / hd);
    const interleaved = (v: number[], p: number) =>
      v.map((_, j) => {
        const base = j - (j % hd);
        const i = Math.floor((j % hd) / 2);
        const [c, s] = [Math.cos(angle(p, i)), Math.sin(angle(p, i))];
        const [v0, v1] = [v[base + 2 * i]!, v[base + 2 * i + 1]!];
        return j % 2 === 0 ? v0 * c - v1 * s : v0 * s + v1 * c;
      });
    const rotateHalf = (v: number[], p: number) =>
      v.map((_, j) => {
        const base = j - (j % hd);
        const i = (j % hd) % (hd / 2);
        const [c, s] = [Math.cos(angle(p, i)), Math.sin(angle(p, i))];
        const [v0, v1] = [v[base + i]!, v[base + i + hd / 2]!];
        return j % hd < hd / 2 ? v0 * c - v1 * s : v1 * c + v0 * s;
      });
    const scores = (q: number[], k: number[]) =>
      Array.from({ length: GQA.heads }, (_, h) => {
        const g = Math.floor(h / (GQA.heads / GQA.kvHeads));
        let s = 0;
        for (let i = 0; i < hd; i++) s += q[h * hd + i]! * k[g * hd + i]!;
        return s;
      });
    const wq = src.arrays.wq!.subarray(0, GQA.dim * GQA.dim);
    const wk = src.arrays.wk!.subarray(0, kv * GQA.dim);
    const hq = r.readFloat32('model.layers.0.self_attn.q_proj.weight');
    const hk = r.readFloat32('model.layers.0.self_attn.k_proj.weight');
    for (const [m, n] of [[5, 2], [15, 0], [7, 7]] as const) {
      const want = scores(interleaved(matvec(wq, x, GQA.dim), m), interleaved(matvec(wk, y, kv), n));
      const got = scores(rotateHalf(matvec(hq, x, GQA.dim), m), rotateHalf(matvec(hk, y, kv), n));
      got.forEach((g, h) => expect(Math.abs(g - want[h]!)).toBeLessThan(1e-12 * Math.max(1, Math.abs(want[h]!))));
    }
    // Without the permutation the scores differ: the check above depends on it.
    const wrong = scores(rotateHalf(matvec(wq, x, GQA.dim), 5), rotateHalf(matvec(wk, y, kv), 2));
    const right = scores(interleaved(matvec(wq, x, GQA.dim), 5), interleaved(matvec(wk, y, kv), 2));
    expect(Math.max(...wrong.map((w, h) => Math.abs(w - right[h]!)))).toBeGreaterThan(1e-3);
  });

  it('copies every other array unchanged under its HF name', () => {
    const per = (name: string, l: number, n: number) => src.arrays[name]!.subarray(l * n, (l + 1) * n);
    expect(r.readFloat32('model.embed_tokens.weight')).toEqual(src.arrays.tok_embeddings);
    expect(r.readFloat32('lm_head.weight')).toEqual(src.arrays.wcls);
    expect(r.readFloat32('model.norm.weight')).toEqual(src.arrays.rms_final);
    for (let l = 0; l < GQA.layers; l++) {
      const p = `model.layers.${l}.`;
      expect(r.readFloat32(`${p}input_layernorm.weight`)).toEqual(per('rms_att', l, GQA.dim));
      expect(r.readFloat32(`${p}post_attention_layernorm.weight`)).toEqual(per('rms_ffn', l, GQA.dim));
      expect(r.readFloat32(`${p}self_attn.v_proj.weight`)).toEqual(per('wv', l, kv * GQA.dim));
      expect(r.readFloat32(`${p}self_attn.o_proj.weight`)).toEqual(per('wo', l, GQA.dim * GQA.dim));
      expect(r.readFloat32(`${p}mlp.gate_proj.weight`)).toEqual(per('w1', l, GQA.hidden * GQA.dim));
      expect(r.readFloat32(`${p}mlp.up_proj.weight`)).toEqual(per('w3', l, GQA.hidden * GQA.dim));
      expect(r.readFloat32(`${p}mlp.down_proj.weight`)).toEqual(per('w2', l, GQA.dim * GQA.hidden));
    }
  });

  it('ties the classifier when vocab_size is positive (no lm_head.weight)', () => {
    const shared = writeCheckpoint('shared.bin', { ...GQA, shared: true, kvHeads: 4 });
    const dir = join(work, 'shared-hf');
    convertLlama2c(shared.path, TOK, dir);
    expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).tie_word_embeddings).toBe(true);
    expectShapesMatchConfig(dir);
  });

  it('rejects files whose length does not match the header, naming the file', () => {
    const cut = join(work, 'cut.bin');
    writeFileSync(cut, src.bytes.subarray(0, src.bytes.length - 4));
    expect(errorOf(() => convertLlama2c(cut, TOK, join(work, 'x1'))).message).toMatch(new RegExp(`^${cut}: is ${src.bytes.length - 4} bytes but its header .* implies ${src.bytes.length} bytes`));
    const long = join(work, 'long.bin');
    writeFileSync(long, Buffer.concat([src.bytes, Buffer.alloc(8)]));
    expect(errorOf(() => convertLlama2c(long, TOK, join(work, 'x2'))).message).toMatch(/^.*long\.bin: is \d+ bytes but/);
    // A separate classifier read as shared: the hint names the likely cause.
    const signFlip = Buffer.from(src.bytes);
    signFlip.writeInt32LE(512, 20);
    const flipped = join(work, 'flip.bin');
    writeFileSync(flipped, signFlip);
    expect(errorOf(() => convertLlama2c(flipped, TOK, join(work, 'x3'))).message).toMatch(/minus sign/);
    const tiny = join(work, 'tiny.bin');
    writeFileSync(tiny, Buffer.alloc(10));
    expect(errorOf(() => convertLlama2c(tiny, TOK, join(work, 'x4'))).message).toMatch(/tiny\.bin: is 10 bytes, too short/);
    for (const d of ['x1', 'x2', 'x3', 'x4']) expect(existsSync(join(work, d))).toBe(false);
  });

  it('rejects bad headers, newer export formats, RoPE tables of another theta and a mismatched tokenizer', () => {
    const bad = Buffer.from(src.bytes);
    bad.writeInt32LE(3, 12); // n_heads 3 does not divide dim 32
    const badPath = join(work, 'bad.bin');
    writeFileSync(badPath, bad);
    expect(errorOf(() => convertLlama2c(badPath, TOK, join(work, 'y1'))).message).toMatch(/bad\.bin: is not a llama2\.c checkpoint: header .*not divisible/);
    const v1 = Buffer.from(src.bytes);
    v1.writeUInt32LE(0x616b3432, 0);
    const v1Path = join(work, 'v1.bin');
    writeFileSync(v1Path, v1);
    expect(errorOf(() => convertLlama2c(v1Path, TOK, join(work, 'y2'))).message).toMatch(/version 1\/2 export/);
    const theta = writeCheckpoint('theta.bin', { ...GQA, theta: 500000 });
    expect(errorOf(() => convertLlama2c(theta.path, TOK, join(work, 'y3'))).message).toMatch(/theta\.bin: freq_cis tables differ from RoPE with theta 10000/);
    const small = writeCheckpoint('v500.bin', { ...GQA, vocab: 500 });
    expect(errorOf(() => convertLlama2c(small.path, TOK, join(work, 'y4'))).message).toMatch(/tok512\.bin: has 512 tokens but v500\.bin has vocab_size 500/);
    for (const d of ['y1', 'y2', 'y3', 'y4']) expect(existsSync(join(work, d))).toBe(false);
  });

  it('refuses to replace an existing folder unless asked', () => {
    const dir = join(work, 'exists');
    mkdirSync(dir);
    expect(errorOf(() => convertLlama2c(src.path, TOK, dir)).message).toMatch(/exists: already exists/);
    convertLlama2c(src.path, TOK, dir, { overwrite: true });
    expectShapesMatchConfig(dir);
  });
});

describe('models/stories260K', () => {
  it('has the published architecture and tensors that match its config', () => {
    const cfg = JSON.parse(readFileSync('models/stories260K/config.json', 'utf8'));
    expect(cfg).toMatchObject({ hidden_size: 64, intermediate_size: 172, num_hidden_layers: 5, num_attention_heads: 8, num_key_value_heads: 4, vocab_size: 512, max_position_embeddings: 512, tie_word_embeddings: true });
    expectShapesMatchConfig('models/stories260K');
  });
});
