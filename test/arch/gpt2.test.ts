/**
 * GPT-2 adapter vs the float64 reference on tiny random checkpoints in memory (the oracle fixture is in
 * fixtures.test.ts): Conv1D layout, fused c_attn split [q | k | v], learned positions, captured inputs,
 * un-prefixed Hub names, and nll against a float64 log-softmax of the logits.
 */
import { describe, expect, it } from 'vitest';
import { createGpt2 } from '../../src/arch/gpt2.js';
import { setHeadChunkFloats } from '../../src/arch/runtime.js';
import { act, add, attention, layerNorm, linear, MemoryCheckpoint, randomIds, relErr, rng, type F64 } from './reference.js';

const H = 32;
const HEADS = 4;
const D = H / HEADS;
const VOCAB = 40;

function config(activation: string, extra: Record<string, unknown> = {}) {
  return { model_type: 'gpt2', n_embd: H, n_layer: 2, n_head: HEADS, n_inner: null, n_positions: 16, vocab_size: VOCAB, activation_function: activation, layer_norm_epsilon: 1e-5, ...extra };
}

function checkpoint(prefix: string, inner: number, seed: number): MemoryCheckpoint {
  const ck = new MemoryCheckpoint(rng(seed));
  ck.add(`${prefix}wte.weight`, [VOCAB, H], 0, 0.5);
  ck.add(`${prefix}wpe.weight`, [16, H], 0, 0.5);
  for (let i = 0; i < 2; i++) {
    const p = `${prefix}h.${i}.`;
    for (const ln of ['ln_1', 'ln_2']) {
      ck.add(`${p}${ln}.weight`, [H], 1, 0.2);
      ck.add(`${p}${ln}.bias`, [H], 0, 0.1);
    }
    const conv = (name: string, cin: number, cout: number) => {
      ck.add(`${p}${name}.weight`, [cin, cout], 0, 0.15);
      ck.add(`${p}${name}.bias`, [cout], 0, 0.1);
    };
    conv('attn.c_attn', H, 3 * H);
    conv('attn.c_proj', H, H);
    conv('mlp.c_fc', H, inner);
    conv('mlp.c_proj', inner, H);
  }
  ck.add(`${prefix}ln_f.weight`, [H], 1, 0.2);
  ck.add(`${prefix}ln_f.bias`, [H], 0, 0.1);
  return ck;
}

function refBlock(ck: MemoryCheckpoint, prefix: string, i: number, x: F64, seq: number, inner: number, actName: string) {
  const T = x.length / H;
  const p = `${prefix}h.${i}.`;
  const conv = (v: F64, name: string, cin: number, cout: number) => linear(v, T, ck.get(`${p}${name}.weight`), cout, cin, ck.get(`${p}${name}.bias`), true);
  const attnIn = layerNorm(x, H, ck.get(`${p}ln_1.weight`), ck.get(`${p}ln_1.bias`), 1e-5);
  const qkv = conv(attnIn, 'attn.c_attn', H, 3 * H);
  const part = (j: number) => {
    const out = new Float64Array(T * H);
    for (let t = 0; t < T; t++) out.set(qkv.subarray(t * 3 * H + j * H, t * 3 * H + (j + 1) * H), t * H);
    return out;
  };
  const oIn = attention(part(0), part(1), part(2), T, seq, HEADS, HEADS, D, 1 / Math.sqrt(D));
  const hMid = add(x, conv(oIn, 'attn.c_proj', H, H));
  const mlpIn = layerNorm(hMid, H, ck.get(`${p}ln_2.weight`), ck.get(`${p}ln_2.bias`), 1e-5);
  const downIn = conv(mlpIn, 'mlp.c_fc', H, inner).map((v) => act(actName, v));
  const out = add(hMid, conv(downIn, 'mlp.c_proj', inner, H));
  return { out, inputs: { attn_in: attnIn, o_in: oIn, mlp_in: mlpIn, down_in: downIn } };
}

