import json

import pytest
import torch

from edgediff.errors import ModelFileError
from edgediff.format import model_dir
from edgediff.models import checkpoint
from edgediff.training import checkpoints


def test_round_trip(small_model_dir):
    md = checkpoint.load(small_model_dir)
    again = checkpoint.load(small_model_dir)
    x, t = torch.randn(1, 1, 32, 32), torch.zeros(1)
    torch.testing.assert_close(md.net(x, t), again.net(x, t))
    assert md.sampler_defaults["steps"] == 4 and md.precond.sigma_data == 0.5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_load_upcast_at_half_the_size(small_model_dir, tmp_path, dtype):
    md = checkpoint.load(small_model_dir)
    half = checkpoint.save(tmp_path / "half", md.net, {"name": "half"}, dtype=dtype)
    stored = checkpoint.read_tensors(half / checkpoint.WEIGHTS_FILE)
    assert stored["conv_out.weight"].dtype == dtype
    size = lambda d: (d / checkpoint.WEIGHTS_FILE).stat().st_size  # noqa: E731
    assert size(half) < 0.55 * size(small_model_dir)
    back = checkpoint.load(half)
    for k, v in md.net.state_dict().items():
        assert back.net.state_dict()[k].dtype == v.dtype
        torch.testing.assert_close(back.net.state_dict()[k], v.to(dtype).to(v.dtype))
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        checkpoint.save(tmp_path / "bad", md.net, {}, dtype=torch.int8)


def test_default_resolves_to_shipped_tiny():
    assert model_dir.resolve("default").name == "mnist-tiny"
    assert {"mnist-nano", "mnist-tiny", "mnist-small"} <= set(model_dir.list_shipped())


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
    meta = json.loads((model_dir.resolve("mnist-nano") / "config.json").read_text())
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


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_tensor_files_carry_a_checksum_that_catches_a_flipped_value(small_model_dir):
    f = small_model_dir / checkpoint.WEIGHTS_FILE
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x01  # inside the last tensor's bytes: still a well-formed safetensors file
    f.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        checkpoint.load(small_model_dir)


@pytest.mark.parametrize("change, match", [
    (lambda v: v.double(), "wrong dtype"),
    (lambda v: v.to(torch.int8), "wrong dtype"),
    (lambda v: torch.full_like(v.half(), float("nan")), "NaN or Inf"),
    (lambda v: torch.full_like(v, float("nan")), "NaN or Inf"),
    (lambda v: torch.full_like(v, float("inf")), "NaN or Inf"),
])
def test_weights_of_another_dtype_or_not_finite_are_refused(small_model_dir, change, match):
    f = small_model_dir / checkpoint.WEIGHTS_FILE
    state = checkpoint.read_tensors(f)
    state["conv_out.weight"] = change(state["conv_out.weight"])
    checkpoint.write_tensors(f, state)
    with pytest.raises(ModelFileError, match=match):
        checkpoint.load(small_model_dir)


@pytest.mark.parametrize("section, key, value, match", [
    ("unet", "resolution", 48, "power of 2"),
    ("unet", "channels", [16, 0], "each in"),
    ("unet", "channels", [4096] * 8, "parameters"),
    ("unet", "channels", "16,32", "expected a list"),
    ("unet", "num_classes", True, "integer"),
    ("unet", "dropout", 1.5, r"\[0.0, 1.0\)"),
    ("training", "lr", -1.0, "lr"),
    ("training", "seed", -1, "seed"),
    ("training", "optimizer", "sgd", "unknown keys"),
    ("precond", "sigma_data", 0, "sigma_data"),
    ("sampler_defaults", "sampler", "nope", "one of"),
    ("sampler_defaults", "steps", 10**9, "steps"),
])
def test_config_sections_are_checked_against_the_dataclasses(small_model_dir, section, key, value, match):
    file = small_model_dir / checkpoint.CONFIG_FILE
    meta = json.loads(file.read_text())
    meta.setdefault(section, {})[key] = value
    file.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=match):
        checkpoint.load(small_model_dir, weights=False)


@pytest.mark.parametrize("text, match", [
    ('{"format": "edgediff.model", "format_version": 1, "unet": {"dropout": NaN}}', "NaN"),
    ("[" * 5000 + "]" * 5000, "nested too deeply|readable"),
    ('{"format": "edgediff.model", "format_version": 1, "unet": ' + "[" * 40 + "]" * 40 + "}", "nested"),
])
def test_json_that_is_not_plain_data_is_refused(small_model_dir, text, match):
    (small_model_dir / checkpoint.CONFIG_FILE).write_text(text)
    with pytest.raises(ModelFileError, match=match):
        checkpoint.load(small_model_dir)


def test_new_dataclass_fields_are_accepted_without_schema_changes(small_model_dir):
    import dataclasses

    from edgediff.format import schema
    from edgediff.format.configs import UNetConfig

    @dataclasses.dataclass(frozen=True)
    class Grown(UNetConfig):
        kernel_size: int = 3

    assert schema.section_problems("unet", Grown, {**UNetConfig().to_dict(), "kernel_size": 5}) == []
    assert "kernel_size" in schema.section_problems("unet", Grown, {"kernel_size": "big"})[0]


def test_a_temp_file_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    f = tmp_path / "a.txt"
    stale = tmp_path / f".a.txt.{_dead_pid()}-0123abcd.tmp"
    live = tmp_path / ".a.txt.1-0123abcd.tmp"  # pid 1 is alive: another writer's file is left alone
    other = tmp_path / f".b.txt.{_dead_pid()}-0123abcd.tmp"
    for p in (stale, live, other):
        p.write_text("half")
    checkpoint.write_text(f, "new")
    assert f.read_text() == "new" and not stale.exists() and live.exists() and other.exists()


def test_training_state_round_trip_and_refusal_leaves_the_modules_alone(tmp_path):
    import copy

    import numpy as np

    from edgediff.format.configs import UNetConfig
    from edgediff.models.unet import UNet
    from edgediff.training import loop as train
    from edgediff.training.data import ImageData

    cfg = UNetConfig(resolution=8, channels=(8, 16), attention_levels=(), time_embed_dim=16, groups=4, num_classes=3)
    rng = np.random.default_rng(0)
    data = ImageData(rng.uniform(-1, 1, (8, 1, 8, 8)).astype(np.float32), np.arange(8) % 3, ("a", "b", "c"))
    tc = train.TrainConfig(steps=2, batch_size=4, precision="fp32", checkpoint_every=2, log_every=1, threads=1)
    out = train.fit(cfg, tc, tmp_path / "run", data=data, progress=False)

    def fresh():
        torch.manual_seed(1)
        net = UNet(cfg)
        return net, copy.deepcopy(net).requires_grad_(False), torch.optim.AdamW(net.parameters(), lr=tc.lr)

    net, ema, opt = fresh()
    state = checkpoints.load_training_state(out, net, ema, opt)
    assert state["step"] == 2 and len(state["losses"]) == 2 and opt.state_dict()["state"]
    torch.testing.assert_close(ema.state_dict(), checkpoint.load(out).net.state_dict())
    d = out / "ckpt-00000002"
    tensors = checkpoint.read_tensors(d / "optim.safetensors")
    tensors["0.exp_avg"] = tensors["0.exp_avg"][:1]
    checkpoint.write_tensors(d / "optim.safetensors", tensors)
    net, ema, opt = fresh()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ModelFileError, match="optim.safetensors"):
        checkpoints.load_training_state(out, net, ema, opt)
    torch.testing.assert_close(net.state_dict(), before)
    assert not opt.state_dict()["state"]
