/**
 * The bundled stories260K tokenizer against an independent implementation of llama2.c's encoder (run.c
 * `encode`), written here from the tokenizer file alone. test/tokenize/tok512.bin is llama2.c's
 * stories260K tokenizer (MIT; sha256 037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, describe, expect, it } from 'vitest';
import { loadTokenizer } from '../../src/tokenize/tokenizer.js';

const MODEL_DIR = 'models/stories260K';
const tok = loadTokenizer(MODEL_DIR);
const validation = readFileSync('calibration/tinystories-validation.txt', 'utf8');
const wikitext = readFileSync('calibration/wikitext2-test.txt', 'utf8');
/** A TinyStories slice with the special tokens' texts scattered through it. */
const withSpecials = validation
  .slice(10000, 40000)
  .split('. ')
  .map((s, i) => (i % 7 === 3 ? `${s}<s>` : i % 11 === 5 ? `${s} </s>\n` : i % 13 === 0 ? `<unk>${s}` : s))
  .join('. ');

/** llama2.c's vocabulary: pieces (spaces literal, BOS "\n<s>\n", bytes "<0xXX>") and scores. */
function readTok512(path: string): { pieces: string[]; scores: number[] } {
  const b = readFileSync(path);
  const pieces: string[] = [];
  const scores: number[] = [];
  for (let pos = 4; pos < b.length; ) {
    scores.push(b.readFloatLE(pos));
    const len = b.readInt32LE(pos + 4);
    pieces.push(b.toString('utf8', pos + 8, pos + 8 + len));
    pos += 8 + len;
  }
  return { pieces, scores };
}

const ref = readTok512('test/tokenize/tok512.bin');
const lookup = new Map(ref.pieces.map((p, i) => [p, i]));

/**
 * llama2.c's merge loop on a token list: repeatedly take the adjacent pair whose concatenated *strings* are a
 * vocabulary entry of highest score ("> best", so the leftmost wins ties; best starts at -1e10), replace it by
 * that entry. The score of each pair is cached and only the two pairs next to a merge are recomputed; the
 * choice is the same as run.c's full rescan.
 */
function llama2cMerge(tokens: number[]): number[] {
  const t = tokens.slice();
  const pairScore = (i: number): [number, number] => {
    const id = lookup.get(ref.pieces[t[i]!]! + ref.pieces[t[i + 1]!]!);
    return id === undefined ? [-Infinity, -1] : [ref.scores[id]!, id];
  };
  const cache = t.slice(0, -1).map((_, i) => pairScore(i));
  for (;;) {
    let best = -1e10;
    let bestIdx = -1;
    for (let i = 0; i < cache.length; i++) {
      if (cache[i]![0] > best) {
        best = cache[i]![0];
        bestIdx = i;
      }
    }
    if (bestIdx < 0) return t;
    t.splice(bestIdx, 2, cache[bestIdx]![1]);
    cache.splice(bestIdx, 1);
    if (bestIdx < t.length - 1) cache[bestIdx] = pairScore(bestIdx);
    else cache.splice(bestIdx, 1);
    if (bestIdx > 0) cache[bestIdx - 1] = pairScore(bestIdx - 1);
  }
}

/** run.c's initial tokens: one per UTF-8 character if it is a vocabulary entry, else its bytes + 3. */
function llama2cSymbols(text: string): number[] {
  const out: number[] = [];
  for (const ch of text) {
    const id = lookup.get(ch);
    if (id !== undefined) out.push(id);
    else for (const byte of Buffer.from(ch, 'utf8')) out.push(byte + 3);
  }
  return out;
}

const NEWLINE_ID = 0x0a + 3;

/**
 * What llama2.c's encode(text, bos=0, eos=0) returns for the whole text. Its dummy prefix is the " " token
 * put before the first character of a non-empty text. "\n" is no vocabulary entry (checked below), so every
 * newline becomes byte token 13, whose string "<0x0A>" is in no concatenation that is a vocabulary entry;
 * no merge can involve it, the merges on either side of it never meet, and running the loop per line gives
 * the ids of the whole text while keeping the O(n²) loop short.
 */
