/**
 * SegmentationModel: the typed, validated face of the native encoder + decoder. Every heavy call
 * is async and runs off the main thread; calls on one model run one after another (queued here,
 * so no libuv thread waits on another's lock).
 */
import { DECODER_NAMES, ENCODER_CHANNELS, ENCODER_NAMES, type DecoderName, type EncoderName } from './config/names.js';
import { Communicator } from './distributed/communicator.js';
import { checkDevice, checkRuntime, type DeviceName, type Precision, type RuntimeOptions } from './device.js';
import { SegtoolError } from './errors.js';
import { loadNative, native, type NamedNativeTensors, type NativeCancelToken, type NativePrediction, type NativeModel, type NativeModelInfo, type NativeTrainStepResult } from './native.js';
import { Tensor, type TensorData } from './tensor.js';
import { expectBoolean, expectInteger, expectNumber, expectOneOf, expectString, invalid } from './validate.js';

export type { EncoderName, DecoderName };
export type ModelInfo = NativeModelInfo;

export interface ModelOptions {
  encoder: EncoderName;
  decoder: DecoderName;
  /** Channels the decoder takes; defaults to the encoder's output channels. */
  fcDim?: number;
  /** Output classes (150 for ADE20K). */
  numClass?: number;
  /** BatchNorm running-statistics momentum: by default 0.001 (HRNet's encoder 0.1) as the reference; ~0.1 suits short runs. */
  bnMomentum?: number;
  bnEps?: number;
  /** Dropout2d probability of the PPM heads during training (the reference's 0.1). */
  dropout?: number;
  /** 'reference' (the reference's random initialisation) or 'procedural' (the fixtures' deterministic weights). */
  init?: 'reference' | 'procedural';
  /** Where the model computes: 'cpu' (default), 'cuda' or 'cuda:N'. Inputs are copied there, outputs come back on the CPU. */
  device?: DeviceName;
  /** 'fp32' (default) or 'bf16' (bfloat16 convolutions: CUDA, or a CPU with AVX512-BF16 or AMX; ERR_DEVICE elsewhere). */
  precision?: Precision;
  /** Inputs in channels-last memory format (CPU and CUDA). */
  channelsLast?: boolean;
  /** cuDNN benchmark mode (CUDA; a process-wide setting). */
  cudnnBenchmark?: boolean;
  /** Eval-mode inference with BatchNorm folded into the convolutions (default true; false: the unfused graph). */
  fuse?: boolean;
}

export interface TrainStepOptions {
  lrEncoder: number;
  lrDecoder: number;
  /** SGD momentum (0.9). */
  momentum?: number;
  /** L2 weight decay on convolution weights only (1e-4). */
  weightDecay?: number;
  /** Weight of the deep-supervision loss (0.4). */
  deepSupScale?: number;
}

/** What one training step reports: the loss (main + deepSupScale x deep supervision) and pixel
 * accuracy before the update, each head's loss, and the gradient norms of encoder and decoder. */
export type TrainStepResult = NativeTrainStepResult;

export interface LoadReport {
  missing: string[];
  unexpected: string[];
}

/** A Tensor, or raw values with a shape (e.g. a batch from lib/data). */
export interface PredictClassesOptions {
  /** Output [height, width]; default the first input's size. */
  segSize?: readonly [number, number];
  /** Also run every input mirrored left-right and average its (mirrored back) probabilities. */
  flip?: boolean;
  /** The top class's probability per pixel; default true. */
  confidence?: boolean;
  /** Every class's probability ([batch, numClass, height, width]): the one full-size buffer. */
  probabilities?: boolean;
  /** Pixels predicted as each class ([batch, numClass] int64). */
  counts?: boolean;
  /** uint8 [numClass, 3] colours: also return the labels coloured (`colors`, uint8 [height, width, 3]; batch 1). */
  palette?: Tensor;
  /** A token from createCancelToken(): setting it stops the work between scales and rows (ERR_ABORTED). */
  cancel?: NativeCancelToken;
}

