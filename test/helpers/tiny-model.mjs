// A tiny segmentation model on disk for the Segmenter, examples and load tests: mobilenetv2dilated
// + c1 (deterministic 'procedural' weights) as a combined .safetensors and as the reference's
// encoder/decoder .pth, a config YAML for it (32 px, one scale), and a few synthetic scenes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SegmentationModel,
  defaultConfig,
  mergeConfig,
  saveConfig,
  saveReferenceWeights,
  writeWeights,
  generateSyntheticDataset,
  disposeAll,
} from '../../dist/index.js';
import { chunk } from './data.mjs';

export const TINY_MODEL = { arch_encoder: 'mobilenetv2dilated', arch_decoder: 'c1', fc_dim: 320 };

/** Writes the model, config and scenes under a fresh temp folder; `cleanup()` removes it. */
export async function createTinyModel({ size = 32, scenes = 4, prefix = 'segtool-tiny-' } = {}) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const model = await SegmentationModel.create({ encoder: TINY_MODEL.arch_encoder, decoder: TINY_MODEL.arch_decoder, init: 'procedural', bnMomentum: 0.1 });
  const safetensors = join(dir, 'model.safetensors');
  const state = await model.stateDict();
  await writeWeights(safetensors, state);
  disposeAll(state);
  const pth = await saveReferenceWeights(model, join(dir, 'weights'), 1);
  model.dispose();
  const cfg = mergeConfig(defaultConfig(), {
    DIR: join(dir, 'ckpt'),
    MODEL: TINY_MODEL,
    DATASET: { imgSizes: [size], imgMaxSize: size * 4 },
  });
  const config = join(dir, 'tiny.yaml');
  await saveConfig(cfg, config);
  const data = await generateSyntheticDataset(join(dir, 'data'), { train: scenes, val: 2, width: size, seed: 5 });
  return {
    dir,
    config,
    cfg,
    safetensors,
    pth: [pth.encoder, pth.decoder],
    data,
    image: (i = 1) => join(data.root, 'images', 'training', `scene_${String(i).padStart(5, '0')}.png`),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}


/** A PNG whose header claims width x height RGB pixels, with almost no pixel data behind it. */
export function pngHeaderOnly(width, height) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
