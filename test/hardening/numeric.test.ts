/**
 * Numeric faults end to end on copies of stories260K: NaN/Inf in a weight or in activations is found,
 * named (file, tensor / block, layer) and stops the run unless allowNonfinite; a rank-deficient
 * calibration (one token repeated) makes every Hessian singular, which --damp 0 turns into failed
 * Cholesky factorizations that the damping retry recovers, recorded in shears-report.json; an input
 * column that is never active has its weights zeroed.
 */
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ShearsError } from '../../src/errors.js';
import { runPrune, type PruneJob, type PruneReport } from '../../src/prune/job.js';
import { evaluateModel } from '../../src/eval/evaluate.js';
import { SafetensorsReader } from '../../src/io/safetensors/reader.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { editedModel } from './model-copy.js';
import { scratchDir } from './fuzz-helpers.js';

const root = scratchDir('numeric');
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

function job(model: string, over: Partial<PruneJob> = {}): PruneJob {
  return {
    model, out: join(root, `out-${n++}`), method: 'wanda', spec: { kind: 'unstructured', sparsity: 0.5 },
    calibration: 'tinystories', nsamples: 4, seqlen: 64, seed: 0, ...over,
  };
}

async function refused(j: PruneJob): Promise<string> {
  const e = await runPrune(j).then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(ShearsError);
  expect(existsSync(j.out)).toBe(false);
  expect(readdirSync(root).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
  return (e as Error).message;
}

const UP1 = 'model.layers.1.mlp.up_proj.weight';
const nanModel = editedModel(join(root, 'nan-weight'), { [UP1]: (v) => { v[5] = NaN; v[700] = Infinity; } });

describe('NaN/Inf in the weights', () => {
  it('prune stops at the tensor, naming the file, the tensor, the count and the first value', async () => {
    const msg = await refused(job(nanModel));
    expect(msg).toBe(
      `${join(nanModel, 'model.safetensors')}: tensor "${UP1}" has 2 non-finite value(s) of 11008 (first: NaN at index 5); ` +
        'the checkpoint itself holds them; pass --allow-nonfinite to go on anyway',
    );
  });

  it('allowNonfinite goes on and lists every place in the report', async () => {
    const j = job(nanModel, { allowNonfinite: true });
    const r = await runPrune(j);
    const onDisk = JSON.parse(readFileSync(join(j.out, 'shears-report.json'), 'utf8')) as PruneReport;
    expect(onDisk.nonFinite).toEqual(r.nonFinite);
    expect(r.nonFinite[0]).toEqual({ where: `${join(nanModel, 'model.safetensors')}: tensor "${UP1}"`, count: 2, total: 11008, firstIndex: 5, firstValue: 'NaN' });
    // The NaN flows on: block 1's down_proj input and every later block output are flagged too.
    expect(r.nonFinite.map((f) => f.where)).toContain('block 1: the input statistics of mlp.down_proj');
    expect(r.nonFinite.map((f) => f.where)).toContain('block 4: its output on the calibration windows');
  });

  it('eval stops likewise, and with allowNonfinite reports a NaN perplexity with the faults', async () => {
    const e = await evaluateModel({ model: nanModel, dataset: 'tinystories', seqlen: 64, maxTokens: 256 }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(ShearsError);
    expect((e as Error).message).toContain(`tensor "${UP1}" has 2 non-finite value(s)`);
    const r = await evaluateModel({ model: nanModel, dataset: 'tinystories', seqlen: 64, maxTokens: 256, allowNonfinite: true });
    expect(r.perplexity).toBeNaN();
    expect(r.nonFinite?.[0]?.where).toContain(UP1);
    expect(r.nonFinite?.map((f) => f.where)).toContain('the next-token log-likelihoods (final norm and LM head)');
  });
});

describe('NaN/Inf arising in the activations (all weights finite)', () => {
  // A norm gain of 1e30 is a finite float32, but gate·up of the normalised input then overflows float32.
  const NORM = 'model.layers.0.post_attention_layernorm.weight';
  const hot = editedModel(join(root, 'overflow'), { [NORM]: (v) => v.fill(1e30) });

  it('wanda: named at the first layer whose float32 column sums of squares overflow (as the reference\'s float32 norms do)', async () => {
    const msg = await refused(job(hot));
    expect(msg).toMatch(/^block 0: the input statistics of mlp\.gate_proj, mlp\.up_proj has \d+ non-finite value\(s\) of 64 \(first: (NaN|Infinity) at index \d+\); the activations entering these layers are not finite; pass --allow-nonfinite/);
  });

  it('sparsegpt: its float32 Hessian of the MLP input already overflows', async () => {
    const msg = await refused(job(hot, { method: 'sparsegpt' }));
    expect(msg).toMatch(/^block 0: the input statistics of mlp\.gate_proj, mlp\.up_proj has \d+ non-finite value\(s\) of 4096/);
  });
});

/** Windows that are one token repeated: every layer input has identical rows, so XᵀX has rank 1. */
function constantWindows(path: string, id: number, count: number, seqlen: number): string {
  const w = new SafetensorsWriter(path, [{ name: 'input_ids', dtype: 'I32', shape: [count, seqlen] }]);
  w.write('input_ids', new Int32Array(count * seqlen).fill(id));
  w.finish();
  return path;
}

describe('a Hessian that is not positive definite', () => {
  it('rank-1 calibration with --damp 0: Cholesky fails, the retry with damp 0.01 succeeds, the report says so', async () => {
    const calib = constantWindows(join(root, 'constant.safetensors'), 300, 4, 32);
    const j = job(join(import.meta.dirname, '..', '..', 'models', 'stories260K'), { method: 'sparsegpt', calibTokens: calib, damp: 0 });
    await runPrune(j);
    const report = JSON.parse(readFileSync(join(j.out, 'shears-report.json'), 'utf8')) as PruneReport;
    // Rank 1 (64 or 172 columns) cannot be factorised undamped in any layer; one retry (0 → 0.01) is enough.
    expect(report.layers).toHaveLength(35);
    for (const l of report.layers) {
      expect(l.retries, l.tensor).toBe(1);
      expect(l.damp).toBe(0.01);
      expect(l.notes).toContain('Cholesky failed; succeeded after 1 retry with damp 0.01');
      expect(l.sparsity).toBeGreaterThanOrEqual(0.5);
    }
    const out = SafetensorsReader.open(join(j.out, 'model.safetensors'));
    for (const l of report.layers) expect(out.readFloat32(l.tensor).every(Number.isFinite)).toBe(true);
    out.close();
    // Control: real text at --damp 0 gives full-rank Hessians for the 64-wide inputs, factorised first time.
    const control = await runPrune({ ...j, out: join(root, `out-${n++}`), calibTokens: undefined });
    for (const l of control.layers.filter((x) => x.cols === 64)) expect(l.retries, l.tensor).toBe(0);
  });
});

describe('dead input columns', () => {
  // A zero gain makes input feature 3 of q/k/v in block 0 exactly 0 for every token.
  const NORM = 'model.layers.0.input_layernorm.weight';
  const dead = editedModel(join(root, 'dead-column'), { [NORM]: (v) => { v[3] = 0; } });

  for (const method of ['sparsegpt', 'wanda'] as const) {
    it(`${method}: the weights reading a never-active input are zeroed (they cannot matter), and the rest is pruned`, async () => {
      const j = job(dead, { method });
      const r = await runPrune(j);
      const out = SafetensorsReader.open(join(j.out, 'model.safetensors'));
      for (const name of ['q_proj', 'k_proj', 'v_proj']) {
        const tensor = `model.layers.0.self_attn.${name}.weight`;
        const layer = r.layers.find((l) => l.tensor === tensor)!;
        const w = out.readFloat32(tensor);
        for (let row = 0; row < layer.rows; row++) expect(w[row * layer.cols + 3]).toBe(0);
        if (method === 'sparsegpt') expect(layer.notes).toContain('1 input column(s) never active in calibration: their weights are zeroed');
        expect(layer.sparsity).toBeGreaterThanOrEqual(0.5);
      }
      out.close();
    });
  }
});
