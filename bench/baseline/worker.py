"""The PyTorch baseline's side of one benchmark measurement, in its own process (so that its
peak RSS is its own). Argument: a JSON job (see bench/run.mjs). The same stdin/stdout protocol
as bench/worker-segtool.mjs (READY, warmup|rep -> DONE ms, profile -> PROFILE json,
end -> RESULT json); progress goes to stderr.

Tasks, written as the reference's scripts run them:
  infer    test.py / eval.py: under torch.no_grad(), scores = zeros(1, 150, H, W); for each
           scale scores = scores + softmax(upsample(logits, (H, W))) / n; then torch.max(scores, 1).
  train    train.py: zero_grad, forward (loss, acc), backward, SGD step of the encoder's and
           the decoder's optimizers (momentum 0.9, weight decay 1e-4 on conv weights), .item().
The `profile` command runs one infer under torch.autograd.profiler: self time per op.
"""
import json
import os
import sys
import time

import torch

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


encoder, decoder = job['model'].split('-')
t0 = time.perf_counter()
model = SegmentationModule(encoder, decoder)
apply_procedural(model)
result = dict(side='pytorch', model=job['model'], task=job['task'], threads=torch.get_num_threads(),
              createMs=(time.perf_counter() - t0) * 1000, torchVersion=torch.__version__)

if job['task'] == 'infer':
    model.eval()
    H, W = job['image']
    inputs = [procedural_input(f'bench.input.{h}x{w}', (1, 3, h, w)) for w, h in job['scales']]
    num_class = 150

    def run():
        with torch.no_grad():
            scores = torch.zeros(1, num_class, H, W)
            for x in inputs:
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
        run()
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
