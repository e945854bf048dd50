// ONNX export (lib/onnx): every reference fixture case exported with procedural weights and run
// by onnxruntime-node at the fixture's input size and at two sizes of other aspect ratios:
// `logprob` equals segtool's LibTorch forward within 1e-4 of its range, `pred` equals segtool's
// argmax wherever the top-two margin is clear, `prob` its probability. Plus: metadata, dynamic
// batch, opsets, every encoder and decoder name has an export, and errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { SegmentationModel, architectures, exportOnnx, ADE20K_CLASS_NAMES, ade20kPalette, defaultClassInfo, setNumThreads, getNumThreads } from '../dist/index.js';
import { EXPORTED_DECODERS, EXPORTED_ENCODERS, buildSegmentationGraph } from '../dist/onnx/networks.js';
import { readSafetensors } from './helpers/safetensors.mjs';
import { prng } from './helpers/prng.mjs';

const { onnx } = createRequire(import.meta.url)('onnx-proto');
const index = JSON.parse(readFileSync('test/fixtures/models/index.json', 'utf8'));
const out = join('test/tmp', `onnx-${process.pid}`);
mkdirSync(out, { recursive: true });
process.on('exit', () => rmSync(out, { recursive: true, force: true }));

/** Two sizes whose aspect ratios differ from the fixtures' (3:2 and 13:9): portrait 2:3 and wide 5:2. */
const OTHER_SIZES = [
  [96, 64],
  [64, 160],
];

function randomInput(shape, seed) {
  const next = prng(seed);
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = (next() * 2 - 1) * 2;
  return { data, shape };
}

function range(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  return hi - lo;
}

function relativeMaxError(got, expected) {
  assert.equal(got.length, expected.length);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(got[i] - expected[i]));
  return worst / range(expected);
}

function session(path) {
  return ort.InferenceSession.create(path, { intraOpNumThreads: getNumThreads(), interOpNumThreads: 1 });
}

/** segtool's full-size prediction of `input`: labels, confidence and the top-two margin per pixel. */
async function segtoolPrediction(model, input) {
  const p = await model.predictClasses(input, { probabilities: true });
  const [, classes, h, w] = p.probabilities.shape;
  const probs = p.probabilities.data();
  const margin = new Float32Array(h * w);
  for (let i = 0; i < h * w; i++) {
    let first = -1, second = -1;
    for (let c = 0; c < classes; c++) {
      const v = probs[c * h * w + i];
      if (v > first) { second = first; first = v; } else if (v > second) second = v;
    }
    margin[i] = first - second;
  }
  const result = { labels: Int32Array.from(p.labels.data()), confidence: Float32Array.from(p.confidence.data()), margin };
  p.labels.dispose();
  p.confidence.dispose();
  p.probabilities.dispose();
  return result;
}

setNumThreads(Math.min(2, getNumThreads()));

for (const [name, spec] of Object.entries(index)) {
  test(`${name}: onnxruntime equals segtool at 3 sizes`, async () => {
    const fixture = readSafetensors(`test/fixtures/models/${name}.safetensors`).tensors;
    const model = await SegmentationModel.create({ encoder: spec.encoder, decoder: spec.decoder, fcDim: spec.fc_dim, numClass: spec.num_class, init: 'procedural' });
    const path = join(out, `${name}.onnx`);
    try {
      const report = await exportOnnx(model, path, { fullSize: true });
      assert.deepEqual(report.outputs, ['logprob', 'pred', 'prob']);
      const s = await session(path);
      const sizes = [spec.eval_hw, ...OTHER_SIZES];
      for (const [k, [h, w]] of sizes.entries()) {
        const input = k === 0 ? fixture['eval.input'] : randomInput([1, 3, h, w], 1000 + k);
        const result = await s.run({ input: new ort.Tensor('float32', input.data, [1, 3, h, w]) });
        const ref = await model.forward(input);
        const stride = spec.output_stride;
        assert.deepEqual(result.logprob.dims, ref.logprob.shape, `${h}x${w}: logprob shape`);
        assert.deepEqual(ref.logprob.shape, [1, spec.num_class, Math.ceil(h / stride), Math.ceil(w / stride)]);
        const error = relativeMaxError(result.logprob.data, ref.logprob.data());
        const logRange = range(ref.logprob.data());
        ref.logprob.dispose();
        ref.logprobDeepsup?.dispose();
        assert.ok(error <= 1e-4, `${h}x${w}: logprob differs from segtool by ${error.toExponential(2)} of its range`);
        if (k === 0) {
          // And the reference implementation's own numbers (test/fixtures/README.md tolerance).
          const e = relativeMaxError(result.logprob.data, fixture['eval.logprob'].data);
          assert.ok(e <= 1e-3, `logprob differs from the fixture's eval.logprob by ${e.toExponential(2)}`);
        }

        const pred = await segtoolPrediction(model, input);
        assert.deepEqual(result.pred.dims, [1, h, w]);
        assert.equal(result.pred.type, 'int64');
        assert.deepEqual(result.prob.dims, [1, h, w]);
        let clear = 0, differing = 0, probError = 0;
        const labels = result.pred.data;
        for (let i = 0; i < h * w; i++) {
          if (pred.margin[i] > 1e-3) {
            clear++;
            if (Number(labels[i]) !== pred.labels[i]) differing++;
          }
          probError = Math.max(probError, Math.abs(Math.log(result.prob.data[i]) - Math.log(pred.confidence[i])) / logRange);
        }
        assert.ok(clear > (h * w) / 2, `${h}x${w}: most pixels have a clear margin (${clear} of ${h * w})`);
        assert.equal(differing, 0, `${h}x${w}: ${differing} of ${clear} clear pixels predicted differently`);
        assert.ok(probError <= 1e-4, `${h}x${w}: prob differs by ${probError.toExponential(2)}`);
      }
      await s.release();
    } finally {
      model.dispose();
      rmSync(path, { force: true });
    }
  });
}

