/**
 * Convert a llama2.c checkpoint (legacy "version 0" export) and its tokenizer.bin into a HuggingFace
 * LlamaForCausalLM folder: config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
 * generation_config.json and a README.md recording where the inputs came from.
 *
 * Legacy layout (little-endian): 7 int32 — dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size
 * (negative = separate classifier), seq_len — then float32 arrays, each layer-stacked where it has an L:
 * tok_embeddings [V, dim], rms_att [L, dim], wq [L, dim, dim], wk [L, kv_dim, dim], wv [L, kv_dim, dim],
 * wo [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim], w2 [L, dim, hidden], w3 [L, hidden, dim],
 * rms_final [dim], freq_cis_real [seq, head_size/2], freq_cis_imag [seq, head_size/2], wcls [V, dim] if
 * unshared. Matrices are nn.Linear weights, [out, in], already HF's layout — except for RoPE, see
 * `ropeRowsToHf`. Tensors are read one at a time by position, so large checkpoints never sit in memory whole.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { basename, join } from 'node:path';
import { fileError, ShearsError } from '../errors.js';
import { AtomicDir } from '../io/atomic.js';
import { SafetensorsWriter, type TensorSpec } from '../io/safetensors/writer.js';
import { parseLlama2cVocab } from '../tokenize/llama2c-vocab.js';
import { BOS_ID, buildSentencePieceTokenizer, EOS_ID } from '../tokenize/sentencepiece-bpe.js';

export const HEADER_BYTES = 7 * 4;
/** First int32 of llama2.c's newer export formats (version 1/2): "ak42". */
const LLAMA2C_MAGIC = 0x616b3432;
export const ROPE_THETA = 10000;
export const RMS_NORM_EPS = 1e-5;

export interface Llama2cConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  /** vocab_size was positive: the classifier is the embedding table. */
  sharedClassifier: boolean;
}

export const headDim = (c: Llama2cConfig): number => c.dim / c.nHeads;
export const kvDim = (c: Llama2cConfig): number => (c.dim * c.nKvHeads) / c.nHeads;

/** One float32 array of the file: where it starts (in floats after the header) and its shape. */
export interface Llama2cArray {
  name: string;
  /** Offset in float32 elements from the end of the header. */
  offset: number;
  /** Shape including the leading layer axis where there is one. */
  shape: number[];
}

/** Decode and sanity-check the 7 header fields. */
export function parseLlama2cHeader(header: Uint8Array, path: string): Llama2cConfig {
  if (header.byteLength < HEADER_BYTES) throw fileError(path, `is ${header.byteLength} bytes, too short for a llama2.c header (${HEADER_BYTES} bytes)`);
  const v = new DataView(header.buffer, header.byteOffset, HEADER_BYTES);
  const f = Array.from({ length: 7 }, (_, i) => v.getInt32(i * 4, true));
  if (f[0] === LLAMA2C_MAGIC) {
    throw fileError(path, 'is a llama2.c version 1/2 export (magic "ak42"); only the legacy format (export.py --version 0) is supported');
  }
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocab, seqLen] = f as [number, number, number, number, number, number, number];
  const c: Llama2cConfig = { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize: Math.abs(vocab), seqLen, sharedClassifier: vocab > 0 };
  const fields = `dim ${dim}, hidden_dim ${hiddenDim}, n_layers ${nLayers}, n_heads ${nHeads}, n_kv_heads ${nKvHeads}, vocab_size ${vocab}, seq_len ${seqLen}`;
  const bad = (why: string): never => {
    throw fileError(path, `is not a llama2.c checkpoint: header (${fields}) ${why}`);
  };
  if (![dim, hiddenDim, nLayers, nHeads, nKvHeads, seqLen].every((x) => x > 0) || vocab === 0) bad('has a field <= 0');
  if (dim % nHeads !== 0) bad('has dim not divisible by n_heads');
  if (nHeads % nKvHeads !== 0) bad('has n_heads not divisible by n_kv_heads');
  if (headDim(c) % 2 !== 0) bad('has an odd head size, which RoPE cannot rotate in pairs');
  return c;
}

