/**
 * Every config key segtool knows: its type, default and meaning. The reference's keys and
 * defaults are those of CSAILVision/semantic-segmentation-pytorch `mit_semseg/config/defaults.py`
 * (so a user of the reference can bring their YAML files); keys marked `segtool: true` are
 * segtool's additions and are listed last in each section.
 */
import {
  DECODER_NAMES,
  ENCODER_NAMES,
  LABEL_PADDINGS,
  NORMALIZATIONS,
  OPTIMIZERS,
  RESIZE_METHODS,
  type DecoderName,
  type EncoderName,
  type LabelPadding,
  type Normalization,
  type OptimizerName,
  type ResizeMethod,
} from './names.js';

export interface DatasetConfig {
  root_dataset: string;
  list_train: string;
  list_val: string;
  num_class: number;
  /** Short sides for multi-scale training (one picked per batch) and testing (all averaged). */
  imgSizes: number[];
  imgMaxSize: number;
  padding_constant: number;
  segm_downsampling_rate: number;
  /** Reference: a bool it never read. segtool: `true` = 0.5, `false` = 0, or a probability. */
  random_flip: boolean | number;
  /** segtool: input normalisation preset. */
  normalization: Normalization;
  /** segtool: image resize filter, pil (antialiased, the reference) or opencv (the 2018 seed). */
  resize: ResizeMethod;
  /** segtool: class of the label canvas padding, -1 (`ignore`) or class 0 as the reference. */
  label_padding: LabelPadding;
  /** segtool: class names and colours (object150_info.csv layout, or YAML/JSON {name, color} list); '' = defaults. */
  class_info: string;
}

export interface ModelConfig {
  arch_encoder: EncoderName;
  arch_decoder: DecoderName;
  weights_encoder: string;
  weights_decoder: string;
  fc_dim: number;
  /** segtool: with weights_encoder empty, start the encoder from the reference's ImageNet checkpoint. */
  pretrained: boolean;
}

export interface TrainConfig {
  batch_size_per_gpu: number;
  num_epoch: number;
  start_epoch: number;
  epoch_iters: number;
  optim: OptimizerName;
  lr_encoder: number;
  lr_decoder: number;
  lr_pow: number;
  beta1: number;
  weight_decay: number;
  deep_sup_scale: number;
  fix_bn: boolean;
  workers: number;
  disp_iter: number;
  seed: number;
  /** segtool: BatchNorm running-statistics momentum (the reference hard-codes 0.001). */
  bn_momentum: number;
  /** segtool: write TensorBoard event files in DIR/tensorboard. */
  tensorboard: boolean;
  /** segtool: where and how the network runs (RuntimeConfig). */
  device: string;
  precision: Precision;
  channels_last: boolean;
  cudnn_benchmark: boolean;
}

export interface ValConfig {
  batch_size: number;
  visualize: boolean;
  checkpoint: string;
  device: string;
  precision: Precision;
  channels_last: boolean;
  cudnn_benchmark: boolean;
}

export interface TestConfig {
  batch_size: number;
  checkpoint: string;
  result: string;
  device: string;
  precision: Precision;
  channels_last: boolean;
  cudnn_benchmark: boolean;
}

/** segtool: the runtime keys every one of TRAIN, VAL and TEST has. */
export const PRECISIONS = ['fp32', 'bf16'] as const;
export type Precision = (typeof PRECISIONS)[number];
export interface RuntimeConfig {
  /** 'cpu', 'cuda' or 'cuda:N'. */
  device: string;
  /** 'fp32', or 'bf16' (CUDA, or a CPU with AVX512-BF16 or AMX: checked when the model is made). */
  precision: Precision;
  channels_last: boolean;
  cudnn_benchmark: boolean;
}

/** A complete, validated configuration. Key names are the reference's, hence the mixed case. */
export interface SegtoolConfig {
  DIR: string;
  DATASET: DatasetConfig;
  MODEL: ModelConfig;
  TRAIN: TrainConfig;
  VAL: ValConfig;
  TEST: TestConfig;
}