test('batch size is dynamic: a batch of two equals each image alone', async () => {
  const model = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'ppm_deepsup', init: 'procedural' });
  const path = join(out, 'batch.onnx');
  try {
    await exportOnnx(model, path);
    const s = await session(path);
    const [h, w] = [48, 80];
    const a = randomInput([1, 3, h, w], 1), b = randomInput([1, 3, h, w], 2);
    const both = new Float32Array(a.data.length * 2);
    both.set(a.data, 0);
    both.set(b.data, a.data.length);
    const batch = await s.run({ input: new ort.Tensor('float32', both, [2, 3, h, w]) });
    assert.deepEqual(batch.logprob.dims, [2, 150, 6, 10]);
    const half = batch.logprob.data.length / 2;
    for (const [i, x] of [a, b].entries()) {
      const single = await s.run({ input: new ort.Tensor('float32', x.data, [1, 3, h, w]) });
      const error = relativeMaxError(batch.logprob.data.subarray(i * half, (i + 1) * half), single.logprob.data);
      assert.ok(error <= 1e-5, `image ${i} in a batch differs by ${error}`);
    }
    assert.deepEqual(Object.keys(batch), ['logprob']);
    await s.release();
  } finally {
    model.dispose();
    rmSync(path, { force: true });
  }
});

test('the model file: dynamic axes, folded BatchNorm, opset and metadata', async () => {
  const model = await SegmentationModel.create({ encoder: 'resnet18dilated', decoder: 'ppm_deepsup', init: 'procedural' });
  const path = join(out, 'meta.onnx');
  try {
    const report = await exportOnnx(model, path, { fullSize: true, normalization: 'legacy-bgr', imgSizes: [300, 400], imgMaxSize: 800, paddingConstant: 8 });
    const proto = onnx.ModelProto.decode(readFileSync(path));
    assert.equal(report.bytes, readFileSync(path).length);
    assert.deepEqual(proto.opsetImport.map((o) => [o.domain, Number(o.version)]), [['', 17]]);
    const dims = (v) => v.type.tensorType.shape.dim.map((d) => (d.dimParam ? d.dimParam : Number(d.dimValue)));
    assert.deepEqual(proto.graph.input.map((v) => [v.name, v.type.tensorType.elemType, dims(v)]), [['input', 1, ['batch', 3, 'height', 'width']]]);
    assert.deepEqual(
      proto.graph.output.map((v) => [v.name, v.type.tensorType.elemType, dims(v)]),
      [
        ['logprob', 1, ['batch', 150, 'feature_height', 'feature_width']],
        ['pred', 7, ['batch', 'height', 'width']],
        ['prob', 1, ['batch', 'height', 'width']],
      ],
    );
    const ops = new Set(proto.graph.node.map((n) => n.opType));
    assert.ok(!ops.has('BatchNormalization') && !ops.has('Dropout'), `no BatchNorm or Dropout nodes (${[...ops].join(', ')})`);
    for (const op of ['Conv', 'Resize', 'Slice', 'ReduceMean', 'GlobalAveragePool', 'LogSoftmax', 'ArgMax']) assert.ok(ops.has(op), `uses ${op}`);
    assert.ok(!proto.graph.initializer.some((t) => /deepsup/.test(t.name)), 'no deep-supervision weights');
    const meta = Object.fromEntries(proto.metadataProps.map((p) => [p.key, p.value]));
    assert.deepEqual(meta, report.metadata);
    assert.equal(meta.encoder, 'resnet18dilated');
    assert.equal(meta.decoder, 'ppm_deepsup');
    assert.equal(meta.num_class, '150');
    assert.equal(meta.output_stride, '8');
    assert.deepEqual(JSON.parse(meta.class_names), [...ADE20K_CLASS_NAMES]);
    assert.deepEqual(JSON.parse(meta.palette), [...ade20kPalette()]);
    assert.deepEqual(JSON.parse(meta.normalization), { preset: 'legacy-bgr', order: [2, 1, 0], scale: 1, mean: [102.9801, 115.9465, 122.7717], std: [1, 1, 1] });
    assert.deepEqual(JSON.parse(meta.img_sizes), [300, 400]);
    assert.equal(meta.img_max_size, '800');
    assert.equal(meta.padding_constant, '8');
  } finally {
    model.dispose();
    rmSync(path, { force: true });
  }
});

