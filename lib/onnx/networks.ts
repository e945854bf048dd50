/**
 * The ONNX graphs of segtool's networks: every encoder and decoder of native/nn, op for op
 * (resnet.cc, mobilenet.cc, hrnet.cc, decoders.cc, layers.cc), in eval mode with BatchNorm
 * folded into the convolution before it. Layer counts, channels and groups are read from the
 * model's own state-dict shapes; strides, dilations and paddings follow the native rules. Every
 * weight the model has must be read by its graph (training-only deep-supervision heads and the
 * reference's SyncBN bookkeeping buffers excepted), so a native layer the exporter does not
 * describe fails the export instead of producing a different network.
 */
import { SegtoolError } from '../errors.js';
import { FLOAT, GraphBuilder, INT64, type WeightSource } from './graph.js';

/** What the graph needs to know about the model besides its weights. */
export interface NetworkInfo {
  /** Canonical names, as SegmentationModel.info reports them. */
  encoder: string;
  decoder: string;
  numClass: number;
  bnEps: number;
}

export interface GraphOptions {
  opset: number;
  /** Also `pred` (int64 [N, H, W]) and `prob` (float32 [N, H, W]) at the input's size. */
  fullSize: boolean;
}

/** The PPM's bin sizes (decoders.cc kPoolScales). */
const POOL_SCALES = [1, 2, 3, 6] as const;

/** Heads the reference trains with deep supervision and never runs at inference. */
const TRAINING_ONLY = /^decoder\.(cbr_deepsup|conv_last_deepsup)\./;

interface ConvSpec {
  stride?: number;
  padding?: number;
  dilation?: number;
  groups?: number;
}

type Activation = 'relu' | 'relu6' | 'none';

/** The graph of one network and the weights it has read. */
class Net {
  readonly g: GraphBuilder;
  readonly #source: WeightSource;
  readonly #eps: number;
  readonly #read = new Set<string>();
  readonly #readPrefixes: string[] = [];

  constructor(g: GraphBuilder, source: WeightSource, eps: number) {
    this.g = g;
    this.#source = source;
    this.#eps = eps;
  }

  has(key: string): boolean {
    return this.#source.shape(key) !== undefined;
  }

  shape(key: string): readonly number[] {
    const shape = this.#source.shape(key);
    if (!shape) throw new SegtoolError('ERR_EXPORT', `The model has no weight "${key}", which its ONNX description reads`);
    return shape;
  }

  /**
   * Conv2d whose weights are at `conv` (a key prefix ending in '.'), then the BatchNorm at `bn`
   * folded into it (w * gamma / sqrt(var + eps), (b - mean) * gamma / sqrt(var + eps) + beta,
   * computed in float64), then the activation. Padding defaults to kernel / 2 as the native
   * layers'.
   */
  conv(x: string, conv: string, spec: ConvSpec, bn?: string, activation: Activation = 'none'): string {
    const weightKey = `${conv}weight`;
    const biasKey = `${conv}bias`;
    const shape = this.shape(weightKey);
    const [out, perGroup, kh, kw] = shape as [number, number, number, number];
    const hasBias = this.has(biasKey);
    this.#read.add(weightKey);
    if (hasBias) this.#read.add(biasKey);
    if (bn) {
      for (const k of ['weight', 'bias', 'running_mean', 'running_var']) this.shape(`${bn}${k}`);
      this.#readPrefixes.push(bn);
    }
    const source = this.#source;
    const eps = this.#eps;
    const scale = (): Float64Array | undefined => {
      if (!bn) return undefined;
      const gamma = source.values(`${bn}weight`);
      const variance = source.values(`${bn}running_var`);
      return Float64Array.from(gamma, (g, o) => g / Math.sqrt(variance[o]! + eps));
    };
    const weight = this.g.weight(weightKey, [...shape], () => {
      const w = source.values(weightKey);
      const s = scale();
      if (!s) return w;
      const folded = new Float32Array(w.length);
      const per = w.length / out;
      for (let o = 0; o < out; o++) {
        const so = s[o]!;
        for (let i = o * per, end = i + per; i < end; i++) folded[i] = w[i]! * so;
      }
      return folded;
    });
    const inputs = [x, weight];
    if (hasBias || bn) {
      inputs.push(
        this.g.weight(biasKey, [out], () => {
          const b = hasBias ? source.values(biasKey) : new Float32Array(out);
          const s = scale();
          if (!s) return b;
          const mean = source.values(`${bn}running_mean`);
          const beta = source.values(`${bn}bias`);
          return Float32Array.from(b, (v, o) => (v - mean[o]!) * s[o]! + beta[o]!);
        }),
      );
    }
    const padding = spec.padding ?? Math.floor(kh / 2);
    const stride = spec.stride ?? 1;
    const dilation = spec.dilation ?? 1;
    const groups = spec.groups ?? 1;
    if (perGroup * groups === 0 || kh !== kw) {
      throw new SegtoolError('ERR_EXPORT', `Cannot describe convolution ${weightKey} of shape [${shape.join(', ')}]`);
    }
    const y = this.g.op(
      'Conv',
      inputs,
      { kernel_shape: [kh, kw], strides: [stride, stride], pads: [padding, padding, padding, padding], dilations: [dilation, dilation], group: groups },
      conv.replace(/\.$/, ''),
    );
    return this.activate(y, activation);
  }

