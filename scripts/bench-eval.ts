/**
 * Throughput of `shears eval` on a synthetic ~100M-parameter Llama (scripts/synthetic-model.ts defaults:
 * hidden 768, 14 layers, vocab 512 with the bundled tokenizer), and where the time goes.
 *
 *   npx tsx scripts/bench-eval.ts [--max-tokens 16384] [--seqlen 512] [--model DIR] [--no-cli]
 *        [--json out/bench-eval.json]
 *
 * Measures, on the first --max-tokens tokens of the TinyStories validation text:
 *  1. in-process `evaluateModel` twice: cold (sessions compiled, memory first touched) and warm;
 *  2. the same twice more under onnxruntime's profiler; the second pass's kernels give the share of op time
 *     in matrix products (Gemm/MatMul/FusedMatMul) against softmax, norms and the rest, and Σ model_run
 *     against the pass's wall time gives the share of time inside ORT against JavaScript;
 *  3. the baseline: the model's FLOPs per token (linear layers 2·params, attention 4·seq·hidden as computed,
 *     full S×S, LM head 2·hidden·vocab) give the achieved GFLOP/s, set against the raw GFLOP/s of
 *     `matmul` (src/engine/linalg.ts) at the block's own product shapes;
 *  4. `node bin/shears.js eval … --json` once end to end (process start, tokenizer, everything).
 * Other processes on the same cores slow every figure: the 1-minute load average is recorded with them.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { evaluateModel, type EvalResult } from '../src/eval/evaluate.js';
import { openModel } from '../src/model.js';
import { windowsPerCall } from '../src/run/blocks.js';
import { matmul } from '../src/engine/linalg.js';
import { startProfiling, stopProfiling } from '../src/engine/session.js';
import { DEFAULT_SYNTHETIC, writeSyntheticLlama } from './synthetic-model.js';
import { fixed, option, load1, machineInfo, pct, runAndWriteReport, runCli, summarizeProfiles } from './bench-common.js';

const args = process.argv.slice(2);
const maxTokens = Number(option('--max-tokens') ?? 16384);
const seqlen = Number(option('--seqlen') ?? 512);
const jsonPath = option('--json') ?? 'out/bench-eval.json';
const givenModel = option('--model');
const withCli = !args.includes('--no-cli');

const work = mkdtempSync(join(tmpdir(), 'shears-bench-eval-'));
const modelDir = givenModel ?? join(work, 'synthetic-llama');
await runAndWriteReport(main, jsonPath, work);

async function main(): Promise<Record<string, unknown>> {
  const machine = machineInfo();
  console.log(`machine: ${machine.cpu}, ${machine.cores} cores, node ${machine.node}, onnxruntime-node ${machine.onnxruntime}, threads ${machine.threads}; load ${load1()}`);
  let generated: { params: number; seconds: number } | undefined;
  if (!givenModel) {
    const t = performance.now();
    const r = writeSyntheticLlama(modelDir, DEFAULT_SYNTHETIC);
    generated = { params: r.params, seconds: (performance.now() - t) / 1000 };
    console.log(`synthetic Llama: ${(r.params / 1e6).toFixed(1)}M parameters in ${fixed(generated.seconds, 1)} s`);
  }
  const request = { model: modelDir, dataset: 'tinystories', seqlen, maxTokens };

  // 1. Cold and warm passes in this process.
  const passes: { label: string; r: EvalResult; cpuSeconds: number; load1: number }[] = [];
  for (const label of ['cold', 'warm']) {
    const c0 = process.cpuUsage();
    const r = await evaluateModel(request);
    const c = process.cpuUsage(c0);
    passes.push({ label, r, cpuSeconds: (c.user + c.system) / 1e6, load1: load1() });
    console.log(`${label.padEnd(5)} ${r.tokens} tokens in ${fixed(r.seconds)} s: ${fixed(r.tokensPerSecond, 0)} tokens/s (cpu ${fixed((c.user + c.system) / 1e6, 1)} s, load ${load1()}), perplexity ${fixed(r.perplexity, 3)}`);
  }
  const warm = passes[1].r;

  // 2. Profiled passes: the first recompiles the sessions with the profiler on, the second is counted.
  startProfiling(join(work, 'ort-profile'));
  await evaluateModel(request);
  const profiled = await evaluateModel(request);
  const files = await stopProfiling();
  const prof = summarizeProfiles(files, 2);
  const ortShare = prof.ortRunSeconds / profiled.seconds;
  console.log(`\nprofiled pass: ${fixed(profiled.seconds)} s wall, ${fixed(prof.ortRunSeconds)} s inside onnxruntime runs (${pct(ortShare)}), ${pct(1 - ortShare)} in JS (weights read, embedding, glue)`);
  console.log('op time by category:');
  for (const [k, v] of Object.entries(prof.byCategory)) console.log(`  ${k.padEnd(8)} ${fixed(v.seconds).padStart(8)} s  ${pct(v.share).padStart(6)}`);
  console.log('op time by type:');
  for (const o of prof.byOp.slice(0, 12)) console.log(`  ${o.op.padEnd(30)} ${fixed(o.seconds, 3).padStart(8)} s  ${pct(o.share).padStart(6)}`);

  // 3. FLOPs and the raw matmul speed at the block's shapes.
  const { ckpt, arch } = await openModel(modelDir);
  ckpt.close();
  const s = arch.spec;
  const kv = s.numKvHeads * s.headDim;
  const linearShapes: { name: string; n: number; k: number; count: number }[] = [
    { name: 'q/o_proj', n: s.hiddenSize, k: s.hiddenSize, count: 2 },
    { name: 'k/v_proj', n: kv, k: s.hiddenSize, count: 2 },
    { name: 'gate/up_proj', n: s.intermediateSize, k: s.hiddenSize, count: 2 },
    { name: 'down_proj', n: s.hiddenSize, k: s.intermediateSize, count: 1 },
  ];
  const blockParams = linearShapes.reduce((a, l) => a + l.n * l.k * l.count, 0);
  const attnFlopsPerToken = 4 * seqlen * s.numHeads * s.headDim;
  const headFlopsPerToken = 2 * s.hiddenSize * s.vocabSize;
  const flopsPerToken = s.numLayers * (2 * blockParams + attnFlopsPerToken) + headFlopsPerToken;
  const achieved = (flopsPerToken * warm.tokens) / warm.seconds / 1e9;
  const rows = windowsPerCall(arch, seqlen) * seqlen;
  const raw: { name: string; m: number; n: number; k: number; gflops: number; ms: number }[] = [];
  for (const l of linearShapes) {
    const a = new Float32Array(rows * l.k).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
    const b = new Float32Array(l.n * l.k).map((_, i) => ((i * 40503) % 1000) / 1000 - 0.5);
    const out = new Float32Array(rows * l.n);
    let best = Infinity;
    for (let rep = 0; rep < 4; rep++) {
      const t = performance.now();
      await matmul(a, [rows, l.k], b, [l.n, l.k], { transB: true, out });
      best = Math.min(best, performance.now() - t);
    }
    raw.push({ name: l.name, m: rows, n: l.n, k: l.k, ms: best, gflops: (2 * rows * l.n * l.k) / best / 1e6 });
  }
  // Time the linear layers would take at the raw speeds: Σ flops / rate over the shapes, per token.
  const linearSecondsPerToken = s.numLayers * linearShapes.reduce((a, l, i) => a + (2 * l.n * l.k * l.count) / (raw[i].gflops * 1e9), 0);
  const linearOnlyTokensPerSecond = 1 / linearSecondsPerToken;
  console.log(`\nFLOPs per token: ${fixed(flopsPerToken / 1e6, 1)} M (linear ${fixed((2 * blockParams * s.numLayers) / 1e6, 1)} M, attention ${fixed((attnFlopsPerToken * s.numLayers) / 1e6, 1)} M, head ${fixed(headFlopsPerToken / 1e6, 1)} M)`);
  console.log(`raw matmul (linalg.ts) at ${rows} rows per call:`);
  for (const r of raw) console.log(`  ${r.name.padEnd(13)} [${r.m}×${r.k}]·[${r.n}×${r.k}]ᵀ  ${fixed(r.ms, 1).padStart(7)} ms  ${fixed(r.gflops, 0).padStart(5)} GFLOP/s`);
  console.log(`achieved: ${fixed(achieved, 0)} GFLOP/s over the whole eval (warm); the linear layers alone at the raw speeds would allow ${fixed(linearOnlyTokensPerSecond, 0)} tokens/s (eval reaches ${pct(warm.tokensPerSecond / linearOnlyTokensPerSecond)} of that)`);

  // 4. The CLI end to end, once.
  let cli: Record<string, unknown> | undefined;
  if (withCli) {
    const c = await runCli(['eval', modelDir, '--dataset', 'tinystories', '--seqlen', String(seqlen), '--max-tokens', String(maxTokens), '--json']);
    const r = JSON.parse(c.stdout) as EvalResult;
    cli = { wallSeconds: c.wallSeconds, cpuSeconds: c.cpuSeconds, peakRssBytes: c.peakRssBytes, evalSeconds: r.seconds, tokensPerSecond: r.tokensPerSecond, endToEndTokensPerSecond: r.tokens / c.wallSeconds, load1Before: c.load1Before, load1After: c.load1After };
    console.log(`\nCLI: shears eval --max-tokens ${maxTokens}: ${fixed(c.wallSeconds, 1)} s end to end (${fixed(r.tokens / c.wallSeconds, 0)} tokens/s), ${fixed(r.tokensPerSecond, 0)} tokens/s inside perplexity(), cpu ${fixed(c.cpuSeconds, 1)} s, peak RSS ${(c.peakRssBytes / 2 ** 20).toFixed(0)} MiB, load ${c.load1Before} → ${c.load1After}`);
  }

  return {
    machine,
    model: { dir: givenModel ?? 'synthetic (temporary)', generated, spec: s, blockParams },
    setup: { dataset: 'tinystories', seqlen, maxTokens, tokensPerCall: rows },
    passes: passes.map((p) => ({ label: p.label, seconds: p.r.seconds, tokens: p.r.tokens, tokensPerSecond: p.r.tokensPerSecond, perplexity: p.r.perplexity, cpuSeconds: p.cpuSeconds, load1: p.load1 })),
    profile: { passSeconds: profiled.seconds, ortRunSeconds: prof.ortRunSeconds, ortShare, jsShare: 1 - ortShare, runs: prof.runs, byCategory: prof.byCategory, byOp: prof.byOp },
    flops: { perToken: flopsPerToken, attentionPerToken: attnFlopsPerToken * s.numLayers, headPerToken: headFlopsPerToken, achievedGflops: achieved },
    baseline: { rawMatmul: raw, linearOnlyTokensPerSecond, fractionOfLinearOnly: warm.tokensPerSecond / linearOnlyTokensPerSecond },
    cli,
  };
}
