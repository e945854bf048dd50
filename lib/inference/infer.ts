/**
 * The infer and outputs stages of inference: the image at every scale through the model on the
 * compute thread (each scale's probabilities upsampled to the image size, averaged, argmax, as
 * the reference's multi-scale testing), cancellable between scales and output rows; then what a
 * caller asked for, built without copying or looping over pixels on the main thread: labels,
 * confidence and probabilities are views of the native results, class coverage comes from
 * native per-class counts, and the colour PNG is coloured natively and encoded by sharp.
 */
import type { ClassInfo } from '../classes.js';
import { defaultClassName } from '../classes.js';
import { encodePng } from '../eval/png.js';
import { SegtoolError } from '../errors.js';
import { checkSlideWindow, type SegmentationModel, type SlideWindow, type TensorLike } from '../model.js';
import { loadNative, type NativeCancelToken } from '../native.js';
import { Tensor } from '../tensor.js';
import { expectInteger, expectOneOf, invalid } from '../validate.js';

/** How an image goes through the network: whole (resized to each scale) or by sliding window at its own size. */
export const INFER_MODES = ['whole', 'slide'] as const;
export type InferMode = (typeof INFER_MODES)[number];

/** The mode options of a request (mmsegmentation's test_cfg: mode, crop_size, stride). */
export interface InferModeOptions {
  /**
   * 'whole' (default): the image at each scale through the network at once. 'slide': at its
   * own size, `crop` x `crop` pixels at a time every `stride` (mmsegmentation's slide mode),
   * the crops' logits averaged where they overlap: memory bounded by the crop, for images far
   * larger than the training scale.
   */
  mode?: InferMode;
  /** mode 'slide': crop size, one side or [height, width], a multiple of the model's output stride. */
  crop?: number | readonly [number, number];
  /** mode 'slide': step between crops (a multiple of the output stride, at most the crop); default two thirds of the crop. */
  stride?: number | readonly [number, number];
}

/**
 * The sliding window a request asks for (undefined: mode 'whole'), checked against the model:
 * crop and stride only with mode 'slide', crop required there. `prefix` names the options in
 * messages ('options').
 */
export function resolveInferMode(prefix: string, options: InferModeOptions, outputStride: number): SlideWindow | undefined {
  const mode = options.mode === undefined ? 'whole' : expectOneOf(`${prefix}.mode`, options.mode, INFER_MODES);
  if (mode === 'whole') {
    for (const key of ['crop', 'stride'] as const) {
      if (options[key] !== undefined) throw invalid(`${prefix}.${key}`, `no ${key} with mode 'whole' (it applies to mode 'slide')`, options[key]);
    }
    return undefined;
  }
  if (options.crop === undefined) throw invalid(`${prefix}.crop`, "a crop size with mode 'slide' (one side or [height, width], e.g. 512)", options.crop);
  return checkSlideWindow(prefix, { crop: options.crop, ...(options.stride === undefined ? {} : { stride: options.stride }) }, outputStride);
}

export interface MultiScaleOptions extends InferModeOptions {
  /** Also average each scale mirrored left-right (test-time augmentation; not in the reference). */
  flip?: boolean;
  /** Keep the averaged probabilities of every class (one [numClass, height, width] buffer). */
  probabilities?: boolean;
  /** Count the pixels of each class (for coverage summaries). */
  counts?: boolean;
  /** Also colour the labels in these classes' palette (for the PNG), in the same native job. */
  colors?: ClassInfo;
  /** Stops the work between scales (crops) and output rows (ERR_ABORTED). */
  signal?: AbortSignal;
  /** Stops the work after this many milliseconds (ERR_ABORTED naming the limit); 0 or absent: no limit. */
  timeoutMs?: number;
  /** Mode 'slide': progress, called after each crop with the crops done and in all. */
  onTile?: (done: number, total: number) => void;
}

