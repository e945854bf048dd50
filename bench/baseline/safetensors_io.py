"""A minimal safetensors reader (8-byte little-endian header length, JSON header, raw data)."""
import json
import struct

import numpy as np
import torch

DTYPES = {'F32': np.float32, 'F64': np.float64, 'I64': np.int64, 'I32': np.int32, 'U8': np.uint8, 'I16': np.int16}


def read_safetensors(path):
    with open(path, 'rb') as f:
        (n,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    metadata = header.pop('__metadata__', {})
    tensors = {}
    for name, info in header.items():
        start, stop = info['data_offsets']
        array = np.frombuffer(data[start:stop], dtype=DTYPES[info['dtype']]).reshape(info['shape'])
        tensors[name] = torch.from_numpy(array.copy())
    return tensors, metadata
