/**
 * What the rest of shears needs to know about a model family. An architecture is data (tensor names,
 * which linear layers share an input) plus graphs (one decoder block, embeddings, head); adding a
 * family means adding one file that implements `Architecture` and one line in the registry.
 *
 * Layout conventions: activations are float32, row-major [tokens = batch*seq, width]; windows are
 * contiguous runs of `seq` tokens, each attending causally within itself, positions 0..seq-1.
 */

export type Family = 'llama' | 'opt' | 'gpt2' | 'gpt_neox' | 'bloom' | 'gemma' | 'moe' | 'phi3';

/** The parts of config.json that every family shares, normalised. Family-specific fields stay in the adapter. */
export interface ModelSpec {
  family: Family;
  /** config.model_type as written (llama, mistral, qwen2, qwen3, opt, gpt2, gpt_neox, bloom, gemma, gemma2, gemma3_text, phi3). */
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  /** Longest sequence the model supports (max_position_embeddings / n_positions; BLOOM: seq_length, else 2048). */
  maxPositions: number;
  tieWordEmbeddings: boolean;
  bosTokenId?: number;
  eosTokenId?: number;
  /** config torch_dtype / dtype if given (float16, bfloat16, float32). */
  dtype?: string;
}

/** Read access to a checkpoint's tensors (Checkpoint implements it; tests can pass a Map-backed fake). */
export interface TensorSource {
  has(name: string): boolean;
  shape(name: string): number[];
  /** The tensor converted to float32, in its stored layout. */
  readFloat32(name: string): Float32Array;
  /** Elements [start, start + count) of the tensor (stored order) as float32, reading only those. */
  readFloat32Range(name: string, start: number, count: number): Float32Array;
}

/** Tensors keyed by full checkpoint name, float32, stored layout. */
export type Weights = Map<string, Float32Array>;

/**
 * A prunable linear layer of a block, seen as nn.Linear: weight [rows = out_features, cols = in_features].
 * GPT-2's Conv1D stores [in, out]; `transposed` says the stored tensor must be transposed to get that view.
 */
export interface LinearLayer {
  /** Name inside the block, e.g. "self_attn.q_proj" (what reports and --skip globs see with the block prefix). */
  name: string;
  /** Full tensor name in the checkpoint, e.g. "model.layers.3.self_attn.q_proj.weight". */
  tensor: string;
  rows: number;
  cols: number;
  transposed: boolean;
  /** Id of the activation feeding this layer; layers with the same id share input statistics. */
  input: string;
  /** True-sequential order: layers of stage s are pruned after re-running the block with stages < s pruned. */
  stage: number;
  /**
   * Part of a fused 3-D tensor (MoE experts stored [experts, out, in]): this layer is the rows·cols values
   * starting at element `offset` of the stored tensor, whose shape is `storedShape`. Absent: the whole tensor.
   */
  part?: { offset: number; storedShape: number[] };
  /** A routed MoE expert's index: its input statistic holds only the calibration tokens routed to it. */
  expert?: number;
}

export interface BlockResult {
  /** The block's output, [tokens, hidden]. */
  out: Float32Array;
  /** When capture was requested: each linear input by id, [tokens, cols of the layers it feeds]. */
  inputs: Record<string, Float32Array>;
  /**
   * Sequences (windows) that contributed rows to a captured input, by id, when not every window of the call
   * did (MoE experts see only their routed tokens); absent ids count every window of the call.
   */
  sequences?: Record<string, number>;
  /** Set when the call reduced its captures: each input is then Σ over the call's rows of x², [cols] (float32). */
  reduced?: CaptureReduce;
}

/**
 * A capture reduced inside the block graph: 'column-squares' hands over each linear input's column sums of
 * squares instead of its rows (Wanda's statistic), so the rows never leave onnxruntime.
 */
export type CaptureReduce = 'column-squares';

