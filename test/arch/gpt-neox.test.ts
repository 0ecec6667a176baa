/**
 * GPT-NeoX (Pythia) adapter vs an independent float64 forward written from the HF modeling_gpt_neox.py
 * semantics: fused query_key_value whose output is laid out per head as [q_h | k_h | v_h], rotary
 * (rotate_half) on the first head_dim*rotary_pct dims only, parallel or sequential residual, exact-erf
 * GELU, final_layer_norm and an untied embed_out head.
 */
import { describe, expect, it } from 'vitest';
import { createGptNeox } from '../../src/arch/gpt-neox.js';
import type { Architecture, Weights } from '../../src/arch/types.js';
import { rng } from './reference.js';
import { defaultInv, yarn } from './rope-reference.js';

// ---------- deterministic random tensors ----------

function normal(rand: () => number, n: number, mean: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - rand();
    const v = rand();
    out[i] = mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

// ---------- float64 reference (plain loops) ----------

type F64 = Float64Array<ArrayBuffer>;

/** y[t, o] = sum_i x[t, i] W[o, i] + b[o]; W stored [out, in] as nn.Linear. */
function linear(x: F64, T: number, W: Float32Array, rows: number, cols: number, b?: Float32Array): F64 {
  const y = new Float64Array(T * rows);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < rows; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < cols; i++) s += x[t * cols + i] * W[o * cols + i];
      y[t * rows + o] = s;
    }
  }
  return y;
}

function layerNorm(x: F64, T: number, H: number, g: Float32Array, b: Float32Array, eps: number): F64 {
  const y = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    let mean = 0;
    for (let i = 0; i < H; i++) mean += x[t * H + i];
    mean /= H;
    let v = 0;
    for (let i = 0; i < H; i++) v += (x[t * H + i] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / H + eps);
    for (let i = 0; i < H; i++) y[t * H + i] = (x[t * H + i] - mean) * inv * g[i] + b[i];
  }
  return y;
}

function add(...xs: F64[]): F64 {
  return xs[0].map((_, i) => xs.reduce((s, x) => s + x[i], 0));
}

function erf(x: number): number {
  // Maclaurin series: exact to ~1e-11 for |x| < 4; beyond, erfc < 2e-8 is below every tolerance here.
  if (Math.abs(x) >= 4) return Math.sign(x);
  let term = x;
  let sum = x;
  for (let n = 1; n < 80; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

function activate(name: string, x: F64): F64 {
  switch (name) {
    case 'gelu':
      return x.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2)));
    case 'gelu_new':
      return x.map((v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))));
    default:
      throw new Error(`reference has no ${name}`);
  }
}

interface NeoxCfg {
  hidden: number;
  heads: number;
  layers: number;
  inter: number;
  vocab: number;
  rotaryPct: number;
  base: number;
  parallel: boolean;
  act: string;
  eps: number;
  /** A scaled RoPE: the config's rope_scaling and HF's inverse frequencies / attention factor for `rot` rotary dims. */
  scaling?: { config: Record<string, unknown>; inv: (rot: number) => number[]; scale: number };
}

function configJson(c: NeoxCfg): Record<string, unknown> {
  return {
    model_type: 'gpt_neox',
    architectures: ['GPTNeoXForCausalLM'],
    hidden_size: c.hidden,
    num_attention_heads: c.heads,
    num_hidden_layers: c.layers,
    intermediate_size: c.inter,
    vocab_size: c.vocab,
    max_position_embeddings: 64,
    rotary_pct: c.rotaryPct,
    rotary_emb_base: c.base,
    use_parallel_residual: c.parallel,
    hidden_act: c.act,
    layer_norm_eps: c.eps,
    tie_word_embeddings: false,
    bos_token_id: 0,
    eos_token_id: 0,
    torch_dtype: 'float16',
    ...(c.scaling ? { rope_scaling: c.scaling.config } : {}),
  };
}

