import json
import shutil

import numpy as np
import pytest

from edgediff.errors import InputError, ModelFileError
from edgediff.format import model_dir
from edgediff.measure import metric_training
from edgediff.measure import quality as metrics
from edgediff.models import checkpoint
from edgediff.training import data


@pytest.fixture(scope="module")
def mnist():
    return data.load("mnist5k")


@pytest.fixture(scope="module")
def heldout(mnist):
    return data.split(mnist, **metrics.HELDOUT)[1]


def _cross(mu, c):
    """2d points mu ± c_i e_i: sample mean mu, sample covariance diag(2 c² / (2d - 1)) exactly."""
    d = len(mu)
    return np.concatenate([mu + np.diag(c), mu - np.diag(c)]), 2 * c**2 / (2 * d - 1)


def test_fid_of_identical_sets_is_zero(rng):
    a = rng.normal(size=(500, 16))
    assert metrics.fid(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fid_matches_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0, -1.0]), np.array([1.0, 1.0, 0.0, 0.5])
    a, var_a = _cross(mu1, np.array([1.0, 2.0, 0.5, 3.0]))
    b, var_b = _cross(mu2, np.array([2.0, 0.5, 0.5, 1.0]))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert metrics.fid(a, b) == pytest.approx(expected, rel=1e-9)


def test_fid_of_sampled_gaussians_is_near_closed_form_and_rotation_invariant(rng):
    sd_a, sd_b = np.array([1.0, 2.0, 0.5]), np.array([0.5, 1.0, 1.5])
    a = rng.normal(size=(20000, 3)) * sd_a
    b = rng.normal(size=(20000, 3)) * sd_b + np.array([1.0, 0.0, -1.0])
    expected = 2.0 + np.sum((sd_a - sd_b) ** 2)
    assert metrics.fid(a, b) == pytest.approx(expected, rel=0.05)
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    assert metrics.fid(a @ rotation, b @ rotation) == pytest.approx(metrics.fid(a, b), rel=1e-8)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two(rng):
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same, same_std = metrics.kid(a, b, subsets=20, subset_size=200)
    other, other_std = metrics.kid(a, b + 0.5, subsets=20, subset_size=200)
    assert abs(same) < 0.05 and same_std >= 0
    assert other > 10 * max(abs(same), same_std)


def test_fid_and_kid_refuse_mismatched_features(rng):
    with pytest.raises(InputError, match="same D"):
        metrics.fid(rng.normal(size=(10, 4)), rng.normal(size=(10, 5)))
    with pytest.raises(InputError, match="N >= 2"):
        metrics.kid(rng.normal(size=(1, 4)), rng.normal(size=(10, 4)))


def test_shipped_metric_classifies_heldout_split(heldout):
    m = metrics.load_metric()
    assert m.meta["format"] == metrics.FORMAT
    probs = m.probs(heldout.images)
    assert probs.shape == (len(heldout), 10) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert np.mean(probs.argmax(1) == heldout.labels) >= 0.97
    assert m.features(heldout.images[:7]).shape == (7, 128)


def test_evaluate_real_images_are_near_the_floor_and_noise_is_far(heldout, rng):
    real = metrics.evaluate(heldout.images, heldout.labels)
    assert real.n == len(heldout) and real.fid < 2 * real.floor_fid + 0.5
    assert real.accuracy >= 0.95 and all(a >= 0.85 for a in real.per_class_accuracy)
    assert sum(real.histogram) == len(heldout) and real.confidence > 0.9
    assert "biased" in real.note  # N = 500 < 1000
    noise = metrics.evaluate(rng.uniform(-1, 1, heldout.images.shape).astype(np.float32))
    assert noise.fid > 50 * max(real.fid, real.floor_fid) and noise.kid[0] > 100 * abs(real.kid[0])
    assert noise.accuracy is None and noise.floor_fid == real.floor_fid
    json.dumps(real.to_dict())
    json.dumps(noise.to_dict())
    text = real.to_text()
    assert f"N={len(heldout)}" in text and "FID-proxy" in text and "accuracy" in text


