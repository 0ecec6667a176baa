/**
 * The base of every decoder-only adapter: the parts of `Architecture` that follow from a block layout
 * (block-graph.ts). A family extends `DecoderArchitecture` and states only what differs:
 *  - `spec`, `head` (HeadGraph: final norm and LM head), embedTensors/headTensors/embed;
 *  - `blockPrefix(i)`: tensor name prefix of block i ("model.layers.3.");
 *  - `layout(i)`: the block's linear layers and norms (BlockLayout, with the graph's session key);
 *  - `body(b)`: the block graph, written with BlockGraph and its patterns, built once per layout key;
 *  - optionally `window(i)` (sliding window of layer i), `rope(i, seq)` (RoPE tables, when the layout has
 *    rotaryDim), `extraFeeds(i, seq)` (inputs the body declares itself, e.g. BLOOM's ALiBi bias).
 * From those it derives linears, blockTensors, the feeds (every layout tensor, by its name inside the block)
 * and runBlock with its capture widths (cols of the layers each input id feeds).
 */
import { tensor, type Feeds } from '../engine/session.js';
import { BlockGraph, type BlockLayout, type BlockOutputs } from './block-graph.js';
import { attentionChunks, causalMask } from './ops.js';
import { HeadedArchitecture, finishBlock, runBlockGraph, tokensOf, weightFeed } from './runtime.js';
import type { Architecture, BlockResult, CaptureReduce, LinearLayer, ModelSpec, Weights } from './types.js';

export abstract class DecoderArchitecture extends HeadedArchitecture implements Architecture {
  abstract readonly spec: ModelSpec;
  protected abstract blockPrefix(i: number): string;
  protected abstract layout(i: number): BlockLayout;
  protected abstract body(b: BlockGraph): BlockOutputs;
  abstract headTensors(): string[];
  abstract embed(w: Weights, ids: Int32Array, seq: number): Promise<Float32Array>;

  /** Sliding-window size of layer i (undefined = full causal attention). */
  protected window(_i: number): number | undefined {
    return undefined;
  }

  /** RoPE tables [seq, rotaryDim] for layer i; required when the layout has rotaryDim. */
  protected rope(_i: number, _seq: number): { cos: Float32Array; sin: Float32Array } {
    throw new Error(`${this.spec.modelType}: the block layout has rotaryDim but the adapter gives no RoPE tables`);
  }

  /** Feeds for graph inputs the body declares itself (besides x, mask, cos/sin and the layout's tensors). */
  protected extraFeeds(_i: number, _seq: number): Feeds {
    return {};
  }

  /** Tensor prefix of block i after checking i. */
  protected p(i: number): string {
    if (!Number.isInteger(i) || i < 0 || i >= this.spec.numLayers) throw new Error(`block ${i} is outside 0..${this.spec.numLayers - 1}`);
    return this.blockPrefix(i);
  }

  linears(i: number): LinearLayer[] {
    const p = this.p(i);
    const l = this.layout(i);
    const transposed = l.transposed ?? false;
    return l.linears.map((d) => ({ name: d.name, tensor: `${p}${d.name}.weight`, rows: d.rows, cols: d.cols, transposed, input: d.input, stage: d.stage }));
  }

  /** Local tensor names of the block (inside the prefix) with their shapes. */
  private localTensors(l: BlockLayout): [string, number[]][] {
    const out: [string, number[]][] = [];
    for (const n of l.norms) {
      out.push([`${n.name}.weight`, [n.width]]);
      if (n.bias) out.push([`${n.name}.bias`, [n.width]]);
    }
    for (const d of l.linears) {
      out.push([`${d.name}.weight`, l.transposed ? [d.cols, d.rows] : [d.rows, d.cols]]);
      if (d.bias) out.push([`${d.name}.bias`, [d.rows]]);
    }
    for (const f of l.fixed ?? []) out.push([`${f.name}.weight`, [f.rows, f.cols]]);
    return out;
  }

  blockTensors(i: number): string[] {
    const p = this.p(i);
    return this.localTensors(this.layout(i)).map(([n]) => `${p}${n}`);
  }

  runBlock(i: number, w: Weights, x: Float32Array, seq: number, capture: boolean, out?: Float32Array | null, reduce?: CaptureReduce): Promise<BlockResult> {
    return this.runBody(i, w, x, seq, capture, out, {}, reduce);
  }

  /**
   * runBlock, with the body values named in `always` (id → width: BlockOutputs.inputs the layout's linears
   * do not read, e.g. an MoE block's router logits) among the result's inputs whether capturing or not.
   */
  protected async runBody(i: number, w: Weights, x: Float32Array, seq: number, capture: boolean, out?: Float32Array | null, always: Record<string, number> = {}, reduce?: CaptureReduce): Promise<BlockResult> {
    const h = this.spec.hiddenSize;
    const tokens = tokensOf(x, h, seq);
    const p = this.p(i);
    const l = this.layout(i);
    const feeds: Feeds = { x: tensor(x, [tokens, h]), mask: tensor(causalMask(seq, this.window(i)), [seq, seq]), ...this.extraFeeds(i, seq) };
    if (l.rotaryDim !== undefined) {
      const r = this.rope(i, seq);
      feeds.cos = tensor(r.cos, [seq, l.rotaryDim]);
      feeds.sin = tensor(r.sin, [seq, l.rotaryDim]);
    }
    for (const [n, dims] of this.localTensors(l)) feeds[n] = weightFeed(w, `${p}${n}`, dims);
    const widths: Record<string, number> = {};
    for (const d of l.linears) widths[d.input] = d.cols;
    // With `always`, the graph always has extra outputs: its capturing and plain variants are keyed here.
    const extra = Object.keys(always).length > 0;
    const outputs = extra ? { ...(capture ? widths : {}), ...always } : widths;
    // `always` values (router logits) are wanted as they are: such graphs do not reduce.
    const reduced = capture && !extra ? reduce : undefined;
    // Long windows get a graph whose attention skips the masked half (a second session, keyed apart).
    const chunks = attentionChunks(this.spec.numHeads, seq);
    const key = chunks > 1 ? `${l.key}|attn-chunks${chunks}` : l.key;
    return runBlockGraph({
      key: extra ? `${key}|with-${Object.keys(always).join('-')}|${+capture}` : key,
      reduce: reduced,
      build: (cap) => {
        const b = new BlockGraph(`${this.spec.family}_block`, h, l, chunks);
        const o = this.body(b);
        const inputs: Record<string, readonly [string, number]> = {};
        for (const [id, width] of Object.entries(outputs)) {
          const value = o.inputs[id];
          if (value === undefined) throw new Error(`${this.spec.modelType} block body does not give input ${id}`);
          inputs[id] = [value, width];
        }
        return finishBlock(b.g, b.x, o.out, h, cap, inputs, reduced);
      },
      feeds,
      tokens,
      hidden: h,
      capture: capture || extra,
      widths: outputs,
      out,
    });
  }
}
