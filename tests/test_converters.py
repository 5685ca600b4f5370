"""One contract for every backend: convert → verified artifact → Runner that checks its inputs and matches eager."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from edgediff import converters
from edgediff.converters import base, build, parity
from edgediff.converters import convert as convert_mod
from edgediff.errors import EdgediffError, InputError, ModelFileError
from edgediff.format import artifact, staging
from edgediff.format.precond import Preconditioning
from edgediff.models import eager  # noqa: E402 - the reference Runner class
from tests.conftest import SMALL, random_unet

BATCH = 2
CONTRACT = converters.convertible()  # every registered backend that builds artifacts, plugins included
CONVERT_OPTIONS = {"openvino": {"threads": 1}}
LOAD_OPTIONS = {"openvino": {"threads": 1}}
MACOS_ONLY = "Core ML prediction needs macOS"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Converters and runners share 2 cores with other work: one torch thread here, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def net():
    return random_unet(SMALL).eval()


def spec_for(backend: str) -> artifact.InputSpec:
    label = converters.get(backend).label_dtype
    return artifact.make_spec(batch=BATCH, channels=1, resolution=32, num_classes=10, label_dtype=label)


def require(backend: str):
    be = converters.get(backend)
    if not base.installed(be):
        pytest.skip(f"{backend} is not installed here (pip install \"edgediff[{be.extra}]\")")
    return be


def convert(backend: str, net, out_dir, **kw) -> artifact.Artifact:
    require(backend)
    return converters.get(backend).convert(net, spec_for(backend), out_dir, precond=Preconditioning(),
                                sampler_defaults={"sampler": "dpmpp_2m", "steps": 10},
                                source={"name": "small-test"}, **{**CONVERT_OPTIONS.get(backend, {}), **kw})


@pytest.fixture(scope="module", params=CONTRACT)
def built(request, built_by_name) -> artifact.Artifact:
    """Each backend's fp32 artifact of the small net, converted once per test module."""
    return built_by_name(request.param)


@pytest.fixture(scope="module", params=["eager", *CONTRACT])
def runner(request, net, built_by_name):
    """A Runner per backend; eager is the reference itself."""
    if request.param == "eager":
        return eager.EagerRunner(net, channels=1, resolution=32, num_classes=10)
    art = built_by_name(request.param)
    reason = converters.get(request.param).unavailable()
    if reason:
        pytest.skip(f"{request.param} prediction {reason}; conversion and hash checks ran on this OS")
    return converters.get(request.param).load(art, **LOAD_OPTIONS.get(request.param, {}))


@pytest.fixture(scope="module")
def built_by_name(net, tmp_path_factory):
    cache = {}

    def by_name(backend):
        if backend not in cache:
            cache[backend] = convert(backend, net, tmp_path_factory.mktemp(backend) / "art")
        return cache[backend]
    return by_name


def test_convert_writes_a_verified_self_describing_artifact(built):
    again = artifact.read(built.path)
    assert again == built
    assert (built.path / artifact.ARTIFACT_FILE).is_file() and built.model_path.exists()
    assert built.spec == spec_for(built.backend) and built.num_classes == 10 and built.precision == "fp32"
    assert built.size_bytes > 10_000 and all(len(h) == 64 for h in built.sha256.values())
    assert {"weights_sha256", "tools", "config", "key"} <= set(built.source)
    assert built.precond["sigma_data"] == 0.5 and built.sampler_defaults["steps"] == 10
    reason = converters.get(built.backend).unavailable()
    if reason:
        assert built.parity_db is None and reason in built.op_coverage["parity"]
    else:
        assert built.parity_db >= parity.MIN_DB


def test_convert_reuses_an_artifact_built_from_the_same_inputs(built, net):
    mtime = (built.path / artifact.ARTIFACT_FILE).stat().st_mtime_ns
    assert convert(built.backend, net, built.path) == built
    assert (built.path / artifact.ARTIFACT_FILE).stat().st_mtime_ns == mtime


def test_runner_matches_eager(runner, net):
    reference = eager.EagerRunner(net, channels=1, resolution=32, num_classes=10)
    spec = artifact.make_spec(batch=BATCH, channels=1, resolution=32, num_classes=10)
    db, maxabs = parity.measure(runner, reference, spec, Preconditioning(), num_classes=10)
    assert db >= parity.MIN_DB, (db, maxabs)


def test_runner_accepts_a_missing_label_as_unconditional(runner, net):
    x, t = np.zeros((BATCH, 1, 32, 32), np.float32), np.zeros(BATCH, np.float32)
    null = np.full(BATCH, 10)
    np.testing.assert_allclose(runner(x, t), runner(x, t, null), atol=1e-5)


@pytest.mark.parametrize("x_shape,x_dtype,label", [
    ((BATCH, 1, 16, 16), np.float32, [1, 2]),   # wrong resolution
    ((BATCH, 3, 32, 32), np.float32, [1, 2]),   # wrong channels
    ((BATCH, 1, 32, 32), np.float64, [1, 2]),   # wrong dtype
    ((BATCH, 1, 32, 32), np.float32, [1.0, 2.0]),  # float labels
    ((BATCH, 1, 32, 32), np.float32, [1, 11]),  # label out of range
])
def test_runner_rejects_bad_inputs_before_native_code(runner, x_shape, x_dtype, label):
    x, t = np.zeros(x_shape, x_dtype), np.zeros(x_shape[0], np.float32)
    with pytest.raises(InputError):
        runner(x, t, np.asarray(label))


