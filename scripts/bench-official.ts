/**
 * shears against the official Wanda and SparseGPT code on the same machine, model and calibration tokens.
 *
 *   apt-get install -y python3-torch python3-numpy libopenblas0-pthread
 *       # PyTorch 1.13 CPU from Debian; without OpenBLAS its libblas.so.3 is the netlib reference (~1 GFLOP/s)
 *   git clone https://github.com/locuslab/wanda /tmp/wanda
 *   git clone https://github.com/IST-DASLab/sparsegpt /tmp/sparsegpt
 *   npx tsx scripts/bench-official.ts --wanda /tmp/wanda --sparsegpt /tmp/sparsegpt
 *        [--layers 12] [--hidden 768] [--intermediate 2048] [--heads 12] [--kv-heads 12]
 *        [--nsamples 128] [--seqlen 256] [--threads 2] [--methods wanda,sparsegpt]
 *        [--openblas-coretype SkylakeX|Haswell|auto] [--python /usr/bin/python3] [--json out/bench-official.json]
 *
 * 1. Writes a synthetic Llama (scripts/synthetic-model.ts; default 12 blocks, hidden 768, F32: the
 *    issue-14 model).
 * 2. Per method, in turn: `shears prune --method M --sparsity 0.5 --calibration tinystories` (with
 *    --save-calib-tokens), then the official code on the windows that run saved
 *    (scripts/official/run_official.py: locuslab/wanda's prune_wanda, IST-DASLab/sparsegpt's
 *    llama_sequential, imported unmodified from the given checkouts; see its header for what the harness
 *    supplies around them). Both on --threads threads (SHEARS_THREADS; torch.set_num_threads).
 * 3. Prints each side's stage times, the ratio shears / official, and how close the two pruned models are
 *    (mask agreement and relative weight difference per linear layer), so the times are of the same job.
 *
 * Compared times: official = its whole prune call (calibration capture, every block's statistics pass,
 * pruning, re-run; model loading excluded); shears = the report's forward + statistics + pruning (model
 * reading and writing excluded), with shears' whole process wall time printed beside it. The 1-minute load
 * average is sampled every 5 s during each run: other jobs on the cores slow both sides.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { SafetensorsReader } from '../src/io/safetensors/reader.js';
import type { PruneReport } from '../src/prune/job.js';
import { DEFAULT_SYNTHETIC, writeSyntheticLlama } from './synthetic-model.js';
import { ROOT, fixed, machineInfo, option, runCli } from './bench-common.js';

const num = (name: string, dflt: number): number => {
  const v = option(name);
  const n = v === undefined ? dflt : Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}: expected a positive number, got ${v}`);
  return n;
};

const codeDirs: Record<string, string | undefined> = { wanda: option('--wanda'), sparsegpt: option('--sparsegpt') };
const methods = (option('--methods') ?? 'wanda,sparsegpt').split(',');
const shape = {
  ...DEFAULT_SYNTHETIC,
  layers: num('--layers', 12), hidden: num('--hidden', DEFAULT_SYNTHETIC.hidden), intermediate: num('--intermediate', DEFAULT_SYNTHETIC.intermediate),
  heads: num('--heads', DEFAULT_SYNTHETIC.heads), kvHeads: num('--kv-heads', DEFAULT_SYNTHETIC.kvHeads),
};
const nsamples = num('--nsamples', 128);
const seqlen = num('--seqlen', 256);
const threads = num('--threads', 2);
// Debian's python3-torch is at /usr/bin/python3 (a pyenv or venv python3 earlier on PATH would lack it).
const python = option('--python') ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
// OpenBLAS picks its kernels from the CPU it detects, or from OPENBLAS_CORETYPE when set; an environment that
// presets an older core (this one sets Haswell: AVX2 kernels) slows the official side, so the AVX-512 kernels
// are asked for by default. 'auto' leaves the variable out (OpenBLAS detects; 0.3.21 says Cooperlake here).
const coretypeOption = option('--openblas-coretype') ?? 'SkylakeX';
const coretype = coretypeOption === 'auto' ? undefined : coretypeOption;
const jsonPath = option('--json') ?? 'out/bench-official.json';
for (const m of methods) {
  if (!(m in codeDirs)) throw new Error(`--methods: ${m} is not wanda or sparsegpt`);
  const d = codeDirs[m];
  if (d === undefined) throw new Error(`--${m} <checkout of the official ${m} repository> is required (see the header of scripts/bench-official.ts)`);
  if (!existsSync(d)) throw new Error(`--${m} ${d}: no such folder`);
}

/** Samples the 1-minute load average every 5 s until stopped. */
function loadSampler(): () => { mean: number; max: number; samples: number } {
  const seen = [loadavg()[0]];
  const timer = setInterval(() => seen.push(loadavg()[0]), 5000);
  return () => {
    clearInterval(timer);
    seen.push(loadavg()[0]);
    return { mean: +(seen.reduce((a, b) => a + b, 0) / seen.length).toFixed(2), max: +Math.max(...seen).toFixed(2), samples: seen.length };
  };
}