/** The tensors save_pretrained writes for GPTNeoXForCausalLM (no rotary/mask buffers). */
function randomCheckpoint(c: NeoxCfg, seed: number): Weights {
  const rand = rng(seed);
  const w: Weights = new Map();
  const mat = (name: string, n: number) => w.set(name, normal(rand, n, 0, 0.02));
  const ln = (p: string, n: number) => {
    w.set(`${p}.weight`, normal(rand, n, 1, 0.2));
    mat(`${p}.bias`, n);
  };
  const lin = (p: string, rows: number, cols: number) => {
    mat(`${p}.weight`, rows * cols);
    mat(`${p}.bias`, rows);
  };
  const H = c.hidden;
  mat('gpt_neox.embed_in.weight', c.vocab * H);
  for (let i = 0; i < c.layers; i++) {
    const p = `gpt_neox.layers.${i}`;
    ln(`${p}.input_layernorm`, H);
    ln(`${p}.post_attention_layernorm`, H);
    lin(`${p}.attention.query_key_value`, 3 * H, H);
    lin(`${p}.attention.dense`, H, H);
    lin(`${p}.mlp.dense_h_to_4h`, c.inter, H);
    lin(`${p}.mlp.dense_4h_to_h`, H, c.inter);
  }
  ln('gpt_neox.final_layer_norm', H);
  mat('embed_out.weight', c.vocab * H);
  return w;
}

interface Trace {
  embed: F64;
  blocks: { attn_in: F64; o_in: F64; mlp_in: F64; down_in: F64; out: F64 }[];
  logits: F64;
}

/**
 * Per head: rotary on dims [0, rot) with rotate_half pairing (d, d + rot/2); dims [rot, hd) pass through.
 * Angles pos·inv[d] (plain RoPE: inv[d] = base^(-2d/rot)); cos and sin times `scale` (yarn's attention factor).
 */
function rotate(x: F64, T: number, seq: number, heads: number, hd: number, rot: number, inv: number[], scale: number): void {
  const half = rot / 2;
  for (let t = 0; t < T; t++) {
    const pos = t % seq;
    for (let h = 0; h < heads; h++) {
      const o = t * heads * hd + h * hd;
      for (let d = 0; d < half; d++) {
        const angle = pos * inv[d];
        const a = x[o + d];
        const b = x[o + d + half];
        x[o + d] = (a * Math.cos(angle) - b * Math.sin(angle)) * scale;
        x[o + d + half] = (b * Math.cos(angle) + a * Math.sin(angle)) * scale;
      }
    }
  }
}

