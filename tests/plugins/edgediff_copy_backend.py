"""A fourth backend from outside the package, as a plugin would add one: `eagercopy` stores the network's weights
(safetensors) and config in the artifact and runs them eagerly. It touches no edgediff file — it declares a
Backend and is found through the `edgediff.backends` entry point of this folder's dist-info."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from edgediff.converters import build
from edgediff.converters.base import ModuleBackend
from edgediff.format import artifact
from edgediff.format.configs import UNetConfig
from edgediff.format.inputs import SpecRunner
from edgediff.models import checkpoint
from edgediff.models.unet import UNet

MODEL_FILE = "model.safetensors"


def make_backend(name: str = "eagercopy") -> ModuleBackend:
    """The backend, under `name` (a test registers a second copy at run time under another name)."""

    def convert(net, spec, out_dir, *, precision="fp32", calibration=None, precond, sampler_defaults=None,
                source=None):
        header = build.header_for(net, spec, backend=name, precision=precision, precond=precond,
                                  sampler_defaults=sampler_defaults, source=source, tools=())

        def lower(tmp: Path):
            checkpoint.write_tensors(tmp / MODEL_FILE, net.state_dict())
            (tmp / "unet.json").write_text(json.dumps(net.config.to_dict()))
            return MODEL_FILE, {"note": "eager PyTorch on the host CPU"}

        return build.build(net, out_dir, header, lower=lower, load_staged=lambda f: CopyRunner(f, header))

    def load(artifact_or_dir, *, device=None, threads=None):
        art = artifact.open_artifact(artifact_or_dir, backend=name)
        return CopyRunner(art.model_path, art)

    return ModuleBackend(name=name, precisions=("fp32",), label_dtype="int64", requires=("torch",),
                         devices=lambda: ["CPU"], convert_fn=convert, load_fn=load)


class CopyRunner(SpecRunner):
    def __init__(self, model_file: Path, header):
        self.spec, self.num_classes = header.spec, header.num_classes
        self.net = UNet(UNetConfig.from_dict(json.loads((Path(model_file).parent / "unet.json").read_text())))
        checkpoint.load_weights(self.net, Path(model_file))
        self.net.eval()

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return self.net(*(torch.from_numpy(v) for v in inputs.values())).numpy()


BACKEND = make_backend()