interface OfficialTimings {
  torch: string;
  blas: string[];
  OPENBLAS_CORETYPE: string | null;
  threads: number;
  load_s: number;
  total_s: number;
  forward_s: number;
  statistics_s: number;
  fasterprune_s: number | null;
}

function runOfficial(method: string, model: string, windows: string, out: string): Promise<{ t: OfficialTimings; wallSeconds: number }> {
  const timings = out + '.timings.json';
  const args = [join(ROOT, 'scripts/official/run_official.py'), '--method', method, '--code', resolve(codeDirs[method]!), '--model', model,
    '--windows', windows, '--sparsity', '0.5', '--threads', String(threads), '--out', out, '--timings', timings];
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) };
  if (coretype) env.OPENBLAS_CORETYPE = coretype;
  else delete env.OPENBLAS_CORETYPE;
  const t0 = performance.now();
  const child = spawn(python, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.resume();
  return new Promise((res, rej) => {
    child.on('error', rej);
    child.on('close', (status) => {
      if (status !== 0) return rej(new Error(`official ${method} exited with ${status}: ${stderr.trim().split('\n').slice(-5).join(' | ')} (log: ${out}.log)`));
      res({ t: JSON.parse(readFileSync(timings, 'utf8')) as OfficialTimings, wallSeconds: (performance.now() - t0) / 1000 });
    });
  });
}

interface Agreement {
  tensors: number;
  maskAgreement: number;
  worstTensorAgreement: { name: string; agreement: number };
  relDiff: number;
  worstRelDiff: { name: string; relDiff: number };
  sparsityShears: number;
  sparsityOfficial: number;
}

