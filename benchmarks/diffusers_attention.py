"""A DDPM-CIFAR-style diffusers UNet2DModel with attention (AttnDownBlock2D / AttnUpBlock2D), random weights, on
every CPU backend: delegate islands, fallback ops, parity and ms/step from one `edgediff bench` run (#16, acc. 2).

    python benchmarks/diffusers_attention.py [--out runs/byom-attn] [--width 64] [--iters 20] [--json r.json]

The folder is built from a config (no download) and saved with `save_pretrained` as a DDPMPipeline; conversion
artifacts are reused when the model and recipe did not change, so an interrupted run is simply run again. Run it
on an idle machine: the ratio ExecuTorch / OpenVINO ms/step is the number this script exists for.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import edgediff
from edgediff.measure.report import markdown_table, write_json

BACKENDS = ("executorch", "openvino", "litert")
LIMIT = 1.3  # acceptance: ExecuTorch fp32 ms/step ≤ 1.3 × OpenVINO's


def build_folder(path: Path, width: int) -> Path:
    """google/ddpm-cifar10-32's layout (4 levels, attention at 16×16, 2 blocks per level) at `width` channels."""
    if (path / "model_index.json").is_file():
        return path
    import diffusers
    import torch

    torch.manual_seed(0)
    w = (width, 2 * width, 2 * width, 2 * width)
    unet = diffusers.UNet2DModel(sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
                                 block_out_channels=w, norm_num_groups=32 if width % 32 == 0 else 8,
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/byom-attn")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json")
    a = ap.parse_args()
    out = Path(a.out)
    start = time.time()
    folder = build_folder(out / "ddpm-cifar-style", a.width)
    arts = []
    for backend in BACKENDS:
        print(f"converting for {backend} …", flush=True)
        arts.append(edgediff.convert(folder, backend=backend, out=out / "art" / backend))
    rows = edgediff.bench([str(folder), *(str(x.path) for x in arts)], out=out / "bench", iters=a.iters,
                          progress=True)
    by = {r.backend: r for r in rows}
    table = []
    for art in arts:
        r, cov = by[art.backend], art.op_coverage
        table.append({"backend": art.backend, "ms_step": r.step["p50"], "parity_db": art.parity_db,
                      "islands": cov.get("islands"), "fallback_ops": cov.get("fallback_ops", {})})
    ratio = by["executorch"].step["p50"] / by["openvino"].step["p50"]
    print(markdown_table(["backend", "ms/step p50", "parity dB", "islands", "fallback ops"],
                         [[t["backend"], f"{t['ms_step']:.2f}", f"{t['parity_db']:.1f}", t["islands"],
                           ", ".join(f"{k} ×{v}" for k, v in t["fallback_ops"].items()) or "none"] for t in table]))
    print(f"eager {by['eager'].step['p50']:.2f} ms/step; ExecuTorch / OpenVINO = {ratio:.2f}× "
          f"({'meets' if ratio <= LIMIT else 'misses'} ≤ {LIMIT}×); wall {time.time() - start:.0f} s")
    if a.json:
        write_json(Path(a.json), {"rows": table, "eager_ms_step": by["eager"].step["p50"], "et_over_ov": ratio})


if __name__ == "__main__":
    main()
