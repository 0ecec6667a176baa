/**
 * OPT adapter vs an independent float64 forward written from the HF modeling_opt.py semantics:
 * learned positions at offset 2, q scaled by head_dim^-0.5 after its bias, pre-LN (125m and larger)
 * or post-LN without a final norm (350m), project_in/project_out when word_embed_proj_dim differs
 * from hidden_size, LM head tied to embed_tokens.
 */
import { describe, expect, it } from 'vitest';
import { createOpt } from '../../src/arch/opt.js';
import type { Architecture, Weights } from '../../src/arch/types.js';
import { rng } from './reference.js';

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

function layerNorm(x: F64, T: number, H: number, g: Float32Array | undefined, b: Float32Array | undefined): F64 {
  const y = new Float64Array(T * H);
  for (let t = 0; t < T; t++) {
    let mean = 0;
    for (let i = 0; i < H; i++) mean += x[t * H + i];
    mean /= H;
    let v = 0;
    for (let i = 0; i < H; i++) v += (x[t * H + i] - mean) ** 2;
    const inv = 1 / Math.sqrt(v / H + 1e-5);
    for (let i = 0; i < H; i++) y[t * H + i] = (x[t * H + i] - mean) * inv * (g ? g[i] : 1) + (b ? b[i] : 0);
  }
  return y;
}

function add(a: F64, b: F64): F64 {
  return a.map((v, i) => v + b[i]);
}

/** Causal multi-head attention within windows of `seq` tokens; q already scaled. Returns [T, heads*hd]. */
function attention(q: F64, k: F64, v: F64, T: number, seq: number, heads: number, hd: number): F64 {
  const H = heads * hd;
  const out = new Float64Array(T * H);
  for (let w0 = 0; w0 < T; w0 += seq) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < seq; i++) {
        const scores: number[] = [];
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += q[(w0 + i) * H + h * hd + d] * k[(w0 + j) * H + h * hd + d];
          scores.push(s);
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= i; j++) {
          for (let d = 0; d < hd; d++) out[(w0 + i) * H + h * hd + d] += (e[j] / z) * v[(w0 + j) * H + h * hd + d];
        }
      }
    }
  }
  return out;
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
    case 'relu':
      return x.map((v) => Math.max(v, 0));
    case 'gelu':
      return x.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2)));
    default:
      throw new Error(`reference has no ${name}`);
  }
}

interface OptCfg {
  hidden: number;
  heads: number;
  layers: number;
  ffn: number;
  vocab: number;
  maxPos: number;
  wdim: number;
  preLN: boolean;
  bias: boolean;
  affine: boolean;
  act: string;
}

function configJson(c: OptCfg): Record<string, unknown> {
  return {
    model_type: 'opt',
    architectures: ['OPTForCausalLM'],
    hidden_size: c.hidden,
    num_attention_heads: c.heads,
    num_hidden_layers: c.layers,
    ffn_dim: c.ffn,
    vocab_size: c.vocab,
    max_position_embeddings: c.maxPos,
    word_embed_proj_dim: c.wdim,
    do_layer_norm_before: c.preLN,
    enable_bias: c.bias,
    layer_norm_elementwise_affine: c.affine,
    activation_function: c.act,
    bos_token_id: 2,
    eos_token_id: 2,
    pad_token_id: 1,
    torch_dtype: 'float16',
  };
}

