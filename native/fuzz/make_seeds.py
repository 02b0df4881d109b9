#!/usr/bin/env python3
"""Writes the seed corpus of native/fuzz (one program per file; byte meanings in fuzz_batchnorm.c).

Run from anywhere: python3 native/fuzz/make_seeds.py. The seeds are committed; rerun only when the
harness's input format changes.
"""
import os
import struct

OPS = {"fwd_train": 0, "fwd_eval": 1, "bwd_train": 2, "bwd_eval": 3, "threads": 4, "message": 5,
       "forward_train": 6, "forward_eval": 7, "backward_train": 8, "backward_eval": 9, "stats": 10,
       "merge": 11, "from_stats": 12, "backward_reduce": 13, "from_sums": 14, "isa": 15}
NCS, NSC = 0, 200  # layout bytes
F32, BF16, F16 = 0, 1, 2
NONE, RELU, ADD_RELU = 0, 1, 2


def head(op, sizes, size_class, nulls, flags, eps, factor, layout, seed):
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
    return out + bytes([nulls, flags, eps, factor, layout]) + struct.pack("<Q", seed)


def call(op, sizes=(2, 3, 4), size_class=0, nulls=0, flags=1, eps=0, factor=0, layout=0,
         seed=7, data=(0, 1, 0), rest=(0, 0, 0, 0, 0, 0)):
    """One float32 shorthand call. size_class 0..4 small (sizes are n%7, 1+c%5, s%7), 5 medium,
    6..7 raw; flags: bits 0..2 zero drop the required pointer named by bits 3..4, 0x20 in place,
    bits 6..7 misalign."""
    out = head(op, sizes, size_class, nulls, flags, eps, factor, layout, seed)
    return out + bytes(data) + bytes(rest)


def gcall(op, sizes=(2, 3, 4), size_class=0, nulls=0, flags=1, eps=0, factor=0, layout=NCS,
          seed=7, dtype=F32, act=NONE, bn_flags=0, aliasing=0, count=(0,), k=0,
          data=(0, 1, 0, 2, 0, 0), rest=(0,) * 16):
    """One generic call: the shorthand's bytes, then dtype, act, flags (valid below 240), aliasing
    (bit 0: dz = dy in place, bit 1: z or y shares x), count (first byte % 8: 0..2 n*s,
    3 n*s + next byte, 4 2*n*s + 1, 5 n*s - 1, 6 a table entry, 7 raw), k (below 200: % 7)."""
    out = head(op, sizes, size_class, nulls, flags, eps, factor, layout, seed)
    out += bytes([dtype, act, bn_flags, aliasing]) + bytes(count) + bytes([k])
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
    "forward_train_bf16_nsc_relu": gcall("forward_train", layout=NSC, dtype=BF16, act=RELU),
    "forward_train_f16_add_relu_biased": gcall("forward_train", sizes=(3, 2, 5), dtype=F16,
                                               act=ADD_RELU, bn_flags=1),
    "forward_train_inplace_z_shares_x": gcall("forward_train", dtype=BF16, act=ADD_RELU, aliasing=2),
    "forward_eval_f16_nsc_add_relu": gcall("forward_eval", sizes=(4, 2, 3), layout=NSC, dtype=F16,
                                           act=ADD_RELU),
    "backward_train_f16_add_relu_dz_inplace": gcall("backward_train", sizes=(3, 4, 2), flags=0x21,
                                                    dtype=F16, act=ADD_RELU, aliasing=1),
    "backward_eval_bf16_relu_nsc": gcall("backward_eval", sizes=(2, 2, 6), layout=NSC, dtype=BF16,
                                         act=RELU),
    "stats_f16_nsc": gcall("stats", sizes=(5, 3, 4), layout=NSC, dtype=F16),
    "merge_three": gcall("merge", sizes=(0, 3, 0), k=3, data=(0, 0, 0)),
    "from_stats_shard": gcall("from_stats", sizes=(2, 3, 4), count=(3, 40), dtype=BF16),
    "from_stats_count_too_small": gcall("from_stats", count=(5,)),
    "from_stats_empty_shard": gcall("from_stats", sizes=(0, 2, 3), count=(3, 9)),
    "backward_reduce_bf16_relu": gcall("backward_reduce", sizes=(3, 2, 5), dtype=BF16, act=RELU),
    "from_sums_shard": gcall("from_sums", sizes=(2, 3, 3), count=(3, 12), act=ADD_RELU),
    "bad_dtype_act_flags": gcall("forward_train", dtype=240, act=241, bn_flags=242),
    "isa": bytes([OPS["isa"]]),
    # bn_merge_stats with k = 0 and c = INT64_MAX/8 + 1: c doubles do not fit in int64_t bytes.
    "merge_no_partials_huge_c": bytes([OPS["merge"], 7, 0, 13, 0]),
}

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(here, exist_ok=True)
for name, blob in SEEDS.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write(blob)
