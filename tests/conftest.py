import os

import numpy as np
import pytest
import torch

from edgediff.format.configs import UNetConfig
from edgediff.format.precond import Preconditioning
from edgediff.models import checkpoint
from edgediff.models.unet import UNet

# The default run spreads test files over up to 2 pytest-xdist workers (pyproject's addopts); each worker (and the
# commands it starts) gets its share of the cores, so two workers never oversubscribe CI's 2 cores.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, min(2, (os.cpu_count() or 1) // _workers))))
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

SMALL = UNetConfig(channels=(16, 32), attention_levels=(1,), time_embed_dim=32, num_classes=10)


def random_unet(config: UNetConfig = SMALL, *, seed: int = 0) -> UNet:
    """A seeded random UNet whose output is not zero (the zero-initialised conv_out gets small weights)."""
    torch.manual_seed(seed)
    net = UNet(config)
    torch.nn.init.normal_(net.conv_out.weight, std=0.05)
    return net


@pytest.fixture
def small_model_dir(tmp_path):
    """A randomly initialised (non-zero output) small model directory."""
    net = random_unet()
    meta = {"name": "small-test", "precond": Preconditioning().to_dict(),
            "sampler_defaults": {"sampler": "dpmpp_2m", "steps": 4, "guidance": 2.0}}
    return checkpoint.save(tmp_path / "model", net, meta)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
