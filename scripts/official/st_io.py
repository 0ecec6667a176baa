"""Minimal safetensors reading and writing with numpy (no `safetensors` package on Debian's python3).

Layout (huggingface/safetensors format spec): 8-byte little-endian header length, a JSON header mapping each
tensor name to {dtype, shape, data_offsets: [begin, end)} relative to the byte after the header, then the data.
"""
import json
import struct

import numpy as np

_NP = {'F32': np.float32, 'F16': np.float16, 'I32': np.int32, 'I64': np.int64}


def read(path):
    """{name: float32 or integer numpy array}; BF16 is widened to float32."""
    with open(path, 'rb') as f:
        (n,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == '__metadata__':
            continue
        a, b = t['data_offsets']
        raw = data[a:b]
        if t['dtype'] == 'BF16':
            arr = (np.frombuffer(raw, dtype='<u2').astype(np.uint32) << 16).view(np.float32)
        elif t['dtype'] in _NP:
            arr = np.frombuffer(raw, dtype=np.dtype(_NP[t['dtype']]).newbyteorder('<'))
        else:
            raise ValueError(f'{path}: tensor {name} has dtype {t["dtype"]}, which this reader does not handle')
        out[name] = arr.reshape(t['shape'])
    return out


def write_f32(path, tensors):
    """Writes {name: array} as F32 tensors in the given order."""
    header, offset, blobs = {}, 0, []
    for name, arr in tensors.items():
        blob = np.ascontiguousarray(arr, dtype='<f4').tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(arr.shape), 'data_offsets': [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    head = json.dumps(header, separators=(',', ':')).encode()
    head += b' ' * (-len(head) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)