test('opsets 13 and 21 (axes as attributes, then as inputs) give the same logprob', async () => {
  const model = await SegmentationModel.create({ encoder: 'resnet18', decoder: 'ppm', numClass: 7, init: 'procedural' });
  try {
    const input = randomInput([1, 3, 72, 136], 7);
    const outputs = [];
    for (const opset of [13, 21]) {
      const path = join(out, `opset${opset}.onnx`);
      const report = await exportOnnx(model, path, { opset, fullSize: true, classNames: ['a', 'b', 'c', 'd', 'e', 'f', 'g'] });
      assert.equal(report.opset, opset);
      const s = await session(path);
      outputs.push(await s.run({ input: new ort.Tensor('float32', input.data, input.shape) }));
      await s.release();
      rmSync(path, { force: true });
    }
    const ref = await model.forward(input);
    for (const o of outputs) assert.ok(relativeMaxError(o.logprob.data, ref.logprob.data()) <= 1e-4);
    assert.deepEqual(outputs[0].pred.data, outputs[1].pred.data);
    ref.logprob.dispose();
  } finally {
    model.dispose();
  }
});

test('every encoder and decoder name (aliases too) has an ONNX description that reads all its weights', async () => {
  const { encoders, decoders } = architectures();
  const built = new Set();
  const dryRun = (model) => {
    const info = model.info;
    const key = `${info.encoder}+${info.decoder}`;
    if (built.has(key)) return;
    built.add(key);
    const shapes = new Map(model.shapes().map(([k, shape]) => [k, shape]));
    const source = { keys: () => shapes.keys(), shape: (k) => shapes.get(k), values: () => assert.fail('a dry run reads no values') };
    const g = buildSegmentationGraph(info, source, { opset: 17, fullSize: true });
    assert.ok(g.nodeCount > 5, key);
  };
  for (const encoder of encoders) {
    const model = await SegmentationModel.create({ encoder, decoder: 'c1' });
    try {
      assert.ok(EXPORTED_ENCODERS.includes(model.info.encoder), `encoder ${encoder} (${model.info.encoder}) has an ONNX description`);
      dryRun(model);
    } finally {
      model.dispose();
    }
  }
  for (const decoder of decoders) {
    const model = await SegmentationModel.create({ encoder: 'resnet50dilated', decoder });
    try {
      assert.ok(EXPORTED_DECODERS.includes(model.info.decoder), `decoder ${decoder} (${model.info.decoder}) has an ONNX description`);
      dryRun(model);
    } finally {
      model.dispose();
    }
  }
  // And nothing is described that the native library does not build.
  const canonical = [...built].map((k) => k.split('+'));
  assert.deepEqual(new Set(canonical.map(([e]) => e)), new Set(EXPORTED_ENCODERS));
  assert.deepEqual(new Set(canonical.map(([, d]) => d)), new Set(EXPORTED_DECODERS));
});

test('a weight the description does not read, or an unknown architecture, fails the export', async () => {
  const model = await SegmentationModel.create({ encoder: 'resnet18', decoder: 'c1', init: 'procedural' });
  try {
    const shapes = new Map(model.shapes().map(([k, shape]) => [k, shape]));
    shapes.set('encoder.layer4.1.conv9.weight', [512, 512, 3, 3]);
    const source = { keys: () => shapes.keys(), shape: (k) => shapes.get(k), values: () => new Float32Array(0) };
    assert.throws(() => buildSegmentationGraph(model.info, source, { opset: 17, fullSize: false }), {
      code: 'ERR_EXPORT',
      message: /does not read these weights of the model: encoder\.layer4\.1\.conv9\.weight/,
    });
    assert.throws(() => buildSegmentationGraph({ ...model.info, encoder: 'vit_b16' }, source, { opset: 17, fullSize: false }), {
      code: 'ERR_EXPORT',
      message: /No ONNX description of encoder vit_b16/,
    });
  } finally {
    model.dispose();
  }
});

