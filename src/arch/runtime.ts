/**
 * Running the adapters' graphs: weight feeds with shape checks, the block call with reusable capture
 * buffers, chunked LM-head graphs (logits, nll) and the embedding gather. Shared by every family.
 */
import type ort from 'onnxruntime-node';
import { ShearsError, usageError } from '../errors.js';
import { GraphBuilder } from '../engine/graph.js';
import { releaseSessions, run, session, tensor, type Feeds } from '../engine/session.js';
import { softcap } from './ops.js';
import type { BlockResult, CaptureReduce, LinearLayer, Weights } from './types.js';

/** A weight from `w` as a tensor of shape `dims`, checking that it has that many values. */
export function weightFeed(w: Weights, name: string, dims: readonly number[]): ort.Tensor {
  const data = w.get(name);
  if (!data) throw new Error(`tensor "${name}" was not loaded (is it listed by blockTensors/headTensors/embedTensors?)`);
  const n = dims.reduce((a, b) => a * b, 1);
  if (data.length !== n) {
    throw new ShearsError(`tensor "${name}" has ${data.length} values, but config.json implies shape [${dims.join(', ')}] (${n} values)`);
  }
  return tensor(data, dims);
}

/** Throws unless x holds whole windows of `seq` tokens of width `width`; returns the token count. */
export function tokensOf(x: Float32Array, width: number, seq: number): number {
  if (!Number.isInteger(seq) || seq <= 0 || x.length % (seq * width) !== 0) {
    throw new Error(`activations of ${x.length} values are not whole windows of ${seq} tokens × ${width}`);
  }
  return x.length / width;
}

/** A block graph as built: its bytes, the name of its output value and of each captured linear input. */
export interface BuiltBlock {
  bytes: Uint8Array;
  /**
   * With capture: the same graph whose only outputs are the captured inputs. The statistics pass discards
   * the block output, and onnxruntime drops the nodes no output needs: the last projection's product and
   * the residual add are not computed there.
   */
  inputsOnly?: Uint8Array;
  out: string;
  /** Input id → graph value name; empty unless built with capture. */
  captures: Record<string, string>;
}

const names = new Map<string, { out: string; captures: Record<string, string> }>();
const scratch = new Map<string, Float32Array>();

/**
 * A reusable buffer of `length` floats for (key, id), grown when too small. Kept at its largest: a shorter
 * last micro-batch would otherwise replace it twice per block pass, and fresh pages are what cost here.
 */
function scratchBuffer(key: string, length: number): Float32Array {
  let b = scratch.get(key);
  if (!b || b.length < length) {
    scratch.delete(key); // let the old one go before allocating the new one
    b = new Float32Array(length);
    scratch.set(key, b);
  }
  return b.subarray(0, length);
}

/**
 * Declares a block graph's outputs: `out` [tokens, hidden] and, in the capturing variant, each linear
 * input (id → [value, width]), or with `reduce` its column sums of squares [width]; `x` is the graph's
 * input value. Returns the built block.
 */
export function finishBlock(g: GraphBuilder, x: string, out: string, hidden: number, capture: boolean, inputs: Record<string, readonly [string, number]>, reduce?: CaptureReduce): BuiltBlock {
  const captures: Record<string, string> = {};
  if (capture) {
    for (const [id, [value, width]] of Object.entries(inputs)) {
      if (reduce === 'column-squares') {
        // The same ReduceSumSquare over the call's rows as linalg.addColumnSquares runs on a captured input.
        captures[id] = g.output(g.op('ReduceSumSquare', [value], { axes: [0], keepdims: 0 }), 'float32', [width], `${id}_sumsq`);
        continue;
      }
      // A post-LN block feeds its first layers the block input x itself; a graph input cannot double as an output.
      captures[id] = g.output(value, 'float32', ['tokens', width], value === x ? `${id}_copy` : undefined);
    }
  }
  const inputsOnly = capture ? g.toBytes() : undefined;
  g.output(out, 'float32', ['tokens', hidden]);
  return { bytes: g.toBytes(), inputsOnly, out, captures };
}

