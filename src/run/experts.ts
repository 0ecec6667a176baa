/**
 * Blocks with routed experts (MoE), run so that one expert's weights are in memory at a time on top of the
 * block's shared parts (attention, norms, router, shared expert): the shared part goes over every token
 * first, keeping the experts' input and the routing of all tokens; then each expert is read (for the fused
 * transformers 5 layout, only its slice of the 3-D tensors), run on the tokens routed to it, and let go.
 *
 * The experts run on the same micro-batches as a whole-block run (runCalls' chunks), expert after expert
 * for each token, so results, and the statistics handed over per micro-batch, equal those of runBlock
 * with every expert loaded. The price is activations: the experts' input [tokens, hidden] of every
 * calibration token is held while they stream (two of them for a statistics pass on the dense block).
 */
import type { Architecture, LinearLayer, RoutedExperts, Routing, TensorSource, Weights } from '../arch/types.js';
import { addWeighted, pickRows, routedTokens } from '../arch/moe.js';
import { loadWeights, runCalls, tokensPerCall, type InputsHook } from './micro-batches.js';

/** The shared part's result over every token: what the routed experts run on. */
export interface SharedPass {
  /** The experts' input, [tokens, hidden]. */
  moeIn: Float32Array;
  routing: Routing;
  /** Tokens per micro-batch of the pass (a multiple of seq). */
  chunk: number;
}

/** One routed expert as loaded. */
export interface LoadedExpert {
  /** Its layers, addressing `w` (a fused layer's part.offset counts from the start of its loaded slice). */
  layers: LinearLayer[];
  /** Tensor name → the expert's values: the whole tensor, or its slice of a fused 3-D tensor. */
  w: Weights;
  /** Tensor name → element offset of the loaded values within the stored tensor (0 for a whole tensor). */
  starts: Map<string, number>;
}

/** Reads expert `layers` (routed.expertLayers): whole per-expert tensors, or the expert's range of each fused one. */
export function loadExpert(src: TensorSource, layers: LinearLayer[]): LoadedExpert {
  const ranges = new Map<string, [number, number]>();
  for (const l of layers) {
    if (!l.part) continue;
    const [a, b] = ranges.get(l.tensor) ?? [Infinity, -Infinity];
    ranges.set(l.tensor, [Math.min(a, l.part.offset), Math.max(b, l.part.offset + l.rows * l.cols)]);
  }
  const w: Weights = loadWeights(src, [...new Set(layers.filter((l) => !l.part).map((l) => l.tensor))]);
  const starts = new Map<string, number>([...w.keys()].map((n) => [n, 0]));
  for (const [name, [a, b]] of ranges) {
    w.set(name, src.readFloat32Range(name, a, b - a));
    starts.set(name, a);
  }
  const rebased = layers.map((l) => (l.part ? { ...l, part: { ...l.part, offset: l.part.offset - starts.get(l.tensor)! } } : l));
  return { layers: rebased, w, starts };
}

/**
 * The shared part of block i over x, in runCalls' micro-batches: writes its output (residual after attention
 * plus shared expert) to `out` (x itself allowed; null: dropped) and hands over the shared layers' inputs.
 * Returns the experts' input and routing of every token, or (keep false) undefined.
 */
export async function runSharedOver(arch: Architecture, routed: RoutedExperts, i: number, w: Weights, x: Float32Array, seq: number, out: Float32Array | null, onInputs: InputsHook | undefined, keep: true): Promise<SharedPass>;
export async function runSharedOver(arch: Architecture, routed: RoutedExperts, i: number, w: Weights, x: Float32Array, seq: number, out: Float32Array | null, onInputs: InputsHook | undefined, keep: boolean): Promise<SharedPass | undefined>;
export async function runSharedOver(arch: Architecture, routed: RoutedExperts, i: number, w: Weights, x: Float32Array, seq: number, out: Float32Array | null, onInputs: InputsHook | undefined, keep: boolean): Promise<SharedPass | undefined> {
  const h = arch.spec.hiddenSize;
  const tokens = x.length / h;
  const moeIn = keep ? new Float32Array(x.length) : undefined;
  let routing: Routing | undefined;
  await runCalls(arch, async (xs, capture, target, first) => {
    const r = await routed.runShared(i, w, xs, seq, capture, target ?? undefined);
    if (!moeIn) return r;
    moeIn.set(r.moeIn, first * h); // a scratch buffer: copied before the next call
    const k = r.routing.k;
    routing ??= { experts: new Int32Array(tokens * k), weights: new Float32Array(tokens * k), k };
    routing.experts.set(r.routing.experts, first * k);
    routing.weights.set(r.routing.weights, first * k);
    return r;
  }, x, seq, out, onInputs);
  return moeIn ? { moeIn, routing: routing!, chunk: tokensPerCall(arch, seq) } : undefined;
}

/**
 * Routed expert e of block i (loaded in `ex`) over its tokens in `pass`, one micro-batch at a time: adds
 * p·expert(x) of each routed token to `out` (when given) and, with `onInputs`, hands over its captured
 * inputs (`expert<e>`: the routed rows, `expert<e>.down`) with the windows that routed any token to it.
 */
export async function runExpertOver(routed: RoutedExperts, i: number, e: number, ex: LoadedExpert, pass: SharedPass, h: number, seq: number, out: Float32Array | null, onInputs?: InputsHook): Promise<void> {
  const all = routedTokens(pass.routing, routed.count(i))[e];
  const tokens = pass.moeIn.length / h;
  let k = 0;
  for (let first = 0; first < tokens; first += pass.chunk) {
    const end = Math.min(tokens, first + pass.chunk);
    let k1 = k;
    while (k1 < all.tokens.length && all.tokens[k1] < end) k1++;
    const mine = { tokens: all.tokens.subarray(k, k1), slots: all.slots.subarray(k, k1) };
    k = k1;
    if (mine.tokens.length === 0) continue; // as HF: an expert no token chose is not run
    const xe = pickRows(pass.moeIn, h, mine.tokens);
    const y = await routed.runExpert(i, e, ex.w, ex.layers, xe, onInputs !== undefined);
    if (out) addWeighted(out, y.y, h, mine, pass.routing);
    if (onInputs) {
      const windows = new Set(Array.from(mine.tokens, (t) => Math.floor(t / seq))).size;
      await onInputs({ [`expert${e}`]: xe, [`expert${e}.down`]: y.downIn! }, windows, { [`expert${e}`]: windows, [`expert${e}.down`]: windows });
    }
  }
}

/** Block i with every token of x through it, experts streamed: x becomes the block's output. */
export async function runRoutedBlockInPlace(arch: Architecture, routed: RoutedExperts, i: number, src: TensorSource, x: Float32Array, seq: number): Promise<void> {
  const pass = await runSharedOver(arch, routed, i, loadWeights(src, routed.sharedTensors(i)), x, seq, x, undefined, true);
  for (let e = 0; e < routed.count(i); e++) await runExpertOver(routed, i, e, loadExpert(src, routed.expertLayers(i, e)), pass, arch.spec.hiddenSize, seq, x);
}
