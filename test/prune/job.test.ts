/**
 * End-to-end pruning on the bundled real model: what lands in the output folder, the report, and the
 * layer-sequential semantics (block b is calibrated on the outputs of the already-pruned blocks < b).
 */
import { mkdtempSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runPrune, type PruneJob } from '../../src/prune/job.js';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { openModel } from '../../src/model.js';
import { loadWeights, runBlockOver } from '../../src/run/blocks.js';
import { ColumnNormAccumulator } from '../../src/prune/stats.js';
import { wandaPrune } from '../../src/prune/wanda.js';
import { readWindowsFile } from '../../src/data/calibration.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';

const MODEL = join(import.meta.dirname, '..', '..', 'models', 'stories260K');
const tmp = mkdtempSync(join(tmpdir(), 'shears-job-'));
let n = 0;

function job(over: Partial<PruneJob>): PruneJob {
  return {
    model: MODEL,
    out: join(tmp, `out-${n++}`),
    method: 'wanda',
    spec: { kind: 'unstructured', sparsity: 0.5 },
    calibration: 'tinystories',
    nsamples: 8,
    seqlen: 64,
    seed: 0,
    ...over,
  };
}

function zeros(a: Float32Array): number {
  let z = 0;
  for (const v of a) if (v === 0) z++;
  return z;
}

