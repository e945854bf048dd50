/**
 * `segtool test --imgs PATH ... [KEY VALUE ...]`: the reference's test.py for files and folders
 * (searched recursively, every image type). Per image, under TEST.result (or --result):
 * NAME.png = image | prediction, NAME_label.png = class index + 1 (ADE20K annotation values),
 * with --confidence NAME_confidence.png (probability of the chosen class x 255) and with
 * --probabilities NAME_prob.safetensors (float32 [numClass, H, W]). With --slide CROP[,STRIDE]
 * each image runs at its own size by sliding window (SegmentOptions mode 'slide').
 */
import { Command, InvalidArgumentError } from 'commander';
import { mkdir } from 'node:fs/promises';
import { writeFileAtomic } from '../io/files.js';
import { dirname, extname, join, relative, resolve } from 'node:path';
import { SegtoolError } from '../errors.js';
import { defaultClassInfo } from '../classes.js';
import { encodePng } from '../eval/png.js';
import { encodeLabelPng, visualizationPanel } from '../eval/visualize.js';
import { addLegend } from '../eval/legend.js';
import { modelClassInfo } from '../eval/weights.js';
import { saveSafetensors } from '../io/safetensors.js';
import { findImages, loadModel, segmentFiles, segmentOptionsFromConfig, type SegmentResult } from '../segment.js';
import { setNumThreads, Tensor } from '../tensor.js';
import { DEFAULT_CONFIG, parseCount, splitTrailingOverrides, withConfigOptions, withPrecisionOption, runtimeFlagOverrides } from './common.js';
import { ProgressBar } from './progress.js';
import { resolveCommandConfig, withSeedFlags } from './seed.js';

interface TestCommandOptions {
  imgs?: string[];
  cfg?: string;
  checkpoint?: string;
  result?: string;
  probabilities?: boolean;
  confidence?: boolean;
  workers?: number;
  threads?: number;
  skipBad?: boolean;
  gpu?: number;
  precision?: string;
  legend?: boolean;
  slide?: { crop: number; stride?: number };
}

/** --slide CROP[,STRIDE]: positive integers (multiples of the model's output stride, checked with the model). */
export function parseSlide(text: string): { crop: number; stride?: number } {
  const parts = text.split(',');
  const values = parts.map((p) => Number(p.trim()));
  if (parts.length > 2 || values.some((v) => !Number.isInteger(v) || v < 1)) {
    throw new InvalidArgumentError('--slide must be CROP or CROP,STRIDE in pixels (e.g. 512 or 512,336)');
  }
  return { crop: values[0]!, ...(values.length === 2 ? { stride: values[1]! } : {}) };
}

export interface WrittenFiles {
  panel: string;
  label: string;
  confidence?: string;
  probabilities?: string;
}

/**
 * Writes what `segtool test` writes for one result; `stem` is the output path without
 * extension; `palette` colours the prediction (default ADE20K's); `legend` (default true) puts
 * the names and colours of the classes found (result.classes) under the panel.
 */
export async function writeTestOutputs(
  result: SegmentResult,
  stem: string,
  options: { confidence?: boolean; probabilities?: boolean; palette?: Uint8Array; legend?: boolean },
): Promise<WrittenFiles> {
  await mkdir(dirname(stem), { recursive: true });
  const { width, height } = result;
  let panel = visualizationPanel({ image: { data: result.image.data, width, height, channels: 3 }, pred: result.labels, palette: options.palette });
  if (options.legend ?? true) {
    const palette = options.palette ?? defaultClassInfo(result.numClass).palette;
    panel = await addLegend(
      panel,
      result.classes.map((c) => ({ index: c.classIndex, name: c.name, color: [palette[3 * c.classIndex] ?? 0, palette[3 * c.classIndex + 1] ?? 0, palette[3 * c.classIndex + 2] ?? 0] as const })),
    );
  }
  const files: WrittenFiles = { panel: `${stem}.png`, label: `${stem}_label.png` };
  await writeFileAtomic(files.panel, await encodePng(panel.data, panel.width, panel.height));
  await writeFileAtomic(files.label, await encodeLabelPng(result.labels, width, height));
  if (options.confidence) {
    const gray = new Uint8Array(width * height);
    for (let i = 0; i < gray.length; i++) gray[i] = Math.round(result.confidence[i]! * 255);
    files.confidence = `${stem}_confidence.png`;
    await writeFileAtomic(files.confidence, await encodePng(gray, width, height, { channels: 1 }));
  }
  if (options.probabilities) {
    const tensor = Tensor.from(result.probabilities!, [result.numClass, height, width]);
    try {
      files.probabilities = `${stem}_prob.safetensors`;
      await saveSafetensors(files.probabilities, { probabilities: tensor }, { layout: 'numClass,height,width', source: result.path ?? '' });
    } finally {
      tensor.dispose();
    }
  }
  return files;
}

