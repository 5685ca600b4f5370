"""Same seed, same sampler: an artifact's samples must match eager's (acceptance: >= 30 dB PSNR)."""

from __future__ import annotations

import numpy as np
import pytest

from edgediff import converters
from edgediff.converters import build, parity
from edgediff.errors import EdgediffError
from edgediff.format import artifact
from edgediff.models import eager  # noqa: E402 - the reference Runner class
from edgediff.sampling.denoiser import make_denoiser
from edgediff.sampling.samplers import sample

MIN_SAMPLE_DB = 30.0
SEEDS = (0, 1, 2, 3)


def _runner(art: artifact.Artifact, device: str):
    options = {"device": device} if art.backend == "openvino" else {}
    try:
        return converters.get(art.backend).load(art, **options)
    except EdgediffError as e:
        pytest.skip(f"{art.backend} cannot run here: {e}")


def _samples(runner, art: artifact.Artifact, model, seed: int) -> np.ndarray:
    """10-step DPM-Solver++(2M) from a seeded x_T, one label per image (cycling through the classes)."""
    batch = art.spec["x"][0][0]
    label = (np.arange(batch) + seed) % art.num_classes if art.num_classes else None
    denoiser = make_denoiser(runner, model.precond, label=label)
    return sample(denoiser, art.spec["x"][0], sampler="dpmpp_2m", steps=10, rng=np.random.default_rng(seed),
                  sigma_min=model.precond.sigma_min, sigma_max=model.precond.sigma_max)


def test_same_seed_samples_match_eager(artifact_dir, model, pytestconfig):
    art = artifact.read(artifact_dir)
    if art.source.get("weights_sha256") != build.weights_sha256(model.net):
        pytest.skip(f"{artifact_dir} was built from other weights than --model {pytestconfig.getoption('--model')}")
    runner = _runner(art, pytestconfig.getoption("--device"))
    c = model.unet
    reference = eager.EagerRunner(model.net, channels=c.in_channels, resolution=c.resolution,
                                  num_classes=c.num_classes)
    for seed in SEEDS:
        ref, out = _samples(reference, art, model, seed), _samples(runner, art, model, seed)
        db = parity.psnr_db(ref, out)
        assert db >= MIN_SAMPLE_DB, f"{art.backend} {art.precision} seed {seed}: {db:.1f} dB < {MIN_SAMPLE_DB}"