export interface BlockCall {
  /** Session cache key for the graph shape (family + dims); the capture variant is keyed apart. */
  key: string;
  build(capture: boolean): BuiltBlock;
  feeds: Feeds;
  tokens: number;
  hidden: number;
  capture: boolean;
  /** Width of each captured input id (cols of the layers it feeds). */
  widths: Record<string, number>;
  /** The graph reduces its captures (finishBlock's `reduce`; the caller's build must pass it on). */
  reduce?: CaptureReduce;
  /**
   * Where to write the block output ([tokens, hidden], must not overlap the input); fresh if absent. null:
   * the output is not wanted (a statistics pass, capture on): the graph without it runs, and `out` of the
   * result is empty.
   */
  out?: Float32Array | null;
}

/** Session keys of block graphs start with this, so that they can be released together. */
const BLOCK_SESSION = 'block|';

/** Releases every block graph's session and its memory arena; the next call rebuilds them. */
export function releaseBlockSessions(): Promise<void> {
  return releaseSessions(BLOCK_SESSION);
}

/**
 * Runs one block graph. Buffer contract: `out` is the caller's `out` or a fresh array, never reused by
 * shears; the captured `inputs` are scratch buffers reused by the next capturing call of the same graph
 * shape, so consume (or copy) them before running the block again.
 */
export async function runBlockGraph(c: BlockCall): Promise<BlockResult> {
  const inputsOnly = c.out === null;
  if (inputsOnly && !c.capture) throw new Error('a block call that discards its output must capture its inputs');
  const reduce = c.capture ? c.reduce : undefined;
  const key = `${BLOCK_SESSION}${c.capture ? `${c.key}|capture${reduce ? `|${reduce}` : ''}${inputsOnly ? '|inputs-only' : ''}` : c.key}`;
  const s = await session(key, () => {
    const b = c.build(c.capture);
    names.set(key, { out: b.out, captures: b.captures });
    if (inputsOnly && !b.inputsOnly) throw new Error(`block graph ${key} was built without its inputs-only variant`);
    return inputsOnly ? b.inputsOnly! : b.bytes;
  });
  const n = names.get(key);
  if (!n) throw new Error(`block graph ${key} has no recorded output names`);
  const out = inputsOnly ? new Float32Array(0) : (c.out ?? new Float32Array(c.tokens * c.hidden));
  if (!inputsOnly && out.length !== c.tokens * c.hidden) throw new Error(`block output buffer has ${out.length} values, expected ${c.tokens * c.hidden}`);
  const into: Feeds = inputsOnly ? {} : { [n.out]: tensor(out, [c.tokens, c.hidden]) };
  const inputs: Record<string, Float32Array> = {};
  if (c.capture) {
    for (const [id, value] of Object.entries(n.captures)) {
      const width = c.widths[id];
      if (width === undefined) throw new Error(`no width given for captured input ${id}`);
      inputs[id] = scratchBuffer(`${key}|${id}`, reduce ? width : c.tokens * width);
      into[value] = tensor(inputs[id], reduce ? [width] : [c.tokens, width]);
    }
  }
  await run(s, c.feeds, into);
  return reduce ? { out, inputs, reduced: reduce } : { out, inputs };
}

/** The final transform and LM head of a family, for `headLogits` / `headNll`. */
export interface HeadGraph {
  /** Session cache key (family + dims). */
  key: string;
  /** Width of the hidden states fed in. */
  hidden: number;
  vocab: number;
  /** Tensor name of the LM head weight [vocab, headWidth] (the embedding matrix when tied). */
  headWeight: string;
  /** Width of the head weight's rows; default `hidden` (OPT's project_out changes it). */
  headWidth?: number;
  /** Adds the final norm (and projection) on x [n, hidden], declaring its own weight inputs → [n, headWidth]. */
  final(g: GraphBuilder, x: string): string;
  /** Feeds for the inputs `final` declared. */
  finalFeeds(w: Weights): Feeds;
  /** Tanh soft-capping of the logits, cap · tanh(logits / cap) (Gemma 2's final_logit_softcapping); absent: none. */
  logitCap?: number;
}