/** The tensors save_pretrained writes for OPTForCausalLM with these settings (no lm_head: tied). */
function randomCheckpoint(c: OptCfg, seed: number): Weights {
  const rand = rng(seed);
  const w: Weights = new Map();
  const mat = (name: string, n: number) => w.set(name, normal(rand, n, 0, 0.02));
  const gain = (name: string, n: number) => w.set(name, normal(rand, n, 1, 0.2));
  const ln = (p: string, n: number) => {
    if (!c.affine) return;
    gain(`${p}.weight`, n);
    mat(`${p}.bias`, n);
  };
  const lin = (p: string, rows: number, cols: number, bias: boolean) => {
    mat(`${p}.weight`, rows * cols);
    if (bias) mat(`${p}.bias`, rows);
  };
  const H = c.hidden;
  mat('model.decoder.embed_tokens.weight', c.vocab * c.wdim);
  mat('model.decoder.embed_positions.weight', (c.maxPos + 2) * H);
  if (c.wdim !== H) {
    lin('model.decoder.project_in', H, c.wdim, false);
    lin('model.decoder.project_out', c.wdim, H, false);
  }
  if (c.preLN) ln('model.decoder.final_layer_norm', H);
  for (let i = 0; i < c.layers; i++) {
    const p = `model.decoder.layers.${i}`;
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) lin(`${p}.self_attn.${m}`, H, H, c.bias);
    ln(`${p}.self_attn_layer_norm`, H);
    lin(`${p}.fc1`, c.ffn, H, c.bias);
    lin(`${p}.fc2`, H, c.ffn, c.bias);
    ln(`${p}.final_layer_norm`, H);
  }
  return w;
}

interface Trace {
  embed: F64;
  blocks: { attn_in: F64; o_in: F64; mlp_in: F64; down_in: F64; out: F64 }[];
  logits: F64;
}