export const SECTION_NAMES = ['DATASET', 'MODEL', 'TRAIN', 'VAL', 'TEST'] as const;
export type SectionName = (typeof SECTION_NAMES)[number];

/** Dotted key as written in overrides: `DIR`, `TRAIN.lr_encoder`, ... */
export type ConfigKey = 'DIR' | { [S in SectionName]: `${S}.${keyof SegtoolConfig[S] & string}` }[SectionName];

/** The type of the value stored under a dotted key. */
export type ConfigValue<K extends ConfigKey> = K extends `${infer S}.${infer L}`
  ? S extends SectionName
    ? L extends keyof SegtoolConfig[S]
      ? SegtoolConfig[S][L]
      : never
    : never
  : string;

export type ValueKind =
  | { type: 'string'; allowEmpty: boolean }
  | { type: 'int'; min: number; max?: number }
  | { type: 'number'; min: number; max?: number; maxExclusive?: boolean }
  | { type: 'bool' }
  | { type: 'intList'; min: number; max?: number }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'flip' }
  | { type: 'device' };

export interface KeySpec<T> {
  readonly default: T;
  readonly kind: ValueKind;
  readonly doc: string;
  /** True for keys segtool adds; the reference (yacs) would reject them. */
  readonly segtool?: true;
  /** A complete config (validateConfig: a saved checkpoint's) may lack it: it was added later; its default applies. */
  readonly optional?: true;
}

const str = (allowEmpty = false): ValueKind => ({ type: 'string', allowEmpty });
const int = (min: number, max?: number): ValueKind => (max === undefined ? { type: 'int', min } : { type: 'int', min, max });
/** The largest image side, class count and worker count the data pipeline takes (lib/data/options.ts, lib/data/loader.ts). */
const MAX_SIDE = 16384;
const num = (min: number, max?: number, maxExclusive?: boolean): ValueKind => ({ type: 'number', min, max, maxExclusive });
const bool: ValueKind = { type: 'bool' };
const oneOf = (values: readonly string[]): ValueKind => ({ type: 'enum', values });
const device: ValueKind = { type: 'device' };
const RUNTIME_DOCS = {
  device: 'device to run on: cpu, cuda or cuda:N (CUDA needs a CUDA LibTorch build, docs/gpu.md)',
  precision: 'fp32, or bf16 (bfloat16 convolutions; CUDA, or a CPU with AVX512-BF16 or AMX)',
  channels_last: 'inputs and convolutions in channels-last memory format (CPU and CUDA)',
  cudnn_benchmark: 'cuDNN autotuning of convolutions (CUDA; pays off when input sizes repeat)',
};

