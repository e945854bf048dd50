// ImageNet-pretrained encoder files in the reference's layout (test/fixtures/imagenet-keys.json:
// every key, shape and dtype of the reference's original networks, classifier included), with
// procedural values, written by PyTorch itself (Debian's python3-torch, hence /usr/bin/python3) so they are what
// torch.save makes: the zip format, or the legacy pickle format of older releases.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export const IMAGENET_KEYS = JSON.parse(readFileSync(new URL('../fixtures/imagenet-keys.json', import.meta.url), 'utf8'));

const SCRIPT = String.raw`
import json, sys, torch
from collections import OrderedDict
arch, path, fmt, seed, drop = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), set(json.loads(sys.argv[5]))
spec = json.load(open(sys.argv[6]))[arch]
g = torch.Generator().manual_seed(seed)
state = OrderedDict()
for i, (key, shape, dtype) in enumerate(spec):
    if key in drop:
        continue
    if dtype == 'int64':
        state[key] = torch.randint(0, 1000, shape, generator=g, dtype=torch.int64)
    elif key.endswith('running_var'):
        state[key] = torch.rand(shape, generator=g) + 0.5
    else:
        state[key] = torch.randn(shape, generator=g) * 0.05
torch.save(state, path, _use_new_zipfile_serialization=(fmt == 'zip'))
`;

/**
 * Writes `arch`'s ImageNet file (resnet18, resnet50, resnet101, resnext101, mobilenetv2, hrnetv2)
 * to `path`. `drop`: keys to leave out (e.g. to make a file that misses a tensor).
 */
export function writeImagenetFile(arch, path, { format = 'zip', seed = 1, drop = [] } = {}) {
  const keysFile = new URL('../fixtures/imagenet-keys.json', import.meta.url).pathname;
  execFileSync('/usr/bin/python3', ['-c', SCRIPT, arch, path, format, String(seed), JSON.stringify(drop), keysFile], { stdio: ['ignore', 'inherit', 'inherit'] });
  return path;
}