def test_converted_runners_have_a_static_batch(runner):
    x, t = np.zeros((BATCH + 1, 1, 32, 32), np.float32), np.zeros(BATCH + 1, np.float32)
    if isinstance(runner, eager.EagerRunner):
        assert runner(x, t).shape == x.shape  # the reference takes any batch
        return
    with pytest.raises(InputError, match="shape"):
        runner(x, t)


def _copy(built, tmp_path):
    path = tmp_path / "copy"
    shutil.copytree(built.path, path)
    return path


def test_flipping_one_byte_of_the_model_file_is_caught_before_loading(built, tmp_path):
    path = _copy(built, tmp_path)
    name = max(built.sha256, key=lambda n: (path / n).stat().st_size)  # the weights
    data = bytearray((path / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (path / name).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=name.split("/")[-1]):
        converters.get(built.backend).load(path)


def test_missing_artifact_json_is_a_model_file_error(built, tmp_path):
    path = _copy(built, tmp_path)
    (path / artifact.ARTIFACT_FILE).unlink()
    with pytest.raises(ModelFileError, match="artifact.json"):
        converters.get(built.backend).load(path)


def test_loading_with_the_wrong_backend_is_refused(built):
    other = "openvino" if built.backend != "openvino" else "executorch"
    require(other)
    with pytest.raises(InputError, match=built.backend):
        converters.get(other).load(built.path)


def test_coreml_load_off_macos_says_macos(built_by_name):
    art = built_by_name("coreml")
    if sys.platform == "darwin":
        pytest.skip("on macOS Core ML loads and runs (covered by the runner tests)")
    with pytest.raises(EdgediffError, match=MACOS_ONLY):
        converters.get("coreml").load(art)


def test_executorch_small_unet_is_one_delegate_island(built_by_name):
    pytest.importorskip("executorch.exir")
    cov = built_by_name("executorch").op_coverage
    assert cov["islands"] == 1 and cov["fallback_ops"] == {"aten.embedding.default": 1}, cov


@pytest.mark.parametrize("precision", ["fp32", pytest.param("int8", marks=pytest.mark.slow)])  # int8: 68 s, -m slow
def test_executorch_external_weights_go_to_a_hashed_ptd_beside_the_program(net, built_by_name, tmp_path, precision):
    pytest.importorskip("executorch.exir")
    from converters import executorch as et
    from edgediff.converters.calibration import Calibration

    rng = np.random.default_rng(1)
    kw = {"calibration": Calibration(rng.standard_normal((4, 1, 32, 32), dtype=np.float32),
                                     np.full(4, 1.0, np.float32), np.arange(4, dtype=np.int64))
          } if precision == "int8" else {}
    art = convert("executorch", net, tmp_path / "art", precision=precision, external_weights=True, **kw)
    ptd, pte = art.path / et.DATA_FILE, art.path / et.MODEL_FILE
    assert art.options["external_weights"] == et.DATA_FILE and et.DATA_FILE in art.sha256
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    scale = 0.25 if precision == "int8" else 1.0  # int8 weights: a quarter of the fp32 bytes
    assert ptd.stat().st_size >= 0.9 * scale * params and pte.stat().st_size < ptd.stat().st_size
    assert art.parity_db >= (parity.MIN_DB if precision == "fp32" else 10)
    if precision == "fp32":  # the same program as the one-file artifact, numerically
        inline = converters.get("executorch").load(built_by_name("executorch"))
        x = np.random.default_rng(0).standard_normal((BATCH, 1, 32, 32)).astype(np.float32)
        t, label = np.full(BATCH, 0.5, np.float32), np.arange(BATCH, dtype=np.int64)
        ours = converters.get("executorch").load(art)(x, t, label)
        np.testing.assert_allclose(ours, inline(x, t, label), rtol=0, atol=1e-5)
    data = bytearray(ptd.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ptd.write_bytes(bytes(data))  # tampered weights are refused by the hash check
    with pytest.raises(ModelFileError):
        converters.get("executorch").load(art.path)


def test_executorch_coreml_delegate_lowers_here_and_load_explains(net, tmp_path):
    pytest.importorskip("coremltools")
    art = convert("executorch", net, tmp_path / "art", delegate="coreml")
    assert art.op_coverage["delegate"] == "coreml" and art.op_coverage["islands"] >= 1
    if sys.platform != "darwin":
        assert art.parity_db is None and "needs macOS" in art.op_coverage["parity"]
        with pytest.raises(EdgediffError, match="coreml delegate"):
            converters.get("executorch").load(art)


def test_openvino_unknown_device_lists_the_available_ones(built_by_name):
    pytest.importorskip("openvino")
    with pytest.raises(InputError, match="CPU"):
        converters.get("openvino").load(built_by_name("openvino"), device="NO_SUCH_DEVICE")


def test_a_failed_parity_gate_writes_nothing(net, tmp_path, monkeypatch):
    def lower(tmp):
        (tmp / "model.bin").write_bytes(b"weights")
        return "model.bin", {}

    def noisy(file):
        return lambda x, t, label=None: np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)

    header = build.header_for(net, spec_for("openvino"), backend="fake", precision="fp32",
                                 precond=Preconditioning(), sampler_defaults={}, source={}, tools=())
    with pytest.raises(parity.ParityError, match="dB"):
        build.build(net, tmp_path / "out", header, lower=lower, load_staged=noisy)
    assert list(tmp_path.iterdir()) == []
    art = build.build(net, tmp_path / "out", header, lower=lower, load_staged=None)
    assert artifact.read(tmp_path / "out") == art and art.parity_db is None


def test_reuse_key_changes_with_the_weights(net):
    def key():
        return build.header_for(net, spec_for("openvino"), backend="b", precision="fp32",
                                   precond=Preconditioning(), sampler_defaults={}, source={}, tools=()).key

    before = key()
    with torch.no_grad():
        net.conv_out.bias += 1.0
    try:
        assert key() != before
    finally:
        with torch.no_grad():
            net.conv_out.bias -= 1.0
    assert key() == before


@pytest.mark.parametrize("name", ["../evil.bin", "/etc/passwd", "a/../../b", ""])
def test_artifact_json_naming_files_outside_the_dir_is_rejected(net, tmp_path, name):
    header = build.header_for(net, spec_for("openvino"), backend="fake", precision="fp32",
                                 precond=Preconditioning(), sampler_defaults={}, source={}, tools=())
    with staging.staging(tmp_path / "out") as tmp:
        (tmp / "m.bin").write_bytes(b"1")
        staging.commit(tmp, tmp_path / "out", header, model_file="m.bin", op_coverage={}, parity=None)
    meta = json.loads((tmp_path / "out" / artifact.ARTIFACT_FILE).read_text())
    meta["sha256"][name] = "0" * 64
    (tmp_path / "out" / artifact.ARTIFACT_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="unsafe"):
        artifact.read(tmp_path / "out")


def test_psnr_is_capped_for_identical_outputs_and_falls_with_noise():
    ref = np.linspace(-1, 1, 100)
    assert parity.psnr_db(ref, ref) == parity.MAX_DB
    assert 19 < parity.psnr_db(ref, ref + 0.2) < 21  # range 2, error 0.2 → 20 dB


@pytest.mark.parametrize("backend", ["executorch", "openvino", "litert"])
def test_a_diffusers_unet2d_model_converts_and_passes_the_gate(backend, tmp_path):
    diffusers = pytest.importorskip("diffusers")
    require(backend)
    torch.manual_seed(0)
    diffusers.UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(16, 32),
                          layers_per_block=1, norm_num_groups=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                          up_block_types=("AttnUpBlock2D", "UpBlock2D")).save_pretrained(tmp_path / "unet")
    art = convert_mod.convert_model(tmp_path / "unet", backend, tmp_path / "art")
    assert art.parity_db >= parity.MIN_DB and "label" not in art.spec and art.spec["x"][0] == (1, 1, 16, 16)
    assert art.precond["sigma_max"] > 100 and art.source["model"]["unet"] == "UNet2DModel"
    runner = converters.get(backend).load(art)
    with pytest.raises(InputError, match="unconditional"):
        runner(np.zeros((1, 1, 16, 16), np.float32), np.zeros(1, np.float32), np.zeros(1, np.int64))