export interface MultiScaleOutput {
  numClass: number;
  width: number;
  height: number;
  /** Most probable class per pixel (the first one on ties, as torch.max), row-major. */
  labels: Int32Array;
  /** Its averaged probability. */
  confidence: Float32Array;
  /** Averaged class probabilities, [numClass, height, width] row-major, when asked for. */
  probabilities?: Float32Array;
  /** Pixels per class, when asked for. */
  counts?: BigInt64Array;
}

/** ERR_ABORTED for a fired signal: "The segmentation was aborted <stage>: <the signal's reason>". */
export function abortError(signal: AbortSignal, stage?: string): SegtoolError {
  const reason = signal.reason instanceof Error ? signal.reason.message : signal.reason === undefined ? '' : String(signal.reason);
  return new SegtoolError('ERR_ABORTED', `The segmentation was aborted${stage ? ` ${stage}` : ''}${reason ? `: ${reason}` : ''}`, { cause: signal.reason });
}

/** The native result of inferClasses; the caller disposes the tensors. */
export interface NativeClassPrediction {
  /** int32 [1, height, width]. */
  labels: Tensor;
  /** float32 [1, height, width]. */
  confidence: Tensor;
  /** float32 [1, numClass, height, width], when asked for. */
  probabilities?: Tensor;
  /** int64 [1, numClass], when asked for. */
  counts?: Tensor;
  /** uint8 [height, width, 3], when colours were asked for. */
  colors?: Tensor;
}

/**
 * Averages the model's probabilities over `inputs` (one [1, 3, h, w] input per scale) at
 * `height` x `width` and takes the most probable class, natively and row by row
 * (SegmentationModel.predictClasses): only with `probabilities` does a full-size
 * [numClass, height, width] buffer exist. With mode 'slide' the one input is the image at its
 * own size (height x width), run by sliding window (SegmentationModel.predictSliding). An
 * AbortSignal or a time limit stops the native work between scales (crops) and rows.
 */