export interface ClassPrediction {
  /** int32 [batch, height, width]: the most probable class (the first on ties, as torch.max). */
  labels: Tensor;
  /** float32 [batch, height, width]: its averaged probability. */
  confidence?: Tensor;
  /** float32 [batch, numClass, height, width]: averaged probabilities, when asked for. */
  probabilities?: Tensor;
  /** int64 [batch, numClass]: pixels of each class, when asked for. */
  counts?: Tensor;
  /** uint8 [height, width, 3]: the labels in the palette, when one was given. */
  colors?: Tensor;
}

export type TensorLike = Tensor | { data: TensorData; shape: readonly number[] };

/** A sliding window (mmsegmentation's `slide` mode): crop size and step, [height, width] or one side for both. */
export interface SlideWindowOptions {
  /** Crop size in input pixels: a multiple of the model's output stride (e.g. 512). */
  crop: number | readonly [number, number];
  /** Step between crops: a multiple of the output stride, at most the crop; default two thirds of the crop (512 -> 336). */
  stride?: number | readonly [number, number];
}

/** A checked sliding window: [height, width] each. */
export interface SlideWindow {
  crop: [number, number];
  stride: [number, number];
}

export interface PredictSlidingOptions extends SlideWindowOptions {
  /** uint8 [numClass, 3] colours: also return the labels coloured (`colors`, uint8 [height, width, 3]; batch 1). */
  palette?: Tensor;
  /** Also run every crop mirrored left-right (its logits mirrored back, a second canvas) and average the probabilities. */
  flip?: boolean;
  /** The top class's probability per pixel; default true. */
  confidence?: boolean;
  /** Every class's probability ([batch, numClass, height, width]): the one full-size buffer. */
  probabilities?: boolean;
  /** Pixels predicted as each class ([batch, numClass] int64). */
  counts?: boolean;
  /** The stitched logits ([batch, numClass, ceil(H / s), ceil(W / s)], s = outputStride; with flip, the unmirrored crops'). */
  logits?: boolean;
  /** A token from createCancelToken(): setting it stops the work between crops and rows (ERR_ABORTED). */
  cancel?: NativeCancelToken;
  /** Progress: called after each crop with the crops done and in all (x 2 with flip). An error it throws rejects the call. */
  onTile?: (done: number, total: number) => void;
}

/** One crop of a sliding window: input rows [y0, y1) and columns [x0, x1). */
export interface SlideTile {
  y0: number;
  y1: number;
  x0: number;
  x1: number;
}

const MAX_SIDE = 1 << 16;

/** A side of a sliding window: a positive multiple of `outputStride` (the message names the nearest ones). */
function slideSide(name: string, value: unknown, outputStride: number): number {
  const side = expectInteger(name, value, 1, MAX_SIDE);
  if (side % outputStride !== 0) {
    const below = Math.floor(side / outputStride) * outputStride;
    const nearest = below > 0 ? `${below} or ${below + outputStride}` : `${outputStride}`;
    throw invalid(name, `a multiple of the model's output stride ${outputStride} (e.g. ${nearest})`, value);
  }
  return side;
}

function slidePair(name: string, value: unknown, outputStride: number): [number, number] {
  if (Array.isArray(value)) {
    if (value.length !== 2) throw invalid(name, 'one side or [height, width]', value);
    return [slideSide(`${name}[0]`, value[0], outputStride), slideSide(`${name}[1]`, value[1], outputStride)];
  }
  const side = slideSide(name, value, outputStride);
  return [side, side];
}

/**
 * Checks a sliding window for a model of `outputStride` (crop and stride multiples of it, the
 * stride at most the crop); `name` prefixes the option names in messages ('options.slide').
 */
export function checkSlideWindow(name: string, options: unknown, outputStride: number): SlideWindow {
  if (!options || typeof options !== 'object' || Array.isArray(options)) throw invalid(name, 'an object {crop, stride?}', options);
  const { crop: cropValue, stride: strideValue } = options as SlideWindowOptions;
  if (cropValue === undefined) throw invalid(`${name}.crop`, 'a crop size (one side or [height, width])', cropValue);
  const crop = slidePair(`${name}.crop`, cropValue, outputStride);
  const stride: [number, number] =
    strideValue === undefined
      ? [0, 1].map((i) => Math.max(outputStride, Math.floor((crop[i]! * 2) / 3 / outputStride) * outputStride)) as [number, number]
      : slidePair(`${name}.stride`, strideValue, outputStride);
  for (const [i, axis] of ['height', 'width'].entries()) {
    if (stride[i]! > crop[i]!) {
      throw invalid(`${name}.stride`, `a step at most the crop's ${axis} (${crop[i]}), or the crops would leave gaps`, strideValue);
    }
  }
  return { crop, stride };
}

