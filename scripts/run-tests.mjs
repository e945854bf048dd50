#!/usr/bin/env node
// Runs the test suite with node's built-in runner: test/*.test.mjs (CPU tiers), or with --gpu
// test/gpu/*.test.mjs. Extra arguments select files by substring: `npm test -- tensor`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const gpu = args.includes('--gpu');
const filters = args.filter((a) => a !== '--gpu');
const dir = gpu ? 'test/gpu' : 'test';
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.test.mjs'))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort()
  .map((f) => join(dir, f));
if (files.length === 0) {
  console.error(`no test files in ${dir} match ${filters.join(' ') || '*'}`);
  process.exit(1);
}
const reporter = process.stdout.isTTY ? 'spec' : 'tap';
const result = spawnSync(process.execPath, ['--test', `--test-reporter=${reporter}`, ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
