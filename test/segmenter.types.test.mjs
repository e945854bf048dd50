// The published types and module formats, as a user's project sees them: consumer code in
// test/types (ESM .ts and CommonJS .cts, with @ts-expect-error lines for wrong options and
// outputs not asked for) type-checks against dist/*.d.ts with tsc --noEmit; a .cjs file loads
// segtool with import(); package.json "exports" points at files that exist.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

test('consumer code type-checks against dist/*.d.ts (tsc --noEmit), wrong options are errors', () => {
  const tsc = require.resolve('typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', 'test/types/tsconfig.json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `tsc reported:\n${r.stdout}${r.stderr}`);
});

test('CommonJS: import("segtool") from a .cjs file works', () => {
  const r = spawnSync(process.execPath, ['test/types/consumer.cjs'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /cjs: import\(segtool\) ok/);
});

test('package.json: ESM, exports and types point at built files', () => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
  assert.equal(pkg.type, 'module');
  assert.equal(pkg.exports['.'].types, './dist/index.d.ts');
  assert.equal(pkg.exports['.'].default, './dist/index.js');
  for (const file of [pkg.exports['.'].types, pkg.exports['.'].default, pkg.types, pkg.main]) assert.ok(existsSync(file), file);
  const dts = readFileSync('dist/index.d.ts', 'utf8');
  assert.match(dts, /Segmenter/);
  assert.match(readFileSync('dist/segmenter.d.ts', 'utf8'), /segment<const O extends readonly SegmentOutput\[\]/);
});
