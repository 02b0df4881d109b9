"""Merges the peers' CSV rows into the suite's table, CSV and chart (used by scripts/bench.sh).

Input: files of rows `shape,layout,op,impl,threads,median_ns` (header lines and '#' comments
are skipped). Output: the CSV `shape,layout,op,impl,threads,median_ns,gbps,pct_copy_bw`, an
aligned table on stdout, and a PNG chart (matplotlib) of time per shape and implementation.

gbps counts the minimal memory traffic of each op, in bytes per tensor element:
forward_train 8 (read x once, write y), forward_eval 8, backward 12 (read dy and x, write dx);
the per-channel vectors are ignored. STREAM rows count 16 (copy) and 24 (triad) bytes per array
element. pct_copy_bw compares gbps with the stream-copy row of the same thread count.
"""

import argparse
import csv
import math
import sys
from collections import OrderedDict

BYTES_PER_ELEMENT = {"forward_train": 8, "forward_eval": 8, "backward": 12, "copy": 16, "triad": 24}
OP_ORDER = ["forward_train", "forward_eval", "backward"]
IMPL_ORDER = ["panama-batchnorm", "panama-batchnorm-array", "panama-batchnorm-c", "plain-c",
              "java-vector", "java-scalar", "pytorch", "onednn"]
COLUMNS = ["shape", "layout", "op", "impl", "threads", "median_ns", "gbps", "pct_copy_bw"]
TRAFFIC_NOTE = ("gbps = minimal traffic / time: forward_train 8 B/elem (read x once, write y), "
                "forward_eval 8 B/elem, backward 12 B/elem (read dy and x, write dx); "
                "pct_copy_bw = gbps / stream-copy GB/s at the same thread count")


def read_rows(paths):
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#") or line.startswith("shape,"):
                    continue
                fields = line.split(",")
                if len(fields) != 6:
                    print(f"# bench_report: ignoring malformed row in {path}: {line}", file=sys.stderr)
                    continue
                shape, layout, op, impl, threads, median_ns = fields
                rows.append({"shape": shape, "layout": layout, "op": op, "impl": impl,
                             "threads": int(threads), "median_ns": float(median_ns)})
    return rows


def elements(shape):
    return math.prod(int(d) for d in shape.split("x"))


def add_bandwidth(rows):
    copy_gbps = {}
    for row in rows:
        per_elem = BYTES_PER_ELEMENT.get(row["op"])
        row["gbps"] = (per_elem * elements(row["shape"]) / row["median_ns"]
                       if per_elem and row["median_ns"] > 0 else None)
        if row["impl"] == "stream-copy" and row["gbps"]:
            copy_gbps[row["threads"]] = row["gbps"]
    for row in rows:
        copy = copy_gbps.get(row["threads"])
        row["pct_copy_bw"] = 100 * row["gbps"] / copy if copy and row["gbps"] else None


def order_key(shape_order):
    def key(row):
        impl = row["impl"]
        stream = impl.startswith("stream-")
        return (0 if stream else 1,
                OP_ORDER.index(row["op"]) if row["op"] in OP_ORDER else len(OP_ORDER),
                shape_order.get(row["shape"], len(shape_order)),
                row["threads"],
                IMPL_ORDER.index(impl) if impl in IMPL_ORDER else len(IMPL_ORDER), impl)
    return key


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([row["shape"], row["layout"], row["op"], row["impl"], row["threads"],
                             f"{row['median_ns']:.0f}", fmt_number(row["gbps"], 2),
                             fmt_number(row["pct_copy_bw"], 1)])


def fmt_number(value, digits):
    return "" if value is None else f"{value:.{digits}f}"


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.0f} ns"


