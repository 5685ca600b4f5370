"""Backend-native compression: int8 calibrated on trajectories (ExecuTorch, OpenVINO), Core ML weight compression."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgediff.converters import calibration as calibrate
from edgediff.converters.convert import convert_model
from edgediff.format import artifact
from edgediff.models import checkpoint


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tests.conftest import SMALL, random_unet

    net = random_unet(SMALL)
    return checkpoint.save(tmp_path_factory.mktemp("m") / "model", net, {"name": "small-test"})


@pytest.mark.parametrize("backend,package", [("executorch", "executorch.exir"), ("openvino", "nncf")])
def test_int8_is_calibrated_on_trajectories_and_recorded(model_dir, tmp_path, backend, package):
    pytest.importorskip(package)
    fp32 = convert_model(model_dir, backend, tmp_path / "fp32")
    art = convert_model(model_dir, backend, tmp_path / "int8", precision="int8", calibration_samples=16)
    assert art.precision == "int8" and art.options["calibration"]["samples"] == 16
    assert art.options["calibration"]["source"] == "trajectory"
    assert calibrate.CALIBRATION_FILE in art.sha256  # shipped with the artifact, hash-checked at load
    stored = calibrate.load(art.path / calibrate.CALIBRATION_FILE)
    assert len(stored) == 16 and set(np.unique(stored.label)) <= set(range(11))
    assert 15.0 < art.parity_db < fp32.parity_db  # quantized: close to eager, measurably not exact
    assert art.op_coverage["kept_float"]
    if backend == "executorch":  # int8 weights: the program shrinks
        assert (art.path / "model.pte").stat().st_size < 0.6 * (fp32.path / "model.pte").stat().st_size
        # residual adds / skip concats stay float, so GroupNorm and upsample lower into the one XNNPACK delegate
        assert art.op_coverage["islands"] == 1 and set(art.op_coverage["fallback_ops"]) <= {"aten.embedding.default"}
        assert {"add.Tensor", "cat.default"} <= set(art.op_coverage["kept_float"])
        assert art.options["kept_float"] == art.op_coverage["kept_float"]  # in the key: a new recipe re-converts
    assert artifact.read(tmp_path / "int8").precision == "int8"


def test_other_calibration_data_is_another_artifact(model_dir, tmp_path):
    """The calibration source is part of the artifact key (backend-independent: checked on OpenVINO, the fast one)."""
    pytest.importorskip("nncf")
    art = convert_model(model_dir, "openvino", tmp_path / "int8", precision="int8", calibration_samples=16)
    naive = convert_model(model_dir, "openvino", tmp_path / "naive", precision="int8", calibration="random",
                          calibration_samples=16)
    assert naive.options["calibration"]["source"] == "random"
    assert naive.source["key"] != art.source["key"]  # other calibration data, another artifact


def test_openvino_w8_compresses_weights_without_calibration(model_dir, tmp_path):
    pytest.importorskip("nncf")
    fp32 = convert_model(model_dir, "openvino", tmp_path / "fp32")
    w8 = convert_model(model_dir, "openvino", tmp_path / "w8", precision="w8")
    assert (w8.path / "model.bin").stat().st_size < 0.5 * (fp32.path / "model.bin").stat().st_size
    assert w8.parity_db > 30


def test_coreml_weight_compression_sizes_and_decompressed_weights(model_dir, tmp_path):
    pytest.importorskip("coremltools")
    from edgediff.converters import coreml

    reference = checkpoint.load(model_dir).net.state_dict()
    arts = {p: convert_model(model_dir, "coreml", tmp_path / p, precision=p)
            for p in ("fp16", "w8", "palette6", "palette4", "w4")}
    size = {p: a.size_bytes for p, a in arts.items()}
    assert size["palette4"] < size["palette6"] < size["w8"] < size["fp16"]
    assert size["w4"] < size["w8"]
    assert arts["w4"].options["minimum_deployment_target"] == "iOS18"
    big = "down.1.0.res.conv2.weight"
    err = {}
    for p, a in arts.items():
        weights = coreml.decompressed_state_dict(a, reference)
        assert set(weights) == set(reference)
        err[p] = float((weights[big] - reference[big]).abs().max())
        if p == "palette4":
            assert len(torch.unique(weights[big])) <= 16
    assert err["fp16"] < err["w8"] < err["palette4"]
