#!/usr/bin/env node
// Prints LibTorch's include dirs, library dir, libraries or compile flags for binding.gyp,
// found by the same CMake logic as CMakeLists.txt (cmake/FindSegtoolTorch.cmake).
// Usage: node scripts/torch-paths.mjs include|libdir|libs|cflags|defines
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const work = join(root, 'build', 'torch-probe');
const out = join(work, 'torch-paths.json');
if (!existsSync(out)) {
  mkdirSync(work, { recursive: true });
  execFileSync('cmake', ['-S', join(root, 'scripts', 'torch-probe'), '-B', work, `-DOUT_FILE=${out}`], { stdio: ['ignore', 'ignore', 'inherit'] });
}
const paths = JSON.parse(readFileSync(out, 'utf8'));
const what = process.argv[2];
const words = {
  include: paths.include,
  libdir: [paths.libdir],
  libs: paths.libs,
  cflags: paths.cxxflags ? paths.cxxflags.split(/\s+/) : [],
  defines: (paths.defines ?? []).filter((d) => d !== ''),
}[what];
if (!words) {
  console.error('usage: torch-paths.mjs include|libdir|libs|cflags|defines');
  process.exit(2);
}
console.log(words.join(' '));
