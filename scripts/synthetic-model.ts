/**
 * Synthetic Llama checkpoints for benchmarks: random N(0, 0.02) weights (norm gains near 1), written
 * tensor by tensor so that generating a large model never holds it in memory. The tokenizer is the
 * bundled stories260K one (vocab 512), so the model runs end to end through `shears eval` / `prune`.
 *
 *   npx tsx scripts/synthetic-model.ts <out-dir> [--hidden 768] [--layers 14] [--intermediate 2048]
 *        [--heads 12] [--kv-heads 12] [--dtype F32|F16|BF16] [--seqlen 2048] [--seed 1]
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsWriter } from '../src/io/safetensors/writer.js';
import type { FloatDType } from '../src/io/dtype.js';

export interface SyntheticLlama {
  hidden: number;
  layers: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  dtype: FloatDType;
  maxPositions: number;
  seed: number;
}

export const DEFAULT_SYNTHETIC: SyntheticLlama = { hidden: 768, layers: 14, intermediate: 2048, heads: 12, kvHeads: 12, vocab: 512, dtype: 'F32', maxPositions: 2048, seed: 1 };

const BUNDLED = fileURLToPath(new URL('../models/stories260K/', import.meta.url));

/** Seeded normals (xorshift32 + Box–Muller): fast, deterministic, good enough for random weights. */
function normals(seed: number): (out: Float32Array, std: number, mean: number) => void {
  let a = (Math.imul(seed, 0x9e3779b1) ^ 0x2545f491) >>> 0 || 1;
  const u = (): number => {
    a ^= a << 13;
    a >>>= 0;
    a ^= a >>> 17;
    a ^= a << 5;
    a >>>= 0;
    return (a + 0.5) / 2 ** 32;
  };
  return (out, std, mean) => {
    for (let k = 0; k < out.length; k += 2) {
      const r = Math.sqrt(-2 * Math.log(u()));
      const t = 2 * Math.PI * u();
      out[k] = mean + std * r * Math.cos(t);
      if (k + 1 < out.length) out[k + 1] = mean + std * r * Math.sin(t);
    }
  };
}

export function writeSyntheticLlama(dir: string, o: SyntheticLlama): { params: number; bytes: number } {
  mkdirSync(dir, { recursive: true });
  const head = o.hidden / o.heads;
  const kv = head * o.kvHeads;
  const specs: { name: string; shape: number[]; std: number; mean: number }[] = [
    { name: 'model.embed_tokens.weight', shape: [o.vocab, o.hidden], std: 0.02, mean: 0 },
    { name: 'model.norm.weight', shape: [o.hidden], std: 0.05, mean: 1 },
    { name: 'lm_head.weight', shape: [o.vocab, o.hidden], std: 0.02, mean: 0 },
  ];
  for (let l = 0; l < o.layers; l++) {
    const p = `model.layers.${l}.`;
    specs.push(
      { name: p + 'input_layernorm.weight', shape: [o.hidden], std: 0.05, mean: 1 },
      { name: p + 'post_attention_layernorm.weight', shape: [o.hidden], std: 0.05, mean: 1 },
      { name: p + 'self_attn.q_proj.weight', shape: [o.hidden, o.hidden], std: 0.02, mean: 0 },
      { name: p + 'self_attn.k_proj.weight', shape: [kv, o.hidden], std: 0.02, mean: 0 },
      { name: p + 'self_attn.v_proj.weight', shape: [kv, o.hidden], std: 0.02, mean: 0 },
      { name: p + 'self_attn.o_proj.weight', shape: [o.hidden, o.hidden], std: 0.02, mean: 0 },
      { name: p + 'mlp.gate_proj.weight', shape: [o.intermediate, o.hidden], std: 0.02, mean: 0 },
      { name: p + 'mlp.up_proj.weight', shape: [o.intermediate, o.hidden], std: 0.02, mean: 0 },
      { name: p + 'mlp.down_proj.weight', shape: [o.hidden, o.intermediate], std: 0.02, mean: 0 },
    );
  }
  const w = new SafetensorsWriter(join(dir, 'model.safetensors'), specs.map((s) => ({ name: s.name, dtype: o.dtype, shape: s.shape })), { format: 'pt' });
  const fill = normals(o.seed);
  let params = 0;
  try {
    for (const s of specs) {
      const data = new Float32Array(s.shape.reduce((a, b) => a * b, 1));
      fill(data, s.std, s.mean);
      w.write(s.name, data);
      params += data.length;
    }
    w.finish();
  } catch (e) {
    w.abort();
    throw e;
  }
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: o.hidden,
    intermediate_size: o.intermediate,
    num_hidden_layers: o.layers,
    num_attention_heads: o.heads,
    num_key_value_heads: o.kvHeads,
    vocab_size: o.vocab,
    max_position_embeddings: o.maxPositions,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    hidden_act: 'silu',
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[o.dtype],
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(BUNDLED, f), join(dir, f));
  return { params, bytes: w.fileBytes };
}

function parseArgs(argv: string[]): { dir: string; o: SyntheticLlama } {
  const o = { ...DEFAULT_SYNTHETIC };
  const dir = argv[0];
  if (!dir) throw new Error('usage: synthetic-model.ts <out-dir> [--hidden N] [--layers N] [--intermediate N] [--heads N] [--kv-heads N] [--dtype F32|F16|BF16] [--seed N]');
  for (let k = 1; k < argv.length; k += 2) {
    const v = argv[k + 1];
    switch (argv[k]) {
      case '--hidden': o.hidden = Number(v); break;
      case '--layers': o.layers = Number(v); break;
      case '--intermediate': o.intermediate = Number(v); break;
      case '--heads': o.heads = Number(v); break;
      case '--kv-heads': o.kvHeads = Number(v); break;
      case '--seqlen': o.maxPositions = Number(v); break;
      case '--seed': o.seed = Number(v); break;
      case '--dtype': o.dtype = v as FloatDType; break;
      default: throw new Error(`unknown option ${argv[k]}`);
    }
  }
  return { dir, o };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { dir, o } = parseArgs(process.argv.slice(2));
  const t = performance.now();
  const r = writeSyntheticLlama(dir, o);
  console.log(`wrote ${dir}: ${(r.params / 1e6).toFixed(1)}M parameters, ${(r.bytes / 2 ** 20).toFixed(0)} MiB (${o.dtype}) in ${((performance.now() - t) / 1000).toFixed(1)} s`);
}
