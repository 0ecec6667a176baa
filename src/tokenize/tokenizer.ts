/**
 * Tokenizer loading and fast whole-text encoding on top of @huggingface/tokenizers.
 *
 * Why not just `Tokenizer.encode(text)`: a SentencePiece-style tokenizer (Llama) has no pre-tokenizer, so the
 * whole text is one BPE "word" — slow for megabyte texts (seconds per MB, growing with length) and never
 * cached. `encode` follows the library's own encode_text step by step — added-token splitting, normalizer,
 * pre-tokenizer, BPE model, token → id — using the library's components, and adds one step: every word is
 * cut at boundaries that no merge can cross (see `mergeCrossings`), and the pieces are encoded once each and
 * cached. The ids are exactly those of `Tokenizer.encode(text, {add_special_tokens: false})` (plus BOS).
 *
 * The cut rule, derived from the merges at load time: if two adjacent characters x, y never occur next to
 * each other inside the result a+b of any merge (a, b), no merge can ever produce a symbol spanning the x|y
 * boundary (that symbol would contain "xy"), and no pair across the boundary is ever a merge candidate, so
 * merges on one side never change the candidates of the other. HF's BPE takes the candidate of lowest rank,
 * ties by position; restricted to one side that is the order it follows on that side alone. Hence
 * BPE(word) = BPE(left) ++ BPE(right). For stories260K no piece contains "\n" (every newline is a cut) and
 * no piece has "▁" after its first character (the text is also cut before every space). Where no boundary
 * is safe, words are encoded whole — the library's own result.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { readJsonObject } from '../io/json-file.js';
import { fileError, ShearsError } from '../errors.js';
import { byteLevelTokenizerJson, checkVocab, readMerges } from './byte-level-bpe.js';

export interface EncodeOptions {
  /** Prepend the BOS id. Default: the tokenizer's own setting (tokenizer_config.json add_bos_token). */
  addBos?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS/EOS/...) from the text. Default true. */
  skipSpecialTokens?: boolean;
}

export interface TextTokenizer {
  /** The folder the tokenizer was loaded from. */
  readonly dir: string;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** Number of ids the tokenizer can produce (highest id + 1, added tokens included). */
  readonly vocabSize: number;
  /** Whether encode() prepends BOS when not told. */
  readonly addBosByDefault: boolean;
  /** Ids of the whole text, as HF's Tokenizer.encode would give them (plus BOS when asked). */
  encode(text: string, opts?: EncodeOptions): Int32Array;
  decode(ids: ArrayLike<number>, opts?: DecodeOptions): string;
  /** True if encode() cuts words between the characters x and y (one code point each). */
  canCutBetween(x: string, y: string): boolean;
}

type Json = Record<string, unknown>;


/** tokenizer_config.json spells special tokens as a string or as {content: string}. */
function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}

/** Key of the adjacent code-point pair (x, y); below 2^53, so exact as a number. */
const pairKey = (x: number, y: number): number => x * 0x110000 + y;

/**
 * Adjacent code-point pairs that occur inside some merge result — the boundaries a merge may cross.
 * Null when the BPE settings make cutting unsafe (or the model is not BPE).
 */
export function mergeCrossings(model: Json): Set<number> | null {
  if (model.type !== 'BPE') return null;
  // end_of_word_suffix marks the last symbol of each word, ignore_merges looks words up whole, dropout is random:
  // cutting a word changes the outcome under any of them.
  if (model.end_of_word_suffix || model.continuing_subword_suffix || model.continuing_subword_prefix) return null;
  if (model.ignore_merges === true) return null;
  if (typeof model.dropout === 'number' && model.dropout > 0) return null;
  const merges = model.merges;
  if (!Array.isArray(merges)) return null;
  const inside = new Set<number>();
  for (const m of merges) {
    // The same parsing as the library: ["a", "b"] or "a b" (split at the first space).
    const pair = Array.isArray(m) ? m : typeof m === 'string' ? m.split(' ', 2) : null;
    if (!pair || pair.length !== 2) return null;
    const cps = Array.from(String(pair[0]) + String(pair[1]), (c) => c.codePointAt(0)!);
    for (let i = 0; i + 1 < cps.length; i++) inside.add(pairKey(cps[i]!, cps[i + 1]!));
  }
  return inside;
}

