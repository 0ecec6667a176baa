/**
 * Peak memory of MoE pruning with the routed experts streamed (one expert on top of the block's shared
 * parts, run/experts.ts) against the whole-block path (every expert of a block loaded, runBlock), on a
 * synthetic Mixtral in the fused transformers 5 layout (BF16 `mlp.experts.gate_up_proj` [E, 2I, h] and
 * `down_proj` [E, h, I]). Each mode runs in its own node process (the CLI's node flags) and prints its peak
 * RSS (getrusage maxRSS); "open" only opens the model and embeds the calibration windows, as a baseline.
 * Both pruning modes give the same weights (test/run/experts.test.ts checks that bit for bit).
 *
 *   npx tsx scripts/bench-moe-memory.ts [--hidden 512] [--intermediate 2048] [--experts 16] [--layers 2]
 *        [--nsamples 16] [--seqlen 256] [--method wanda]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { NODE_FLAGS } from '../bin/node-flags.js';
import type { Architecture } from '../src/arch/types.js';
import { openModel } from '../src/model.js';
import { pruneBlocks, type Method } from '../src/prune/driver.js';
import { SafetensorsWriter } from '../src/io/safetensors/writer.js';
import { loadWeights } from '../src/run/blocks.js';

const MIB = 2 ** 20;
const args = process.argv.slice(2);
const opt = (name: string, d: number) => {
  const k = args.indexOf(`--${name}`);
  return k >= 0 ? Number(args[k + 1]) : d;
};
const h = opt('hidden', 512);
const I = opt('intermediate', 2048);
const E = opt('experts', 16);
const layers = opt('layers', 2);
const nsamples = opt('nsamples', 16);
const seqlen = opt('seqlen', 256);
const mk = args.indexOf('--method');
const method = (mk >= 0 ? args[mk + 1] : 'wanda') as Method;
const VOCAB = 1024;

/** A random fused-layout Mixtral written tensor by tensor (values N(0, 0.02)-ish from a fixed LCG). */
function writeModel(dir: string): void {
  const heads = Math.max(1, h / 64);
  const config = {
    architectures: ['MixtralForCausalLM'], model_type: 'mixtral', hidden_size: h, intermediate_size: I, num_hidden_layers: layers,
    num_attention_heads: heads, num_key_value_heads: heads, vocab_size: VOCAB, max_position_embeddings: 4096, rms_norm_eps: 1e-5,
    num_local_experts: E, num_experts_per_tok: 2, hidden_act: 'silu', tie_word_embeddings: false, dtype: 'bfloat16',
    rope_parameters: { rope_type: 'default', rope_theta: 1e6 }, transformers_version: '5.0.0',
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const specs: { name: string; shape: number[]; fill: 'one' | 'rand' }[] = [
    { name: 'model.embed_tokens.weight', shape: [VOCAB, h], fill: 'rand' },
    { name: 'model.norm.weight', shape: [h], fill: 'one' },
    { name: 'lm_head.weight', shape: [VOCAB, h], fill: 'rand' },
  ];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}.`;
    specs.push({ name: `${p}input_layernorm.weight`, shape: [h], fill: 'one' }, { name: `${p}post_attention_layernorm.weight`, shape: [h], fill: 'one' });
    for (const n of ['q', 'k', 'v', 'o']) specs.push({ name: `${p}self_attn.${n}_proj.weight`, shape: [h, h], fill: 'rand' });
    specs.push({ name: `${p}mlp.gate.weight`, shape: [E, h], fill: 'rand' });
    specs.push({ name: `${p}mlp.experts.gate_up_proj`, shape: [E, 2 * I, h], fill: 'rand' }, { name: `${p}mlp.experts.down_proj`, shape: [E, h, I], fill: 'rand' });
  }
  const w = new SafetensorsWriter(join(dir, 'model.safetensors'), specs.map((s) => ({ name: s.name, dtype: 'BF16', shape: s.shape })), { format: 'pt' });
  let seed = 12345;
  for (const s of specs) {
    const v = new Float32Array(s.shape.reduce((a, b) => a * b, 1));
    for (let k = 0; k < v.length; k++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      v[k] = s.fill === 'one' ? 1 : ((seed / 2 ** 32) - 0.5) * 0.07;
    }
    w.write(s.name, v);
  }
  w.finish();
}

async function child(mode: string, dir: string): Promise<void> {
  const m = await openModel(dir);
  const ids = Int32Array.from({ length: nsamples * seqlen }, (_, k) => (k * 7919) % VOCAB);
  const windows = { ids, count: nsamples, seqlen };
  const arch: Architecture = mode === 'whole' ? new Proxy(m.arch, { get: (t, k) => (k === 'routed' ? undefined : bindOf(t, k)) }) : m.arch;
  if (mode === 'open') await m.arch.embed(loadWeights(m.src, m.arch.embedTensors()), ids, seqlen);
  else await pruneBlocks(arch, m.src, windows, { method, spec: { kind: 'unstructured', sparsity: 0.5 } }, { onBlockDone: () => undefined, onExpertDone: () => undefined });
  m.ckpt.close();
  process.stdout.write(`${process.resourceUsage().maxRSS * 1024}\n`);
}

function bindOf(t: object, k: string | symbol): unknown {
  const v = (t as Record<string | symbol, unknown>)[k];
  return typeof v === 'function' ? v.bind(t) : v;
}

async function main(): Promise<void> {
  if (args[0] === '--child') return child(args[1], args[2]);
  const dir = mkdtempSync(join(tmpdir(), 'shears-moe-mem-'));
  try {
    writeModel(dir);
    const expertMiB = (3 * I * h * 4) / MIB;
    console.log(`synthetic fused Mixtral: hidden ${h}, expert width ${I}, ${E} experts, ${layers} layers, BF16; calibration ${nsamples} x ${seqlen}; ${method} 50%`);
    console.log(`one expert in float32: ${expertMiB.toFixed(1)} MiB; a block's experts: ${(expertMiB * E).toFixed(1)} MiB; calibration activations: ${((nsamples * seqlen * h * 4) / MIB).toFixed(1)} MiB`);
    const loader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const script = fileURLToPath(import.meta.url);
    for (const mode of ['open', 'streamed', 'whole']) {
      const r = spawnSync(process.execPath, [...NODE_FLAGS, '--import', loader, script, '--child', mode, dir, ...args], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${mode}: ${r.stderr}`);
      console.log(`${mode.padEnd(8)} peak RSS ${(Number(r.stdout.trim()) / MIB).toFixed(0)} MiB`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
