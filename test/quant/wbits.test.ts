/**
 * `prune --wbits` with a method other than SparseGPT: round-to-nearest after pruning on grids found from
 * the unpruned weights, written dense or as codes in the compressed formats. The quantized values are
 * checked against a float64 transcription of the reference quantizer; every format must hold exactly
 * the same weights (bit for bit) and give the same logits.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exportModel } from '../../src/export/export.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { openModel } from '../../src/model.js';
import { runPrune, type PruneJob } from '../../src/prune/job.js';
import { forwardHidden, loadWeights } from '../../src/run/blocks.js';
import { LLAMA_LINEAR, tensorBytes, type RawTensor } from '../io/compressed-helpers.js';

const REPO = join(import.meta.dirname, '..', '..');
const STORIES = join(REPO, 'models', 'stories260K');
const GPT2 = join(REPO, 'test', 'fixtures', 'gpt2-tiny');
const root = mkdtempSync(join(tmpdir(), 'shears-wbits-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function prune(model: string, out: string, extra: Partial<PruneJob>): Promise<unknown> {
  return runPrune({ model, out: join(root, out), method: 'magnitude', spec: { kind: 'unstructured', sparsity: 0.5 }, calibration: 'c4', nsamples: 1, ...extra });
}

const f32 = (t: RawTensor): Float32Array => new Float32Array(new Uint8Array(t.bytes).buffer);

function roundEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d < 0.5 ? f : d > 0.5 ? f + 1 : f % 2 === 0 ? f : f + 1;
}

function sameTensors(a: Map<string, RawTensor>, b: Map<string, RawTensor>): void {
  expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
  for (const [n, t] of a) expect(b.get(n)!.bytes.equals(t.bytes), n).toBe(true);
}

async function logits(dir: string, vocab: number): Promise<Buffer> {
  const { ckpt, arch, src } = await openModel(dir);
  try {
    const seq = 16;
    const ids = Int32Array.from({ length: 2 * seq }, (_, i) => (i * 13 + 1) % vocab);
    const x = await forwardHidden(arch, src, ids, seq);
    const l = await arch.logits(loadWeights(src, arch.headTensors()), x, seq);
    return Buffer.from(l.buffer, l.byteOffset, l.byteLength);
  } finally {
    ckpt.close();
  }
}

describe('prune --wbits on stories260K (magnitude)', () => {
  it('4 bits: round-to-nearest of the pruned weights on the reference grid of the unpruned ones; identical weights in every format', async () => {
    await prune(STORIES, 'p', {});
    await prune(STORIES, 'q-dense', { wbits: 4 });
    await prune(STORIES, 'q-sb', { wbits: 4, format: 'sparse-bitmask' });
    const orig = tensorBytes(STORIES);
    const pruned = tensorBytes(join(root, 'p'));
    const dense = tensorBytes(join(root, 'q-dense'));
    let checked = 0;
    let ties = 0;
    for (const [name, t] of dense) {
      if (!LLAMA_LINEAR.test(name)) {
        expect(t.bytes.equals(pruned.get(name)!.bytes)).toBe(true);
        continue;
      }
      const [rows, cols] = t.shape;
      const o = f32(orig.get(name)!);
      const p = f32(pruned.get(name)!);
      const q = f32(t);
      for (let r = 0; r < rows; r++) {
        const row = o.subarray(r * cols, (r + 1) * cols);
        const xmin = Math.min(0, ...row);
        const xmax = Math.max(0, ...row);
        const scale = Math.fround((xmax - xmin) / 15); // the reference's scale, as stored (float32)
        const zero = roundEven(-xmin / scale);
        for (let c = 0; c < cols; c++) {
          const x = p[r * cols + c];
          const u = x / scale;
          if (Math.abs(u - Math.floor(u) - 0.5) < 1e-6) {
            ties++;
            continue;
          }
          const code = Math.min(15, Math.max(0, roundEven(u) + zero));
          expect(q[r * cols + c]).toBe(Math.fround(scale * (code - zero)));
          if (x === 0) expect(q[r * cols + c]).toBe(0);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(200_000);
    expect(ties).toBeLessThan(10);

    // The compressed file holds codes, and decodes to exactly the dense output.
    const sbDir = join(root, 'q-sb');
    const stored = tensorBytes(sbDir);
    const W = 'model.layers.2.mlp.down_proj.weight';
    expect(stored.get(`${W}.codes`)).toMatchObject({ dtype: 'U8' });
    expect(stored.get(`${W}.scale`)).toMatchObject({ dtype: 'F32', shape: [64, 1] });
    expect(stored.get(`${W}.zero_point`)).toMatchObject({ dtype: 'U8', shape: [64, 1] });
    expect(stored.has(`${W}.compressed`)).toBe(false);
    const cfg = JSON.parse(readFileSync(join(sbDir, 'config.json'), 'utf8')).quantization_config;
    expect(cfg).toMatchObject({ quant_method: 'shears', format: 'sparse-bitmask', weights: { num_bits: 4, symmetric: false, dense_dtype: 'F32' } });
    const ck = Checkpoint.openFolder(sbDir);
    try {
      expect(ck.compression?.quant).toEqual({ bits: 4, denseDType: 'F32' });
      for (const [name, t] of dense) expect(Buffer.from(ck.readBytes(name)).equals(t.bytes), name).toBe(true);
    } finally {
      ck.close();
    }
    const back = join(root, 'q-sb-dense');
    await exportModel({ model: sbDir, format: 'dense', out: back });
    sameTensors(dense, tensorBytes(back));
    expect((await logits(sbDir, 512)).equals(await logits(join(root, 'q-dense'), 512))).toBe(true);
  });

  it('8 bits, 2:4: sparse-24-bitmask codes convert to sparse-bitmask codes and back without change', async () => {
    const spec = { kind: 'nm', n: 2, m: 4 } as const;
    await prune(STORIES, 'q24-dense', { spec, wbits: 8 });
    await prune(STORIES, 'q24-24', { spec, wbits: 8, format: 'sparse-24-bitmask' });
    const d24 = join(root, 'q24-24');
    const stored = tensorBytes(d24);
    expect(stored.get('model.layers.0.self_attn.q_proj.codes')).toMatchObject({ dtype: 'U8', shape: [64, 32] });
    const sb = join(root, 'q24-sb');
    await exportModel({ model: d24, format: 'sparse-bitmask', out: sb });
    const again = join(root, 'q24-again');
    await exportModel({ model: sb, format: 'sparse-24-bitmask', out: again });
    sameTensors(stored, tensorBytes(again));
    const ck = Checkpoint.openFolder(sb);
    try {
      for (const [name, t] of tensorBytes(join(root, 'q24-dense'))) expect(Buffer.from(ck.readBytes(name)).equals(t.bytes), name).toBe(true);
    } finally {
      ck.close();
    }
  });

  it('refuses --format sparse-24-bitmask without --pattern 2:4 before any work', async () => {
    await expect(prune(STORIES, 'bad24', { format: 'sparse-24-bitmask' })).rejects.toThrow(/needs --pattern 2:4/);
  });
});

describe('prune --wbits on GPT-2 (Conv1D weights stored [in, out])', () => {
  it('grids run along the stored columns and the compressed output matches the dense one', async () => {
    await prune(GPT2, 'g-dense', { wbits: 8 });
    await prune(GPT2, 'g-sb', { wbits: 8, format: 'sparse-bitmask' });
    const stored = tensorBytes(join(root, 'g-sb'));
    const name = [...stored.keys()].find((n) => n.endsWith('attn.c_attn.weight.scale'))!;
    expect(name).toBeDefined();
    const dense = tensorBytes(join(root, 'g-dense'));
    const [inDim, outDim] = dense.get(name.replace(/\.scale$/, ''))!.shape;
    expect(outDim).toBe(3 * inDim);
    expect(stored.get(name)!.shape).toEqual([1, outDim]);
    const ck = Checkpoint.openFolder(join(root, 'g-sb'));
    try {
      for (const [n, t] of dense) expect(Buffer.from(ck.readBytes(n)).equals(t.bytes), n).toBe(true);
    } finally {
      ck.close();
    }
  });
});