export async function inferClasses(
  model: SegmentationModel,
  inputs: readonly TensorLike[],
  height: number,
  width: number,
  options: MultiScaleOptions = {},
): Promise<NativeClassPrediction> {
  if (!Array.isArray(inputs) || inputs.length === 0) throw invalid('inputs', 'a non-empty array of [1, 3, H, W] inputs', inputs);
  expectInteger('height', height, 1);
  expectInteger('width', width, 1);
  for (const input of inputs) {
    if (input.shape[0] !== 1) {
      throw new SegtoolError('ERR_INVALID_ARG', `Expected one image per input ([1, 3, H, W]) but received [${input.shape.join(', ')}]`);
    }
  }
  const slide = resolveInferMode('options', options, model.outputStride);
  if (slide && (inputs.length !== 1 || inputs[0]!.shape[2] !== height || inputs[0]!.shape[3] !== width)) {
    throw new SegtoolError(
      'ERR_INVALID_ARG',
      `Expected one input of the image's own size [1, 3, ${height}, ${width}] with mode 'slide' but received ${inputs.map((i) => `[${i.shape.join(', ')}]`).join(', ')}`,
    );
  }
  const timeoutMs = options.timeoutMs === undefined ? 0 : expectInteger('timeoutMs', options.timeoutMs, 0);
  const { signal } = options;
  if (signal?.aborted) throw abortError(signal);
  const addon = await loadNative();
  let cancel: NativeCancelToken | undefined;
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const onAbort = (): void => addon.cancelToken(cancel!);
  if (signal || timeoutMs > 0) {
    cancel = addon.createCancelToken();
    signal?.addEventListener('abort', onAbort, { once: true });
    if (timeoutMs > 0) {
      timer = setTimeout(() => {
        timedOut = true;
        addon.cancelToken(cancel!);
      }, timeoutMs);
    }
  }
  const palette = options.colors ? Tensor.from(Uint8Array.from(options.colors.palette), [options.colors.palette.length / 3, 3], 'uint8') : undefined;
  try {
    const flags = {
      flip: options.flip ?? false,
      confidence: true,
      probabilities: options.probabilities ?? false,
      counts: options.counts ?? false,
      ...(palette ? { palette } : {}),
      ...(cancel ? { cancel } : {}),
    };
    const out = slide
      ? await model.predictSliding(inputs[0]!, { ...slide, ...flags, ...(options.onTile ? { onTile: options.onTile } : {}) })
      : await model.predictClasses(inputs, { segSize: [height, width], ...flags });
    return { ...out, confidence: out.confidence! };
  } catch (error) {
    if (error instanceof SegtoolError && error.code === 'ERR_ABORTED') {
      const message = timedOut
        ? `The segmentation took longer than its time limit (${timeoutMs} ms) and was stopped`
        : signal?.aborted
          ? abortError(signal).message
          : error.message;
      throw new SegtoolError('ERR_ABORTED', message, { cause: error });
    }
    throw error;
  } finally {
    palette?.dispose();
    if (timer) clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

/** Views of a native prediction (each keeps its storage alive until collected); disposes the handles. */
export function predictionViews(out: NativeClassPrediction, numClass: number, height: number, width: number): MultiScaleOutput {
  try {
    return {
      numClass,
      width,
      height,
      labels: out.labels.data<'int32'>(),
      confidence: out.confidence.data<'float32'>(),
      ...(out.probabilities ? { probabilities: out.probabilities.data<'float32'>() } : {}),
      ...(out.counts ? { counts: out.counts.data<'int64'>() } : {}),
    };
  } finally {
    out.labels.dispose();
    out.confidence.dispose();
    out.probabilities?.dispose();
    out.counts?.dispose();
    out.colors?.dispose();
  }
}

/**
 * inferClasses, as typed arrays: views of native memory (nothing is copied on this thread),
 * freed when they are garbage-collected.
 */
export async function predictMultiScale(
  model: SegmentationModel,
  inputs: readonly TensorLike[],
  height: number,
  width: number,
  options: MultiScaleOptions = {},
): Promise<MultiScaleOutput> {
  return predictionViews(await inferClasses(model, inputs, height, width, options), model.numClass, height, width);
}

/** A class found in an image. */
export interface ClassCoverage {
  classIndex: number;
  name: string;
  pixels: number;
  /** Fraction of the image. */
  ratio: number;
}

/**
 * Classes covering more than `minRatio` of the image, by decreasing area, from per-class pixel
 * counts (index = class). `total`: the image's pixels (default the sum of the counts).
 */
export function coverageFromCounts(
  counts: ArrayLike<number | bigint>,
  names: readonly string[],
  minRatio: number,
  total?: number,
): ClassCoverage[] {
  let sum = 0;
  for (let c = 0; c < counts.length; c++) sum += Number(counts[c]!);
  const all = total ?? sum;
  const out: ClassCoverage[] = [];
  for (let classIndex = 0; classIndex < counts.length; classIndex++) {
    const pixels = Number(counts[classIndex]!);
    if (pixels === 0 || pixels / all <= minRatio) continue;
    out.push({ classIndex, name: names[classIndex] ?? defaultClassName(classIndex), pixels, ratio: pixels / all });
  }
  return out.sort((a, b) => b.pixels - a.pixels || a.classIndex - b.classIndex);
}

/** An RGB PNG of uint8 [H, W, 3] colours (inferClasses' `colors`), by the one PNG encoder (off the main thread). */
export async function encodePngOfColors(colors: Tensor): Promise<Buffer> {
  const [height, width, channels] = colors.shape as [number, number, number];
  if (colors.shape.length !== 3 || channels !== 3 || colors.dtype !== 'uint8') throw invalid('colors', 'a uint8 [H, W, 3] tensor', colors.shape);
  return encodePng(colors.data<'uint8'>(), width, height, { channels: 3 });
}
