"""The fixtures' procedural weights and inputs (test/fixtures/README.md section 1), vectorised
with numpy and generated in chunks so that no large temporaries inflate the process's memory."""
import numpy as np
import torch

MASK = np.uint64(0xFFFFFFFF)
CHUNK = 1 << 20


def fnv1a32(s):
    h = 0x811C9DC5
    for b in s.encode('utf-8'):
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def mix32(x):
    """x: uint64 array holding 32-bit values."""
    x = x ^ (x >> np.uint64(16))
    x = (x * np.uint64(0x7FEB352D)) & MASK
    x = x ^ (x >> np.uint64(15))
    x = (x * np.uint64(0x846CA68B)) & MASK
    return x ^ (x >> np.uint64(16))


def uniform_chunk(h, start, stop):
    i = np.arange(start, stop, dtype=np.uint64)
    return mix32(np.uint64(h) ^ mix32(i)).astype(np.float64) / 2147483648.0 - 1.0


def fill_(t, name, value):
    """t (float tensor, contiguous) := value(u_i) computed in float64, rounded on store."""
    h = fnv1a32(name)
    flat = t.view(-1)
    n = flat.numel()
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        flat[start:stop] = torch.from_numpy(value(uniform_chunk(h, start, stop)))


def apply_procedural(model):
    """Every parameter and buffer of `model` (a SegmentationModule with .encoder and .decoder)."""
    with torch.no_grad():
        for part in ('encoder', 'decoder'):
            for key, t in getattr(model, part).state_dict(keep_vars=True).items():
                name = f'{part}.{key}'
                t = t.data
                if key.endswith('num_batches_tracked'):
                    t.zero_()
                elif key.endswith('running_mean'):
                    fill_(t, name, lambda u: 0.1 * u)
                elif key.endswith('running_var'):
                    fill_(t, name, lambda u: 1.0 + 0.25 * (u + 1.0))
                elif key.endswith('weight') and t.dim() >= 2:
                    scale = (6.0 / (t.numel() // t.shape[0])) ** 0.5
                    fill_(t, name, lambda u, s=scale: s * u)
                elif key.endswith('weight'):
                    fill_(t, name, lambda u: 1.0 + 0.1 * u)
                elif key.endswith('bias'):
                    fill_(t, name, lambda u: 0.1 * u)
                else:
                    raise KeyError(f'no procedural rule for {name}')


def procedural_input(name, shape):
    t = torch.empty(shape, dtype=torch.float32)
    fill_(t, name, lambda u: u)
    return t


def procedural_label(name, shape):
    n = int(np.prod(shape))
    h = fnv1a32(name)
    out = np.empty(n, dtype=np.int64)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        out[start:stop] = np.floor((uniform_chunk(h, start, stop) + 1.0) / 2.0 * 151.0) - 1.0
    return torch.from_numpy(out.reshape(shape))


def _self_test():
    assert fnv1a32('encoder.conv1.weight') == 0xA3378246
    u = uniform_chunk(0xA3378246, 0, 3)
    assert np.allclose(u, [-0.7720540752634406, -0.2947759856469929, -0.3886506464332342], rtol=0, atol=1e-15), u
    w = torch.empty(64, 3, 3, 3)
    fill_(w, 'encoder.conv1.weight', lambda u: (6.0 / 27) ** 0.5 * u)
    assert w.view(-1)[:2].tolist() == [-0.3639497756958008, -0.13895873725414276], w.view(-1)[:2]
    b = torch.empty(150)
    fill_(b, 'decoder.conv_last.bias', lambda u: 0.1 * u)
    assert b[:2].tolist() == [-0.07467655837535858, -0.06634919345378876], b[:2]


if __name__ == '__main__':
    _self_test()
    print('procedural: test vectors ok')
