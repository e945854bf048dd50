/** `segtool models`: architectures, bundled configs, and what a model expects as input. */
import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  ARCHITECTURE_ALIASES,
  BUNDLED_CONFIGS,
  DECODER_NAMES,
  ENCODER_CHANNELS,
  ENCODER_NAMES,
  bundledConfigPath,
  hasDeepSupervision,
  loadConfig,
  type SegtoolConfig,
} from '../config/index.js';
import { NORMALIZE_SPECS } from '../data/index.js';

export interface ModelsListing {
  /** `aliasOf`: the seed's spelling of that encoder (the same network). */
  encoders: Array<{ name: string; channels: number; aliasOf?: string }>;
  decoders: Array<{ name: string; deepSupervision: boolean; aliasOf?: string }>;
  configs: Array<{
    name: string;
    encoder: string;
    decoder: string;
    imgSizes: number[];
    imgMaxSize: number;
    paddingConstant: number;
    outputStride: number;
    dir: string;
    /** DIR/encoder_epoch_20.pth and DIR/decoder_epoch_20.pth exist. */
    weightsPresent: boolean;
  }>;
  input: { layout: string; dtype: string; normalization: typeof NORMALIZE_SPECS };
}

export async function listModels(): Promise<ModelsListing> {
  const configs: ModelsListing['configs'] = [];
  for (const name of BUNDLED_CONFIGS) {
    const cfg: SegtoolConfig = await loadConfig(bundledConfigPath(name));
    configs.push({
      name,
      encoder: cfg.MODEL.arch_encoder,
      decoder: cfg.MODEL.arch_decoder,
      imgSizes: cfg.DATASET.imgSizes,
      imgMaxSize: cfg.DATASET.imgMaxSize,
      paddingConstant: cfg.DATASET.padding_constant,
      outputStride: cfg.DATASET.segm_downsampling_rate,
      dir: cfg.DIR,
      weightsPresent: ['encoder', 'decoder'].every((p) => existsSync(join(cfg.DIR, `${p}_${cfg.VAL.checkpoint}`))),
    });
  }
  return {
    encoders: ENCODER_NAMES.map((name) => ({ name, channels: ENCODER_CHANNELS[name], ...aliasOf(name) })),
    decoders: DECODER_NAMES.map((name) => ({ name, deepSupervision: hasDeepSupervision(name), ...aliasOf(name) })),
    configs,
    input: { layout: '[batch, 3, height, width]', dtype: 'float32', normalization: NORMALIZE_SPECS },
  };
}

function aliasOf(name: keyof typeof ARCHITECTURE_ALIASES): { aliasOf?: string } {
  const canonical = ARCHITECTURE_ALIASES[name];
  return canonical === undefined ? {} : { aliasOf: canonical };
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => `  ${r.map((cell, c) => cell.padEnd(widths[c]!)).join('  ')}`.trimEnd());
}

export function modelsCommand(): Command {
  return new Command('models')
    .description('list encoders, decoders, bundled configs and the input a model expects')
    .option('--json', 'print the listing as JSON')
    .action(async (options: { json?: boolean }) => {
      const listing = await listModels();
      if (options.json) {
        console.log(JSON.stringify(listing, null, 2));
        return;
      }
      const lines = ['Encoders (channels handed to the decoder = MODEL.fc_dim):'];
      const alias = (a: string | undefined): string => (a === undefined ? '' : `alias of ${a} (the 2018 seed's name)`);
      lines.push(...table(listing.encoders.map((e) => [e.name, String(e.channels), alias(e.aliasOf)])));
      lines.push('', 'Decoders:');
      lines.push(...table(listing.decoders.map((d) => [d.name, d.aliasOf ? alias(d.aliasOf) : d.deepSupervision ? 'deep supervision (TRAIN.deep_sup_scale)' : ''])));
      lines.push('', 'Bundled configs (--cfg NAME; weights: segtool download NAME):');
      lines.push(
        ...table([
          ['name', 'encoder + decoder', 'test sizes (short side)', 'max side', 'stride', 'weights'],
          ...listing.configs.map((c) => [
            c.name,
            `${c.encoder} + ${c.decoder}`,
            c.imgSizes.join(','),
            String(c.imgMaxSize),
            String(c.outputStride),
            c.weightsPresent ? `in ${c.dir}` : 'not downloaded',
          ]),
        ]),
      );
      const imagenet = listing.input.normalization.imagenet;
      lines.push(
        '',
        'Input: float32 [batch, 3, height, width], RGB scaled to 0..1, minus mean ' +
          `[${imagenet.mean.join(', ')}], divided by std [${imagenet.std.join(', ')}] (DATASET.normalization imagenet;`,
        '  legacy-bgr = BGR 0..255 minus [102.98, 115.95, 122.77] for the first released weights). Images are resized so the',
        '  short side is each DATASET.imgSizes entry (long side <= imgMaxSize), sides rounded up to padding_constant;',
        '  logits come out at 1/stride of that and are upsampled to the image. Output: 150 ADE20K classes (DATASET.num_class).',
      );
      console.log(lines.join('\n'));
    });
}