/** Logit values per LM-head call: [rows, vocab] float32 near 256 MiB (vocab can be 128k). */
let headChunkFloats = 2 ** 26;

/** Changes the LM-head chunk size (tests use it to exercise chunking); returns the previous value. */
export function setHeadChunkFloats(n: number): number {
  const old = headChunkFloats;
  headChunkFloats = n;
  return old;
}

function headRows(vocab: number): number {
  return Math.max(1, Math.floor(headChunkFloats / vocab));
}

function headSession(h: HeadGraph, kind: 'logits' | 'nll'): Promise<ort.InferenceSession> {
  const width = h.headWidth ?? h.hidden;
  return session(`${h.key}|head-${kind}`, () => {
    const g = new GraphBuilder(`${h.key}-${kind}`);
    const x = g.input('x', 'float32', ['n', h.hidden]);
    const head = g.input('head_w', 'float32', [h.vocab, width]);
    const raw = g.op('Gemm', [h.final(g, x), head], { transB: 1 });
    const logits = h.logitCap === undefined ? raw : softcap(g, raw, h.logitCap);
    if (kind === 'logits') {
      g.output(logits, 'float32', ['n', h.vocab], 'logits');
    } else {
      const targets = g.input('targets', 'int64', ['n', 1]);
      const picked = g.op('GatherElements', [g.op('LogSoftmax', [logits], { axis: -1 }), targets], { axis: 1 });
      g.output(g.op('Neg', [picked]), 'float32', ['n', 1], 'nll');
    }
    return g.toBytes();
  });
}

/**
 * The head half of `Architecture`, the same for every family once it has described its HeadGraph:
 * adapters extend this and implement the rest.
 */
export abstract class HeadedArchitecture {
  protected abstract readonly head: HeadGraph;
  abstract embedTensors(): string[];

  headLinear(): LinearLayer & { tied: boolean } {
    return headLayer(this.head, this.embedTensors());
  }

  headInput(w: Weights, x: Float32Array): Promise<Float32Array> {
    return headFinal(this.head, w, x);
  }

  logits(w: Weights, x: Float32Array): Promise<Float32Array> {
    return headLogits(this.head, w, x);
  }

  nll(w: Weights, x: Float32Array, _seq: number, targets: Int32Array): Promise<Float32Array> {
    return headNll(this.head, w, x, targets);
  }
}

/** The LM head seen as a prunable linear layer; tied when its weight is one of the embedding tensors. */
export function headLayer(h: HeadGraph, embedTensors: string[]): LinearLayer & { tied: boolean } {
  const width = h.headWidth ?? h.hidden;
  return { name: 'lm_head', tensor: h.headWeight, rows: h.vocab, cols: width, transposed: false, input: 'head_in', stage: 0, tied: embedTensors.includes(h.headWeight) };
}

/** The head's input (final norm and projection) for x [tokens, hidden] → [tokens, headWidth]. */
export async function headFinal(h: HeadGraph, w: Weights, x: Float32Array): Promise<Float32Array> {
  const tokens = tokensOf(x, h.hidden, 1);
  const width = h.headWidth ?? h.hidden;
  const s = await session(`${h.key}|head-final`, () => {
    const g = new GraphBuilder(`${h.key}-final`);
    g.output(h.final(g, g.input('x', 'float32', ['n', h.hidden])), 'float32', ['n', width], 'y');
    return g.toBytes();
  });
  const out = new Float32Array(tokens * width);
  await run(s, { ...h.finalFeeds(w), x: tensor(x, [tokens, h.hidden]) }, { y: tensor(out, [tokens, width]) });
  return out;
}

