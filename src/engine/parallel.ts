/**
 * Element-wise passes on every core. onnxruntime runs its products on all cores, but between products a
 * method's O(rows·cols) JS passes (ALPS's ADMM updates) ran on one, leaving the other idle for about
 * half of ALPS's time on the ~100M model. `across` splits such a pass into contiguous ranges that this
 * thread and worker threads take in turn, and returns each range's result in order.
 *
 * A kernel is a plain, self-contained `function` (no imports, no closures, no nested functions: the
 * workers rebuild it from its source text) taking its arguments and then (k0, k1, part) for its range.
 * Arrays it touches must live in SharedArrayBuffers (`sharedF32`, `sharedF64`, `sharedU8`): anything else would be
 * copied to the worker and the writes lost, so `across` refuses it. onnxruntime-node refuses shared
 * arrays, so products read and write plain ones and the caller copies (memcpy: ~0.1 ns per value here,
 * against several ns per value of the passes themselves).
 *
 * Every element gets the same arithmetic whatever the split, so results do not depend on the number of
 * cores; a kernel's caller combines the per-range results in range order.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';

/** A kernel: its own arguments, then (k0, k1, part). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Kernel = (...args: any[]) => unknown;

/** Below this many elements a pass runs here only: a worker round trip costs ~0.05–0.1 ms. */
const MIN_SPLIT = 1 << 16;

/**
 * The worker. Each message brings new wrappers of the caller's shared arrays, and a wrapper keeps its
 * memory alive until this thread's garbage collector runs, which its small allocations almost never
 * trigger: the memory of arrays the caller had long dropped stayed resident (+250 MiB of peak RSS in
 * an ALPS run of the ~100M model). So the worker collects its young generation, where the wrappers
 * are, every COLLECT_EVERY messages (~0.9 ms each), and everything every 8 × COLLECT_EVERY (~9 ms:
 * full collections every 8 messages made the worker's share of each pass the slow one; young ones
 * alone left ~90 MiB more resident, wrappers that had lived long enough to be promoted).
 */
const COLLECT_EVERY = 8;
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
require('node:v8').setFlagsFromString('--expose-gc');
const collect = typeof gc === 'function' ? gc : require('node:vm').runInNewContext('gc');
const kernels = new Map();
let calls = 0;
parentPort.on('message', (msg) => {
  const { id, name, source, total, ranges, next } = msg;
  try {
    let f = kernels.get(name);
    if (!f) { f = new Function('return (' + source + ')')(); kernels.set(name, f); }
    const result = [];
    for (let i = Atomics.add(next, 0, 1); i < ranges; i = Atomics.add(next, 0, 1)) {
      result.push([i, f(...msg.args, Math.round((total * i) / ranges), Math.round((total * (i + 1)) / ranges), i)]);
    }
    msg.args = undefined;
    parentPort.postMessage({ id, result });
  } catch (e) {
    parentPort.postMessage({ id, error: String(e && e.stack || e) });
  }
  if (++calls % ${COLLECT_EVERY * 8} === 0) collect();
  else if (calls % ${COLLECT_EVERY} === 0) collect({ type: 'minor' });
});
`;

interface Helper {
  worker: Worker;
  known: Set<string>;
  pending: Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>;
}

let helpers: Helper[] | undefined;
let nextId = 0;
/** Kernels by identity, not by name: two kernels may share a name. */
const kernelKeys = new WeakMap<Kernel, string>();

/** How many threads share a pass (this one and the workers): the cores onnxruntime uses (SHEARS_THREADS or all of them). */
export function parts(): number {
  return Math.max(1, Number(process.env.SHEARS_THREADS) || availableParallelism());
}

/** At least `count` workers (SHEARS_THREADS may change between calls: tests compare splits). */
function pool(count: number): Helper[] {
  helpers ??= [];
  while (helpers.length < count) {
    // No inherited flags: the worker is a plain script (no module loaders, no --input-type).
    const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
    const h: Helper = { worker, known: new Set(), pending: new Map() };
    worker.on('message', ({ id, result, error }: { id: number; result?: unknown; error?: string }) => {
      const p = h.pending.get(id);
      h.pending.delete(id);
      if (h.pending.size === 0) worker.unref();
      if (error !== undefined) p?.reject(new Error(`parallel kernel failed in a worker: ${error}`));
      else p?.resolve(result);
    });
    worker.on('error', (e) => {
      for (const p of h.pending.values()) p.reject(e);
      h.pending.clear();
    });
    // An idle worker must not keep the process alive; one with work in flight must (else a run that is
    // only waiting on it could end early).
    worker.unref();
    helpers.push(h);
  }
  return helpers;
}

function send(h: Helper, kernel: Kernel, args: unknown[], total: number, ranges: number, next: Int32Array): Promise<unknown> {
  const id = nextId++;
  let name = kernelKeys.get(kernel);
  if (!name) kernelKeys.set(kernel, (name = `${kernel.name}#${id}`));
  const msg: { id: number; name: string; args: unknown[]; total: number; ranges: number; next: Int32Array; source?: string } = { id, name, args, total, ranges, next };
  if (!h.known.has(name)) {
    msg.source = kernel.toString();
    h.known.add(name);
  }
  return new Promise((resolve, reject) => {
    if (h.pending.size === 0) h.worker.ref();
    h.pending.set(id, { resolve, reject });
    h.worker.postMessage(msg);
  });
}

