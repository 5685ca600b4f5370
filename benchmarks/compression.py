"""Compression table of issue #5: unpruned vs 50%-pruned, fp32 vs int8 (trajectory vs random calibration) vs w8.

    python benchmarks/compression.py [--models default mnist-tiny-p50] [--fid 1000] [--out runs/compression]

Run on an idle machine: every ms/step in the table comes from one run, ratios are taken inside it.
"""

from __future__ import annotations

import argparse

from edgediff.measure import compression


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", default=["default", "mnist-tiny-p50"])
    p.add_argument("--fid", type=int, default=1000)
    p.add_argument("--threads", type=int)
    p.add_argument("--out", default="runs/compression")
    a = p.parse_args()
    print(compression.report(a.models, a.out, fid=a.fid, threads=a.threads).read_text())


if __name__ == "__main__":
    main()
