/**
 * The structured run, block by block (memory: one block plus the calibration activations, as the
 * unstructured driver): rank and drop whole blocks first (on the dense model), then for each kept block
 * collect the output projections' input Gram matrices from the block as it is now, remove heads, re-run,
 * remove MLP channels, and re-run the reduced block to produce the next block's inputs. Attention comes
 * first so that the MLP's re-solve sees the activations of the already reduced attention.
 *
 * Blocks are run through adapters built from the reduced config.json (same layer count, narrower
 * dimensions), so every family's own block graph runs the reduced weights.
 */
import type { Architecture, TensorSource, Weights } from '../arch/types.js';
import type { Windows } from '../data/calibration.js';
import { loadWeights, runBlockOver } from '../run/blocks.js';
import { releaseBlockSessions } from '../arch/runtime.js';
import { collectGarbage } from '../run/memory.js';
import type { FiniteGuard } from '../run/finite.js';
import { removeChannels, removeHeads, type RemovalSettings } from './block.js';
import type { ChannelPlan, HeadPlan } from './plan.js';
import { blocksToDrop, rankBlocks, type BlockScores } from './rank-blocks.js';
import { AugmentedGram } from './solve.js';

export interface StructuredPlan {
  channels?: ChannelPlan;
  heads?: HeadPlan;
  dropBlocks?: number;
  blockScore: 'bi' | 'loss';
  settings: RemovalSettings;
}

export interface StructuredBlockReport {
  /** Index in the output checkpoint. */
  block: number;
  /** Index in the source checkpoint. */
  source: number;
  /** Removed query heads (source numbering within the block). */
  removedHeads?: number[];
  removedChannels?: number;
  /** ‖ΔW·x̃‖² per calibration token at o_proj / down_proj after the removal (and re-solve). */
  attentionLoss?: number;
  mlpLoss?: number;
  seconds: number;
}

export interface StructuredDriverResult {
  kept: number[];
  dropped: number[];
  ranking?: BlockScores;
  blocks: StructuredBlockReport[];
}

export interface StructuredContext {
  /** The source model's adapter; `headsArch` and `reducedArch` run blocks with fewer heads, then fewer channels too. */
  arch: Architecture;
  headsArch: Architecture;
  reducedArch: Architecture;
  src: TensorSource;
  windows?: Windows;
  finite?: FiniteGuard;
  /** A kept block's final tensors (source names, reduced shapes): write them and let them go. */
  onBlockDone(source: number, output: number, w: Weights): void;
  /** The kept source blocks, ascending, known once the blocks are ranked (before any block is reduced). */
  onKept(kept: number[]): void;
  onProgress?(message: string): void;
}

export async function runStructured(ctx: StructuredContext, plan: StructuredPlan): Promise<StructuredDriverResult> {
  const { arch, src, windows } = ctx;
  const L = arch.spec.numLayers;
  let dropped: number[] = [];
  let ranking: BlockScores | undefined;
  if (plan.dropBlocks) {
    ctx.onProgress?.(`ranking ${L} blocks (${plan.blockScore === 'bi' ? 'Block Influence' : 'calibration loss without each block'})`);
    ranking = await rankBlocks(arch, src, windows!, plan.blockScore);
    dropped = blocksToDrop(ranking, plan.dropBlocks);
  }
  const kept = Array.from({ length: L }, (_, b) => b).filter((b) => !dropped.includes(b));
  ctx.onKept(kept);
  const calibrated = plan.settings.criterion !== 'magnitude' && windows !== undefined;
  const seq = windows?.seqlen ?? 0;
  const x = calibrated ? await arch.embed(loadWeights(src, arch.embedTensors()), windows!.ids, seq) : undefined;
  const blocks: StructuredBlockReport[] = [];
  for (const [j, b] of kept.entries()) {
    ctx.onProgress?.(`block ${j + 1}/${kept.length} (source block ${b})`);
    blocks.push(await reduceBlock(ctx, plan, b, j, x, seq));
  }
  return { kept, dropped, ranking, blocks };
}

/** One kept block: heads, then channels, then the reduced re-run feeding the next block. */
async function reduceBlock(ctx: StructuredContext, plan: StructuredPlan, b: number, j: number, x: Float32Array | undefined, seq: number): Promise<StructuredBlockReport> {
  const t0 = performance.now();
  collectGarbage();
  const w = loadWeights(ctx.src, ctx.arch.blockTensors(b));
  const r: StructuredBlockReport = { block: j, source: b, seconds: 0 };
  let cur = ctx.arch;
  if (plan.heads) {
    const g = x ? await gramOf(cur, b, w, x, seq, 'o_in') : undefined;
    const h = await removeHeads(cur, b, w, plan.heads, g, plan.settings);
    r.removedHeads = h.removed;
    r.attentionLoss = h.loss;
    cur = ctx.headsArch;
  }
  if (plan.channels) {
    const g = x ? await gramOf(cur, b, w, x, seq, 'down_in') : undefined;
    const c = await removeChannels(cur, b, w, plan.channels.removed, g, plan.settings);
    r.removedChannels = c.removed.length;
    r.mlpLoss = c.loss;
  }
  for (const [name, v] of w) ctx.finite?.check(`block ${b}: the reduced weights of ${name}`, v);
  if (x) {
    await runBlockOver(ctx.reducedArch, b, w, x, seq, x);
    await releaseBlockSessions();
    ctx.finite?.check(`block ${b}: its reduced output on the calibration windows`, x, 'the activations overflow float32 in this block');
  }
  ctx.onBlockDone(b, j, w);
  r.seconds = (performance.now() - t0) / 1000;
  return r;
}

/** The AugmentedGram of one captured linear input of block b over every calibration window. */
async function gramOf(arch: Architecture, b: number, w: Weights, x: Float32Array, seq: number, id: string): Promise<Float64Array> {
  const width = arch.linears(b).find((l) => l.input === id)!.cols;
  const acc = new AugmentedGram(width);
  await runBlockOver(arch, b, w, x, seq, null, async (inputs, n) => {
    await acc.add(inputs[id], inputs[id].length / width, n);
  });
  await releaseBlockSessions();
  return await acc.result();
}