function referenceForward(c: NeoxCfg, w: Weights, ids: Int32Array, seq: number): Trace {
  const T = ids.length;
  const H = c.hidden;
  const hd = H / c.heads;
  const rot = Math.floor(hd * c.rotaryPct);
  const need = (n: string) => {
    const t = w.get(n);
    if (!t) throw new Error(`missing ${n}`);
    return t;
  };

  const emb = need('gpt_neox.embed_in.weight');
  const e = new Float64Array(T * H);
  for (let t = 0; t < T; t++) for (let d = 0; d < H; d++) e[t * H + d] = emb[ids[t] * H + d];

  const trace: Trace = { embed: e, blocks: [], logits: new Float64Array(0) };
  let x = e;
  for (let i = 0; i < c.layers; i++) {
    const p = `gpt_neox.layers.${i}`;
    const ln = (v: F64, m: string) => layerNorm(v, T, H, need(`${p}.${m}.weight`), need(`${p}.${m}.bias`), c.eps);
    const lin = (v: F64, m: string, rows: number, cols: number) => linear(v, T, need(`${p}.${m}.weight`), rows, cols, need(`${p}.${m}.bias`));

    const attnIn = ln(x, 'input_layernorm');
    const qkv = lin(attnIn, 'attention.query_key_value', 3 * H, H);
    // view(..., heads, 3*hd) then chunk(3): head h owns qkv columns [h*3hd, (h+1)*3hd) as q | k | v.
    const q = new Float64Array(T * H);
    const k = new Float64Array(T * H);
    const v = new Float64Array(T * H);
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < c.heads; h++) {
        for (let d = 0; d < hd; d++) {
          const src = t * 3 * H + h * 3 * hd + d;
          q[t * H + h * hd + d] = qkv[src];
          k[t * H + h * hd + d] = qkv[src + hd];
          v[t * H + h * hd + d] = qkv[src + 2 * hd];
        }
      }
    }
    const inv = c.scaling ? c.scaling.inv(rot) : defaultInv(c.base, rot);
    rotate(q, T, seq, c.heads, hd, rot, inv, c.scaling?.scale ?? 1);
    rotate(k, T, seq, c.heads, hd, rot, inv, c.scaling?.scale ?? 1);

    const oIn = new Float64Array(T * H);
    for (let w0 = 0; w0 < T; w0 += seq) {
      for (let h = 0; h < c.heads; h++) {
        for (let a = 0; a < seq; a++) {
          const s: number[] = [];
          for (let b = 0; b <= a; b++) {
            let dot = 0;
            for (let d = 0; d < hd; d++) dot += q[(w0 + a) * H + h * hd + d] * k[(w0 + b) * H + h * hd + d];
            s.push(dot / Math.sqrt(hd));
          }
          const m = Math.max(...s);
          const ex = s.map((z) => Math.exp(z - m));
          const sum = ex.reduce((u, z) => u + z, 0);
          for (let b = 0; b <= a; b++) {
            for (let d = 0; d < hd; d++) oIn[(w0 + a) * H + h * hd + d] += (ex[b] / sum) * v[(w0 + b) * H + h * hd + d];
          }
        }
      }
    }
    const attnOut = lin(oIn, 'attention.dense', H, H);

    const mlpIn = c.parallel ? ln(x, 'post_attention_layernorm') : ln(add(x, attnOut), 'post_attention_layernorm');
    const downIn = activate(c.act, lin(mlpIn, 'mlp.dense_h_to_4h', c.inter, H));
    const mlpOut = lin(downIn, 'mlp.dense_4h_to_h', H, c.inter);
    const out = add(x, attnOut, mlpOut);
    trace.blocks.push({ attn_in: attnIn, o_in: oIn, mlp_in: mlpIn, down_in: downIn, out });
    x = out;
  }

  const xf = layerNorm(x, T, H, need('gpt_neox.final_layer_norm.weight'), need('gpt_neox.final_layer_norm.bias'), c.eps);
  trace.logits = linear(xf, T, need('embed_out.weight'), c.vocab, H);
  return trace;
}

function logSoftmaxNll(logits: F64, T: number, V: number, targets: Int32Array): F64 {
  const nll = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    if (targets[t] < 0) continue;
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, logits[t * V + v]);
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[t * V + v] - m);
    nll[t] = -(logits[t * V + targets[t]] - m - Math.log(z));
  }
  return nll;
}

/** max |got - want| / max |want|. */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    d = Math.max(d, Math.abs(got[i] - want[i]));
    m = Math.max(m, Math.abs(want[i]));
  }
  return d / m;
}

function subset(w: Weights, names: string[]): Weights {
  const out: Weights = new Map();
  for (const n of names) {
    const t = w.get(n);
    if (!t) throw new Error(`adapter asked for ${n}, which the checkpoint does not have`);
    out.set(n, t);
  }
  return out;
}

// ---------- the cases ----------

const base = { hidden: 64, heads: 4, layers: 2, inter: 256, vocab: 100, act: 'gelu', eps: 1e-5 };
const cases: [string, NeoxCfg][] = [
  ['pythia-style: parallel residual, rotary_pct 0.25', { ...base, rotaryPct: 0.25, base: 10000, parallel: true }],
  ['sequential residual, rotary_pct 1.0, base 500', { ...base, rotaryPct: 1.0, base: 500, parallel: false }],
  ['parallel residual, rotary_pct 0.5, gelu_new, eps 1e-6', { ...base, rotaryPct: 0.5, base: 10000, parallel: true, act: 'gelu_new', eps: 1e-6 }],
  // Scaled RoPE over the rotated dims only (rope.ts; HF passes rotary_pct to modeling_rope_utils as the partial factor).
  [
    'rotary_pct 0.5 with yarn (factor 4, original 16): ramp over the 8 rotated dims, attention factor on them only',
    { ...base, rotaryPct: 0.5, base: 100, parallel: true, scaling: { config: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 16 }, inv: (rot) => yarn(100, rot, 64 / 16, 16).inv, scale: yarn(100, 8, 4, 16).attention } },
  ],
  ['rotary_pct 0.25 with linear factor 3', { ...base, rotaryPct: 0.25, base: 100, parallel: false, scaling: { config: { type: 'linear', factor: 3 }, inv: (rot) => defaultInv(100, rot).map((v) => v / 3), scale: 1 } }],
];

