// The native model harness: all 15 reference cases with the README's tolerances, and for the
// chaotic training metrics (steps 2-3, gradient norms, running statistics) a measured float32
// noise envelope: reruns with another thread count and rounding-level weight changes; a value
// outside the README tolerance passes only within 3x the spread those reruns show.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const harness = 'build/models_test';

test('native model harness: every reference case matches', { timeout: 20 * 60 * 1000 }, () => {
  assert.ok(existsSync(harness), `${harness} is built by npm run setup (CMake option SEGTOOL_NATIVE_TESTS)`);
  const run = spawnSync(harness, ['test/fixtures'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const table = run.stdout.split('\n').filter((line) => /^(case|\S+-\S+\s+\d|model cases|ALL|\s+train\.)/.test(line));
  console.log(table.map((line) => `# ${line}`).join('\n'));
  assert.equal(run.status, 0, `${run.stdout.slice(-6000)}\n${run.stderr.slice(-2000)}`);
  assert.match(run.stdout, /model cases: 15\/15 passed/);
});
