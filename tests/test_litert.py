"""The LiteRT backend beyond the shared contract (tests/test_converters.py runs that for it): the shipped default
model converts at fp32/fp16/int8, op coverage is reported, the same seed gives eager's images, the pipeline takes
litert targets, and a corrupt .tflite is a one-line error."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgediff
from edgediff.converters import base, parity
from edgediff.format import artifact
from edgediff.workflow import pipeline
from tests.test_cli import assert_one_line_error, run


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    if not base.installed(base.get("litert")):
        pytest.skip('litert is not installed here (pip install "edgediff[litert]")')
    root = tmp_path_factory.mktemp("litert")
    return {q: edgediff.convert("default", backend="litert", out=root / q, precision=q, calibration_samples=16)
            for q in ("fp32", "fp16", "w8", "int8")}


def test_fp32_and_fp16_pass_the_gate_and_int8_records_its_db(arts):
    assert arts["fp32"].parity_db >= parity.MIN_DB and arts["fp16"].parity_db >= parity.MIN_DB
    assert arts["w8"].parity_db >= parity.MIN_DB and arts["w8"].size_bytes < 0.4 * arts["fp32"].size_bytes
    assert arts["int8"].parity_db is not None and arts["int8"].options["calibration"]["source"] == "trajectory"
    assert arts["int8"].size_bytes < 0.5 * arts["fp32"].size_bytes
    assert arts["fp16"].size_bytes < 0.6 * arts["fp32"].size_bytes
    assert (arts["int8"].path / "calibration.npz").is_file()


def test_op_coverage_names_delegated_and_fallback_ops(arts):
    cov = arts["fp32"].op_coverage
    assert cov["delegate"] == "xnnpack" and cov["islands"] >= 1 and cov["delegated"] > 0
    assert sum(cov["fallback_ops"].values()) == cov["fallback"]


def test_same_seed_same_images_as_eager(arts):
    want, labels = edgediff.load("default").generate(n=10, seed=7)
    got, got_labels = edgediff.load(arts["fp32"]).generate(n=10, seed=7)
    assert (labels == got_labels).all() and parity.psnr_db(want, got) >= 30


def test_pipeline_takes_litert_targets(tmp_path):
    p = pipeline.plan("default", tmp_path / "p", targets=["litert-fp32", "litert-int8"])
    assert p.targets == (("litert", "fp32"), ("litert", "int8"))
    assert ("litert", "fp32") in pipeline.default_targets() and ("litert", "w8") in pipeline.default_targets()


def test_a_corrupt_tflite_is_one_line_and_nothing_runs(arts, tmp_path):
    import shutil

    path = tmp_path / "bad"
    shutil.copytree(arts["fp32"].path, path)
    model = path / arts["fp32"].model_file
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # truncated, then re-hashed
    meta = json.loads((path / artifact.ARTIFACT_FILE).read_text())
    meta["sha256"][arts["fp32"].model_file] = artifact.file_sha256(model)
    (path / artifact.ARTIFACT_FILE).write_text(json.dumps(meta))
    assert_one_line_error(run("sample", "--model", str(path), "--n", "2", "--out", str(tmp_path / "s.png")),
                          "LiteRT")
    assert not (tmp_path / "s.png").exists()


def test_wrong_input_shape_is_refused_before_the_interpreter(arts):
    from edgediff.errors import InputError

    runner = base.get("litert").load(arts["fp32"])
    with pytest.raises(InputError, match="shape"):
        runner(np.zeros((2, 1, 32, 32), np.float32), np.zeros(2, np.float32), np.zeros(2, np.int64))
