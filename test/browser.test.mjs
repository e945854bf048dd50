// The browser example (examples/browser/): a model exported by exportOnnx, served with
// onnxruntime-web's files from node_modules, opened in headless Chromium (Debian's chromium,
// installed by `scripts/setup.sh --test`; never a downloaded browser) through playwright-core.
// The labels the page draws equal segtool's wherever the top-two margin is clear; a screenshot
// stays in test/tmp/browser-example/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { SegmentationModel, exportOnnx } from '../dist/index.js';
import { encodePng } from '../dist/eval/png.js';
import { normalizeInto } from '../dist/data/normalize.js';
import { createExampleServer } from '../examples/browser/serve.mjs';

const CHROMIUM = '/usr/bin/chromium';
const out = 'test/tmp/browser-example';

/** A 96 x 64 RGB scene: sky, a wall, a floor, a disc (multiples of the padding constant: no resizing). */
function scene(width, height) {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let c = y < height / 3 ? [110, 160, 230] : y < (2 * height) / 3 ? [190, 180, 160] : [90, 70, 50];
      if ((x - width * 0.65) ** 2 + (y - height * 0.55) ** 2 < (height / 5) ** 2) c = [200, 40, 40];
      const noise = ((x * 7 + y * 13) % 11) - 5;
      rgb.set(c.map((v) => Math.max(0, Math.min(255, v + noise))), (y * width + x) * 3);
    }
  }
  return rgb;
}

test('examples/browser segments an image in headless Chromium as segtool does', { skip: !existsSync(CHROMIUM) && `${CHROMIUM} is missing: bash scripts/setup.sh --test installs Debian's chromium` }, async () => {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const [width, height] = [96, 64];
  const rgb = scene(width, height);
  const imagePath = join(out, 'scene.png');
  writeFileSync(imagePath, await encodePng(rgb, width, height));

  const model = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1_deepsup', init: 'procedural' });
  const modelPath = join(out, 'model.onnx');
  let expected;
  try {
    // Scale 1: the short side is the image's, so the page feeds its pixels unresized.
    await exportOnnx(model, modelPath, { fullSize: true, imgSizes: [height], imgMaxSize: 1000, paddingConstant: 8 });
    const input = new Float32Array(3 * width * height);
    normalizeInto(input, 0, width, height, rgb, width, height, 'imagenet');
    const p = await model.predictClasses({ data: input, shape: [1, 3, height, width] }, { probabilities: true });
    const probs = p.probabilities.data();
    const labels = p.labels.data();
    expected = Array.from({ length: width * height }, (_, i) => {
      let first = -1, second = -1;
      for (let c = 0; c < 150; c++) {
        const v = probs[c * width * height + i];
        if (v > first) { second = first; first = v; } else if (v > second) second = v;
      }
      return { label: labels[i], margin: first - second };
    });
    p.labels.dispose();
    p.confidence.dispose();
    p.probabilities.dispose();
  } finally {
    model.dispose();
  }

  const server = createExampleServer({ model: modelPath, image: imagePath });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const profile = mkdtempSync(join(tmpdir(), 'segtool-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const external = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(`http://127.0.0.1:${server.address().port}/`) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) external.push(r.url());
    });
    const logs = [];
    page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
    await page.goto(`http://127.0.0.1:${server.address().port}/examples/browser/index.html?model=/model.onnx&image=/image`);
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 60_000 });
    await page.screenshot({ path: join(out, 'screenshot.png'), fullPage: true });
    const error = await page.evaluate(() => window.segtoolError ?? null);
    assert.equal(error, null, `the page failed: ${error}\n${logs.join('\n')}`);
    const result = await page.evaluate(() => window.segtoolResult);
    assert.deepEqual([result.width, result.height], [width, height]);
    let clear = 0, differing = 0;
    result.labels.forEach((label, i) => {
      if (expected[i].margin > 1e-3) {
        clear++;
        if (label !== expected[i].label) differing++;
      }
    });
    assert.ok(clear > (width * height) / 2, `most pixels have a clear margin (${clear})`);
    assert.equal(differing, 0, `${differing} of ${clear} clear pixels differ from segtool's labels`);
    // The drawn colour map is the palette colour of each label.
    const drawn = await page.evaluate(() => Array.from(document.getElementById('labels').getContext('2d').getImageData(0, 0, 96, 64).data));
    const palette = (await import('../dist/index.js')).ade20kPalette();
    for (const i of [0, 1234, width * height - 1]) {
      const c = result.labels[i];
      assert.deepEqual(drawn.slice(4 * i, 4 * i + 3), [palette[3 * c], palette[3 * c + 1], palette[3 * c + 2]], `pixel ${i}`);
    }
    assert.match(await page.textContent('#status'), /mobilenetv2dilated \+ c1_deepsup: 96 x 64/);
    assert.ok((await page.$$('#classes li')).length > 0, 'the classes are listed');
    assert.deepEqual(external, [], 'nothing is fetched from outside the local server');
  } finally {
    await browser.close();
    await new Promise((r) => server.close(r));
    rmSync(profile, { recursive: true, force: true });
    rmSync(modelPath, { force: true });
  }
});
