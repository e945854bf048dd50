// The browser example: loads a model exported by `segtool export --full-size`, reads its
// metadata (normalisation, scales, class names, palette), segments an image with
// onnxruntime-web and draws the colour map. Its wasm files come from node_modules
// (examples/browser/serve.mjs serves them), nothing from the internet.
import * as ort from '/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs';

ort.env.wasm.wasmPaths = new URL('/node_modules/onnxruntime-web/dist/', location.href).href;
ort.env.wasm.numThreads = 1; // threads need a cross-origin-isolated page

const $ = (id) => document.getElementById(id);
const status = (text, state) => {
  $('status').textContent = text;
  document.body.dataset.state = state;
};

/** ModelProto.metadata_props (field 14: key 1, value 2) read with protobufjs's Reader. */
function readMetadata(bytes) {
  const reader = globalThis.protobuf.Reader.create(bytes);
  const props = {};
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 !== 14 || (tag & 7) !== 2) {
      reader.skipType(tag & 7);
      continue;
    }
    const end = reader.uint32() + reader.pos;
    let key = '', value = '';
    while (reader.pos < end) {
      const t = reader.uint32();
      if (t >>> 3 === 1) key = reader.string();
      else if (t >>> 3 === 2) value = reader.string();
      else reader.skipType(t & 7);
    }
    props[key] = value;
  }
  return props;
}

/** The test-time size of segtool (lib/data geometry): the short side to imgSizes[0], the long side at most imgMaxSize, padded up to the padding constant. */
function targetSize(width, height, meta) {
  const short = JSON.parse(meta.img_sizes)[0];
  const scale = Math.min(short / Math.min(width, height), Number(meta.img_max_size) / Math.max(width, height));
  const pad = Number(meta.padding_constant);
  const round = (x) => Math.ceil(Math.max(1, Math.trunc(x * scale)) / pad) * pad;
  return [round(width), round(height)];
}

async function loadModel(url) {
  const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
  const meta = readMetadata(bytes);
  if (!meta.outputs?.includes('pred')) throw new Error('this model has no pred output: export it with --full-size');
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  return { session, meta };
}

async function segment({ session, meta }, image) {
  const [w, h] = targetSize(image.naturalWidth, image.naturalHeight, meta);
  const canvas = $('image');
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(image, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  // input[c] = (rgb[order[c]] / scale - mean[c]) / std[c], as segtool normalises.
  const norm = JSON.parse(meta.normalization);
  const input = new Float32Array(3 * w * h);
  for (let c = 0; c < 3; c++) {
    const [o, m, s] = [norm.order[c], Math.fround(norm.mean[c]), Math.fround(norm.std[c])];
    for (let i = 0; i < w * h; i++) input[c * w * h + i] = Math.fround(Math.fround(Math.fround(rgba[4 * i + o] / norm.scale) - m) / s);
  }
  const started = performance.now();
  const out = await session.run({ input: new ort.Tensor('float32', input, [1, 3, h, w]) });
  const ms = performance.now() - started;
  const labels = Int32Array.from(out.pred.data, Number);
  const palette = JSON.parse(meta.palette);
  const names = JSON.parse(meta.class_names);
  const view = $('labels');
  view.width = w;
  view.height = h;
  const colours = new ImageData(w, h);
  const counts = new Map();
  labels.forEach((c, i) => {
    colours.data.set([palette[3 * c], palette[3 * c + 1], palette[3 * c + 2], 255], 4 * i);
    counts.set(c, (counts.get(c) ?? 0) + 1);
  });
  view.getContext('2d').putImageData(colours, 0, 0);
  const classes = [...counts].sort((a, b) => b[1] - a[1]).map(([c, n]) => ({ index: c, name: names[c], ratio: n / labels.length }));
  $('classes').replaceChildren(
    ...classes.slice(0, 10).map(({ index, name, ratio }) => {
      const li = document.createElement('li');
      const swatch = document.createElement('span');
      swatch.style.background = `rgb(${palette.slice(3 * index, 3 * index + 3).join(',')})`;
      li.append(swatch, `${name}: ${(100 * ratio).toFixed(1)}%`);
      return li;
    }),
  );
  return { width: w, height: h, labels: [...labels], classes, ms };
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load image ${src}`));
    img.src = src;
  });
}

let model = null;
async function run(modelUrl, imageUrl) {
  try {
    if (modelUrl) {
      status('loading the model…', 'loading');
      model = await loadModel(modelUrl);
    }
    if (!model || !imageUrl) {
      status(model ? `${model.meta.encoder} + ${model.meta.decoder} loaded: choose an image` : 'choose a model', 'waiting');
      return;
    }
    status('segmenting…', 'running');
    const result = await segment(model, await loadImage(imageUrl));
    window.segtoolResult = result;
    status(`${model.meta.encoder} + ${model.meta.decoder}: ${result.width} x ${result.height} in ${result.ms.toFixed(0)} ms`, 'done');
  } catch (error) {
    window.segtoolError = String(error?.message ?? error);
    status(`error: ${window.segtoolError}`, 'error');
  }
}

$('model-file').addEventListener('change', (e) => e.target.files[0] && run(URL.createObjectURL(e.target.files[0]), null));
$('image-file').addEventListener('change', (e) => e.target.files[0] && run(null, URL.createObjectURL(e.target.files[0])));
const params = new URLSearchParams(location.search);
run(params.get('model'), params.get('image'));
