"""Nothing edgediff reads is unpickled or executed: a code scan, live pickle payloads, actionable backend errors."""

import ast
import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from edgediff import converters
from edgediff.converters import build
from edgediff.errors import EdgediffError, InputError, MissingDependencyError, ModelFileError, require
from edgediff.format import artifact, artifact_schema, staging
from edgediff.format import images as images_io
from edgediff.format.inputs import check_runner_inputs
from edgediff.format.precond import Preconditioning
from edgediff.models import checkpoint
from edgediff.training import checkpoints

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("edgediff", "converters", "benchmarks", "device_tests")
# Calls that can run code from a file's contents. `from_pretrained` is allowed for schedulers (JSON) or with
# use_safetensors=True; np.load only with allow_pickle=False spelled out.
BANNED = {"torch.load", "torch.jit.load", "torch.package.PackageImporter", "pickle.load", "pickle.loads",
          "cPickle.load", "dill.load", "dill.loads", "cloudpickle.load", "cloudpickle.loads", "joblib.load",
          "marshal.load", "marshal.loads", "shelve.open", "yaml.load", "yaml.unsafe_load", "yaml.full_load",
          "pandas.read_pickle", "pd.read_pickle", "eval", "exec"}


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in BANNED:
                hits.append((node.lineno, name))
            if name in ("np.load", "numpy.load"):
                flag = _kw(node, "allow_pickle")
                if not (isinstance(flag, ast.Constant) and flag.value is False):
                    hits.append((node.lineno, f"{name} without allow_pickle=False"))
            if name.endswith("from_pretrained") and "Scheduler" not in name:
                flag = _kw(node, "use_safetensors")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    hits.append((node.lineno, f"{name} without use_safetensors=True"))
        if isinstance(node, ast.ClassDef) and any(_dotted(b).endswith("Unpickler") for b in node.bases):
            if not any(isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in node.body):
                hits.append((node.lineno, f"Unpickler subclass {node.name} without a restricting find_class"))
    return hits


def test_no_unsafe_loaders_anywhere_in_the_code():
    files = [p for folder in SCANNED if (ROOT / folder).is_dir() for p in (ROOT / folder).rglob("*.py")]
    assert len(files) > 20
    hits = [f"{p.relative_to(ROOT)}:{line}: {what}" for p in files
            for line, what in _unsafe_calls(ast.parse(p.read_text(), str(p)))]
    assert hits == []


def test_the_scanner_finds_what_it_is_meant_to_find():
    code = textwrap.dedent("""
        import torch, pickle, numpy as np
        torch.load(f); pickle.loads(b); np.load(f); np.load(f, allow_pickle=True); eval("1")
        UNet2DModel.from_pretrained(p)
        class U(pickle.Unpickler):
            pass
        np.load(f, allow_pickle=False); DDPMScheduler.from_pretrained(p); M.from_pretrained(p, use_safetensors=True)
    """)
    found = [what for _, what in _unsafe_calls(ast.parse(code))]
    assert sorted(found) == sorted([
        "torch.load", "pickle.loads", "np.load without allow_pickle=False", "np.load without allow_pickle=False",
        "eval", "UNet2DModel.from_pretrained without use_safetensors=True",
        "Unpickler subclass U without a restricting find_class"])