export interface Architecture {
  readonly spec: ModelSpec;
  /** Full names of every tensor that belongs to decoder block i. */
  blockTensors(i: number): string[];
  /** The prunable linear layers of block i, in forward order. */
  linears(i: number): LinearLayer[];
  /** Tensors needed by embed() (e.g. token + position embeddings). */
  embedTensors(): string[];
  /** Tensors needed by the head (final norm, LM head or tied embedding, projections). */
  headTensors(): string[];
  /** Hidden states entering block 0 for `ids` laid out as windows of `seq` tokens: [ids.length, hidden]. */
  embed(w: Weights, ids: Int32Array, seq: number): Promise<Float32Array>;
  /**
   * Runs decoder block i on x [tokens, hidden] made of windows of `seq` tokens. The result's `out` is `out`
   * when given (it must not overlap x) or else a fresh array; `out` null (with capture) skips the output
   * and the work only it needs, leaving `out` empty. Captured `inputs` are scratch buffers that the next
   * capturing call overwrites (consume them first). `reduce` asks for reduced captures (the result says
   * whether it gave them: an adapter may ignore it).
   */
  runBlock(i: number, w: Weights, x: Float32Array, seq: number, capture: boolean, out?: Float32Array | null, reduce?: CaptureReduce): Promise<BlockResult>;
  /** The LM head as a linear layer [vocab, width] (input id "head_in"); `tied` when it is the embedding matrix. */
  headLinear(): LinearLayer & { tied: boolean };
  /** What the LM head multiplies: the final norm (and projection) of x [tokens, hidden] → [tokens, width]. */
  headInput(w: Weights, x: Float32Array): Promise<Float32Array>;
  /** Logits [tokens, vocab] from the last hidden states (final norm + LM head). */
  logits(w: Weights, x: Float32Array, seq: number): Promise<Float32Array>;
  /**
   * Next-token negative log-likelihood per position: nll[t] = -log softmax(logits[t])[targets[t]],
   * computed inside the graph so that [tokens, vocab] logits never reach JS. targets[t] < 0 = ignored (0 written).
   */
  nll(w: Weights, x: Float32Array, seq: number, targets: Int32Array): Promise<Float32Array>;
  /** Mixture-of-Experts families: their blocks in parts, so that routed experts are loaded one at a time. */
  readonly routed?: RoutedExperts;
}

/** Top-k routing of T tokens: expert ids and float32 weights, [T, k] each. */
export interface Routing {
  experts: Int32Array;
  weights: Float32Array;
  k: number;
}

/**
 * A block with routed experts, run as its shared part (attention, norms, router, shared expert) over every
 * token and then one routed expert at a time over the tokens sent to it (run/experts.ts, prune/driver.ts).
 * runBlock(i, ...) is the same computation with every expert loaded.
 */
export interface RoutedExperts {
  /** Routed experts of block i (0: a dense block, run whole). */
  count(i: number): number;
  /** Tensors of block i apart from its routed experts' (what stays loaded while experts stream). */
  sharedTensors(i: number): string[];
  /** Routed expert e of block i: [gate, up, down] (parts of the fused 3-D tensors in that layout). */
  expertLayers(i: number, e: number): LinearLayer[];
  /**
   * Block i without its routed experts on x (windows of `seq`): `out` = the residual after attention plus
   * the shared expert (the routed experts' weighted outputs are added to it, expert by expert), `moeIn`
   * [tokens, hidden] the experts' input, `routing` from the router. Captures the shared layers' inputs.
   */
  runShared(i: number, w: Weights, x: Float32Array, seq: number, capture: boolean, out?: Float32Array): Promise<BlockResult & { moeIn: Float32Array; routing: Routing }>;
  /**
   * Expert e of block i on its tokens xe [n, hidden] → y [n, hidden]; `w` holds its layers' tensors (as
   * `layers` address them); with capture also its down input [n, expert width].
   */
  runExpert(i: number, e: number, w: Weights, layers: LinearLayer[], xe: Float32Array, capture: boolean): Promise<{ y: Float32Array; downIn?: Float32Array }>;
}