def test_floor_shrinks_with_n_and_large_n_has_no_note(mnist):
    ev = metrics.evaluate(mnist.images[:2000], mnist.labels[:2000])
    assert ev.note == "" and 0 < ev.floor_fid < metrics._floor(metrics.load_metric(), 250)[0]
    assert ev.fid > 10 * ev.floor_fid  # digits 0-3 only: the class imbalance shows


@pytest.mark.parametrize("images, labels, match", [
    (np.zeros((4, 32, 32), np.float32), None, r"\[N,1,32,32\]"),
    (np.zeros((4, 3, 32, 32), np.float32), None, r"\[N,1,32,32\]"),
    (np.zeros((4, 1, 32, 32), np.uint8), None, "dtype uint8"),
    (np.full((4, 1, 32, 32), np.nan, np.float32), None, "finite"),
    (np.zeros((1, 1, 32, 32), np.float32), None, "at least 2"),
    ([[0.0]], None, r"\[N,1,32,32\]"),
    (np.zeros((4, 1, 32, 32), np.float32), np.zeros(3, np.int64), "4 integer labels"),
    (np.zeros((4, 1, 32, 32), np.float32), np.array([0, 1, 2, 10]), "range 0..10"),
    (np.zeros((4, 1, 32, 32), np.float32), np.array([0.0, 1.0, 2.0, 3.0]), "integer labels"),
])
def test_evaluate_refuses_bad_input(images, labels, match):
    with pytest.raises(InputError, match=match):
        metrics.evaluate(images, labels)


@pytest.fixture
def metric_copy(tmp_path):
    return shutil.copytree(model_dir.shipped_models_dir() / metrics.SHIPPED, tmp_path / "metric")


@pytest.mark.parametrize("keep", [0, 8, 1000])
def test_truncated_weights_are_refused(metric_copy, keep):
    f = metric_copy / checkpoint.WEIGHTS_FILE
    f.write_bytes(f.read_bytes()[:keep])
    with pytest.raises(ModelFileError, match="safetensors"):
        metrics.load_metric(metric_copy)


@pytest.mark.parametrize("edit, match", [
    (lambda d: (d / checkpoint.WEIGHTS_FILE).unlink(), "does not exist"),
    (lambda d: (d / checkpoint.CONFIG_FILE).write_text("{oops"), "not readable JSON"),
    (lambda d: (d / checkpoint.CONFIG_FILE).write_text('{"format": "edgediff.model"}'), "not a metric config"),
    (lambda d: (d / checkpoint.CONFIG_FILE).write_text(
        '{"format": "edgediff.metric", "format_version": 1, "arch": {"channels": [8], "width": 3}}'), "invalid 'arch'"),
])
def test_broken_metric_folders_are_refused(metric_copy, edit, match):
    edit(metric_copy)
    with pytest.raises(ModelFileError, match=match):
        metrics.load_metric(metric_copy)


def test_fit_metric_writes_a_loadable_folder(mnist, tmp_path):
    tiny = mnist.subset(np.concatenate([np.flatnonzero(mnist.labels == c)[:20] for c in range(10)]))
    meta = metric_training.fit_metric(tmp_path / "m", data=tiny, epochs=1, progress=False)
    saved = json.loads((tmp_path / "m" / checkpoint.CONFIG_FILE).read_text())
    assert saved == meta and saved["format"] == metrics.FORMAT and saved["split"]["heldout"] == 20
    assert 0.0 <= saved["accuracy"] <= 1.0 and saved["epochs"] == 1 and saved["params"] < 500_000
    m = metrics.load_metric(tmp_path / "m")
    assert m.features(tiny.images[:3]).shape == (3, 128)
    with pytest.raises(InputError, match="epochs"):
        metric_training.fit_metric(tmp_path / "bad", data=tiny, epochs=0, progress=False)
