import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng, deriveSeed } from '../dist/data/index.js';

test('xoshiro128** seeded by splitmix32: pinned outputs', () => {
  // Computed by an independent implementation of splitmix32 + xoshiro128** (whose state [1,2,3,4]
  // gives the published 11520, 0, 5927040, 70819200, 2031721883).
  const r = new Rng(304);
  assert.deepEqual(Array.from({ length: 5 }, () => r.nextUint32()), [1390146232, 1735522326, 2143126585, 965142374, 122784578]);
  const z = new Rng(0);
  assert.deepEqual(Array.from({ length: 3 }, () => z.nextUint32()), [3809008728, 1133695204, 53579671]);
});

test('same seed, same stream; streams differ by seed, rank and worker, in order', () => {
  const draw = (rng) => Array.from({ length: 16 }, () => rng.nextUint32());
  assert.deepEqual(draw(Rng.forStream(304, 0, 1)), draw(Rng.forStream(304, 0, 1)));
  const seeds = new Set([
    deriveSeed(304), deriveSeed(304, 0, 0), deriveSeed(304, 0, 1), deriveSeed(304, 1, 0), deriveSeed(305, 0, 0),
    deriveSeed(304, 0), deriveSeed(2 ** 40 + 304, 0, 0),
  ]);
  assert.equal(seeds.size, 7);
  const workers = Array.from({ length: 16 }, (_, w) => draw(Rng.forStream(304, 0, w)).join());
  assert.equal(new Set(workers).size, 16);
  assert.throws(() => deriveSeed(-1), { code: 'ERR_INVALID_ARG', message: /seed/ });
  assert.throws(() => deriveSeed(1.5), { code: 'ERR_INVALID_ARG' });
  assert.throws(() => new Rng(2 ** 32), { code: 'ERR_INVALID_ARG' });
});

test('int, next, choice and shuffle', () => {
  const rng = new Rng(1);
  const counts = new Array(5).fill(0);
  for (let i = 0; i < 50000; i++) counts[rng.int(5)]++;
  for (const c of counts) assert.ok(Math.abs(c - 10000) < 500, `counts ${counts}`);
  for (let i = 0; i < 1000; i++) {
    const x = rng.next();
    assert.ok(x >= 0 && x < 1);
  }
  assert.equal(rng.int(1), 0);
  assert.throws(() => rng.int(0), RangeError);
  assert.ok([3, 4].includes(rng.choice([3, 4])));
  const items = Array.from({ length: 100 }, (_, i) => i);
  const shuffled = rng.shuffle(items.slice());
  assert.notDeepEqual(shuffled, items);
  assert.deepEqual(shuffled.slice().sort((a, b) => a - b), items);
});