const SEQ = 16;
const BATCH = 2;

describe.each(cases)('GPT-NeoX %s', (_name, c) => {
  const w = randomCheckpoint(c, 4321 + Math.round(c.rotaryPct * 100));
  const rand = rng(77);
  const ids = Int32Array.from({ length: SEQ * BATCH }, () => Math.floor(rand() * c.vocab));
  const ref = referenceForward(c, w, ids, SEQ);
  const T = ids.length;

  function arch(): Architecture {
    return createGptNeox(configJson(c), '/tmp/pythia/config.json');
  }

  it('reads the spec from config.json', () => {
    expect(arch().spec).toMatchObject({
      family: 'gpt_neox',
      modelType: 'gpt_neox',
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 4,
      headDim: 16,
      intermediateSize: 256,
      vocabSize: 100,
      maxPositions: 64,
      tieWordEmbeddings: false,
      bosTokenId: 0,
      eosTokenId: 0,
      dtype: 'float16',
    });
  });

  it('names exactly the checkpoint tensors, split into embed, blocks and head', () => {
    const a = arch();
    const listed = new Set<string>();
    for (let i = 0; i < c.layers; i++) for (const n of a.blockTensors(i)) listed.add(n);
    for (const n of [...a.embedTensors(), ...a.headTensors()]) listed.add(n);
    expect([...listed].sort()).toEqual([...w.keys()].sort());
    for (const n of a.blockTensors(1)) expect(n.startsWith('gpt_neox.layers.1.')).toBe(true);
  });

  it('lists the linear layers with their shared inputs and true-sequential stages', () => {
    const rows = arch()
      .linears(0)
      .map((l) => [l.name, l.tensor, l.rows, l.cols, l.transposed, l.input, l.stage]);
    const p = 'gpt_neox.layers.0';
    expect(rows).toEqual([
      ['attention.query_key_value', `${p}.attention.query_key_value.weight`, 192, 64, false, 'attn_in', 0],
      ['attention.dense', `${p}.attention.dense.weight`, 64, 64, false, 'o_in', 1],
      ['mlp.dense_h_to_4h', `${p}.mlp.dense_h_to_4h.weight`, 256, 64, false, 'mlp_in', 2],
      ['mlp.dense_4h_to_h', `${p}.mlp.dense_4h_to_h.weight`, 64, 256, false, 'down_in', 3],
    ]);
  });

  it('matches the float64 reference: embeddings, every block with its captured inputs, logits, nll', async () => {
    const a = arch();
    const x0 = await a.embed(subset(w, a.embedTensors()), ids, SEQ);
    expect(relErr(x0, ref.embed)).toBe(0);

    let x = x0;
    for (let i = 0; i < c.layers; i++) {
      const r = ref.blocks[i];
      const got = await a.runBlock(i, subset(w, a.blockTensors(i)), x, SEQ, true);
      expect(relErr(got.out, r.out)).toBeLessThan(1e-5);
      for (const id of ['attn_in', 'o_in', 'mlp_in', 'down_in'] as const) {
        expect(relErr(got.inputs[id], r[id]), `${id} of block ${i}`).toBeLessThan(1e-5);
      }
      // Without capture: the same output (up to graph-fusion rounding), written into the buffer given, no inputs.
      const buffer = new Float32Array(x.length);
      const plain = await a.runBlock(i, subset(w, a.blockTensors(i)), x, SEQ, false, buffer);
      expect(plain.out).toBe(buffer);
      expect(Object.keys(plain.inputs)).toEqual([]);
      expect(relErr(plain.out, got.out)).toBeLessThan(1e-6);
      x = got.out;
    }

    const hw = subset(w, a.headTensors());
    const logits = await a.logits(hw, x, SEQ);
    expect(relErr(logits, ref.logits)).toBeLessThan(1e-5);

    const targets = Int32Array.from({ length: T }, (_, t) => (t % SEQ === SEQ - 1 ? -100 : ids[t + 1]));
    targets[5] = -1;
    const nll = await a.nll(hw, x, SEQ, targets);
    const want = logSoftmaxNll(ref.logits, T, c.vocab, targets);
    expect(relErr(nll, want)).toBeLessThan(1e-5);
    for (let t = 0; t < T; t++) if (targets[t] < 0) expect(nll[t]).toBe(0);
  });
});

