"""Training images/s and eager ms/step for each shipped model size, at batch 1 and 8 (run on an idle machine).

    python benchmarks/trunk_speed.py [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import platform

import torch

from edgediff.format.configs import TrainConfig
from edgediff.measure import info
from edgediff.measure.latency import measure, min_of_medians
from edgediff.measure.report import markdown_table, write_json
from edgediff.models import checkpoint
from edgediff.models.unet import UNet
from edgediff.training.data import load
from edgediff.training.edm import edm_loss


def train_images_per_second(md, images, labels, *, precision: str, batch: int = 128, steps: int = 6) -> float:
    net = UNet(md.unet).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    cfg = TrainConfig(precision=precision)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.from_numpy(images[:batch]), torch.from_numpy(labels[:batch])

    def step():
        loss = edm_loss(net, x, y, md.precond, gen, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return batch / (measure(step, warmup=2, iters=steps).p50 / 1e3)


def eager_ms_per_step(md, batch: int) -> float:
    c = md.unet
    x = torch.randn(batch, c.in_channels, c.resolution, c.resolution)
    t, y = torch.zeros(batch), torch.zeros(batch, dtype=torch.long)
    net = md.net.eval()
    with torch.inference_mode():
        return min_of_medians(lambda: net(x, t, y), repeats=3, warmup=3, iters=20)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    data = load("mnist5k")
    rows = []
    for name in ("mnist-nano", "mnist-tiny", "mnist-small"):
        md = checkpoint.load(name, weights=False)
        d = info.describe(name)
        rows.append({"model": name, "params_M": d["params"] / 1e6, "gflops": d["gflops_per_step"],
                     "train_img_s_bf16": train_images_per_second(md, data.images, data.labels, precision="bf16"),
                     "train_img_s_fp32": train_images_per_second(md, data.images, data.labels, precision="fp32"),
                     "eager_ms_b1": eager_ms_per_step(md, 1), "eager_ms_b8": eager_ms_per_step(md, 8)})
    print(f"host: {platform.processor() or platform.machine()}, {a.threads} threads, torch {torch.__version__}")
    print(markdown_table(
        ["model", "params", "GFLOPs/step", "train img/s bf16", "train img/s fp32", "eager ms/step b1",
         "eager ms/step b8"],
        [[r["model"], f"{r['params_M']:.2f} M", f"{r['gflops']:.3f}", f"{r['train_img_s_bf16']:.0f}",
          f"{r['train_img_s_fp32']:.0f}", f"{r['eager_ms_b1']:.2f}", f"{r['eager_ms_b8']:.2f}"] for r in rows]))
    write_json(a.json, rows)


if __name__ == "__main__":
    main()
