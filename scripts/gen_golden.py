#!/usr/bin/python3
"""Golden BatchNorm vectors from PyTorch, in the format of testdata/golden/FORMAT.md.

Real torch.nn.BatchNorm1d/2d/3d modules run in float64 on float32-representable inputs,
parameters and buffers, so the expected values are PyTorch's semantics without float32 rounding.

    gen_golden.py [--out DIR]                        the fixed case set (default testdata/golden)
    gen_golden.py --random COUNT --seed SEED --out DIR   COUNT fresh random cases
    gen_golden.py --self-check [--out DIR]           re-verify every case in DIR with numpy

Exit codes: 0 ok, 1 self-check failure, 2 usage error, 3 torch (or numpy) not importable.
Run with Debian's python3: it is the one that has torch.
"""

import argparse
import math
import os
import sys
import zlib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "testdata", "golden")

TRAIN, EVAL = "T", "E"


def fail_import(what, err):
    """One line with a fixed prefix, so callers can report a visible skip, and exit code 3."""
    reason = " ".join(str(err).split()) or type(err).__name__
    print(f"torch not available: {reason}" if what == "torch" else
          f"torch not available: {what} cannot be imported: {reason}", file=sys.stderr)
    sys.exit(3)


try:
    import numpy as np
except Exception as err:  # numpy comes with torch; without it nothing here can run
    fail_import("numpy", err)


class Case:
    """One golden case: module options, initial state and the steps to run (T train, E eval)."""

    def __init__(self, name, dims, steps, eps=1e-5, momentum=0.1, affine=True, track=True,
                 init="random", nbt=0, means=None, spreads=None, constant_channels=()):
        self.name = name
        self.dims = tuple(dims)
        self.steps = steps
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track = track
        self.init = init  # "random" or "default" (weight 1, bias 0, running 0/1)
        self.nbt = nbt
        self.means = means  # callable rng, C -> per-channel means; None: moderate random
        self.spreads = spreads  # callable rng, C -> per-channel std devs
        self.constant_channels = constant_channels

    @property
    def channels(self):
        return self.dims[1]


def moderate_means(rng, c):
    return rng.uniform(-3.0, 3.0, c) + rng.uniform(0.01, 0.99, c)


def moderate_spreads(rng, c):
    return rng.uniform(0.3, 2.5, c)


def means_1e4(rng, c):
    # 1e4 times an ugly factor per channel: a power-of-two mean would hide cancellation bugs
    return 1e4 * rng.uniform(0.93, 1.07, c) + rng.normal(0.0, 1.0, c)


def spreads_1(rng, c):
    return np.ones(c)


def means_1e5_1e6(rng, c):
    return 10.0 ** rng.uniform(5.0, 6.0, c) + rng.uniform(0.0, 1.0, c)


def spreads_001_1(rng, c):
    return 10.0 ** rng.uniform(-2.0, 0.0, c)


