"""Device tests: run shipped-model artifacts on this machine's runtimes and compare them with eager.

`pytest device_tests --artifacts DIR` tests every artifact dir under DIR; without it, the model named by `--model`
('default' unless given) is converted on the fly for each installed backend. A runtime that cannot run here
(Core ML off macOS, a missing package, an untrained model) skips with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from edgediff import artifact, checkpoint
from edgediff.errors import ModelFileError

os.environ.setdefault("OMP_NUM_THREADS", "2")
BACKENDS = {"executorch": "executorch.exir", "openvino": "openvino", "coreml": "coremltools"}


def pytest_addoption(parser):
    parser.addoption("--artifacts", default=None, help="directory holding artifact dirs (artifact.json inside)")
    parser.addoption("--model", default="default", help="model the artifacts come from (and the eager reference)")
    parser.addoption("--device", default="CPU", help="OpenVINO device for the artifact runners")


def discover(root: os.PathLike) -> list[Path]:
    """Every artifact dir at or below `root`."""
    return sorted(p.parent for p in Path(root).rglob(artifact.ARTIFACT_FILE))


def pytest_generate_tests(metafunc):
    if "artifact_source" not in metafunc.fixturenames:
        return
    root = metafunc.config.getoption("--artifacts")
    if root:
        dirs = discover(root)
        metafunc.parametrize("artifact_source", [str(d) for d in dirs], ids=[str(d.relative_to(root)) or "."
                                                                              for d in dirs], scope="session")
    else:
        metafunc.parametrize("artifact_source", list(BACKENDS), scope="session")


@pytest.fixture(scope="session")
def model(pytestconfig) -> checkpoint.ModelDir:
    """The eager reference model; skips while it has no trained weights."""
    try:
        return checkpoint.load(pytestconfig.getoption("--model"))
    except ModelFileError as e:
        pytest.skip(f"no reference model: {e}")


@pytest.fixture(scope="session")
def artifact_dir(artifact_source, model, tmp_path_factory) -> Path:
    """An artifact dir: given by --artifacts, or converted now from --model for one backend."""
    if artifact_source not in BACKENDS:
        return Path(artifact_source)
    pytest.importorskip(BACKENDS[artifact_source])
    from edgediff.converters import get

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    mod = get(artifact_source)
    c = model.unet
    spec = artifact.make_spec(channels=c.in_channels, resolution=c.resolution, num_classes=c.num_classes,
                              label_dtype=mod.LABEL_DTYPE)
    out = tmp_path_factory.mktemp(artifact_source) / "artifact"
    return mod.convert(model.net, spec, out, precond=model.precond, sampler_defaults=model.sampler_defaults,
                       source={"model": str(model.path)}).path
