/**
 * `segtool demo-test`: what the seed's demo_test.sh did. Fetches the 2018 released model
 * baseline-resnet50_dilated8-ppm_bilinear_deepsup (encoder and decoder, epoch 20) and the
 * validation image ADE_val_00001519.jpg through the download cache, segments the image with the
 * 2018 input pipeline (the bundled config of that model) and writes the picture
 * (image | prediction) and the label map. Offline, it names the three files and where they go.
 */
import { Command } from 'commander';
import { open } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { defaultClassInfo } from '../classes.js';
import { bundledConfigPath, loadConfig, type SegtoolConfig } from '../config/index.js';
import { cachedPath, fetchCached, mirrorBase } from '../download/cache.js';
import { modelClassInfo } from '../eval/weights.js';
import { SegtoolError } from '../errors.js';
import { loadModel, segmentFiles, segmentOptionsFromConfig } from '../segment.js';
import { setNumThreads } from '../tensor.js';
import { abortOnInterrupt, parseCount } from './common.js';
import { downloadReleasedWeights, releasedWeightsPath } from './download.js';
import { formatBytes, ProgressBar } from './progress.js';
import { writeTestOutputs } from './test.js';

/** The model and the image demo_test.sh fetched. */
export const DEMO_TEST_MODEL = 'baseline-resnet50_dilated8-ppm_bilinear_deepsup';
export const DEMO_TEST_IMAGE = 'data/ADEChallengeData2016/images/validation/ADE_val_00001519.jpg';

interface DemoTestOptions {
  mirror?: string;
  dir?: string;
  result: string;
  threads?: number;
}

/** A JPEG starts with FF D8 FF: a mirror's web page does not. */
async function expectJpeg(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(3);
    await handle.read(head, 0, 3, 0);
    if (head[0] !== 0xff || head[1] !== 0xd8 || head[2] !== 0xff) throw new Error('not a JPEG image');
  } finally {
    await handle.close();
  }
}

/** The three files demo-test needs, as "URL -> where to put it" lines. */
export function demoTestFiles(mirror: string, cfg: SegtoolConfig): string[] {
  const paths = [releasedWeightsPath(cfg, 'encoder'), releasedWeightsPath(cfg, 'decoder'), DEMO_TEST_IMAGE];
  return paths.map((p) => `  ${mirror}${p}\n    -> ${cachedPath(p)}`);
}

export function demoTestCommand(): Command {
  return new Command('demo-test')
    .description(`what the seed's demo_test.sh does: fetch the 2018 model ${DEMO_TEST_MODEL} and ADE_val_00001519.jpg, segment it with the 2018 input pipeline, write the picture`)
    .argument('[overrides...]', `config overrides as KEY VALUE pairs over the bundled config ${DEMO_TEST_MODEL}, e.g. DATASET.imgSizes 450`)
    .option('--mirror <url>', 'base URL that replaces http://sceneparsing.csail.mit.edu/ (also SEGTOOL_MIRROR)')
    .option('--dir <dir>', "folder for the weights (default: the config's DIR)")
    .option('--result <dir>', 'folder for ADE_val_00001519.png (image | prediction) and ADE_val_00001519_label.png', '.')
    .option('--threads <n>', 'LibTorch threads (default: every core)', parseCount('--threads', 1))
    .action(async (overrides: string[], options: DemoTestOptions) => {
      const mirror = mirrorBase(options.mirror);
      const cfgPath = bundledConfigPath(DEMO_TEST_MODEL);
      const bar = new ProgressBar();
      const interrupt = abortOnInterrupt('the demo');
      try {
        let dir: string;
        let image: string;
        try {
          dir = await downloadReleasedWeights(DEMO_TEST_MODEL, {
            options: { ...(options.dir !== undefined ? { dir: options.dir } : {}), dataDir: './data', verify: true, extract: true },
            mirror,
            bar,
            signal: interrupt.signal,
          });
          const fetched = await fetchCached(DEMO_TEST_IMAGE, {
            mirror,
            validate: expectJpeg,
            signal: interrupt.signal,
            onProgress: (p) => bar.update(p.total ? p.received / p.total : 0, 'ADE_val_00001519.jpg', formatBytes(p.received)),
          });
          image = fetched.path;
        } catch (error) {
          if (!(error instanceof SegtoolError && error.code === 'ERR_DOWNLOAD')) throw error;
          throw new SegtoolError(
            'ERR_DOWNLOAD',
            `${error.message}\n\nOffline? demo-test needs these three files; fetch them on another machine and put each where the arrow says (they are checked before use), then run segtool demo-test again:\n${demoTestFiles(mirror, await loadConfig(cfgPath)).join('\n')}`,
            { cause: error },
          );
        }
        bar.done();
        const cfg = await loadConfig(cfgPath, [...overrides, 'DIR', dir]);
        if (options.threads !== undefined) setNumThreads(options.threads);
        const model = await loadModel(cfg);
        try {
          const { palette } = modelClassInfo(model) ?? defaultClassInfo(cfg.DATASET.num_class);
          console.log(
            `Segmenting ADE_val_00001519.jpg with ${cfg.MODEL.arch_encoder} + ${cfg.MODEL.arch_decoder} at scales ${cfg.DATASET.imgSizes.join(', ')} ` +
              `(the 2018 pipeline: ${cfg.DATASET.normalization} normalisation, ${cfg.DATASET.resize} resize)`,
          );
          for await (const result of segmentFiles(model, [image], segmentOptionsFromConfig(cfg))) {
            const files = await writeTestOutputs(result, join(resolve(options.result), 'ADE_val_00001519'), { palette });
            for (const c of result.classes) console.log(`  ${c.name}: ${(c.ratio * 100).toFixed(2)}%`);
            console.log(`Wrote ${relative('.', files.panel)} (image | prediction) and ${relative('.', files.label)} (${result.seconds.toFixed(1)} s)`);
          }
        } finally {
          model.dispose();
        }
      } finally {
        bar.done();
        interrupt.dispose();
      }
    });
}