test('exportOnnx validates its arguments', async () => {
  const model = await SegmentationModel.create({ encoder: 'resnet18', decoder: 'c1', numClass: 3, init: 'procedural' });
  const path = join(out, 'bad.onnx');
  try {
    await assert.rejects(exportOnnx({}, path), { code: 'ERR_INVALID_ARG', message: /Expected a SegmentationModel for model/ });
    await assert.rejects(exportOnnx(model, path, { opset: 12 }), { code: 'ERR_INVALID_ARG', message: /options\.opset/ });
    await assert.rejects(exportOnnx(model, path, { fullsize: true }), { code: 'ERR_INVALID_ARG', message: /Unknown export option "fullsize"/ });
    await assert.rejects(exportOnnx(model, path, { classNames: ['a', 'b'] }), { code: 'ERR_INVALID_ARG', message: /an array of 3 strings/ });
    await assert.rejects(exportOnnx(model, path, { palette: [1, 2, 3] }), { code: 'ERR_INVALID_ARG', message: /9 RGB bytes/ });
    await assert.rejects(exportOnnx(model, path, { normalization: 'bgr' }), { code: 'ERR_INVALID_ARG', message: /options\.normalization/ });
    // A busy model is refused before anything is written.
    const pending = model.forward(randomInput([1, 3, 32, 32], 3));
    await assert.rejects(exportOnnx(model, path), { code: 'ERR_BUSY' });
    (await pending).logprob.dispose();
    // Defaults for a non-ADE20K class count: class_N names and the generated palette, as everywhere else.
    const report = await exportOnnx(model, path);
    assert.deepEqual(JSON.parse(report.metadata.class_names), ['class_0', 'class_1', 'class_2']);
    assert.deepEqual(JSON.parse(report.metadata.palette), [...defaultClassInfo(3).palette]);
  } finally {
    model.dispose();
    rmSync(path, { force: true });
  }
});

test('segtool export: config + encoder/decoder files -> an ONNX model of those weights', async () => {
  const path = join(out, 'cli.onnx');
  const weights = ['--weights-encoder', 'test/fixtures/checkpoints/legacy-cuda/encoder_epoch_20.pth', '--weights-decoder', 'test/fixtures/checkpoints/legacy-cuda/decoder_epoch_20.pth'];
  const cli = (args) => spawnSync(process.execPath, ['bin/segtool', 'export', ...args], { encoding: 'utf8' });
  const r = cli(['--cfg', 'mobilenetv2dilated-c1_deepsup', ...weights, '--onnx', path, '--full-size', '--opset', '18', '--threads', '1', 'DATASET.imgSizes', '[320]']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /mobilenetv2dilated \+ c1_deepsup \(150 classes\) -> .*cli\.onnx \(.* MiB, opset 18, \d+ nodes\)/);
  const proto = onnx.ModelProto.decode(readFileSync(path));
  const meta = Object.fromEntries(proto.metadataProps.map((p) => [p.key, p.value]));
  assert.equal(meta.img_sizes, '[320]');
  assert.equal(meta.outputs, 'logprob,pred,prob');
  // The fixture checkpoint holds the procedural weights: the file computes the procedural model.
  const model = await SegmentationModel.create({ encoder: 'mobilenetv2dilated', decoder: 'c1_deepsup', init: 'procedural' });
  try {
    const input = randomInput([1, 3, 40, 56], 9);
    const s = await session(path);
    const got = await s.run({ input: new ort.Tensor('float32', input.data, input.shape) });
    const ref = await model.forward(input);
    assert.ok(relativeMaxError(got.logprob.data, ref.logprob.data()) <= 1e-4);
    ref.logprob.dispose();
    ref.logprobDeepsup?.dispose();
    await s.release();
  } finally {
    model.dispose();
    rmSync(path, { force: true });
  }
  const both = cli(['--cfg', 'mobilenetv2dilated-c1_deepsup', ...weights, '--checkpoint', 'x.pth', '--onnx', path]);
  assert.notEqual(both.status, 0);
  assert.match(both.stderr, /either --checkpoint or --weights-encoder and --weights-decoder/);
  const one = cli(['--cfg', 'mobilenetv2dilated-c1_deepsup', ...weights.slice(0, 2), '--onnx', path]);
  assert.match(one.stderr, /Expected both --weights-encoder and --weights-decoder but received only --weights-encoder/);
  assert.ok(!existsSync(path));
});
