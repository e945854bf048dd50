/**
 * Architecture names accepted in `MODEL.arch_encoder` / `MODEL.arch_decoder` (DESIGN.md "Names"),
 * and the channel count each encoder hands the decoder, so a config whose `MODEL.fc_dim` cannot
 * build a model is rejected when it is loaded rather than deep inside the native model.
 */

/** Encoders of the reference, then the seed's names (kept so old configs and checkpoints load). */
export const ENCODER_NAMES = [
  'mobilenetv2dilated',
  'resnet18',
  'resnet18dilated',
  'resnet50',
  'resnet50dilated',
  'resnet101',
  'resnet101dilated',
  'resnext101',
  'hrnetv2',
  'resnet50_dilated8',
  'resnet50_dilated16',
  'resnet101_dilated8',
  'resnet101_dilated16',
  'resnext101_dilated8',
  'resnext101_dilated16',
  // Output-stride-16 and dilated ResNeXt spelled as the canonical names are.
  'resnet50dilated16',
  'resnet101dilated16',
  'resnext101dilated',
  'resnext101dilated16',
] as const;
export type EncoderName = (typeof ENCODER_NAMES)[number];

/** Decoders of the reference, then the seed's names. */
export const DECODER_NAMES = [
  'c1',
  'c1_deepsup',
  'ppm',
  'ppm_deepsup',
  'upernet_lite',
  'upernet',
  'c1_bilinear',
  'c1_bilinear_deepsup',
  'ppm_bilinear',
  'ppm_bilinear_deepsup',
] as const;
export type DecoderName = (typeof DECODER_NAMES)[number];

/** Channels of the encoder's last feature map = the `MODEL.fc_dim` the decoder must be built with. */
export const ENCODER_CHANNELS: Readonly<Record<EncoderName, number>> = Object.freeze({
  mobilenetv2dilated: 320,
  resnet18: 512,
  resnet18dilated: 512,
  resnet50: 2048,
  resnet50dilated: 2048,
  resnet101: 2048,
  resnet101dilated: 2048,
  resnext101: 2048,
  hrnetv2: 720, // 48 + 96 + 192 + 384, the four branches concatenated
  resnet50_dilated8: 2048,
  resnet50_dilated16: 2048,
  resnet101_dilated8: 2048,
  resnet101_dilated16: 2048,
  resnext101_dilated8: 2048,
  resnext101_dilated16: 2048,
  resnet50dilated16: 2048,
  resnet101dilated16: 2048,
  resnext101dilated: 2048,
  resnext101dilated16: 2048,
});

/** The seed's spellings: the same network as the canonical name (DESIGN.md "Names"). */
export const ARCHITECTURE_ALIASES: Readonly<Partial<Record<EncoderName | DecoderName, EncoderName | DecoderName>>> = Object.freeze({
  resnet50_dilated8: 'resnet50dilated',
  resnet50_dilated16: 'resnet50dilated16',
  resnet101_dilated8: 'resnet101dilated',
  resnet101_dilated16: 'resnet101dilated16',
  resnext101_dilated8: 'resnext101dilated',
  resnext101_dilated16: 'resnext101dilated16',
  c1_bilinear: 'c1',
  c1_bilinear_deepsup: 'c1_deepsup',
  ppm_bilinear: 'ppm',
  ppm_bilinear_deepsup: 'ppm_deepsup',
});

/** True for decoders with a deep-supervision head (trained with `TRAIN.deep_sup_scale`). */
export function hasDeepSupervision(decoder: DecoderName): boolean {
  return decoder.endsWith('_deepsup');
}

/** Normalisation presets for `DATASET.normalization` (implemented by lib/data). */
export const NORMALIZATIONS = ['imagenet', 'legacy-bgr'] as const;
export type Normalization = (typeof NORMALIZATIONS)[number];

/**
 * Resize filters for `DATASET.resize` (implemented by lib/data/resize.ts): pil = Pillow's
 * antialiased bilinear (the reference since 2019), opencv = OpenCV's cv2.resize INTER_LINEAR,
 * no antialiasing (the 2018 seed, which the `baseline-*` weights were trained with).
 */
export const RESIZE_METHODS = ['pil', 'opencv'] as const;
export type ResizeMethod = (typeof RESIZE_METHODS)[number];

/** Label padding policies for `DATASET.label_padding` (implemented by lib/data). */
export const LABEL_PADDINGS = ['ignore', 'reference'] as const;
export type LabelPadding = (typeof LABEL_PADDINGS)[number];

/** Optimisers for `TRAIN.optim`; the reference builds SGD whatever the key says. */
export const OPTIMIZERS = ['SGD'] as const;
export type OptimizerName = (typeof OPTIMIZERS)[number];
