"""Few-step generation (issue #6): the consistency student against its teacher, quality and speed in one run.

    python benchmarks/few_step.py [--teacher default] [--student mnist-tiny-cd] [--n 1000] [--out runs/few_step]

1. Quality vs steps: FID-proxy (1000 samples, seed 0) for the teacher (euler 50, dpmpp_2m 10/20) and the student
   (1, 2, 4 consistency steps), plus guided label accuracy (teacher CFG vs the student's folded-in w).
2. Speed: one image end to end (sampler included), batch 1, min of 3 medians: the teacher with euler-50 on torch
   eager against the 2-step student on eager, ExecuTorch and OpenVINO.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

import edgediff
from edgediff.converters.convert import convert_model
from edgediff.format.configs import Request
from edgediff.measure import quality as metrics
from edgediff.measure.latency import min_of_medians
from edgediff.measure.report import markdown_table
from edgediff.runtime import open as sample_open
from edgediff.sampling import generate

# (model, sampler, steps, guidance, σ schedule): "formula" = edgediff.sampling.schedule; "model" = the model's tuned
# sampler_defaults.sigmas where it has them for these steps (`edgediff tune-schedule`), else the formula
QUALITY = [("teacher", "euler", 50, 1.0, "model"), ("teacher", "dpmpp_2m", 10, 1.0, "model"),
           ("teacher", "dpmpp_2m", 20, 1.0, "model"), ("student", "consistency", 1, 1.0, "model"),
           ("student", "consistency", 2, 1.0, "formula"), ("student", "consistency", 2, 1.0, "model"),
           ("student", "consistency", 4, 1.0, "model"), ("teacher", "dpmpp_2m", 10, 2.0, "model"),
           ("student", "consistency", 2, 2.0, "model")]


def quality(models: dict, n: int) -> list[dict]:
    from edgediff.models import checkpoint
    from edgediff.sampling.schedules import schedule

    rows = []
    for who, sampler, steps, g, sched in QUALITY:
        md = checkpoint.load(models[who], weights=False)
        formula = tuple(schedule(sampler, steps, sigma_min=md.precond.sigma_min, sigma_max=md.precond.sigma_max))
        req = generate.with_defaults(Request(n=n, seed=0, sampler=sampler, steps=steps, guidance=g,
                                                      sigmas=formula if sched == "formula" else None),
                                     md.sampler_defaults)
        images, labels = sample_open.from_model(models[who], request=req)
        ev = metrics.evaluate(images, labels)
        calls = steps * (2 if g != 1.0 and who == "teacher" else 1)
        sigmas = "formula" if req.sigmas in (None, formula) else "tuned " + ",".join(f"{v:g}" for v in req.sigmas)
        rows.append({"model": who, "sampler": sampler, "steps": steps, "guidance": g, "calls": calls,
                     "sigmas": sigmas, "fid": ev.fid, "floor": ev.floor_fid, "accuracy": ev.accuracy})
        print(f"{who:<8} {sampler:<12} {steps:>3} g={g:g} σ {sigmas}: FID-proxy {ev.fid:.2f} acc {ev.accuracy:.3f}",
              flush=True)
    return rows


def speed(models: dict, work: Path) -> list[dict]:
    arts = {b: convert_model(models["student"], b, work / b) for b in ("executorch", "openvino")}
    cases = [("teacher", "eager", models["teacher"], "euler", 50), ("student", "eager", models["student"],
                                                                        "consistency", 2)]
    cases += [("student", b, str(a.path), "consistency", 2) for b, a in arts.items()]
    rows = []
    for who, backend, src, sampler, steps in cases:
        m = edgediff.load(src)
        req = Request(n=1, seed=0, sampler=sampler, steps=steps, guidance=1.0, batch_size=1)
        ms = min_of_medians(lambda m=m, q=req: m.sample(q), warmup=3, iters=15)
        rows.append({"model": who, "backend": backend, "sampler": f"{sampler}-{steps}", "image_ms": ms})
    base = rows[0]["image_ms"]
    for r in rows:
        r["speedup_vs_teacher_euler50_eager"] = base / r["image_ms"]
        print(f"{r['model']:<8} {r['backend']:<10} {r['sampler']:<14} {r['image_ms']:8.2f} ms/image "
              f"({r['speedup_vs_teacher_euler50_eager']:.1f}x)", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--teacher", default="default")
    p.add_argument("--student", default="mnist-tiny-cd")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--out", default="runs/few_step")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    models = {"teacher": a.teacher, "student": a.student}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    speed_rows = speed(models, Path(tempfile.mkdtemp()))
    quality_rows = [] if a.skip_quality else quality(models, a.n)
    (out / "few_step.json").write_text(json.dumps({"quality": quality_rows, "speed": speed_rows}, indent=1))
    if quality_rows:
        print(markdown_table(["model", "sampler", "steps", "σ", "guidance", "network calls", "FID-proxy (floor)",
                              "label acc"],
                             [[r["model"], r["sampler"], r["steps"], r["sigmas"], f"{r['guidance']:g}", r["calls"],
                               f"{r['fid']:.2f} ({r['floor']:.2f})", f"{r['accuracy']:.3f}"] for r in quality_rows]))
    print(markdown_table(["model", "backend", "sampler", "ms / image", "× vs teacher euler-50 eager"],
                         [[r["model"], r["backend"], r["sampler"], f"{r['image_ms']:.2f}",
                           f"{r['speedup_vs_teacher_euler50_eager']:.1f}"] for r in speed_rows]))


if __name__ == "__main__":
    main()
