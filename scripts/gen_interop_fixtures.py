#!/usr/bin/python3
"""Interop fixtures written by NumPy and PyTorch, for the tests of dev.panamabn.interop.

    gen_interop_fixtures.py [--out DIR]      (default testdata/interop)

Writes, all small:
  npy/*.npy       arrays written by numpy.save: every supported dtype, both byte orders, Fortran
                  order, a scalar, an empty array, a version 2.0 header. Values are
                  arange(n) * 0.5 - 3 (bool: arange(n) % 3 == 0; unsigned: arange(n)) reshaped,
                  so the tests can recompute them.
  npz/*.npz       numpy.savez and numpy.savez_compressed of two of those arrays.
  state/          a torch.nn.BatchNorm2d(5) trained for a few steps, its state_dict under the
                  prefix "layer1.0.bn1." beside a convolution's ("layer1.0.conv1."), as .npz
                  (numpy.savez) and .safetensors; the same state in float16 and bfloat16
                  (safetensors, prefixes "f16." and "bf16."); an input x with PyTorch's eval output
                  in float32 (y) and float64 (y64, the module and x in double); and the convolution
                  folded by torch.nn.utils.fusion.fuse_conv_bn_eval.

Safetensors files are written by this script following the format (an 8-byte little-endian
header length, a JSON header padded with spaces to 8 bytes, tensors sorted by element size then
name), as the safetensors package does; Debian does not package it.

Exit codes: 0 ok, 2 usage error, 3 torch or numpy not importable.
Run with Debian's python3: it is the one that has torch.
"""

import argparse
import json
import os
import struct
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "testdata", "interop")
PREFIX = "layer1.0.bn1."
CONV_PREFIX = "layer1.0.conv1."
CHANNELS = 5

try:
    import numpy as np
    import torch
except Exception as err:  # noqa: BLE001 - any import failure means "not available"
    print("torch not available: " + (" ".join(str(err).split()) or type(err).__name__))
    sys.exit(3)

SAFETENSORS_DTYPES = {
    "b1": "BOOL", "u1": "U8", "i1": "I8", "u2": "U16", "i2": "I16", "u4": "U32", "i4": "I32",
    "u8": "U64", "i8": "I64", "f2": "F16", "f4": "F32", "f8": "F64",
}


def values(shape, dtype):
    """The recomputable test values of fixtures/npy."""
    n = int(np.prod(shape))
    kind = np.dtype(dtype).kind
    if kind == "b":
        a = np.arange(n) % 3 == 0
    elif kind == "u":
        a = np.arange(n)
    else:
        a = np.arange(n) * 0.5 - 3
    return a.astype(dtype).reshape(shape)


def write_npy(out):
    d = os.path.join(out, "npy")
    os.makedirs(d, exist_ok=True)
    cases = {
        "f4_le_2x3x4": values((2, 3, 4), "<f4"),
        "f4_be_2x3x4": values((2, 3, 4), ">f4"),
        "f8_le_3x5": values((3, 5), "<f8"),
        "f8_be_3x5": values((3, 5), ">f8"),
        "f2_le_7": values((7,), "<f2"),
        "f2_be_7": values((7,), ">f2"),
        "i8_le_scalar": values((), "<i8"),
        "i4_be_2x2": values((2, 2), ">i4"),
        "i2_le_3": values((3,), "<i2"),
        "u1_6": values((6,), "u1"),
        "u2_le_4": values((4,), "<u2"),
        "b1_5": values((5,), "?"),
        "f4_le_0x3": values((0, 3), "<f4"),
        "f4_fortran_2x3x4": np.asfortranarray(values((2, 3, 4), "<f4")),
        "f8_be_fortran_3x5": np.asfortranarray(values((3, 5), ">f8")),
    }
    for name, a in cases.items():
        np.save(os.path.join(d, name + ".npy"), a, allow_pickle=False)
    with open(os.path.join(d, "f4_le_v2_2x3x4.npy"), "wb") as f:
        np.lib.format.write_array(f, values((2, 3, 4), "<f4"), version=(2, 0), allow_pickle=False)
    return cases


