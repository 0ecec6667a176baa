/**
 * Turn a llama2.c tokenizer (SentencePiece BPE: pieces + scores) into HuggingFace tokenizer.json /
 * tokenizer_config.json in the usual Llama layout (BPE model with byte fallback, a normalizer that prepends
 * "▁" and maps " " to "▁", a decoder that undoes it).
 *
 * Why HF's merge ranks reproduce llama2.c's score-ordered merging here. llama2.c repeatedly merges the
 * adjacent pair (x, y) whose concatenation x+y is a token of highest score (ties: leftmost). HF BPE
 * repeatedly merges the adjacent pair with the lowest merge rank (ties: leftmost). We list as merges every
 * pair (a, b) of ordinary pieces whose concatenation t is a piece, ranked by score(t), highest first. The two
 * procedures pick the same pair at every step provided:
 *   (1) no merge can involve <unk>/<s>/</s>/byte tokens in llama2.c (their stored strings never combine with
 *       another piece into a piece) and none produces one — so the byte tokens that llama2.c emits for unknown
 *       characters are inert, exactly like HF's unknown characters that fall back to bytes after BPE;
 *   (2) the pieces that are merge results have pairwise distinct scores — so equal-score candidates produce the
 *       same token t, and the only possible disagreement is between two *different splits* (a1, b1), (a2, b2)
 *       of t present at once (llama2.c takes the leftmost, HF the lower rank);
 *   (3) " " is a piece, so llama2.c's dummy-prefix token is HF's prepended "▁".
 * That disagreement cannot happen: when symbols [a][b] cover one occurrence of t, every earlier merge inside
 * that span was chosen as the best pair among the span's own pairs (boundary pairs with outside symbols were
 * never taken, else the span would not be whole), which is exactly what the procedure does on t's characters
 * alone. That run is deterministic and passes through a single two-symbol state, so every occurrence of t
 * about to be merged has the same split. At the first step where the two procedures could diverge they share
 * their history, hence all current candidates for t have one split, one rank, and both take the leftmost.
 * `buildSentencePieceTokenizer` checks (1)-(3) and refuses vocabularies that violate them.
 *
 * Known, deliberate differences from llama2.c (same as every HF Llama tokenizer): a literal "▁" in the text
 * is read as a space, and the texts "<unk>", "<s>", "</s>" become those special tokens.
 */
import { ShearsError } from '../errors.js';
import type { Llama2cVocab } from './llama2c-vocab.js';

export const SPIECE_UNDERLINE = '\u2581';
export const UNK_ID = 0;
export const BOS_ID = 1;
export const EOS_ID = 2;
/** Ids 3..258 are the byte tokens <0x00>..<0xFF>. */
export const FIRST_BYTE_ID = 3;
const FIRST_PIECE_ID = FIRST_BYTE_ID + 256;