/** The float32 arrays of a legacy file in order, and the total float count. */
export function llama2cLayout(c: Llama2cConfig): { arrays: Llama2cArray[]; totalFloats: number } {
  const { dim, hiddenDim: h, nLayers: L, vocabSize: V, seqLen } = c;
  const kv = kvDim(c);
  const half = headDim(c) / 2;
  const shapes: [string, number[]][] = [
    ['tok_embeddings', [V, dim]],
    ['rms_att', [L, dim]],
    ['wq', [L, dim, dim]],
    ['wk', [L, kv, dim]],
    ['wv', [L, kv, dim]],
    ['wo', [L, dim, dim]],
    ['rms_ffn', [L, dim]],
    ['w1', [L, h, dim]],
    ['w2', [L, dim, h]],
    ['w3', [L, h, dim]],
    ['rms_final', [dim]],
    ['freq_cis_real', [seqLen, half]],
    ['freq_cis_imag', [seqLen, half]],
  ];
  if (!c.sharedClassifier) shapes.push(['wcls', [V, dim]]);
  const arrays: Llama2cArray[] = [];
  let offset = 0;
  for (const [name, shape] of shapes) {
    arrays.push({ name, offset, shape });
    offset += shape.reduce((a, b) => a * b, 1);
  }
  return { arrays, totalFloats: offset };
}

/**
 * Reorder the rows of a q or k projection ([nHeads * headDim, cols]) from llama2.c's RoPE convention to HF's.
 * llama2.c rotates interleaved pairs (2i, 2i+1) of each head; HF's rotate_half pairs (i, i + headDim/2). HF row
 * a*headDim/2 + i of a head is llama2.c row 2i + a of that head (a ∈ {0,1}) — the permutation of HF's
 * convert_llama_weights_to_hf. For k, `nHeads` is the number of key/value heads.
 */
export function ropeRowsToHf(w: Float32Array, nHeads: number, headSize: number, cols: number): Float32Array {
  if (w.length !== nHeads * headSize * cols) throw new ShearsError(`internal: RoPE permutation got ${w.length} values for ${nHeads}x${headSize}x${cols}`);
  const half = headSize / 2;
  const out = new Float32Array(w.length);
  for (let head = 0; head < nHeads; head++) {
    const base = head * headSize;
    for (let a = 0; a < 2; a++) {
      for (let i = 0; i < half; i++) {
        const src = (base + 2 * i + a) * cols;
        out.set(w.subarray(src, src + cols), (base + a * half + i) * cols);
      }
    }
  }
  return out;
}

/** HF config.json for the checkpoint (transformers 4.x keys). */
export function hfLlamaConfig(c: Llama2cConfig): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    attention_bias: false,
    attention_dropout: 0.0,
    bos_token_id: BOS_ID,
    eos_token_id: EOS_ID,
    head_dim: headDim(c),
    hidden_act: 'silu',
    hidden_size: c.dim,
    initializer_range: 0.02,
    intermediate_size: c.hiddenDim,
    max_position_embeddings: c.seqLen,
    mlp_bias: false,
    model_type: 'llama',
    num_attention_heads: c.nHeads,
    num_hidden_layers: c.nLayers,
    num_key_value_heads: c.nKvHeads,
    pretraining_tp: 1,
    rms_norm_eps: RMS_NORM_EPS,
    rope_scaling: null,
    rope_theta: ROPE_THETA,
    tie_word_embeddings: c.sharedClassifier,
    torch_dtype: 'float32',
    use_cache: true,
    vocab_size: c.vocabSize,
  };
}

