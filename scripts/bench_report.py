"""Merges the peers' rows into the suite's table, CSV and chart, and checks the project's
performance goals (used by scripts/bench.sh).

Input: files of rows `shape,layout,dtype,op,impl,threads,cache,median_ns` and '#' comments; the
comments `# skipped: ...` (what a peer could not run) and `# isa: ...` (the kernels libbatchnorm
chose) are read too. Output: the CSV `shape,layout,dtype,op,impl,threads,cache,median_ns,gbps,
pct_copy_bw,vs_roof` (after '#' lines naming the machine), an aligned table on stdout followed by
the goals and the skipped combinations, and a PNG chart (matplotlib) of `vs roof` per op.

Row kinds:
  stream    impl stream: the STREAM probe (shape = doubles per array, arrays past the last-level
            cache); its copy bandwidth is the `%copy` column's reference at the same thread count
  roofline  impl roofline, layout "-": per shape, element size, thread count and cache mode, an
            op's least traffic moved the plainest way (bench/c/roofline.h): read, copy, add, add3,
            add3x2
  the ops   every other row

gbps counts an op's minimal traffic: each tensor it must read or write once, at the element
size of its dtype (f32 4 bytes, bf16/f16 2); per-channel vectors are ignored. `vs roof` is the
op's roofline time over the row's time: 1.00 is as fast as moving the op's bytes the plainest way,
in the same cache mode.
"""

import argparse
import csv
import math
import re
import sys
from collections import OrderedDict, defaultdict

ELEMENT_SIZE = {"f32": 4, "bf16": 2, "f16": 2, "f64": 8}
# tensors each op reads and writes once (x, z, y, dy, dx, dz as the op has them)
TENSORS = {"forward_train": 2, "forward_eval": 2, "backward": 3, "forward_train_relu": 2,
           "forward_train_add_relu": 3, "backward_relu": 4, "backward_add_relu": 5,
           "read": 1, "copy": 2, "add": 3, "add3": 4, "add3x2": 5}
STREAM_BYTES = {"copy": 16, "triad": 24}  # per array element, STREAM's way
ROOF_OF = {"forward_train": "copy", "forward_eval": "copy", "backward": "add",
           "forward_train_relu": "copy", "forward_train_add_relu": "add",
           "backward_relu": "add3", "backward_add_relu": "add3x2"}
OPS = list(ROOF_OF)
# Channels-last: a channel's values are spread over every row, so no core's cache holds them
# between the statistics and the elementwise pass, and what that pass needs of the reduction's
# inputs is read twice. The op's two-pass bound is then its roofline plus a `read` per such
# input: x in the forward; dy and x in the backward, and in the fused backwards the masked
# gradient and x (the reduction can leave the gradient in dz, which the op writes anyway, or in
# dx, or its mask as bits, a 32nd of a tensor).
REDUCED_INPUTS = {"forward_train": 1, "forward_train_relu": 1, "forward_train_add_relu": 1,
                  "backward": 2, "backward_relu": 2, "backward_add_relu": 2}
ROOFS = ["read", "copy", "add", "add3", "add3x2"]
LAYOUTS = ["nchw", "nhwc"]
DTYPES = ["f32", "bf16", "f16"]
CACHES = ["warm", "cold"]
OURS = "panama-batchnorm"  # the public Java API through memory segments
C_KERNEL = "panama-batchnorm-c"
OUR_IMPLS = [OURS, "panama-batchnorm-array", C_KERNEL]
# peers that run on one thread whatever the case's thread count: their 1-thread rows are what
# the goals compare with
SINGLE_THREADED = ["java-scalar"]
IMPL_ORDER = OUR_IMPLS + ["plain-c", "onednn-nChw16c", "onednn-nChw8c", "onednn", "pytorch",
                          "java-vector", "java-scalar"]
COLUMNS = ["shape", "layout", "dtype", "op", "impl", "threads", "cache", "median_ns", "gbps",
           "pct_copy_bw", "vs_roof"]

