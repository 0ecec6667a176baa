/**
 * onnxruntime-node sessions, one per graph shape, cached for the life of the process.
 * intraOpNumThreads must be set explicitly: left unset, MLAS ran effectively single-threaded here.
 */
import { availableParallelism } from 'node:os';
import ort from 'onnxruntime-node';

export type Feeds = Record<string, ort.Tensor>;
export type Fetches = Record<string, ort.Tensor>;

const sessions = new Map<string, Promise<ort.InferenceSession>>();

function sessionOptions(): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: Number(process.env.SHEARS_THREADS) || availableParallelism(),
    interOpNumThreads: 1,
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

export function clearSessions(): void {
  sessions.clear();
}