  activate(x: string, activation: Activation): string {
    if (activation === 'relu') return this.g.op('Relu', [x]);
    // nn.ReLU6 = hardtanh(0, 6); Clip takes its bounds as inputs from opset 11.
    if (activation === 'relu6') return this.g.op('Clip', [x, this.g.float(0), this.g.float(6)], {}, 'relu6');
    return x;
  }

  add(a: string, b: string): string {
    return this.g.op('Add', [a, b]);
  }

  concat(parts: string[]): string {
    return this.g.op('Concat', parts, { axis: 1 });
  }

  /** Bilinear upsampling of x to like's height and width, align_corners=false (layers.cc upsample_bilinear). */
  resize(x: string, like: string): string {
    const sizes = this.g.op('Concat', [this.g.dims(x, 0, 2), this.g.dims(like, 2, 4)], { axis: 0 }, 'resize_sizes');
    // half_pixel: src = (dst + 0.5) * in / out - 0.5, clamped at the edges, as PyTorch's
    // align_corners=False (also when the output has size 1, unlike pytorch_half_pixel).
    return this.g.op('Resize', [x, '', '', sizes], { mode: 'linear', coordinate_transformation_mode: 'half_pixel' }, 'resize');
  }

  /**
   * adaptive_avg_pool2d(x, bins) at any input size: cell i of an axis of size n covers
   * [floor(i * n / bins), ceil((i + 1) * n / bins)) as in PyTorch (ops/pool_bins.h), computed
   * from x's runtime shape. Rows are averaged first, then columns (the mean of a rectangle).
   */
  adaptiveAvgPool(x: string, bins: number): string {
    if (bins === 1) return this.g.op('GlobalAveragePool', [x], {}, 'pool1');
    let y = x;
    for (const axis of [2, 3]) {
      const size = this.g.dims(x, axis, axis + 1);
      const cells: string[] = [];
      for (let i = 0; i < bins; i++) {
        const start = i === 0 ? this.g.int64([0]) : this.g.op('Div', [this.g.op('Mul', [size, this.g.int64([i])]), this.g.int64([bins])]);
        const endTimesBins = this.g.op('Add', [this.g.op('Mul', [size, this.g.int64([i + 1])]), this.g.int64([bins - 1])]);
        const end = this.g.op('Div', [endTimesBins, this.g.int64([bins])]);
        const cell = this.g.op('Slice', [y, start, end, this.g.int64([axis])], {}, `pool${bins}_cell`);
        cells.push(this.g.reduce('ReduceMean', cell, [axis], true));
      }
      y = this.g.op('Concat', cells, { axis }, `pool${bins}`);
    }
    return y;
  }

