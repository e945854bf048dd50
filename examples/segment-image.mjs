#!/usr/bin/env node
// Segments one image: writes the colourised label map as a PNG and prints the classes found.
//
//   node examples/segment-image.mjs photo.jpg --config mobilenetv2dilated-c1_deepsup \
//       --weights ckpt/encoder_epoch_20.pth --weights ckpt/decoder_epoch_20.pth [--out photo.seg.png]
//
// --config: a bundled config name (`npx segtool models` lists them) or a YAML file;
// --weights: a combined .safetensors, or the encoder and decoder .pth (default: the config's
// TEST.checkpoint in its DIR); --scales 300,450 overrides DATASET.imgSizes.
import { writeFile } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { parseArgs } from 'node:util';
import { Segmenter, isSegtoolError } from 'segtool';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    config: { type: 'string', default: 'mobilenetv2dilated-c1_deepsup' },
    weights: { type: 'string', multiple: true },
    out: { type: 'string' },
    scales: { type: 'string' },
    threads: { type: 'string' },
  },
});
if (positionals.length !== 1) {
  console.error('usage: node examples/segment-image.mjs IMAGE [--config NAME|FILE] [--weights FILE]... [--out FILE] [--scales 300,450]');
  process.exit(2);
}
const [image] = positionals;
const out = values.out ?? `${basename(image, extname(image))}.seg.png`;

try {
  const segmenter = await Segmenter.load({
    config: values.config,
    ...(values.weights ? { weights: values.weights } : {}),
    ...(values.threads ? { threads: Number(values.threads) } : {}),
  });
  try {
    const result = await segmenter.segment(image, {
      outputs: ['summary', 'png'],
      ...(values.scales ? { scales: values.scales.split(',').map(Number) } : {}),
    });
    await writeFile(out, result.png);
    console.log(`${image}: ${result.width} x ${result.height}, ${result.timings.inferenceMs.toFixed(0)} ms; wrote ${out}`);
    for (const c of result.classes) console.log(`  ${(c.ratio * 100).toFixed(1).padStart(5)}%  ${c.name}`);
  } finally {
    await segmenter.close();
  }
} catch (error) {
  // SegtoolError messages name the file or option and what was expected.
  console.error(isSegtoolError(error) ? `${error.code}: ${error.message}` : error);
  process.exit(1);
}