def fixed_cases():
    T, E = TRAIN, EVAL
    return [
        Case("bn2d_4x3x5x5_default_init", (4, 3, 5, 5), T + E, init="default"),
        Case("bn2d_4x3x5x5", (4, 3, 5, 5), T + T + E),
        Case("bn2d_8x16x7x7", (8, 16, 7, 7), T + E),
        Case("bn2d_2x32x4x4", (2, 32, 4, 4), T + T + E),
        Case("bn2d_odd_3x5x7x9", (3, 5, 7, 9), T + T + E),
        Case("bn2d_n1_1x4x6x5", (1, 4, 6, 5), T + T + E),
        Case("bn2d_spatial1_6x5x1x1", (6, 5, 1, 1), T + T + E),
        Case("bn2d_spatial1_n2_2x7x1x1", (2, 7, 1, 1), T + E),
        Case("bn2d_c1_5x1x6x6", (5, 1, 6, 6), T + T + E),
        Case("bn2d_large_mean_1e4", (4, 6, 8, 8), T + T + T + E + E,
             means=means_1e4, spreads=spreads_1),
        Case("bn2d_large_mean_1e5_1e6_spread_001_1", (4, 8, 6, 6), T + T + E,
             means=means_1e5_1e6, spreads=spreads_001_1),
        Case("bn2d_large_mean_1e4_momentum_1", (3, 4, 5, 5), T + E,
             momentum=1.0, means=means_1e4, spreads=spreads_1),
        Case("bn2d_constant_channel", (3, 4, 4, 4), T + E, constant_channels=(1, 3)),
        Case("bn2d_eps_1e-3", (4, 3, 5, 5), T + T + E, eps=1e-3),
        Case("bn2d_eps_0.1", (4, 3, 5, 5), T + T + E, eps=0.1, spreads=lambda r, c: r.uniform(0.1, 0.6, c)),
        Case("bn2d_momentum_0", (4, 3, 5, 5), T + T + E, momentum=0.0),
        Case("bn2d_momentum_0.3", (4, 3, 5, 5), T + T + T + E, momentum=0.3),
        Case("bn2d_momentum_1", (4, 3, 5, 5), T + T + E, momentum=1.0),
        Case("bn2d_momentum_none", (4, 3, 5, 5), T * 5 + E, momentum=None),
        Case("bn2d_momentum_none_nbt3", (3, 4, 3, 4), T * 4 + E, momentum=None, nbt=3),
        Case("bn2d_affine_false", (4, 3, 5, 5), T + T + E, affine=False),
        Case("bn2d_no_track_train", (4, 3, 5, 5), T + T, track=False),
        Case("bn2d_no_track_eval", (4, 3, 5, 5), E + T + E, track=False),
        Case("bn2d_no_track_affine_false", (3, 5, 4, 4), T + E, affine=False, track=False),
        Case("bn2d_eval_only", (4, 3, 5, 5), E + E),
        Case("bn2d_eval_only_n1_spatial1", (1, 6, 1, 1), E),
        Case("bn2d_train_eval_alternating", (3, 4, 4, 5), T + E + T + E + T),
        Case("bn2d_multistep_4x8x5x5", (4, 8, 5, 5), T + T + T + E + E),
        Case("bn1d_nc_16x10", (16, 10), T + T + T + E),
        Case("bn1d_nc_2x8", (2, 8), T + T + E),
        Case("bn1d_nc_1x5_eval", (1, 5), E + E),
        Case("bn1d_nc_large_mean_1e4", (32, 6), T + T + E, means=means_1e4, spreads=spreads_1),
        Case("bn1d_ncl_4x6x20", (4, 6, 20), T + T + E),
        Case("bn1d_ncl_n1_1x3x17", (1, 3, 17), T + E),
        Case("bn1d_ncl_momentum_none_affine_false", (5, 4, 9), T * 4 + E, momentum=None, affine=False),
        Case("bn3d_2x4x3x5x6", (2, 4, 3, 5, 6), T + T + E),
        Case("bn3d_3x2x4x4x4", (3, 2, 4, 4, 4), T + E),
        Case("bn3d_n1_1x3x2x3x5", (1, 3, 2, 3, 5), T + E),
        Case("bn3d_large_mean_1e5_1e6", (2, 3, 3, 4, 5), T + T + E,
             means=means_1e5_1e6, spreads=spreads_001_1),
        Case("bn3d_no_track_eval", (2, 3, 2, 3, 4), T + E, track=False),
    ]


