/**
 * The reference's ImageNet-pretrained encoder checkpoints: which file each encoder starts from
 * and how strictly it maps. Dilated and plain variants share one file (dilation changes strides
 * and padding, not keys); the classifier head (fc.*, classifier.*) is dropped and, for
 * MobileNetV2, the last feature block (features.18), which the reference's MobileNetV2Dilated
 * cuts off. The reference loads ResNet files strictly and the others with strict=False.
 */
import type { EncoderName } from './config/names.js';

export interface ImagenetCheckpoint {
  /** The architecture's short name: `segtool download imagenet-<name>`. */
  name: 'resnet18' | 'resnet50' | 'resnet101' | 'resnext101' | 'mobilenetv2' | 'hrnetv2';
  /** File name under model/pretrained_resnet/. */
  file: string;
  /** Every tensor of the encoder must come from the file and every file tensor but the head be used. */
  strict: boolean;
}

/** Where the files live below the download host (the reference's URL). */
export const IMAGENET_REMOTE_FOLDER = 'model/pretrained_resnet/';

export const IMAGENET_CHECKPOINTS: readonly ImagenetCheckpoint[] = Object.freeze([
  { name: 'resnet18', file: 'resnet18-imagenet.pth', strict: true },
  { name: 'resnet50', file: 'resnet50-imagenet.pth', strict: true },
  { name: 'resnet101', file: 'resnet101-imagenet.pth', strict: true },
  { name: 'resnext101', file: 'resnext101-imagenet.pth', strict: false },
  { name: 'mobilenetv2', file: 'mobilenet_v2.pth.tar', strict: false },
  { name: 'hrnetv2', file: 'hrnetv2_w48-imagenet.pth', strict: false },
]);

/** The ImageNet checkpoint an encoder starts from (every segtool encoder has one). */
export function imagenetCheckpointFor(encoder: EncoderName): ImagenetCheckpoint {
  const name = encoder.startsWith('mobilenetv2')
    ? 'mobilenetv2'
    : encoder.startsWith('hrnetv2')
      ? 'hrnetv2'
      : /^(resnet18|resnet50|resnet101|resnext101)/.exec(encoder)?.[1];
  const found = IMAGENET_CHECKPOINTS.find((c) => c.name === name);
  if (!found) throw new Error(`no ImageNet checkpoint known for encoder ${encoder}`); // unreachable: ENCODER_NAMES are all covered (tested)
  return found;
}

/** The encoder a checkpoint is checked against (the plain variant: same keys as the dilated one). */
export function imagenetCheckEncoder(checkpoint: ImagenetCheckpoint): EncoderName {
  return checkpoint.name === 'mobilenetv2' ? 'mobilenetv2dilated' : checkpoint.name;
}

/** Keys of an ImageNet file the reference never maps into its encoder (besides the head). */
export const IMAGENET_DROPPED = /^(fc\.|classifier\.|features\.18\.)/;