describe('shears prune on stories260K', () => {
  it('writes an HF folder: block linears pruned, everything else byte-identical, report beside it', async () => {
    const j = job({ method: 'sparsegpt' });
    const report = await runPrune(j);
    const src = Checkpoint.openFolder(MODEL);
    const out = Checkpoint.openFolder(j.out);
    expect(out.tensorNames()).toEqual(src.tensorNames());
    const linears = new Set(report.layers.map((l) => l.tensor));
    expect(linears.size).toBe(5 * 7);
    for (const name of src.tensorNames()) {
      expect(out.info(name).dtype).toBe(src.info(name).dtype);
      if (!linears.has(name)) expect(Buffer.from(out.readBytes(name)).equals(Buffer.from(src.readBytes(name)))).toBe(true);
      else expect(zeros(out.readFloat32(name)) / out.info(name).numel).toBeGreaterThanOrEqual(0.5);
    }
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
      expect(readFileSync(join(j.out, f), 'utf8')).toBe(readFileSync(join(MODEL, f), 'utf8'));
    }
    const onDisk = JSON.parse(readFileSync(join(j.out, 'shears-report.json'), 'utf8'));
    expect(onDisk.method).toBe('sparsegpt');
    expect(onDisk.layers).toHaveLength(35);
    expect(onDisk.layers.every((l: { loss: number }) => l.loss >= 0)).toBe(true);
    expect(onDisk.calibration).toMatchObject({ nsamples: 8, seqlen: 64, seed: 0 });
    expect(report.sparsity).toBeGreaterThanOrEqual(0.5);
    expect(readdirSync(tmp).filter((f) => f.includes('.tmp'))).toEqual([]);
    src.close();
    out.close();
  });

  it('2:4 holds in every pruned layer for every method', async () => {
    for (const method of ['magnitude', 'wanda', 'sparsegpt'] as const) {
      const r = await runPrune(job({ method, spec: { kind: 'nm', n: 2, m: 4 } }));
      expect(r.nmOk).toBe(true);
      for (const l of r.layers) expect(l.sparsity).toBeCloseTo(0.5, 10);
    }
  });

  it('is layer-sequential: block b\'s Wanda masks come from inputs produced by the pruned blocks < b', async () => {
    const j = job({ method: 'wanda', saveCalibTokens: join(tmp, 'calib.safetensors') });
    await runPrune(j);
    const windows = readWindowsFile(join(tmp, 'calib.safetensors'), 512);
    const pruned = await openModel(j.out);
    const dense = await openModel(MODEL);
    const { arch } = dense;
    // Hidden states entering block b = embed, then the *pruned* blocks 0..b-1 from the output folder.
    const x = await arch.embed(loadWeights(dense.src, arch.embedTensors()), windows.ids, windows.seqlen);
    for (let b = 0; b < arch.spec.numLayers; b++) {
      const denseW = loadWeights(dense.src, arch.blockTensors(b));
      const acc = new Map<string, ColumnNormAccumulator>();
      for (const l of arch.linears(b)) acc.set(l.input, new ColumnNormAccumulator(l.cols));
      await runBlockOver(arch, b, denseW, x, windows.seqlen, new Float32Array(x.length), async (inputs, n) => {
        for (const [id, a] of acc) await a.add(inputs[id], inputs[id].length / a.cols, n);
      });
      for (const l of arch.linears(b)) {
        const w = { data: Float32Array.from(denseW.get(l.tensor)!), rows: l.rows, cols: l.cols };
        wandaPrune(w, acc.get(l.input)!.result(), { kind: 'unstructured', sparsity: 0.5 });
        expect(pruned.src.readFloat32(l.tensor)).toEqual(w.data);
      }
      await runBlockOver(arch, b, loadWeights(pruned.src, arch.blockTensors(b)), x, windows.seqlen, x);
    }
    pruned.ckpt.close();
    dense.ckpt.close();
  });

  it('--skip keeps matching layers dense; --layer-sparsity sets a block\'s sparsity', async () => {
    const r = await runPrune(job({ method: 'magnitude', skip: ['*.mlp.down_proj'], layerSparsity: [0.25] }));
    const src = Checkpoint.openFolder(MODEL);
    for (const l of r.layers) {
      if (l.name === 'mlp.down_proj') {
        expect(l.skipped).toBe(true);
        expect(l.sparsity).toBe(zeros(src.readFloat32(l.tensor)) / (l.rows * l.cols));
      } else {
        expect(l.sparsity).toBeCloseTo(l.block === 0 ? 0.25 : 0.5, 2);
      }
    }
    src.close();
  });

  it('refuses an existing output folder unless overwrite; same command, same bytes', async () => {
    const j = job({ method: 'sparsegpt', spec: { kind: 'nm', n: 2, m: 4 } });
    await runPrune(j);
    await expect(runPrune(j)).rejects.toThrow(/already exists/);
    const first = readFileSync(join(j.out, 'model.safetensors'));
    await runPrune({ ...j, overwrite: true });
    expect(readFileSync(join(j.out, 'model.safetensors')).equals(first)).toBe(true);
    expect(existsSync(join(j.out, 'shears-report.json'))).toBe(true);
  });

  it('--include-lm-head prunes an untied head calibrated on the final hidden states; a tied head is refused', async () => {
    const fixture = join(import.meta.dirname, '..', 'fixtures', 'llama-tiny-gqa');
    const calib = join(tmp, 'fixture-calib.safetensors');
    const w = new SafetensorsWriter(calib, [{ name: 'ids', dtype: 'I32', shape: [4, 16] }]);
    w.write('ids', Int32Array.from({ length: 64 }, (_, k) => (k * 37 + 11) % 101));
    w.finish();
    for (const method of ['magnitude', 'sparsegpt'] as const) {
      const j = job({ model: fixture, method, calibTokens: calib, includeLmHead: true });
      const r = await runPrune(j);
      const head = r.layers.find((l) => l.tensor === 'lm_head.weight')!;
      expect(head.block).toBe(2);
      expect(head.sparsity).toBeGreaterThanOrEqual(0.5);
      const out = Checkpoint.openFolder(j.out);
      expect(zeros(out.readFloat32('lm_head.weight')) / (101 * 64)).toBe(head.sparsity);
      out.close();
    }
    await expect(runPrune(job({ method: 'magnitude', includeLmHead: true }))).rejects.toThrow(/--include-lm-head: model.embed_tokens.weight is tied to the input embedding/);
  });
});