/** In the reference's order (save writes keys in this order). */
export const CONFIG_SPECS: { readonly [K in ConfigKey]: KeySpec<ConfigValue<K>> } = {
  'DATASET.root_dataset': { default: './data/', kind: str(true), doc: 'folder the list files\' image paths are relative to' },
  'DATASET.list_train': { default: './data/training.odgt', kind: str(), doc: 'training list (odgt)' },
  'DATASET.list_val': { default: './data/validation.odgt', kind: str(), doc: 'validation list (odgt)' },
  'DATASET.num_class': { default: 150, kind: int(1, 65535), doc: 'number of classes' },
  'DATASET.imgSizes': { default: [300, 375, 450, 525, 600], kind: { type: 'intList', min: 1, max: MAX_SIDE }, doc: 'short sides: one random per training batch; all averaged when testing (int or list)' },
  'DATASET.imgMaxSize': { default: 1000, kind: int(1, MAX_SIDE), doc: 'maximum long side of an input image' },
  'DATASET.padding_constant': { default: 8, kind: int(1, 1024), doc: 'input sizes are padded to a multiple of this (the network\'s downsampling rate)' },
  'DATASET.segm_downsampling_rate': { default: 8, kind: int(1, 1024), doc: 'training labels are downsampled by this rate' },
  'DATASET.random_flip': { default: true, kind: { type: 'flip' }, doc: 'horizontal flip in training: true (p = 0.5), false, or a probability in [0, 1]' },
  'DATASET.normalization': { default: 'imagenet', kind: oneOf(NORMALIZATIONS), doc: 'input normalisation: imagenet (RGB/255, ImageNet mean/std) or legacy-bgr (BGR 0..255 minus mean, for older weights)', segtool: true },
  'DATASET.resize': { default: 'pil', kind: oneOf(RESIZE_METHODS), doc: 'image resize filter: pil (Pillow\'s antialiased bilinear, the reference) or opencv (cv2.resize INTER_LINEAR without antialiasing, the 2018 seed that the baseline-* weights were trained with)', segtool: true, optional: true },
  'DATASET.label_padding': { default: 'ignore', kind: oneOf(LABEL_PADDINGS), doc: 'training label canvas padding: ignore (-1) or reference (class 0, as the reference did)', segtool: true },
  'DATASET.class_info': { default: '', kind: str(true), doc: 'class names and colours: a CSV in object150_info.csv layout or a YAML/JSON list of {name, color} (empty: ADE20K\'s for 150 classes, class_N and generated colours otherwise; a checkpoint\'s own list when it has one)', segtool: true, optional: true },

  'MODEL.arch_encoder': { default: 'resnet50dilated', kind: oneOf(ENCODER_NAMES), doc: 'encoder architecture' },
  'MODEL.arch_decoder': { default: 'ppm_deepsup', kind: oneOf(DECODER_NAMES), doc: 'decoder architecture' },
  'MODEL.weights_encoder': { default: '', kind: str(true), doc: 'encoder weights to start from (empty: the ImageNet-pretrained encoder, see MODEL.pretrained)' },
  'MODEL.weights_decoder': { default: '', kind: str(true), doc: 'decoder weights to start from (empty: none)' },
  'MODEL.fc_dim': { default: 2048, kind: int(1), doc: 'channels between encoder and decoder (must equal the encoder\'s output channels)' },
  'MODEL.pretrained': { default: true, kind: bool, doc: 'training with MODEL.weights_encoder empty starts the encoder from the reference\'s ImageNet checkpoint (downloaded once into SEGTOOL_CACHE); false = random weights', segtool: true },

  'TRAIN.batch_size_per_gpu': { default: 2, kind: int(1), doc: 'images per device per iteration' },
  'TRAIN.num_epoch': { default: 20, kind: int(1), doc: 'epochs to train for' },
  'TRAIN.start_epoch': { default: 0, kind: int(0), doc: 'epoch to start from (loads DIR/*_epoch_N.pth when > 0)' },
  'TRAIN.epoch_iters': { default: 5000, kind: int(1), doc: 'iterations per epoch (independent of batch size)' },
  'TRAIN.optim': { default: 'SGD', kind: oneOf(OPTIMIZERS), doc: 'optimiser' },
  'TRAIN.lr_encoder': { default: 0.02, kind: num(0), doc: 'initial learning rate of the encoder' },
  'TRAIN.lr_decoder': { default: 0.02, kind: num(0), doc: 'initial learning rate of the decoder' },
  'TRAIN.lr_pow': { default: 0.9, kind: num(0), doc: 'power of the poly learning-rate schedule' },
  'TRAIN.beta1': { default: 0.9, kind: num(0, 1, true), doc: 'SGD momentum' },
  'TRAIN.weight_decay': { default: 1e-4, kind: num(0), doc: 'weight decay (conv and linear weights only)' },
  'TRAIN.deep_sup_scale': { default: 0.4, kind: num(0), doc: 'weight of the deep-supervision loss (*_deepsup decoders)' },
  'TRAIN.fix_bn': { default: false, kind: bool, doc: 'keep BatchNorm in eval mode (fine-tuning)' },
  'TRAIN.workers': { default: 16, kind: int(0, 64), doc: 'data loading worker threads' },
  'TRAIN.disp_iter': { default: 20, kind: int(1), doc: 'log every this many iterations' },
  'TRAIN.seed': { default: 304, kind: int(0), doc: 'random seed' },
  'TRAIN.bn_momentum': { default: 0.001, kind: num(0, 1), doc: 'BatchNorm running-statistics momentum (the reference hard-codes 0.001, and 0.1 in hrnetv2\'s encoder, which the default keeps; any other value applies everywhere; 0.1 suits short CPU runs)', segtool: true },
  'TRAIN.tensorboard': { default: false, kind: bool, doc: 'write TensorBoard event files (loss, accuracy, learning rates; val mIoU from segtool eval of epoch_N weights) in DIR/tensorboard', segtool: true, optional: true },
  'TRAIN.device': { default: 'cpu', kind: device, doc: `${RUNTIME_DOCS.device}; with --gpus each rank uses its own GPU`, segtool: true, optional: true },
  'TRAIN.precision': { default: 'fp32', kind: oneOf(PRECISIONS), doc: RUNTIME_DOCS.precision, segtool: true, optional: true },
  'TRAIN.channels_last': { default: false, kind: bool, doc: RUNTIME_DOCS.channels_last, segtool: true, optional: true },
  'TRAIN.cudnn_benchmark': { default: false, kind: bool, doc: RUNTIME_DOCS.cudnn_benchmark, segtool: true, optional: true },

  'VAL.batch_size': { default: 1, kind: int(1), doc: 'validation batch size' },
  'VAL.visualize': { default: false, kind: bool, doc: 'write image | ground truth | prediction panels to DIR/result' },
  'VAL.checkpoint': { default: 'epoch_20.pth', kind: str(), doc: 'checkpoint suffix to evaluate (DIR/encoder_<checkpoint>, DIR/decoder_<checkpoint>)' },
  'VAL.device': { default: 'cpu', kind: device, doc: RUNTIME_DOCS.device, segtool: true, optional: true },
  'VAL.precision': { default: 'fp32', kind: oneOf(PRECISIONS), doc: RUNTIME_DOCS.precision, segtool: true, optional: true },
  'VAL.channels_last': { default: false, kind: bool, doc: RUNTIME_DOCS.channels_last, segtool: true, optional: true },
  'VAL.cudnn_benchmark': { default: false, kind: bool, doc: RUNTIME_DOCS.cudnn_benchmark, segtool: true, optional: true },

  'TEST.batch_size': { default: 1, kind: int(1), doc: 'test batch size' },
  'TEST.checkpoint': { default: 'epoch_20.pth', kind: str(), doc: 'checkpoint suffix to test with' },
  'TEST.result': { default: './', kind: str(), doc: 'folder for test outputs' },
  'TEST.device': { default: 'cpu', kind: device, doc: RUNTIME_DOCS.device, segtool: true, optional: true },
  'TEST.precision': { default: 'fp32', kind: oneOf(PRECISIONS), doc: RUNTIME_DOCS.precision, segtool: true, optional: true },
  'TEST.channels_last': { default: false, kind: bool, doc: RUNTIME_DOCS.channels_last, segtool: true, optional: true },
  'TEST.cudnn_benchmark': { default: false, kind: bool, doc: RUNTIME_DOCS.cudnn_benchmark, segtool: true, optional: true },

  DIR: { default: 'ckpt/ade20k-resnet50dilated-ppm_deepsup', kind: str(), doc: 'folder for checkpoints, logs and config.yaml' },
};

export const CONFIG_KEYS = Object.freeze(Object.keys(CONFIG_SPECS) as ConfigKey[]);

export function isConfigKey(key: string): key is ConfigKey {
  return Object.prototype.hasOwnProperty.call(CONFIG_SPECS, key);
}
