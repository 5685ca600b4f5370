import dataclasses

import numpy as np
import pytest
from PIL import Image

from edgediff.converters import eager
from edgediff.errors import InputError
from edgediff.format import images as images_io
from edgediff.format.configs import Request
from edgediff.models import checkpoint
from edgediff.sampling import generate


def test_labels_cycle_one_row_per_class():
    assert generate.labels_for(Request(n=20), 10).tolist() == [i // 2 for i in range(20)]
    assert generate.labels_for(Request(n=3, label=7), 10).tolist() == [7, 7, 7]
    assert generate.labels_for(Request(n=3), 0) is None
    with pytest.raises(InputError, match="out of range"):
        generate.labels_for(Request(n=3, label=10), 10)
    with pytest.raises(InputError, match="label"):
        Request(n=3, label=-1)
    with pytest.raises(InputError, match="unconditional"):
        generate.labels_for(Request(n=3, label=1), 0)


def test_request_validation():
    for bad in ({"n": 0}, {"steps": 0}, {"guidance": -1.0}, {"sampler": "ddpm"}):
        with pytest.raises(InputError):
            Request(**bad)


def test_same_seed_same_images_any_batching_of_the_runner(small_model_dir):
    md = checkpoint.load(small_model_dir)
    runner = eager.load(md)
    req = Request(n=5, steps=3, guidance=2.0, batch_size=5)
    a, la = generate.generate(runner, md.precond, (1, 32, 32), req, num_classes=10)
    b, _ = generate.generate(runner, md.precond, (1, 32, 32), req, num_classes=10)
    assert np.array_equal(a, b) and a.dtype == np.float32 and la.tolist() == [0, 1, 2, 3, 4]
    c, _ = generate.generate(runner, md.precond, (1, 32, 32), Request(n=5, steps=3, guidance=1.0,
                                                                                batch_size=5), num_classes=10)
    assert not np.allclose(a, c)  # guidance changes the images


def test_a_models_tuned_schedule_is_used_only_at_its_recommended_sampler_and_steps(small_model_dir):
    defaults = {"sampler": "consistency", "steps": 2, "guidance": 1.5, "sigmas": [80.0, 0.8, 0.0]}
    rec = generate.recommended(defaults, n=3, seed=1)
    assert (rec.sampler, rec.steps, rec.guidance, rec.sigmas, rec.n) == ("consistency", 2, 1.5, (80.0, 0.8, 0.0), 3)
    assert generate.with_defaults(Request(sampler="consistency", steps=2), defaults).sigmas == rec.sigmas
    assert generate.with_defaults(Request(sampler="consistency", steps=4), defaults).sigmas is None
    assert generate.with_defaults(Request(sampler="consistency", steps=2, sigmas=(80, 2, 0)),
                                  defaults).sigmas == (80.0, 2.0, 0.0)  # an explicit schedule wins
    with pytest.raises(InputError, match="sigmas"):
        Request(sampler="consistency", steps=3, sigmas=(80, 0.8, 0))

    md = checkpoint.load(small_model_dir)
    runner = eager.load(md)
    a, _ = generate.generate(runner, md.precond, (1, 32, 32), rec, num_classes=10)
    b, _ = generate.generate(runner, md.precond, (1, 32, 32), dataclasses.replace(rec, sigmas=None), num_classes=10)
    assert not np.allclose(a, b)  # the schedule reaches the sampler


def test_grid_png_and_npy_round_trip(tmp_path):
    images = np.linspace(-1, 1, 12 * 32 * 32, dtype=np.float32).reshape(12, 1, 32, 32)
    images_io.save(tmp_path / "g.png", images, None)
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == ((4 * 33 + 1) * 2, (3 * 33 + 1) * 2)
    images_io.save(tmp_path / "s.npy", images, np.arange(12))
    back, labels = images_io.read(tmp_path / "s.npy")
    assert np.array_equal(back, images) and labels.tolist() == list(range(12))
    assert images_io.read(tmp_path / "s.npy", "none")[1] is None


def test_read_refuses_pickles_and_missing_files(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="not a readable"):
        images_io.read(tmp_path / "obj.npy")
    with pytest.raises(InputError, match="does not exist"):
        images_io.read(tmp_path / "nope.npy")