  /** Every weight the model has that this graph did not read (training-only ones excepted). */
  unread(keys: Iterable<string>): string[] {
    const left: string[] = [];
    for (const key of keys) {
      if (this.#read.has(key) || TRAINING_ONLY.test(key)) continue;
      if (this.#readPrefixes.some((p) => key.startsWith(p) && !key.slice(p.length).includes('.'))) continue;
      left.push(key);
    }
    return left;
  }
}

// ------------------------------------------------------------------ encoders

/** Conv2d::nostride_dilate (the reference's ResnetDilated / MobileNetV2Dilated). */
function nostrideDilate(spec: Required<ConvSpec>, kernel: number, dilate: number): Required<ConvSpec> {
  if (dilate === 0) return spec;
  if (spec.stride === 2) {
    return kernel === 3 ? { ...spec, stride: 1, dilation: dilate / 2, padding: dilate / 2 } : { ...spec, stride: 1 };
  }
  return kernel === 3 ? { ...spec, dilation: dilate, padding: dilate } : spec;
}

function convSpec(stride: number, kernel: number, groups = 1): Required<ConvSpec> {
  return { stride, padding: Math.floor(kernel / 2), dilation: 1, groups };
}

/** ResidualBlock (layers.cc): BasicBlock, Bottleneck or ResNeXt's GroupBottleneck, by its keys. */
function residualBlock(net: Net, p: string, x: string, stride: number, dilate: number): string {
  const bottleneck = net.has(`${p}conv3.weight`);
  const kernelOf = (conv: string) => net.shape(`${p}${conv}.weight`)[2]!;
  const spec = (conv: string, s: number, groups = 1) => nostrideDilate(convSpec(s, kernelOf(conv), groups), kernelOf(conv), dilate);
  let out: string;
  if (bottleneck) {
    const groups = net.shape(`${p}conv1.weight`)[0]! / net.shape(`${p}conv2.weight`)[1]!;
    out = net.conv(x, `${p}conv1.`, spec('conv1', 1), `${p}bn1.`, 'relu');
    out = net.conv(out, `${p}conv2.`, spec('conv2', stride, groups), `${p}bn2.`, 'relu');
    out = net.conv(out, `${p}conv3.`, spec('conv3', 1), `${p}bn3.`);
  } else {
    out = net.conv(x, `${p}conv1.`, spec('conv1', stride), `${p}bn1.`, 'relu');
    out = net.conv(out, `${p}conv2.`, spec('conv2', 1), `${p}bn2.`);
  }
  const identity = net.has(`${p}downsample.0.weight`)
    ? net.conv(x, `${p}downsample.0.`, spec('downsample.0', stride), `${p}downsample.1.`)
    : x;
  return net.activate(net.add(out, identity), 'relu');
}

/** resnet.cc: deep stem, max pool, layer1..4 (dilated: layer3/4 by 2/4, or layer4 by 2 for *dilated16). */
function resnet(net: Net, name: string): string[] {
  const dilateScale = name.endsWith('dilated16') ? 16 : name.includes('dilated') ? 8 : 0;
  let x = net.conv('input', 'encoder.conv1.', { stride: 2 }, 'encoder.bn1.', 'relu');
  x = net.conv(x, 'encoder.conv2.', {}, 'encoder.bn2.', 'relu');
  x = net.conv(x, 'encoder.conv3.', {}, 'encoder.bn3.', 'relu');
  x = net.g.op('MaxPool', [x], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] });
  const convOut: string[] = [];
  for (let layer = 1; layer <= 4; layer++) {
    const dilate = dilateScale === 8 ? ({ 3: 2, 4: 4 } as Record<number, number>)[layer] ?? 0 : dilateScale === 16 && layer === 4 ? 2 : 0;
    for (let b = 0; net.has(`encoder.layer${layer}.${b}.conv1.weight`); b++) {
      x = residualBlock(net, `encoder.layer${layer}.${b}.`, x, b === 0 && layer > 1 ? 2 : 1, dilate);
    }
    convOut.push(x);
  }
  return convOut;
}