/** The HF tensors of the converted model, in the order they are written. */
export function hfTensorSpecs(c: Llama2cConfig): TensorSpec[] {
  const { dim, hiddenDim: h, vocabSize: V } = c;
  const kv = kvDim(c);
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', dtype: 'F32', shape: [V, dim] }];
  for (let l = 0; l < c.nLayers; l++) {
    const p = `model.layers.${l}.`;
    specs.push(
      { name: `${p}input_layernorm.weight`, dtype: 'F32', shape: [dim] },
      { name: `${p}self_attn.q_proj.weight`, dtype: 'F32', shape: [dim, dim] },
      { name: `${p}self_attn.k_proj.weight`, dtype: 'F32', shape: [kv, dim] },
      { name: `${p}self_attn.v_proj.weight`, dtype: 'F32', shape: [kv, dim] },
      { name: `${p}self_attn.o_proj.weight`, dtype: 'F32', shape: [dim, dim] },
      { name: `${p}post_attention_layernorm.weight`, dtype: 'F32', shape: [dim] },
      { name: `${p}mlp.gate_proj.weight`, dtype: 'F32', shape: [h, dim] },
      { name: `${p}mlp.down_proj.weight`, dtype: 'F32', shape: [dim, h] },
      { name: `${p}mlp.up_proj.weight`, dtype: 'F32', shape: [h, dim] },
    );
  }
  specs.push({ name: 'model.norm.weight', dtype: 'F32', shape: [dim] });
  if (!c.sharedClassifier) specs.push({ name: 'lm_head.weight', dtype: 'F32', shape: [V, dim] });
  return specs;
}

/** Positional float32 reads from an open llama2.c file. */
class Llama2cFile {
  private readonly byName: Map<string, Llama2cArray>;
  constructor(
    readonly path: string,
    private readonly fd: number,
    arrays: Llama2cArray[],
  ) {
    this.byName = new Map(arrays.map((a) => [a.name, a]));
  }

  /** Floats [start, start + count) of array `name` (start/count in elements of that array). */
  read(name: string, start: number, count: number): Float32Array {
    const a = this.byName.get(name)!;
    const bytes = new Uint8Array(count * 4);
    let done = 0;
    const pos = HEADER_BYTES + (a.offset + start) * 4;
    while (done < bytes.byteLength) {
      const got = readSync(this.fd, bytes, done, Math.min(1 << 30, bytes.byteLength - done), pos + done);
      if (got === 0) throw fileError(this.path, `file ends while reading ${name} (truncated?)`);
      done += got;
    }
    return new Float32Array(bytes.buffer);
  }

  /** Layer `l` of a layer-stacked array. */
  layer(name: string, l: number): Float32Array {
    const shape = this.byName.get(name)!.shape;
    const per = shape.slice(1).reduce((x, y) => x * y, 1);
    return this.read(name, l * per, per);
  }

  whole(name: string): Float32Array {
    const shape = this.byName.get(name)!.shape;
    return this.read(name, 0, shape.reduce((x, y) => x * y, 1));
  }
}

/**
 * llama2.c stores its RoPE tables; HF recomputes them from rope_theta. Refuse a checkpoint whose tables are
 * not theta 10000, since HF would silently rotate differently. Tolerance covers llama2.c's float32 angles.
 */
function checkRopeTables(file: Llama2cFile, c: Llama2cConfig): void {
  const half = headDim(c) / 2;
  const re = file.whole('freq_cis_real');
  const im = file.whole('freq_cis_imag');
  for (let p = 0; p < c.seqLen; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * Math.pow(ROPE_THETA, (-2 * i) / headDim(c));
      const tol = 1e-4 + 1e-6 * p;
      const dr = Math.abs(re[p * half + i]! - Math.cos(angle));
      const di = Math.abs(im[p * half + i]! - Math.sin(angle));
      if (!(dr <= tol && di <= tol)) {
        throw fileError(file.path, `freq_cis tables differ from RoPE with theta ${ROPE_THETA} at position ${p}, pair ${i} (by ${Math.max(dr, di).toExponential(2)}); cannot express this model as a HF Llama`);
      }
    }
  }
}

