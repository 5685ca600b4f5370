"""Calibration data recorded along real sampling trajectories (what quantizers are fed)."""

from __future__ import annotations

import numpy as np
import pytest

from edgediff.converters import calibration as calibrate
from edgediff.converters import eager
from edgediff.errors import InputError, ModelFileError
from edgediff.models import checkpoint
from edgediff.sampling.schedules import schedule


def test_recorder_sees_every_sigma_label_and_guidance_branch(small_model_dir):
    md = checkpoint.load(small_model_dir)
    runner = eager.load(md)
    cal = calibrate.collect(runner, md.precond, (1, 32, 32), num_classes=10, samplers=(("euler", 3),),
                            guidance=(1.0, 2.0), per_run=4)
    # euler×3: 3 calls at guidance 1; 3 conditional + 3 unconditional calls at guidance 2; 4 images each
    assert len(cal) == (3 + 6) * 4
    want_t = {np.float32(md.precond.c_noise(s)) for s in schedule("euler", 3)[:-1]}
    assert set(np.unique(cal.t)) == want_t
    assert set(np.unique(cal.label)) == {0, 1, 2, 3, 10}  # 10 = the null label of the unconditional branch
    # the recorded x are what the network saw: c_in-scaled trajectory states. At the first step the state is
    # sigma_max * noise, so c_in * state has unit std whatever the (random) network predicts afterwards.
    first = cal.t == cal.t.max()
    assert first.sum() == 3 * 4
    assert np.all(np.abs(cal.x[first].std(axis=(1, 2, 3)) - 1) < 0.1)


def test_roundtrip_subset_and_fingerprint(tmp_path, rng):
    cal = calibrate.Calibration(rng.standard_normal((10, 1, 4, 4), dtype=np.float32),
                                rng.standard_normal(10).astype(np.float32), np.arange(10), w=np.ones(10, np.float32))
    path = calibrate.save(tmp_path / "c.npz", cal)
    back = calibrate.load(path)
    np.testing.assert_array_equal(back.x, cal.x)
    np.testing.assert_array_equal(back.w, cal.w)
    assert calibrate.fingerprint(back) == calibrate.fingerprint(cal)
    sub = cal.subset(4)
    assert len(sub) == 4 and calibrate.fingerprint(sub) != calibrate.fingerprint(cal)
    assert [len(b[0]) for b in cal.batches(3)] == [3, 3, 3]
    rand = calibrate.random_inputs(cal)
    assert rand.source == "random" and rand.x.shape == cal.x.shape


def test_bad_calibration_inputs(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError):
        calibrate.load(tmp_path / "bad.npz")
    with pytest.raises(InputError, match="needs calibration"):
        calibrate.options_for("int8", None, needs=("int8",))
    with pytest.raises(InputError, match="takes no calibration"):
        calibrate.options_for("fp32", calibrate.Calibration(np.zeros((1, 1, 2, 2), np.float32),
                                                            np.zeros(1, np.float32), None), needs=("int8",))


def test_the_recommended_sampler_and_its_tuned_schedule_are_recorded_too(small_model_dir):
    md = checkpoint.load(small_model_dir)
    defaults = {"sampler": "consistency", "steps": 2, "guidance": 1.0, "sigmas": [80.0, 0.8, 0.0]}
    cal = calibrate.collect(eager.load(md), md.precond, (1, 32, 32), num_classes=10, samplers=(("euler", 3),),
                            guidance=(1.0,), per_run=2, recommended=defaults)
    assert len(cal) == (3 + 2) * 2
    assert np.float32(md.precond.c_noise(0.8)) in set(np.unique(cal.t))  # the tuned intermediate σ, not Karras'
