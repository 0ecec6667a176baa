/** Evaluation as a whole: open the model, tokenize the dataset once, score it, compare with published figures. */
import { openModel } from '../model.js';
import { corpusText, loadCorpus } from '../data/datasets.js';
import { loadTokenizer } from '../tokenize/tokenizer.js';
import { usageError } from '../errors.js';
import { perplexity, type PerplexityResult } from './perplexity.js';
import { findKnownModel } from '../registry/models.js';
import { FiniteGuard, guardedSource, type NonFiniteFault } from '../run/finite.js';

export interface EvalRequest {
  model: string;
  dataset: string;
  seqlen?: number;
  maxTokens?: number;
  /** Go on past NaN/Inf in weights or activations (listed in the result) instead of stopping. */
  allowNonfinite?: boolean;
  onProgress?: (message: string) => void;
}

export interface EvalResult extends PerplexityResult {
  model: string;
  dataset: string;
  datasetPath: string;
  /** Published perplexity of this model on this dataset, when models.json knows it. */
  published?: { perplexity: number; source: string; note?: string };
  /** Where NaN/Inf were found (only with allowNonfinite; otherwise evaluation stops at the first). */
  nonFinite?: NonFiniteFault[];
}

export async function evaluateModel(req: EvalRequest): Promise<EvalResult> {
  const { ckpt, arch, src: checkpointSource } = await openModel(req.model, 'eval');
  const finite = new FiniteGuard(req.allowNonfinite ?? false);
  const src = guardedSource(checkpointSource, finite, (n) => ckpt.info(n).file);
  try {
    const seqlen = req.seqlen ?? Math.min(2048, arch.spec.maxPositions);
    if (!Number.isInteger(seqlen) || seqlen < 2 || seqlen > arch.spec.maxPositions) {
      throw usageError(`--seqlen must be an integer in [2, ${arch.spec.maxPositions}], got ${seqlen}`);
    }
    if (req.maxTokens !== undefined && !(Number.isInteger(req.maxTokens) && req.maxTokens > 0)) {
      throw usageError(`--max-tokens must be a positive integer, got ${req.maxTokens}`);
    }
    const corpus = loadCorpus(req.dataset, 'evaluation');
    req.onProgress?.(`tokenizing ${corpus.path}`);
    const tok = await loadTokenizer(ckpt.dir);
    const stream = tok.encode(corpusText(corpus));
    const r = await perplexity(arch, src, stream, seqlen, {
      maxTokens: req.maxTokens,
      finite,
      onProgress: (p) => req.onProgress?.(`block ${p.block}/${p.blocks}${p.groups > 1 ? ` (window group ${p.group}/${p.groups})` : ''}`),
    });
    const known = findKnownModel(req.model, ckpt.config);
    const published = known?.perplexity?.[req.dataset]?.dense;
    return { model: req.model, dataset: req.dataset, datasetPath: corpus.path, ...r, ...(published ? { published } : {}), ...(finite.faults.length ? { nonFinite: finite.faults } : {}) };
  } finally {
    ckpt.close();
  }
}