/** Call `emit` on the parts of `word` cut before every code point whose boundary with its predecessor no merge crosses. */
function cutWord(word: string, crossings: Set<number>, emit: (piece: string) => void): void {
  let start = 0;
  let prev = -1;
  for (let i = 0; i < word.length; ) {
    const cp = word.codePointAt(i)!;
    if (prev >= 0 && !crossings.has(pairKey(prev, cp))) {
      emit(word.slice(start, i));
      start = i;
    }
    prev = cp;
    i += cp > 0xffff ? 2 : 1;
  }
  if (start < word.length) emit(word.slice(start));
}

interface AddedTokenInfo {
  id: number;
  lstrip: boolean;
  rstrip: boolean;
}

/**
 * Leftmost-longest dictionary split, the library's rule for added tokens: at each position take the longest
 * listed string starting there, else move on one UTF-16 unit.
 */
function splitOnDictionary(text: string, words: string[]): string[] {
  if (words.length === 0 || !words.some((w) => text.includes(w))) return [text];
  const byFirst = new Map<string, string[]>();
  for (const w of words) {
    const list = byFirst.get(w[0]!) ?? [];
    list.push(w);
    byFirst.set(w[0]!, list);
  }
  for (const list of byFirst.values()) list.sort((a, b) => b.length - a.length);
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < text.length; ) {
    const match = byFirst.get(text[i]!)?.find((w) => text.startsWith(w, i));
    if (match) {
      if (i > start) out.push(text.slice(start, i));
      out.push(match);
      i += match.length;
      start = i;
    } else {
      i++;
    }
  }
  if (start < text.length) out.push(text.slice(start));
  return out;
}

/** Apply the lstrip/rstrip of added tokens to their neighbours, as the library does. */
function stripAroundAdded(parts: string[], added: Map<string, AddedTokenInfo>): void {
  parts.forEach((p, i) => {
    const t = added.get(p);
    if (!t) return;
    if (t.lstrip && i > 0) parts[i - 1] = parts[i - 1]!.trimEnd();
    if (t.rstrip && i < parts.length - 1) parts[i + 1] = parts[i + 1]!.trimStart();
  });
}

/** Most pieces kept in the per-tokenizer cache before it is emptied (bounds memory on huge texts). */
const PIECE_CACHE_LIMIT = 200_000;

/**
 * Load tokenizer.json (+ tokenizer_config.json when present) from a model folder. A file the library
 * accepts but that breaks later (a vocab that is not an object, merges of the wrong type) fails as a
 * one-line error naming tokenizer.json, at load or at the first encode/decode.
 */
export function loadTokenizer(modelDir: string): TextTokenizer {
  const tjPath = tokenizerFile(modelDir);
  const guard = <T>(what: string, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      if (e instanceof ShearsError) throw e;
      throw fileError(tjPath, `${what} (${e instanceof Error ? e.message : String(e)})`);
    }
  };
  const tok = guard('cannot be used as a tokenizer', () => loadTokenizerUnguarded(modelDir));
  return {
    ...tok,
    encode: (text, opts) => guard('failed to encode text', () => tok.encode(text, opts)),
    decode: (ids, opts) => guard('failed to decode ids', () => tok.decode(ids, opts)),
  };
}

/**
 * The file the tokenizer comes from: tokenizer.json, else vocab.json (with merges.txt beside it) of a
 * byte-level BPE tokenizer that ships only the slow files (e.g. OPT).
 */
function tokenizerFile(modelDir: string): string {
  const fast = join(modelDir, 'tokenizer.json');
  const vocab = join(modelDir, 'vocab.json');
  return !existsSync(fast) && existsSync(vocab) && existsSync(join(modelDir, 'merges.txt')) ? vocab : fast;
}

