// The C++ harness of native/io: every fixture checkpoint, torch.load round trips of nested
// values and odd tensors, files torch.save writes at every protocol, and ~1500 corrupt or
// hostile inputs (truncations, lying headers, forbidden globals) that must fail cleanly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const harness = 'build/pth_test';

test('native .pth reader/writer harness passes', () => {
  assert.ok(existsSync(harness), `${harness} is built by npm run setup (CMake option SEGTOOL_NATIVE_TESTS)`);
  const run = spawnSync(harness, ['.'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const summary = run.stdout.trim().split('\n').slice(-3).join('\n');
  console.log(`# ${summary.replace(/\n/g, '\n# ')}`);
  assert.equal(run.status, 0, `${run.stdout.slice(-4000)}\n${run.stderr.slice(-2000)}`);
});
