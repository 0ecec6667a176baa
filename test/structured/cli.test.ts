/**
 * Structured pruning through the real CLI: the output's config, tensor names and shapes agree, it loads
 * back through shears' own loader (which checks every shape against config.json) and evaluates; dropped
 * blocks are renumbered with the kept blocks' tensors unchanged; GPT-2's transposed Conv1D weights and
 * biases are cut along the right axes; bad requests exit 2 with no output.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/io/checkpoint.js';
import { openModel } from '../../src/model.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { ShearsError } from '../../src/errors.js';
import { runStructuredPrune, type StructuredJob } from '../../src/structured/job.js';
import { REPO, runShears } from '../helpers/cli.js';

const STORIES = join(REPO, 'models', 'stories260K');
const GPT2 = join(REPO, 'test', 'fixtures', 'gpt2-tiny');
const root = mkdtempSync(join(tmpdir(), 'shears-structured-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const CALIB = ['--calibration', 'tinystories', '--nsamples', '8', '--seqlen', '64'];

/** In-process run (the CLI's own job function) with the same small calibration. */
function prune(model: string, out: string, o: Partial<StructuredJob>) {
  return runStructuredPrune({ model, out, method: 'sparsegpt', calibration: 'tinystories', nsamples: 8, seqlen: 64, ...o } as StructuredJob);
}

function config(dir: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
}

function shapes(dir: string): Map<string, number[]> {
  const c = Checkpoint.openFolder(dir);
  try {
    return new Map(c.tensorNames().map((n) => [n, c.info(n).shape]));
  } finally {
    c.close();
  }
}

describe('shears prune --channels --heads --drop-blocks (stories260K: 5 blocks, 8 heads in 4 KV groups, MLP 172)', () => {
  it('all three at once: config, names and shapes agree, the model loads and evaluates', async () => {
    const out = join(root, 'mix');
    const r = await runShears(REPO, 'prune', STORIES, '--channels', '0.3', '--heads', '0.25', '--drop-blocks', '1', ...CALIB, '--out', out, '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const rep = JSON.parse(r.stdout);
    const c = config(out);
    // 0.3 × 172 = 51.6 → 52 channels; 25% of 8 heads = one whole KV group of 2 (closer than 1 per group = 50%).
    expect(c.intermediate_size).toBe(120);
    expect([c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.num_hidden_layers]).toEqual([6, 3, 8, 4]);
    const s = shapes(out);
    const src = shapes(STORIES);
    const expected = new Map<string, number[]>();
    for (const [n, shape] of src) {
      const m = /^model\.layers\.(\d+)\.(.*)$/.exec(n);
      if (!m) expected.set(n, shape);
      else if (Number(m[1]) < 4) {
        const dims: Record<string, number[]> = {
          'self_attn.q_proj.weight': [48, 64], 'self_attn.k_proj.weight': [24, 64], 'self_attn.v_proj.weight': [24, 64], 'self_attn.o_proj.weight': [64, 48],
          'mlp.gate_proj.weight': [120, 64], 'mlp.up_proj.weight': [120, 64], 'mlp.down_proj.weight': [64, 120],
        };
        expected.set(n, dims[m[2]] ?? shape);
      }
    }
    expect(Object.fromEntries(s)).toEqual(Object.fromEntries(expected));
    // The report: per block what went, parameters before/after (counted here from the shapes).
    const count = (m: Map<string, number[]>) => [...m.values()].reduce((a, d) => a + d.reduce((x, y) => x * y, 1), 0);
    expect(rep.structured.params).toEqual({ before: count(src), after: count(s) });
    expect(rep.structured.dropBlocks.dropped).toHaveLength(1);
    expect(rep.structured.blocks.map((b: { source: number }) => b.source)).toEqual([0, 1, 2, 3, 4].filter((b) => b !== rep.structured.dropBlocks.dropped[0]));
    for (const b of rep.structured.blocks) {
      expect(b.removedChannels).toBe(52);
      expect(b.removedHeads).toHaveLength(2);
      expect(Math.floor(b.removedHeads[0] / 2)).toBe(Math.floor(b.removedHeads[1] / 2)); // one whole KV group
      expect(b.mlpLoss).toBeGreaterThan(0);
      expect(b.attentionLoss).toBeGreaterThan(0);
    }
    // shears' loader checks every tensor against the config; eval runs the reduced graph.
    const m = await openModel(out);
    expect([m.arch.spec.numLayers, m.arch.spec.numHeads, m.arch.spec.intermediateSize]).toEqual([4, 6, 120]);
    m.ckpt.close();
    const e = await runShears(REPO, 'eval', out, '--dataset', 'tinystories', '--seqlen', '64', '--max-tokens', '2048', '--json');
    expect(e.status).toBe(0);
    const ev = JSON.parse(e.stdout);
    expect(Number.isFinite(ev.perplexity)).toBe(true);
    expect(ev.tokensPerSecond).toBeGreaterThan(0);
  });

  it('--drop-blocks renumbers: output block j holds source block kept[j] unchanged, the rest is copied', async () => {
    const out = join(root, 'drop');
    const rep = await prune(STORIES, out, { dropBlocks: 2, blockScore: 'loss' });
    const { dropped, scores } = rep.structured.dropBlocks!;
    // The two smallest loss increases were dropped.
    const order = scores.map((v: number, i: number) => i).sort((a: number, b: number) => scores[a] - scores[b]);
    expect([...dropped].sort()).toEqual(order.slice(0, 2).sort());
    const kept = [0, 1, 2, 3, 4].filter((b) => !dropped.includes(b));
    expect(config(out).num_hidden_layers).toBe(3);
    const a = Checkpoint.openFolder(STORIES);
    const b = Checkpoint.openFolder(out);
    try {
      const outNames = b.tensorNames();
      for (const n of outNames) {
        const m = /^model\.layers\.(\d+)\.(.*)$/.exec(n);
        const from = m ? `model.layers.${kept[Number(m[1])]}.${m[2]}` : n;
        expect(Buffer.from(b.readBytes(n)).equals(Buffer.from(a.readBytes(from))), n).toBe(true);
      }
      expect(outNames.filter((n) => n.startsWith('model.layers.')).length).toBe(3 * 9);
    } finally {
      a.close();
      b.close();
    }
  });

  it('--heads 0.5 on GQA: one query head from every KV group, K/V untouched, q rows and o_proj columns of the same heads', async () => {
    const out = join(root, 'heads-per-group');
    const rep = await prune(STORIES, out, { heads: 0.5 });
    expect(rep.structured.heads!.mode).toBe('per-group');
    const c = config(out);
    expect([c.num_attention_heads, c.num_key_value_heads, c.head_dim]).toEqual([4, 4, 8]);
    const a = Checkpoint.openFolder(STORIES);
    const b = Checkpoint.openFolder(out);
    try {
      for (const blk of rep.structured.blocks) {
        const heads = blk.removedHeads!;
        expect(heads.map((h) => Math.floor(h / 2))).toEqual([0, 1, 2, 3]); // one per KV group
        const p = `model.layers.${blk.block}.self_attn`;
        for (const kv of ['k_proj', 'v_proj']) expect(Buffer.from(b.readBytes(`${p}.${kv}.weight`)).equals(Buffer.from(a.readBytes(`${p}.${kv}.weight`)))).toBe(true);
        // q_proj keeps exactly the rows of the kept heads, in order.
        const qa = a.readFloat32(`${p}.q_proj.weight`);
        const qb = b.readFloat32(`${p}.q_proj.weight`);
        const kept = [0, 1, 2, 3, 4, 5, 6, 7].filter((h) => !heads.includes(h));
        kept.forEach((h, i) => expect(qb.subarray(i * 8 * 64, (i + 1) * 8 * 64)).toEqual(qa.subarray(h * 8 * 64, (h + 1) * 8 * 64)));
        expect(b.info(`${p}.o_proj.weight`).shape).toEqual([64, 32]);
      }
    } finally {
      a.close();
      b.close();
    }
  });

  it('with --sparsity afterwards: the reduced model is pruned 50% unstructured in the same run', async () => {
    const out = join(root, 'ch-sp');
    const rep = await prune(STORIES, out, { method: 'wanda', channels: 0.3, spec: { kind: 'unstructured', sparsity: 0.5 } });
    expect(rep.unstructured!.sparsity).toBeCloseTo(0.5, 2);
    const written = JSON.parse(readFileSync(join(out, 'shears-report.json'), 'utf8'));
    expect(written.structured.channels.after).toBe(120);
    expect(shapes(out).get('model.layers.0.mlp.down_proj.weight')).toEqual([64, 120]);
  });

  it('refuses bad requests with exit 2 and writes nothing', async () => {
    const out = join(root, 'bad');
    const r = await runShears(REPO, 'prune', STORIES, '--channels', '1.5', ...CALIB, '--out', out);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--channels must be a fraction/);
    const cases: [Partial<StructuredJob>, RegExp][] = [
      [{ dropBlocks: 5 }, /at least one must stay/],
      [{ heads: 0.3, method: 'random' }, /does not do structured removal/],
      [{ heads: 0.01 }, /no uniform removal/],
    ];
    for (const [o, msg] of cases) {
      const e = await prune(STORIES, out, o).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(ShearsError);
      expect((e as ShearsError).exitCode).toBe(2);
      expect((e as Error).message).toMatch(msg);
    }
    expect(existsSync(out)).toBe(false);
  });
});

