import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openModel } from '../../src/model.js';
import { greedy } from '../../src/run/generate.js';
import { loadTokenizer } from '../../src/tokenize/tokenizer.js';

const MODEL = join(import.meta.dirname, '..', '..', 'models', 'stories260K');

// Published in llama2.c doc/stories260K.md: greedy decoding (temperature 0) from BOS.
const PUBLISHED =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.';

describe('the converted stories260K', () => {
  it('reproduces Karpathy\'s published greedy sample from BOS', async () => {
    const { ckpt, arch, src } = await openModel(MODEL);
    const tok = loadTokenizer(ckpt.dir);
    const want = tok.encode(PUBLISHED);
    const got = await greedy(arch, src, Int32Array.of(tok.bosId!), want.length);
    // The sample as published stops mid-stream; the model goes on to a new line.
    expect(tok.decode(got).startsWith(PUBLISHED)).toBe(true);

    ckpt.close();
  });
});
