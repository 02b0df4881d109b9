#!/usr/bin/python3
"""BatchNorm cases from PyTorch for every layout, element type and fused epilogue, as .npz files.

Each case runs twice in PyTorch: in float64 with autograd (the exact values: y, dx, dz, the
gradients and the running statistics of relu(bn(x) [+ z]), the composition the fused calls
implement), and in the case's own type and memory format (torch's float32 channels_last or
bfloat16 kernels, for comparison). Tensors are stored in memory order (channels-last cases
permuted to N, spatial..., C) so that a reader passes them to the kernel as they are.

    gen_variants.py --seed SEED --out DIR

Exit codes: 0 ok, 2 usage error, 3 torch (or numpy) not importable.
Run with Debian's python3: it is the one that has torch.
"""

import argparse
import os
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except Exception as err:
    print("torch not available: " + (" ".join(str(err).split()) or type(err).__name__), file=sys.stderr)
    sys.exit(3)

SHAPES = [(8, 3), (4, 5, 7), (4, 6, 5, 5), (2, 4, 3, 3, 3)]
ACTS = ["none", "relu", "add_relu"]
LAYOUTS = ["channels_first", "channels_last"]
DTYPES = ["float32", "bfloat16"]  # PyTorch 1.13 has no CPU float16 batch_norm


def memory_order(t, layout):
    """The tensor's elements in memory order for the layout, as a contiguous array."""
    if layout == "channels_first" or t.dim() == 2:
        return t.contiguous()
    perm = [0] + list(range(2, t.dim())) + [1]
    return t.permute(*perm).contiguous()


def representable(t, dtype):
    return t.to(torch.bfloat16).to(torch.float32) if dtype == "bfloat16" else t


def run_case(gen, shape, layout, dtype, act, training):
    c = shape[1]
    eps, momentum = 1e-5, 0.2
    x = representable(torch.randn(shape, generator=gen) * 2 + 0.5, dtype)
    z = representable(torch.randn(shape, generator=gen), dtype)
    dy = representable(torch.randn(shape, generator=gen), dtype)
    w = torch.rand(c, generator=gen) + 0.5
    b = torch.randn(c, generator=gen)
    rm0 = torch.randn(c, generator=gen)
    rv0 = torch.rand(c, generator=gen) + 0.5

    # exact: float64 with autograd
    x64 = x.double().requires_grad_(True)
    z64 = z.double().requires_grad_(True)
    w64 = w.double().requires_grad_(True)
    b64 = b.double().requires_grad_(True)
    rm, rv = rm0.double().clone(), rv0.double().clone()
    t = F.batch_norm(x64, rm, rv, w64, b64, training, momentum, eps)
    y = t if act == "none" else torch.relu(t + z64 if act == "add_relu" else t)
    y.backward(dy.double())

    # torch's own kernel in the case's type and memory format
    xt = x.to(torch.bfloat16) if dtype == "bfloat16" else x.clone()
    zt = z.to(torch.bfloat16) if dtype == "bfloat16" else z.clone()
    if layout == "channels_last" and x.dim() in (4, 5):
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        xt, zt = xt.contiguous(memory_format=fmt), zt.contiguous(memory_format=fmt)
    with torch.no_grad():
        tt = F.batch_norm(xt, rm0.clone(), rv0.clone(), w, b, training, momentum, eps)
        yt = tt if act == "none" else torch.relu(tt + zt if act == "add_relu" else tt)

    m = lambda a: memory_order(a.detach(), layout).numpy()
    return {
        "meta": np.array([eps, momentum, float(training), ACTS.index(act), LAYOUTS.index(layout),
                          DTYPES.index(dtype)], dtype=np.float64),
        "shape": np.array(shape, dtype=np.int64),
        "x": m(x), "z": m(z), "dy": m(dy),
        "weight": w.numpy(), "bias": b.numpy(), "running_mean0": rm0.numpy(), "running_var0": rv0.numpy(),
        "y": m(y), "dx": m(x64.grad), "dz": m(z64.grad) if act == "add_relu" else np.zeros(0),
        "dweight": w64.grad.numpy(), "dbias": b64.grad.numpy(),
        "running_mean": rm.numpy(), "running_var": rv.numpy(),
        "y_torch": m(yt.float()),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    gen = torch.Generator().manual_seed(args.seed)
    count = 0
    for shape in SHAPES:
        for layout in LAYOUTS:
            for dtype in DTYPES:
                for act in ACTS:
                    for training in (True, False):
                        arrays = run_case(gen, shape, layout, dtype, act, training)
                        name = "%s_%s_%s_%s_%s.npz" % ("x".join(map(str, shape)), layout, dtype, act,
                                                       "train" if training else "eval")
                        np.savez(os.path.join(args.out, name), **arrays)
                        count += 1
    print("gen_variants.py: wrote %d cases to %s" % (count, args.out))


if __name__ == "__main__":
    main()
