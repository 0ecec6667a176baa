/**
 * config.json model_type → architecture adapter. Adding a family = one file plus one entry here.
 */
import { fileError, preview } from '../errors.js';
import { createBloom } from './bloom.js';
import { createGemma } from './gemma.js';
import { createGpt2 } from './gpt2.js';
import { createGptNeox } from './gpt-neox.js';
import { createLlama } from './llama.js';
import { createMixtral } from './mixtral.js';
import { createOpt } from './opt.js';
import { createPhi3 } from './phi3.js';
import { createQwenMoe } from './qwen-moe.js';
import type { Architecture, TensorSource } from './types.js';

type Factory = (config: Record<string, unknown>, configPath: string, tensors?: Pick<TensorSource, 'has'>) => Architecture;

const FACTORIES: Record<string, Factory> = {
  llama: createLlama,
  mistral: createLlama,
  qwen2: createLlama,
  qwen3: createLlama,
  gpt2: createGpt2,
  opt: createOpt,
  gpt_neox: createGptNeox,
  bloom: createBloom,
  gemma: createGemma,
  gemma2: createGemma,
  gemma3_text: createGemma,
  mixtral: createMixtral,
  qwen2_moe: createQwenMoe,
  qwen3_moe: createQwenMoe,
  phi3: createPhi3,
};

/** The model_type values shears can run. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = Object.keys(FACTORIES);

/**
 * The adapter for a parsed config.json. `tensors` (the checkpoint, optional) lets an adapter detect
 * naming variants, e.g. GPT-2 files without the "transformer." prefix.
 */
export function architectureFor(config: Record<string, unknown>, configPath: string, tensors?: Pick<TensorSource, 'has'>): Architecture {
  const type = config.model_type;
  if (type === undefined || type === null) {
    throw fileError(configPath, `missing model_type (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
  const factory = typeof type === 'string' && Object.hasOwn(FACTORIES, type) ? FACTORIES[type] : undefined;
  if (!factory) {
    throw fileError(configPath, `model_type ${preview(type)} is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
  }
  return factory(config, configPath, tensors);
}
