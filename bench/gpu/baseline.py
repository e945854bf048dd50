"""PyTorch 2.x eager baseline of bench/gpu/run.mjs: the same layers as segtool (bench/baseline/
segnet.py, the reference's networks) on one CUDA device, timed with CUDA events.

Argument: a JSON job {"model": "resnet50dilated-ppm_deepsup", "task": "train"|"infer",
"precision": "fp32"|"bf16", "batch": 2, "height": 450, "width": 600, "warmup": 5, "iters": 20,
"channels_last": false, "cudnn_benchmark": true, "sync_bn": false, "device": 0}.
Prints one JSON line: {"ms": [...per iteration...], "images_per_s": ..., "torch": ..., ...}.

  infer  under torch.inference_mode(): logits at feature resolution, log_softmax (what segtool's
         forward() returns), batch `batch`, one image size.
  train  the reference's train.py step: zero_grad, forward (loss, acc), backward, SGD step of the
         encoder's and decoder's optimizers, loss.item().
  sync_bn: BatchNorm2d layers converted with torch.nn.SyncBatchNorm.convert_sync_batchnorm over
         a one-process NCCL group (the SyncBN overhead measurement, world size 1).
bf16: torch.autocast('cuda', dtype=torch.bfloat16) around forward and loss, as segtool does.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'baseline'))
from segnet import SegmentationModule, make_optimizers, output_stride  # noqa: E402


def main():
    job = json.loads(sys.argv[1])
    if not torch.cuda.is_available():
        print('bench/gpu/baseline.py: this PyTorch sees no CUDA device', file=sys.stderr)
        sys.exit(2)
    device = torch.device('cuda', job.get('device', 0))
    torch.cuda.set_device(device)
    torch.backends.cudnn.benchmark = bool(job.get('cudnn_benchmark', True))
    encoder, decoder = job['model'].split('-', 1)
    torch.manual_seed(0)
    model = SegmentationModule(encoder, decoder, num_class=150)
    if job.get('sync_bn'):
        import torch.distributed as dist
        os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
        os.environ.setdefault('MASTER_PORT', str(29700 + os.getpid() % 200))
        dist.init_process_group('nccl', rank=0, world_size=1)
        model.encoder = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.encoder)
        model.decoder = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model.decoder)
    model = model.to(device)
    memory_format = torch.channels_last if job.get('channels_last') else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    n, h, w = job.get('batch', 2), job.get('height', 450), job.get('width', 600)
    x = torch.randn(n, 3, h, w, device=device).contiguous(memory_format=memory_format)
    stride = output_stride(encoder, decoder)
    label = torch.randint(-1, 150, (n, -(-h // stride), -(-w // stride)), device=device)
    bf16 = job.get('precision') == 'bf16'

    def autocast():
        return torch.autocast('cuda', dtype=torch.bfloat16, enabled=bf16)

    if job['task'] == 'train':
        model.train()
        optimizers = make_optimizers(model)

        def step():
            for o in optimizers:
                o.zero_grad(set_to_none=True)
            with autocast():
                loss, acc = model(x, label)
            loss.backward()
            for o in optimizers:
                o.step()
            return loss.item()
    else:
        model.eval()

        def step():
            with torch.inference_mode(), autocast():
                logits, _ = model.logits(x)
                out = torch.log_softmax(logits.float(), dim=1)
            return out.sum().item()

    for _ in range(job.get('warmup', 5)):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(job.get('iters', 20)):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({
        'ms': times,
        'median_ms': median,
        'images_per_s': n * 1000.0 / median,
        'torch': torch.__version__,
        'cuda': torch.version.cuda,
        'cudnn': torch.backends.cudnn.version(),
        'device_name': torch.cuda.get_device_name(device),
        'peak_bytes': torch.cuda.max_memory_allocated(device),
    }))
    if job.get('sync_bn'):
        torch.distributed.destroy_process_group()


if __name__ == '__main__':
    main()