type NamedTensorsLike = Map<string, Tensor> | Record<string, Tensor> | Iterable<[string, Tensor]>;

function toNamedNative(name: string, tensors: NamedTensorsLike): NamedNativeTensors {
  const entries: Iterable<[string, Tensor]> =
    tensors instanceof Map || Symbol.iterator in (tensors as object)
      ? (tensors as Iterable<[string, Tensor]>)
      : Object.entries(tensors as Record<string, Tensor>);
  const out: NamedNativeTensors = [];
  for (const [key, tensor] of entries) {
    if (!(tensor instanceof Tensor)) throw invalid(`${name}["${key}"]`, 'a Tensor', tensor);
    out.push([key, tensor.handle]);
  }
  return out;
}

function fromNamedNative(entries: NamedNativeTensors): Map<string, Tensor> {
  return new Map(entries.map(([key, handle]) => [key, new Tensor(handle)]));
}

/** Runs `body` with `value` as a Tensor, disposing a temporary one made from raw values. */
async function withTensor<T>(name: string, value: TensorLike, dtype: 'float32' | 'int64', body: (t: Tensor) => Promise<T>): Promise<T> {
  if (value instanceof Tensor) return body(value);
  if (!value || typeof value !== 'object' || !('data' in value) || !('shape' in value)) {
    throw invalid(name, 'a Tensor or {data, shape}', value);
  }
  const temporary = Tensor.from(value.data, value.shape, dtype);
  try {
    return await body(temporary);
  } finally {
    temporary.dispose();
  }
}

function shapeOf(value: TensorLike): readonly number[] {
  return value instanceof Tensor ? value.shape : value.shape;
}

/** The optional uint8 [numClass, 3] palette of predictClasses / predictSliding, checked. */
function checkPalette(palette: unknown): Tensor | undefined {
  if (palette === undefined) return undefined;
  if (!(palette instanceof Tensor) || palette.dtype !== 'uint8' || palette.shape.length !== 2 || palette.shape[1] !== 3) {
    throw invalid('palette', 'a uint8 [numClass, 3] Tensor', palette);
  }
  return palette;
}

/** A native prediction's handles as owned Tensors (the outputs that were computed). */
function wrapPrediction(out: NativePrediction): ClassPrediction & { logits?: Tensor } {
  return {
    labels: new Tensor(out.labels),
    ...(out.confidence ? { confidence: new Tensor(out.confidence) } : {}),
    ...(out.probabilities ? { probabilities: new Tensor(out.probabilities) } : {}),
    ...(out.counts ? { counts: new Tensor(out.counts) } : {}),
    ...(out.logits ? { logits: new Tensor(out.logits) } : {}),
    ...(out.colors ? { colors: new Tensor(out.colors) } : {}),
  };
}

export class SegmentationModel {
  readonly #model: NativeModel;
  readonly #outputStride: number;
  readonly #numClass: number;
  #queue: Promise<unknown> = Promise.resolve();
  #pending = 0;
  #communicator: Communicator | null = null;

  private constructor(model: NativeModel) {
    this.#model = model;
    const info = model.info();
    this.#outputStride = info.outputStride;
    this.#numClass = info.numClass;
  }

  /** Classes the model predicts (readable while calls are in flight, unlike `info`). */
  get numClass(): number {
    return this.#numClass;
  }

  /** Logits are computed at input size / outputStride (8 for dilated encoders, 4 for UPerNet and HRNet). */
  get outputStride(): number {
    return this.#outputStride;
  }

