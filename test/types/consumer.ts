// ESM consumer: what a TypeScript user of segtool writes. Must compile; every @ts-expect-error
// line must be an error (tsc reports an unused one).
import {
  Segmenter,
  SegtoolError,
  isSegtoolError,
  liveTensorCount,
  type ClassSummary,
  type RawPixels,
  type SegmentationResult,
  type SegmenterOptions,
  type SegmentOutput,
} from 'segtool';

const options: SegmenterOptions = {
  config: 'mobilenetv2dilated-c1_deepsup',
  weights: ['ckpt/encoder_epoch_20.pth', 'ckpt/decoder_epoch_20.pth'],
  device: 'cpu',
  threads: 2,
  concurrency: 1,
  maxQueue: 16,
  maxPixels: 20_000_000,
};
const segmenter: Segmenter = await Segmenter.load(options);
await Segmenter.load({ config: { MODEL: { arch_encoder: 'resnet18dilated', arch_decoder: 'ppm_deepsup', fc_dim: 512 } }, weights: 'model.safetensors' });
// Custom classes: a class list file, or names and RGB colours; the Segmenter tells what it uses.
await Segmenter.load({ config: 'mobilenetv2dilated-c1_deepsup', classInfo: 'classes.yaml' });
await Segmenter.load({ config: 'mobilenetv2dilated-c1_deepsup', classInfo: { names: ['road', 'kerb'], palette: [128, 64, 128, 0, 0, 255] } });
// @ts-expect-error a palette is RGB bytes, not colour strings
await Segmenter.load({ config: 'mobilenetv2dilated-c1_deepsup', classInfo: { names: ['road'], palette: ['#ff0000'] } });
const classNames: readonly string[] = segmenter.classNames;
const classPalette: Uint8Array = segmenter.classInfo.palette;

// Default outputs: labels + summary.
const plain = await segmenter.segment('photo.jpg');
const labels: Int32Array = plain.labels;
const confidence: Float32Array = plain.confidence;
const classes: ClassSummary[] = plain.classes;
const first: { classIndex: number; name: string; ratio: number; pixels: number } | undefined = classes[0];
console.log(classNames.length, classPalette.length);
const size: number = plain.width * plain.height + plain.timings.totalMs + plain.scales.length;
// @ts-expect-error png was not asked for
plain.png.length;

// Asked-for outputs are present and typed.
const controller = new AbortController();
const picked = await segmenter.segment(Buffer.from([]), { outputs: ['png', 'probabilities'], scales: [300, 450], flip: true, signal: controller.signal });
const png: Buffer = picked.png;
const probabilities: Float32Array = picked.probabilities;
// @ts-expect-error labels were not asked for
picked.labels.length;

const pixels: RawPixels = { data: new Uint8Array(12), width: 2, height: 2, channels: 3 };
const fromRaw: SegmentationResult<'summary'> = await segmenter.segment(pixels, { outputs: ['summary'] });
await segmenter.segment(new Uint8Array(10).buffer);
const dynamic: SegmentOutput[] = ['labels'];
const loose = await segmenter.segment('x.png', { outputs: dynamic });
const maybeLabels: Int32Array | undefined = loose.labels;
// @ts-expect-error a list known only at run time: the fields may be missing
const surelyLabels: Int32Array = loose.labels;
console.log(loose.width, maybeLabels, surelyLabels);

// @ts-expect-error an unknown output
await segmenter.segment('x.png', { outputs: ['mask'] });
// @ts-expect-error a misspelt option
await Segmenter.load({ config: 'resnet50dilated-ppm_deepsup', concurency: 2 });
// @ts-expect-error a device is 'cpu', 'cuda' or 'cuda:N'
await Segmenter.load({ config: 'resnet50dilated-ppm_deepsup', device: 'gpu' });
await Segmenter.load({ config: 'resnet50dilated-ppm_deepsup', device: 'cuda:1' });
// @ts-expect-error raw pixels need a width
await segmenter.segment({ data: new Uint8Array(3), height: 1 });
// @ts-expect-error scales are numbers
await segmenter.segment('x.png', { scales: ['300'] });

try {
  await segmenter.segment('x.png');
} catch (error) {
  if (isSegtoolError(error, 'ERR_BUSY')) console.log('503', error.message);
  if (error instanceof SegtoolError && error.code === 'ERR_BAD_IMAGE') console.log('400');
}
console.log(labels, confidence, first, size, png, probabilities, fromRaw.classes, liveTensorCount(), segmenter.stats.queued);
await segmenter.close();