/** Mask agreement (same zero/non-zero pattern) and ‖W_shears − W_official‖ / ‖W_official‖ over every block linear. */
function compareWeights(shearsFile: string, officialFile: string): Agreement {
  const a = SafetensorsReader.open(shearsFile);
  const b = SafetensorsReader.open(officialFile);
  try {
    let same = 0, total = 0, zs = 0, zo = 0, diff2 = 0, ref2 = 0, tensors = 0;
    let worstAgree = { name: '', agreement: 2 }, worstRel = { name: '', relDiff: -1 };
    for (const name of b.tensorNames()) {
      const o = b.readFloat32(name);
      const s = a.readFloat32(name);
      if (s.length !== o.length) throw new Error(`${name}: ${s.length} values in shears' output, ${o.length} in the official one`);
      let sameT = 0, d2 = 0, r2 = 0;
      for (let k = 0; k < o.length; k++) {
        const zS = s[k] === 0, zO = o[k] === 0;
        if (zS === zO) sameT++;
        if (zS) zs++;
        if (zO) zo++;
        const d = s[k] - o[k];
        d2 += d * d;
        r2 += o[k] * o[k];
      }
      same += sameT; total += o.length; diff2 += d2; ref2 += r2; tensors++;
      if (sameT / o.length < worstAgree.agreement) worstAgree = { name, agreement: sameT / o.length };
      if (Math.sqrt(d2 / r2) > worstRel.relDiff) worstRel = { name, relDiff: Math.sqrt(d2 / r2) };
    }
    return { tensors, maskAgreement: same / total, worstTensorAgreement: worstAgree, relDiff: Math.sqrt(diff2 / ref2), worstRelDiff: worstRel, sparsityShears: zs / total, sparsityOfficial: zo / total };
  } finally {
    a.close();
    b.close();
  }
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'shears-bench-official-'));
  try {
    const model = join(work, 'synthetic-llama');
    const g = writeSyntheticLlama(model, shape);
    const machine = machineInfo();
    console.log(`machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB; node ${machine.node}, onnxruntime-node ${machine.onnxruntime}`);
    console.log(`model: synthetic Llama, ${shape.layers} blocks, hidden ${shape.hidden}, intermediate ${shape.intermediate}, heads ${shape.heads}/${shape.kvHeads}, F32, ${(g.params / 1e6).toFixed(1)}M parameters`);
    console.log(`calibration: ${nsamples} × ${seqlen} tokens of tinystories (shears' windows, saved and given to the official code); 50% unstructured; ${threads} threads each${coretype ? `; OPENBLAS_CORETYPE=${coretype}` : ''}`);
    const results: Record<string, unknown> = {};
    for (const method of methods) {
      const windows = join(work, `${method}-windows.safetensors`);
      const out = join(work, `shears-${method}`);
      let load = loadSampler();
      const c = await runCli(['prune', model, '--method', method, '--sparsity', '0.5', '--calibration', 'tinystories', '--nsamples', String(nsamples),
        '--seqlen', String(seqlen), '--save-calib-tokens', windows, '--out', out, '--json'], { SHEARS_THREADS: String(threads) });
      const shearsLoad = load();
      const report = JSON.parse(c.stdout) as PruneReport;
      const t = report.timings;
      const shearsWork = t.forward + t.statistics + t.pruning;
      console.log(`\n${method}`);
      console.log(`  shears:   forward ${fixed(t.forward, 1)} s, statistics ${fixed(t.statistics, 1)} s, pruning ${fixed(t.pruning, 1)} s = ${fixed(shearsWork, 1)} s (process wall ${fixed(c.wallSeconds, 1)} s, report total ${fixed(t.total, 1)} s); load ${shearsLoad.mean} mean, ${shearsLoad.max} max`);

      const officialOut = join(work, `official-${method}.safetensors`);
      load = loadSampler();
      const o = await runOfficial(method, model, windows, officialOut);
      const officialLoad = load();
      const ot = o.t;
      const pureForward = ot.forward_s - ot.statistics_s;
      const rest = ot.total_s - ot.forward_s - (ot.fasterprune_s ?? 0);
      console.log(`  official: total ${fixed(ot.total_s, 1)} s: layer forwards ${fixed(ot.forward_s, 1)} s (of which statistics hooks ${fixed(ot.statistics_s, 1)} s), ` +
        `${ot.fasterprune_s !== null ? `fasterprune ${fixed(ot.fasterprune_s, 1)} s, ` : ''}rest (capture, masks${ot.fasterprune_s !== null ? '' : ' and zeroing'}) ${fixed(rest, 1)} s; ` +
        `model load ${fixed(ot.load_s, 1)} s not counted; torch ${ot.torch}, ${ot.threads} threads, BLAS ${ot.blas.join(', ')}, OPENBLAS_CORETYPE ${ot.OPENBLAS_CORETYPE ?? 'unset'}; load ${officialLoad.mean} mean, ${officialLoad.max} max`);
      const ratio = shearsWork / ot.total_s;
      console.log(`  ratio shears / official: ${fixed(ratio, 3)} (forward ${fixed(t.forward / pureForward, 2)}, statistics ${fixed(t.statistics / ot.statistics_s, 2)}${ot.fasterprune_s !== null ? `, pruning ${fixed(t.pruning / ot.fasterprune_s, 2)}` : ''}); shears' whole process / official total: ${fixed(c.wallSeconds / ot.total_s, 3)}`);
      const agree = compareWeights(join(out, 'model.safetensors'), officialOut);
      console.log(`  same job? mask agreement ${(100 * agree.maskAgreement).toFixed(3)}% over ${agree.tensors} layers (lowest ${(100 * agree.worstTensorAgreement.agreement).toFixed(3)}%, ${agree.worstTensorAgreement.name}); ` +
        `‖W_shears − W_official‖/‖W_official‖ ${agree.relDiff.toExponential(2)} (largest ${agree.worstRelDiff.relDiff.toExponential(2)}, ${agree.worstRelDiff.name}); sparsity ${fixed(100 * agree.sparsityShears, 2)}% / ${fixed(100 * agree.sparsityOfficial, 2)}%`);
      results[method] = { shears: { timings: t, work: shearsWork, wallSeconds: c.wallSeconds, load: shearsLoad }, official: { ...ot, wallSeconds: o.wallSeconds, load: officialLoad }, ratio, agreement: agree };
    }
    const done = methods.filter((m) => results[m]);
    if (done.length > 1) {
      const sum = (side: 'shears' | 'official'): number => done.reduce((acc, m) => {
        const r = results[m] as { shears: { work: number }; official: { total_s: number } };
        return acc + (side === 'shears' ? r.shears.work : r.official.total_s);
      }, 0);
      console.log(`\ntotal ${done.join(' + ')}: shears ${fixed(sum('shears'), 1)} s, official ${fixed(sum('official'), 1)} s, ratio ${fixed(sum('shears') / sum('official'), 3)} (target ≤ 0.35)`);
    }
    mkdirSync(dirname(jsonPath), { recursive: true });
    writeFileSync(jsonPath, JSON.stringify({ machine, shape, nsamples, seqlen, threads, openblasCoretype: coretype ?? null, results }, null, 2) + '\n');
    console.log(`\nwrote ${jsonPath}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
