/**
 * One decoder block's forward at a given shape (default TinyLlama-1.1B: hidden 2048, intermediate 5632,
 * 32/4 heads, 2048-token windows): the full pass (block output) and the statistics pass (captured linear
 * inputs, no output), seconds per window, GFLOP/s, and the raw matmul rate of the block's seven products at
 * the same rows per call measured in the same run; with --profile, onnxruntime's per-op kernel times.
 * Each pass runs twice over: attention over whole S × S scores ("whole", chunking off) and in query chunks
 * as shears runs it (ops.attentionChunks), alternating, with the largest relative difference of the outputs.
 * Each is timed on a fresh session (as the prune driver runs every pass: built, its memory arena first
 * touched) and again on the warm one; rates are from the warm pass, the difference is the per-pass fixed cost.
 * The process's peak RSS after each variant's first passes gives the memory each attention form adds.
 *
 *   npx tsx scripts/bench-block.ts [--hidden 2048] [--intermediate 5632] [--heads 32] [--kv-heads 4]
 *        [--seqlen 2048] [--windows 2] [--reps 2] [--profile]
 *
 * FLOPs counted: 2·tokens·params for the linears (the statistics pass skips down_proj) plus attention as
 * causal attention needs it, 2·tokens·(seq+1)·hidden (q·kᵀ and p·v over the keys at or before each
 * query), so the figure does not change with how much of the masked half an implementation computes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openModel } from '../src/model.js';
import { loadWeights, runBlockOver, windowsPerCall } from '../src/run/blocks.js';
import { matmul } from '../src/engine/linalg.js';
import { startProfiling, stopProfiling } from '../src/engine/session.js';
import { releaseBlockSessions } from '../src/arch/runtime.js';
import { attentionChunks, setChunkScoreBytes } from '../src/arch/ops.js';
import { DEFAULT_SYNTHETIC, writeSyntheticLlama } from './synthetic-model.js';
import { fixed, load1, mib, option, pct, rng, summarizeProfiles } from './bench-common.js';

const hidden = Number(option('--hidden') ?? 2048);
const intermediate = Number(option('--intermediate') ?? 5632);
const heads = Number(option('--heads') ?? 32);
const kvHeads = Number(option('--kv-heads') ?? 4);
const seq = Number(option('--seqlen') ?? 2048);
const nWindows = Number(option('--windows') ?? 2);
const reps = Number(option('--reps') ?? 2);
// --profile profiles the chunked (shears') path.
const profile = process.argv.includes('--profile');

const D = hidden / heads;
const kv = kvHeads * D;
const shapes = [
  [hidden, hidden],
  [kv, hidden],
  [kv, hidden],
  [hidden, hidden],
  [intermediate, hidden],
  [intermediate, hidden],
  [hidden, intermediate],
];
const params = shapes.reduce((a, [r, c]) => a + r * c, 0);
const tokens = nWindows * seq;
const attentionFlops = 2 * tokens * (seq + 1) * hidden;
const fullFlops = 2 * tokens * params + attentionFlops;
const statsFlops = fullFlops - 2 * tokens * hidden * intermediate;

async function best(f: () => Promise<void>): Promise<number> {
  // (raw matmul rate only)
  let b = Infinity;
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    await f();
    b = Math.min(b, (performance.now() - t) / 1000);
  }
  return b;
}

async function rawLinearRate(rows: number): Promise<number> {
  const r = rng(rows);
  const xs = new Map<number, Float32Array>();
  for (const [, c] of shapes) if (!xs.has(c)) xs.set(c, Float32Array.from({ length: rows * c }, r));
  const ws = shapes.map(([o, c]) => Float32Array.from({ length: o * c }, () => 0.02 * r()));
  const outs = shapes.map(([o]) => new Float32Array(rows * o));
  const s = await best(async () => {
    for (const [k, [o, c]] of shapes.entries()) await matmul(xs.get(c)!, [rows, c], ws[k], [o, c], { transB: true, out: outs[k] });
  });
  return (2 * rows * params) / s / 1e9;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'shears-bench-block-'));
  try {
    writeSyntheticLlama(dir, { ...DEFAULT_SYNTHETIC, hidden, intermediate, heads, kvHeads, layers: 1, maxPositions: Math.max(2048, seq) });
    const { ckpt, arch, src } = await openModel(dir);
    const w = loadWeights(src, arch.blockTensors(0));
    const r = rng(5);
    const x0 = Float32Array.from({ length: tokens * hidden }, r);
    const x = new Float32Array(x0.length);
    const out = new Float32Array(x0.length);
    const per = windowsPerCall(arch, seq);
    const budget = setChunkScoreBytes(Infinity);
    setChunkScoreBytes(budget);
    type Pass = { steady: number; fresh: number };
    // Chunked first: the process's peak RSS after each variant's first passes then tells both arenas apart
    // (sessions are released between passes, so a pass's peak is the base plus its own arena).
    const variants = [
      { name: `${attentionChunks(heads, seq)} chunks`, bytes: budget, full: { steady: Infinity, fresh: Infinity } as Pass, stats: { steady: Infinity, fresh: Infinity } as Pass, out: new Float32Array(0), peakRss: 0 },
      { name: 'whole', bytes: Infinity, full: { steady: Infinity, fresh: Infinity } as Pass, stats: { steady: Infinity, fresh: Infinity } as Pass, out: new Float32Array(0), peakRss: 0 },
    ];
    const baseRss = process.resourceUsage().maxRSS * 1024;
    // One pass over the windows as the driver runs it: a fresh session (built, its arena first touched), then
    // the same pass again on the warm session. Best of `reps` each.
    const time = async (p: Pass, f: () => Promise<void>): Promise<void> => {
      await releaseBlockSessions();
      let t = performance.now();
      await f();
      p.fresh = Math.min(p.fresh, (performance.now() - t) / 1000);
      t = performance.now();
      await f();
      p.steady = Math.min(p.steady, (performance.now() - t) / 1000);
    };
    const loads = [load1()];
    // Alternating whole / chunked, so that load changes hit both alike.
    for (let r = 0; r < reps; r++) {
      for (const v of variants) {
        setChunkScoreBytes(v.bytes);
        await time(v.full, async () => {
          x.set(x0);
          await runBlockOver(arch, 0, w, x, seq, out);
        });
        if (r === 0) v.out = out.slice();
        await time(v.stats, () => runBlockOver(arch, 0, w, x0, seq, null, () => undefined));
        if (r === 0) v.peakRss = process.resourceUsage().maxRSS * 1024;
      }
    }
    setChunkScoreBytes(budget);
    await releaseBlockSessions();
    loads.push(load1());
    const raw = await rawLinearRate(per * seq);
    loads.push(load1());
    console.log(`block hidden ${hidden}, intermediate ${intermediate}, heads ${heads}/${kvHeads}, ${nWindows} × ${seq} tokens, ${per} window(s) per call, best of ${reps}; load ${loads.join(' → ')}`);
    console.log(`raw matmul (the seven products at ${per * seq} rows): ${fixed(raw, 0)} GFLOP/s`);
    console.log('attention  pass             s/window (warm)  GFLOP/s  vs raw matmul   fresh-session cost per pass');
    for (const v of variants) {
      for (const [name, p, f] of [['full', v.full, fullFlops], ['statistics', v.stats, statsFlops]] as const) {
        const g = f / p.steady / 1e9;
        console.log(`${v.name.padEnd(10)} ${name.padEnd(16)} ${fixed(p.steady / nWindows, 3).padStart(15)} ${fixed(g, 0).padStart(8)} ${pct(g / raw).padStart(14)}   ${fixed(p.fresh - p.steady, 2)} s`);
      }
    }
    const grew = variants[0].peakRss - baseRss;
    console.log(`peak RSS over the process before the passes: ${variants[0].name} +${mib(grew)}; whole ${variants[1].peakRss > variants[0].peakRss ? `+${mib(variants[1].peakRss - baseRss)}` : `≤ +${mib(grew)}`}`);
    let diff = 0;
    let scale = 0;
    for (let k = 0; k < out.length; k++) {
      diff = Math.max(diff, Math.abs(variants[0].out[k] - variants[1].out[k]));
      scale = Math.max(scale, Math.abs(variants[1].out[k]));
    }
    console.log(`block output, chunked vs whole: max |difference| / max |output| = ${diff / scale}`);
    if (profile) {
      // The chunked path as shears runs it, each pass twice on one profiled session (the second counted).
      const passes = [
        ['full pass', async () => {
          x.set(x0);
          await runBlockOver(arch, 0, w, x, seq, out);
        }],
        ['statistics pass', () => runBlockOver(arch, 0, w, x0, seq, null, () => undefined)],
      ] as const;
      for (const [name, pass] of passes) {
        await releaseBlockSessions();
        startProfiling(join(dir, `ort-${name.split(' ')[0]}`));
        for (let p = 0; p < 2; p++) await pass();
        const sum = summarizeProfiles(await stopProfiling(), 2);
        const kernels = sum.byOp.reduce((a, o) => a + o.seconds, 0);
        console.log(`\nprofiled ${name}: ${fixed(sum.ortRunSeconds, 3)} s in onnxruntime over ${sum.runs} runs, ${fixed(kernels, 3)} s of it in kernels`);
        for (const o of sum.byOp.slice(0, 10)) console.log(`  ${o.op.padEnd(30)} ${fixed(o.seconds, 3).padStart(8)} s  ${pct(o.share).padStart(6)}`);
      }
    }
    ckpt.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
