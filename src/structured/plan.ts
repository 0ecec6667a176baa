/**
 * What a structured run removes, decided before any weight is read: how many MLP channels (the same in
 * every block, so that intermediate_size stays one number), which attention heads pattern keeps the GQA
 * grouping uniform, and the config.json of the result (head counts with an explicit head_dim, fewer
 * layers with their per-layer lists cut to match).
 */
import { usageError } from '../errors.js';
import type { Family, ModelSpec } from '../arch/types.js';

export interface StructuredRequest {
  /** Fraction of MLP intermediate channels removed, in (0, 1). */
  channels?: number;
  /** Fraction of attention heads removed, in (0, 1) (rounded to keep the GQA grouping uniform). */
  heads?: number;
  /** Whole decoder blocks removed. */
  dropBlocks?: number;
  /** How blocks are ranked: Block Influence (ShortGPT) or the measured calibration-loss increase. */
  blockScore?: 'bi' | 'loss';
}

export function isStructured(r: StructuredRequest): boolean {
  return r.channels !== undefined || r.heads !== undefined || r.dropBlocks !== undefined;
}

/** config.json field holding the MLP width, per family (BLOOM's is fixed at 4·hidden: none). */
const INTERMEDIATE_KEY: Partial<Record<Family, string>> = { llama: 'intermediate_size', opt: 'ffn_dim', gpt2: 'n_inner', gpt_neox: 'intermediate_size', phi3: 'intermediate_size' };

export interface ChannelPlan {
  before: number;
  after: number;
  removed: number;
}

/**
 * Families whose q/k/v projections are one fused matrix: removing a head there means cutting rows out of the
 * q part and, with whole KV groups, the k and v parts, which block.ts does not do, so --heads is refused.
 * (A fused MLP input is stacked parts of equal width, which channel removal handles.)
 */
const FUSED_QKV: Partial<Record<Family, string>> = { phi3: 'self_attn.qkv_proj' };

export function planChannels(spec: ModelSpec, p: number): ChannelPlan {
  if (!INTERMEDIATE_KEY[spec.family]) throw usageError(`--channels: ${spec.modelType} has no configurable MLP width in config.json, so a narrower MLP would not load`);
  const before = spec.intermediateSize;
  const removed = Math.round(p * before);
  if (removed < 1 || removed >= before) throw usageError(`--channels ${p} removes ${removed} of ${before} MLP channels; choose a fraction that removes at least one and keeps at least one`);
  return { before, after: before - removed, removed };
}

export interface HeadPlan {
  /** per-group: the same number of query heads from every KV group (k/v kept); kv-groups: whole KV groups. */
  mode: 'per-group' | 'kv-groups';
  /** Query heads per KV group before. */
  rep: number;
  /** Removed per KV group (per-group) or KV groups removed (kv-groups). */
  removePer: number;
  heads: { before: number; after: number };
  kvHeads: { before: number; after: number };
  headDim: number;
  /** The rounding, in words, for the summary. */
  note: string;
}

/**
 * --heads p: of the two uniform patterns (r query heads from every KV group, or g whole KV groups), the one
 * whose realised fraction is closest to p; per-group on a tie (it keeps every K/V head).
 */
export function planHeads(spec: ModelSpec, p: number): HeadPlan {
  const fused = FUSED_QKV[spec.family];
  if (fused) throw usageError(`--heads: ${spec.modelType} stores q, k and v fused in ${fused}; removing heads from a fused matrix is not supported (--channels, --drop-blocks and the unstructured methods are)`);
  if (spec.family !== 'llama') {
    throw usageError(`--heads: ${spec.modelType} checkpoints derive the head size from hidden_size / num_attention_heads in transformers, so fewer heads would not load there; --heads supports the llama family (which reads head_dim)`);
  }
  const H = spec.numHeads;
  const KV = spec.numKvHeads;
  const rep = H / KV;
  const options: { mode: HeadPlan['mode']; removePer: number; removed: number }[] = [];
  const r = Math.round(p * rep);
  if (rep > 1 && r >= 1 && r < rep) options.push({ mode: 'per-group', removePer: r, removed: r * KV });
  const g = Math.round(p * KV);
  if (g >= 1 && g < KV) options.push({ mode: 'kv-groups', removePer: g, removed: g * rep });
  if (options.length === 0) throw usageError(`--heads ${p}: with ${H} query heads in ${KV} KV group(s) no uniform removal is near that fraction (it would remove none or all)`);
  options.sort((a, b) => Math.abs(a.removed / H - p) - Math.abs(b.removed / H - p) || (a.mode === 'per-group' ? -1 : 1));
  const o = options[0];
  const after = H - o.removed;
  const kvAfter = o.mode === 'per-group' ? KV : KV - o.removePer;
  const what = o.mode === 'per-group' ? `${o.removePer} query head(s) from each of the ${KV} KV groups` : rep === 1 ? `${o.removePer} heads (with their K/V)` : `${o.removePer} whole KV group(s) of ${rep} query heads`;
  const note = `--heads ${p}: ${H} → ${after} heads (${+((o.removed / H) * 100).toFixed(2)}% removed: ${what}), ${KV} → ${kvAfter} KV heads, head_dim ${spec.headDim}`;
  return { mode: o.mode, rep, removePer: o.removePer, heads: { before: H, after }, kvHeads: { before: KV, after: kvAfter }, headDim: spec.headDim, note };
}

/** The layer-count field a config uses (GPT-2 and BLOOM: n_layer unless num_hidden_layers is given). */
function layersKey(config: Record<string, unknown>, family: Family): string {
  if ('num_hidden_layers' in config) return 'num_hidden_layers';
  if ('n_layer' in config) return 'n_layer';
  return family === 'gpt2' || family === 'bloom' ? 'n_layer' : 'num_hidden_layers';
}

/**
 * config.json with the given reductions: the MLP width, head counts (head_dim written explicitly), and
 * only the blocks `kept` (source indices, ascending) with per-layer lists cut to match.
 */
export function reducedConfig(config: Record<string, unknown>, spec: ModelSpec, r: { intermediate?: number; heads?: HeadPlan; kept?: number[] }): Record<string, unknown> {
  const c: Record<string, unknown> = structuredClone(config);
  if (r.intermediate !== undefined) c[INTERMEDIATE_KEY[spec.family]!] = r.intermediate;
  if (r.heads) {
    c.num_attention_heads = r.heads.heads.after;
    c.num_key_value_heads = r.heads.kvHeads.after;
    c.head_dim = r.heads.headDim;
  }
  if (r.kept) {
    const kept = r.kept;
    c[layersKey(config, spec.family)] = kept.length;
    if (Array.isArray(config.layer_types)) c.layer_types = kept.map((b) => (config.layer_types as unknown[])[b]);
    // Qwen2's older form: layers ≥ max_window_layers slide; keep the same source layers sliding.
    if (typeof config.max_window_layers === 'number') c.max_window_layers = kept.filter((b) => b < (config.max_window_layers as number)).length;
  }
  return c;
}
