/**
 * Multi-scale inference as the reference's eval.py / test.py: the image at every imgSizes scale
 * through the model, each scale's class probabilities resized back to the original size
 * (bilinear) and averaged, then the most probable class per pixel.
 */
import { SegtoolError } from '../errors.js';
import type { SegmentationModel, TensorLike } from '../model.js';
import { expectInteger, invalid } from '../validate.js';

export interface MultiScaleOptions {
  /** Also average each scale mirrored left-right (test-time augmentation; not in the reference). */
  flip?: boolean;
  /** Keep the averaged probabilities of every class (one [numClass, height, width] buffer). */
  probabilities?: boolean;
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
}

/**
 * Averages the model's probabilities over `inputs` (one [1, 3, h, w] input per scale) at
 * `height` x `width` and takes the most probable class, natively and row by row
 * (SegmentationModel.predictClasses): only with `probabilities` does a full-size
 * [numClass, height, width] buffer exist.
 */
export async function predictMultiScale(
  model: SegmentationModel,
  inputs: readonly TensorLike[],
  height: number,
  width: number,
  options: MultiScaleOptions = {},
): Promise<MultiScaleOutput> {
  if (!Array.isArray(inputs) || inputs.length === 0) throw invalid('inputs', 'a non-empty array of [1, 3, H, W] inputs', inputs);
  expectInteger('height', height, 1);
  expectInteger('width', width, 1);
  for (const input of inputs) {
    if (input.shape[0] !== 1) {
      throw new SegtoolError('ERR_INVALID_ARG', `Expected one image per input ([1, 3, H, W]) but received [${input.shape.join(', ')}]`);
    }
  }
  const out = await model.predictClasses(inputs, {
    segSize: [height, width],
    flip: options.flip ?? false,
    confidence: true,
    probabilities: options.probabilities ?? false,
  });
  try {
    // Copies out of the native buffers, which are released right away rather than at GC.
    return {
      numClass: model.numClass,
      width,
      height,
      labels: out.labels.data<'int32'>().slice(),
      confidence: out.confidence!.data<'float32'>().slice(),
      ...(out.probabilities ? { probabilities: out.probabilities.data<'float32'>().slice() } : {}),
    };
  } finally {
    out.labels.dispose();
    out.confidence?.dispose();
    out.probabilities?.dispose();
  }
}

export interface ClassMap {
  /** Most probable class per pixel (the first one on ties, as torch.max). */
  labels: Int32Array;
  /** Its probability. */
  confidence: Float32Array;
}

/** Per-pixel argmax over classes of [numClass, pixels] probabilities. */
export function argmaxClasses(probabilities: Float32Array, numClass: number): ClassMap {
  expectInteger('numClass', numClass, 1);
  if (!(probabilities instanceof Float32Array) || probabilities.length % numClass !== 0) {
    throw invalid('probabilities', `a Float32Array of numClass (${numClass}) x pixels values`, probabilities);
  }
  const pixels = probabilities.length / numClass;
  const labels = new Int32Array(pixels);
  const confidence = probabilities.slice(0, pixels);
  for (let c = 1; c < numClass; c++) {
    const plane = probabilities.subarray(c * pixels, (c + 1) * pixels);
    for (let i = 0; i < pixels; i++) {
      if (plane[i]! > confidence[i]!) {
        confidence[i] = plane[i]!;
        labels[i] = c;
      }
    }
  }
  return { labels, confidence };
}
