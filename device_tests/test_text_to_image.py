"""A text-to-image pipeline artifact on each device of its backend: every component vs eager on the eager
pipeline's own inputs (≥ 35 dB fp32/fp16) and the whole prompt → image (≥ 30 dB), per OpenVINO device (CPU, GPU,
NPU) and Core ML compute unit (CPU_ONLY … ALL, with the components' static shapes).

`--pipeline DIR` tests that pipeline artifact against `--pipeline-folder` (its diffusers folder, the eager
reference); without them a tiny random-weight SD 1.x-style folder is built and converted per backend. A device
this machine lacks is skipped naming it. ExecuTorch pipeline components on Android are not run by this file yet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import unavailable  # device_tests/ is on sys.path (no __init__.py)

import edgediff
from edgediff.converters import parity

TARGETS = {"openvino": ("CPU", "GPU", "NPU"), "coreml": ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")}
PROMPT = "a red apple on a wooden table"
_BUILT: dict[str, Path] = {}


def _params():
    out = []
    for backend, targets in TARGETS.items():
        for target in targets:
            reason = unavailable(backend, target, None)  # names the missing OS or device
            out.append(pytest.param(backend, target, id=f"{backend}-{target}",
                                    marks=[pytest.mark.skip(reason=reason)] if reason else []))
    return out


@pytest.fixture(scope="module")
def folder(pytestconfig, tmp_path_factory) -> Path:
    given = pytestconfig.getoption("--pipeline-folder")
    if given:
        return Path(given)
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from tests.sd_folders import sd_pipeline

    return sd_pipeline(tmp_path_factory.mktemp("t2i-device") / "sd1")


def _pipeline(backend: str, folder: Path, pytestconfig, tmp_path_factory) -> Path:
    given = pytestconfig.getoption("--pipeline")
    if given:
        return Path(given)
    if backend not in _BUILT:
        out = tmp_path_factory.mktemp(f"t2i-{backend}") / "art"
        edgediff.convert(folder, backend=backend, out=out, precision="fp32")
        _BUILT[backend] = out
    return _BUILT[backend]


@pytest.mark.parametrize("backend, target", _params())
def test_pipeline_components_and_image_match_eager_on_the_device(backend, target, folder, pytestconfig,
                                                                 tmp_path_factory):
    from edgediff.converters.text_to_image import record_inputs
    from edgediff.format import pipeline_manifest
    from edgediff.models import text_to_image

    path = _pipeline(backend, folder, pytestconfig, tmp_path_factory)
    manifest = pipeline_manifest.read(path)
    if {c["backend"] for c in manifest["components"].values()} != {backend}:
        pytest.skip(f"{path} is not a {backend} pipeline artifact")
    parts = text_to_image.load(folder)
    eager = text_to_image.eager_pipeline(parts)
    pipe = edgediff.load(path, device=target)
    recorded, _, _ = record_inputs(eager)
    for name in ("text_encoder", "unet", "vae_decoder"):
        for inputs in recorded[name][:3]:
            db = parity.psnr_db(getattr(eager, name)(*inputs), getattr(pipe, name)(*inputs))
            assert db >= parity.MIN_DB, f"{name} on {backend} {target}: {db:.1f} dB"
    ref = eager.generate(prompt=PROMPT, seed=0, steps=10)
    out = pipe.generate(prompt=PROMPT, seed=0, steps=10)
    assert np.isfinite(out).all() and parity.psnr_db(ref, out) >= 30