def random_cases(count, seed):
    rng = np.random.RandomState(seed)
    cases = []
    for i in range(count):
        rank = int(rng.randint(2, 6))
        steps = "".join(rng.choice([TRAIN, EVAL]) for _ in range(int(rng.randint(1, 5))))
        affine, track = bool(rng.randint(2)), bool(rng.randint(2))
        while True:  # batch statistics (training, or no running stats) need M > 1
            dims = [int(rng.randint(1, 6)), int(rng.randint(1, 7))]
            dims += [int(rng.randint(1, 6)) for _ in range(rank - 2)]
            m = dims[0] * int(np.prod(dims[2:], dtype=np.int64))
            if m > 1 or (track and TRAIN not in steps):
                break
        scale = rng.choice(["moderate", "moderate", "1e4", "1e5_1e6"])
        means, spreads = {"moderate": (None, None), "1e4": (means_1e4, spreads_1),
                          "1e5_1e6": (means_1e5_1e6, spreads_001_1)}[scale]
        momentum = [0.1, None, 0.3, 1.0, 0.0, float(np.float32(rng.uniform(0.01, 0.9)))][rng.randint(6)]
        eps = [1e-5, 1e-3, 0.1, float(10.0 ** rng.uniform(-6, -1))][rng.randint(4)]
        cases.append(Case(f"random_s{seed}_{i:03d}", dims, steps, eps=eps, momentum=momentum,
                          affine=affine, track=track,
                          init=["random", "default"][int(rng.rand() < 0.2)],
                          nbt=int(rng.randint(0, 6)), means=means, spreads=spreads))
    return cases


# ---------------------------------------------------------------------------- writing

def f32(a):
    return np.asarray(a, dtype=np.float32)


def fmt_f32(values):
    return " ".join("%.9g" % float(v) for v in np.asarray(values, dtype=np.float32).ravel())


def fmt_f64(values):
    return " ".join("%.17g" % float(v) for v in np.asarray(values, dtype=np.float64).ravel())


def record(key, values="", count=0):
    return f"{key} {count} {values}".rstrip()


def rec32(key, a):
    return record(key, fmt_f32(a), np.asarray(a).size)


def rec64(key, a):
    return record(key, fmt_f64(a), np.asarray(a).size)


def make_input(rng, case, means, spreads):
    shape = case.dims
    bshape = (1, case.channels) + (1,) * (len(shape) - 2)
    x = means.reshape(bshape) + spreads.reshape(bshape) * rng.standard_normal(shape)
    for c in case.constant_channels:
        x[:, c] = means[c]
    return f32(x)


def run_case(torch, case):
    """Run the case through a float64 PyTorch module; return the file's lines."""
    rng = np.random.RandomState(zlib.crc32(case.name.encode()))
    c = case.channels
    means = (case.means or moderate_means)(rng, c)
    spreads = (case.spreads or moderate_spreads)(rng, c)
    cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d,
           4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}[len(case.dims)]
    module = cls(c, eps=case.eps, momentum=case.momentum, affine=case.affine,
                 track_running_stats=case.track).double()

    if case.init == "random":
        weight = f32(rng.uniform(0.4, 1.8, c) * np.where(rng.rand(c) < 0.2, -1.0, 1.0))
        bias = f32(rng.uniform(-1.0, 1.0, c))
        # near the data, so eval outputs are moderate and x - running_mean really cancels
        running_mean = f32(means + rng.normal(0.0, 0.5, c) * spreads)
        running_var = f32(spreads ** 2 * rng.uniform(0.5, 2.0, c))
    else:
        weight, bias = f32(np.ones(c)), f32(np.zeros(c))
        running_mean, running_var = f32(np.zeros(c)), f32(np.ones(c))
    nbt = case.nbt if case.init == "random" else 0

    lines = [f"# {case.name}: torch {torch.__version__} float64 nn.{cls.__name__}",
             record("case"), record("dims", " ".join(map(str, case.dims)), len(case.dims)),
             rec64("eps", [case.eps]),
             rec64("momentum", [case.momentum]) if case.momentum is not None else record("momentum"),
             record("affine", str(int(case.affine)), 1),
             record("track_running_stats", str(int(case.track)), 1)]
    with torch.no_grad():
        if case.affine:
            module.weight.copy_(torch.from_numpy(weight.astype(np.float64)))
            module.bias.copy_(torch.from_numpy(bias.astype(np.float64)))
            lines += [rec32("weight", weight), rec32("bias", bias)]
        if case.track:
            module.running_mean.copy_(torch.from_numpy(running_mean.astype(np.float64)))
            module.running_var.copy_(torch.from_numpy(running_var.astype(np.float64)))
            module.num_batches_tracked.fill_(nbt)
            lines += [rec32("running_mean", running_mean), rec32("running_var", running_var),
                      record("num_batches_tracked", str(nbt), 1)]

    for mode in case.steps:
        training = mode == TRAIN
        x = make_input(rng, case, means, spreads)
        dy = f32(rng.standard_normal(case.dims) * rng.uniform(0.5, 2.0))
        module.train(training)
        xt = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
        if case.affine:
            module.weight.grad = None
            module.bias.grad = None
        if training or not case.track:
            _, save_mean, save_invstd = torch.native_batch_norm(
                xt.detach(), None, None, None, None, True, 0.0, case.eps)
        else:
            save_mean = module.running_mean.clone()
            save_invstd = 1.0 / torch.sqrt(module.running_var + case.eps)
        y = module(xt)
        y.backward(torch.from_numpy(dy.astype(np.float64)))

        lines += [record("step", "1" if training else "0", 1),
                  rec32("x", x), rec32("dy", dy), rec64("y", y.detach().numpy()),
                  rec64("save_mean", save_mean.numpy()), rec64("save_invstd", save_invstd.numpy())]
        if case.track:
            lines += [rec64("running_mean", module.running_mean.numpy()),
                      rec64("running_var", module.running_var.numpy()),
                      record("num_batches_tracked", str(int(module.num_batches_tracked)), 1)]
            with torch.no_grad():  # a float32 module holds the update rounded once to float
                module.running_mean.copy_(module.running_mean.float().double())
                module.running_var.copy_(module.running_var.float().double())
        lines.append(rec64("dx", xt.grad.numpy()))
        if case.affine:
            lines += [rec64("dweight", module.weight.grad.numpy()),
                      rec64("dbias", module.bias.grad.numpy())]
        lines.append(record("end"))
    lines.append(record("eof"))
    return lines


