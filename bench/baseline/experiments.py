"""What the optimisations of issue 10 could gain, measured on the same LibTorch 1.13 through
PyTorch (the ops segtool would call are the same ATen ops). Not part of `npm run bench`:

  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/baseline/experiments.py [--models ...] [--reps N]

For each model, on a 1 x 3 x 304 x 400 input (the single-scale bench input), median ms of:
  network:     as is (eval, no_grad) | inference_mode | BatchNorm folded into the convolutions |
               channels_last | channels_last + folded | 1 thread
  head (logits -> 300 x 400 prediction):
    reference    zeros + softmax(upsample) / n + max (the reference's test loop, one scale)
    inplace      upsample, softmax in place, max (segtool's forward_probs + an argmax)
    argmax-only  upsample, argmax (labels only: softmax is monotonic)
    banded       predict.cc's way: bands of rows (<= 4 Mi elements), upsample, softmax, max
With --mkldnn instead: oneDNN weight prepacking (torch.utils.mkldnn.to_mkldnn: convolution
weights reordered once instead of every call) with dense activations, and the encoder run end
to end in oneDNN's blocked layout (x.to_mkldnn(); back to dense for the decoder).
Prints a table and writes bench/out/experiments[-mkldnn].json.
"""
import argparse
import copy
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procedural import apply_procedural, procedural_input  # noqa: E402
from segnet import SegmentationModule  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def fold_bn(module):
    """Folds every BatchNorm2d that directly follows a Conv2d in a Sequential or in the
    attribute pairs (conv1, bn1), (conv2, bn2), ... of a block into that convolution."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    for name, child in list(module.named_children()):
        fold_bn(child)
    if isinstance(module, nn.Sequential):
        items = list(module._modules.items())
        for (n1, m1), (n2, m2) in zip(items, items[1:]):
            if isinstance(m1, nn.Conv2d) and isinstance(m2, nn.BatchNorm2d):
                module._modules[n1] = fuse_conv_bn_eval(m1, m2)
                module._modules[n2] = nn.Identity()
    for i in range(1, 4):
        conv, bn = getattr(module, f'conv{i}', None), getattr(module, f'bn{i}', None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(module, f'conv{i}', fuse_conv_bn_eval(conv, bn))
            setattr(module, f'bn{i}', nn.Identity())
    return module


def bench(fn, reps, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), min(times)


def row_weights(in_h, out_h, y0, y1):
    scale = in_h / out_h
    i0, i1, l1 = [], [], []
    for y in range(y0, y1):
        src = max(scale * (y + 0.5) - 0.5, 0.0)
        a = int(src)
        i0.append(a)
        i1.append(a + (1 if a < in_h - 1 else 0))
        l1.append(min(max(src - a, 0.0), 1.0))
    return torch.tensor(i0), torch.tensor(i1), torch.tensor(l1).view(1, 1, -1, 1)


def banded(logits, H, W, band_elements=1 << 22):
    b, c, h, w = logits.shape
    rows = max(1, band_elements // (b * c * W))
    pred = torch.empty(b, H, W, dtype=torch.long)
    prob = torch.empty(b, H, W)
    for y0 in range(0, H, rows):
        y1 = min(H, y0 + rows)
        i0, i1, l1 = row_weights(h, H, y0, y1)
        r0, r1 = int(i0[0]), int(i1[-1])
        src = F.interpolate(logits[:, :, r0:r1 + 1], size=(r1 - r0 + 1, W), mode='bilinear', align_corners=False)
        band = src.index_select(2, i0 - r0) * (1 - l1) + src.index_select(2, i1 - r0) * l1
        p, a = torch.softmax(band, 1).max(1)
        pred[:, y0:y1] = a
        prob[:, y0:y1] = p
    return pred, prob


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--models', default='resnet18dilated-c1_deepsup,resnet50dilated-ppm_deepsup,mobilenetv2dilated-c1_deepsup')
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--mkldnn', action='store_true')
    args = ap.parse_args()
    if args.mkldnn:
        return mkldnn_experiments(args)
    torch.set_num_threads(args.threads)
    H, W = 300, 400
    x = procedural_input('bench.input.304x400', (1, 3, 304, 400))
    out = dict(threads=args.threads, ompWaitPolicy=os.environ.get('OMP_WAIT_POLICY'), torch=torch.__version__, models={})
    for name in args.models.split(','):
        enc, dec = name.split('-')
        model = SegmentationModule(enc, dec)
        apply_procedural(model)
        model.eval()
        folded = fold_bn(copy.deepcopy(model)).eval()
        with torch.no_grad():
            ref = model.logits(x)[0]
            diff = float((folded.logits(x)[0] - ref).abs().max())
        r = {'foldedMaxAbsDiff': diff}

        def net(m, xx, mode=torch.no_grad):
            def f():
                with mode():
                    m.logits(xx)
            return f
        r['network'] = bench(net(model, x), args.reps)
        r['network inference_mode'] = bench(net(model, x, torch.inference_mode), args.reps)
        r['network BN folded'] = bench(net(folded, x), args.reps)
        cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        xcl = x.contiguous(memory_format=torch.channels_last)
        r['network channels_last'] = bench(net(cl, xcl), args.reps)
        clf = copy.deepcopy(folded).to(memory_format=torch.channels_last)
        r['network channels_last + folded'] = bench(net(clf, xcl), args.reps)
        torch.set_num_threads(1)
        r['network 1 thread'] = bench(net(model, x), args.reps)
        torch.set_num_threads(args.threads)

        logits = ref

        def head_reference():
            with torch.no_grad():
                scores = torch.zeros(1, 150, H, W)
                p = F.softmax(F.interpolate(logits, size=(H, W), mode='bilinear', align_corners=False), dim=1)
                scores = scores + p / 1
                torch.max(scores, dim=1)

        def head_inplace():
            with torch.inference_mode():
                u = F.interpolate(logits, size=(H, W), mode='bilinear', align_corners=False)
                u.sub_(u.max(1, keepdim=True)[0]).exp_()
                u.div_(u.sum(1, keepdim=True))
                u.max(1)

        def head_argmax():
            with torch.inference_mode():
                F.interpolate(logits, size=(H, W), mode='bilinear', align_corners=False).argmax(1)

        def head_banded():
            with torch.inference_mode():
                banded(logits, H, W)
        with torch.inference_mode():
            a = F.softmax(F.interpolate(logits, size=(H, W), mode='bilinear', align_corners=False), 1).max(1)
            b = banded(logits, H, W)
            r['bandedMismatch'] = int((a[1] != b[0]).sum())
        r['head reference'] = bench(head_reference, args.reps)
        r['head inplace'] = bench(head_inplace, args.reps)
        r['head argmax-only'] = bench(head_argmax, args.reps)
        r['head banded'] = bench(head_banded, args.reps)
        out['models'][name] = r
        print(name, f"(BN folding max abs diff {diff:.2g}, banded argmax mismatches {r['bandedMismatch']})")
        base = r['network'][0]
        for k, v in r.items():
            if isinstance(v, tuple):
                rel = f'  {base / v[0]:.2f}x vs network' if k.startswith('network') and k != 'network' else ''
                print(f'  {k:34s} median {v[0]:8.1f} ms  min {v[1]:8.1f} ms{rel}')
        sys.stdout.flush()
    os.makedirs(os.path.join(ROOT, 'bench', 'out'), exist_ok=True)
    with open(os.path.join(ROOT, 'bench', 'out', 'experiments.json'), 'w') as f:
        json.dump(out, f, indent=1)


def mkldnn_experiments(args):
    from torch.utils import mkldnn as mkldnn_utils
    torch.set_num_threads(args.threads)
    x = procedural_input('bench.input.304x400', (1, 3, 304, 400))
    out = dict(threads=args.threads, ompWaitPolicy=os.environ.get('OMP_WAIT_POLICY'), torch=torch.__version__, models={})
    for name in args.models.split(','):
        enc, dec = name.split('-')
        model = SegmentationModule(enc, dec)
        apply_procedural(model)
        model.eval()
        # BN folded first (MkldnnBatchNorm only takes oneDNN-layout input), then every
        # Conv2d becomes torch.utils.mkldnn.MkldnnConv2d (weights reordered once).
        folded = fold_bn(copy.deepcopy(model)).eval()
        prepacked = mkldnn_utils.to_mkldnn(copy.deepcopy(folded))
        blocked_model = mkldnn_utils.to_mkldnn(copy.deepcopy(model))

        def run(m, layout):
            def f():
                with torch.no_grad():
                    if layout == 'dense':
                        return m.logits(x)[0]
                    feats = [t.to_dense() for t in m.encoder(x.to_mkldnn())]
                    return m.decoder(feats, False)[0]
            return f
        r = {}
        ref = run(model, 'dense')()
        variants = [('network', model, 'dense'), ('network BN folded', folded, 'dense'),
                    ('network BN folded + weights prepacked', prepacked, 'dense'),
                    ('network encoder in blocked layout', blocked_model, 'blocked'),
                    ('network folded + prepacked + blocked encoder', prepacked, 'blocked')]
        for label, m, layout in variants:
            try:
                diff = float((run(m, layout)() - ref).abs().max())
                r[label] = bench(run(m, layout), args.reps)
                r[label + ' max abs diff'] = diff
            except Exception as e:  # an op without a oneDNN-layout kernel
                r[label + ' error'] = str(e).strip().split('\n')[-1][:160]
        out['models'][name] = r
        print(name)
        for k, v in r.items():
            if isinstance(v, tuple):
                rel = f'  {r["network"][0] / v[0]:.2f}x vs network' if k != 'network' else ''
                print(f'  {k:36s} median {v[0]:8.1f} ms  min {v[1]:8.1f} ms{rel}')
            else:
                print(f'  {k}: {v}')
        sys.stdout.flush()
    with open(os.path.join(ROOT, 'bench', 'out', 'experiments-mkldnn.json'), 'w') as f:
        json.dump(out, f, indent=1)


if __name__ == '__main__':
    main()
