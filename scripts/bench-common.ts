/**
 * Shared pieces of the benchmarks (bench-eval.ts, bench-prune.ts, bench-engine.ts): seeded test data,
 * machine/load facts for the report, running the CLI as a child with its peak RSS and CPU
 * time, and reading onnxruntime's profiler traces.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Seeded uniform numbers in [-0.5, 0.5) (mulberry32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
}

/** Runs the benchmark's main, writes its report as JSON to `jsonPath`, and removes the scratch folder `work`. */
export async function runAndWriteReport(main: () => Promise<unknown>, jsonPath: string, work: string): Promise<void> {
  try {
    const report = await main();
    mkdirSync(dirname(jsonPath), { recursive: true });
    writeFileSync(jsonPath, JSON.stringify(report, null, 2) + '\n');
    console.log(`\nwrote ${jsonPath}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The value after `--name` on this script's command line, if given. */
export function option(name: string): string | undefined {
  const args = process.argv.slice(2);
  const at = args.indexOf(name);
  if (at < 0) return undefined;
  const v = args[at + 1];
  if (v === undefined) throw new Error(`${name} needs a value`);
  return v;
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  onnxruntime: string;
  threads: string;
}

export function machineInfo(): MachineInfo {
  const ortPkg = JSON.parse(readFileSync(join(ROOT, 'node_modules/onnxruntime-node/package.json'), 'utf8')) as { version: string };
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: availableParallelism(),
    memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    onnxruntime: ortPkg.version,
    threads: process.env.SHEARS_THREADS ?? `${availableParallelism()} (default)`,
  };
}

/** 1-minute load average: other processes on the same cores make every figure here slower. */
export function load1(): number {
  return +loadavg()[0].toFixed(2);
}

export interface ChildRun {
  wallSeconds: number;
  /** User + system CPU seconds of the process tree, from /proc (each process's last sample). */
  cpuSeconds: number;
  /** Largest resident set of the whole process tree seen while sampling /proc every 200 ms. */
  peakRssBytes: number;
  stdout: string;
  status: number;
  load1Before: number;
  load1After: number;
}

const CLK_TCK = 100;

/** pid → [parent pid, user+sys ticks, rss pages] for every process under /proc. */
function processTable(): Map<number, [number, number, number]> {
  const table = new Map<number, [number, number, number]>();
  // Read in this process: a shell per sample took CPU from the run being measured.
  const lines: string[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      lines.push(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      // the process ended between the listing and the read
    }
  }
  for (const line of lines) {
    const close = line.lastIndexOf(')');
    if (close < 0) continue;
    const pid = Number(line.slice(0, line.indexOf(' ')));
    const f = line.slice(close + 2).split(' ');
    // Fields after "(comm)": state ppid ... utime(12) stime(13) ... rss(22), 0-based from state.
    table.set(pid, [Number(f[1]), Number(f[11]) + Number(f[12]), Number(f[21])]);
  }
  return table;
}

/**
 * Runs `node bin/shears.js …args` and samples the process tree (launcher + tsx child) from /proc: peak RSS
 * and CPU time. Sampling every 200 ms (kept rare: it takes CPU from the run it measures) can miss a short
 * peak and the last moments of CPU time; shears' own report has the exact maxRSS of the working process.
 */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<ChildRun> {
  const load1Before = load1();
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(ROOT, 'bin/shears.js'), ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let peak = 0;
  const cpuTicks = new Map<number, number>();
  const pageSize = 4096;
  const sample = (): void => {
    const table = processTable();
    const tree = new Set<number>([child.pid!]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const [pid, [ppid]] of table) if (!tree.has(pid) && tree.has(ppid)) (tree.add(pid), (grew = true));
    }
    let rss = 0;
    for (const pid of tree) {
      const row = table.get(pid);
      if (!row) continue;
      rss += row[2] * pageSize;
      cpuTicks.set(pid, row[1]);
    }
    peak = Math.max(peak, rss);
  };
  const timer = setInterval(sample, 200);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status) => {
      clearInterval(timer);
      if (status !== 0) {
        reject(new Error(`shears ${args.join(' ')} exited with ${status}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
        return;
      }
      const cpuSeconds = [...cpuTicks.values()].reduce((a, b) => a + b, 0) / CLK_TCK;
      resolve({ wallSeconds: (performance.now() - t0) / 1000, cpuSeconds, peakRssBytes: peak, stdout, status: status ?? 0, load1Before, load1After: load1() });
    });
  });
}

