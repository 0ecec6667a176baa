/**
 * Reader for llama2.c's tokenizer file (tokenizer.bin / tok512.bin), as written by llama2.c's tokenizer.py:
 * int32 max_token_length, then per token: float32 score, int32 byte length, the bytes (UTF-8).
 * All little-endian. llama2.c writes pieces with spaces instead of SentencePiece's "▁", and BOS/EOS as
 * "\n<s>\n" / "\n</s>\n"; byte tokens are "<0xXX>". The token count is not stored: it is implied by the
 * file length and must equal the model's vocab_size.
 */
import { readFileSync } from 'node:fs';
import { fileError } from '../errors.js';

export interface Llama2cVocab {
  /** Longest piece in bytes, as stored in the header. */
  maxTokenLength: number;
  /** Pieces exactly as llama2.c stores them (decoded from UTF-8), index = token id. */
  pieces: string[];
  /** Merge scores, index = token id (float32 values widened to float64 exactly). */
  scores: Float64Array;
}

/** Parse the bytes of a llama2.c tokenizer file; `path` only names the file in error messages. */
export function parseLlama2cVocab(bytes: Uint8Array, path: string): Llama2cVocab {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 4) throw fileError(path, `llama2.c tokenizer file is ${bytes.byteLength} bytes, too short for its header`);
  const maxTokenLength = view.getInt32(0, true);
  if (maxTokenLength <= 0) throw fileError(path, `llama2.c tokenizer header has max_token_length ${maxTokenLength} (must be > 0)`);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const pieces: string[] = [];
  const scores: number[] = [];
  let pos = 4;
  while (pos < bytes.byteLength) {
    const id = pieces.length;
    if (pos + 8 > bytes.byteLength) throw fileError(path, `llama2.c tokenizer file ends inside the record of token ${id} (truncated?)`);
    const score = view.getFloat32(pos, true);
    const len = view.getInt32(pos + 4, true);
    pos += 8;
    if (len < 0 || len > maxTokenLength) {
      throw fileError(path, `token ${id} has byte length ${len}, outside 0..max_token_length ${maxTokenLength}`);
    }
    if (pos + len > bytes.byteLength) throw fileError(path, `llama2.c tokenizer file ends inside the bytes of token ${id} (truncated?)`);
    let piece: string;
    try {
      piece = decoder.decode(bytes.subarray(pos, pos + len));
    } catch {
      throw fileError(path, `token ${id} is not valid UTF-8`);
    }
    if (!Number.isFinite(score)) throw fileError(path, `token ${id} has a non-finite score ${score}`);
    pieces.push(piece);
    scores.push(score);
    pos += len;
  }
  return { maxTokenLength, pieces, scores: Float64Array.from(scores) };
}

export function readLlama2cVocab(path: string): Llama2cVocab {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw fileError(path, `cannot read llama2.c tokenizer (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseLlama2cVocab(bytes, path);
}