export function testCommand(): Command {
  return withSeedFlags(withConfigOptions(withPrecisionOption(
    new Command('test')
      .description('segment images (files or folders, searched recursively) and write panels, label maps and optional probability maps')
      .option('--imgs <paths...>', 'image files or folders')
      .option('--checkpoint <weights>', 'weights: a suffix in DIR (epoch_20.pth), a file, or a folder (default TEST.checkpoint)')
      .option('--result <dir>', 'output folder (default TEST.result)')
      .option('--confidence', 'also write NAME_confidence.png (probability of the predicted class)')
      .option('--probabilities', 'also write NAME_prob.safetensors with every class probability (float32, large)')
      .option('--workers <n>', 'decoding threads (default 1)', parseCount('--workers', 0, 64))
      .option('--skip-bad', 'skip images that cannot be decoded instead of stopping')
      .option('--no-legend', 'panels without the legend of the classes found')
      .option(
        '--slide <crop[,stride]>',
        'sliding window: each image at its own size, CROP x CROP pixels every STRIDE (default 2/3 of CROP), for images far larger than DATASET.imgSizes',
        parseSlide,
      )
      .option('--gpu <n>', 'run on CUDA device n (= TEST.device cuda:n; needs a CUDA build, docs/gpu.md)', parseCount('--gpu')),
    'TEST',
  )), 'test').action(async (trailing: string[], options: TestCommandOptions) => {
    const split = splitTrailingOverrides(options.imgs ?? []);
    const runtimeFlags = runtimeFlagOverrides('TEST', options);
    const { cfg, plan } = await resolveCommandConfig('test', options as Record<string, unknown>, [...split.overrides, ...trailing], DEFAULT_CONFIG, runtimeFlags);
    const inputs = [...split.values, ...(plan.testImage !== undefined ? [plan.testImage] : [])];
    if (inputs.length === 0) {
      throw new SegtoolError('ERR_INVALID_ARG', 'Expected --imgs with at least one image file or folder (or the seed\'s --test_img)');
    }
    const images = (await findImages(inputs)).slice(0, plan.numVal);
    const outDir = resolve(options.result ?? cfg.TEST.result);
    const stemOf = (name: string): string => join(outDir, name.slice(0, name.length - extname(name).length));
    const clash = images.find((img) => resolve(`${stemOf(img.name)}.png`) === img.path);
    if (clash) {
      throw new SegtoolError('ERR_INVALID_ARG', `Writing results into ${outDir} would overwrite the input ${clash.path}; choose another folder with --result`);
    }
    if (options.threads !== undefined) setNumThreads(options.threads);
    const model = await loadModel(cfg, options.checkpoint !== undefined ? { checkpoint: options.checkpoint } : {});
    // Names (in the summaries, through segmentFiles) and colours: DATASET.class_info, else the checkpoint's, else the defaults.
    const { palette } = modelClassInfo(model) ?? defaultClassInfo(cfg.DATASET.num_class);
    const bar = new ProgressBar();
    const nameOf = new Map(images.map((img) => [img.path, img.name]));
    let done = 0;
    let skipped = 0;
    try {
      for await (const result of segmentFiles(
        model,
        images.map((i) => i.path),
        {
          ...segmentOptionsFromConfig(cfg),
          probabilities: options.probabilities ?? false,
          ...(options.slide ? { mode: 'slide' as const, ...options.slide } : {}),
          workers: options.workers ?? 1,
          onBadSample: options.skipBad ? 'skip' : 'error',
          onSkipped: (bad) => {
            skipped++;
            bar.clear();
            process.stderr.write(`skipped ${bad.image}: ${bad.message}\n`);
          },
        },
      )) {
        const name = nameOf.get(result.path!)!;
        const files = await writeTestOutputs(result, stemOf(name), { ...options, palette });
        done++;
        bar.log(`Predictions in [${result.path}] (${result.seconds.toFixed(2)} s) -> ${relative('.', files.panel)}`);
        for (const c of result.classes) bar.log(`  ${c.name}: ${(c.ratio * 100).toFixed(2)}%`);
        bar.update((done + skipped) / images.length, 'Test', `${done + skipped}/${images.length}`, true);
      }
    } finally {
      bar.done();
      model.dispose();
    }
    console.log(`Segmented ${done} image(s)${skipped ? `, skipped ${skipped}` : ''}; results in ${relative('.', outDir) || '.'}`);
  });
}