def write_cases(cases, out):
    try:
        import torch
    except Exception as err:
        fail_import("torch", err)
    torch.set_num_threads(1)
    os.makedirs(out, exist_ok=True)
    total = 0
    for case in cases:
        path = os.path.join(out, case.name + ".txt")
        text = "\n".join(run_case(torch, case)) + "\n"
        with open(path, "w", encoding="ascii", newline="\n") as f:
            f.write(text)
        total += len(text)
        print(f"{path}: {len(text)} bytes, dims {'x'.join(map(str, case.dims))}, steps {case.steps}")
    print(f"{len(cases)} cases, {total} bytes")


# ---------------------------------------------------------------------------- self-check

class CaseFile:
    """A parsed case file: header dict plus a list of step dicts, with the record order checked."""

    HEADER = ["case", "dims", "eps", "momentum", "affine", "track_running_stats"]

    def __init__(self, path):
        self.path = path
        records = []
        with open(path, encoding="ascii") as f:
            for lineno, line in enumerate(f, 1):
                if line.startswith("#") or not line.strip():
                    continue
                parts = line.split()
                key, count, values = parts[0], int(parts[1]), parts[2:]
                if count != len(values):
                    raise ValueError(f"{path}:{lineno}: {key} says {count} values, has {len(values)}")
                records.append((key, values))
        keys = [k for k, _ in records]
        if keys[:6] != self.HEADER:
            raise ValueError(f"{path}: header starts {keys[:6]}")
        rec = dict(records[:6])
        self.dims = [int(v) for v in rec["dims"]]
        self.eps = float(rec["eps"][0])
        self.momentum = float(rec["momentum"][0]) if rec["momentum"] else None
        self.affine = rec["affine"] == ["1"]
        self.track = rec["track_running_stats"] == ["1"]
        expected = (["weight", "bias"] if self.affine else []) + \
                   (["running_mean", "running_var", "num_batches_tracked"] if self.track else [])
        pos = 6
        if keys[pos:pos + len(expected)] != expected:
            raise ValueError(f"{path}: initial state records {keys[pos:pos + len(expected)]}, want {expected}")
        self.init = {k: parse(v, k != "num_batches_tracked") for k, v in records[pos:pos + len(expected)]}
        pos += len(expected)
        step_keys = ["step", "x", "dy", "y", "save_mean", "save_invstd"] + \
                    (["running_mean", "running_var", "num_batches_tracked"] if self.track else []) + \
                    ["dx"] + (["dweight", "dbias"] if self.affine else []) + ["end"]
        self.steps = []
        while keys[pos] == "step":
            if keys[pos:pos + len(step_keys)] != step_keys:
                raise ValueError(f"{path}: step records {keys[pos:pos + len(step_keys)]}, want {step_keys}")
            self.steps.append({k: parse(v, k in ("x", "dy")) for k, v in records[pos:pos + len(step_keys)]})
            pos += len(step_keys)
        if keys[pos:] != ["eof"] or not self.steps:
            raise ValueError(f"{path}: expected steps then eof, found {keys[pos:pos + 3]}")