describe('GPT-2 (Conv1D weights stored [in, out], biases everywhere)', () => {
  it('--channels cuts c_fc columns and c_proj rows with their biases; n_inner is written; it loads back', async () => {
    const out = join(root, 'gpt2');
    // The fixture has no tokenizer: calibration windows of seeded ids.
    const ids = join(root, 'gpt2-ids.safetensors');
    const w = new SafetensorsWriter(ids, [{ name: 'input_ids', dtype: 'I32', shape: [4, 32] }], { format: 'pt' });
    w.write('input_ids', Int32Array.from({ length: 128 }, (_, i) => (i * 37 + 11) % 97));
    w.finish();
    const rep = await prune(GPT2, out, { channels: 0.25, calibTokens: ids });
    expect(rep.structured.blocks.every((b) => b.removedChannels === 64 && b.mlpLoss! > 0)).toBe(true);
    expect(config(out).n_inner).toBe(192);
    const s = shapes(out);
    const prefix = s.has('transformer.h.0.mlp.c_fc.weight') ? 'transformer.h.0.mlp' : 'h.0.mlp';
    expect(s.get(`${prefix}.c_fc.weight`)).toEqual([64, 192]);
    expect(s.get(`${prefix}.c_fc.bias`)).toEqual([192]);
    expect(s.get(`${prefix}.c_proj.weight`)).toEqual([192, 64]);
    expect(s.get(`${prefix}.c_proj.bias`)).toEqual([64]);
    const m = await openModel(out);
    expect(m.arch.spec.intermediateSize).toBe(192);
    m.ckpt.close();
  });

  it('--heads is refused: transformers derives GPT-2 head size from n_embd / n_head', async () => {
    const e = await prune(GPT2, join(root, 'gpt2-heads'), { heads: 0.25, method: 'magnitude' }).catch((x: unknown) => x);
    expect((e as ShearsError).exitCode).toBe(2);
    expect((e as Error).message).toMatch(/--heads/);
  });
});
