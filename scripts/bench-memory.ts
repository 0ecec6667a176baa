/**
 * Memory bound of `shears prune`: peak RSS must stay below
 *
 *     largest decoder block in float32 × 4  +  calibration activations × 3  +  300 MB
 *
 * and must not grow with depth. Generates synthetic BF16 Llamas (default hidden 2048, intermediate 5504,
 * 12 and 24 layers: the 24-layer model's float32 weights are ≥ 4× the bound, so holding the model would
 * fail), prunes each with Wanda and SparseGPT in a child process (the CLI exactly as bin/shears.js runs
 * it: default glibc settings) while sampling /proc/<pid>/status every 50 ms, and prints peak RSS, the
 * bound, pass/fail and the 12 → 24 layer growth. Exit code 1 if any check fails. Linux only (/proc).
 *
 *   npx tsx scripts/bench-memory.ts [--hidden 2048] [--intermediate 5504] [--heads 16] [--layers 12,24]
 *        [--nsamples 16] [--seqlen 256] [--methods wanda,sparsegpt] [--malloc launcher|default|both]
 *        [--dir <scratch folder>] [--keep]
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { writeSyntheticLlama, DEFAULT_SYNTHETIC } from './synthetic-model.js';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const MIB = 2 ** 20;
/** Heap-retaining glibc settings the launcher once used; `--malloc launcher` measures them against the default. */
const LAUNCHER_MALLOC = { MALLOC_MMAP_MAX_: '0', MALLOC_TRIM_THRESHOLD_: String(1 << 30) };

interface Options {
  hidden: number;
  intermediate: number;
  heads: number;
  layers: number[];
  nsamples: number;
  seqlen: number;
  methods: string[];
  malloc: ('launcher' | 'default')[];
  dir?: string;
  keep: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { hidden: 2048, intermediate: 5504, heads: 16, layers: [12, 24], nsamples: 16, seqlen: 256, methods: ['wanda', 'sparsegpt'], malloc: ['default'], keep: false };
  for (let k = 0; k < argv.length; k++) {
    const v = argv[k + 1] ?? '';
    switch (argv[k]) {
      case '--hidden': o.hidden = Number(v); k++; break;
      case '--intermediate': o.intermediate = Number(v); k++; break;
      case '--heads': o.heads = Number(v); k++; break;
      case '--layers': o.layers = v.split(',').map(Number); k++; break;
      case '--nsamples': o.nsamples = Number(v); k++; break;
      case '--seqlen': o.seqlen = Number(v); k++; break;
      case '--methods': o.methods = v.split(','); k++; break;
      case '--malloc': o.malloc = v === 'both' ? ['launcher', 'default'] : [v as 'launcher' | 'default']; k++; break;
      case '--dir': o.dir = v; k++; break;
      case '--keep': o.keep = true; break;
      default: throw new Error(`unknown option ${argv[k]} (see the header of scripts/bench-memory.ts)`);
    }
  }
  return o;
}

