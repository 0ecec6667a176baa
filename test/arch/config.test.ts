/**
 * config.json reading and the model_type registry: one-line errors that name the file and the field,
 * both transformers 4 and 5 layouts, and refusal of what shears cannot run.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigReader } from '../../src/arch/config.js';
import { readRope } from '../../src/arch/rope.js';
import { architectureFor, SUPPORTED_MODEL_TYPES } from '../../src/arch/registry.js';
import { ShearsError } from '../../src/errors.js';

const PATH = 'models/x/config.json';
const LLAMA = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'llama-tiny-gqa', 'config.json'), 'utf8')) as Record<string, unknown>;
const GPT2 = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'fixtures', 'gpt2-tiny', 'config.json'), 'utf8')) as Record<string, unknown>;

function failure(f: () => unknown): ShearsError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ShearsError);
    expect((e as Error).message).not.toContain('\n');
    return e as ShearsError;
  }
  throw new Error('expected a ShearsError');
}

describe('registry', () => {
  it('dispatches every supported model_type to its family', () => {
    expect([...SUPPORTED_MODEL_TYPES].sort()).toEqual(['bloom', 'gemma', 'gemma2', 'gemma3_text', 'gpt2', 'gpt_neox', 'llama', 'mistral', 'mixtral', 'opt', 'phi3', 'qwen2', 'qwen2_moe', 'qwen3', 'qwen3_moe']);
    for (const t of ['llama', 'mistral', 'qwen2', 'qwen3']) {
      const a = architectureFor({ ...LLAMA, model_type: t }, PATH);
      expect(a.spec.family).toBe('llama');
      expect(a.spec.modelType).toBe(t);
    }
    expect(architectureFor(GPT2, PATH).spec.family).toBe('gpt2');
    expect(architectureFor({ model_type: 'bloom' }, PATH).spec.family).toBe('bloom');
    for (const t of ['gemma', 'gemma2', 'gemma3_text']) expect(architectureFor({ model_type: t }, PATH).spec).toMatchObject({ family: 'gemma', modelType: t });
  });

  it('reads the fixture configs (transformers 4.46 layout)', () => {
    const llama = architectureFor(LLAMA, PATH).spec;
    expect(llama).toMatchObject({ hiddenSize: 64, numLayers: 2, numHeads: 8, numKvHeads: 2, headDim: 8, intermediateSize: 160, vocabSize: 101, maxPositions: 128, tieWordEmbeddings: false, bosTokenId: 1, eosTokenId: 2, dtype: 'float32' });
    const gpt2 = architectureFor(GPT2, PATH).spec;
    expect(gpt2).toMatchObject({ hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 4, headDim: 16, intermediateSize: 256, vocabSize: 97, maxPositions: 128, tieWordEmbeddings: true, bosTokenId: 96 });
  });

  it('refuses an unknown model_type, listing the supported ones', () => {
    const e = failure(() => architectureFor({ ...LLAMA, model_type: 'mamba' }, PATH));
    expect(e.message).toBe(`${PATH}: model_type "mamba" is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
    expect(failure(() => architectureFor({ ...LLAMA, model_type: undefined }, PATH)).message).toMatch(/^models\/x\/config\.json: missing model_type \(supported: llama, /);
    expect(failure(() => architectureFor({ ...LLAMA, model_type: 'toString' }, PATH)).message).toContain('not supported');
  });
});

describe('config errors name the file and the field', () => {
  it('heads that do not divide the hidden size (no head_dim given)', () => {
    const { head_dim: _, ...noHeadDim } = LLAMA;
    const e = failure(() => architectureFor({ ...noHeadDim, num_attention_heads: 6, num_key_value_heads: 2 }, PATH));
    expect(e.message).toBe(`${PATH}: num_attention_heads (6) must divide the hidden size (64)`);
    expect(failure(() => architectureFor({ ...GPT2, n_head: 5 }, PATH)).message).toBe(`${PATH}: n_head (5) must divide the hidden size (64)`);
  });

  it('kv heads that do not divide the heads', () => {
    expect(failure(() => architectureFor({ ...LLAMA, num_key_value_heads: 3 }, PATH)).message).toBe(
      `${PATH}: num_key_value_heads (3) must divide num_attention_heads (8)`,
    );
  });

  it('missing and mistyped fields', () => {
    const { hidden_size: _, ...noHidden } = LLAMA;
    expect(failure(() => architectureFor(noHidden, PATH)).message).toBe(`${PATH}: missing hidden_size`);
    const { n_embd: __, ...noEmbd } = GPT2;
    expect(failure(() => architectureFor(noEmbd, PATH)).message).toBe(`${PATH}: missing n_embd / hidden_size (one is required)`);
    expect(failure(() => architectureFor({ ...LLAMA, num_attention_heads: 'x' }, PATH)).message).toBe(
      `${PATH}: num_attention_heads must be a positive integer, got "x"`,
    );
    expect(failure(() => architectureFor({ ...LLAMA, num_hidden_layers: 2.5 }, PATH)).message).toBe(`${PATH}: num_hidden_layers must be a positive integer, got 2.5`);
    expect(failure(() => architectureFor({ ...LLAMA, rms_norm_eps: -1 }, PATH)).message).toBe(`${PATH}: rms_norm_eps must be a positive number, got -1`);
    expect(failure(() => architectureFor({ ...LLAMA, tie_word_embeddings: 'yes' }, PATH)).message).toBe(`${PATH}: tie_word_embeddings must be true or false, got "yes"`);
    expect(failure(() => architectureFor({ ...LLAMA, hidden_act: 'mish' }, PATH)).message).toMatch(/: hidden_act "mish" is not supported \(supported: relu, silu/);
    expect(failure(() => architectureFor({ ...GPT2, scale_attn_by_inverse_layer_idx: true }, PATH)).message).toBe(`${PATH}: scale_attn_by_inverse_layer_idx true is not supported`);
  });

  it('scaled RoPE is read (rope.ts); an unknown rope type is refused by name; the v5 rope_parameters object and dtype are read', () => {
    const llama3 = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    expect(architectureFor({ ...LLAMA, rope_scaling: llama3 }, PATH).spec.modelType).toBe('llama');
    expect(failure(() => architectureFor({ ...LLAMA, rope_scaling: { ...llama3, rope_type: 'llama4' } }, PATH)).message).toBe(
      `${PATH}: rope_scaling rope_type "llama4" is not supported (supported: default, linear, dynamic, llama3, yarn, longrope)`,
    );
    expect(failure(() => architectureFor({ ...LLAMA, rope_theta: undefined, rope_parameters: { rope_type: 'mrope', rope_theta: 1e6, factor: 4 } }, PATH)).message).toBe(
      `${PATH}: rope_parameters rope_type "mrope" is not supported (supported: default, linear, dynamic, llama3, yarn, longrope)`,
    );

    const { rope_theta: _, torch_dtype: __, rope_scaling: ___, ...v5base } = LLAMA;
    const v5 = { ...v5base, dtype: 'bfloat16', rope_parameters: { rope_type: 'default', rope_theta: 500000 } };
    expect(architectureFor(v5, PATH).spec.dtype).toBe('bfloat16');
    const at = { headDim: 16, defaultTheta: 10000, maxPositions: 64 };
    expect(readRope(new ConfigReader(v5, PATH), at)).toMatchObject({ type: 'default', theta: 500000, rotaryDim: 16 });
    expect(readRope(new ConfigReader(LLAMA, PATH), at)).toMatchObject({ type: 'default', theta: 10000, rotaryDim: 16 });
    expect(readRope(new ConfigReader({ rope_parameters: { rope_type: 'default', rope_theta: 1e4, partial_rotary_factor: 0.25 } }, PATH), at)).toMatchObject({ theta: 1e4, rotaryDim: 4 });
    expect(readRope(new ConfigReader({ rope_scaling: { rope_type: 'default' } }, PATH), { ...at, defaultTheta: 7 })).toMatchObject({ theta: 7 });
  });

  it('tie_word_embeddings defaults: absent = true for gpt2, false for the Llama family', () => {
    const { tie_word_embeddings: _, ...noTie } = LLAMA;
    expect(architectureFor(noTie, PATH).spec.tieWordEmbeddings).toBe(false);
    expect(architectureFor(noTie, PATH).headTensors()).toContain('lm_head.weight');
    expect(architectureFor({ ...noTie, tie_word_embeddings: true }, PATH).headTensors()).toEqual(['model.norm.weight', 'model.embed_tokens.weight']);
    expect(architectureFor(GPT2, PATH).spec.tieWordEmbeddings).toBe(true);
  });
});