# ---- The project's performance goals, in one place -------------------------------------------
# Checked on the rows present, at GOAL_THREADS threads, with `ours` = panama-batchnorm (the
# public Java API). Every goal names its ops, shapes, layouts, dtypes and cache modes (None: all
# present) and one test:
#   roof      vs roof of ours >= min
#   peers     ours ahead of every other implementation's row of the same case (java-scalar:
#             its 1-thread row) by >= `ahead`
#             where that row is below `below` of the roofline, else not behind it by more than
#             the noise (ours <= (1 + noise) x the peer's time)
#   faster    ref time / our time >= k; ref is ours changed by `ref` (another impl, layout,
#             dtype or op)
#   at_most   our time <= k x (ref time [+ the `plus` rooflines' time: "read", "read+write"
#             (a write: copy less read), or per op a dict of those])
#   limit     our time <= limits_ns[op]
# Where ours has no row but the C kernel has, the line is printed as information (the C kernel's
# figure), not counted.
GOAL_THREADS = 2
LARGE = ["32x64x56x56", "256x512x7x7", "64x256x14x14", "8x32x112x112", "128x16x32x32"]
THREE = ["32x64x56x56", "64x256x14x14", "256x512x7x7"]
BASE_OPS = ["forward_train", "forward_eval", "backward"]
TRAIN_OPS = ["forward_train", "forward_train_relu", "forward_train_add_relu"]
BACKWARD_OPS = ["backward", "backward_relu", "backward_add_relu"]
GOALS = [
    dict(name="forward eval at >= 0.90 of its roofline (a copy)",
         test="roof", ops=["forward_eval"], shapes=LARGE, min=0.90),
    dict(name="training forward at >= 0.75 of its roofline (x read once, y written once; "
              "Add+ReLU also reads z)",
         test="roof", ops=TRAIN_OPS, shapes=LARGE, min=0.75),
    dict(name="backward at >= 0.75 of its roofline (dy and x read once, dx written once; fused: "
              "also y read, dz written)",
         test="roof", ops=BACKWARD_OPS, shapes=LARGE, min=0.75),
    dict(name="ahead of every peer by >= 1.10x where the peer is below 0.90 of the roofline, "
              "never behind one beyond noise (5%)",
         test="peers", ops=OPS, shapes=LARGE, ahead=1.10, below=0.90, noise=0.05),
    dict(name="the Java API within 1.05x of the C kernel alone",
         test="at_most", ops=OPS, shapes=LARGE, ref=dict(impl=C_KERNEL), k=1.05),
    dict(name="(1,8,4,4) from Java: training <= 150 ns, eval <= 100 ns, backward <= 150 ns",
         test="limit", ops=BASE_OPS, shapes=["1x8x4x4"], caches=["warm"], threads=None,
         limits_ns={"forward_train": 150, "forward_eval": 100, "backward": 150}),
    dict(name="channels-last training >= 2x PyTorch channels_last",
         test="faster", ops=["forward_train"], shapes=THREE, layouts=["nhwc"], dtypes=["f32"],
         ref=dict(impl="pytorch"), k=2.0),
    dict(name="channels-last eval >= 1x PyTorch channels_last",
         test="faster", ops=["forward_eval"], shapes=THREE, layouts=["nhwc"], dtypes=["f32"],
         ref=dict(impl="pytorch"), k=1.0),
    dict(name="channels-last backward >= 1.5x PyTorch channels_last",
         test="faster", ops=["backward"], shapes=THREE, layouts=["nhwc"], dtypes=["f32"],
         ref=dict(impl="pytorch"), k=1.5),
    dict(name="channels-last within 1.15x of our NCHW time",
         test="at_most", ops=BASE_OPS, shapes=THREE, layouts=["nhwc"],
         ref=dict(layout="nchw"), k=1.15),
    dict(name="fused BN+ReLU forward <= 1.1x our unfused training forward",
         test="at_most", ops=["forward_train_relu"], shapes=THREE,
         ref=dict(op="forward_train"), k=1.1),
    dict(name="fused BN+Add+ReLU forward <= 1.1x (our unfused training forward + a read of z)",
         test="at_most", ops=["forward_train_add_relu"], shapes=THREE,
         ref=dict(op="forward_train"), plus="read", k=1.1),
    dict(name="fused forward >= 3x PyTorch's composition",
         test="faster", ops=["forward_train_relu", "forward_train_add_relu"], shapes=THREE,
         ref=dict(impl="pytorch"), k=3.0),
    dict(name="fused backward <= 1.1x (our backward + a read of y; Add+ReLU also writes dz: "
              "+ a write)",
         test="at_most", ops=["backward_relu", "backward_add_relu"], shapes=THREE,
         ref=dict(op="backward"), plus={"backward_relu": "read", "backward_add_relu": "read+write"},
         k=1.1),
    dict(name="bfloat16 training >= 2x PyTorch bfloat16",
         test="faster", ops=["forward_train"], shapes=THREE, dtypes=["bf16"],
         ref=dict(impl="pytorch"), k=2.0),
    dict(name="bfloat16 training <= 0.6x our float32 time",
         test="at_most", ops=["forward_train"], shapes=THREE, dtypes=["bf16"],
         ref=dict(dtype="f32"), k=0.6),
    dict(name="bfloat16 eval and backward >= 1.5x PyTorch bfloat16",
         test="faster", ops=["forward_eval", "backward"], shapes=THREE, dtypes=["bf16"],
         ref=dict(impl="pytorch"), k=1.5),
    dict(name="bfloat16 eval and backward <= 0.65x our float32 time",
         test="at_most", ops=["forward_eval", "backward"], shapes=THREE, dtypes=["bf16"],
         ref=dict(dtype="f32"), k=0.65),
    dict(name="float16 within 1.1x of bfloat16",
         test="at_most", ops=BASE_OPS, shapes=THREE, dtypes=["f16"], ref=dict(dtype="bf16"),
         k=1.1),
    dict(name="a synchronised training step over 2 ranks <= 1.15x the local step on the same "
              "shard (op sync_step: forward + backward of (32,64,56,56) split over the ranks)",
         test="at_most", ops=["sync_step"], shapes=["32x64x56x56"], layouts=["nchw"],
         dtypes=["f32"], ours="panama-batchnorm-sync-2ranks",
         ref=dict(impl="panama-batchnorm-local-2ranks"), k=1.15),
    dict(name="the exchange's own cost: a synchronised step over 2 ranks <= 1.1x the same shard "
              "through the public phases with nothing exchanged (which reads x and dy twice, as one "
              "exchange per pass must)",
         test="at_most", ops=["sync_step"], shapes=["32x64x56x56"], layouts=["nchw"],
         dtypes=["f32"], ours="panama-batchnorm-sync-2ranks",
         ref=dict(impl="panama-batchnorm-phases-2ranks"), k=1.1),
]

