"""The PyTorch baseline's side of one benchmark measurement, in its own process (so that its
peak RSS is its own). Argument: a JSON job (see bench/run.mjs). The same stdin/stdout protocol
as bench/worker-segtool.mjs (READY, warmup|rep -> DONE ms, profile -> PROFILE json,
end -> RESULT json); progress goes to stderr.

Tasks, written as the reference's scripts run them:
  infer    test.py / eval.py: under torch.no_grad(), scores = zeros(1, 150, H, W); for each
           scale scores = scores + softmax(upsample(logits, (H, W))) / n; then torch.max(scores, 1).
  train    train.py: zero_grad, forward (loss, acc), backward, SGD step of the encoder's and
           the decoder's optimizers (momentum 0.9, weight decay 1e-4 on conv weights), .item().
  ceiling  no model: the best rate (GFLOP/s) of large float32 (and, with job.precisions
           containing bf16, bfloat16) matrix products and of one big 3x3 convolution, at the
           job's thread count: what this CPU reaches in practice. Reported in RESULT.
job.precision 'bf16': infer's network and train's forward + loss under
torch.autocast('cpu', dtype=torch.bfloat16) (PyTorch's AMP recipe; backward and the SGD step
outside it; segnet.py casts the logits to float32 for the softmax / loss).

The first run (the warm-up, normally) also counts the convolutions' FLOPs with forward hooks on
nn.Conv2d (2 x output elements x in_channels/groups x kh x kw; for train x 3, the usual
forward + backward estimate), reported as convFlops: run.mjs divides it by the measured times.
The `profile` command runs one infer under torch.autograd.profiler: self time per op.
"""
import contextlib
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procedural import apply_procedural, procedural_input, procedural_label  # noqa: E402
from segnet import SegmentationModule, make_optimizers, output_stride  # noqa: E402

job = json.loads(sys.argv[1])
torch.set_num_threads(job['threads'])


def send(line):
    sys.stdout.write(line + '\n')
    sys.stdout.flush()


def memory():
    out = {}
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(('VmHWM:', 'VmRSS:')):
                key, value = line.split(':')
                out['peak' if key == 'VmHWM' else 'rss'] = int(value.split()[0]) * 1024
    return out


def reset_peak():
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def best_gflops(flops, fn, runs=5):
    """flops / the fastest of `runs` timed calls of fn (after one untimed), in GFLOP/s."""
    fn()
    best = float('inf')
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return flops / best / 1e9


def measure_ceiling(precisions):
    """GFLOP/s of torch.mm 2048 x 2048 and of a 3x3 convolution 256 -> 256 channels at 75 x 100
    (a 300 x 400 input at stride 4), per precision: explicit float32 / bfloat16 tensors, so that
    no cast is timed."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    x, w = torch.randn(1, 256, 75, 100), torch.randn(256, 256, 3, 3)
    mm_flops = 2 * n ** 3
    conv_flops = 2 * 256 * 75 * 100 * 256 * 3 * 3
    dtypes = {'fp32': torch.float32, 'bf16': torch.bfloat16}
    out = {}
    with torch.no_grad():
        for p in precisions:
            ap, bp, xp, wp = (t.to(dtypes[p]) for t in (a, b, x, w))
            out[p] = dict(mm=best_gflops(mm_flops, lambda: torch.mm(ap, bp)),
                          conv=best_gflops(conv_flops, lambda: F.conv2d(xp, wp, padding=1)))
    return out


def count_conv_flops(model, fn):
    """Runs fn() and returns the FLOPs of the nn.Conv2d forwards it ran (a multiply-add = 2)."""
    total = 0

    def hook(m, _inputs, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += 2 * out.numel() * (m.in_channels // m.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
    return total


precision = job.get('precision', 'fp32')
# The bf16 baseline: PyTorch's own CPU mixed precision, as its AMP recipe applies it.
autocast = (lambda: torch.autocast('cpu', dtype=torch.bfloat16)) if precision == 'bf16' else contextlib.nullcontext

if job['task'] == 'ceiling':
    result = dict(side='pytorch', task='ceiling', threads=torch.get_num_threads(), torchVersion=torch.__version__,
                  ceiling=measure_ceiling(job['precisions']))
    send('READY {}')
    for command in sys.stdin:
        if command.strip() == 'end':
            break
    send('RESULT ' + json.dumps(result))
    sys.exit(0)

encoder, decoder = job['model'].split('-')
t0 = time.perf_counter()
model = SegmentationModule(encoder, decoder)
apply_procedural(model)
result = dict(side='pytorch', model=job['model'], task=job['task'], precision=precision, threads=torch.get_num_threads(),
              createMs=(time.perf_counter() - t0) * 1000, torchVersion=torch.__version__)
# Forward + backward of a convolution ~ 3 forwards (the input gradient and the weight gradient).
conv_flops_per_forward_flop = 3 if job['task'] == 'train' else 1

if job['task'] == 'infer':
    model.eval()
    H, W = job['image']
    inputs = [procedural_input(f'bench.input.{h}x{w}', (1, 3, h, w)) for w, h in job['scales']]
    num_class = 150

    def run():
        with torch.no_grad():
            scores = torch.zeros(1, num_class, H, W)
            for x in inputs:
                with autocast():
                    pred_tmp = model.infer(x, (H, W))
                scores = scores + pred_tmp / len(inputs)
            _, pred = torch.max(scores, dim=1)
        return pred
elif job['task'] == 'train':
    model.train()
    B, C, h, w = job['batch']
    s = output_stride(encoder, decoder)
    x = procedural_input('bench.train.input', (B, C, h, w))
    label = procedural_label('bench.train.label', (B, -(-h // s), -(-w // s)))
    optimizers = make_optimizers(model)
    result['losses'] = []

    def run():
        model.zero_grad()
        with autocast():
            loss, acc = model(x, label)
            loss = loss.mean()
            acc = acc.mean()
        loss.backward()
        for o in optimizers:
            o.step()
        result['losses'].append(loss.item())
        acc.item()
else:
    raise SystemExit(f"unknown task {job['task']}")

result['rssAfterLoad'] = memory()['rss']
result['peakReset'] = reset_peak()
result['times'] = []
result['warmupTimes'] = []
send('READY ' + json.dumps(dict(createMs=result['createMs'], rssAfterLoad=result['rssAfterLoad'])))

for command in sys.stdin:
    command = command.strip()
    if command in ('warmup', 'rep'):
        t = time.perf_counter()
        if 'convFlops' in result:
            run()
        else:  # the hooks' cost (a Python call per convolution) is negligible, and normally untimed
            result['convFlops'] = count_conv_flops(model, run) * conv_flops_per_forward_flop
        ms = (time.perf_counter() - t) * 1000
        result['times' if command == 'rep' else 'warmupTimes'].append(ms)
        send(f'DONE {ms}')
    elif command == 'profile':
        result.setdefault('peakRss', memory()['peak'])  # the timed runs' peak, not the profiler's
        with torch.autograd.profiler.profile() as prof:
            run()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        ops = sorted(((e.key, e.self_cpu_time_total / 1000, e.count) for e in events), key=lambda r: -r[1])
        profile = dict(totalMs=total / 1000, ops=[dict(op=k, selfMs=ms, calls=c) for k, ms, c in ops])
        result.setdefault('profiles', []).append(profile)
        send('PROFILE ' + json.dumps(profile))
    elif command == 'end':
        break
    else:
        raise SystemExit(f'unknown command {command}')
result.setdefault('peakRss', memory()['peak'])
send('RESULT ' + json.dumps(result))