  /** Builds a model (off the main thread: large encoders take a moment to initialise). */
  static async create(options: ModelOptions): Promise<SegmentationModel> {
    if (!options || typeof options !== 'object') throw invalid('options', 'an object with encoder and decoder', options);
    const known = new Set(['encoder', 'decoder', 'fcDim', 'numClass', 'bnMomentum', 'bnEps', 'dropout', 'init', 'device', 'precision', 'channelsLast', 'cudnnBenchmark', 'fuse']);
    for (const key of Object.keys(options)) {
      if (!known.has(key)) throw new SegtoolError('ERR_INVALID_ARG', `Unknown model option "${key}" (expected one of ${[...known].join(', ')})`);
    }
    const encoder = expectOneOf('encoder', options.encoder, ENCODER_NAMES);
    const decoder = expectOneOf('decoder', options.decoder, DECODER_NAMES);
    const channels = ENCODER_CHANNELS[encoder];
    const fcDim = options.fcDim === undefined ? channels : expectInteger('fcDim', options.fcDim, 1);
    if (fcDim !== channels) {
      throw new SegtoolError('ERR_INVALID_ARG', `Expected fcDim ${channels} for encoder ${encoder} (its output channels) but received ${fcDim}`);
    }
    const device = options.device === undefined ? 'cpu' : checkDevice('device', options.device);
    const runtime = checkRuntime('options', options, device);
    const handle = await (await loadNative()).createModel({
      encoder,
      decoder,
      fcDim,
      numClass: options.numClass === undefined ? 150 : expectInteger('numClass', options.numClass, 1, 65535),
      ...(options.bnMomentum === undefined ? {} : { bnMomentum: expectNumber('bnMomentum', options.bnMomentum, 0, 1) }),
      bnEps: options.bnEps === undefined ? 1e-5 : expectNumber('bnEps', options.bnEps, Number.MIN_VALUE, 1),
      dropout: options.dropout === undefined ? 0.1 : expectNumber('dropout', options.dropout, 0, 1),
      init: options.init === undefined ? 'reference' : expectOneOf('init', options.init, ['reference', 'procedural'] as const),
      device,
      ...runtime,
    });
    return new SegmentationModel(handle);
  }

