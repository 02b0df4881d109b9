#!/usr/bin/env python3
"""Writes the seed corpus of native/fuzz (one program per file; byte meanings in fuzz_batchnorm.c).

Run from anywhere: python3 native/fuzz/make_seeds.py. The seeds are committed; rerun only when the
harness's input format changes.
"""
import os
import struct

OPS = {"fwd_train": 0, "fwd_eval": 1, "bwd_train": 2, "bwd_eval": 3, "threads": 4, "message": 5}


def call(op, sizes=(2, 3, 4), size_class=0, nulls=0, flags=1, eps=0, factor=0, layout=0,
         seed=7, data=(0, 1, 0), rest=(0, 0, 0, 0, 0, 0)):
    """One kernel call. size_class 0..4 small (sizes are n%7, 1+c%5, s%7), 5 medium, 6..7 raw."""
    out = bytes([OPS[op], size_class])
    if size_class >= 6:
        for v in sizes:  # take_size: table index 255 then 8 raw bytes
            out += bytes([255]) + struct.pack("<q", v)
    elif size_class == 5:
        n, c, s = sizes
        out += bytes([n - 1, c - 1]) + struct.pack("<H", s - 2048)
    else:
        n, c, s = sizes
        out += bytes([n, c - 1, s])
    out += bytes([nulls, flags, eps, factor, layout]) + struct.pack("<Q", seed)
    return out + bytes(data) + bytes(rest)


SEEDS = {
    "fwd_train_small": call("fwd_train"),
    "fwd_train_inplace_misaligned": call("fwd_train", flags=0x61, sizes=(3, 2, 5)),
    "fwd_eval_small": call("fwd_eval", sizes=(4, 2, 3)),
    "bwd_train_small": call("bwd_train", sizes=(3, 4, 2), rest=(0, 0, 0, 1, 0, 0)),
    "bwd_eval_no_weight": call("bwd_eval", nulls=0x84, sizes=(2, 2, 6)),
    "fwd_train_nan_channel": call("fwd_train", data=(4, 0, 0)),
    "fwd_train_big_mean": call("fwd_train", data=(0, 3, 1), sizes=(5, 2, 6)),
    "fwd_train_constant_eps0": call("fwd_train", data=(3, 1, 0), eps=6),
    "fwd_train_one_value": call("fwd_train", sizes=(1, 3, 1)),
    "overflowing_sizes": call("fwd_eval", size_class=6, sizes=(2**62, 4, 3)),
    "negative_size": call("bwd_train", size_class=7, sizes=(-1, 3, 3)),
    "bad_eps_and_factor": call("fwd_train", eps=14, factor=12),
    "null_required": call("fwd_eval", flags=0x08),
    "threads_then_medium": bytes([OPS["threads"], 0]) + call("fwd_train", size_class=5, sizes=(8, 2, 2048 + 6000)),
    "message": bytes([OPS["message"]]) + struct.pack("<q", -5),
}

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(here, exist_ok=True)
for name, blob in SEEDS.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write(blob)
