/**
 * onnxruntime-node sessions, one per graph shape, cached for the life of the process.
 * intraOpNumThreads must be set explicitly: left unset, MLAS ran effectively single-threaded here.
 */
import { readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, dirname, join } from 'node:path';
// First: onnxruntime must not start its telemetry when it loads (see no-telemetry.ts).
import './no-telemetry.js';
import ort from 'onnxruntime-node';

export type Feeds = Record<string, ort.Tensor>;
export type Fetches = Record<string, ort.Tensor>;

const sessions = new Map<string, Promise<ort.InferenceSession>>();

/** Set while onnxruntime's profiler is on (benchmarks only): where sessions write their JSON traces. */
let profilePrefix: string | undefined;

function sessionOptions(): ort.InferenceSession.SessionOptions {
  return {
    ...(profilePrefix ? { enableProfiling: true, profileFilePrefix: profilePrefix } : {}),
    intraOpNumThreads: Number(process.env.SHEARS_THREADS) || availableParallelism(),
    interOpNumThreads: 1,
    // onnxruntime plans a memory pattern per input shape and keeps it with the session. With the shapes shears
    // feeds (token counts vary, block sessions are rebuilt every pass) turning it off measured faster and
    // smaller at hidden 1024: eval 1443 → 1525 tokens/s, SparseGPT prune peak 584–591 → 528–565 MiB.
    enableMemPattern: false,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // e.g. "cuda,cpu" with onnxruntime-node's CUDA build; the CPU build ships only "cpu".
    executionProviders: (process.env.SHEARS_EXECUTION_PROVIDERS ?? 'cpu').split(',').map((p) => p.trim()).filter(Boolean),
    // Spinning threads would steal the cores from JS work between calls.
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  };
}

/** The session for `key`, building the model bytes with `build` on first use. */
export function session(key: string, build: () => Uint8Array): Promise<ort.InferenceSession> {
  let s = sessions.get(key);
  if (!s) {
    s = ort.InferenceSession.create(build(), sessionOptions());
    sessions.set(key, s);
  }
  return s;
}

/** Wraps an existing typed array without copying. */
export function tensor(data: Float32Array, dims: readonly number[]): ort.Tensor;
export function tensor(data: BigInt64Array | Int32Array | Float64Array | Uint8Array, dims: readonly number[]): ort.Tensor;
export function tensor(data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array, dims: readonly number[]): ort.Tensor {
  const type =
    data instanceof Float32Array ? 'float32'
    : data instanceof Float64Array ? 'float64'
    : data instanceof BigInt64Array ? 'int64'
    : data instanceof Int32Array ? 'int32'
    : 'uint8';
  return new ort.Tensor(type, data, dims);
}

/**
 * Runs a session. Outputs given in `into` are written in place (pre-allocated: first touch of fresh
 * memory costs ~3.5 ms/MiB here, which dominated allocating runs); the others are returned new.
 */
export async function run(s: ort.InferenceSession, feeds: Feeds, into: Fetches = {}, want: string[] = []): Promise<Record<string, ort.Tensor>> {
  const fetches: Record<string, ort.Tensor | null> = { ...into };
  for (const name of want) if (!(name in fetches)) fetches[name] = null;
  const out = Object.keys(fetches).length ? await s.run(feeds, fetches as ort.InferenceSession.FetchesType) : await s.run(feeds);
  return out as Record<string, ort.Tensor>;
}

/** Releases the cached sessions whose key starts with `prefix`, and with them their memory arenas. */
export async function releaseSessions(prefix: string): Promise<void> {
  for (const [key, s] of [...sessions]) {
    if (!key.startsWith(prefix)) continue;
    sessions.delete(key);
    await (await s).release();
  }
}

export function clearSessions(): void {
  sessions.clear();
}

/**
 * Turns onnxruntime's per-node profiler on for every session built from now on; the cached sessions are
 * dropped so that each graph is recompiled with it. For benchmarks only: profiling slows runs. Each
 * session writes `<filePrefix>_<timestamp>.json` (Chrome trace format) when `stopProfiling` is called.
 */
export function startProfiling(filePrefix: string): void {
  profilePrefix = filePrefix;
  clearSessions();
}

/** Ends profiling: flushes every profiled session's trace, drops the sessions, returns the trace files. */
export async function stopProfiling(): Promise<string[]> {
  const prefix = profilePrefix;
  if (prefix === undefined) return [];
  for (const s of sessions.values()) (await s).endProfiling();
  profilePrefix = undefined;
  clearSessions();
  const dir = dirname(prefix);
  const stem = basename(prefix);
  return readdirSync(dir)
    .filter((f) => f.startsWith(stem) && f.endsWith('.json'))
    .map((f) => join(dir, f));
}
