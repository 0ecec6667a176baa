import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ShearsError } from '../../src/errors.js';
import { parseLlama2cVocab, readLlama2cVocab, type Llama2cVocab } from '../../src/tokenize/llama2c-vocab.js';
import { buildSentencePieceTokenizer, byteTokenName } from '../../src/tokenize/sentencepiece-bpe.js';

const TOK512 = 'test/tokenize/tok512.bin';

/** A llama2.c vocabulary with the standard first 259 entries followed by `pieces` (piece, score). */
function vocabWith(pieces: [string, number][]): Llama2cVocab {
  const all: [string, number][] = [
    ['<unk>', 0],
    ['\n<s>\n', 0],
    ['\n</s>\n', 0],
    ...Array.from({ length: 256 }, (_, b): [string, number] => [byteTokenName(b), 0]),
    ...pieces,
  ];
  return { maxTokenLength: 16, pieces: all.map((p) => p[0]), scores: Float64Array.from(all.map((p) => p[1])) };
}

/** The bytes of a llama2.c tokenizer file holding `v`. */
function tokFileBytes(v: Llama2cVocab): Uint8Array {
  const parts: Buffer[] = [Buffer.alloc(4)];
  parts[0]!.writeInt32LE(v.maxTokenLength);
  v.pieces.forEach((p, i) => {
    const b = Buffer.from(p, 'utf8');
    const h = Buffer.alloc(8);
    h.writeFloatLE(v.scores[i]!, 0);
    h.writeInt32LE(b.length, 4);
    parts.push(h, b);
  });
  return Buffer.concat(parts);
}

function errorOf(f: () => unknown): ShearsError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ShearsError);
    expect((e as Error).message).not.toContain('\n');
    return e as ShearsError;
  }
  throw new Error('expected a ShearsError');
}

describe('llama2.c tokenizer file', () => {
  it('reads tok512.bin: 512 tokens, specials, byte tokens and score-ordered pieces', () => {
    const v = readLlama2cVocab(TOK512);
    expect(v.maxTokenLength).toBe(7);
    expect(v.pieces.length).toBe(512);
    expect(v.pieces.slice(0, 4)).toEqual(['<unk>', '\n<s>\n', '\n</s>\n', '<0x00>']);
    expect(v.pieces[258]).toBe('<0xFF>');
    expect(v.pieces[259]).toBe(' t');
    expect(v.scores[260]).toBe(-1);
  });

  it('round-trips through the file format and rejects truncated files with one-line errors', () => {
    const v = vocabWith([['a', -1]]);
    const bytes = tokFileBytes(v);
    const back = parseLlama2cVocab(bytes, 'x.bin');
    expect(back.pieces).toEqual(v.pieces);
    expect(errorOf(() => parseLlama2cVocab(bytes.subarray(0, bytes.length - 1), 'x.bin')).message).toMatch(/^x\.bin: .*truncated/);
    expect(errorOf(() => parseLlama2cVocab(bytes.subarray(0, 2), 'x.bin')).message).toMatch(/^x\.bin: /);
  });
});

describe('buildSentencePieceTokenizer', () => {
  it('is what models/stories260K ships', () => {
    const built = buildSentencePieceTokenizer(readLlama2cVocab(TOK512), TOK512, 512);
    expect(JSON.parse(readFileSync('models/stories260K/tokenizer.json', 'utf8'))).toEqual(built.tokenizerJson);
    expect(JSON.parse(readFileSync('models/stories260K/tokenizer_config.json', 'utf8'))).toEqual(built.tokenizerConfig);
  });

  it('lists every split of every piece into two pieces, ranked by the score of the result', () => {
    const v = readLlama2cVocab(TOK512);
    const { merges, tokenizerJson } = buildSentencePieceTokenizer(v, TOK512, 512);
    const model = tokenizerJson.model as { vocab: Record<string, number>; merges: [string, string][] };
    // Independent count: pairs of ordinary pieces (id >= 259) whose concatenation is a piece.
    const ordinary = new Set(v.pieces.slice(259));
    let splits = 0;
    for (const t of ordinary) for (let k = 1; k < t.length; k++) if (ordinary.has(t.slice(0, k)) && ordinary.has(t.slice(k))) splits++;
    expect(merges.length).toBe(splits);
    expect(model.merges.length).toBe(splits);
    for (let i = 0; i < merges.length; i++) {
      const [a, b] = model.merges[i]!;
      expect(model.vocab[a + b]).toBe(merges[i]!.resultId);
      expect(a.includes(' ') || b.includes(' ')).toBe(false);
      if (i > 0) expect(v.scores[merges[i]!.resultId]!).toBeLessThanOrEqual(v.scores[merges[i - 1]!.resultId]!);
    }
    expect(model.vocab['\u2581t']).toBe(259);
    expect(model.vocab['<s>']).toBe(1);
    expect(model.vocab['<0x0A>']).toBe(13);
  });

  it('refuses vocabularies whose llama2.c merging HF ranks cannot reproduce', () => {
    // Two different merge results with the same score: llama2.c breaks the tie by position, HF by rank.
    expect(errorOf(() => buildSentencePieceTokenizer(vocabWith([[' ', -9], ['a', -1], ['b', -2], ['ab', -3], ['ba', -3]]), 't.bin', 8)).message).toMatch(
      /^t\.bin: tokens \d+ and \d+ are both merge results with score -3/,
    );
    // llama2.c would merge two pieces into the byte token <0x41>, which HF never does.
    expect(errorOf(() => buildSentencePieceTokenizer(vocabWith([[' ', -9], ['<0x4', -1], ['1>', -2]]), 't.bin', 8)).message).toMatch(/special and byte tokens/);
    expect(errorOf(() => buildSentencePieceTokenizer(vocabWith([[' ', -9], ['\u2581a', -1]]), 't.bin', 8)).message).toMatch(/contains "▁"/);
    expect(errorOf(() => buildSentencePieceTokenizer(vocabWith([[' ', -9], ['a', -1], ['a', -2]]), 't.bin', 8)).message).toMatch(/are both "a"/);
    expect(errorOf(() => buildSentencePieceTokenizer(vocabWith([['a', -1]]), 't.bin', 8)).message).toMatch(/has no " " token/);
    const v = vocabWith([[' ', -9], ['a', -1]]);
    v.pieces[40] = 'x';
    expect(errorOf(() => buildSentencePieceTokenizer(v, 't.bin', 8)).message).toMatch(/token 40 is "x", expected byte token <0x25>/);
  });

  it('accepts equal scores among results that are the same token (several splits of one piece)', () => {
    const v = vocabWith([[' ', -9], ['a', -5], ['b', -6], ['c', -7], ['ab', -1], ['bc', -2], ['abc', -3]]);
    const { merges } = buildSentencePieceTokenizer(v, 't.bin', 8);
    expect(merges.map((m) => m.left + '+' + m.right)).toEqual(['a+b', 'b+c', 'a+bc', 'ab+c']);
  });
});
