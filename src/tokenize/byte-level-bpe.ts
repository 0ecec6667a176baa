/**
 * The tokenizer.json of a byte-level BPE tokenizer that ships only the "slow" files, vocab.json and merges.txt
 * (GPT-2's format; the OPT checkpoints on the Hub have no tokenizer.json). Built as transformers'
 * GPT2Converter builds it: a BPE model over the vocabulary and merges with no unknown token, the ByteLevel
 * pre-tokenizer (GPT-2's regex; a leading space only with add_prefix_space) and decoder, and BOS prepended
 * by the post-processor when tokenizer_config.json sets add_bos_token (OPT prepends "</s>"). The special
 * tokens named in tokenizer_config.json / special_tokens_map.json, and its added_tokens_decoder, become
 * added tokens, so that they are matched whole in text as the slow tokenizer does.
 */
import { readFileSync } from 'node:fs';
import { fileError } from '../errors.js';

type Json = Record<string, unknown>;

const SPECIAL_ROLES = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'];

/** merges.txt: an optional "#version" line, then one "left right" pair per line. */
export function readMerges(path: string): [string, string][] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw fileError(path, `cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  const merges: [string, string][] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.length === 0 || (i === 0 && line.startsWith('#version'))) return;
    const parts = line.split(' ');
    if (parts.length !== 2 || !parts[0] || !parts[1]) throw fileError(path, `line ${i + 1} is not a pair of symbols separated by one space`);
    merges.push([parts[0], parts[1]]);
  });
  if (merges.length === 0) throw fileError(path, 'has no merges');
  return merges;
}

/** vocab.json: token → id, ids distinct non-negative integers. */
export function checkVocab(path: string, vocab: Json): Record<string, number> {
  const seen = new Set<number>();
  for (const [token, id] of Object.entries(vocab)) {
    if (!Number.isSafeInteger(id) || (id as number) < 0) throw fileError(path, `token ${JSON.stringify(token).slice(0, 40)} has id ${JSON.stringify(id)}, not a non-negative integer`);
    if (seen.has(id as number)) throw fileError(path, `id ${id} is given to more than one token`);
    seen.add(id as number);
  }
  if (seen.size === 0) throw fileError(path, 'is empty');
  return vocab as Record<string, number>;
}

/** tokenizer_config.json spells a special token as a string or as {content: string}. */
function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}

/**
 * The tokenizer.json object for `vocab` and `merges`; `config` is tokenizer_config.json with
 * special_tokens_map.json's entries filled in where it has none.
 */
export function byteLevelTokenizerJson(vocab: Record<string, number>, merges: [string, string][], config: Json): Json {
  const added = new Map<number, Json>();
  const decoder = config.added_tokens_decoder;
  if (decoder && typeof decoder === 'object') {
    for (const [id, t] of Object.entries(decoder as Record<string, Json>)) {
      const content = tokenContent(t);
      if (content === null || !/^\d+$/.test(id)) continue;
      added.set(Number(id), {
        id: Number(id), content,
        single_word: t.single_word === true, lstrip: t.lstrip === true, rstrip: t.rstrip === true,
        normalized: t.normalized !== false, special: t.special === true,
      });
    }
  }
  for (const role of SPECIAL_ROLES) {
    const content = tokenContent(config[role]);
    const id = content === null ? undefined : vocab[content];
    if (id === undefined || added.has(id)) continue;
    added.set(id, { id, content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true });
  }

  const addPrefixSpace = config.add_prefix_space === true;
  const bos = tokenContent(config.bos_token);
  const bosId = bos === null ? undefined : vocab[bos];
  const postProcessor =
    config.add_bos_token === true && bos !== null && bosId !== undefined
      ? {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
        }
      : { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true };

  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [...added.values()].sort((a, b) => (a.id as number) - (b.id as number)),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: addPrefixSpace, trim_offsets: true, use_regex: true },
    post_processor: postProcessor,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
    },
  };
}
