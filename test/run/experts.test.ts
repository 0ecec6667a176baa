/**
 * MoE blocks with their routed experts streamed (run/experts.ts, prune/driver.ts): on small random Qwen2-MoE
 * checkpoints in both layouts (per-expert F32 with a dense first layer, fused 3-D BF16), read through an
 * instrumented tensor source that counts the float32 bytes of expert weights read and not yet handed to
 * the writer. Checked: while pruning, never more than one expert's weights on top of the shared parts
 * (the whole-block path, run as a control, holds every expert of a block); fused tensors are only read in
 * one expert's range; the forward passes (eval, generation) run each expert right after reading it and
 * never again once the next is read; and the pruned weights, the per-layer report and the forward output
 * are bit-identical to the whole-block path's (every expert loaded, runBlock).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Architecture, RoutedExperts, TensorSource, Weights } from '../../src/arch/types.js';
import { openModel, type OpenModel } from '../../src/model.js';
import { pruneBlocks, type LayerReport, type PruneOptions } from '../../src/prune/driver.js';
import type { OwlReport } from '../../src/prune/owl.js';
import { forwardHidden } from '../../src/run/blocks.js';
import { runPrune } from '../../src/prune/job.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { randomIds, rng } from '../arch/reference.js';
import { moeCheckpoint, shapeOf, writeMoeFolder, type MoeShape } from '../arch/moe-reference.js';

const VOCAB = 64;
const attn = { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: VOCAB, max_position_embeddings: 64, hidden_act: 'silu', rms_norm_eps: 1e-6, tie_word_embeddings: false };
const qwen = { ...attn, model_type: 'qwen2_moe', intermediate_size: 40, moe_intermediate_size: 12, shared_expert_intermediate_size: 28, num_experts: 4, num_experts_per_tok: 2, decoder_sparse_step: 1 };
const MODELS = {
  // transformers 4: per-expert tensors; layer 0 dense (mlp_only_layers).
  'per-expert': { fused: false, dtype: 'F32', config: { ...qwen, mlp_only_layers: [0], norm_topk_prob: false, rope_theta: 1e6, torch_dtype: 'float32' } },
  // transformers 5: fused gate_up_proj [E, 2I, h] and down_proj [E, h, I], BF16 so that ranged reads decode.
  fused: { fused: true, dtype: 'BF16', config: { ...qwen, mlp_only_layers: [], norm_topk_prob: true, rope_parameters: { rope_type: 'default', rope_theta: 1e6 }, dtype: 'bfloat16' } },
} as const;
type ModelName = keyof typeof MODELS;
// 160 windows of 16 tokens: two micro-batches per block call (128 windows each at most), so the experts'
// chunking is exercised.
const SEQ = 16;
const WINDOWS = 160;

const root = mkdtempSync(join(tmpdir(), 'shears-experts-'));
const ids = randomIds(rng(5), WINDOWS * SEQ, VOCAB);
const models = {} as Record<ModelName, { dir: string; s: MoeShape }>;
afterAll(() => rmSync(root, { recursive: true, force: true }));
beforeAll(() => {
  for (const [name, m] of Object.entries(MODELS) as [ModelName, (typeof MODELS)[ModelName]][]) {
    const dir = join(root, name);
    mkdirSync(dir);
    const s = shapeOf('qwen2_moe', m.config, m.fused);
    writeMoeFolder(dir, moeCheckpoint(s, name === 'fused' ? 8 : 7), m.config, m.dtype);
    models[name] = { dir, s };
  }
});

/** The same model with its blocks run whole (every expert loaded): the path before streaming. */
function wholeBlocks(arch: Architecture): Architecture {
  return new Proxy(arch, { get: (t, k) => (k === 'routed' ? undefined : bind(t, k)) });
}

function bind(t: object, k: string | symbol): unknown {
  const v = (t as Record<string | symbol, unknown>)[k];
  return typeof v === 'function' ? v.bind(t) : v;
}

/** Which expert of which block a read of elements [start, start + count) of `name` belongs to (undefined: not an expert's). */
function expertOf(s: MoeShape, name: string, start: number, count: number): { key: string; bytes: number } | undefined {
  const m = /^model\.layers\.(\d+)\.mlp\.experts\.(?:(\d+)\.)?/.exec(name);
  if (!m) return undefined;
  if (m[2] !== undefined) return { key: `${m[1]}.${m[2]}`, bytes: count * 4 };
  const per = s.I * s.h * (name.endsWith('gate_up_proj') ? 2 : 1);
  if (count === per * s.E) return { key: `${m[1]}.all`, bytes: count * 4 }; // read whole (the control)
  expect(count, `${name}: one expert's range`).toBe(per);
  expect(start % per, `${name}: one expert's range`).toBe(0);
  return { key: `${m[1]}.${start / per}`, bytes: count * 4 };
}

