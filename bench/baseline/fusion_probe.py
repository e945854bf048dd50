"""What the fused inference graph can win, measured in PyTorch eager on this LibTorch (issue 18
item 1, docs/performance.md): per-op self time of one single-scale inference, then the same
network (a) as is, (b) with every BatchNorm folded into its convolution (ReLU in place after the
conv), (c) folded and converted by torch.utils.mkldnn (weights prepacked in oneDNN's layout,
activations kept in it between layers), timed in alternation, medians.

    python3 bench/baseline/fusion_probe.py [--models a-b,..] [--reps N] [--threads N]
"""
import argparse, copy, statistics, sys, time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).parent))
from segnet import SegmentationModule  # noqa: E402
from procedural import apply_procedural  # noqa: E402


def fold(module):
    """Every (Conv2d, BatchNorm2d) pair that is consecutive in a Sequential or named convN/bnN
    folded: conv weight * gamma/sqrt(var+eps), bias beta - mean*gamma/sqrt(var+eps); BN -> Identity."""
    def fold_pair(conv, bn):
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w = conv.weight * scale.view(-1, 1, 1, 1)
        b = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            b = b + conv.bias * scale
        conv.weight = nn.Parameter(w.detach())
        conv.bias = nn.Parameter(b.detach())
    for m in module.modules():
        children = list(m.named_children())
        for (n1, c1), (n2, c2) in zip(children, children[1:]):
            if isinstance(c1, nn.Conv2d) and isinstance(c2, nn.BatchNorm2d):
                fold_pair(c1, c2)
                setattr(m, n2, nn.Identity())
    return module


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--models', default='resnet18dilated-c1_deepsup,resnet50dilated-ppm_deepsup,resnet50-upernet,mobilenetv2dilated-c1_deepsup,hrnetv2-c1')
    p.add_argument('--reps', type=int, default=5)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--size', default='300x400')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    h, w = map(int, a.size.split('x'))
    x = torch.randn(1, 3, h, w)
    for name in a.models.split(','):
        enc, dec = name.split('-')
        base = SegmentationModule(enc, dec)
        apply_procedural(base)
        base.eval()
        folded = fold(copy.deepcopy(base)).eval()
        variants = {'eager': base, 'folded': folded}
        try:
            from torch.utils import mkldnn as mkl
            variants['folded+mkldnn'] = mkl.to_mkldnn(copy.deepcopy(folded))
        except Exception as e:  # noqa: BLE001
            print(f'{name}: torch.utils.mkldnn failed: {e}')
        with torch.no_grad():
            ref = base.logits(x)[0]
            for k, m in variants.items():
                inp = x.to_mkldnn() if k.endswith('mkldnn') else x
                try:
                    out = m.logits(inp)[0]
                    out = out.to_dense() if out.is_mkldnn else out
                    err = ((out - ref).abs().max() / ref.abs().max()).item()
                    print(f'{name} {k}: max |diff| / max |ref| = {err:.2e}')
                except Exception as e:  # noqa: BLE001
                    print(f'{name} {k}: failed: {str(e).splitlines()[0]}')
                    variants[k] = None
            variants = {k: v for k, v in variants.items() if v is not None}
            with torch.autograd.profiler.profile() as prof:
                base.logits(x)
            rows = sorted(prof.key_averages(), key=lambda r: -r.self_cpu_time_total)
            total = sum(r.self_cpu_time_total for r in rows)
            print(f'{name} eager profile ({total/1000:.0f} ms):', ', '.join(
                f'{r.key} {100*r.self_cpu_time_total/total:.1f}%' for r in rows[:8]))
            times = {k: [] for k in variants}
            for k, m in variants.items():  # warm-up
                m.logits(x.to_mkldnn() if k.endswith('mkldnn') else x)
            for rep in range(a.reps):
                order = list(variants.items())
                if rep % 2: order.reverse()
                for k, m in order:
                    inp = x.to_mkldnn() if k.endswith('mkldnn') else x
                    t = time.perf_counter(); m.logits(inp); times[k].append((time.perf_counter() - t) * 1000)
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f'{name} median ms over {a.reps} alternated reps: ' + ', '.join(
                f'{k} {v:.1f} ({med["eager"]/v:.2f}x)' for k, v in med.items()), flush=True)


if __name__ == '__main__':
    main()
