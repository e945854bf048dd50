// The 2018 seed's command lines, its released baseline-* models and their input pipeline
// (issue 16): seed flags on train/eval/test, the run-folder name, the OpenCV resize, and the
// rough edges a user of the seed hits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { decodeImage } from '../dist/data/decode.js';
import { resizeBilinear, resizeBilinearOpenCV } from '../dist/data/resize.js';

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

test("DATASET.resize 'opencv' computes what cv2.resize(INTER_LINEAR) computed (fixture from OpenCV 4.6)", async () => {
  const fixture = JSON.parse(readFileSync('test/fixtures/data/opencv-resize.json', 'utf8'));
  const rgb = await decodeImage(readFileSync(fixture.source), fixture.source, { decoder: 'sharp', exif: 'apply' });
  assert.equal(sha256(rgb.data), fixture.decoded_sha256, 'the decoder gives the pixels OpenCV resized');
  for (const c of fixture.cases) {
    const out = resizeBilinearOpenCV(rgb.data, rgb.width, rgb.height, 3, c.width, c.height);
    assert.deepEqual([...out.subarray(0, 12)], c.first, `${c.width}x${c.height} first pixels`);
    assert.equal(sha256(out), c.sha256, `${c.width}x${c.height}`);
    // PIL's antialiased filter is another function: the test could fail.
    assert.notEqual(sha256(resizeBilinear(rgb.data, rgb.width, rgb.height, 3, c.width, c.height)), c.sha256);
  }
});