def parse(values, is_float32):
    """Values as float64. Float32 records go through float32 first: "%.9g" text read straight
    into a double is not the float32 value the generator used."""
    if is_float32:
        return np.array(values, dtype=np.float32).astype(np.float64)
    return np.array(values, dtype=np.float64)


def channel_sum(a):
    """Per-channel sum of an (N, C, S) array, correctly rounded (math.fsum)."""
    return np.array([math.fsum(a[:, c, :].ravel()) for c in range(a.shape[1])])


def check_file(path):
    """Recompute every step of a case with plain numpy float64; return the worst error as a
    fraction of the allowed one, with where it happened, and the number of steps."""
    cf = CaseFile(path)
    n, c = cf.dims[0], cf.dims[1]
    s = int(np.prod(cf.dims[2:], dtype=np.int64))
    m = n * s
    gamma = cf.init["weight"] if cf.affine else np.ones(c)
    beta = cf.init["bias"] if cf.affine else np.zeros(c)
    rm = cf.init.get("running_mean")
    rv = cf.init.get("running_var")
    nbt = int(cf.init["num_batches_tracked"][0]) if cf.track else 0
    rm_scale, rv_scale = (np.abs(rm), rv) if cf.track else (None, None)  # what the update sums
    worst = (0.0, "")
    for i, st in enumerate(cf.steps):
        training = st["step"][0] == 1
        x = st["x"].reshape(n, c, s)
        g = st["dy"].reshape(n, c, s)
        if training or not cf.track:
            mean = channel_sum(x) / m
            var = channel_sum((x - mean[None, :, None]) ** 2) / m
            invstd = 1.0 / np.sqrt(var + cf.eps)
            xhat = (x - mean[None, :, None]) * invstd[None, :, None]
            dbias = channel_sum(g)
            dweight = channel_sum(g * xhat)
            dx = (gamma * invstd)[None, :, None] * (
                g - (dbias / m)[None, :, None] - xhat * (dweight / m)[None, :, None])
            if training and cf.track:
                nbt += 1
                f = cf.momentum if cf.momentum is not None else 1.0 / nbt
                rm_scale = (1 - f) * np.abs(rm) + f * np.abs(mean)
                rv_scale = (1 - f) * rv + f * var * m / (m - 1)
                rm = (1 - f) * rm + f * mean
                rv = rv_scale
        else:
            rm_scale, rv_scale = np.abs(rm), rv
            mean = rm
            invstd = 1.0 / np.sqrt(rv + cf.eps)
            xhat = (x - mean[None, :, None]) * invstd[None, :, None]
            dbias = channel_sum(g)
            dweight = channel_sum(g * xhat)
            dx = g * (gamma * invstd)[None, :, None]
        y = xhat * gamma[None, :, None] + beta[None, :, None]
        # each quantity against its natural scale (what its terms can reach), so values that
        # cancel to near zero, like dx when M = 2, are judged by the size of what cancelled
        got = {"y": (y, np.abs(xhat * gamma[None, :, None]) + np.abs(beta[None, :, None])),
               "save_mean": (mean, np.abs(mean)), "save_invstd": (invstd, invstd),
               "dx": (dx, np.abs(g).max() * np.abs(gamma * invstd))}
        if cf.affine:
            got["dweight"] = (dweight, channel_sum(np.abs(g * xhat)))
            got["dbias"] = (dbias, channel_sum(np.abs(g)))
        if cf.track:
            got["running_mean"] = (rm, rm_scale)
            got["running_var"] = (rv, rv_scale)
            if st["num_batches_tracked"][0] != nbt:
                raise AssertionError(f"step {i}: num_batches_tracked {st['num_batches_tracked'][0]:g}, "
                                     f"want {nbt}")
            rm = rm.astype(np.float32).astype(np.float64)  # the float32 buffers of real use
            rv = rv.astype(np.float32).astype(np.float64)
        # PyTorch computes y as x*a + (b - mean*a), a = invstd*weight, even in float64: four
        # roundings of terms as large as |mean*a|, on top of the scaled tolerance
        y_extra = Y_ROUNDINGS * np.broadcast_to(np.abs(mean * invstd * gamma)[None, :, None], x.shape)
        for key, (mine, scale) in got.items():
            want = st[key]
            mine = np.asarray(mine, dtype=np.float64).ravel()
            if mine.shape != want.shape or not np.all(np.isfinite(want)):
                raise AssertionError(f"step {i}: {key} has {want.size} values, want {mine.size}, "
                                     f"or is not finite")
            allowed = np.full(want.shape, SELF_CHECK_TOL * float(np.max(scale)))
            if key == "y":
                allowed += y_extra.ravel()
            diff = np.abs(mine - want)
            if np.any(diff > allowed):
                k = int(np.argmax(diff - allowed))
                raise AssertionError(f"step {i}: {key}[{k}] = {want[k]!r}, numpy gives {mine[k]!r}, "
                                     f"difference {diff[k]:.3g} > allowed {allowed[k]:.3g}")
            used = float(np.max(diff / np.maximum(allowed, 1e-300)))
            if used > worst[0]:
                worst = (used, f"step {i} {key}")
    return worst, len(cf.steps)


