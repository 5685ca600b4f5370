"""Core ML weight compression measured without a Mac (issue #5): size against fp16, and the FID-proxy of the torch
model rebuilt from the weights read back out of each .mlpackage (`coreml.decompressed_state_dict`).

    python benchmarks/coreml_compression.py [--model default] [--n 1000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from edgediff.converters import coreml, eager
from edgediff.converters.convert import convert_model
from edgediff.measure import quality as metrics
from edgediff.measure.report import markdown_table
from edgediff.models import checkpoint
from edgediff.sampling import generate

PRECISIONS = ("fp16", "w8", "palette6", "palette4", "w4")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="default")
    p.add_argument("--n", type=int, default=1000)
    a = p.parse_args()
    torch.set_num_threads(2)
    work, md = Path(tempfile.mkdtemp()), checkpoint.load(a.model)
    rows, fp16 = [], None
    for precision in PRECISIONS:
        art = convert_model(a.model, "coreml", work / precision, precision=precision)
        fp16 = fp16 or art.size_bytes
        md.net.load_state_dict(coreml.decompressed_state_dict(art, checkpoint.load(a.model).net.state_dict()))
        d = md.sampler_defaults
        req = generate.recommended(d, n=a.n, seed=0)
        images, labels = generate.generate(eager.load(md), md.precond, (1, 32, 32), req, num_classes=10)
        ev = metrics.evaluate(images, labels)
        rows.append([precision, f"{art.size_bytes / 1e6:.2f}", f"{art.size_bytes / fp16:.3f}", f"{ev.fid:.2f}",
                     f"{ev.floor_fid:.2f}"])
        print(rows[-1], flush=True)
    print(markdown_table(["Core ML precision", "MB", "× fp16 size", "FID-proxy (decompressed weights)", "floor"],
                         rows))


if __name__ == "__main__":
    main()