def print_table(rows):
    pytorch = {(r["shape"], r["op"], r["threads"]): r["median_ns"] for r in rows
               if r["impl"] == "pytorch"}
    header = ["op", "shape", "threads", "impl", "median", "GB/s", "%copy", "vs pytorch"]
    lines = []
    for row in rows:
        base = pytorch.get((row["shape"], row["op"], row["threads"]))
        speedup = f"{base / row['median_ns']:.2f}x" if base and row["impl"] != "pytorch" else ""
        lines.append([row["op"], row["shape"], str(row["threads"]), row["impl"],
                      fmt_time(row["median_ns"]), fmt_number(row["gbps"], 1),
                      fmt_number(row["pct_copy_bw"], 0), speedup])
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(header)]
    right = {2, 4, 5, 6, 7}

    def render(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print(render(header))
    print("  ".join("-" * w for w in widths))
    previous = None
    for row, line in zip(rows, lines):
        group = "stream" if row["impl"].startswith("stream-") else (row["op"], row["shape"])
        if previous is not None and group != previous:
            print()
        previous = group
        print(render(line))
    print()
    print(TRAFFIC_NOTE)


def draw_chart(rows, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    data = [r for r in rows if r["op"] in OP_ORDER]
    if not data:
        print("# bench_report: no BatchNorm rows, no chart", file=sys.stderr)
        return
    ops = [op for op in OP_ORDER if any(r["op"] == op for r in data)]
    # one group of bars per (shape, threads), in the rows' order (shape first)
    groups = list(OrderedDict.fromkeys((r["shape"], r["threads"]) for r in data))
    groups.sort(key=lambda g: ([r["shape"] for r in data].index(g[0]), g[1]))
    impls = [i for i in IMPL_ORDER if any(r["impl"] == i for r in data)]
    impls += sorted({r["impl"] for r in data} - set(impls))
    copy_gbps = {r["threads"]: r["gbps"] for r in rows if r["impl"] == "stream-copy" and r["gbps"]}
    times = {(r["op"], r["shape"], r["threads"], r["impl"]): r["median_ns"] for r in data}
    colors = {impl: plt.get_cmap("tab10")(k % 10) for k, impl in enumerate(impls)}

    width = 0.8 / len(impls)
    plotted = [ns / 1e3 for ns in times.values()]
    fig, axes = plt.subplots(len(ops), 1, squeeze=False, sharey=True,
                             figsize=(max(8.0, 0.9 + 0.11 * len(groups) * (len(impls) + 1)),
                                      3.3 * len(ops) + 0.8))
    for row_index, op in enumerate(ops):
        ax = axes[row_index][0]
        for g, (shape, threads) in enumerate(groups):
            present = [(impl, times[(op, shape, threads, impl)]) for impl in impls
                       if (op, shape, threads, impl) in times]
            left = g - width * len(present) / 2
            for k, (impl, ns) in enumerate(present):
                ax.bar(left + width * (k + 0.5), ns / 1e3, width, color=colors[impl])
            if threads in copy_gbps:
                # the time this op's minimal traffic takes at the copy bandwidth
                bound_us = BYTES_PER_ELEMENT[op] * elements(shape) / copy_gbps[threads] / 1e3
                plotted.append(bound_us)
                ax.hlines(bound_us, g - 0.45, g + 0.45, colors="black", linestyles="dashed",
                          linewidth=1)
        ax.set_yscale("log")
        ax.set_title(op, fontsize=10)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{shape}\n{threads} thread{'s' if threads > 1 else ''}"
                            for shape, threads in groups], fontsize=8)
        ax.set_xlim(-0.5, len(groups) - 0.5)
        ax.grid(axis="y", which="major", alpha=0.3)
        ax.set_ylabel("median time per call (us)")
    axes[0][0].set_ylim(min(plotted) / 2, max(plotted) * 2)
    handles = [Patch(color=colors[impl], label=impl) for impl in impls]
    handles.append(Line2D([], [], color="black", linestyle="dashed", linewidth=1,
                          label="copy-bandwidth bound"))
    columns = 4
    legend_rows = -(-len(handles) // columns)
    fig.legend(handles=handles, loc="upper center", ncol=columns, fontsize=8,
               bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.text(0.5, 0.005, title, ha="center", va="bottom", fontsize=8)
    fig.tight_layout(rect=(0, 0.02, 1, 1 - (0.1 + 0.2 * legend_rows) / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="peer CSV files")
    parser.add_argument("--csv", required=True, help="merged CSV to write")
    parser.add_argument("--chart", help="PNG chart to write")
    parser.add_argument("--shapes", default="", help="comma-separated shape order for the table")
    parser.add_argument("--title", default="", help="caption under the chart")
    args = parser.parse_args()

    rows = read_rows(args.inputs)
    if not rows:
        print("bench_report: no rows from any peer", file=sys.stderr)
        return 1
    add_bandwidth(rows)
    shape_order = {s: i for i, s in enumerate(v for v in args.shapes.split(",") if v)}
    rows.sort(key=order_key(shape_order))
    write_csv(rows, args.csv)
    print_table(rows)
    if args.chart:
        draw_chart(rows, args.chart, args.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