class Payload:
    """Unpickling this creates `marker`: proof that a loader executed code from a file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def payload(tmp_path):
    marker = tmp_path / "PWNED"
    blob = pickle.dumps(Payload(marker))
    yield blob, marker
    assert not marker.exists(), "a pickle payload was executed"


def test_the_payload_is_live_when_unpickled(tmp_path):
    marker = tmp_path / "PWNED"
    blob = pickle.dumps(Payload(marker))
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],  # noqa: S603
                   input=blob, check=True)
    assert marker.exists()  # so the tests below prove refusal, not a dud payload


def _torch_zip(blob_obj, file: Path) -> None:
    torch.save({"conv_out.weight": blob_obj}, file)


@pytest.mark.parametrize("form", ["pickle", "torch.save"])
def test_pickle_weights_in_a_model_dir_are_refused(small_model_dir, payload, form):
    blob, marker = payload
    f = small_model_dir / checkpoint.WEIGHTS_FILE
    f.write_bytes(blob) if form == "pickle" else _torch_zip(Payload(marker), f)
    with pytest.raises(ModelFileError, match="not a valid safetensors"):
        checkpoint.load(small_model_dir)


def test_a_model_dir_with_only_a_pickle_checkpoint_is_never_read(small_model_dir, payload):
    blob, _ = payload
    (small_model_dir / checkpoint.WEIGHTS_FILE).unlink()
    for name in ("weights.pt", "pytorch_model.bin", "model.ckpt"):
        (small_model_dir / name).write_bytes(blob)
    with pytest.raises(ModelFileError, match="does not exist"):
        checkpoint.load(small_model_dir)


@pytest.fixture
def trained(tmp_path):
    """A 2-step training output dir with one checkpoint, and how to resume it."""
    from edgediff.format.configs import UNetConfig
    from edgediff.training import loop as train
    from edgediff.training.data import ImageData

    cfg = UNetConfig(resolution=8, channels=(8, 16), attention_levels=(), time_embed_dim=16, groups=4, num_classes=3)
    rng = np.random.default_rng(0)
    data = ImageData(rng.uniform(-1, 1, (8, 1, 8, 8)).astype(np.float32), np.arange(8) % 3, ("a", "b", "c"))
    tc = train.TrainConfig(steps=2, batch_size=4, precision="fp32", checkpoint_every=2, log_every=1, threads=1)
    out = train.fit(cfg, tc, tmp_path / "run", data=data, progress=False)

    def resume(steps=4):
        return train.fit(cfg, train.TrainConfig(**{**tc.__dict__, "steps": steps}), out, data=data, progress=False)

    return out, resume


@pytest.mark.parametrize("name", ["net.safetensors", "ema.safetensors", "optim.safetensors"])
def test_pickle_in_a_training_checkpoint_is_refused_on_resume(trained, payload, name):
    out, resume = trained
    blob, _ = payload
    (out / "ckpt-00000002" / name).write_bytes(blob)
    (out / "ckpt-00000002" / "optim.pt").write_bytes(blob)  # a stray pickle beside it is never opened
    with pytest.raises(ModelFileError, match=name):
        resume()


def test_pickle_as_state_json_or_latest_is_refused(trained, payload):
    out, resume = trained
    blob, _ = payload
    (out / "ckpt-00000002" / "state.json").write_bytes(blob)
    with pytest.raises(ModelFileError, match="state.json"):
        checkpoints.load_training_state(out, *_modules_like(out))
    (out / "latest").write_bytes(blob)
    with pytest.raises(ModelFileError, match="latest"):
        checkpoints.load_training_state(out, *_modules_like(out))


def _modules_like(out: Path):
    import copy

    net = checkpoint.load(out).net.train()
    return net, copy.deepcopy(net).requires_grad_(False), torch.optim.AdamW(net.parameters())


def _fake_artifact(tmp_path, net, *, backend="openvino", name="out") -> Path:
    header = build.header_for(net, artifact.make_spec(channels=1, resolution=32, num_classes=10),
                                 backend=backend, precision="fp32", precond=Preconditioning(), sampler_defaults={},
                                 source={}, tools=())
    with staging.staging(tmp_path / name) as tmp:
        (tmp / "model.bin").write_bytes(b"\0" * 64)
        art = staging.commit(tmp, tmp_path / name, header, model_file="model.bin", op_coverage={}, parity=None)
    return art.path


def test_pickle_in_an_artifact_is_refused(small_model_dir, tmp_path, payload):
    blob, _ = payload
    net = checkpoint.load(small_model_dir).net
    path = _fake_artifact(tmp_path, net)
    (path / "model.bin").write_bytes(blob)
    with pytest.raises(ModelFileError, match="sha256"):
        artifact.read(path)
    (path / artifact.ARTIFACT_FILE).write_bytes(blob)
    with pytest.raises(ModelFileError, match="artifact.json"):
        artifact.read(path)


def test_pickled_sample_arrays_are_refused(tmp_path, payload):
    blob, marker = payload
    (tmp_path / "a.npy").write_bytes(blob)
    np.save(tmp_path / "b.npy", np.array([Payload(marker)], dtype=object), allow_pickle=True)
    for name in ("a.npy", "b.npy"):
        with pytest.raises(InputError, match="not a readable .npy"):
            images_io.read(tmp_path / name)


def test_the_mnist_unpickler_only_rebuilds_arrays(payload):
    import io

    from edgediff.training.data import _ArraysOnly

    blob, _ = payload
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        _ArraysOnly(io.BytesIO(blob)).load()
    arrays = pickle.dumps((np.arange(3), np.ones((2, 2), np.float32)))
    assert _ArraysOnly(io.BytesIO(arrays)).load()[0].tolist() == [0, 1, 2]


def test_a_diffusers_dir_with_only_pickle_weights_is_never_unpickled(tmp_path, payload):
    pytest.importorskip("diffusers")
    from edgediff.models import checkpoint

    blob, _ = payload
    d = tmp_path / "unet"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({
        "_class_name": "UNet2DModel", "sample_size": 8, "in_channels": 1, "out_channels": 1,
        "block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4,
        "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"]}))
    (d / "diffusion_pytorch_model.bin").write_bytes(blob)
    with pytest.raises(Exception) as info:  # noqa: B017 - the type is checked below, the marker by the fixture
        checkpoint.load(d)
    assert isinstance(info.value, EdgediffError), f"{type(info.value).__name__}: {info.value}"


# ---------------------------------------------------------------------------------- errors people can act on


@pytest.mark.parametrize("module, extra", [("openvino", "openvino"), ("executorch.runtime", "executorch"),
                                           ("coremltools", "coreml")])
def test_a_missing_backend_names_the_pip_extra(monkeypatch, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail as if it were not installed
    with pytest.raises(MissingDependencyError, match=rf'pip install "edgediff\[{extra}\]"'):
        require(module, extra)


def test_a_missing_backend_through_the_converter_api(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "edgediff\[openvino\]"'):
        converters.get("openvino").devices()
    assert "edgediff[openvino]" in converters.available()["openvino"]


def test_a_backend_that_fails_to_import_says_reinstall(tmp_path, monkeypatch):
    pkg = tmp_path / "edgediff_broken_backend"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise OSError('libbackend.so: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingDependencyError, match=r'libbackend.so.*pip install --force-reinstall "edgediff\[x\]"'):
        require("edgediff_broken_backend", "x")


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS Core ML predicts")
def test_coreml_on_linux_says_macos_is_needed_and_what_works_here(small_model_dir, tmp_path):
    path = _fake_artifact(tmp_path, checkpoint.load(small_model_dir).net, backend="coreml")
    with pytest.raises(EdgediffError, match="needs macOS") as info:
        converters.get("coreml").load(path)
    assert "convert" in str(info.value)


def test_unknown_artifact_schema_versions_name_the_supported_range(small_model_dir, tmp_path):
    path = _fake_artifact(tmp_path, checkpoint.load(small_model_dir).net)
    meta = json.loads((path / artifact.ARTIFACT_FILE).read_text())
    lo, hi = artifact_schema.ARTIFACT_SCHEMA_VERSIONS
    for version in (hi + 1, lo - 1, "1", None):
        (path / artifact.ARTIFACT_FILE).write_text(json.dumps({**meta, "schema_version": version}))
        with pytest.raises(ModelFileError, match=f"reads schema_version {lo} to {hi}"):
            artifact.read(path)


def test_nonfinite_inputs_are_refused_unless_allowed():
    x, t = np.full((1, 1, 8, 8), np.nan, np.float32), np.zeros(1, np.float32)
    with pytest.raises(InputError, match="NaN or Inf"):
        check_runner_inputs(x, t, None, channels=1, resolution=8, num_classes=0)
    out = check_runner_inputs(x, t, None, channels=1, resolution=8, num_classes=0, allow_nonfinite=True)
    assert np.isnan(out[0]).all()


def test_runner_input_checks_hold_for_odd_python_objects():
    t = np.zeros(1, np.float32)
    for x in ([[1, 2], [3]], "x", object(), np.array([None]), np.zeros((0, 1, 8, 8), np.float32)):
        with pytest.raises(InputError):
            check_runner_inputs(x, t, None, channels=1, resolution=8, num_classes=0)
