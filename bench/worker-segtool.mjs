#!/usr/bin/env node
// segtool's side of one benchmark measurement, in its own process (so that its peak RSS is
// its own). Argument: a JSON job (see run.mjs). Protocol on stdin/stdout, one line each, so
// that the runner can alternate repetitions with the baseline's process:
//   -> READY {json}          model built, inputs made, peak RSS reset
//   <- warmup | rep          one untimed / timed run      -> DONE <ms>
//   <- stages                instrumented run (infer)      -> STAGES {json}
//   <- end                                                 -> RESULT {json}, exit
// Progress goes to stderr.
//
// Tasks:
//   infer  segtool's inference path as segment() runs it (lib/segment.ts, without image
//          decoding and resizing, which the baseline does not time either): predictMultiScale
//          = the network per scale, then the fused native head (upsample, softmax, average
//          over scales, argmax, row by row). One scale = single-scale.
//   train  model.trainStep on a 2 x 3 x 256 x 320 batch (SGD, momentum 0.9, wd 1e-4).
//   forward  model.forward at one scale: the network's log-probabilities at the output stride,
//          what the exported ONNX model computes (compared with bench/worker-onnxruntime.mjs).
// job.precision 'bf16' (run.mjs's 'segtool-bf16' side): the model's precision option, i.e. CPU
// autocast, with eval inference's folded weights kept in bfloat16.
import { createInterface } from 'node:readline';
import { memory, proceduralFloat32, proceduralLabel, resetPeak } from './common.mjs';

const job = JSON.parse(process.argv[2]);
// A failure ends the process with its message as the last line of stderr, which run.mjs quotes
// in its notes (Node's own report ends with the error's fields and its version banner).
process.on('uncaughtException', (error) => {
  console.error(`segtool worker, ${job.model} ${job.task}: ${error?.code ? `${error.code}: ` : ''}${error?.message ?? error}`);
  process.exit(1);
});
const segtool = await import('../dist/index.js');
const { predictMultiScale } = await import('../dist/inference/infer.js');
segtool.setNumThreads(job.threads);

const now = () => performance.now();
const send = (line) => process.stdout.write(`${line}\n`);
// Between runs (untimed): collect the previous run's garbage, so that the peak RSS is one
// run's and not V8's lazily collected Float32Arrays of several (run.mjs passes --expose-gc).
const collect = () => globalThis.gc?.();

const [encoder, decoder] = job.model.split('-');
let t0 = now();
// job.fuse false: the unfused inference graph (run.mjs's 'segtool-unfused' side).
const model = await segtool.SegmentationModel.create({ encoder, decoder, init: 'procedural', fuse: job.fuse ?? true, precision: job.precision ?? 'fp32' });
const result = {
  side: 'segtool',
  model: job.model,
  task: job.task,
  precision: model.info.precision,
  threads: segtool.getNumThreads(),
  createMs: now() - t0,
  fuse: model.info.fuse,
};

let run; // one run of the task
let stages = null; // the instrumented run, for infer
if (job.task === 'infer') {
  model.eval();
  const [H, W] = job.image;
  const inputs = job.scales.map(([w, h]) => ({ data: proceduralFloat32(`bench.input.${h}x${w}`, 3 * h * w), shape: [1, 3, h, w] }));
  run = async () => {
    await predictMultiScale(model, inputs, H, W);
  };
  // Where segtool's time goes: the network (predictClasses at the logits' own size: no
  // upsampling, the fused head over h/8 x w/8 pixels) against the whole path.
  const featureSize = new Map();
  stages = async () => {
    const s = { network: 0, total: 0 };
    for (const input of inputs) {
      if (!featureSize.has(input)) {
        const f = await model.forward(input);
        featureSize.set(input, f.logprob.shape.slice(2));
        f.logprob.dispose();
        f.logprobDeepsup?.dispose();
      }
      t0 = now();
      const out = await model.predictClasses(input, { segSize: featureSize.get(input) });
      s.network += now() - t0;
      out.labels.dispose();
      out.confidence?.dispose();
    }
    t0 = now();
    await predictMultiScale(model, inputs, H, W);
    s.total = now() - t0;
    s.head = s.total - s.network;
    return s;
  };
} else if (job.task === 'train') {
  model.train();
  const [B, C, h, w] = job.batch;
  const stride = model.outputStride;
  const lh = Math.ceil(h / stride), lw = Math.ceil(w / stride);
  const input = { data: proceduralFloat32('bench.train.input', B * C * h * w), shape: [B, C, h, w] };
  const label = { data: proceduralLabel('bench.train.label', B * lh * lw), shape: [B, lh, lw] };
  result.losses = [];
  run = async () => {
    const r = await model.trainStep(input, label, { lrEncoder: 0.02, lrDecoder: 0.02, momentum: 0.9, weightDecay: 1e-4 });
    result.losses.push(r.loss);
  };
} else if (job.task === 'forward') {
  model.eval();
  const [[w, h]] = job.scales;
  const input = { data: proceduralFloat32(`bench.input.${h}x${w}`, 3 * h * w), shape: [1, 3, h, w] };
  run = async () => {
    const out = await model.forward(input);
    out.logprob.dispose();
    out.logprobDeepsup?.dispose();
  };
} else {
  throw new Error(`unknown task ${job.task}`);
}

result.rssAfterLoad = memory().rss;
result.peakReset = resetPeak();
result.times = [];
result.warmupTimes = [];
result.stages = [];
send(`READY ${JSON.stringify({ createMs: result.createMs, rssAfterLoad: result.rssAfterLoad })}`);

const lines = createInterface({ input: process.stdin });
for await (const command of lines) {
  if (command === 'warmup' || command === 'rep') {
    collect();
    t0 = now();
    await run();
    const ms = now() - t0;
    (command === 'rep' ? result.times : result.warmupTimes).push(ms);
    send(`DONE ${ms}`);
  } else if (command === 'stages') {
    result.peakRss ??= memory().peak; // the timed runs' peak, not the instrumented run's
    collect();
    const s = stages ? await stages() : null;
    if (s) result.stages.push(s);
    send(`STAGES ${JSON.stringify(s)}`);
  } else if (command === 'end') {
    break;
  } else {
    throw new Error(`unknown command ${command}`);
  }
}
result.peakRss ??= memory().peak;
model.dispose();
send(`RESULT ${JSON.stringify(result)}`);
process.exit(0);