/**
 * `src` counting expert bytes read and not yet released; `log` gets "read <block>.<expert>". Streamed
 * (`whole` false), a fused expert tensor must never be read whole.
 */
function instrumented(src: TensorSource, s: MoeShape, log: string[], whole = false) {
  const meter = { resident: 0, peak: 0 };
  const saw = (name: string, start: number, count: number) => {
    const e = expertOf(s, name, start, count);
    if (!e) return;
    log.push(`read ${e.key}`);
    meter.resident += e.bytes;
    meter.peak = Math.max(meter.peak, meter.resident);
  };
  const source: TensorSource = {
    has: (n) => src.has(n),
    shape: (n) => src.shape(n),
    readFloat32: (n) => {
      const a = src.readFloat32(n);
      if (!whole && /\.experts\.(gate_up|down)_proj$/.test(n)) throw new Error(`${n}: a fused expert tensor was read whole`);
      saw(n, 0, a.length);
      return a;
    },
    readFloat32Range: (n, start, count) => {
      saw(n, start, count);
      return src.readFloat32Range(n, start, count);
    },
  };
  const release = (w: Weights) => {
    for (const [n, v] of w) if (/\.experts\./.test(n)) meter.resident -= v.byteLength;
  };
  return { source, meter, release };
}

interface Pruned {
  tensors: Map<string, Float32Array>;
  layers: LayerReport[];
  peak: number;
  owl?: OwlReport;
}

/** Prunes the model's blocks, assembling what the hooks hand over as the writer would (slices into place). */
async function prune(m: OpenModel, s: MoeShape, arch: Architecture, opts: PruneOptions): Promise<Pruned> {
  const { source, meter, release } = instrumented(m.src, s, [], !arch.routed);
  const tensors = new Map<string, Float32Array>();
  const put = (name: string, start: number, v: Float32Array) => {
    if (!tensors.has(name)) tensors.set(name, new Float32Array(m.src.shape(name).reduce((a, b) => a * b, 1)));
    tensors.get(name)!.set(v, start);
  };
  const { layers, owl } = await pruneBlocks(arch, source, { ids, count: WINDOWS, seqlen: SEQ }, opts, {
    onBlockDone: (_b, w) => {
      for (const [n, v] of w) put(n, 0, v);
      release(w);
    },
    onExpertDone: (_b, ex) => {
      for (const [n, v] of ex.w) put(n, ex.starts.get(n)!, v);
      release(ex.w);
    },
  });
  return { tensors, layers, peak: meter.peak, owl };
}

const RUNS: Record<string, PruneOptions> = {
  'wanda 50%': { method: 'wanda', spec: { kind: 'unstructured', sparsity: 0.5 } },
  'sparsegpt 2:4': { method: 'sparsegpt', spec: { kind: 'nm', n: 2, m: 4 } },
  'sparsegpt 50% true-sequential': { method: 'sparsegpt', spec: { kind: 'unstructured', sparsity: 0.5 }, trueSequential: true },
  'magnitude 50% (no calibration)': { method: 'magnitude', spec: { kind: 'unstructured', sparsity: 0.5 } },
};