/** Logits [tokens, vocab] for x [tokens, hidden], in chunks of rows. */
export async function headLogits(h: HeadGraph, w: Weights, x: Float32Array): Promise<Float32Array> {
  const tokens = tokensOf(x, h.hidden, 1);
  const s = await headSession(h, 'logits');
  const feeds = { ...h.finalFeeds(w), head_w: weightFeed(w, h.headWeight, [h.vocab, h.headWidth ?? h.hidden]) };
  const out = new Float32Array(tokens * h.vocab);
  const rows = headRows(h.vocab);
  for (let t0 = 0; t0 < tokens; t0 += rows) {
    const n = Math.min(rows, tokens - t0);
    const xs = tensor(x.subarray(t0 * h.hidden, (t0 + n) * h.hidden), [n, h.hidden]);
    await run(s, { ...feeds, x: xs }, { logits: tensor(out.subarray(t0 * h.vocab, (t0 + n) * h.vocab), [n, h.vocab]) });
  }
  return out;
}

/**
 * nll[t] = -log softmax(logits[t])[targets[t]] for x [tokens, hidden]; targets[t] < 0 → 0 written.
 * Targets must be < vocab. Logits never leave the graph.
 */
export async function headNll(h: HeadGraph, w: Weights, x: Float32Array, targets: Int32Array): Promise<Float32Array> {
  const tokens = tokensOf(x, h.hidden, 1);
  if (targets.length !== tokens) throw new Error(`nll: ${targets.length} targets for ${tokens} tokens`);
  const s = await headSession(h, 'nll');
  const feeds = { ...h.finalFeeds(w), head_w: weightFeed(w, h.headWeight, [h.vocab, h.headWidth ?? h.hidden]) };
  const out = new Float32Array(tokens);
  const rows = headRows(h.vocab);
  const tgt = new BigInt64Array(Math.min(rows, tokens));
  for (let t0 = 0; t0 < tokens; t0 += rows) {
    const n = Math.min(rows, tokens - t0);
    for (let i = 0; i < n; i++) {
      const t = targets[t0 + i];
      if (t >= h.vocab) throw new ShearsError(`token id ${t} is outside the vocabulary of ${h.vocab}`);
      tgt[i] = BigInt(Math.max(0, t));
    }
    const xs = tensor(x.subarray(t0 * h.hidden, (t0 + n) * h.hidden), [n, h.hidden]);
    await run(s, { ...feeds, x: xs, targets: tensor(tgt.subarray(0, n), [n, 1]) }, { nll: tensor(out.subarray(t0, t0 + n), [n, 1]) });
    for (let i = 0; i < n; i++) if (targets[t0 + i] < 0) out[t0 + i] = 0;
  }
  return out;
}

/** Rows `ids` of an embedding table [vocab, width] → [ids.length, width]. */
export function gatherRows(table: Float32Array, width: number, ids: Int32Array): Float32Array {
  const vocab = table.length / width;
  const out = new Float32Array(ids.length * width);
  for (let t = 0; t < ids.length; t++) {
    const id = ids[t];
    if (!(id >= 0 && id < vocab)) throw new ShearsError(`token id ${id} is outside the vocabulary of ${vocab}`);
    out.set(table.subarray(id * width, (id + 1) * width), t * width);
  }
  return out;
}

/** The embedding rows of whole windows of `seq` ids, from the loaded table `name` [vocab, width]. */
export function embedRows(w: Weights, name: string, width: number, ids: Int32Array, seq: number): Float32Array {
  if (ids.length % seq !== 0) throw new Error(`${ids.length} ids are not whole windows of ${seq}`);
  const table = w.get(name);
  if (!table) throw new Error(`${name} was not loaded`);
  return gatherRows(table, width, ids);
}

/** Rejects windows longer than a model with learned positions has rows for. */
export function checkSeq(seq: number, maxPositions: number, field: string): void {
  if (seq > maxPositions) throw usageError(`windows of ${seq} tokens are longer than the model's ${field} (${maxPositions})`);
}