/** sha256 of a file, read in chunks (checkpoints can be many GB). */
function sha256File(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = new Uint8Array(1 << 24);
    for (let pos = 0; ; ) {
      const got = readSync(fd, buf, 0, buf.byteLength, pos);
      if (got === 0) break;
      hash.update(buf.subarray(0, got));
      pos += got;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

export interface ConvertOptions {
  /** Replace an existing output folder. */
  overwrite?: boolean;
  /** Where the inputs came from, for README.md (one line of Markdown). */
  source?: string;
  /** The inputs' licence, for README.md. */
  license?: string;
}

export interface ConvertResult {
  config: Llama2cConfig;
  outDir: string;
  files: string[];
}

/** Convert `modelPath` + `tokenizerPath` into a HF folder at `outDir` (built under a temporary name, renamed at the end). */
export function convertLlama2c(modelPath: string, tokenizerPath: string, outDir: string, opts: ConvertOptions = {}): ConvertResult {
  if (endianness() !== 'LE') throw new ShearsError('llama2.c conversion needs a little-endian machine');
  let fd: number;
  try {
    fd = openSync(modelPath, 'r');
  } catch (e) {
    throw fileError(modelPath, `cannot open (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  try {
    const size = fstatSync(fd).size;
    const head = new Uint8Array(Math.min(HEADER_BYTES, size));
    readSync(fd, head, 0, head.byteLength, 0);
    const c = parseLlama2cHeader(head, modelPath);
    const { arrays, totalFloats } = llama2cLayout(c);
    const expected = HEADER_BYTES + 4 * totalFloats;
    if (size !== expected) {
      const hint = size === expected + 4 * c.vocabSize * c.dim && c.sharedClassifier ? ' (it looks like a separate classifier follows: is vocab_size missing its minus sign?)' : '';
      throw fileError(modelPath, `is ${size} bytes but its header (dim ${c.dim}, hidden ${c.hiddenDim}, ${c.nLayers} layers, ${c.nHeads} heads, ${c.nKvHeads} kv heads, vocab ${c.sharedClassifier ? '' : '-'}${c.vocabSize}, seq ${c.seqLen}) implies ${expected} bytes${hint}`);
    }

    let tokBytes: Uint8Array;
    try {
      tokBytes = readFileSync(tokenizerPath);
    } catch (e) {
      throw fileError(tokenizerPath, `cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    const vocab = parseLlama2cVocab(tokBytes, tokenizerPath);
    if (vocab.pieces.length !== c.vocabSize) {
      throw fileError(tokenizerPath, `has ${vocab.pieces.length} tokens but ${basename(modelPath)} has vocab_size ${c.vocabSize}`);
    }
    const tok = buildSentencePieceTokenizer(vocab, tokenizerPath, c.seqLen);

    const file = new Llama2cFile(modelPath, fd, arrays);
    checkRopeTables(file, c);

    const dir = new AtomicDir(outDir, { overwrite: opts.overwrite });
    try {
      const json = (name: string, value: unknown) => writeFileSync(join(dir.path, name), JSON.stringify(value, null, 2) + '\n');
      json('config.json', hfLlamaConfig(c));
      json('generation_config.json', { _from_model_config: true, bos_token_id: BOS_ID, eos_token_id: EOS_ID });
      json('tokenizer.json', tok.tokenizerJson);
      json('tokenizer_config.json', tok.tokenizerConfig);
      writeFileSync(join(dir.path, 'README.md'), readme(c, modelPath, tokenizerPath, opts));

      const writer = new SafetensorsWriter(join(dir.path, 'model.safetensors'), hfTensorSpecs(c), { format: 'pt' });
      try {
        writeTensors(writer, file, c);
        writer.finish();
      } catch (e) {
        writer.abort();
        throw e;
      }
      dir.commit();
    } catch (e) {
      dir.abort();
      throw e;
    }
    return {
      config: c,
      outDir,
      files: ['README.md', 'config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'],
    };
  } finally {
    closeSync(fd);
  }
}

function writeTensors(writer: SafetensorsWriter, file: Llama2cFile, c: Llama2cConfig): void {
  const hd = headDim(c);
  writer.write('model.embed_tokens.weight', file.whole('tok_embeddings'));
  for (let l = 0; l < c.nLayers; l++) {
    const p = `model.layers.${l}.`;
    writer.write(`${p}input_layernorm.weight`, file.layer('rms_att', l));
    writer.write(`${p}self_attn.q_proj.weight`, ropeRowsToHf(file.layer('wq', l), c.nHeads, hd, c.dim));
    // k has one row block per key/value head: permute with n_kv_heads, not n_heads.
    writer.write(`${p}self_attn.k_proj.weight`, ropeRowsToHf(file.layer('wk', l), c.nKvHeads, hd, c.dim));
    writer.write(`${p}self_attn.v_proj.weight`, file.layer('wv', l));
    writer.write(`${p}self_attn.o_proj.weight`, file.layer('wo', l));
    writer.write(`${p}post_attention_layernorm.weight`, file.layer('rms_ffn', l));
    writer.write(`${p}mlp.gate_proj.weight`, file.layer('w1', l));
    writer.write(`${p}mlp.down_proj.weight`, file.layer('w2', l));
    writer.write(`${p}mlp.up_proj.weight`, file.layer('w3', l));
  }
  writer.write('model.norm.weight', file.whole('rms_final'));
  if (!c.sharedClassifier) writer.write('lm_head.weight', file.whole('wcls'));
}

function readme(c: Llama2cConfig, modelPath: string, tokenizerPath: string, opts: ConvertOptions): string {
  const m = basename(modelPath);
  const t = basename(tokenizerPath);
  return `# ${m.replace(/\.bin$/, '')} (converted from llama2.c)

A HuggingFace \`LlamaForCausalLM\` folder converted by shears \`scripts/convert-llama2c.ts\` from a llama2.c
legacy checkpoint and its tokenizer.

- Source: ${opts.source ?? 'not recorded'}
- Licence: ${opts.license ?? 'not recorded'}

| input | sha256 |
| --- | --- |
| \`${m}\` | \`${sha256File(modelPath)}\` |
| \`${t}\` | \`${sha256File(tokenizerPath)}\` |

Architecture: dim ${c.dim}, hidden ${c.hiddenDim}, ${c.nLayers} layers, ${c.nHeads} heads, ${c.nKvHeads} key/value heads,
vocab ${c.vocabSize}, context ${c.seqLen}, ${c.sharedClassifier ? 'classifier tied to the embeddings' : 'separate classifier (lm_head.weight)'}.

What the conversion does:
- weights are copied unchanged (float32) under HF names: tok_embeddings → model.embed_tokens, rms_att →
  input_layernorm, wq/wk/wv/wo → self_attn.q/k/v/o_proj, rms_ffn → post_attention_layernorm, w1/w3/w2 →
  mlp.gate/up/down_proj, rms_final → model.norm${c.sharedClassifier ? '' : ', wcls → lm_head'};
- the rows of q_proj (per query head) and k_proj (per key/value head) are reordered for HF's rotate_half RoPE:
  HF row a·head_dim/2 + i = llama2.c row 2i + a within each head;
- llama2.c's stored RoPE tables were checked to be theta ${ROPE_THETA} (config rope_theta) and dropped;
- the tokenizer becomes a HF BPE tokenizer with byte fallback whose merges are ranked by the llama2.c piece
  scores; it gives the same ids as llama2.c's encoder (see src/tokenize/sentencepiece-bpe.ts).
`;
}
