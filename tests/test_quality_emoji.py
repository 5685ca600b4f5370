"""The colour metric (#18): FID/KID-proxy in the shipped emoji classifier's features with a real-vs-real floor,
prompt alignment beside real held-out images', and the nearest-training-image memorisation check; `edgediff eval`
takes colour samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgediff.errors import InputError
from tests.test_cli import assert_one_line_error, run

pytest.importorskip("resvg_py")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def q():
    from edgediff.measure import quality_emoji

    return quality_emoji


@pytest.fixture(scope="module")
def split():
    from edgediff.training import emoji

    return emoji.split(emoji.load(resolution=64))


def test_the_shipped_metric_classifies_held_out_emoji_far_above_chance(q, split):
    m = q.load_metric()
    train, held = split
    assert m.meta["classes"] == list(train.classes) and m.meta["data"] == "openmoji"
    real = q.evaluate_emoji(held.images, list(held.captions))
    assert real.alignment == pytest.approx(real.real_alignment)  # real images, own captions: the baseline itself
    assert real.real_alignment == pytest.approx(m.meta["accuracy"], abs=1e-4)
    assert real.real_alignment > 20 / train.num_classes  # chance is 1/100
    assert real.fid == pytest.approx(0.0, abs=1e-3)  # the reference itself
    assert real.copies == real.heldout_copies < 0.2  # OpenMoji repeats some artwork across code points
    assert real.nearest_train == pytest.approx(real.heldout_nearest_train)
    assert "N=395 < 1000" in real.note


def test_training_images_are_caught_as_copies_and_noise_is_far_above_the_floor(q, split):
    train, held = split
    pick = np.random.default_rng(1).choice(len(train), 400, replace=False)
    copied = q.evaluate_emoji(train.images[pick], [train.captions[i] for i in pick])
    assert copied.nearest_train == pytest.approx(0.0, abs=1e-4)  # memorised: at distance 0 of a training image
    assert copied.copies == 1.0
    assert copied.heldout_nearest_train > 0.05
    assert copied.fid < 1.5 * copied.floor_fid  # a random draw of real emoji: near the real-vs-real floor
    noise = np.random.default_rng(0).uniform(-1, 1, (400, 3, 64, 64)).astype(np.float32)
    junk = q.evaluate_emoji(noise, "red apple")
    assert junk.fid > 10 * junk.floor_fid and junk.kid[0] > 10 * max(junk.floor_kid[0], 1e-4)
    assert junk.alignment < 0.2 and junk.aligned_n == 400 and junk.copies == 0.0 < junk.heldout_copies
    assert "prompt alignment" in junk.to_text() and "floor" in junk.to_text()


def test_prompts_map_both_caption_forms_and_unknown_prompts_are_left_out_with_a_note(q, split):
    _, held = split
    x = held.images[:4]
    names = [held.prompt(0), held.prompt(1, subgroup=True), "a zeppelin over Berlin", held.prompt(3).upper()]
    e = q.evaluate_emoji(x, names)
    assert e.aligned_n == 3 and "1 of 4 prompts name no OpenMoji emoji" in e.note
    with pytest.raises(InputError, match="one prompt .* per sample"):
        q.evaluate_emoji(x, ["red apple"] * 3)
    with pytest.raises(InputError, match=r"\[N,3,64,64\]"):
        q.evaluate_emoji(x[:, :, :32, :32], "red apple")
    assert len(q.heldout_prompts(1000)) == 1000 and q.heldout_prompts()[0] == held.captions[0]


def test_eval_cli_scores_colour_samples_with_a_prompt_or_a_prompt_file(split, tmp_path):
    _, held = split
    npy = tmp_path / "held.npy"
    np.save(npy, held.images[:50])
    res = run("eval", "--samples", str(npy), "--prompt", held.captions[0], "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["n"] == 50 and out["aligned_n"] == 50 and 0 <= out["alignment"] <= 1
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(held.captions[:50]) + "\n", encoding="utf-8")
    res = run("eval", "--samples", str(npy), "--prompts", str(prompts))
    assert res.returncode == 0 and "prompt alignment" in res.stdout and "nearest training image" in res.stdout
    prompts.write_text("red apple\n", encoding="utf-8")
    assert_one_line_error(run("eval", "--samples", str(npy), "--prompts", str(prompts)), "one prompt (text) per")
    assert_one_line_error(run("eval", "--samples", str(npy), "--prompts", str(tmp_path / "none.txt")),
                          "one prompt per line")
    digits = tmp_path / "digits.npy"
    np.save(digits, np.zeros((4, 1, 32, 32), np.float32))
    assert_one_line_error(run("eval", "--samples", str(digits), "--prompt", "red apple"), "digits take --labels")
    rgb32 = tmp_path / "rgb32.npy"
    np.save(rgb32, np.zeros((4, 3, 32, 32), np.float32))
    assert_one_line_error(run("eval", "--samples", str(rgb32)), "no metric for other image shapes")


def test_a_one_epoch_emoji_metric_trains_and_loads(tmp_path, q):
    from edgediff.measure.metric_training import fit_metric

    meta = fit_metric(tmp_path / "m", data="openmoji", epochs=1, progress=False)
    assert meta["arch"]["in_channels"] == 3 and meta["arch"]["num_classes"] == 100 and 0 <= meta["accuracy"] <= 1
    m = q.load_metric(tmp_path / "m")
    assert m.image_shape == (3, 64, 64) and m.features(np.zeros((2, 3, 64, 64), np.float32)).shape == (2, 128)
    with pytest.raises(InputError, match="colour images need an emoji metric"):
        from edgediff.format import model_dir

        q.load_metric(model_dir.shipped_models_dir() / "metric-mnist")