export function byteTokenName(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`;
}

/** One merge: pieces a and b (HF spelling, "▁" for space) and the id of the piece they make. */
export interface Merge {
  left: string;
  right: string;
  resultId: number;
}

export interface SentencePieceTokenizerFiles {
  /** tokenizer.json contents (a JSON-serialisable object). */
  tokenizerJson: Record<string, unknown>;
  /** tokenizer_config.json contents. */
  tokenizerConfig: Record<string, unknown>;
  /** The merges in rank order (also inside tokenizerJson). */
  merges: Merge[];
}

/** The llama2.c string of a token → its HF piece name. */
function hfPieceName(id: number, piece: string): string {
  if (id === UNK_ID) return '<unk>';
  if (id === BOS_ID) return '<s>';
  if (id === EOS_ID) return '</s>';
  return piece.replaceAll(' ', SPIECE_UNDERLINE);
}

/**
 * Check the llama2.c vocabulary layout and the two equivalence conditions, derive the merges and build
 * the HF files. `source` names the tokenizer file in error messages; `modelMaxLength` is the model's seq_len.
 */
export function buildSentencePieceTokenizer(
  vocab: Llama2cVocab,
  source: string,
  modelMaxLength: number,
): SentencePieceTokenizerFiles {
  const { pieces, scores } = vocab;
  const fail = (problem: string): never => {
    throw new ShearsError(`${source}: ${problem}`);
  };
  if (pieces.length <= FIRST_PIECE_ID) fail(`has ${pieces.length} tokens; a llama2.c SentencePiece vocabulary needs <unk>, <s>, </s>, 256 byte tokens and at least one piece`);
  if (pieces[UNK_ID] !== '<unk>') fail(`token 0 is ${JSON.stringify(pieces[UNK_ID])}, expected "<unk>"`);
  if (!['\n<s>\n', '<s>'].includes(pieces[BOS_ID]!)) fail(`token 1 is ${JSON.stringify(pieces[BOS_ID])}, expected BOS "\\n<s>\\n"`);
  if (!['\n</s>\n', '</s>'].includes(pieces[EOS_ID]!)) fail(`token 2 is ${JSON.stringify(pieces[EOS_ID])}, expected EOS "\\n</s>\\n"`);
  for (let b = 0; b < 256; b++) {
    const want = byteTokenName(b);
    if (pieces[FIRST_BYTE_ID + b] !== want) fail(`token ${FIRST_BYTE_ID + b} is ${JSON.stringify(pieces[FIRST_BYTE_ID + b])}, expected byte token ${want}`);
  }

  // llama2.c looks strings up in a sorted table: duplicates would make its choice arbitrary.
  const idOf = new Map<string, number>();
  pieces.forEach((p, id) => {
    if (id >= FIRST_PIECE_ID && p.length === 0) fail(`token ${id} is empty`);
    if (p.includes(SPIECE_UNDERLINE)) fail(`token ${id} contains "▁", which would be ambiguous with a space`);
    const prev = idOf.get(p);
    if (prev !== undefined) fail(`tokens ${prev} and ${id} are both ${JSON.stringify(p)}`);
    idOf.set(p, id);
  });

  // llama2.c's dummy prefix is the token " " (str_lookup(" ")); without it run.c would emit -1.
  if (!idOf.has(' ')) fail('has no " " token, which llama2.c needs for its dummy prefix');

  // Every way llama2.c could merge two tokens: (a, b) with a+b a token. Split points are UTF-16 indices;
  // a split inside a surrogate pair yields a lone surrogate, which is never a piece.
  const merges: Merge[] = [];
  const resultScores = new Map<number, number>();
  pieces.forEach((t, tId) => {
    for (let k = 1; k < t.length; k++) {
      const aId = idOf.get(t.slice(0, k));
      const bId = idOf.get(t.slice(k));
      if (aId === undefined || bId === undefined) continue;
      if (aId < FIRST_PIECE_ID || bId < FIRST_PIECE_ID || tId < FIRST_PIECE_ID) {
        fail(`llama2.c would merge tokens ${aId} and ${bId} into token ${tId}; special and byte tokens must not take part in merges`);
      }
      merges.push({ left: hfPieceName(aId, t.slice(0, k)), right: hfPieceName(bId, t.slice(k)), resultId: tId });
      resultScores.set(tId, scores[tId]!);
    }
  });
  const byScore = new Map<number, number>();
  for (const [tId, s] of resultScores) {
    // llama2.c starts its search at best_score = -1e10 and uses ">": such a merge would never be taken.
    if (!(s > -1e10)) fail(`token ${tId} has score ${s}, at or below llama2.c's -1e10 floor`);
    const other = byScore.get(s);
    if (other !== undefined) fail(`tokens ${other} and ${tId} are both merge results with score ${s}; HF merge ranks cannot reproduce llama2.c's tie-breaking`);
    byScore.set(s, tId);
  }
  // Rank: higher score of the result first. Splits of the same result are never in competition (see above);
  // order them by the left piece's length only to make the file deterministic.
  merges.sort((x, y) => scores[y.resultId]! - scores[x.resultId]! || x.resultId - y.resultId || x.left.length - y.left.length);

  const hfVocab: Record<string, number> = {};
  pieces.forEach((p, id) => {
    const name = hfPieceName(id, p);
    if (Object.hasOwn(hfVocab, name)) fail(`tokens ${hfVocab[name]} and ${id} would both be named ${JSON.stringify(name)}`);
    hfVocab[name] = id;
  });

  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const addedTokens = [special(UNK_ID, '<unk>'), special(BOS_ID, '<s>'), special(EOS_ID, '</s>')];
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: SPIECE_UNDERLINE },
        { type: 'Replace', pattern: { String: ' ' }, content: SPIECE_UNDERLINE },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [BOS_ID], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPIECE_UNDERLINE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab: hfVocab,
      merges: merges.map((m) => [m.left, m.right]),
    },
  };
  const addedTokensDecoder: Record<string, unknown> = {};
  for (const t of addedTokens) {
    const { id, ...rest } = t;
    addedTokensDecoder[String(id)] = rest;
  }
  const tokenizerConfig = {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: addedTokensDecoder,
    bos_token: '<s>',
    clean_up_tokenization_spaces: false,
    eos_token: '</s>',
    legacy: true,
    model_max_length: modelMaxLength,
    pad_token: null,
    sp_model_kwargs: {},
    spaces_between_special_tokens: false,
    tokenizer_class: 'LlamaTokenizer',
    unk_token: '<unk>',
    use_default_system_prompt: false,
  };
  return { tokenizerJson, tokenizerConfig, merges };
}
