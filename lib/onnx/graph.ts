/**
 * An ONNX graph under construction and its serialisation (protobuf through onnx-proto, the
 * official onnx.proto compiled for protobufjs). Plain TypeScript without the addon, so it runs
 * in the export's worker thread. Weights are lazy: building a graph reads only shapes, and
 * values (BatchNorm folded into the convolutions) are computed while the model is encoded.
 */
import onnxProto from 'onnx-proto';
import { SegtoolError } from '../errors.js';

const { onnx } = onnxProto;

/** The opsets the exporter writes: 13 (single-axis LogSoftmax, Resize with optional inputs) to 21. */
export const MIN_OPSET = 13;
export const MAX_OPSET = 21;
export const DEFAULT_OPSET = 17;

/** ONNX TensorProto.DataType values used here. */
export const FLOAT = 1;
export const INT64 = 7;
export type ElemType = typeof FLOAT | typeof INT64;

/** Where the graph reads the model's weights: shapes while building, values while encoding. */
export interface WeightSource {
  /** The state-dict tensor's shape, or undefined when the model has no such key. */
  shape(key: string): readonly number[] | undefined;
  /** Its float32 values (row-major). */
  values(key: string): Float32Array;
}

type AttributeValue = number | readonly number[] | string;

interface GraphNode {
  opType: string;
  inputs: string[];
  outputs: string[];
  attributes: Record<string, AttributeValue>;
}

interface Initializer {
  name: string;
  dims: number[];
  type: ElemType;
  values: () => Float32Array | BigInt64Array;
}

interface ValueInfo {
  name: string;
  type: ElemType;
  /** Fixed sizes or symbolic names (dynamic axes). */
  dims: Array<number | string>;
}

export class GraphBuilder {
  readonly opset: number;
  readonly #nodes: GraphNode[] = [];
  readonly #initializers: Initializer[] = [];
  readonly #inputs: ValueInfo[] = [];
  readonly #outputs: ValueInfo[] = [];
  readonly #constants = new Map<string, string>();
  readonly #shapes = new Map<string, string>();
  readonly #counts = new Map<string, number>();

  constructor(opset: number) {
    this.opset = opset;
  }

  get nodeCount(): number {
    return this.#nodes.length;
  }

  get initializerCount(): number {
    return this.#initializers.length;
  }

  /** A fresh value name: `base`, `base_1`, ... */
  name(base: string): string {
    const n = this.#counts.get(base) ?? 0;
    this.#counts.set(base, n + 1);
    return n === 0 ? base : `${base}_${n}`;
  }

  input(name: string, type: ElemType, dims: Array<number | string>): string {
    this.#inputs.push({ name, type, dims });
    return name;
  }

  /** Declares `value` a graph output named `name` (an Identity when they differ). */
  output(value: string, name: string, type: ElemType, dims: Array<number | string>): void {
    if (value !== name) this.#nodes.push({ opType: 'Identity', inputs: [value], outputs: [name], attributes: {} });
    this.#outputs.push({ name, type, dims });
  }

  /** Adds a node; returns its first output's name (named after `hint`, default the op). */
  op(opType: string, inputs: string[], attributes: Record<string, AttributeValue> = {}, hint?: string): string {
    const output = this.name(hint ?? opType.toLowerCase());
    this.#nodes.push({ opType, inputs, outputs: [output], attributes });
    return output;
  }

  /** A float32 initializer whose values are computed when the model is encoded. */
  weight(name: string, dims: number[], values: () => Float32Array): string {
    const unique = this.name(name);
    this.#initializers.push({ name: unique, dims, type: FLOAT, values });
    return unique;
  }

  /** An int64 constant (1-D unless `dims` says otherwise), shared by equal values. */
  int64(values: readonly number[], dims: number[] = [values.length]): string {
    const key = `i64:${dims.join('x')}:${values.join(',')}`;
    let name = this.#constants.get(key);
    if (!name) {
      name = this.name('const_i64');
      const data = BigInt64Array.from(values, (v) => BigInt(v));
      this.#initializers.push({ name, dims, type: INT64, values: () => data });
      this.#constants.set(key, name);
    }
    return name;
  }

  /** A float32 scalar constant, shared by equal values. */
  float(value: number): string {
    const key = `f32:${value}`;
    let name = this.#constants.get(key);
    if (!name) {
      name = this.name('const_f32');
      const data = Float32Array.of(value);
      this.#initializers.push({ name, dims: [], type: FLOAT, values: () => data });
      this.#constants.set(key, name);
    }
    return name;
  }

  /** Shape(x), made once per value. */
  shapeOf(x: string): string {
    let s = this.#shapes.get(x);
    if (!s) {
      s = this.op('Shape', [x], {}, `${x}_shape`);
      this.#shapes.set(x, s);
    }
    return s;
  }

  /** Dimensions [from, to) of x's shape, a 1-D int64. */
  dims(x: string, from: number, to: number): string {
    return this.op('Slice', [this.shapeOf(x), this.int64([from]), this.int64([to]), this.int64([0])], {}, `${x}_dims`);
  }

  /** ReduceMean / ReduceMax over `axes`: axes an attribute before opset 18, an input from 18. */
  reduce(opType: 'ReduceMean' | 'ReduceMax', x: string, axes: number[], keepdims: boolean, hint?: string): string {
    if (this.opset >= 18) return this.op(opType, [x, this.int64(axes)], { keepdims: keepdims ? 1 : 0 }, hint);
    return this.op(opType, [x], { axes, keepdims: keepdims ? 1 : 0 }, hint);
  }

  /** The model as ONNX protobuf bytes; computes every weight's values now. */
  encode(metadata: Record<string, string>, producerVersion: string): Uint8Array {
    const valueInfo = (v: ValueInfo) => ({
      name: v.name,
      type: {
        tensorType: {
          elemType: v.type,
          shape: { dim: v.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
        },
      },
    });
    const attribute = (name: string, value: AttributeValue) => {
      if (typeof value === 'string') return { name, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(value) };
      if (typeof value === 'number') return { name, type: onnx.AttributeProto.AttributeType.INT, i: value };
      return { name, type: onnx.AttributeProto.AttributeType.INTS, ints: [...value] };
    };
    const initializer = (t: Initializer) => {
      const values = t.values();
      const expected = t.dims.reduce((a, b) => a * b, 1);
      if (values.length !== expected) {
        throw new SegtoolError('ERR_EXPORT', `Initializer ${t.name} has ${values.length} values for shape [${t.dims.join(', ')}]`);
      }
      return { name: t.name, dims: t.dims, dataType: t.type, rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
    };
    const model = {
      irVersion: irVersionFor(this.opset),
      producerName: 'segtool',
      producerVersion,
      opsetImport: [{ domain: '', version: this.opset }],
      metadataProps: Object.entries(metadata).map(([key, value]) => ({ key, value })),
      graph: {
        name: 'segtool',
        node: this.#nodes.map((n, i) => ({
          name: `${n.opType}_${i}`,
          opType: n.opType,
          input: n.inputs,
          output: n.outputs,
          attribute: Object.entries(n.attributes).map(([k, v]) => attribute(k, v)),
        })),
        initializer: this.#initializers.map(initializer),
        input: this.#inputs.map(valueInfo),
        output: this.#outputs.map(valueInfo),
      },
    };
    return onnx.ModelProto.encode(onnx.ModelProto.fromObject(model)).finish();
  }
}

/** The IR version each opset needs (onnx/helper.py's VERSION_TABLE). */
function irVersionFor(opset: number): number {
  if (opset <= 14) return 7;
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  return 10;
}