function referenceForward(c: OptCfg, w: Weights, ids: Int32Array, seq: number): Trace {
  const T = ids.length;
  const H = c.hidden;
  const hd = H / c.heads;
  const get = (n: string) => w.get(n);
  const need = (n: string) => {
    const t = w.get(n);
    if (!t) throw new Error(`missing ${n}`);
    return t;
  };

  const tok = need('model.decoder.embed_tokens.weight');
  let e = new Float64Array(T * c.wdim);
  for (let t = 0; t < T; t++) for (let d = 0; d < c.wdim; d++) e[t * c.wdim + d] = tok[ids[t] * c.wdim + d];
  if (c.wdim !== H) e = linear(e, T, need('model.decoder.project_in.weight'), H, c.wdim);
  const pos = need('model.decoder.embed_positions.weight');
  for (let t = 0; t < T; t++) {
    const row = (t % seq) + 2; // cumsum(mask)*mask - 1 = 0..seq-1, plus the offset of 2
    for (let d = 0; d < H; d++) e[t * H + d] += pos[row * H + d];
  }

  const trace: Trace = { embed: e, blocks: [], logits: new Float64Array(0) };
  let x = e;
  for (let i = 0; i < c.layers; i++) {
    const p = `model.decoder.layers.${i}`;
    const ln1 = (v: F64) => layerNorm(v, T, H, get(`${p}.self_attn_layer_norm.weight`), get(`${p}.self_attn_layer_norm.bias`));
    const ln2 = (v: F64) => layerNorm(v, T, H, get(`${p}.final_layer_norm.weight`), get(`${p}.final_layer_norm.bias`));
    const lin = (v: F64, m: string, rows: number, cols: number) => linear(v, T, need(`${p}.${m}.weight`), rows, cols, get(`${p}.${m}.bias`));

    const attnIn = c.preLN ? ln1(x) : x;
    const q = lin(attnIn, 'self_attn.q_proj', H, H).map((v) => v * hd ** -0.5);
    const k = lin(attnIn, 'self_attn.k_proj', H, H);
    const vv = lin(attnIn, 'self_attn.v_proj', H, H);
    const oIn = attention(q, k, vv, T, seq, c.heads, hd);
    let h = add(x, lin(oIn, 'self_attn.out_proj', H, H));
    if (!c.preLN) h = ln1(h);
    const mlpIn = c.preLN ? ln2(h) : h;
    const downIn = activate(c.act, lin(mlpIn, 'fc1', c.ffn, H));
    let out = add(h, lin(downIn, 'fc2', H, c.ffn));
    if (!c.preLN) out = ln2(out);
    trace.blocks.push({ attn_in: attnIn, o_in: oIn, mlp_in: mlpIn, down_in: downIn, out });
    x = out;
  }

  if (c.preLN) x = layerNorm(x, T, H, get('model.decoder.final_layer_norm.weight'), get('model.decoder.final_layer_norm.bias'));
  if (c.wdim !== H) x = linear(x, T, need('model.decoder.project_out.weight'), c.wdim, H);
  trace.logits = linear(x, T, tok, c.vocab, c.wdim);
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

const base = { hidden: 64, heads: 4, layers: 2, ffn: 128, vocab: 100, maxPos: 40 };
const cases: [string, OptCfg][] = [
  ['125m-style: pre-LN, final norm, relu', { ...base, wdim: 64, preLN: true, bias: true, affine: true, act: 'relu' }],
  ['350m-style: post-LN, project_in/out, no final norm', { ...base, wdim: 32, preLN: false, bias: true, affine: true, act: 'relu' }],
  ['no biases, no LayerNorm affine, gelu', { ...base, wdim: 64, preLN: true, bias: false, affine: false, act: 'gelu' }],
];

const SEQ = 16;
const BATCH = 2;

describe.each(cases)('OPT %s', (_name, c) => {
  const w = randomCheckpoint(c, 1234 + c.wdim + (c.bias ? 1 : 0));
  const rand = rng(99);
  const ids = Int32Array.from({ length: SEQ * BATCH }, () => Math.floor(rand() * c.vocab));
  const ref = referenceForward(c, w, ids, SEQ);
  const T = ids.length;

  function arch(): Architecture {
    return createOpt(configJson(c), '/tmp/opt/config.json');
  }

  it('reads the spec from config.json', () => {
    const s = arch().spec;
    expect(s).toMatchObject({
      family: 'opt',
      modelType: 'opt',
      hiddenSize: 64,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 4,
      headDim: 16,
      intermediateSize: 128,
      vocabSize: 100,
      maxPositions: 40,
      tieWordEmbeddings: true,
      bosTokenId: 2,
      eosTokenId: 2,
      dtype: 'float16',
    });
  });

  it('names exactly the checkpoint tensors, split into embed, blocks and head', () => {
    const a = arch();
    const listed = new Set<string>();
    for (let i = 0; i < c.layers; i++) for (const n of a.blockTensors(i)) listed.add(n);
    for (const n of [...a.embedTensors(), ...a.headTensors()]) listed.add(n);
    expect([...listed].sort()).toEqual([...w.keys()].sort());
    for (const n of a.blockTensors(1)) expect(n.startsWith('model.decoder.layers.1.')).toBe(true);
  });

  it('lists the linear layers with their shared inputs and true-sequential stages', () => {
    const rows = arch()
      .linears(1)
      .map((l) => [l.name, l.tensor, l.rows, l.cols, l.transposed, l.input, l.stage]);
    const p = 'model.decoder.layers.1';
    expect(rows).toEqual([
      ['self_attn.q_proj', `${p}.self_attn.q_proj.weight`, 64, 64, false, 'attn_in', 0],
      ['self_attn.k_proj', `${p}.self_attn.k_proj.weight`, 64, 64, false, 'attn_in', 0],
      ['self_attn.v_proj', `${p}.self_attn.v_proj.weight`, 64, 64, false, 'attn_in', 0],
      ['self_attn.out_proj', `${p}.self_attn.out_proj.weight`, 64, 64, false, 'o_in', 1],
      ['fc1', `${p}.fc1.weight`, 128, 64, false, 'mlp_in', 2],
      ['fc2', `${p}.fc2.weight`, 64, 128, false, 'down_in', 3],
    ]);
  });

  it('matches the float64 reference: embeddings, every block with its captured inputs, logits, nll', async () => {
    const a = arch();
    const x0 = await a.embed(subset(w, a.embedTensors()), ids, SEQ);
    expect(relErr(x0, ref.embed)).toBeLessThan(1e-6);

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
    targets[3] = -1;
    const nll = await a.nll(hw, x, SEQ, targets);
    const want = logSoftmaxNll(ref.logits, T, c.vocab, targets);
    expect(relErr(nll, want)).toBeLessThan(1e-5);
    for (let t = 0; t < T; t++) if (targets[t] < 0) expect(nll[t]).toBe(0);
  });
});

describe('OPT config checks', () => {
  const good = configJson({ ...base, wdim: 64, preLN: true, bias: true, affine: true, act: 'relu' });

  it('rejects an activation it cannot build, naming the file', () => {
    expect(() => createOpt({ ...good, activation_function: 'swish_beta' }, '/m/config.json')).toThrow(/\/m\/config\.json.*swish_beta/);
  });

  it('rejects a hidden size that the heads do not divide', () => {
    expect(() => createOpt({ ...good, num_attention_heads: 5 }, '/m/config.json')).toThrow(/\/m\/config\.json/);
  });

  it('treats do_layer_norm_before=true with _remove_final_layer_norm as having no final norm', () => {
    const a = createOpt({ ...good, _remove_final_layer_norm: true }, '/m/config.json');
    expect(a.headTensors().some((n) => n.includes('final_layer_norm'))).toBe(false);
  });
});

describe('OPT checkpoint naming variants', () => {
  const c: OptCfg = { ...base, wdim: 32, preLN: false, bias: true, affine: true, act: 'relu' };
  const w = randomCheckpoint(c, 555);
  const ids = Int32Array.from({ length: SEQ }, (_, t) => (t * 7 + 3) % c.vocab);
  const ref = referenceForward(c, w, ids, SEQ);

  /** The same weights under other names: `rename` maps each name (undefined = dropped). */
  function renamed(rename: (n: string) => string | undefined): Weights {
    const out: Weights = new Map();
    for (const [n, t] of w) {
      const m = rename(n);
      if (m !== undefined) out.set(m, t);
    }
    return out;
  }

  async function forward(a: Architecture, names: Weights): Promise<Float32Array> {
    let x = await a.embed(subset(names, a.embedTensors()), ids, SEQ);
    for (let i = 0; i < c.layers; i++) x = (await a.runBlock(i, subset(names, a.blockTensors(i)), x, SEQ, false)).out;
    return a.logits(subset(names, a.headTensors()), x, SEQ);
  }

  it('reads the bare OPTModel names ("decoder.*", as in opt-350m) when given the checkpoint names', async () => {
    const bare = renamed((n) => n.replace(/^model\./, ''));
    const a = createOpt(configJson(c), '/m/config.json', bare);
    expect(a.blockTensors(0).every((n) => n.startsWith('decoder.layers.0.'))).toBe(true);
    expect(a.embedTensors()).toContain('decoder.project_in.weight');
    expect(relErr(await forward(a, bare), ref.logits)).toBeLessThan(1e-5);
  });

  it('uses a stored lm_head.weight as the tied embedding when embed_tokens is absent', async () => {
    const onlyHead = renamed((n) => (n === 'model.decoder.embed_tokens.weight' ? 'lm_head.weight' : n));
    const a = createOpt(configJson(c), '/m/config.json', onlyHead);
    expect(a.embedTensors()).toContain('lm_head.weight');
    expect(a.headTensors()).toContain('lm_head.weight');
    expect(relErr(await forward(a, onlyHead), ref.logits)).toBeLessThan(1e-5);
  });

  it('uses an untied lm_head.weight for the head', () => {
    const a = createOpt({ ...configJson(c), tie_word_embeddings: false }, '/m/config.json', w);
    expect(a.spec.tieWordEmbeddings).toBe(false);
    expect(a.embedTensors()).toContain('model.decoder.embed_tokens.weight');
    expect(a.headTensors()).toContain('lm_head.weight');
    expect(a.headTensors()).not.toContain('model.decoder.embed_tokens.weight');
  });
});