/** VmRSS and VmHWM (peak) of a live process in bytes, or undefined once it is gone. */
function readRss(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

interface Measured {
  peakBytes: number;
  seconds: number;
  reportPeak: number;
}

/** Runs `shears prune` in a child and samples its RSS every 50 ms. */
function measurePrune(model: string, out: string, method: string, o: Options, malloc: 'launcher' | 'default'): Promise<Measured> {
  const loader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  const args = [
    '--import', loader, join(REPO, 'src/cli/main.ts'), 'prune', model, '--method', method, '--sparsity', '0.5',
    '--calibration', 'tinystories', '--nsamples', String(o.nsamples), '--seqlen', String(o.seqlen), '--out', out, '--json',
  ];
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.MALLOC_MMAP_MAX_;
  delete env.MALLOC_TRIM_THRESHOLD_;
  if (malloc === 'launcher') Object.assign(env, LAUNCHER_MALLOC);
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let peak = 0;
  const timer = setInterval(() => {
    const r = readRss(child.pid!);
    if (r) peak = Math.max(peak, r.rss, r.hwm);
  }, 50);
  return new Promise((resolve, reject) => {
    child.on('close', (code) => {
      clearInterval(timer);
      if (code !== 0) return reject(new Error(`prune ${method} exited ${code}: ${stderr.slice(-2000)}`));
      const report = JSON.parse(stdout) as { peakRssBytes: number };
      // getrusage's maxRSS (in the report) is exact; the samples may miss a short spike.
      resolve({ peakBytes: Math.max(peak, report.peakRssBytes), seconds: (performance.now() - t0) / 1000, reportPeak: report.peakRssBytes });
    });
    child.on('error', reject);
  });
}

const mib = (b: number): string => `${(b / MIB).toFixed(0)} MiB`;

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const { hidden: h, intermediate: m, heads } = o;
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'shears-bench-memory-'));
  // Llama block: q, k, v, o (h×h, kv heads = heads), gate, up, down (h×m), two norms (h).
  const blockF32 = (4 * h * h + 3 * h * m + 2 * h) * 4;
  const activations = o.nsamples * o.seqlen * h * 4;
  const bound = blockF32 * 4 + activations * 3 + 300e6;
  console.log(`synthetic Llama: hidden ${h}, intermediate ${m}, ${heads} heads, BF16 on disk; calibration ${o.nsamples} × ${o.seqlen}`);
  console.log(`largest block (float32) ${mib(blockF32)}, calibration activations ${mib(activations)}`);
  console.log(`bound = block × 4 + activations × 3 + 300 MB = ${mib(bound)}`);

  let ok = true;
  const peaks = new Map<string, number>();
  for (const layers of o.layers) {
    const model = join(dir, `llama-${layers}`);
    const t = performance.now();
    if (!existsSync(join(model, 'model.safetensors'))) {
      writeSyntheticLlama(model, { ...DEFAULT_SYNTHETIC, hidden: h, intermediate: m, heads, kvHeads: heads, layers, dtype: 'BF16', seed: 7 });
    }
    const f32 = layers * blockF32;
    console.log(`\n${layers} layers: float32 weights ${mib(f32)} = ${(f32 / bound).toFixed(2)} × the bound (generated in ${((performance.now() - t) / 1000).toFixed(0)} s)`);
    for (const malloc of o.malloc) {
      for (const method of o.methods) {
        const out = join(dir, `out-${layers}-${method}-${malloc}`);
        rmSync(out, { recursive: true, force: true });
        const r = await measurePrune(model, out, method, o, malloc);
        rmSync(out, { recursive: true, force: true });
        const pass = r.peakBytes < bound;
        ok &&= pass;
        peaks.set(`${method}|${malloc}|${layers}`, r.peakBytes);
        console.log(`  ${method.padEnd(9)} malloc ${malloc.padEnd(8)} peak RSS ${mib(r.peakBytes).padStart(9)}  (report ${mib(r.reportPeak)})  bound ${mib(bound)}  ${pass ? 'PASS' : 'FAIL'}  ${r.seconds.toFixed(0)} s`);
      }
    }
  }
  if (o.layers.length >= 2) {
    const [a, b] = [o.layers[0]!, o.layers[o.layers.length - 1]!];
    console.log(`\ngrowth with depth (${a} → ${b} layers; allowed: under 64 MiB and 5%):`);
    for (const malloc of o.malloc) {
      for (const method of o.methods) {
        const pa = peaks.get(`${method}|${malloc}|${a}`)!;
        const pb = peaks.get(`${method}|${malloc}|${b}`)!;
        const grow = pb - pa;
        const pass = grow < 64 * MIB && grow < 0.05 * pa;
        ok &&= pass;
        console.log(`  ${method.padEnd(9)} malloc ${malloc.padEnd(8)} ${mib(pa)} → ${mib(pb)}  (${grow >= 0 ? '+' : ''}${mib(grow)})  ${pass ? 'PASS' : 'FAIL'}`);
      }
    }
  }
  if (!o.keep && !o.dir) rmSync(dir, { recursive: true, force: true });
  console.log(ok ? '\nall memory checks passed' : '\nmemory checks FAILED');
  process.exitCode = ok ? 0 : 1;
}

await main();
