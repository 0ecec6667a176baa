/** The pruning methods by name: adding one is a file exporting a PruneMethod and a line here. */
import type { PruneMethod } from './method.js';
import { magnitude } from './magnitude.js';
import { random } from './random.js';
import { wanda } from './wanda.js';
import { sparsegpt } from './sparsegpt.js';
import { alps } from './alps.js';

export const PRUNE_METHODS = {
  magnitude,
  random,
  wanda,
  sparsegpt,
  alps,
} satisfies Record<string, PruneMethod>;

export type Method = keyof typeof PRUNE_METHODS;
export const METHODS = Object.keys(PRUNE_METHODS) as Method[];
