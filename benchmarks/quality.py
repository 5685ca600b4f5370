"""FID-proxy / KID / label accuracy of a model for several samplers, step counts and guidance scales.

    python benchmarks/quality.py [--model default] [--n 1000] [--json out.json]

Prints a Markdown table (the model card's quality table) with the real-vs-real floor at the same N.
"""

from __future__ import annotations

import argparse
import time

import torch

from edgediff.format.configs import Request
from edgediff.measure import quality as metrics
from edgediff.measure.report import markdown_table, write_json
from edgediff.runtime import open as sample_open

SETTINGS = [("euler", 50, 1.0), ("dpmpp_2m", 10, 1.0), ("dpmpp_2m", 20, 1.0), ("heun", 10, 1.0),
            ("dpmpp_2m", 10, 2.0), ("dpmpp_2m", 20, 2.0)]


def calls_per_image(sampler: str, steps: int, guidance: float) -> int:
    """Network calls one image costs: Heun re-evaluates every step but the last; CFG doubles each call."""
    calls = 2 * steps - 1 if sampler == "heun" else steps
    return calls * (1 if guidance == 1.0 else 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="default")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for sampler, steps, guidance in SETTINGS:
        t0 = time.perf_counter()
        req = Request(n=a.n, seed=0, sampler=sampler, steps=steps, guidance=guidance)
        images, labels = sample_open.from_model(a.model, request=req, progress=True)
        ev = metrics.evaluate(images, labels)
        rows.append({"sampler": sampler, "steps": steps, "guidance": guidance,
                     "calls_per_image": calls_per_image(sampler, steps, guidance),
                     "seconds": time.perf_counter() - t0, **ev.to_dict()})
    print(markdown_table(
        ["sampler", "steps", "guidance", "calls/image", "FID-proxy (floor)", "KID (floor)", "label acc",
         "min class acc", "N"],
        [[r["sampler"], r["steps"], f"{r['guidance']:g}", r["calls_per_image"],
          f"{r['fid']:.2f} ({r['floor_fid']:.2f})", f"{r['kid'][0]:.3f} ({r['floor_kid'][0]:.3f})",
          f"{r['accuracy']:.3f}", f"{min(r['per_class_accuracy']):.2f}", r["n"]]
         for r in rows]))
    write_json(a.json, rows)


if __name__ == "__main__":
    main()