describe('GPT-NeoX config', () => {
  const good = configJson({ ...base, rotaryPct: 0.25, base: 10000, parallel: true });

  it('takes the transformers 5 spelling (rope_parameters, dtype) and the defaults Pythia relies on', () => {
    const { rotary_pct: _p, rotary_emb_base: _b, use_parallel_residual: _r, torch_dtype: _d, tie_word_embeddings: _t, ...rest } = good;
    const a = createGptNeox({ ...rest, dtype: 'bfloat16', rope_parameters: { rope_type: 'default', rope_theta: 10000, partial_rotary_factor: 0.25 } }, '/m/config.json');
    expect(a.spec.dtype).toBe('bfloat16');
    expect(a.spec.tieWordEmbeddings).toBe(false);
    expect(a.headTensors()).toContain('embed_out.weight');
  });

  it('uses embed_in as the head when tie_word_embeddings is set', () => {
    const a = createGptNeox({ ...good, tie_word_embeddings: true }, '/m/config.json');
    expect(a.headTensors()).toContain('gpt_neox.embed_in.weight');
    expect(a.headTensors()).not.toContain('embed_out.weight');
  });

  it('reads HF rope scaling over the rotary dims (rope.ts); rejects a rope type HF does not have, naming the file', () => {
    expect(createGptNeox({ ...good, rope_scaling: { type: 'dynamic', factor: 2.0 } }, '/m/config.json').spec.modelType).toBe('gpt_neox');
    expect(() => createGptNeox({ ...good, rope_scaling: { type: 'ntk', factor: 2.0 } }, '/m/config.json')).toThrow('/m/config.json: rope_scaling type "ntk" is not supported');
  });

  it('rejects an odd number of rotary dims', () => {
    expect(() => createGptNeox({ ...good, rotary_pct: 3 / 16 }, '/m/config.json')).toThrow(/\/m\/config\.json/);
  });
});

describe('GPT-NeoX checkpoint naming variants', () => {
  it('reads the bare GPTNeoXModel names (no "gpt_neox." prefix) when given the checkpoint names', async () => {
    const c = cases[0][1];
    const w = randomCheckpoint(c, 31);
    const ids = Int32Array.from({ length: SEQ }, (_, t) => (t * 11 + 5) % c.vocab);
    const ref = referenceForward(c, w, ids, SEQ);
    const bare: Weights = new Map([...w].map(([n, t]) => [n.replace(/^gpt_neox\./, ''), t]));
    const a = createGptNeox(configJson(c), '/m/config.json', bare);
    expect(a.embedTensors()).toEqual(['embed_in.weight']);
    expect(a.headTensors()).toEqual(['final_layer_norm.weight', 'final_layer_norm.bias', 'embed_out.weight']);
    let x = await a.embed(subset(bare, a.embedTensors()), ids, SEQ);
    for (let i = 0; i < c.layers; i++) x = (await a.runBlock(i, subset(bare, a.blockTensors(i)), x, SEQ, false)).out;
    expect(relErr(await a.logits(subset(bare, a.headTensors()), x, SEQ), ref.logits)).toBeLessThan(1e-5);
  });
});
