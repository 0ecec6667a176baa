/**
 * A minimal in-memory ONNX graph builder. Weights are graph *inputs*, not initializers, so one
 * compiled session serves every layer of a model with the same shapes; only small constants
 * (axes, epsilons, shape vectors) become initializers.
 */
import { ProtoWriter } from './protobuf.js';

export type ElemType = 'float32' | 'float64' | 'int64' | 'int32' | 'bool' | 'uint8' | 'float16';

const ELEM_CODE: Record<ElemType, number> = {
  float32: 1,
  uint8: 2,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
};

/** A dimension: a fixed size, or a name for a size chosen at run time. */
export type Dim = number | string;

/**
 * Attribute values: an integer number is an INT attribute and a fractional one a FLOAT; use
 * `{ float: x }` for a FLOAT whose value happens to be integral (alpha = 1).
 */
export type AttrValue = number | string | number[] | { float: number } | { floats: number[] } | { tensor: ConstTensor };

export interface ConstTensor {
  type: ElemType;
  dims: number[];
  data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;
}

interface ValueInfo {
  name: string;
  type: ElemType;
  dims?: Dim[];
}

interface Node {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
  domain?: string;
}

export const OPSET = 17;

export class GraphBuilder {
  private readonly nodes: Node[] = [];
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly consts: { name: string; t: ConstTensor }[] = [];
  private counter = 0;

  constructor(readonly name: string) {}

  /** Declares a graph input; returns its name for use in ops. */
  input(name: string, type: ElemType, dims?: Dim[]): string {
    this.inputs.push({ name, type, dims });
    return name;
  }

  /** Marks a value as a graph output (optionally renaming it through Identity). */
  output(value: string, type: ElemType = 'float32', dims?: Dim[], as?: string): string {
    let name = value;
    if (as !== undefined && as !== value) name = this.op('Identity', [value], {}, as);
    this.outputs.push({ name, type, dims });
    return name;
  }

  /** A small constant tensor stored in the model. */
  constant(t: ConstTensor, hint = 'c'): string {
    const name = `${hint}_${this.counter++}`;
    this.consts.push({ name, t });
    return name;
  }

  /** int64 vector constant, e.g. axes or shapes. */
  ints(values: number[]): string {
    return this.constant({ type: 'int64', dims: [values.length], data: BigInt64Array.from(values.map(BigInt)) }, 'i');
  }

  /** float32 scalar constant. */
  scalar(value: number): string {
    return this.constant({ type: 'float32', dims: [], data: Float32Array.of(value) }, 's');
  }

  /** Adds one node with a single output; returns the output name. */
  op(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outName?: string): string {
    return this.opN(op, inputs, 1, attrs, outName ? [outName] : undefined)[0];
  }

  /** Adds one node with `n` outputs. An empty-string input means "absent optional input". */
  opN(op: string, inputs: string[], n: number, attrs: Record<string, AttrValue> = {}, outNames?: string[]): string[] {
    const outputs = outNames ?? Array.from({ length: n }, () => `${op.toLowerCase()}_${this.counter++}`);
    this.nodes.push({ op, inputs, outputs, attrs });
    return outputs;
  }

  /**
   * Serialises to an ONNX ModelProto, keeping only the nodes (and constants) that some output needs:
   * onnxruntime does not remove dead nodes itself, and a graph built for several outputs may be serialised
   * with fewer of them (a block graph without its output still computed the last projection).
   */
  toBytes(): Uint8Array {
    const live = new Set(this.outputs.map((o) => o.name));
    const nodes: Node[] = [];
    for (let k = this.nodes.length - 1; k >= 0; k--) {
      const n = this.nodes[k];
      if (!n.outputs.some((o) => live.has(o))) continue;
      nodes.push(n);
      for (const i of n.inputs) live.add(i);
    }
    nodes.reverse();
    const g = new ProtoWriter();
    for (const n of nodes) g.message(1, encodeNode(n));
    g.string(2, this.name);
    for (const c of this.consts) if (live.has(c.name)) g.message(5, encodeTensor(c.name, c.t));
    for (const i of this.inputs) g.message(11, encodeValueInfo(i));
    for (const o of this.outputs) g.message(12, encodeValueInfo(o));

    const model = new ProtoWriter();
    model.int(1, 8); // ir_version 8 (ONNX 1.13+)
    model.string(2, 'shears');
    model.message(8, new ProtoWriter().string(1, '').int(2, OPSET));
    model.message(7, g);
    return model.finish();
  }
}

function encodeNode(n: Node): ProtoWriter {
  const w = new ProtoWriter();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(4, n.op);
  for (const [name, v] of Object.entries(n.attrs)) w.message(5, encodeAttr(name, v));
  if (n.domain) w.string(7, n.domain);
  return w;
}

function encodeAttr(name: string, v: AttrValue): ProtoWriter {
  const w = new ProtoWriter().string(1, name);
  if (typeof v === 'number') {
    if (Number.isInteger(v)) w.int(3, v).int(20, 2);
    else w.float(2, v).int(20, 1);
  } else if (typeof v === 'string') {
    w.string(4, v).int(20, 3);
  } else if (Array.isArray(v)) {
    for (const x of v) w.int(8, x);
    w.int(20, 7);
  } else if ('float' in v) {
    w.float(2, v.float).int(20, 1);
  } else if ('floats' in v) {
    for (const x of v.floats) w.float(7, x);
    w.int(20, 6);
  } else {
    w.message(5, encodeTensor('', v.tensor)).int(20, 4);
  }
  return w;
}

function encodeTensor(name: string, t: ConstTensor): ProtoWriter {
  const w = new ProtoWriter();
  for (const d of t.dims) w.int(1, d);
  w.int(2, ELEM_CODE[t.type]);
  if (name) w.string(8, name);
  w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return w;
}

function encodeValueInfo(v: ValueInfo): ProtoWriter {
  const tensorType = new ProtoWriter().int(1, ELEM_CODE[v.type]);
  if (v.dims) {
    const shape = new ProtoWriter();
    for (const d of v.dims) {
      const dim = new ProtoWriter();
      if (typeof d === 'number') dim.int(1, d);
      else dim.string(2, d);
      shape.message(1, dim);
    }
    tensorType.message(2, shape);
  }
  return new ProtoWriter().string(1, v.name).message(2, new ProtoWriter().message(1, tensorType));
}
