"""PyTorch's CPU BatchNorm, timed the way every peer of scripts/bench.sh is.

Options, cache modes and timing rule as bench/c/bench_common.h:
  warm  warm up, pick a repeat count k so that one round of k calls lasts at least
        --min-round-ms, run --rounds rounds, report the median over rounds of the mean time per
        call;
  cold  the same, but before every call the op's inputs and the previous call's outputs (whose
        memory the allocator hands to the next call's outputs) are flushed from every cache level
        by libbench_flush.so (--flush-lib, through ctypes), and only the calls are timed.
Rows go to stdout as CSV `shape,layout,dtype,op,impl,threads,cache,median_ns`; lines starting
with '#' are comments, `# skipped: ...` lines name what cannot run.

  layouts  nchw (contiguous) and nhwc (torch.channels_last / channels_last_3d)
  dtypes   f32, bf16, f16: tensors of the type with float32 weight, bias and running statistics
           (PyTorch's mixed-type rule on CPU), or all of the type where PyTorch has no mixed
           kernel; skipped where PyTorch has no CPU kernel for the type at all
  ops      forward_train  F.batch_norm(training=True) with running buffers (momentum 0.1)
           forward_eval   F.batch_norm(training=False) from the running buffers
           backward       aten.native_batch_norm_backward for a training forward: dx, dweight,
                          dbias (what autograd calls; calling it directly leaves out autograd)
           forward_train_relu      y = bn(x); y.relu_()           (torchvision's ReLU(inplace))
           forward_train_add_relu  y = bn(x); y.add_(z).relu_()   (a ResNet block's tail)
           backward_relu      g = threshold_backward(dy, y, 0); native_batch_norm_backward(g)
           backward_add_relu  the same; dz is g itself, as autograd passes it to the residual

Run it with Debian's python3 (/usr/bin/python3), the one that has python3-torch.
"""

import argparse
import ctypes
import sys
import time

import torch
import torch.nn.functional as F

EPS = 1e-5
MOMENTUM = 0.1
OPS = ("forward_train", "forward_eval", "backward", "forward_train_relu",
       "forward_train_add_relu", "backward_relu", "backward_add_relu")
LAYOUTS = ("nchw", "nhwc")
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
CACHES = ("warm", "cold")
DEFAULT_SHAPES = "32x64x56x56,256x512x7x7,64x256x14x14,8x32x112x112,128x16x32x32,1x8x4x4"


def parse_shape(text):
    dims = [int(d) for d in text.split("x")]
    if len(dims) < 2 or len(dims) > 5 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"bad shape '{text}': want NxC[xD][xH]xW, e.g. 32x64x56x56")
    return text, dims


def names(allowed):
    def parse(text):
        values = [v for v in text.split(",") if v]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"expected some of {','.join(allowed)}, got '{text}'")
        return values
    return parse


class Flusher:
    """bench_flush from libbench_flush.so: clflushopt over a tensor's bytes, then a fence."""

    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        self.lib.bench_flush.argtypes = [ctypes.c_void_p, ctypes.c_int64]
        self.lib.bench_flush.restype = None

    def flush(self, tensors):
        for t in tensors:
            self.lib.bench_flush(t.data_ptr(), t.numel() * t.element_size())


def to_layout(t, layout):
    """t (contiguous NC...) in the layout: channels-last keeps the logical shape (N, C, ...)."""
    if layout == "nchw" or t.dim() == 2:
        return t.contiguous()
    if t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if t.dim() == 5:
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t.transpose(1, 2).contiguous().transpose(1, 2)  # (N, L, C) in memory


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def time_warm(fn, rounds, warmup, min_round_ns):
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
        fn()
        t0 = time.perf_counter_ns()
        for _ in range(reps):
            fn()
        per_call.append((time.perf_counter_ns() - t0) / reps)
    return median(per_call)


def time_cold(fn, inputs, flusher, rounds, warmup, min_round_ns):
    """Each call after flushing its inputs and the previous call's outputs; only calls timed."""
    held = [fn()]

    def one():
        flusher.flush(inputs + [t for t in held[0] if t is not None])
        t0 = time.perf_counter_ns()
        out = fn()
        elapsed = time.perf_counter_ns() - t0
        held[0] = out
        return elapsed

    for _ in range(warmup):
        one()
    reps = 1
    while sum(one() for _ in range(reps)) < min_round_ns and reps < 1 << 30:
        reps *= 2
    return median([sum(one() for _ in range(reps)) / reps for _ in range(rounds)])