/** mobilenet.cc: MobileNetV2 features[:-1], dilate_scale 8; conv_out after features 2, 4, 7, 14 and the last. */
function mobilenetv2dilated(net: Net): string[] {
  let x = net.conv('input', 'encoder.features.0.0.', { stride: 2 }, 'encoder.features.0.1.', 'relu6');
  // t (expand), c (channels), n (repeats), s (stride of the first): only n and s are not in the weights.
  const settings = [
    [1, 1], [2, 2], [3, 2], [4, 2], [3, 1], [3, 2], [1, 1],
  ] as const;
  const convOut: string[] = [];
  let feature = 1;
  for (const [repeats, firstStride] of settings) {
    for (let r = 0; r < repeats; r++, feature++) {
      const p = `encoder.features.${feature}.conv.`;
      const dilate = feature >= 14 ? 4 : feature >= 7 ? 2 : 0;
      const stride = r === 0 ? firstStride : 1;
      const slots = [0, 3, 6].filter((s) => net.has(`${p}${s}.weight`));
      const first = net.shape(`${p}${slots[0]}.weight`);
      const inputChannels = first[1] === 1 ? first[0]! : first[1]!; // expand 1 starts with the depthwise conv
      const outputChannels = net.shape(`${p}${slots[slots.length - 1]}.weight`)[0]!;
      let y = x;
      slots.forEach((slot, i) => {
        const shape = net.shape(`${p}${slot}.weight`);
        const kernel = shape[2]!;
        const depthwise = kernel === 3 && shape[1] === 1;
        const spec = nostrideDilate(convSpec(depthwise ? stride : 1, kernel, depthwise ? shape[0]! : 1), kernel, dilate);
        y = net.conv(y, `${p}${slot}.`, spec, `${p}${slot + 1}.`, i + 1 < slots.length ? 'relu6' : 'none');
      });
      x = stride === 1 && inputChannels === outputChannels ? net.add(x, y) : y;
      if (feature === 2 || feature === 4 || feature === 7 || feature === 14) convOut.push(x);
    }
  }
  convOut.push(x);
  return convOut;
}

/** hrnet.cc: HRNetV2-W48, the four branches upsampled to branch 0's size and concatenated. */
function hrnetv2(net: Net): string[] {
  let x = net.conv('input', 'encoder.conv1.', { stride: 2 }, 'encoder.bn1.', 'relu');
  x = net.conv(x, 'encoder.conv2.', { stride: 2 }, 'encoder.bn2.', 'relu');
  for (let b = 0; net.has(`encoder.layer1.${b}.conv1.weight`); b++) x = residualBlock(net, `encoder.layer1.${b}.`, x, 1, 0);
  let yList = [x];
  for (let stage = 2; net.has(`encoder.stage${stage}.0.branches.0.0.conv1.weight`); stage++) {
    const t = `encoder.transition${stage - 1}.`;
    const xList: string[] = [];
    for (let i = 0; net.has(`encoder.stage${stage}.0.branches.${i}.0.conv1.weight`); i++) {
      if (net.has(`${t}${i}.0.weight`)) {
        xList.push(net.conv(yList[yList.length - 1]!, `${t}${i}.0.`, {}, `${t}${i}.1.`, 'relu'));
      } else if (net.has(`${t}${i}.0.0.weight`)) {
        // A new branch from the last one: stride-2 3x3 convs (the reference feeds y_list[-1]).
        let y = yList[yList.length - 1]!;
        for (let j = 0; net.has(`${t}${i}.${j}.0.weight`); j++) y = net.conv(y, `${t}${i}.${j}.0.`, { stride: 2 }, `${t}${i}.${j}.1.`, 'relu');
        xList.push(y);
      } else {
        xList.push(yList[i]!);
      }
    }
    let branches = xList;
    for (let m = 0; net.has(`encoder.stage${stage}.${m}.branches.0.0.conv1.weight`); m++) {
      branches = highResolutionModule(net, `encoder.stage${stage}.${m}.`, branches);
    }
    yList = branches;
  }
  const parts = [yList[0]!, ...yList.slice(1).map((y) => net.resize(y, yList[0]!))];
  return [net.concat(parts)];
}

