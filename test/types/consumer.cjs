// CommonJS at run time: `await import('segtool')` from a .cjs file (require('segtool') is not
// supported: segtool is ESM and its module graph uses top-level await).
const assert = require('node:assert/strict');

(async () => {
  const segtool = await import('segtool');
  assert.equal(typeof segtool.Segmenter.load, 'function');
  assert.deepEqual([...segtool.SEGMENT_OUTPUTS], ['labels', 'summary', 'png', 'probabilities']);
  const error = new segtool.SegtoolError('ERR_BUSY', 'x');
  assert.ok(segtool.isSegtoolError(error, 'ERR_BUSY'));
  console.log('cjs: import(segtool) ok');
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