SKIPPED = re.compile(r"^# skipped: (.*)$")
ISA = re.compile(r"^# isa: (\S+)")


def read_inputs(paths):
    """(rows, skipped lines, the kernels' ISA as the harnesses printed it)."""
    rows, skipped, isas, seen = [], [], [], set()
    for path in paths:
        with open(path, newline="") as f:
            for line in f:
                line = line.strip()
                if SKIPPED.match(line):
                    skipped.append(SKIPPED.match(line).group(1))
                if ISA.match(line):
                    isas.append(ISA.match(line).group(1))
                if not line or line.startswith("#") or line.startswith("shape,"):
                    continue
                fields = line.split(",")
                if len(fields) != 8:
                    print(f"# bench_report: ignoring malformed row in {path}: {line}", file=sys.stderr)
                    continue
                shape, layout, dtype, op, impl, threads, cache, ns = fields
                key = (impl, shape, layout, dtype, op, threads, cache)
                if key in seen:  # java-scalar runs at 1 thread in every plan: keep the first
                    continue
                seen.add(key)
                rows.append(dict(shape=shape, layout=layout, dtype=dtype, op=op, impl=impl,
                                 threads=int(threads), cache=cache, median_ns=float(ns)))
    known = [i for i in isas if i != "unknown"]
    return rows, skipped, (known[0] if known else "unknown")


def elements(shape):
    return math.prod(int(d) for d in shape.split("x"))


def is_stream(row):
    return row["impl"] == "stream"


def is_roof(row):
    return row["impl"] == "roofline"