function llama2cEncodeWhole(text: string): number[] {
  if (text.length === 0) return [];
  const out: number[] = [];
  text.split('\n').forEach((line, i) => {
    if (i > 0) out.push(NEWLINE_ID);
    out.push(...llama2cMerge(llama2cSymbols((i === 0 ? ' ' : '') + line)));
  });
  return out;
}

describe('llama2.c facts the reference relies on', () => {
  it('has no "\\n" entry and no merge can involve a newline token', () => {
    expect(lookup.has('\n')).toBe(false);
    expect(ref.pieces[NEWLINE_ID]).toBe('<0x0A>');
    const withNewline = ref.pieces.filter((p) => p.includes('\n'));
    expect(withNewline).toEqual(['\n<s>\n', '\n</s>\n']);
    for (const p of ref.pieces) {
      expect(lookup.has(p + '<0x0A>')).toBe(false);
      expect(lookup.has('<0x0A>' + p)).toBe(false);
      // BOS/EOS, the only strings with "\n", are never the concatenation of two entries.
      for (const special of ['\n<s>\n', '\n</s>\n']) {
        if (special.startsWith(p) && p !== special) expect(lookup.has(special.slice(p.length))).toBe(false);
      }
    }
  });
});

describe('loadTokenizer(models/stories260K)', () => {
  it('reports BOS 1, EOS 2, 512 ids and adds BOS by default like LlamaTokenizer', () => {
    expect(tok.bosId).toBe(1);
    expect(tok.eosId).toBe(2);
    expect(tok.vocabSize).toBe(512);
    expect(tok.addBosByDefault).toBe(true);
    const ids = tok.encode('Once upon a time');
    expect(ids).toBeInstanceOf(Int32Array);
    expect(ids[0]).toBe(1);
    expect(Array.from(tok.encode('Once upon a time', { addBos: false }))).toEqual(llama2cEncodeWhole('Once upon a time'));
  });

  it('gives llama2.c ids for the whole TinyStories validation text', () => {
    const want = llama2cEncodeWhole(validation);
    const got = tok.encode(validation, { addBos: false });
    expect(got.length).toBe(want.length);
    let firstDiff = -1;
    for (let i = 0; i < want.length; i++) {
      if (got[i] !== want[i]) {
        firstDiff = i;
        break;
      }
    }
    expect(firstDiff).toBe(-1);
    const withBos = tok.encode(validation, { addBos: true });
    expect(withBos[0]).toBe(1);
    expect(withBos.length).toBe(want.length + 1);
  });

  it('equals the HF library encoding the text in one piece (TinyStories and WikiText slices)', () => {
    const hf = new Tokenizer(
      JSON.parse(readFileSync(`${MODEL_DIR}/tokenizer.json`, 'utf8')),
      JSON.parse(readFileSync(`${MODEL_DIR}/tokenizer_config.json`, 'utf8')),
    );
    for (const text of [validation.slice(3000, 60000), wikitext.slice(0, 60000)]) {
      const want = hf.encode(text, { add_special_tokens: false }).ids;
      expect(Array.from(tok.encode(text, { addBos: false }))).toEqual(want);
    }
    // Special-token texts split the text into sections, each with its own "▁" prefix, as in the library.
    for (const text of ['Lily said <s> hi</s>\n<unk> ok', '<s>', ' </s> ', withSpecials]) {
      expect(Array.from(tok.encode(text, { addBos: false }))).toEqual(hf.encode(text, { add_special_tokens: false }).ids);
    }
  });

  it('agrees with llama2.c and with the HF library on random strings of pieces, blanks and unknown characters', () => {
    const hf = new Tokenizer(JSON.parse(readFileSync(`${MODEL_DIR}/tokenizer.json`, 'utf8')), {});
    let seed = 12345;
    const rand = () => {
      // mulberry32
      seed = (seed + 0x6d2b79f5) | 0;
      let t = seed;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const pieces = ref.pieces.slice(259);
    const extras = ['\n', '\n\n', ' ', '  ', '\t', 'é', 'ñ', '中', '😀', '\r\n', '<', '>', 'x'];
    let compared = 0;
    for (let n = 0; n < 400; n++) {
      let s = '';
      const len = 1 + Math.floor(rand() * 30);
      for (let k = 0; k < len; k++) s += rand() < 0.75 ? pieces[Math.floor(rand() * pieces.length)] : extras[Math.floor(rand() * extras.length)];
      const got = Array.from(tok.encode(s, { addBos: false }));
      expect(got).toEqual(hf.encode(s, { add_special_tokens: false }).ids);
      if (!/<unk>|<s>|<\/s>/.test(s)) {
        expect(got).toEqual(llama2cEncodeWhole(s));
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(350);
  });

  it('decodes what it encodes back to the same text', () => {
    for (const text of [validation.slice(0, 20000), wikitext.slice(0, 20000), ' leading space', 'trailing \n\n', 'é中😀\tx', '']) {
      expect(tok.decode(tok.encode(text, { addBos: true }))).toBe(text);
    }
    expect(tok.decode([1, 403, 407], { skipSpecialTokens: false }).startsWith('<s>')).toBe(true);
  });

  it('derives its cut points from the merges: newlines always, and before every space for this vocabulary', () => {
    for (const x of ['a', '.', ' ', '\u2581']) expect(tok.canCutBetween(x, '\n')).toBe(true);
    expect(tok.canCutBetween('\n', '\u2581')).toBe(true);
    expect(tok.canCutBetween('a', '\u2581')).toBe(true);
    // " the" is a piece: "▁t", "th", "he" are crossed by merges.
    expect(tok.canCutBetween('\u2581', 't')).toBe(false);
    expect(tok.canCutBetween('t', 'h')).toBe(false);
  });

  it('encodes 1.3 MB of WikiText in a few seconds', () => {
    const t0 = performance.now();
    const ids = tok.encode(wikitext, { addBos: false });
    const seconds = (performance.now() - t0) / 1000;
    expect(ids.length).toBeGreaterThan(500_000);
    expect(seconds).toBeLessThan(5);
  });
});

describe('loadTokenizer on other layouts of the same vocabulary', () => {
  const base = JSON.parse(readFileSync(`${MODEL_DIR}/tokenizer.json`, 'utf8'));
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const variant = (edit: (j: any) => void) => {
    const j = structuredClone(base);
    edit(j);
    const dir = mkdtempSync(join(tmpdir(), 'shears-tok-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(j));
    return { tok: loadTokenizer(dir), hf: new Tokenizer(j, {}) };
  };
  const texts = [validation.slice(0, 30000), wikitext.slice(0, 30000), ' leading', 'é中😀 x\n\nyé中', '\n\nstart', withSpecials];

  it('Metaspace pre-tokenizer instead of the Prepend/Replace normalizer: same ids as the library', () => {
    const { tok: t, hf } = variant((j) => {
      j.normalizer = null;
      j.pre_tokenizer = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false };
    });
    expect(t.canCutBetween('a', '\n')).toBe(true);
    for (const text of texts) expect(Array.from(t.encode(text, { addBos: false }))).toEqual(hf.encode(text, { add_special_tokens: false }).ids);
  });

  it('no byte fallback, so unknowns are fused across cuts: same ids as the library', () => {
    const { tok: t, hf } = variant((j) => {
      j.model.byte_fallback = false;
    });
    for (const text of texts) expect(Array.from(t.encode(text, { addBos: false }))).toEqual(hf.encode(text, { add_special_tokens: false }).ids);
    // "é" and "中" are unknown; fused into one <unk> even though a cut separates them.
    expect(Array.from(t.encode('é中', { addBos: false })).filter((id) => id === 0).length).toBe(1);
  });

  it('ignore_merges makes cutting unsafe: falls back to the whole text', () => {
    const { tok: t, hf } = variant((j) => {
      j.model.ignore_merges = true;
    });
    expect(t.canCutBetween('a', '\n')).toBe(false);
    const text = validation.slice(0, 5000);
    expect(Array.from(t.encode(text, { addBos: false }))).toEqual(hf.encode(text, { add_special_tokens: false }).ids);
  });
});