/** tokenizer.json's object, or the one transformers would convert from vocab.json + merges.txt. */
function tokenizerJson(modelDir: string, tc: Json): { tj: Json; path: string } {
  const path = tokenizerFile(modelDir);
  if (path.endsWith('vocab.json')) {
    const tj = byteLevelTokenizerJson(checkVocab(path, readJsonObject(path)), readMerges(join(modelDir, 'merges.txt')), tc);
    return { tj, path };
  }
  if (!existsSync(path)) throw fileError(modelDir, 'has no tokenizer.json (nor vocab.json + merges.txt)');
  return { tj: readJsonObject(path), path };
}

function loadTokenizerUnguarded(modelDir: string): TextTokenizer {
  const tcPath = join(modelDir, 'tokenizer_config.json');
  const mapPath = join(modelDir, 'special_tokens_map.json');
  // special_tokens_map.json names the special tokens where tokenizer_config.json does not (older OPT uploads).
  const tc = { ...(existsSync(mapPath) ? readJsonObject(mapPath) : {}), ...(existsSync(tcPath) ? readJsonObject(tcPath) : {}) };
  const { tj, path: tjPath } = tokenizerJson(modelDir, tc);
  let hf: Tokenizer;
  try {
    hf = new Tokenizer(tj, tc);
  } catch (e) {
    throw fileError(tjPath, `cannot be loaded by @huggingface/tokenizers (${(e as Error).message})`);
  }
  const idOf = (role: string): number | null => {
    const text = tokenText(tc[role]);
    if (text === null) return null;
    const id = hf.token_to_id(text);
    if (id === undefined) throw fileError(tcPath, `${role} ${JSON.stringify(text)} is not in the vocabulary`);
    return id;
  };
  const bosId = idOf('bos_token');
  const eosId = idOf('eos_token');
  const unkId = hf.model?.unk_token_id;
  const addBosByDefault = bosId !== null && (typeof tc.add_bos_token === 'boolean' ? tc.add_bos_token : templateStartsWith(tj, bosId));
  let vocabSize = 0;
  for (const id of hf.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);

  const crossings = mergeCrossings(tj.model as Json);
  // Options of encode_text we do not mirror: leave such tokenizers to the library.
  const libraryOnly = crossings === null || hf.model === null || tc.remove_space === true || tc.do_lowercase_and_remove_accent === true;

  // Added tokens as the library holds them: raw contents are split off before normalization, normalized ones
  // after; both spellings map to the token.
  const addedMap = new Map<string, AddedTokenInfo>();
  const rawContents: string[] = [];
  const normalizedContents: string[] = [];
  for (const t of hf.get_added_tokens_decoder().values()) {
    const info = { id: t.id, lstrip: t.lstrip, rstrip: t.rstrip };
    addedMap.set(t.content, info);
    if (t.normalized && hf.normalizer) {
      const n = hf.normalizer(t.content);
      normalizedContents.push(n);
      addedMap.set(n, info);
    } else {
      rawContents.push(t.content);
    }
  }
  const rawDict = rawContents.filter((c) => c.length > 0);
  const normalizedDict = normalizedContents.filter((c) => c.length > 0);

  const tokenId = (t: string): number => {
    const id = addedMap.get(t)?.id ?? hf.token_to_id(t) ?? unkId;
    if (id === undefined) throw new ShearsError(`${tjPath}: token ${JSON.stringify(t)} has no id and there is no unk token`);
    return id;
  };

  // Pieces can be encoded one at a time (and cached) unless the model fuses runs of unknown tokens across
  // them, which needs an unknown token to be possible: no byte fallback covering every byte, or a merge
  // that yields the unk token itself.
  const model = tj.model as Json;
  const vocabJson = (model.vocab ?? {}) as Record<string, number>;
  const allBytes = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`).every((t) => t in vocabJson);
  const unkText = typeof model.unk_token === 'string' ? model.unk_token : null;
  const piecewise = model.fuse_unk !== true || (model.byte_fallback === true && allBytes && !mergesYield(model, unkText));
  const pieceCache = new Map<string, number[]>();

  /** The model step for one pre-tokenized section: words cut at barriers, then BPE. */
  const encodeWords = (words: string[], out: number[]): void => {
    if (!piecewise) {
      const pieces: string[] = [];
      for (const w of words) cutWord(w, crossings!, (p) => pieces.push(p));
      for (const t of hf.model!(pieces)) out.push(tokenId(t));
      return;
    }
    for (const w of words) {
      cutWord(w, crossings!, (p) => {
        let ids: number[] | undefined = pieceCache.get(p);
        if (ids === undefined) {
          const tokens: string[] = hf.model!([p]);
          ids = tokens.map((t) => tokenId(t));
          if (pieceCache.size >= PIECE_CACHE_LIMIT) pieceCache.clear();
          pieceCache.set(p, ids);
        }
        for (const id of ids) out.push(id);
      });
    }
  };

  /** The library's encode_text, step for step, with the cut model step. */
  const encodeText = (text: string): number[] => {
    const out: number[] = [];
    const sections = splitOnDictionary(text, rawDict);
    stripAroundAdded(sections, addedMap);
    sections.forEach((section, sectionIndex) => {
      if (section.length === 0) return;
      const special = addedMap.get(section);
      if (special) {
        out.push(special.id);
        return;
      }
      const normalized = hf.normalizer ? hf.normalizer(section) : section;
      if (normalized.length === 0) return;
      const subsections = splitOnDictionary(normalized, normalizedDict);
      stripAroundAdded(subsections, addedMap);
      for (const sub of subsections) {
        if (sub.length === 0) continue;
        const t = addedMap.get(sub);
        if (t) {
          out.push(t.id);
          continue;
        }
        const words = hf.pre_tokenizer ? hf.pre_tokenizer(sub, { section_index: sectionIndex }) : [sub];
        encodeWords(words, out);
      }
    });
    return out;
  };

  const encode = (text: string, opts: EncodeOptions = {}): Int32Array => {
    const addBos = opts.addBos ?? addBosByDefault;
    if (addBos && bosId === null) throw new ShearsError(`${modelDir}: the tokenizer has no BOS token to prepend`);
    const ids = text.length === 0 ? [] : libraryOnly ? hf.encode(text, { add_special_tokens: false }).ids : encodeText(text);
    const out = new Int32Array(ids.length + (addBos ? 1 : 0));
    if (addBos) out[0] = bosId!;
    out.set(ids, addBos ? 1 : 0);
    return out;
  };

  const decode = (ids: ArrayLike<number>, opts: DecodeOptions = {}): string => {
    if (ids.length === 0) return '';
    return hf.decode(Array.from(ids), { skip_special_tokens: opts.skipSpecialTokens ?? true });
  };

  return {
    dir: modelDir,
    bosId,
    eosId,
    vocabSize,
    addBosByDefault,
    encode,
    decode,
    canCutBetween: (x, y) => !libraryOnly && !crossings!.has(pairKey(x.codePointAt(0)!, y.codePointAt(0)!)),
  };
}

/** Whether some merge (a, b) of the BPE model makes the string `text`. */
function mergesYield(model: Json, text: string | null): boolean {
  if (text === null || !Array.isArray(model.merges)) return false;
  return (model.merges as unknown[]).some((m) => (Array.isArray(m) ? m.join('') : typeof m === 'string' ? m.split(' ', 2).join('') : '') === text);
}

/** Whether tokenizer.json's post-processor template puts `bosId` first (Llama-style tokenizers without add_bos_token). */
function templateStartsWith(tj: Json, bosId: number): boolean {
  const pp = tj.post_processor as Json | null | undefined;
  if (!pp || pp.type !== 'TemplateProcessing' || !Array.isArray(pp.single)) return false;
  const first = (pp.single as Json[])[0];
  const special = first?.SpecialToken as Json | undefined;
  if (!special) return false;
  const entry = (pp.special_tokens as Json | undefined)?.[String(special.id)] as Json | undefined;
  return Array.isArray(entry?.ids) && entry.ids.length === 1 && entry.ids[0] === bosId;
}
