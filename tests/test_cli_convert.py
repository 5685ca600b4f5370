import pytest

from tests.test_cli import assert_one_line_error, run

pytest.importorskip("openvino")


@pytest.fixture
def ov_artifact(small_model_dir, tmp_path):
    out = tmp_path / "ov"
    res = run("convert", "--model", str(small_model_dir), "--backend", "openvino", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "parity" in res.stdout and "dB" in res.stdout
    return out


def test_convert_then_sample_the_artifact(ov_artifact, tmp_path):
    res = run("sample", "--model", str(ov_artifact), "--n", "3", "--steps", "2", "--out", str(tmp_path / "s.npy"),
              "--quiet")
    assert res.returncode == 0, res.stderr


def test_corrupt_byte_missing_json_and_bad_device_are_one_line(ov_artifact, tmp_path):
    args = ["sample", "--n", "2", "--steps", "2", "--out", str(tmp_path / "o.npy"), "--quiet"]
    assert_one_line_error(run(*args, "--model", str(ov_artifact), "--device", "NPU"), "not available here")
    assert_one_line_error(run(*args, "--model", str(ov_artifact), "--backend", "executorch"), "openvino artifact")
    blob = ov_artifact / "model.bin"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert_one_line_error(run(*args, "--model", str(ov_artifact)), "does not match its sha256")
    (ov_artifact / "artifact.json").unlink()
    assert_one_line_error(run(*args, "--model", str(ov_artifact)), "not found")
    assert not (tmp_path / "o.npy").exists()


def test_convert_bad_arguments_are_one_line(small_model_dir, tmp_path):
    out = ["--out", str(tmp_path / "a")]
    assert_one_line_error(run("convert", "--model", str(small_model_dir), "--backend", "tflite", *out),
                          "cannot convert to")
    assert_one_line_error(run("convert", "--model", str(small_model_dir), "--backend", "openvino",
                              "--delegate", "coreml", *out), "unknown openvino convert option(s) delegate")
    assert_one_line_error(run("convert", "--model", str(small_model_dir), "--backend", "openvino",
                              "--precision", "int3", *out), "precision")
    assert not (tmp_path / "a").exists()
