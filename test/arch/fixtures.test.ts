/**
 * The GPT-2 and GQA-Llama adapters against the oracle vectors in test/fixtures (computed by nanoGPT's and
 * llama2.c's PyTorch model.py, see test/fixtures/README.md): embed → blocks → logits on the 2×24 input ids,
 * compared with the hidden state after block 0 and the logits at the README's tight bound, 1e-5 relative.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createGpt2 } from '../../src/arch/gpt2.js';
import { createLlama } from '../../src/arch/llama.js';
import type { Architecture, Weights } from '../../src/arch/types.js';
import { SafetensorsReader } from '../../src/io/safetensors/reader.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');

function relErr(got: Float32Array, exp: Float32Array): number {
  expect(got.length).toBe(exp.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < exp.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - exp[i]));
    scale = Math.max(scale, Math.abs(exp[i]));
  }
  return diff / scale;
}

async function forward(dir: string, create: typeof createLlama) {
  const configPath = join(FIXTURES, dir, 'config.json');
  const model = SafetensorsReader.open(join(FIXTURES, dir, 'model.safetensors'));
  const expected = SafetensorsReader.open(join(FIXTURES, dir, 'expected.safetensors'));
  const arch: Architecture = create(JSON.parse(readFileSync(configPath, 'utf8')), configPath);
  const load = (names: string[]): Weights => new Map(names.map((n) => [n, model.readFloat32(n)]));

  const ids64 = expected.readTyped('input_ids') as BigInt64Array;
  const seq = expected.info('input_ids').shape[1];
  const ids = Int32Array.from(ids64, Number);
  let x = await arch.embed(load(arch.embedTensors()), ids, seq);
  let afterBlock0: Float32Array | undefined;
  for (let i = 0; i < arch.spec.numLayers; i++) {
    const w = load(arch.blockTensors(i));
    x = (await arch.runBlock(i, w, x, seq, false)).out;
    if (i === 0) afterBlock0 = x;
  }
  const logits = await arch.logits(load(arch.headTensors()), x, seq);
  const result = {
    arch,
    hidden: relErr(afterBlock0!, expected.readFloat32('hidden_after_block_0')),
    logits: relErr(logits, expected.readFloat32('logits')),
  };
  model.close();
  expected.close();
  return result;
}

describe('oracle fixtures', () => {
  it('gpt2-tiny: hidden state after block 0 and logits within 1e-5 of nanoGPT', async () => {
    const r = await forward('gpt2-tiny', createGpt2);
    expect(r.arch.spec.tieWordEmbeddings).toBe(true);
    expect(r.hidden).toBeLessThanOrEqual(1e-5);
    expect(r.logits).toBeLessThanOrEqual(1e-5);
  });

  it('llama-tiny-gqa: hidden state after block 0 and logits within 1e-5 of llama2.c', async () => {
    const r = await forward('llama-tiny-gqa', createLlama);
    expect(r.arch.spec.numKvHeads).toBe(2);
    expect(r.hidden).toBeLessThanOrEqual(1e-5);
    expect(r.logits).toBeLessThanOrEqual(1e-5);
  });
});
