"""Run-to-run spread of `edgediff bench`: the same targets benchmarked twice, p50 ratios per row (acceptance: 15%).

    python benchmarks/bench_spread.py default art/et art/ov [art/et-int8 art/ov-int8 ...] [--out runs/spread]
        [--threads 2] [--runs 2] [--iters 20] [--json spread.json]

Run it on an idle machine. Each run is a full bench (a fresh subprocess per target, as `edgediff bench` does) and
writes its own report folder under --out; the table gives, per row, ms/step p50 and image ms of every run, the
spread (max/min - 1) of each, and the sampler overhead; the last lines give the worst spreads and wall times.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from edgediff.measure import bench
from edgediff.measure.report import markdown_table, write_json

LIMIT = 0.15  # acceptance: two runs within 15% of each other
OVERHEAD_LIMIT = 0.02  # acceptance: sampler overhead < 2% of the image time


def spread(values: list[float]) -> float:
    """max/min - 1 of positive values (0 for one value)."""
    return max(values) / min(values) - 1.0


def table(runs: list[list[dict]]) -> tuple[list[list[str]], list[dict]]:
    """One Markdown row and one JSON row per target row, matched by position across runs."""
    body, out = [], []
    for rows in zip(*runs, strict=True):
        p50 = [r["step"]["p50"] for r in rows]
        image = [r["image_ms"] for r in rows]
        overhead = max(r["sampler_overhead_frac"] for r in rows)
        name = f"{rows[0]['backend']} {rows[0]['precision']} {rows[0]['device']}"
        out.append({"row": name, "p50": p50, "image_ms": image, "p50_spread": spread(p50),
                    "image_spread": spread(image), "sampler_overhead_max": overhead})
        body.append([name, " / ".join(f"{v:.2f}" for v in p50), f"{100 * spread(p50):.1f}%",
                     " / ".join(f"{v:.1f}" for v in image), f"{100 * spread(image):.1f}%", f"{100 * overhead:.2f}%"])
    return body, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="+")
    p.add_argument("--out", default="runs/spread")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--threads", type=int)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--json")
    a = p.parse_args()
    runs, walls = [], []
    for i in range(a.runs):
        t0 = time.perf_counter()
        records = bench.run(a.targets, out_dir=Path(a.out) / f"run{i + 1}", threads=a.threads, warmup=a.warmup,
                            iters=a.iters)
        walls.append(time.perf_counter() - t0)
        runs.append(bench.rows(records))
    body, out = table(runs)
    print(markdown_table(["row", "ms/step p50 per run", "p50 spread", "image ms per run", "image spread",
                          "sampler overhead (max)"], body))
    worst = max(r["p50_spread"] for r in out)
    overhead = max(r["sampler_overhead_max"] for r in out)
    print(f"\nmax p50 spread {100 * worst:.1f}% ({'within' if worst <= LIMIT else 'OVER'} {100 * LIMIT:.0f}%); "
          f"max image spread {100 * max(r['image_spread'] for r in out):.1f}%; max sampler overhead "
          f"{100 * overhead:.2f}% ({'<' if overhead < OVERHEAD_LIMIT else 'NOT <'} {100 * OVERHEAD_LIMIT:.0f}%); "
          f"wall per run: {', '.join(f'{w:.0f} s' for w in walls)}")
    write_json(a.json, out)


if __name__ == "__main__":
    main()
