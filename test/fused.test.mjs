// The fused inference graph (native/nn/fuse.h, issue 18 item 1): eval-mode inference with every
// BatchNorm folded into the convolution before it. On all 15 fixture cases it gives the unfused
// graph's numbers within 1e-4 (relative to the log-probability range, the unit of
// test/fixtures/README.md) and still the reference's; its cache is built once and rebuilt when
// the weights change (trainStep, loadStateDict, setWeight); training never uses it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { SegmentationModel, Tensor, liveTensorCount } from '../dist/index.js';
import { readSafetensors } from './helpers/safetensors.mjs';
import { relativeMaxError } from './helpers/compare.mjs';

const index = JSON.parse(readFileSync('test/fixtures/models/index.json', 'utf8'));
const STEP = { lrEncoder: 0.02, lrDecoder: 0.02, momentum: 0.9, weightDecay: 1e-4 };

/** Eval forward with the fused graph on or off: [logprob, logprobDeepsup?] as Float32Arrays. */
async function forward(model, input, fuse) {
  model.setRuntime({ fuse });
  const out = await model.forward(input);
  const values = [out.logprob.data().slice(), out.logprobDeepsup?.data().slice()];
  out.logprob.dispose();
  out.logprobDeepsup?.dispose();
  return values;
}

function assertSame(what, fused, unfused) {
  for (let i = 0; i < 2; i++) {
    assert.equal(fused[i] === undefined, unfused[i] === undefined);
    if (!fused[i]) continue;
    const e = relativeMaxError(fused[i], unfused[i]);
    assert.ok(e <= 1e-4, `${what}: fused vs unfused ${i ? 'logprob_deepsup' : 'logprob'} error ${e.toExponential(2)} > 1e-4`);
  }
}

for (const [name, spec] of Object.entries(index)) {
  test(`${name}: fused eval equals unfused, follows weight changes, never trains`, async () => {
    const { tensors: t } = readSafetensors(`test/fixtures/models/${name}.safetensors`);
    const live = liveTensorCount();
    const options = { encoder: spec.encoder, decoder: spec.decoder, fcDim: spec.fc_dim, numClass: spec.num_class, init: 'procedural' };
    const model = await SegmentationModel.create(options);
    const plain = await SegmentationModel.create({ ...options, fuse: false });
    try {
      assert.equal(model.info.fuse, true);
      assert.equal(model.info.fusedBuilds, 0);
      const fused = await forward(model, t['eval.input'], true);
      const builds = model.info.fusedBuilds;
      assert.ok(builds > 0, 'the fused graph folded its convolutions');
      const unfused = await forward(model, t['eval.input'], false);
      assertSame('initial weights', fused, unfused);
      // ... and both are the reference's (fixture tolerance 1e-3).
      assert.ok(relativeMaxError(fused[0], t['eval.logprob'].data) <= 1e-3, 'fused logprob vs the reference');
      // Folded once, not per forward (setRuntime clears the cache: one rebuild here).
      await forward(model, t['eval.input'], true);
      const again = await model.forward(t['eval.input']);
      again.logprob.dispose();
      again.logprobDeepsup?.dispose();
      assert.equal(model.info.fusedBuilds, 2 * builds, 'folded once per setRuntime, not per forward');

      // Training is the unfused graph whatever `fuse` says: the same loss to the last bit as a
      // model that never fused, after this one built its cache.
      model.train().setDropout(0);
      plain.train().setDropout(0);
      const a = await model.trainStep(t['train.input'], t['train.label'], STEP);
      const b = await plain.trainStep(t['train.input'], t['train.label'], STEP);
      assert.equal(a.loss, b.loss);
      assert.equal(a.gradNormEncoder, b.gradNormEncoder);
      model.eval();
      plain.eval();

      // After the step (new weights and running statistics) the fused graph follows them.
      const stepped = await forward(model, t['eval.input'], true);
      assert.ok(relativeMaxError(stepped[0], fused[0]) > 1e-3, 'the step changed the fused output');
      assertSame('after trainStep', stepped, await forward(model, t['eval.input'], false));
      assertSame('fused model vs never-fused model', stepped, await forward(plain, t['eval.input'], false));

      // loadStateDict of the initial weights into the stepped model: back to the first output.
      const fresh = await SegmentationModel.create(options);
      try {
        const state = await fresh.stateDict();
        await forward(model, t['eval.input'], true);  // a cache of the stepped weights
        await model.loadStateDict(state);
        for (const v of state.values()) v.dispose();
        assertSame('after loadStateDict', await forward(model, t['eval.input'], true), unfused);
      } finally {
        fresh.dispose();
      }
    } finally {
      model.dispose();
      plain.dispose();
    }
    assert.equal(liveTensorCount(), live, 'no tensor leaked');
  });
}

test('setWeight on a BatchNorm buffer reaches the fused graph', async () => {
  const model = await SegmentationModel.create({ encoder: 'resnet18dilated', decoder: 'c1', numClass: 5, init: 'procedural' });
  try {
    const input = { data: new Float32Array(3 * 64 * 64).map((_, i) => Math.sin(i * 0.37)), shape: [1, 3, 64, 64] };
    const key = 'decoder.cbr.1.running_var';
    const before = await forward(model, input, true);
    const v = model.getWeight(key);
    const scaled = Tensor.from(v.data().map((x) => 4 * x), v.shape);
    v.dispose();
    model.setWeight(key, scaled);
    scaled.dispose();
    assert.equal(model.info.fuse, true);
    const fused = await forward(model, input, true);
    assert.ok(relativeMaxError(fused[0], before[0]) > 1e-4, 'the new running_var changed the output');
    assertSame('after setWeight', fused, await forward(model, input, false));
  } finally {
    model.dispose();
  }
});