def write_npz(out):
    d = os.path.join(out, "npz")
    os.makedirs(d, exist_ok=True)
    a = values((2, 3, 4), "<f4")
    b = values((3, 5), ">f8")
    np.savez(os.path.join(d, "stored.npz"), a=a, b=b)
    np.savez_compressed(os.path.join(d, "compressed.npz"), a=a, b=b)


def write_safetensors(path, tensors, metadata):
    """tensors: name -> (dtype name, shape, little-endian bytes)."""
    sizes = {"BOOL": 1, "U8": 1, "I8": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2, "U32": 4, "I32": 4,
             "F32": 4, "U64": 8, "I64": 8, "F64": 8}
    items = sorted(tensors.items(), key=lambda kv: (-sizes[kv[1][0]], kv[0]))
    header = {"__metadata__": metadata}
    offset = 0
    for name, (dtype, shape, data) in items:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, (_, _, data) in items:
            f.write(data)


def st_entry(t):
    """A torch tensor as (safetensors dtype, shape, little-endian bytes)."""
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return "BF16", tuple(t.shape), t.view(torch.int16).numpy().astype("<i2").tobytes()
    a = t.numpy()
    a = a.astype(a.dtype.newbyteorder("<"))
    return SAFETENSORS_DTYPES[a.dtype.str[1:]], a.shape, a.tobytes()


def write_state(out):
    d = os.path.join(out, "state")
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(20)
    conv = torch.nn.Conv2d(3, CHANNELS, kernel_size=3, padding=1, bias=True)
    bn = torch.nn.BatchNorm2d(CHANNELS)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(CHANNELS) * 1.5 + 0.25)
        bn.bias.copy_(torch.randn(CHANNELS))
    bn.train()
    for _ in range(4):
        bn(torch.randn(6, CHANNELS, 4, 3) * 2.5 + 3.7)
    bn.eval()
    conv.eval()

    state = {}
    for k, v in conv.state_dict().items():
        state[CONV_PREFIX + k] = v
    for k, v in bn.state_dict().items():
        state[PREFIX + k] = v
    np.savez(os.path.join(d, "model_state.npz"), **{k: v.numpy() for k, v in state.items()})
    write_safetensors(os.path.join(d, "model_state.safetensors"),
                      {k: st_entry(v) for k, v in state.items()}, {"format": "pt"})

    low = {}
    for prefix, dtype in (("f16.", torch.float16), ("bf16.", torch.bfloat16)):
        for k, v in bn.state_dict().items():
            low[prefix + k] = v.to(dtype) if v.is_floating_point() else v
    write_safetensors(os.path.join(d, "low_precision_state.safetensors"),
                      {k: st_entry(v) for k, v in low.items()}, {"format": "pt"})

    x = torch.randn(2, CHANNELS, 4, 3) * 2.0 + 3.0
    with torch.no_grad():
        y = bn(x)
        bn64 = torch.nn.BatchNorm2d(CHANNELS).double()
        bn64.load_state_dict({k: (v.double() if v.is_floating_point() else v) for k, v in bn.state_dict().items()})
        bn64.eval()
        y64 = bn64(x.double())
        fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
    low_f32 = {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in low.items()}
    np.savez(os.path.join(d, "eval_output.npz"), x=x.numpy(), y=y.numpy(), y64=y64.numpy(),
             **{"expected." + k: v for k, v in low_f32.items()})
    np.savez(os.path.join(d, "conv_bn_fused.npz"), weight=fused.weight.detach().numpy(),
             bias=fused.bias.detach().numpy())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    write_npy(args.out)
    write_npz(args.out)
    write_state(args.out)
    print("wrote", args.out, "(numpy", np.__version__ + ", torch", torch.__version__ + ")")


if __name__ == "__main__":
    main()
