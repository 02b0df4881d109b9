"""PyTorch's CPU BatchNorm, float32 NCHW contiguous, timed the way every peer in scripts/bench.sh is.

Timing rule (the same as bench/bench_common.h): warm up, pick a repeat count k so that one round
lasts at least --min-round-ms, run --rounds rounds of k calls, report the median over rounds of
the mean time per call. Rows go to stdout as CSV `shape,layout,op,impl,threads,median_ns`; lines
starting with '#' are comments.

  forward_train  F.batch_norm(training=True) with running buffers (momentum 0.1, eps 1e-5)
  forward_eval   F.batch_norm(training=False) from the running buffers
  backward       torch.ops.aten.native_batch_norm_backward for a training forward: dx, dweight,
                 dbias (what autograd calls; calling it directly leaves out autograd's overhead)

Run it with Debian's python3 (/usr/bin/python3), the one that has python3-torch.
"""

import argparse
import sys
import time

import torch
import torch.nn.functional as F

EPS = 1e-5
MOMENTUM = 0.1
OPS = ("forward_train", "forward_eval", "backward")


def parse_shape(text):
    dims = [int(d) for d in text.split("x")]
    if len(dims) < 2 or len(dims) > 5 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"bad shape '{text}': want NxC[xD][xH]xW, e.g. 32x64x56x56")
    return text, dims


def parse_list(text, convert=int):
    return [convert(v) for v in text.split(",") if v]


def time_per_call(fn, rounds, warmup, min_round_ns):
    for _ in range(warmup):
        fn()
    reps = 1
    while True:
        t0 = time.perf_counter_ns()
        for _ in range(reps):
            fn()
        if time.perf_counter_ns() - t0 >= min_round_ns or reps >= 1 << 30:
            break
        reps *= 2
    per_call = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for _ in range(reps):
            fn()
        per_call.append((time.perf_counter_ns() - t0) / reps)
    per_call.sort()
    mid = len(per_call) // 2
    return per_call[mid] if len(per_call) % 2 else 0.5 * (per_call[mid - 1] + per_call[mid])


def make_calls(dims):
    c = dims[1]
    generator = torch.Generator().manual_seed(1)
    x = torch.empty(dims).uniform_(-2, 2, generator=generator)
    dy = torch.empty(dims).uniform_(-2, 2, generator=generator)
    weight = torch.full((c,), 1.5)
    bias = torch.full((c,), 0.25)
    running_mean = torch.zeros(c)
    running_var = torch.ones(c)
    _, save_mean, save_invstd = torch.ops.aten.native_batch_norm(
        x, weight, bias, running_mean.clone(), running_var.clone(), True, MOMENTUM, EPS)

    def forward_train():
        F.batch_norm(x, running_mean, running_var, weight, bias, training=True,
                     momentum=MOMENTUM, eps=EPS)

    def forward_eval():
        F.batch_norm(x, running_mean, running_var, weight, bias, training=False,
                     momentum=MOMENTUM, eps=EPS)

    def backward():
        torch.ops.aten.native_batch_norm_backward(
            dy, x, weight, running_mean, running_var, save_mean, save_invstd, True, EPS,
            [True, True, True])

    return {"forward_train": forward_train, "forward_eval": forward_eval, "backward": backward}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shapes", nargs="+", type=parse_shape, metavar="SHAPE")
    parser.add_argument("--threads", type=parse_list, default=[1, 2])
    parser.add_argument("--ops", type=lambda t: parse_list(t, str), default=list(OPS))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--min-round-ms", type=float, default=20.0)
    args = parser.parse_args()
    bad_ops = [op for op in args.ops if op not in OPS]
    if bad_ops or args.rounds < 1 or args.warmup < 0 or min(args.threads) < 1:
        parser.error(f"bad --ops {bad_ops}, --rounds, --warmup or --threads")

    backend = torch.__config__.parallel_info().splitlines()[-1].strip()
    print(f"# pytorch_bench: torch {torch.__version__}, {backend}, float32 NCHW contiguous")
    print("shape,layout,op,impl,threads,median_ns", flush=True)
    with torch.no_grad():
        for text, dims in args.shapes:
            calls = make_calls(dims)
            for threads in args.threads:
                torch.set_num_threads(threads)
                for op in args.ops:
                    ns = time_per_call(calls[op], args.rounds, args.warmup, args.min_round_ms * 1e6)
                    print(f"{text},nchw,{op},pytorch,{threads},{ns:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
