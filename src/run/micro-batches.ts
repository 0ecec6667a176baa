/**
 * Micro-batching of block calls: windows go through a block (or a block's part) in calls small enough that
 * attention scores ([windows, heads, seq, seq]) and captured linear inputs stay modest.
 */
import type { Architecture, BlockResult, CaptureReduce, TensorSource, Weights } from '../arch/types.js';
import { releaseBlockSessions } from '../arch/runtime.js';
import { attentionChunks } from '../arch/ops.js';

/** Reads `names` as float32 (stored layout). */
export function loadWeights(src: TensorSource, names: string[]): Weights {
  const w: Weights = new Map();
  for (const n of names) w.set(n, src.readFloat32(n));
  return w;
}

/**
 * Captured linear inputs of one micro-batch, by input id, [tokens, width]; `windows` sequences, or
 * `sequences[id]` for an input that only some windows fed (MoE experts).
 */
export type InputsHook = (inputs: Record<string, Float32Array>, windows: number, sequences?: Record<string, number>, reduced?: CaptureReduce) => Promise<void> | void;

/**
 * Bytes of attention scores ([windows, heads, seq, seq] float32) per call. ORT materialises the scores about
 * three times (product, +mask, softmax) in the session's memory arena, which keeps its high-water mark for
 * the life of the session, and first touch of fresh memory costs ~3.5 ms/MiB on the machines measured.
 * At 64 MiB (the earlier value) the arena of each block session grew to ~400 MiB, and stories260K at seq 256
 * spent more time faulting it in than computing; steady-state calls were no faster either (the scores no
 * longer stay in cache). 16 MiB keeps ≥ 1 window of a 12-head seq-512 model per call.
 */
const SCORE_BUDGET_BYTES = 16 * 2 ** 20;
/** Cap on tokens per call: MLAS gains nothing beyond a few thousand rows, while captured inputs keep growing. */
// Captured inputs are [tokens, width] per call (11008 wide for a 7B MLP): this bounds them too.
const MAX_TOKENS_PER_CALL = 2048;

/** How many windows of `seq` tokens go through a block per call. */
export function windowsPerCall(arch: Architecture, seq: number): number {
  const scoreBytes = arch.spec.numHeads * seq * seq * 4;
  const byScores = Math.floor(SCORE_BUDGET_BYTES / scoreBytes);
  const byTokens = Math.floor(Math.max(seq, MAX_TOKENS_PER_CALL) / seq);
  return Math.max(1, Math.min(byScores, byTokens));
}

/** One call of a block (or of a block's part) on the micro-batch xs starting at token `first`. */
export type BlockCallFn = (xs: Float32Array, capture: boolean, target: Float32Array | null, first: number) => Promise<BlockResult>;

/** Tokens per call of the micro-batches that runCalls makes (a multiple of seq). */
export function tokensPerCall(arch: Architecture, seq: number): number {
  return windowsPerCall(arch, seq) * seq;
}

/** runBlockOver with the call given: x goes through `call` in micro-batches of whole windows. */
export async function runCalls(arch: Architecture, call: BlockCallFn, x: Float32Array, seq: number, out: Float32Array | null, onInputs?: InputsHook): Promise<void> {
  const hidden = arch.spec.hiddenSize;
  const windows = x.length / (seq * hidden);
  const per = windowsPerCall(arch, seq);
  // A discarded output with capture is not computed at all (the graph without it skips the last projection).
  const discard = out === null && onInputs !== undefined;
  // In place (or discarded without capture), each micro-batch goes through one call-sized buffer reused
  // across calls: a fresh output per call (or an x-sized scratch per pass) would be fresh pages every time.
  const staging = !discard && (out === null || out === x) ? new Float32Array(Math.min(per, windows) * seq * hidden) : undefined;
  for (let start = 0; start < windows; start += per) {
    const n = Math.min(per, windows - start);
    const from = start * seq * hidden;
    const to = from + n * seq * hidden;
    // Writing straight into `out` is allowed only when it does not alias the input.
    const target = discard ? null : staging ? staging.subarray(0, to - from) : out!.subarray(from, to);
    const r = await call(x.subarray(from, to), onInputs !== undefined, target, start * seq);
    if (onInputs) await onInputs(r.inputs, n, r.sequences, r.reduced);
    if (out !== null && staging && target) out.set(target, from);
  }
}

/**
 * Block sessions whose calls' activations stay below this are kept from pass to pass (and block to block):
 * their memory arena is small, while building a session and first touching its arena cost 30–60 ms a pass
 * at hidden 768 (6–8 % of a ~100M model's forward). Larger ones are released after each pass (see
 * `endBlockPass`).
 */
const KEEP_SESSION_BYTES = 128 * 2 ** 20;

/**
 * A rough upper estimate of one block call's live activations, which is what a block session's arena grows to:
 * the residual stream and attention projections (~6 × hidden), the MLP's (~3 × intermediate) and three copies
 * of a query chunk's scores (product, + mask, softmax).
 */
export function callActivationBytes(arch: Architecture, seq: number): number {
  const { hiddenSize: h, intermediateSize: m, numHeads } = arch.spec;
  const windows = windowsPerCall(arch, seq);
  const chunkRows = Math.ceil(seq / attentionChunks(numHeads, seq));
  return 4 * (windows * seq * (6 * h + 3 * m) + 3 * windows * numHeads * chunkRows * seq);
}

/**
 * After a pass over the windows, before work that allocates (pruning a block, loading the next): the block
 * sessions and their arenas are released unless they are small (KEEP_SESSION_BYTES).
 */
export async function endBlockPass(arch: Architecture, seq: number): Promise<void> {
  if (!smallBlockCalls(arch, seq)) await releaseBlockSessions();
}

/** Block calls small enough that their sessions (and the statistics' buffers) are kept from block to block. */
export function smallBlockCalls(arch: Architecture, seq: number): boolean {
  return callActivationBytes(arch, seq) <= KEEP_SESSION_BYTES;
}
