import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeFigure, findKnownModel, knownModels, publishedFigure, settingKey } from '../../src/registry/models.js';

describe('models.json', () => {
  it('lists the bundled model and the hub models people prune, each figure with its source', () => {
    const ids = knownModels().map((m) => m.id);
    for (const id of [
      'models/stories260K',
      'facebook/opt-125m',
      'facebook/opt-1.3b',
      'meta-llama/Llama-2-7b-hf',
      'huggyllama/llama-7b',
      'TinyLlama/TinyLlama-1.1B-Chat-v1.0',
      'Qwen/Qwen2.5-0.5B',
      'mistralai/Mistral-7B-v0.1',
      'EleutherAI/pythia-160m',
      'openai-community/gpt2',
      'bigscience/bloom-560m',
      'bigscience/bloom-7b1',
      'bigscience/bloom',
      'meta-llama/Meta-Llama-3-8B',
      'meta-llama/Llama-3.1-8B',
      'mistralai/Mixtral-8x7B-v0.1',
      'Qwen/Qwen1.5-MoE-A2.7B',
      'microsoft/Phi-3-mini-4k-instruct',
      'microsoft/phi-4',
    ]) {
      expect(ids).toContain(id);
    }
    for (const m of knownModels()) {
      expect(m.seqlen).toBeGreaterThan(0);
      for (const settings of Object.values(m.perplexity)) {
        for (const f of Object.values(settings ?? {})) {
          expect(f!.source.length).toBeGreaterThan(10);
          expect(f!.confirmed_via.length).toBeGreaterThan(10);
          if (f!.loss !== undefined) expect(Math.abs(f!.perplexity - Math.exp(f!.loss))).toBeLessThan(1e-4);
        }
      }
    }
  });

  it('gives BLOOM-176B the SparseGPT paper\'s Table 6 raw-WikiText2 figures: dense 8.11, full 2:4 9.20', () => {
    const bloom = findKnownModel('bigscience/bloom');
    expect(publishedFigure(bloom, 'wikitext2', 'dense')?.perplexity).toBe(8.11);
    expect(publishedFigure(bloom, 'wikitext2', 'sparsegpt-2:4')?.perplexity).toBe(9.2);
    expect(publishedFigure(bloom, 'wikitext2', 'sparsegpt-50%')).toBeNull();
  });

  it('gives stories260K the llama2.c validation loss 1.2968 as a perplexity', () => {
    const f = publishedFigure(findKnownModel('models/stories260K'), 'tinystories', 'dense');
    expect(f?.loss).toBe(1.2968);
    expect(f?.perplexity).toBeCloseTo(Math.exp(1.2968), 4);
    expect(describeFigure(f!)).toMatch(/^3\.6576 \(llama2\.c doc\/stories260K\.md/);
  });
});

describe('findKnownModel', () => {
  const storiesConfig = JSON.parse(readFileSync('models/stories260K/config.json', 'utf8'));

  it('finds the bundled model by relative or absolute path, and a copy by name and config', () => {
    for (const p of ['models/stories260K', './models/stories260K/', resolve('models/stories260K')]) expect(findKnownModel(p)?.id).toBe('models/stories260K');
    expect(findKnownModel('/somewhere/else/stories260K', storiesConfig)?.id).toBe('models/stories260K');
    expect(findKnownModel('/somewhere/else/stories260K', { ...storiesConfig, hidden_size: 128 })).toBeNull();
  });

  it('finds hub models by id (any case), alias, HF cache folder and folder name', () => {
    expect(findKnownModel('facebook/opt-125m')?.seqlen).toBe(2048);
    expect(findKnownModel('FACEBOOK/OPT-125M')?.id).toBe('facebook/opt-125m');
    expect(findKnownModel('gpt2')?.id).toBe('openai-community/gpt2');
    const llama2 = { model_type: 'llama', hidden_size: 4096, num_hidden_layers: 32, max_position_embeddings: 4096 };
    const cache = '/home/u/.cache/huggingface/hub/models--meta-llama--Llama-2-7b-hf/snapshots/01c7f73d';
    expect(findKnownModel(cache, llama2)?.id).toBe('meta-llama/Llama-2-7b-hf');
    // LLaMA-1 7B has the same shape but a 2048 context: not Llama-2's figures.
    expect(findKnownModel(cache, { ...llama2, max_position_embeddings: 2048 })).toBeNull();
    expect(findKnownModel('/data/opt-125m', { model_type: 'opt', hidden_size: 768, num_hidden_layers: 12 })?.id).toBe('facebook/opt-125m');
    expect(findKnownModel('/data/opt-125m', { model_type: 'opt', hidden_size: 1024, num_hidden_layers: 24 })).toBeNull();
    expect(findKnownModel('/data/my-model', { model_type: 'opt', hidden_size: 768, num_hidden_layers: 12 })).toBeNull();
  });

  it('tells the 4096-wide 32-layer Llamas apart by context and vocabulary: Llama 2, Llama 3, Llama 3.1', () => {
    const cache = (id: string) => `/home/u/.cache/huggingface/hub/models--${id.replace('/', '--')}/snapshots/0`;
    const shape = { model_type: 'llama', hidden_size: 4096, num_hidden_layers: 32 };
    const llama3 = { ...shape, max_position_embeddings: 8192, vocab_size: 128256 };
    expect(findKnownModel(cache('meta-llama/Meta-Llama-3-8B'), llama3)?.id).toBe('meta-llama/Meta-Llama-3-8B');
    expect(findKnownModel(cache('meta-llama/Meta-Llama-3-8B'), { ...shape, max_position_embeddings: 4096, vocab_size: 32000 })).toBeNull();
    expect(findKnownModel(cache('meta-llama/Llama-3.1-8B'), llama3)).toBeNull();
    expect(findKnownModel(cache('meta-llama/Llama-3.1-8B'), { ...llama3, max_position_embeddings: 131072 })?.id).toBe('meta-llama/Llama-3.1-8B');
    expect(findKnownModel('/data/phi-4', { model_type: 'phi3', hidden_size: 5120, num_hidden_layers: 40 })?.id).toBe('microsoft/phi-4');
  });

  it('returns published figures by setting', () => {
    const m = findKnownModel('meta-llama/Llama-2-7b-hf');
    expect(publishedFigure(m, 'wikitext2', settingKey('wanda', { sparsity: 0.5 })!)?.perplexity).toBe(6.42);
    expect(publishedFigure(m, 'wikitext2', settingKey('sparsegpt', { n: 2, m: 4 })!)?.perplexity).toBe(10.17);
    expect(publishedFigure(m, 'wikitext2', 'dense')?.seqlen).toBe(4096);
    expect(settingKey('wanda', { sparsity: 0.6 })).toBeNull();
    expect(settingKey('magnitude', { n: 1, m: 4 })).toBeNull();
    expect(publishedFigure(findKnownModel('Qwen/Qwen2.5-0.5B'), 'wikitext2', 'dense')).toBeNull();
  });
});