def add_figures(rows):
    """gbps, pct_copy_bw and vs_roof of every row."""
    copy_gbps = {}
    for row in rows:
        if is_stream(row):
            per = STREAM_BYTES.get(row["op"])
        else:
            per = TENSORS.get(row["op"], 0) * ELEMENT_SIZE.get(row["dtype"], 0)
        row["gbps"] = per * elements(row["shape"]) / row["median_ns"] if per and row["median_ns"] > 0 else None
        if is_stream(row) and row["op"] == "copy" and row["gbps"]:
            copy_gbps[row["threads"]] = row["gbps"]
    roofs = roof_times(rows)
    for row in rows:
        copy = copy_gbps.get(row["threads"])
        row["pct_copy_bw"] = 100 * row["gbps"] / copy if copy and row["gbps"] else None
        row["vs_roof"] = vs_roof(roofs, row)


def roof_times(rows):
    """(shape, threads, cache, element size, roof op) -> ns of the roofline row."""
    return {(r["shape"], r["threads"], r["cache"], ELEMENT_SIZE[r["dtype"]], r["op"]): r["median_ns"]
            for r in rows if is_roof(r)}


def roof_ns(roofs, row, op=None):
    roof = ROOF_OF.get(op or row["op"]) if op != "read" else "read"
    return roofs.get((row["shape"], row["threads"], row["cache"],
                      ELEMENT_SIZE.get(row["dtype"], 0), roof))


def vs_roof(roofs, row):
    if is_stream(row) or is_roof(row):
        return None
    ns = roof_ns(roofs, row)
    return ns / row["median_ns"] if ns and row["median_ns"] > 0 else None


def two_pass_bound(roofs, row):
    """A channels-last op's least time with its reduced inputs read twice, or None."""
    reads = REDUCED_INPUTS.get(row["op"]) if row["layout"] == "nhwc" else None
    roof, read = roof_ns(roofs, row), roof_ns(roofs, row, op="read")
    return roof + reads * read if reads and roof and read else None


def case_key(row):
    return (row["shape"], row["layout"], row["dtype"], row["op"], row["threads"], row["cache"])


def sort_rows(rows, shape_order):
    def key(row):
        impl = row["impl"]
        return (0 if is_stream(row) else 1 if is_roof(row) else 2,
                CACHES.index(row["cache"]) if row["cache"] in CACHES else 9,
                DTYPES.index(row["dtype"]) if row["dtype"] in DTYPES else 9,
                LAYOUTS.index(row["layout"]) if row["layout"] in LAYOUTS else 9,
                (OPS + ROOFS).index(row["op"]) if row["op"] in OPS + ROOFS else 99,
                shape_order.get(row["shape"], len(shape_order)), row["threads"],
                IMPL_ORDER.index(impl) if impl in IMPL_ORDER else len(IMPL_ORDER), impl)
    rows.sort(key=key)


def fmt_number(value, digits):
    return "" if value is None else f"{value:.{digits}f}"


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.0f} ns"


def write_csv(rows, path, machine_lines):
    with open(path, "w", newline="") as f:
        for line in machine_lines:
            f.write(f"# {line}\n")
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow([r["shape"], r["layout"], r["dtype"], r["op"], r["impl"], r["threads"],
                             r["cache"], f"{r['median_ns']:.0f}", fmt_number(r["gbps"], 2),
                             fmt_number(r["pct_copy_bw"], 1), fmt_number(r["vs_roof"], 2)])


