/**
 * Calibration windows, drawn exactly as SparseGPT's and Wanda's data loaders draw them (Python's
 * `random` seeded with --seed): from a document collection, a random document with more than seqlen
 * tokens and a random window inside it; from one running text, a random window of its token stream.
 */
import { fileError, usageError } from '../errors.js';
import { SafetensorsReader } from '../io/safetensors/reader.js';
import type { Corpus } from './datasets.js';
import { PythonRandom } from './python-random.js';

/** Anything that turns text into token ids the way the model's HF tokenizer does by default. */
export interface TextEncoder {
  encode(text: string): Int32Array;
}

export interface Windows {
  /** Token ids, [count, seqlen] row-major. */
  ids: Int32Array;
  count: number;
  seqlen: number;
}

export function sampleWindows(corpus: Corpus, tok: TextEncoder, nsamples: number, seqlen: number, seed: number): Windows {
  const rng = new PythonRandom(seed);
  const ids = new Int32Array(nsamples * seqlen);
  if (corpus.kind === 'text') {
    const stream = tok.encode(corpus.text);
    if (stream.length <= seqlen) {
      throw fileError(corpus.path, `has ${stream.length} tokens, fewer than one calibration window of ${seqlen} + 1`);
    }
    for (let s = 0; s < nsamples; s++) {
      const i = rng.randint(0, stream.length - seqlen - 1);
      ids.set(stream.subarray(i, i + seqlen), s * seqlen);
    }
    return { ids, count: nsamples, seqlen };
  }

  const docs = corpus.documents;
  const cache = new Map<number, Int32Array>();
  const encodeDoc = (d: number): Int32Array => {
    let t = cache.get(d);
    if (!t) {
      t = tok.encode(docs[d]);
      cache.set(d, t);
    }
    return t;
  };
  // The reference loops until it finds a long document; fail instead of spinning forever when none is.
  let someLongEnough: boolean | undefined;
  for (let s = 0; s < nsamples; s++) {
    let enc: Int32Array;
    for (let attempts = 0; ; attempts++) {
      const d = rng.randint(0, docs.length - 1);
      enc = encodeDoc(d);
      if (enc.length > seqlen) break;
      if (attempts === 10 * docs.length && someLongEnough === undefined) {
        someLongEnough = docs.some((_, k) => encodeDoc(k).length > seqlen);
        if (!someLongEnough) throw fileError(corpus.path, `no document is longer than the window of ${seqlen} tokens`);
      }
    }
    const i = rng.randint(0, enc.length - seqlen - 1);
    ids.set(enc.subarray(i, i + seqlen), s * seqlen);
  }
  return { ids, count: nsamples, seqlen };
}

/** Windows given by the user: one I32/I64 tensor of shape [nsamples, seqlen] in a safetensors file. */
export function readWindowsFile(path: string, vocabSize: number): Windows {
  const r = SafetensorsReader.open(path);
  try {
    const names = [...r.tensors.keys()];
    if (names.length !== 1) throw fileError(path, `must hold exactly one tensor of token ids, found ${names.length}`);
    const info = r.tensors.get(names[0])!;
    if ((info.dtype !== 'I32' && info.dtype !== 'I64') || info.shape.length !== 2) {
      throw fileError(path, `tensor "${names[0]}" must be I32 or I64 of shape [nsamples, seqlen], got ${info.dtype} [${info.shape.join(', ')}]`);
    }
    const [count, seqlen] = info.shape;
    if (count === 0 || seqlen === 0) throw fileError(path, `tensor "${names[0]}" is empty`);
    const raw = r.readTyped(names[0]);
    const ids = new Int32Array(count * seqlen);
    for (let k = 0; k < ids.length; k++) {
      const v = Number(raw[k]);
      if (!Number.isInteger(v) || v < 0 || v >= vocabSize) {
        throw fileError(path, `token id ${v} at index ${k} is outside the vocabulary [0, ${vocabSize})`);
      }
      ids[k] = v;
    }
    return { ids, count, seqlen };
  } finally {
    r.close();
  }
}

export function checkWindowArgs(nsamples: number, seqlen: number, maxPositions: number): void {
  if (!Number.isInteger(nsamples) || nsamples < 1) throw usageError(`--nsamples must be a positive integer, got ${nsamples}`);
  if (!Number.isInteger(seqlen) || seqlen < 2) throw usageError(`--seqlen must be an integer >= 2, got ${seqlen}`);
  if (seqlen > maxPositions) throw usageError(`--seqlen ${seqlen} is longer than the model supports (${maxPositions})`);
}