describe.each(Object.keys(MODELS) as ModelName[])('streamed experts, %s layout', (name) => {
  it.each(Object.keys(RUNS))('prune %s: one expert resident at a time, the same weights and report as the whole-block path', async (run) => {
    const { dir, s } = models[name];
    const m = await openModel(dir);
    try {
      expect(m.arch.routed?.count(1)).toBe(s.E);
      const streamed = await prune(m, s, m.arch, RUNS[run]);
      const whole = await prune(m, s, wholeBlocks(m.arch), RUNS[run]);
      const oneExpert = 3 * s.I * s.h * 4;
      expect(streamed.peak).toBe(oneExpert);
      expect(whole.peak).toBe(s.E * oneExpert); // the control: the instrument sees every expert of a block at once there
      expect([...streamed.tensors.keys()].sort()).toEqual([...whole.tensors.keys()].sort());
      for (const [n, v] of whole.tensors) expect(Buffer.from(streamed.tensors.get(n)!.buffer).equals(Buffer.from(v.buffer)), n).toBe(true);
      const key = (l: LayerReport) => `${l.block}.${l.name}`;
      const strip = ({ seconds: _s, ...rest }: LayerReport) => rest;
      const byName = new Map(whole.layers.map((l) => [key(l), strip(l)]));
      expect(streamed.layers.length).toBe(whole.layers.length);
      for (const l of streamed.layers) expect(strip(l), key(l)).toEqual(byName.get(key(l)));
      // The report still gives each expert its routed tokens (all 2560 tokens · top-2 over the block's experts).
      if (RUNS[run].method !== 'magnitude') {
        const downs = streamed.layers.filter((l) => l.block === 1 && /experts\.\d+\.down_proj/.test(l.name));
        expect(downs.reduce((a, l) => a + l.routedTokens!, 0)).toBe(WINDOWS * SEQ * 2);
      }
    } finally {
      m.ckpt.close();
    }
  });

  it('prune --owl (Wanda 50%): experts streamed in the dense pass too; the same outlier ratios, sparsities and weights as the whole-block path', async () => {
    const { dir, s } = models[name];
    const m = await openModel(dir);
    try {
      // The OWL pass reads each expert twice (no hook lets it go), so only the prune after it is metered:
      // the instrumented source still refuses whole reads of the fused tensors.
      const opts: PruneOptions = { method: 'wanda', spec: { kind: 'unstructured', sparsity: 0.5 }, owl: { m: 2, lambda: 0.08 } };
      const streamed = await prune(m, s, m.arch, opts);
      const whole = await prune(m, s, wholeBlocks(m.arch), opts);
      expect(streamed.owl!.outlierRatios).toEqual(whole.owl!.outlierRatios);
      expect(streamed.owl!.sparsities).toEqual(whole.owl!.sparsities);
      expect(new Set(streamed.owl!.sparsities).size).toBe(2); // the blocks differ, so OWL did something
      for (const [n, v] of whole.tensors) expect(Buffer.from(streamed.tensors.get(n)!.buffer).equals(Buffer.from(v.buffer)), n).toBe(true);
    } finally {
      m.ckpt.close();
    }
  });

  it('prune --wbits 4 through the job: every expert (written by slices) and shared matrix on a 4-bit grid per row', async () => {
    const { dir, s } = models[name];
    const calib = join(root, `calib-${name}.safetensors`);
    const cw = new SafetensorsWriter(calib, [{ name: 'input_ids', dtype: 'I32', shape: [8, SEQ] }], { format: 'pt' });
    cw.write('input_ids', ids.subarray(0, 8 * SEQ));
    cw.finish();
    const out = join(root, `wbits-${name}`);
    await runPrune({ model: dir, out, method: 'wanda', spec: { kind: 'unstructured', sparsity: 0.5 }, calibration: 'tinystories', calibTokens: calib, nsamples: 8, seed: 0, wbits: 4 });
    const ck = Checkpoint.openFolder(out);
    try {
      const m = await openModel(dir);
      const matrices = [0, 1].flatMap((b) => m.arch.linears(b));
      m.ckpt.close();
      expect(matrices.filter((l) => l.expert !== undefined).length).toBe([0, 1].filter((b) => s.sparse(b)).length * 3 * s.E);
      for (const l of matrices) {
        const stored = ck.readFloat32(l.tensor);
        const data = l.part ? stored.subarray(l.part.offset, l.part.offset + l.rows * l.cols) : stored;
        for (let r = 0; r < l.rows; r++) {
          const row = new Set(data.subarray(r * l.cols, (r + 1) * l.cols));
          row.delete(0);
          expect(row.size, `${l.name} row ${r}`).toBeLessThanOrEqual(16);
        }
      }
    } finally {
      ck.close();
    }
  });

  it('forward (eval, generation): each expert runs right after it is read, never once the next is read; output as the whole-block path', async () => {
    const { dir, s } = models[name];
    const m = await openModel(dir);
    try {
      const log: string[] = [];
      const { source, meter } = instrumented(m.src, s, log);
      const routed = m.arch.routed!;
      const loggedRouted = new Proxy(routed, {
        get: (t, k) => (k === 'runExpert' ? (...a: Parameters<RoutedExperts['runExpert']>) => (log.push(`run ${a[0]}.${a[1]}`), t.runExpert(...a)) : bind(t, k)),
      });
      const logged = new Proxy(m.arch, { get: (t, k) => (k === 'routed' ? loggedRouted : bind(t, k)) });
      const streamed = await forwardHidden(logged, source, ids, SEQ);
      let last = '';
      let runs = 0;
      for (const ev of log) {
        const [what, key] = ev.split(' ');
        if (what === 'read') last = key;
        else (expect(key, `${ev} after read ${last}`).toBe(last), runs++);
      }
      // Two micro-batches, every expert of every sparse block chosen in both.
      const sparse = [0, 1].filter((b) => s.sparse(b)).length;
      expect(runs).toBe(2 * s.E * sparse);
      expect(log.filter((e) => e.startsWith('read')).length).toBe(sparse * s.E * (s.fused ? 2 : 3));
      expect(meter.resident).toBe(sparse * s.E * 3 * s.I * s.h * 4); // every expert read exactly once
      const whole = await forwardHidden(wholeBlocks(m.arch), m.src, ids, SEQ);
      expect(Buffer.from(streamed.buffer).equals(Buffer.from(whole.buffer))).toBe(true);
    } finally {
      m.ckpt.close();
    }
  });
});
