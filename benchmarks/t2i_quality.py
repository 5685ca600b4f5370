"""Quality table of a colour text-to-image model on the held-out emoji captions (issue #18, acceptance 2).

    python benchmarks/t2i_quality.py [TARGET ...] [--n 1000] [--steps S] [--guidance G] [--sampler NAME]
        [--gamma G] [--seed-offset K] [--threads N] [--json t2i_quality.json]

Each TARGET is a text model (default: the shipped openmoji-t2i, drawn eagerly) or a converted pipeline artifact
(e.g. one with an int8 UNet: `edgediff.convert(model="openmoji-t2i", backend="openvino", precision={"unet":
"int8"}, out=...)`), each drawn at its own recommended sampler, steps and guidance unless --steps/--guidance. N
images are drawn over the held-out captions (cycled in split order; image k of caption c takes seed k), scored with
the shipped emoji metric (`edgediff.measure.quality_emoji`): FID/KID-proxy against the held-out images with the
real-vs-real floor at the same N, prompt alignment beside the real held-out images', nearest-training-image
distances. The last lines give each target's FID and alignment ratios to the first target's and to real images'.
Sampler settings are tuned with --seed-offset (e.g. 10000: other seeds than the table's), then the table is drawn
at offset 0 with the chosen ones.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

import edgediff
from edgediff.errors import EdgediffError
from edgediff.measure import quality_emoji
from edgediff.measure.report import markdown_table, write_json


def draw(model, prompts: list[str], *, steps: int, guidance: float | None, progress: bool = True,
         seed_offset: int = 0, **sampler) -> np.ndarray:
    """Images for `prompts` (one per entry), drawn per distinct prompt in one batch, rows in `prompts` order;
    `sampler`: generate's sampler / gamma (None: the model's)."""
    out, counts = {}, Counter(prompts)
    for i, (prompt, k) in enumerate(counts.items()):
        out[prompt] = list(model.generate(prompt=prompt, n=k, seed=seed_offset + i, steps=steps, guidance=guidance,
                                          **sampler))
        if progress and (i + 1) % 50 == 0:
            print(f"  {i + 1}/{len(counts)} prompts", flush=True)
    return np.stack([out[p].pop(0) for p in prompts])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("targets", nargs="*", default=["openmoji-t2i"])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--steps", type=int, help="default: each target's own (teacher 20, 2-step student 2)")
    p.add_argument("--guidance", type=float)
    p.add_argument("--sampler", help="default: each target's own")
    p.add_argument("--gamma", type=float, help="the tcd sampler's γ (default: the target's own)")
    p.add_argument("--seed-offset", type=int, default=0, help="draw caption i with seed K + i (tuning: not 0)")
    p.add_argument("--json", default="t2i_quality.json")
    p.add_argument("--threads", type=int, help="inference threads of every target (default: the runtime's own)")
    a = p.parse_args(argv)
    try:
        return _run(a)
    except EdgediffError as e:  # a bad target or sampler setting: one line, exit 1, nothing written
        raise SystemExit(f"t2i_quality.py: {e}") from None


def _run(a) -> int:
    prompts = quality_emoji.heldout_prompts(a.n)
    rows, body = [], []
    for target in a.targets:
        model, t0 = edgediff.load(target, threads=a.threads), time.perf_counter()
        steps = a.steps or int(model.sampler_defaults["steps"])
        images = draw(model, prompts, steps=steps, guidance=a.guidance, seed_offset=a.seed_offset,
                      sampler=a.sampler, gamma=a.gamma)
        e = quality_emoji.evaluate_emoji(images, prompts)
        rows.append({"target": target, "backend": model.backend, "steps": steps, "seconds": time.perf_counter() - t0,
                     **e.to_dict()})
        print(f"{target} ({model.backend}, {steps} steps):\n{e.to_text()}", flush=True)
    for r in rows:
        body.append([r["target"], r["backend"], str(r["steps"]), f"{r['fid']:.2f}", f"{r['floor_fid']:.2f}",
                     f"{r['fid'] / rows[0]['fid']:.2f}", f"{r['alignment']:.3f}",
                     f"{r['alignment'] / r['real_alignment']:.2f}", f"{r['nearest_train']:.3f}",
                     f"{r['heldout_nearest_train']:.3f}",
                     f"{100 * r['copies']:.1f}% ({100 * r['heldout_copies']:.1f}%)",
                     f"{r['seconds']:.0f}"])
    print(markdown_table(["target", "backend", "steps", f"FID-proxy (N={a.n})", "floor", "× first",
                          "alignment", "× real", "NN-train", "held-out NN-train", "copies (held-out)", "s"], body))
    write_json(a.json, {"n": a.n, "steps": a.steps, "guidance": a.guidance, "sampler": a.sampler, "gamma": a.gamma,
                        "seed_offset": a.seed_offset, "real_alignment":
                        rows[0]["real_alignment"], "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
