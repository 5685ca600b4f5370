import json

import pytest
import torch

from edgediff import checkpoint
from edgediff.errors import ModelFileError


def test_round_trip(small_model_dir):
    md = checkpoint.load(small_model_dir)
    again = checkpoint.load(small_model_dir)
    x, t = torch.randn(1, 1, 32, 32), torch.zeros(1)
    torch.testing.assert_close(md.net(x, t), again.net(x, t))
    assert md.sampler_defaults["steps"] == 4 and md.precond.sigma_data == 0.5


def test_default_resolves_to_shipped_tiny():
    assert checkpoint.resolve("default").name == "mnist-tiny"
    assert {"mnist-nano", "mnist-tiny", "mnist-small"} <= set(checkpoint.list_shipped())


@pytest.mark.parametrize("keep", [0, 8, 100, 1000])
def test_truncated_weights_are_refused(small_model_dir, keep):
    f = small_model_dir / checkpoint.WEIGHTS_FILE
    f.write_bytes(f.read_bytes()[:keep])
    with pytest.raises(ModelFileError, match="safetensors"):
        checkpoint.load(small_model_dir)


def test_weights_of_another_shape_are_refused(small_model_dir, tmp_path):
    other = checkpoint.load("mnist-nano", weights=False)
    checkpoint.write_tensors(small_model_dir / checkpoint.WEIGHTS_FILE, other.net.state_dict())
    with pytest.raises(ModelFileError, match="does not match the config"):
        checkpoint.load(small_model_dir)


@pytest.mark.parametrize("text, match", [
    ("{not json", "not readable JSON"),
    ('{"format": "pickle"}', "not an edgediff model config"),
    ('{"format": "edgediff.model", "format_version": 99}', "format_version"),
    ('{"format": "edgediff.model", "format_version": 1, "unet": {"channels": [8, 16], "evil": 1}}', "invalid model"),
])
def test_bad_configs_are_refused(small_model_dir, text, match):
    (small_model_dir / checkpoint.CONFIG_FILE).write_text(text)
    with pytest.raises(ModelFileError, match=match):
        checkpoint.load(small_model_dir)


def test_missing_weights_say_how_to_train(tmp_path):
    (tmp_path / "m").mkdir()
    meta = json.loads((checkpoint.resolve("mnist-nano") / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="edgediff train"):
        checkpoint.load(tmp_path / "m")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    f = tmp_path / "a.txt"
    checkpoint.write_text(f, "old")
    with pytest.raises(RuntimeError), checkpoint.atomic_path(f) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert f.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