class Case:
    """One shape, layout and dtype: its tensors, and per op a call returning its outputs."""

    def __init__(self, dims, layout, dtype):
        generator = torch.Generator().manual_seed(1)
        c = dims[1]
        self.x = to_layout(torch.empty(dims).uniform_(-2, 2, generator=generator), layout).to(dtype)
        self.dy = to_layout(torch.empty(dims).uniform_(-2, 2, generator=generator), layout).to(dtype)
        self.z = to_layout(torch.empty(dims).uniform_(-1, 1, generator=generator), layout).to(dtype)
        self.mixed = True
        self.params(torch.float32, c)
        try:
            self.save()
        except RuntimeError:
            # no mixed-type kernel for this type: parameters of the tensors' type
            self.mixed = False
            self.params(dtype, c)
            self.save()

    def params(self, dtype, c):
        self.weight = torch.full((c,), 1.5, dtype=dtype)
        self.bias = torch.full((c,), 0.25, dtype=dtype)
        self.running_mean = torch.zeros(c, dtype=dtype)
        self.running_var = torch.ones(c, dtype=dtype)

    def save(self):
        """The statistics a training forward saves, and the fused forwards' outputs."""
        y, self.save_mean, self.save_invstd = torch.ops.aten.native_batch_norm(
            self.x, self.weight, self.bias, self.running_mean.clone(), self.running_var.clone(),
            True, MOMENTUM, EPS)
        self.y_relu = torch.relu(y)
        self.y_add_relu = torch.relu(y + self.z)

    def bn(self, training):
        return F.batch_norm(self.x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=training, momentum=MOMENTUM, eps=EPS)

    def bn_backward(self, g):
        return torch.ops.aten.native_batch_norm_backward(
            g, self.x, self.weight, self.running_mean, self.running_var, self.save_mean,
            self.save_invstd, True, EPS, [True, True, True])

    def call(self, op):
        """(fn, inputs): fn() runs the op and returns its outputs."""
        params = [self.weight, self.bias, self.running_mean, self.running_var]
        if op == "forward_train":
            return (lambda: (self.bn(True),)), [self.x] + params
        if op == "forward_eval":
            return (lambda: (self.bn(False),)), [self.x] + params
        if op == "forward_train_relu":
            return (lambda: (self.bn(True).relu_(),)), [self.x] + params
        if op == "forward_train_add_relu":
            return (lambda: (self.bn(True).add_(self.z).relu_(),)), [self.x, self.z] + params
        saved = [self.save_mean, self.save_invstd]
        if op == "backward":
            return (lambda: self.bn_backward(self.dy)), [self.dy, self.x] + params + saved
        y = self.y_relu if op == "backward_relu" else self.y_add_relu

        def fused():
            g = torch.ops.aten.threshold_backward(self.dy, y, 0)
            return (g,) + tuple(self.bn_backward(g))
        return fused, [self.dy, y, self.x] + params + saved


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default=DEFAULT_SHAPES,
                        type=lambda t: [parse_shape(s) for s in t.split(",") if s])
    parser.add_argument("--threads", type=lambda t: [int(v) for v in t.split(",") if v], default=[1, 2])
    parser.add_argument("--ops", type=names(OPS), default=list(OPS))
    parser.add_argument("--layouts", type=names(LAYOUTS), default=list(LAYOUTS))
    parser.add_argument("--dtypes", type=names(tuple(DTYPES)), default=list(DTYPES))
    parser.add_argument("--caches", type=names(CACHES), default=list(CACHES))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--min-round-ms", type=float, default=20.0)
    parser.add_argument("--flush-lib", help="libbench_flush.so, needed for --caches cold")
    args = parser.parse_args()
    if isinstance(args.shapes, str):
        args.shapes = [parse_shape(s) for s in args.shapes.split(",")]
    if args.rounds < 1 or args.warmup < 0 or min(args.threads) < 1:
        parser.error("bad --rounds, --warmup or --threads")

    flusher = None
    if "cold" in args.caches:
        try:
            flusher = Flusher(args.flush_lib) if args.flush_lib else None
        except OSError as e:
            print(f"# cannot load {args.flush_lib}: {e}")
        if flusher is None:
            print("# skipped: pytorch cold: no cache-flush library (--flush-lib libbench_flush.so)")

    backend = torch.__config__.parallel_info().splitlines()[-1].strip()
    capability = next((line.split(":", 1)[1].strip() for line in torch.__config__.show().splitlines()
                       if "CPU capability usage" in line), "unknown")
    print(f"# pytorch_bench: torch {torch.__version__}, {backend}, CPU capability {capability}")
    print("shape,layout,dtype,op,impl,threads,cache,median_ns", flush=True)
    min_round_ns = args.min_round_ms * 1e6
    said = set()
    with torch.no_grad():
        for text, dims in args.shapes:
            for layout in args.layouts:
                for dtype_name in args.dtypes:
                    try:
                        case = Case(dims, layout, DTYPES[dtype_name])
                    except RuntimeError as e:
                        if (layout, dtype_name) not in said:
                            said.add((layout, dtype_name))
                            print(f"# skipped: pytorch {layout} {dtype_name}: {str(e).splitlines()[0]}")
                        continue
                    if not case.mixed and (layout, dtype_name, "mixed") not in said:
                        said.add((layout, dtype_name, "mixed"))
                        print(f"# pytorch {layout} {dtype_name}: no mixed-type kernel; weight, bias "
                              f"and running statistics in {dtype_name} too")
                    for threads in args.threads:
                        torch.set_num_threads(threads)
                        for op in args.ops:
                            fn, inputs = case.call(op)
                            try:
                                fn()
                            except RuntimeError as e:
                                if (layout, dtype_name, op) not in said:
                                    said.add((layout, dtype_name, op))
                                    print(f"# skipped: pytorch {layout} {dtype_name} {op}: "
                                          f"{str(e).splitlines()[0]}")
                                continue
                            for cache in args.caches:
                                if cache == "warm":
                                    ns = time_warm(fn, args.rounds, args.warmup, min_round_ns)
                                elif flusher is not None:
                                    ns = time_cold(fn, inputs, flusher, args.rounds, args.warmup,
                                                   min_round_ns)
                                else:
                                    continue
                                print(f"{text},{layout},{dtype_name},{op},pytorch,{threads},{cache},"
                                      f"{ns:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