describe('gpt2 adapter', () => {
  it.each([
    { actName: 'gelu_new', prefix: 'transformer.', inner: 4 * H },
    { actName: 'gelu', prefix: '', inner: 24 },
  ])('$actName, prefix "$prefix", n_inner $inner: blocks, captured inputs and logits match float64', async ({ actName, prefix, inner }) => {
    const ck = checkpoint(prefix, inner, 3);
    const arch = createGpt2(config(actName, inner === 4 * H ? {} : { n_inner: inner }), 'config.json', ck);
    expect(arch.embedTensors()).toEqual([`${prefix}wte.weight`, `${prefix}wpe.weight`]);
    const seq = 6;
    const ids = randomIds(rng(5), 3 * seq, VOCAB);
    let x = await arch.embed(ck.pick(arch.embedTensors()), ids, seq);
    let ref: F64 = new Float64Array(ids.length * H);
    const wte = ck.get(`${prefix}wte.weight`);
    const wpe = ck.get(`${prefix}wpe.weight`);
    ids.forEach((id, t) => {
      for (let j = 0; j < H; j++) ref[t * H + j] = wte[id * H + j] + wpe[(t % seq) * H + j];
    });
    expect(relErr(x, ref)).toBeLessThanOrEqual(1e-7);

    for (let i = 0; i < 2; i++) {
      const r = await arch.runBlock(i, ck.pick(arch.blockTensors(i)), x, seq, true);
      const e = refBlock(ck, prefix, i, ref, seq, inner, actName);
      expect(relErr(r.out, e.out), `block ${i}`).toBeLessThanOrEqual(1e-5);
      for (const [id, v] of Object.entries(e.inputs)) expect(relErr(r.inputs[id], v), `block ${i} ${id}`).toBeLessThanOrEqual(1e-5);
      x = r.out;
      ref = e.out;
    }
    const head = ck.pick(arch.headTensors());
    const logits = await arch.logits(head, x, seq);
    const normed = layerNorm(ref, H, ck.get(`${prefix}ln_f.weight`), ck.get(`${prefix}ln_f.bias`), 1e-5);
    expect(relErr(logits, linear(normed, ids.length, wte, VOCAB, H))).toBeLessThanOrEqual(1e-5);
  });

  it('linear layers are Conv1D views: c_attn fused [3·hidden out, hidden in], stages 0..3', () => {
    const arch = createGpt2(config('gelu_new'), 'config.json');
    expect(arch.linears(1).map((l) => `${l.tensor}:${l.rows}x${l.cols}:${l.input}:${l.stage}:${l.transposed}`)).toEqual([
      'transformer.h.1.attn.c_attn.weight:96x32:attn_in:0:true',
      'transformer.h.1.attn.c_proj.weight:32x32:o_in:1:true',
      'transformer.h.1.mlp.c_fc.weight:128x32:mlp_in:2:true',
      'transformer.h.1.mlp.c_proj.weight:32x128:down_in:3:true',
    ]);
    expect(arch.headTensors()).toEqual(['transformer.ln_f.weight', 'transformer.ln_f.bias', 'transformer.wte.weight']);
  });

  it('nll equals -log softmax(logits)[target] in float64, across LM-head chunks, 0 for ignored targets', async () => {
    const ck = checkpoint('transformer.', 4 * H, 9);
    const arch = createGpt2(config('gelu_new'), 'config.json');
    const seq = 8;
    const ids = randomIds(rng(12), 2 * seq, VOCAB);
    let x = await arch.embed(ck.pick(arch.embedTensors()), ids, seq);
    for (let i = 0; i < 2; i++) x = (await arch.runBlock(i, ck.pick(arch.blockTensors(i)), x, seq, false)).out;
    const head = ck.pick(arch.headTensors());
    const targets = randomIds(rng(13), ids.length, VOCAB);
    targets[3] = -1;
    targets[15] = -100;
    const old = setHeadChunkFloats(5 * VOCAB); // 5 rows per call: chunks of 5, 5, 5, 1
    try {
      const logits = await arch.logits(head, x, seq);
      const nll = await arch.nll(head, x, seq, targets);
      for (let t = 0; t < ids.length; t++) {
        const row = Array.from(logits.subarray(t * VOCAB, (t + 1) * VOCAB));
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
        const want = targets[t] < 0 ? 0 : lse - row[targets[t]];
        expect(Math.abs(nll[t] - want), `token ${t}`).toBeLessThanOrEqual(1e-5 * Math.max(1, want));
      }
      setHeadChunkFloats(old);
      // Chunked vs in one call differ only by the GEMM kernel MLAS picks for the row count.
      expect(relErr(logits, await arch.logits(head, x, seq))).toBeLessThanOrEqual(1e-6);
    } finally {
      setHeadChunkFloats(old);
    }
  });
});
