import subprocess
import sys

import numpy as np
import pytest

from edgediff.models import checkpoint


def run(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "edgediff.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def assert_one_line_error(res, fragment):
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert fragment in lines[0], lines[0]


def test_sample_npy_is_byte_identical_and_eval_reads_it(small_model_dir, tmp_path):
    args = ["sample", "--model", str(small_model_dir), "--sampler", "dpmpp_2m", "--steps", "3", "--n", "6",
            "--seed", "0", "--quiet"]
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    assert run(*args, "--out", str(a)).returncode == 0
    assert run(*args, "--out", str(b)).returncode == 0
    assert a.read_bytes() == b.read_bytes()
    images = np.load(a)
    assert images.shape == (6, 1, 32, 32) and np.isfinite(images).all()
    assert np.load(tmp_path / "a.labels.npy").tolist() == [0, 1, 2, 3, 4, 5]
    png = tmp_path / "grid.png"
    assert run(*args, "--out", str(png)).returncode == 0 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("extra, fragment", [
    (["--sampler", "nope"], "unknown sampler"),
    (["--backend", "tflite"], "unknown backend"),
    (["--steps", "0"], "steps"),
    (["--label", "10"], "label 10 is out of range"),
    (["--out", "x.jpg"], "must end in .npy or .png"),
    (["--gamma", "0.5"], "gamma is the tcd sampler's"),
    (["--sampler", "tcd", "--gamma", "2"], "gamma"),
])
def test_sample_bad_input_is_one_line(small_model_dir, tmp_path, extra, fragment):
    res = run("sample", "--model", str(small_model_dir), "--n", "2", "--steps", "2", "--quiet",
              *(["--out", str(tmp_path / "o.png")] if "--out" not in extra else []), *extra, cwd=tmp_path)
    assert_one_line_error(res, fragment)
    assert not list(tmp_path.glob("o.png*"))


def test_missing_model_dir_and_truncated_weights(small_model_dir, tmp_path):
    assert_one_line_error(run("sample", "--model", str(tmp_path / "nope"), "--out", "o.png"), "not found")
    f = small_model_dir / checkpoint.WEIGHTS_FILE
    f.write_bytes(f.read_bytes()[:500])
    assert_one_line_error(run("sample", "--model", str(small_model_dir), "--out", str(tmp_path / "o.png")),
                          "not a valid safetensors")


def test_argparse_errors_are_one_line():
    assert_one_line_error(run("sample"), "--out")
    assert_one_line_error(run("launch-rockets"), "invalid choice")


def test_info_lists_shipped_models():
    res = run("info")
    assert res.returncode == 0, res.stderr
    for name in ("mnist-nano", "mnist-tiny", "mnist-small"):
        assert name in res.stdout
    assert "GFLOPs/step" in res.stdout


def test_default_model_npy_is_byte_identical(tmp_path):
    args = ["sample", "--model", "default", "--backend", "eager", "--sampler", "dpmpp_2m", "--steps", "10",
            "--n", "16", "--seed", "0", "--quiet"]
    for name in ("a.npy", "b.npy"):
        res = run(*args, "--out", str(tmp_path / name))
        assert res.returncode == 0, res.stderr
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()


def test_distill_rejects_an_unknown_method_before_any_work(small_model_dir, tmp_path):
    res = run("distill", "--model", str(small_model_dir), "--method", "progressive", "--out", str(tmp_path / "s"))
    assert_one_line_error(res, "method in ('cd', 'trajectory')")
    assert not (tmp_path / "s").exists()
