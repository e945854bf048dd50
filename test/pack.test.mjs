// What `npm pack` ships: what a user needs to import segtool, run the CLI and the examples, and
// build the addon (native sources, CMake and node-gyp files, bundled configs, docs) — and no
// tests, fixtures, benchmarks, CI files, TypeScript sources, source maps or build outputs.
// (scripts/check-gyp-build.sh installs the packed tarball into an empty folder and builds it.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUNDLED_CONFIGS } from '../dist/index.js';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const [packed] = JSON.parse(execFileSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
const files = new Set(packed.files.map((f) => f.path));

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

test('the tarball holds the library, its types, the CLI, configs, examples and docs', () => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
  for (const file of [
    'package.json', 'README.md', 'bin/segtool', 'dist/index.js', 'dist/index.d.ts', 'dist/segmenter.js', 'dist/segmenter.d.ts',
    'dist/cli/index.js', 'dist/native.js', 'examples/segment-image.mjs', 'examples/http-service.mjs', 'examples/fine-tune.mjs',
    'docs/data.md', pkg.exports['.'].default.slice(2), pkg.exports['.'].types.slice(2),
  ]) {
    assert.ok(files.has(file), `${file} is packed`);
  }
  const configs = readdirSync('config').filter((f) => f.endsWith('.yaml'));
  // The reference's seven configs and the seed's 2018 baselines: one file per bundled config.
  assert.equal(configs.length, BUNDLED_CONFIGS.length);
  for (const config of configs) assert.ok(files.has(`config/${config}`), config);
  for (const path of walk('dist').filter((p) => p.endsWith('.js') || p.endsWith('.d.ts'))) assert.ok(files.has(path), `${path} is packed`);
});

test('the tarball holds what building the addon needs', () => {
  for (const file of ['binding.gyp', 'CMakeLists.txt', 'cmake/FindSegtoolTorch.cmake', 'scripts/torch-paths.mjs', 'scripts/build-native.sh', 'scripts/setup.sh']) {
    assert.ok(files.has(file), `${file} is packed`);
  }
  // Every source binding.gyp and CMakeLists.txt compile (all of native/ but its C++ tests).
  const sources = walk('native').filter((p) => !p.startsWith('native/tests/') && /\.(cc|h|cu|cuh)$/.test(p));
  assert.ok(sources.length > 40);
  for (const source of sources) assert.ok(files.has(source), `${source} is packed`);
});

test('no tests, fixtures, benchmarks, CI, TypeScript sources, source maps or build outputs', () => {
  const unwanted = [...files].filter((f) =>
    /^(test|bench|\.ci|lib|build[^/]*|node_modules|segtool-demo|native\/tests)\//.test(f) ||
    /\.(map|node|o|a|tgz|safetensors|pth|log)$/.test(f) ||
    f === 'tsconfig.json' || f === 'package-lock.json' || f.startsWith('.'),
  );
  assert.deepEqual(unwanted, []);
  console.log(`npm pack: ${packed.entryCount} files, ${(packed.size / 1024).toFixed(0)} KiB packed, ${(packed.unpackedSize / 1024).toFixed(0)} KiB unpacked`);
  assert.ok(packed.unpackedSize < 4 * 1024 * 1024, `unpacked size ${packed.unpackedSize}`);
});
