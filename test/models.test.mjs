// Every encoder/decoder case of the reference fixtures: eval log-probabilities, full-size
// predictions, three training steps (losses, accuracies), gradient norms and BatchNorm running
// statistics, within the tolerances of test/fixtures/README.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { SegmentationModel, liveTensorCount } from '../dist/index.js';
import { readSafetensors } from './helpers/safetensors.mjs';

const index = JSON.parse(readFileSync('test/fixtures/models/index.json', 'utf8'));

function relativeMaxError(got, expected) {
  let lo = Infinity, hi = -Infinity, worst = 0;
  for (let i = 0; i < expected.length; i++) {
    lo = Math.min(lo, expected[i]);
    hi = Math.max(hi, expected[i]);
    worst = Math.max(worst, Math.abs(got[i] - expected[i]));
  }
  return worst / (hi - lo);
}

function assertRelative(name, got, expected, tolerance) {
  const error = Math.abs(got - expected) / Math.max(Math.abs(expected), 1e-12);
  assert.ok(error <= tolerance, `${name}: got ${got}, reference ${expected} (relative error ${error.toExponential(2)} > ${tolerance})`);
}

for (const [name, spec] of Object.entries(index)) {
  test(`${name} matches the reference`, async () => {
    const fixture = readSafetensors(`test/fixtures/models/${name}.safetensors`);
    const t = fixture.tensors;
    const live = liveTensorCount();
    const model = await SegmentationModel.create({ encoder: spec.encoder, decoder: spec.decoder, fcDim: spec.fc_dim, numClass: spec.num_class, init: 'procedural' });
    try {
      assert.equal(model.outputStride, spec.output_stride);

      // Eval: log-probabilities at feature resolution (and the deep-supervision head's).
      const out = await model.forward(t['eval.input']);
      assert.deepEqual(out.logprob.shape, t['eval.logprob'].shape);
      const logprobError = relativeMaxError(out.logprob.data(), t['eval.logprob'].data);
      assert.ok(logprobError <= 1e-3, `eval.logprob error ${logprobError}`);
      if (t['eval.logprob_deepsup']) {
        assert.ok(out.logprobDeepsup, 'deep-supervision head present');
        const e = relativeMaxError(out.logprobDeepsup.data(), t['eval.logprob_deepsup'].data);
        assert.ok(e <= 1e-3, `eval.logprob_deepsup error ${e}`);
      } else {
        assert.equal(out.logprobDeepsup, undefined);
      }
      out.logprob.dispose();
      out.logprobDeepsup?.dispose();

      // Inference path: full-size probabilities -> argmax, max probability.
      const [H, W] = spec.eval_hw;
      const probs = await model.predict(t['eval.input'], { segSize: [H, W] });
      assert.deepEqual(probs.shape, [1, spec.num_class, H, W]);
      const p = probs.data();
      const pred = t['eval.pred'].data, margin = t['eval.pred_margin'].data, maxProb = t['eval.pred_prob'].data;
      let differing = 0, probError = 0;
      for (let i = 0; i < H * W; i++) {
        let best = 0, bestValue = -1;
        for (let c = 0; c < spec.num_class; c++) {
          const v = p[c * H * W + i];
          if (v > bestValue) { bestValue = v; best = c; }
        }
        if (margin[i] > 1e-3 && best !== pred[i]) differing++;
        probError = Math.max(probError, Math.abs(bestValue - maxProb[i]));
      }
      probs.dispose();
      assert.equal(differing, 0, `${differing} confident pixels predicted differently`);
      assert.ok(probError <= 1e-3, `pred_prob error ${probError}`);

      // Training: three SGD steps on one batch (dropout off, BN momentum 0.001 as the reference).
      model.train().setDropout(0);
      for (let step = 1; step <= 3; step++) {
        const r = await model.trainStep(t['train.input'], t['train.label'], { lrEncoder: 0.02, lrDecoder: 0.02, momentum: 0.9, weightDecay: 1e-4 });
        assertRelative(`train.loss${step}`, r.loss, Number(fixture.metadata[`train.loss${step}`]), 1e-4);
        assertRelative(`train.acc${step}`, r.accuracy, Number(fixture.metadata[`train.acc${step}`]), 1e-4);
        if (step === 1) {
          assertRelative('grad_norm_encoder1', r.gradNormEncoder, Number(fixture.metadata['train.grad_norm_encoder1']), 1e-3);
          assertRelative('grad_norm_decoder1', r.gradNormDecoder, Number(fixture.metadata['train.grad_norm_decoder1']), 1e-3);
        }
      }
      const state = await model.stateDict();
      let runningMeanSum = 0;
      for (const [key, tensor] of state) {
        if (key.startsWith('encoder.') && key.endsWith('.running_mean') && !key.endsWith('_tmp_running_mean')) {
          for (const v of tensor.data()) runningMeanSum += v;
        }
        tensor.dispose();
      }
      assertRelative('encoder_running_mean_sum', runningMeanSum, Number(fixture.metadata['train.encoder_running_mean_sum']), 1e-4);
    } finally {
      model.dispose();
    }
    assert.equal(liveTensorCount(), live, 'no tensor leaked');
  });
}