def render(header, lines, right):
    widths = [max([len(h)] + [len(l[i]) for l in lines if l]) for i, h in enumerate(header)]

    def one(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [one(header), "  ".join("-" * w for w in widths)]
    out += [one(l) if l else "" for l in lines]
    return "\n".join(out)


def print_table(rows):
    pytorch = {case_key(r): r["median_ns"] for r in rows if r["impl"] == "pytorch"}
    header = ["cache", "dtype", "layout", "op", "shape", "thr", "impl", "median", "GB/s", "%copy",
              "vs roof", "vs pytorch"]
    lines, previous = [], None
    for r in rows:
        group = ("stream" if is_stream(r) else ("roof", r["cache"]) if is_roof(r)
                 else (r["cache"], r["dtype"], r["layout"], r["op"], r["shape"]))
        if previous is not None and group != previous:
            lines.append(None)
        previous = group
        base = pytorch.get(case_key(r))
        speedup = f"{base / r['median_ns']:.2f}x" if base and r["impl"] != "pytorch" else ""
        lines.append([r["cache"], r["dtype"], r["layout"], r["op"], r["shape"], str(r["threads"]),
                      r["impl"], fmt_time(r["median_ns"]), fmt_number(r["gbps"], 1),
                      fmt_number(r["pct_copy_bw"], 0), fmt_number(r["vs_roof"], 2), speedup])
    print(render(header, lines, right={5, 7, 8, 9, 10, 11}))
    print()
    print("GB/s = minimal traffic / time (each tensor the op must read or write, once, at its "
          "element size); %copy = GB/s over the STREAM copy\nbandwidth at the same thread count; "
          "vs roof = the op's roofline time / time, same shape, element size, threads and cache "
          "mode:\ncopy (y = x) for the forwards, add (dx = dy + x) for backward and Add+ReLU's "
          "forward, add3 / add3x2 for the fused backwards\n(1.00 = as fast as moving the op's bytes "
          "the plainest way); vs pytorch = PyTorch's time / time, same case.")


class Goals:
    """Checks GOALS on the rows; prints a line per checked case and a tally."""

    def __init__(self, rows):
        self.times = {(r["impl"],) + case_key(r): r["median_ns"] for r in rows}
        self.rows = [r for r in rows if not is_stream(r) and not is_roof(r)]
        self.roofs = roof_times(rows)
        self.tally = defaultdict(int)

    def cases(self, goal):
        """The cases a goal covers that have a row of ours or of the C kernel."""
        ours = goal.get("ours", OURS)
        seen = OrderedDict()
        for r in self.rows:
            if r["impl"] not in (ours, C_KERNEL) or r["op"] not in goal["ops"]:
                continue
            if r["shape"] not in goal["shapes"]:
                continue
            if goal.get("layouts") and r["layout"] not in goal["layouts"]:
                continue
            if goal.get("dtypes") and r["dtype"] not in goal["dtypes"]:
                continue
            if r["cache"] not in goal.get("caches", CACHES):
                continue
            threads = goal.get("threads", GOAL_THREADS)
            if threads is not None and r["threads"] != threads:
                continue
            seen[case_key(r)] = True
        return list(seen)

    def check(self, goal):
        ours = goal.get("ours", OURS)
        print(f"\ngoal: {goal['name']}")
        cases = self.cases(goal)
        if not cases:
            print(f"  skipped: no {ours} or {C_KERNEL} rows for "
                  f"{'/'.join(goal['ops'])} on these shapes, layouts and types")
            self.tally["skipped"] += 1
            return
        lines = []
        for case in cases:
            impl = ours if (ours,) + case in self.times else C_KERNEL
            line = self.test(goal, impl, case)
            if line:
                self.tally["info" if impl != ours and line[3] != "skipped" else line[3]] += 1
                lines.append([" ".join(str(v) for v in (case[5], case[2], case[1], case[3],
                                                         case[0]))] + line)
        if lines:
            widths = [max(len(l[i]) for l in lines) for i in range(len(lines[0]))]
            for l in lines:
                print("  " + "  ".join(c.rjust(w) if i in (2, 3) else c.ljust(w)
                                       for i, (c, w) in enumerate(zip(l, widths))).rstrip())

    def ns(self, subject, case, **change):
        shape, layout, dtype, op, threads, cache = case
        key = (change.get("impl", subject), change.get("shape", shape), change.get("layout", layout),
               change.get("dtype", dtype), change.get("op", op), threads, cache)
        return self.times.get(key)

    def extra_ns(self, row, plus):
        """The time of the traffic `plus` names ("read", "write", joined by "+"), or None."""
        total = 0.0
        for part in plus.split("+"):
            read = roof_ns(self.roofs, row, op="read")
            copy = roof_ns(self.roofs, row, op="forward_eval")  # its roofline is a copy
            ns = read if part == "read" else copy - read if copy and read else None
            if ns is None:
                return None
            total += ns
        return total

    def test(self, goal, impl, case):
        """[who, target, measured, verdict, note] or None when a reference row is missing."""
        t = goal["test"]
        ours_ns = self.ns(impl, case)
        who = "ours" if impl == goal.get("ours", OURS) else "C kernel (info)"
        row = dict(zip(("shape", "layout", "dtype", "op", "threads", "cache"), case))
        roof = roof_ns(self.roofs, row)
        roof_note = f"vs roof {roof / ours_ns:.2f}" if roof else "no roofline row"
        if t == "roof":
            if not roof:
                return [who, f">= {goal['min']:.2f}", "-", "skipped", "no roofline row"]
            value = roof / ours_ns
            note = f"roofline {fmt_time(roof)}, ours {fmt_time(ours_ns)}"
            bound = two_pass_bound(self.roofs, row)
            if bound:
                note += f"; two-pass bound {fmt_time(bound)} = {roof / bound:.2f} of the roofline, " \
                        f"ours at {bound / ours_ns:.2f} of it"
            return at_bound([who, f">= {goal['min']:.2f}", f"{value:.2f}",
                             verdict(value >= goal["min"]), note],
                            bound and roof / bound, lambda v: v >= goal["min"], "", show=False)
        if t == "limit":
            limit = goal["limits_ns"][case[3]]
            return [who, f"<= {limit} ns", fmt_time(ours_ns), verdict(ours_ns <= limit), ""]
        if t == "peers":
            worst = None
            for r in self.rows:
                if r["impl"] in OUR_IMPLS or r["impl"].startswith(OURS):
                    continue
                key = case_key(r)
                if r["impl"] in SINGLE_THREADED:
                    key = key[:4] + (case[4],) + key[5:]
                if key != case:
                    continue
                peer_roof = roof / r["median_ns"] if roof else None
                need = goal["ahead"] if peer_roof is not None and peer_roof < goal["below"] \
                    else 1 / (1 + goal["noise"])
                ratio = r["median_ns"] / ours_ns
                margin = ratio / need
                if worst is None or margin < worst[0]:
                    worst = (margin, r["impl"], ratio, need, peer_roof)
            if worst is None:
                return None
            _, peer, ratio, need, peer_roof = worst
            peer_note = f"{peer} vs roof {peer_roof:.2f}" if peer_roof is not None else peer
            bound = two_pass_bound(self.roofs, row)
            return at_bound([who, f">= {need:.2f}x", f"{ratio:.2f}x", verdict(ratio >= need),
                             f"closest: {peer_note}; ours {roof_note}"],
                            bound and ratio * ours_ns / bound, lambda v: v >= need, "x")
        ref_ns = self.ns(impl, case, **goal["ref"])
        if ref_ns is None:
            return None
        plus = goal.get("plus")
        if isinstance(plus, dict):
            plus = plus[row["op"]]
        if plus:
            extra = self.extra_ns(row, plus)
            if extra is None:
                return None
            ref_ns += extra
        ref_name = ", ".join(f"{k} {v}" for k, v in goal["ref"].items()) + (f" + {plus}" if plus else "")
        bound = two_pass_bound(self.roofs, row)
        if t == "faster":
            value = ref_ns / ours_ns
            return at_bound([who, f">= {goal['k']:.2f}x", f"{value:.2f}x",
                             verdict(value >= goal["k"]),
                             f"vs {ref_name} {fmt_time(ref_ns)}; ours {roof_note}"],
                            bound and ref_ns / bound, lambda v: v >= goal["k"], "x")
        value = ours_ns / ref_ns
        note = f"vs {ref_name} {fmt_time(ref_ns)}; ours {roof_note}"
        return at_bound([who, f"<= {goal['k']:.2f}x", f"{value:.2f}x", verdict(value <= goal["k"]),
                         note], bound and bound / ref_ns, lambda v: v <= goal["k"], "x")


def verdict(ok):
    return "PASS" if ok else "MISS"


def at_bound(line, best, reaches, unit, show=True):
    """A channels-last line with what its figure would be at the op's two-pass bound (best; the
    other figures of the line as measured): a miss the bound itself misses is marked BOUND, out
    of reach on this machine."""
    if not best:
        return line
    if show:
        line[4] += f"; at the two-pass bound {best:.2f}{unit}"
    if line[3] == "MISS" and not reaches(best):
        line[3] = "BOUND"
    return line


def print_goals(rows):
    print("\nThe project's performance goals, checked on this run's rows: at "
          f"{GOAL_THREADS} threads unless a goal says otherwise, in every cache mode present, with "
          f"ours = {OURS}\n(the public Java API). Where ours has no row yet but the C kernel has, "
          "the line shows the C kernel's figure as information.\nA channels-last line with a "
          "reduction also shows its figure at the op's two-pass bound (the roofline plus a read "
          "of each input its elementwise pass needs again);\nBOUND marks a miss that the bound "
          "misses too: out of reach on this machine.")
    goals = Goals(rows)
    for goal in GOALS:
        goals.check(goal)
    t = goals.tally
    print(f"\ngoals: {t['PASS']} PASS, {t['MISS']} MISS, {t['BOUND']} BOUND (missed, and out of "
          f"reach at the channels-last two-pass bound), {t['info']} information only (C kernel), "
          f"{t['skipped']} skipped (no rows)")


def print_skipped(skipped):
    """The skipped combinations, grouped by implementation and reason."""
    if not skipped:
        return
    groups = OrderedDict()
    for line in skipped:
        what, _, why = line.partition(": ")
        words = what.split()
        impl = words[0] if words else what
        case = " ".join(words[1:])
        cases = groups.setdefault((impl, why), [])
        if case not in cases:
            cases.append(case)
    print("\nskipped (what could not run, and why):")
    for (impl, why), cases in groups.items():
        shown = [c for c in cases if c][:4]
        more = f", ... ({len(cases)} in all)" if len(cases) > len(shown) else ""
        print(f"  {impl}: {why}" + (f" [{', '.join(shown)}{more}]" if shown else ""))


CHART_TOP = 2.0


def draw_chart(rows, path, title):
    """vs roof per op and cache mode: a group of bars per shape, layout and dtype at
    GOAL_THREADS threads, a bar per implementation; 1.00 is the roofline."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    data = [r for r in rows if r.get("vs_roof") and r["threads"] == GOAL_THREADS
            and r["shape"] != "1x8x4x4"]
    if not data:
        print("# bench_report: no rows with a roofline at "
              f"{GOAL_THREADS} threads, no chart", file=sys.stderr)
        return
    ops = [op for op in OPS if any(r["op"] == op for r in data)]
    caches = [c for c in CACHES if any(r["cache"] == c for r in data)]
    impls = [i for i in IMPL_ORDER if any(r["impl"] == i for r in data)]
    impls += sorted({r["impl"] for r in data} - set(impls))
    colors = {impl: plt.get_cmap("tab10")(k % 10) for k, impl in enumerate(impls)}
    groups = list(OrderedDict.fromkeys((r["shape"], r["layout"], r["dtype"]) for r in data))
    values = {(r["op"], r["cache"], r["shape"], r["layout"], r["dtype"], r["impl"]): r["vs_roof"]
              for r in data}
    width = 0.8 / max(1, len(impls))
    fig, axes = plt.subplots(len(ops), len(caches), squeeze=False, sharey=True,
                             figsize=(max(8.0, 1.0 + 0.06 * len(groups) * (len(impls) + 1))
                                      * len(caches), 2.6 * len(ops) + 1.2))
    # a noisy outlier would squash every other bar: bars above CHART_TOP are clipped and labelled
    top = min(CHART_TOP, max(1.2, max(values.values()) * 1.1))
    for i, op in enumerate(ops):
        for j, cache in enumerate(caches):
            ax = axes[i][j]
            present = [g for g in groups if any((op, cache) + g + (impl,) in values for impl in impls)]
            for x, g in enumerate(present):
                bars = [(impl, values[(op, cache) + g + (impl,)]) for impl in impls
                        if (op, cache) + g + (impl,) in values]
                left = x - width * len(bars) / 2
                for k, (impl, v) in enumerate(bars):
                    ax.bar(left + width * (k + 0.5), min(v, top), width, color=colors[impl])
                    if v > top:
                        ax.text(left + width * (k + 0.5), top, f"{v:.1f}", rotation=90,
                                ha="center", va="top", fontsize=5, color="white")
            ax.axhline(1.0, color="black", linestyle="dotted", linewidth=1)
            ax.set_title(f"{op}, {cache}", fontsize=9)
            ax.set_xticks(range(len(present)))
            ax.set_xticklabels(["\n".join(g) for g in present], fontsize=6)
            ax.set_ylim(0, top)
            ax.grid(axis="y", alpha=0.3)
            if j == 0:
                ax.set_ylabel("vs roof", fontsize=8)
    handles = [Patch(color=colors[impl], label=impl) for impl in impls]
    fig.legend(handles=handles, loc="upper center", ncol=min(6, len(handles)), fontsize=8,
               frameon=False)
    fig.text(0.5, 0.005, title, ha="center", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 1 - 0.5 / fig.get_figheight()))
    fig.savefig(path, dpi=100)
    plt.close(fig)


SUMMARY_IMPLS = [OURS, C_KERNEL, "plain-c", "onednn-nChw16c", "onednn-nChw8c", "onednn", "pytorch",
                 "java-vector"]


def write_summary(rows, path, header):
    """A Markdown table for the docs: float32 NCHW at GOAL_THREADS threads, per shape, op and
    cache mode the time of each implementation with its `vs roof`."""
    cases = OrderedDict()
    for r in rows:
        if (r["layout"], r["dtype"], r["threads"]) == ("nchw", "f32", GOAL_THREADS) \
                and r["op"] in BASE_OPS:
            cases.setdefault((r["shape"], r["op"], r["cache"]), {})[r["impl"]] = r
    impls = [i for i in SUMMARY_IMPLS if any(i in c for c in cases.values())]
    lines = [f"<!-- {line} -->" for line in header]
    lines.append("| shape | op | cache | roofline | " + " | ".join(impls) + " |")
    lines.append("|---|---|---|---:|" + "---:|" * len(impls))
    roofs = roof_times(rows)
    for (shape, op, cache), by_impl in cases.items():
        any_row = next(iter(by_impl.values()))
        roof = roof_ns(roofs, any_row)
        cells = []
        for impl in impls:
            r = by_impl.get(impl)
            cells.append("–" if r is None else fmt_time(r["median_ns"])
                         + (f" ({r['vs_roof']:.2f})" if r["vs_roof"] else ""))
        lines.append(f"| {shape} | {op} | {cache} | {fmt_time(roof) if roof else '–'} | "
                     + " | ".join(cells) + " |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def read_machine(path):
    """key=value lines of the machine file bench.sh writes."""
    machine = OrderedDict()
    if path:
        with open(path) as f:
            for line in f:
                key, sep, value = line.rstrip("\n").partition("=")
                if sep:
                    machine[key] = value
    return machine


def machine_lines(machine, isa):
    isa = machine.get("isa") if machine.get("isa", "unknown") != "unknown" else isa
    return [f"machine: {machine.get('cpu', 'unknown CPU')}, {machine.get('cores', '?')} cores, "
            f"L2 {machine.get('l2', '?')} per core, L3 {machine.get('l3', '?')}; CPU flags: "
            f"{machine.get('flags', '?')}; libbatchnorm kernels: {isa}",
            f"run: {machine.get('command', '?')} on {machine.get('date', '?')}, "
            f"{machine.get('mode', '?')} mode; load average at start {machine.get('load', '?')}"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="peer CSV files")
    parser.add_argument("--csv", required=True, help="merged CSV to write")
    parser.add_argument("--chart", help="PNG chart to write")
    parser.add_argument("--shapes", default="", help="comma-separated shape order for the table")
    parser.add_argument("--machine", help="the machine file bench.sh writes (key=value lines)")
    parser.add_argument("--summary", help="a Markdown table of float32 NCHW to write (for the docs)")
    args = parser.parse_args()

    rows, skipped, isa = read_inputs(args.inputs)
    if not rows:
        print("bench_report: no rows from any peer", file=sys.stderr)
        return 1
    header = machine_lines(read_machine(args.machine), isa)
    add_figures(rows)
    sort_rows(rows, {s: i for i, s in enumerate(v for v in args.shapes.split(",") if v)})
    write_csv(rows, args.csv, header)
    for line in header:
        print(line)
    print()
    print_table(rows)
    print_goals(rows)
    print_skipped(skipped)
    if args.summary:
        write_summary(rows, args.summary, header)
    if args.chart:
        draw_chart(rows, args.chart, " | ".join(header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