function checkShared(args: unknown[], kernel: Kernel): void {
  for (const a of args) {
    if (ArrayBuffer.isView(a) && !(a.buffer instanceof SharedArrayBuffer)) {
      throw new TypeError(`across(${kernel.name}): a typed-array argument is not in a SharedArrayBuffer`);
    }
  }
}

/** Ranges per thread: the threads take ranges as they finish them, so a thread slowed down (by the
 * garbage collector's helpers, or a message that arrives late) leaves its share to the others. */
const RANGES_PER_THREAD = 4;

/** The most ranges a pass is split into (a kernel that writes per range, at k0 + part, needs this much room). */
export function maxRanges(): number {
  return parts() * RANGES_PER_THREAD;
}

/**
 * Runs kernel(...args, k0, k1, part) over [0, total) split into up to maxRanges() contiguous ranges,
 * part = 0, 1, … in order (one range when the work is small: total × `width`, the values one index
 * stands for, under MIN_SPLIT), and returns the ranges' results in order. Which thread runs which range
 * is decided as they go; the results do not depend on it.
 */
export async function across<R>(kernel: Kernel, total: number, args: unknown[], width = 1): Promise<R[]> {
  const threads = total * width < MIN_SPLIT ? 1 : Math.min(parts(), total);
  if (threads === 1) return [kernel(...args, 0, total, 0) as R];
  checkShared(args, kernel);
  const ranges = Math.min(total, threads * RANGES_PER_THREAD);
  const next = new Int32Array(new SharedArrayBuffer(4));
  const hs = pool(threads - 1);
  const waits: Promise<unknown>[] = [];
  for (let t = 1; t < threads; t++) waits.push(send(hs[t - 1], kernel, args, total, ranges, next));
  const results: R[] = new Array(ranges);
  try {
    for (let i = Atomics.add(next, 0, 1); i < ranges; i = Atomics.add(next, 0, 1)) {
      results[i] = kernel(...args, Math.round((total * i) / ranges), Math.round((total * (i + 1)) / ranges), i) as R;
    }
  } catch (e) {
    // The workers take no further range; wait for the ones they hold (their arrays are ours).
    Atomics.store(next, 0, ranges);
    await Promise.allSettled(waits);
    throw e;
  }
  for (const done of (await Promise.all(waits)) as [number, R][][]) for (const [i, r] of done) results[i] = r;
  return results;
}

export function sharedF32(length: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(length * 4));
}

export function sharedF64(length: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(length * 8));
}

export function sharedU8(length: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(length));
}

/** Stops the workers (tests; a process exits without it). */
export async function stopWorkers(): Promise<void> {
  const hs = helpers;
  helpers = undefined;
  if (hs) await Promise.all(hs.map((h) => h.worker.terminate()));
}