function highResolutionModule(net: Net, p: string, input: string[]): string[] {
  const x = input.map((branch, i) => {
    let y = branch;
    for (let b = 0; net.has(`${p}branches.${i}.${b}.conv1.weight`); b++) y = residualBlock(net, `${p}branches.${i}.${b}.`, y, 1, 0);
    return y;
  });
  const n = x.length;
  // fuse_layers[i][j], j < i: (i - j) stride-2 3x3 convs, ReLU between them.
  const down = (i: number, j: number, y: string): string => {
    for (let k = 0; k < i - j; k++) {
      const f = `${p}fuse_layers.${i}.${j}.${k}.`;
      y = net.conv(y, `${f}0.`, { stride: 2 }, `${f}1.`, k === i - j - 1 ? 'none' : 'relu');
    }
    return y;
  };
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    let y = i === 0 ? x[0]! : down(i, 0, x[0]!);
    for (let j = 1; j < n; j++) {
      if (j === i) y = net.add(y, x[j]!);
      else if (j > i) y = net.add(y, net.resize(net.conv(x[j]!, `${p}fuse_layers.${i}.${j}.0.`, {}, `${p}fuse_layers.${i}.${j}.1.`), x[i]!));
      else y = net.add(y, down(i, j, x[j]!));
    }
    out.push(net.activate(y, 'relu'));
  }
  return out;
}

// ------------------------------------------------------------------ decoders

/** C1 / C1DeepSup: 3x3 conv-BN-ReLU, 1x1 classifier. */
function c1(net: Net, convOut: string[]): string {
  const x = net.conv(convOut[convOut.length - 1]!, 'decoder.cbr.0.', {}, 'decoder.cbr.1.', 'relu');
  return net.conv(x, 'decoder.conv_last.', {});
}

/** PPM / PPMDeepsup: pool -> 1x1 conv-BN-ReLU -> upsample, concat with conv5, 3x3 conv-BN-ReLU, 1x1 classifier. */
function ppm(net: Net, convOut: string[]): string {
  const conv5 = convOut[convOut.length - 1]!;
  const parts = [conv5];
  POOL_SCALES.forEach((bins, i) => {
    const pooled = net.conv(net.adaptiveAvgPool(conv5, bins), `decoder.ppm.${i}.1.`, {}, `decoder.ppm.${i}.2.`, 'relu');
    parts.push(net.resize(pooled, conv5));
  });
  const x = net.conv(net.concat(parts), 'decoder.conv_last.0.', {}, 'decoder.conv_last.1.', 'relu');
  return net.conv(x, 'decoder.conv_last.4.', {});
}

/** UPerNet: PPM on conv5, FPN top-down over conv_out[0..2], fusion at conv_out[0]'s resolution. */
function upernet(net: Net, convOut: string[]): string {
  const conv5 = convOut[convOut.length - 1]!;
  const parts = [conv5];
  POOL_SCALES.forEach((bins, i) => {
    // The native order is pool -> upsample -> conv-BN-ReLU; the 1x1 conv and BN are affine and
    // bilinear weights sum to 1, so they run before the upsampling here, on b x b cells.
    const pooled = net.conv(net.adaptiveAvgPool(conv5, bins), `decoder.ppm_conv.${i}.0.`, {}, `decoder.ppm_conv.${i}.1.`);
    parts.push(net.activate(net.resize(pooled, conv5), 'relu'));
  });
  let f = net.conv(net.concat(parts), 'decoder.ppm_last_conv.0.', {}, 'decoder.ppm_last_conv.1.', 'relu');
  const fpn: string[] = [];
  fpn[3] = f;
  for (let i = 2; i >= 0; i--) {
    const lateral = net.conv(convOut[i]!, `decoder.fpn_in.${i}.0.`, {}, `decoder.fpn_in.${i}.1.`, 'relu');
    f = net.add(lateral, net.resize(f, lateral));
    fpn[i] = net.conv(f, `decoder.fpn_out.${i}.0.0.`, {}, `decoder.fpn_out.${i}.0.1.`, 'relu');
  }
  const fused = net.concat([fpn[0]!, ...fpn.slice(1).map((level) => net.resize(level, fpn[0]!))]);
  const x = net.conv(fused, 'decoder.conv_last.0.0.', {}, 'decoder.conv_last.0.1.', 'relu');
  return net.conv(x, 'decoder.conv_last.1.', {});
}