# torch (float64, its own summation order) against numpy (correctly rounded sums): differences
# of a few float64 ulps of each quantity's natural scale
SELF_CHECK_TOL = 1e-13
Y_ROUNDINGS = 4 * 2.0 ** -53


def self_check(out):
    files = sorted(f for f in os.listdir(out) if f.endswith(".txt"))
    if not files:
        print(f"self-check: no .txt case files in {out}", file=sys.stderr)
        return 1
    bad = 0
    overall = 0.0
    for name in files:
        try:
            (worst, where), nsteps = check_file(os.path.join(out, name))
            overall = max(overall, worst)
            print(f"ok   {name}: {nsteps} steps, worst error {worst:.3f} of allowed ({where})")
        except (AssertionError, ValueError, KeyError, IndexError) as err:
            bad += 1
            print(f"FAIL {name}: {err}")
    print(f"self-check: {len(files) - bad}/{len(files)} files ok, worst error {overall:.3f} of allowed "
          f"({SELF_CHECK_TOL:g} of each quantity's scale, plus 4 float64 roundings of mean*invstd*weight for y)")
    return 1 if bad else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=DEFAULT_OUT, help="case folder (default: %(default)s)")
    p.add_argument("--random", type=int, metavar="COUNT", help="write COUNT random cases instead")
    p.add_argument("--seed", type=int, default=1, help="seed for --random (default 1)")
    p.add_argument("--self-check", action="store_true",
                   help="re-verify the case files in --out with a numpy reference")
    args = p.parse_args()
    if args.self_check:
        return self_check(args.out)
    if args.random is not None:
        if args.random < 0:
            p.error("--random COUNT must be >= 0")
        write_cases(random_cases(args.random, args.seed), args.out)
    else:
        write_cases(fixed_cases(), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