def test_openvino_runners_dropped_out_of_order_survive_ctrl_c(built_by_name):
    """Two OpenVINO runners released first-in-first-out, then SIGINT: a KeyboardInterrupt, not a SIGSEGV.

    Regression: each `openvino.Core` installs a signal alternate stack and restores the previous one when destroyed,
    so out-of-order release left a freed stack installed and Ctrl-C during `edgediff pipeline`'s bench crashed.
    """
    art = built_by_name("openvino")
    script = textwrap.dedent(f"""
        import gc, os, signal, time
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a background CI shell may start us ignoring it
        from edgediff.converters import openvino
        a = openvino.load({str(art.path)!r})
        b = openvino.load({str(art.path)!r})
        del a; gc.collect()
        del b; gc.collect()
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            print("interrupted cleanly")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "interrupted cleanly" in proc.stdout, (proc.returncode, proc.stderr[-2000:])


def test_pipeline_only_options_passed_as_none_are_no_options_and_set_are_refused_for_a_pixel_model(small_model_dir,
                                                                                                 tmp_path):
    pytest.importorskip("openvino")
    art = convert_mod.convert_model(small_model_dir, "openvino", tmp_path / "ok", decoder=None, check_steps=None)
    assert art.parity_db >= parity.MIN_DB
    with pytest.raises(InputError, match="check_steps apply to a text-to-image pipeline folder"):
        convert_mod.convert_model(small_model_dir, "openvino", tmp_path / "bad", check_steps=4)
    assert not (tmp_path / "bad").exists()