type EncoderGraph = (net: Net, name: string) => string[];
type DecoderGraph = (net: Net, convOut: string[]) => string;

/** Every canonical encoder of native/nn/arch.cc. */
const ENCODERS: Readonly<Record<string, EncoderGraph>> = {
  mobilenetv2dilated: (net) => mobilenetv2dilated(net),
  resnet18: resnet,
  resnet18dilated: resnet,
  resnet50: resnet,
  resnet50dilated: resnet,
  resnet50dilated16: resnet,
  resnet101: resnet,
  resnet101dilated: resnet,
  resnet101dilated16: resnet,
  resnext101: resnet,
  resnext101dilated: resnet,
  resnext101dilated16: resnet,
  hrnetv2: (net) => hrnetv2(net),
};

/** Every canonical decoder; deep-supervision heads are training-only and not exported. */
const DECODERS: Readonly<Record<string, DecoderGraph>> = {
  c1,
  c1_deepsup: c1,
  ppm,
  ppm_deepsup: ppm,
  upernet_lite: upernet,
  upernet,
};

/** The canonical encoder and decoder names the exporter describes. */
export const EXPORTED_ENCODERS: readonly string[] = Object.freeze(Object.keys(ENCODERS));
export const EXPORTED_DECODERS: readonly string[] = Object.freeze(Object.keys(DECODERS));

/**
 * The ONNX graph of a model: input `input` float32 [N, 3, H, W]; output `logprob` float32
 * [N, numClass, h, w] (log_softmax at the output stride), with `fullSize` also `pred` (int64
 * [N, H, W]) and `prob` (float32 [N, H, W]). ERR_EXPORT when the architecture has no
 * description or the model has weights the description does not read.
 */
export function buildSegmentationGraph(info: NetworkInfo, source: WeightSource & { keys(): Iterable<string> }, options: GraphOptions): GraphBuilder {
  const encoder = ENCODERS[info.encoder];
  const decoder = DECODERS[info.decoder];
  if (!encoder) throw new SegtoolError('ERR_EXPORT', `No ONNX description of encoder ${info.encoder} (described: ${EXPORTED_ENCODERS.join(', ')})`);
  if (!decoder) throw new SegtoolError('ERR_EXPORT', `No ONNX description of decoder ${info.decoder} (described: ${EXPORTED_DECODERS.join(', ')})`);
  const g = new GraphBuilder(options.opset);
  g.input('input', FLOAT, ['batch', 3, 'height', 'width']);
  const net = new Net(g, source, info.bnEps);
  const logits = decoder(net, encoder(net, info.encoder));
  const unread = net.unread(source.keys());
  if (unread.length > 0) {
    const list = unread.length > 8 ? `${unread.slice(0, 8).join(', ')} … (${unread.length} in all)` : unread.join(', ');
    throw new SegtoolError('ERR_EXPORT', `The ONNX description of ${info.encoder} + ${info.decoder} does not read these weights of the model: ${list}`);
  }
  const logprob = g.op('LogSoftmax', [logits], { axis: 1 }, 'log_softmax');
  g.output(logprob, 'logprob', FLOAT, ['batch', info.numClass, 'feature_height', 'feature_width']);
  if (options.fullSize) {
    // Upsampled log-probabilities differ from upsampled logits by a per-pixel constant: same
    // softmax and argmax as the native predict (logits upsampled, then softmax).
    const up = net.resize(logprob, 'input');
    g.output(g.op('ArgMax', [up], { axis: 1, keepdims: 0 }, 'argmax'), 'pred', INT64, ['batch', 'height', 'width']);
    const probs = g.op('Softmax', [up], { axis: 1 }, 'softmax');
    g.output(g.reduce('ReduceMax', probs, [1], false, 'max_prob'), 'prob', FLOAT, ['batch', 'height', 'width']);
  }
  return g;
}