// ------------------------------------------------------------------------------------ ORT profiles

/** Op types counted as matrix products (FusedMatMul/FusedGemm appear when ORT folds a scale or activation in). */
const MATMUL_OPS = new Set(['Gemm', 'MatMul', 'FusedMatMul', 'FusedGemm', 'MatMulNBits', 'MatMulInteger']);
const SOFTMAX_OPS = new Set(['Softmax', 'LogSoftmax']);
const NORM_OPS = new Set(['SimplifiedLayerNormalization', 'LayerNormalization', 'SkipSimplifiedLayerNormalization', 'SkipLayerNormalization', 'ReduceMean', 'Pow', 'Sqrt']);

export type OpCategory = 'matmul' | 'softmax' | 'norm' | 'other';

export function opCategory(op: string): OpCategory {
  if (MATMUL_OPS.has(op)) return 'matmul';
  if (SOFTMAX_OPS.has(op)) return 'softmax';
  if (NORM_OPS.has(op)) return 'norm';
  return 'other';
}

export interface ProfileSummary {
  /** Σ model_run durations counted (seconds): time spent inside onnxruntime's run. */
  ortRunSeconds: number;
  runs: number;
  /** Kernel seconds by op type, largest first. */
  byOp: { op: string; seconds: number; share: number }[];
  byCategory: Record<OpCategory, { seconds: number; share: number }>;
}

interface TraceEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string };
}

/**
 * Sums onnxruntime traces (one JSON file per session). When the profiled work was done `passes` times
 * with identical calls, only the last pass is counted: each session's model_run events are sorted and the
 * last 1/passes of them (and the kernels after the first of those) kept. That leaves out the first pass's
 * session creation and memory first touch.
 */
export function summarizeProfiles(files: string[], passes = 1): ProfileSummary {
  const byOp = new Map<string, number>();
  let ortRun = 0;
  let runs = 0;
  for (const f of files) {
    const events = JSON.parse(readFileSync(f, 'utf8')) as TraceEvent[];
    const modelRuns = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
    if (modelRuns.length === 0) continue;
    const first = modelRuns.length - Math.floor(modelRuns.length / passes);
    if (first >= modelRuns.length) continue;
    const from = modelRuns[first].ts;
    for (const e of modelRuns.slice(first)) ortRun += e.dur;
    runs += modelRuns.length - first;
    for (const e of events) {
      if (e.cat !== 'Node' || e.ts < from || !e.name.endsWith('_kernel_time')) continue;
      const op = e.args?.op_name ?? 'unknown';
      byOp.set(op, (byOp.get(op) ?? 0) + e.dur);
    }
  }
  const kernel = [...byOp.values()].reduce((a, b) => a + b, 0) || 1;
  const byCategory = { matmul: { seconds: 0, share: 0 }, softmax: { seconds: 0, share: 0 }, norm: { seconds: 0, share: 0 }, other: { seconds: 0, share: 0 } };
  for (const [op, us] of byOp) {
    const c = byCategory[opCategory(op)];
    c.seconds += us / 1e6;
    c.share += us / kernel;
  }
  return {
    ortRunSeconds: ortRun / 1e6,
    runs,
    byOp: [...byOp].sort((a, b) => b[1] - a[1]).map(([op, us]) => ({ op, seconds: us / 1e6, share: us / kernel })),
    byCategory,
  };
}

export const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
export const fixed = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : '–');
export const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
