// The native model harness with the README's tolerances and, for the chaotic training metrics
// (steps 2-3, gradient norms, running statistics), a measured float32 noise envelope: reruns with
// another thread count and rounding-level weight changes; a value outside the README tolerance
// passes only within 3x the spread those reruns show.
//
// All 15 cases take ~30 minutes on 2 cores, so the suite runs one case per encoder family that
// trains fast; `npm run test:models` runs every case (SEGTOOL_MODEL_CASES=all). test/models.test.mjs
// checks every case's eval outputs and first step through the public API in the suite.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

const harness = 'build/models_test';
const SUITE_CASES = ['resnet18-c1', 'resnet18dilated-c1_deepsup', 'mobilenetv2dilated-c1_deepsup'];
const requested = process.env['SEGTOOL_MODEL_CASES'];
const cases = requested === 'all'
  ? Object.keys(JSON.parse(readFileSync('test/fixtures/models/index.json', 'utf8')))
  : requested ? requested.split(',') : SUITE_CASES;

test(`native model harness: ${cases.length} reference case(s) match`, { timeout: 60 * 60 * 1000 }, () => {
  assert.ok(existsSync(harness), `${harness} is built by npm run setup (CMake option SEGTOOL_NATIVE_TESTS)`);
  const run = spawnSync(harness, ['test/fixtures', ...cases], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const table = run.stdout.split('\n').filter((line) => /^(case|\S+-\S+\s+\d|model cases|ALL|\s+train\.)/.test(line));
  console.log(table.map((line) => `# ${line}`).join('\n'));
  assert.equal(run.status, 0, `${run.stdout.slice(-6000)}\n${run.stderr.slice(-2000)}`);
  assert.match(run.stdout, new RegExp(`model cases: ${cases.length}/${cases.length} passed`));
});