  /** Queues `call` after every earlier call on this model. */
  #enqueue<T>(call: () => Promise<T>): Promise<T> {
    if (this.#model.disposed) return Promise.reject(new SegtoolError('ERR_DISPOSED', 'The model was disposed'));
    this.#pending++;
    const run = this.#queue.then(call, call);
    this.#queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run.finally(() => {
      this.#pending--;
    });
  }

  #idle(): NativeModel {
    if (this.#model.disposed) throw new SegtoolError('ERR_DISPOSED', 'The model was disposed');
    if (this.#pending > 0) throw new SegtoolError('ERR_BUSY', `The model has ${this.#pending} call(s) in flight; await them first`);
    return this.#model;
  }

  get info(): ModelInfo {
    return this.#idle().info();
  }

  /** State-dict keys in the reference's order ("encoder.*" then "decoder.*"). */
  keys(): string[] {
    return this.#idle().keys();
  }

  /** [key, shape, dtype] of every weight and buffer, in state-dict order (no data copied). */
  shapes(): Array<[string, number[], string]> {
    return this.#idle().shapes();
  }

  /** "resnet50dilated + ppm_deepsup (150 classes)", for messages. */
  describe(): string {
    const info = this.#model.info();
    return `${info.encoder} + ${info.decoder} (${info.numClass} classes)`;
  }

  /** A copy of one weight or buffer, by state-dict name. */
  getWeight(name: string): Tensor {
    const key = expectString('name', name);
    return new Tensor(this.#idle().getTensor(key));
  }

  /** Copies `value` into one weight or buffer; the shape must match. */
  setWeight(name: string, value: Tensor): void {
    const key = expectString('name', name);
    if (!(value instanceof Tensor)) throw invalid('value', 'a Tensor', value);
    this.#idle().setTensor(key, value.handle);
  }

  /** Copies of every weight and buffer, in state-dict order. The caller owns them. */
  stateDict(): Promise<Map<string, Tensor>> {
    return this.#enqueue(async () => fromNamedNative(await this.#model.stateDict()));
  }

  /**
   * Loads weights by state-dict name. `prefix` is prepended to the given keys (e.g. 'encoder.'
   * for the reference's encoder_epoch_N.pth). With `strict` (the default) any model key left
   * unset or any given key not used is an ERR_CHECKPOINT error listing them.
   */
  loadStateDict(tensors: NamedTensorsLike, options: { prefix?: string; strict?: boolean } = {}): Promise<LoadReport> {
    const entries = toNamedNative('tensors', tensors);
    const prefix = options.prefix ?? '';
    if (typeof prefix !== 'string') throw invalid('prefix', 'a string', prefix);
    const strict = options.strict === undefined ? true : expectBoolean('strict', options.strict);
    return this.#enqueue(async () => {
      const report = await this.#model.loadStateDict(entries, prefix);
      if (strict && (report.missing.length > 0 || report.unexpected.length > 0)) {
        const list = (keys: string[]) => (keys.length > 8 ? `${keys.slice(0, 8).join(', ')} … (${keys.length} in all)` : keys.join(', '));
        const parts = [];
        if (report.missing.length) parts.push(`missing keys: ${list(report.missing)}`);
        if (report.unexpected.length) parts.push(`unexpected keys: ${list(report.unexpected)}`);
        throw new SegtoolError('ERR_CHECKPOINT', `The weights do not fit this model (${parts.join('; ')})`);
      }
      return report;
    });
  }

  /** Training mode: BatchNorm uses batch statistics and updates its running ones; dropout on. */
  train(): this {
    this.#idle().setMode({ training: true });
    return this;
  }

  /** Evaluation mode (the default): BatchNorm uses running statistics. */
  eval(): this {
    this.#idle().setMode({ training: false });
    return this;
  }

  /** fix_bn: train steps run the whole model in eval mode (frozen BatchNorm statistics). */
  setFixBn(fixBn: boolean): this {
    this.#idle().setMode({ fixBn: expectBoolean('fixBn', fixBn) });
    return this;
  }

  setBnMomentum(momentum: number): this {
    this.#idle().setMode({ bnMomentum: expectNumber('momentum', momentum, 0, 1) });
    return this;
  }

  setDropout(p: number): this {
    this.#idle().setMode({ dropout: expectNumber('dropout', p, 0, 1) });
    return this;
  }

  #checkInput(input: TensorLike): void {
    const shape = shapeOf(input);
    if (shape.length !== 4 || shape[1] !== 3 || shape[0]! < 1 || shape[2]! < 1 || shape[3]! < 1) {
      throw new SegtoolError('ERR_INVALID_ARG', `Expected input of shape [batch, 3, height, width] but received [${shape.join(', ')}]`);
    }
  }

  /**
   * Log-probabilities at feature resolution (input / outputStride), plus the deep-supervision
   * head's for *_deepsup decoders. Runs in the model's mode (eval unless train() was called).
   */
  forward(input: TensorLike): Promise<{ logprob: Tensor; logprobDeepsup?: Tensor }> {
    this.#checkInput(input);
    return this.#enqueue(() =>
      withTensor('input', input, 'float32', async (t) => {
        const out = await this.#model.forwardFeatures(t.handle);
        return {
          logprob: new Tensor(out.logprob),
          ...(out.logprobDeepsup ? { logprobDeepsup: new Tensor(out.logprobDeepsup) } : {}),
        };
      }),
    );
  }

  /**
   * Class probabilities at `segSize` = [height, width] (default: the input's size): logits
   * upsampled bilinearly (align_corners=false), then softmax over classes.
   */
  predict(input: TensorLike, options: { segSize?: readonly [number, number] } = {}): Promise<Tensor> {
    this.#checkInput(input);
    const shape = shapeOf(input);
    const [height, width] = options.segSize ?? [shape[2]!, shape[3]!];
    expectInteger('segSize[0]', height, 1, 1 << 16);
    expectInteger('segSize[1]', width, 1, 1 << 16);
    return this.#enqueue(() =>
      withTensor('input', input, 'float32', async (t) => new Tensor(await this.#model.forwardProbs(t.handle, height, width))),
    );
  }

  /**
   * The most probable class per pixel at `segSize`, averaged over `inputs` (the same image(s)
   * at several scales, each [batch, 3, h, w]) as the reference's multi-scale testing: each
   * input's logits upsampled bilinearly (align_corners=false), softmax, mean over inputs,
   * argmax. Computed natively row by row: no [numClass, height, width] buffer exists unless
   * `probabilities` is asked for (a 12-megapixel image needs ~0.2 GB beyond the network).
   */
  predictClasses(inputs: TensorLike | readonly TensorLike[], options: PredictClassesOptions = {}): Promise<ClassPrediction> {
    const list: readonly TensorLike[] = Array.isArray(inputs) ? inputs : [inputs as TensorLike];
    if (list.length === 0) throw invalid('inputs', 'one or more [batch, 3, H, W] inputs', inputs);
    list.forEach((input) => this.#checkInput(input));
    const batch = shapeOf(list[0]!)[0]!;
    for (const input of list) {
      if (shapeOf(input)[0] !== batch) {
        throw new SegtoolError('ERR_INVALID_ARG', `Every input must have the same batch size (${batch}) but one has [${shapeOf(input).join(', ')}]`);
      }
    }
    const first = shapeOf(list[0]!);
    const [height, width] = options.segSize ?? [first[2]!, first[3]!];
    expectInteger('segSize[0]', height, 1, 1 << 16);
    expectInteger('segSize[1]', width, 1, 1 << 16);
    const flags = {
      flip: options.flip === undefined ? false : expectBoolean('flip', options.flip),
      confidence: options.confidence === undefined ? true : expectBoolean('confidence', options.confidence),
      probabilities: options.probabilities === undefined ? false : expectBoolean('probabilities', options.probabilities),
      counts: options.counts === undefined ? false : expectBoolean('counts', options.counts),
      ...(options.cancel !== undefined ? { cancel: options.cancel } : {}),
    };
    const palette = checkPalette(options.palette);
    if (palette !== undefined && batch !== 1) throw new SegtoolError('ERR_INVALID_ARG', `palette colours one image: expected batch 1 but received ${batch}`);
    return this.#enqueue(async () => {
      const temporaries: Tensor[] = [];
      try {
        const handles = list.map((input, i) => {
          if (input instanceof Tensor) return input.handle;
          if (!input || typeof input !== 'object' || !('data' in input)) throw invalid(`inputs[${i}]`, 'a Tensor or {data, shape}', input);
          const t = Tensor.from(input.data, input.shape, 'float32');
          temporaries.push(t);
          return t.handle;
        });
        const out = await this.#model.predict(handles, height, width, palette ? { ...flags, palette: palette.handle } : flags);
        return wrapPrediction(out);
      } finally {
        for (const t of temporaries) t.dispose();
      }
    });
  }

  /**
   * predictClasses at the input's own size by sliding window (mmsegmentation's `slide` mode),
   * for inputs far larger than the training scale: crops of `crop` pixels every `stride` run
   * through the network one at a time, their logits are averaged where they overlap on a
   * canvas at the network's output resolution, and that canvas gives the labels (upsampled,
   * softmax, argmax, row by row). Memory is bounded by one crop plus the [numClass, H / s, W / s]
   * canvas (s = outputStride): no [numClass, H, W] buffer exists unless `probabilities` is asked
   * for. When one crop covers the input the result is predictClasses'. `cancel` is checked
   * between crops and rows.
   */
  predictSliding(input: TensorLike, options: PredictSlidingOptions): Promise<ClassPrediction & { logits?: Tensor }> {
    this.#checkInput(input);
    const window = checkSlideWindow('options', options, this.#outputStride);
    const flags = {
      ...window,
      flip: options.flip === undefined ? false : expectBoolean('flip', options.flip),
      confidence: options.confidence === undefined ? true : expectBoolean('confidence', options.confidence),
      probabilities: options.probabilities === undefined ? false : expectBoolean('probabilities', options.probabilities),
      counts: options.counts === undefined ? false : expectBoolean('counts', options.counts),
      logits: options.logits === undefined ? false : expectBoolean('logits', options.logits),
      ...(options.cancel !== undefined ? { cancel: options.cancel } : {}),
    };
    const palette = checkPalette(options.palette);
    const { onTile } = options;
    if (onTile !== undefined && typeof onTile !== 'function') throw invalid('onTile', 'a function (done, total)', onTile);
    return this.#enqueue(() =>
      withTensor('input', input, 'float32', async (t) => {
        let thrown: { error: unknown } | undefined;
        const progress = (done: number, total: number): void => {
          if (thrown) return;
          try {
            onTile!(done, total);
          } catch (error) {
            thrown = { error };
          }
        };
        const out = await this.#model.predictSliding(t.handle, {
          ...flags,
          ...(palette ? { palette: palette.handle } : {}),
          ...(onTile ? { onTile: progress } : {}),
        });
        if (thrown) {
          for (const handle of Object.values(out)) new Tensor(handle).dispose();
          throw thrown.error;
        }
        return wrapPrediction(out);
      }),
    );
  }

  /** The crops predictSliding runs on a `height` x `width` input, row by row (what a compute budget counts). */
  slideTiles(height: number, width: number, options: SlideWindowOptions): SlideTile[] {
    expectInteger('height', height, 1, MAX_SIDE);
    expectInteger('width', width, 1, MAX_SIDE);
    const { crop, stride } = checkSlideWindow('options', options, this.#outputStride);
    return native()
      .slideTiles(height, width, crop, stride, this.#outputStride)
      .map(([y0, y1, x0, x1]) => ({ y0, y1, x0, x1 }));
  }

  /**
   * One SGD step on a batch: forward, NLL loss (label -1 ignored) plus deep supervision,
   * backward, update with momentum and weight decay. `label` is [batch, h, w] at feature
   * resolution (ceil(input / outputStride)).
   */
  trainStep(input: TensorLike, label: TensorLike, options: TrainStepOptions): Promise<TrainStepResult> {
    this.#checkInput(input);
    const inputShape = shapeOf(input);
    const labelShape = shapeOf(label);
    const stride = this.#outputStride;
    const expected = [inputShape[0]!, Math.ceil(inputShape[2]! / stride), Math.ceil(inputShape[3]! / stride)];
    if (labelShape.length !== 3 || labelShape.some((d, i) => d !== expected[i])) {
      throw new SegtoolError(
        'ERR_INVALID_ARG',
        `Expected label of shape [${expected.join(', ')}] (input / output stride ${stride}) but received [${labelShape.join(', ')}]`,
      );
    }
    if (!options || typeof options !== 'object') throw invalid('options', 'an object with lrEncoder and lrDecoder', options);
    const step = {
      lrEncoder: expectNumber('lrEncoder', options.lrEncoder, 0),
      lrDecoder: expectNumber('lrDecoder', options.lrDecoder, 0),
      momentum: options.momentum === undefined ? 0.9 : expectNumber('momentum', options.momentum, 0, 1),
      weightDecay: options.weightDecay === undefined ? 1e-4 : expectNumber('weightDecay', options.weightDecay, 0),
      deepSupScale: options.deepSupScale === undefined ? 0.4 : expectNumber('deepSupScale', options.deepSupScale, 0),
    };
    return this.#enqueue(() =>
      withTensor('input', input, 'float32', (x) =>
        withTensor('label', label, 'int64', (y) => this.#collective(() => this.#model.trainStep(x.handle, y.handle, step))),
      ),
    );
  }

  /** SGD momentum buffers by parameter name (for checkpoints that resume exactly). */
  optimizerState(): Promise<Map<string, Tensor>> {
    return this.#enqueue(async () => fromNamedNative(await this.#model.optimizerState()));
  }

  setOptimizerState(state: NamedTensorsLike): Promise<void> {
    const entries = toNamedNative('state', state);
    return this.#enqueue(() => this.#model.setOptimizerState(entries));
  }

  /** The device the model computes on ('cpu', 'cuda:0', ...). */
  get device(): string {
    return this.#idle().info().device;
  }

  /**
   * Moves the model (parameters, buffers, SGD momentum) to `device`: 'cpu', 'cuda' or 'cuda:N'.
   * ERR_DEVICE when this build or machine has no such device; bf16 precision on the CPU needs AVX512-BF16 or AMX.
   */
  to(device: DeviceName): Promise<void> {
    const target = checkDevice('device', device);
    // bf16 on a CPU without bf16 instructions is refused natively (ERR_INVALID_ARG) when the move runs.
    return this.#enqueue(() => this.#model.to(target));
  }

  /** Precision ('fp32' | 'bf16'; bf16 on the CPU needs AVX512-BF16 or AMX), channels-last inputs, cuDNN benchmark mode and the fused inference graph for later calls. */
  setRuntime(options: RuntimeOptions): void {
    if (!options || typeof options !== 'object') throw invalid('options', 'an object', options);
    for (const key of Object.keys(options)) {
      if (!['precision', 'channelsLast', 'cudnnBenchmark', 'fuse'].includes(key)) {
        throw new SegtoolError('ERR_INVALID_ARG', `Unknown runtime option "${key}" (expected one of precision, channelsLast, cudnnBenchmark, fuse)`);
      }
    }
    const model = this.#idle();
    const info = model.info();
    const merged = { precision: info.precision, channelsLast: info.channelsLast, cudnnBenchmark: info.cudnnBenchmark, fuse: info.fuse, ...options };
    model.setRuntime(checkRuntime('options', merged, info.device as DeviceName));
  }

  /** The communicator attached by setCommunicator, or null. */
  get communicator(): Communicator | null {
    return this.#communicator;
  }

  /**
   * Distributed training, one process per rank (like DistributedDataParallel + SyncBatchNorm):
   * attaches `communicator` and copies rank 0's parameters and buffers to every rank, so all
   * start identical — a collective: every rank calls it. From then on `trainStep` averages the
   * gradients over ranks (bucketed all-reduce) before the SGD update and reports the loss and
   * accuracy averaged over ranks (the reference's mean over its GPUs), so every rank's weights
   * stay identical. `syncBatchNorm` (default 'exact'): training-mode BatchNorm normalises with
   * the statistics of every rank's batch, equal to BatchNorm over the concatenated batch;
   * 'reference' uses the reference's formula and keeps its `_tmp_running_*` buffers; false
   * keeps per-rank statistics. Training calls are collectives too: every rank makes the same
   * ones in the same order (they are queued with the communicator's other calls from this
   * process). A communicator with a world of one and 'exact' is plain BatchNorm. null detaches
   * (the communicator is not destroyed); null with an explicit syncBatchNorm runs the SyncBN op
   * in this process alone (the reference's formula, or the op's own arithmetic to compare a
   * distributed run with).
   */
  setCommunicator(communicator: Communicator | null, options: { syncBatchNorm?: 'exact' | 'reference' | false } = {}): Promise<void> {
    if (communicator !== null && !(communicator instanceof Communicator)) throw invalid('communicator', 'a Communicator or null', communicator);
    if (communicator?.destroyed) throw new SegtoolError('ERR_DISPOSED', 'The communicator given to setCommunicator was destroyed');
    if (!options || typeof options !== 'object') throw invalid('options', 'an object', options);
    const syncBatchNorm =
      options.syncBatchNorm === undefined
        ? communicator
          ? 'exact'
          : false
        : options.syncBatchNorm === false
          ? false
          : expectOneOf('options.syncBatchNorm', options.syncBatchNorm, ['exact', 'reference'] as const);
    return this.#enqueue(async () => {
      if (communicator) {
        await communicator.enqueue((handle) => this.#model.setCommunicator(handle, { syncBatchNorm }));
      } else {
        await this.#model.setCommunicator(null, { syncBatchNorm });
      }
      this.#communicator = communicator;
    });
  }

  /** Runs a call that may talk to the other ranks in the attached communicator's order. */
  #collective<T>(call: () => Promise<T>): Promise<T> {
    const communicator = this.#communicator;
    return communicator ? communicator.enqueue(() => call()) : call();
  }

  get disposed(): boolean {
    return this.#model.disposed;
  }

  /** Frees the model's memory. ERR_BUSY while calls are in flight. */
  dispose(): void {
    if (this.#model.disposed) return;
    this.#idle();
    this.#model.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** The encoder and decoder names the native library builds, and each encoder's default fcDim. */
export function architectures(): { encoders: string[]; decoders: string[]; defaultFcDim: Record<string, number> } {
  return native().architectures();
}
